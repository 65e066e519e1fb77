"""Run the layer tests under the other Keras backends, so one `pytest` covers all three.

Each backend needs its own process: KERAS_BACKEND is read once, when Keras is
first imported.
"""

import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _import_error(module):
    """None if `module` imports in a fresh interpreter, else the error text."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True
    )
    return None if result.returncode == 0 else result.stderr.strip().splitlines()[-1:]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_layer_tests_pass_on_backend(backend):
    error = _import_error(backend)
    if error is not None:
        pytest.skip(f"KERAS_BACKEND={backend}: `import {backend}` failed: {error}")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/layers", "-q", "-p", "no:cacheprovider", "-n", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        f"tests/layers failed with KERAS_BACKEND={backend}:\n{result.stdout[-6000:]}"
        f"\n{result.stderr[-2000:]}"
    )
