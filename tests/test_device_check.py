"""benchmarks/device_check.sh stops at once, with a clear message, without a GPU."""

import pathlib
import shutil
import subprocess

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "device_check.sh"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_fails_fast_without_gpu():
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "no usable GPU: nvidia-smi not found" in result.stderr
    assert "--allow-cpu" in result.stderr
    assert "==" not in result.stdout  # no benchmark part started


def test_rejects_unknown_argument():
    result = subprocess.run(["bash", str(SCRIPT), "--gpu"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown argument '--gpu'" in result.stderr
