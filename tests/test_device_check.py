"""benchmarks/device_check.sh stops at once, with a clear message, without a GPU."""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
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


def _run_benchmark(code, backend="jax", timeout=600):
    """Runs `code` with benchmarks/ importable and KERAS_BACKEND set; returns stdout."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent), str(SCRIPT.parents[1])])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_x3d_benchmark_trains_on_jax():
    """The GPU check's JAX path (no TensorFlow on the device machine): the jitted
    stateless step really updates the model, and the forward sees the new weights."""
    out = _run_benchmark(
        "import numpy as np, bench_x3d\n"
        "make = bench_x3d.keras_x3d('S', 4, 32, 'float32')\n"
        "x = np.random.default_rng(0).normal(size=(2, 4, 32, 32, 3)).astype('float32')\n"
        "forward, step = make(x, np.array([3, 7]))\n"
        "before = np.asarray(forward())\n"
        "losses = [step() for _ in range(6)]\n"
        "after = np.asarray(forward())\n"
        "print('LOSSES', losses, 'CHANGED', float(np.abs(after - before).max()))\n"
    )
    line = next(row for row in out.splitlines() if row.startswith("LOSSES"))
    losses = [float(v) for v in line.split("[")[1].split("]")[0].split(",")]
    assert "devices ['cpu']; JAX" in out
    # At the benchmark's learning rate (0.1, momentum 0.9) two clips are memorised
    # within a few steps and momentum may then overshoot, so the last loss is not
    # always the lowest; a step that did not learn would never fall below half.
    assert all(np.isfinite(losses)) and min(losses[1:]) < 0.5 * losses[0]
    assert float(line.split("CHANGED")[1]) > 0


def test_data_benchmark_without_tensorflow(tmp_path):
    """bench_data.py --no-tf decodes through the plain loop and a process pool only."""
    blocker = tmp_path / "tensorflow.py"
    blocker.write_text("raise ImportError('no TensorFlow on this machine')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(SCRIPT.parents[1])])}
    result = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "bench_data.py"), "--no-tf", "--videos", "2",
         "--clips", "2", "--repeats", "1", "--video-dir", str(tmp_path / "videos")],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [row for row in result.stdout.splitlines() if "clips/s" not in row and "loop" in row]
    assert [row.split()[0] for row in rows] == ["plain", "process"]
    assert all(float(row.split()[-2]) > 0 for row in rows)
