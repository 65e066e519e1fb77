"""A process exits while a video pipeline's iterator is alive (`pipeline_calls`)."""

import subprocess
import sys
import threading
import time

import pytest

from tsnet_keras.data import pipeline_calls
from tsnet_keras.data.pipeline_calls import drain, pipeline_call, quiet

# At module level, as a user's script would: the iterator is alive until the interpreter
# exits, with decodes in flight. Without the exit drain the process never ends.
SCRIPT = """
import sys
from tsnet_keras.data.dataset import video_dataset
dataset = video_dataset([(sys.argv[1], 0)] * 64, mode="train", batch_size=2, seed=0,
                        crop_size=32, jitter=(40, 56), repeat=True, num_parallel_calls=4)
iterator = iter(dataset)
batch = next(iterator)
print("first batch", {k: tuple(v.shape) for k, v in batch[0].items()}, flush=True)
"""


def test_a_script_with_a_live_iterator_exits(video_dir):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(video_dir / "long.mp4")],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "first batch {" in result.stdout and "(2, 4, 32, 32, 3)" in result.stdout


def test_calls_are_counted_while_they_run_and_drain_waits_for_them():
    started, release = threading.Event(), threading.Event()

    @pipeline_call
    def decode(value):
        started.set()
        release.wait(10)
        return value + 1

    worker = threading.Thread(target=lambda: decode(1))
    worker.start()
    started.wait(10)
    assert not quiet(quiet_s=0.0)
    assert drain(max_wait_s=0.1, quiet_s=0.0) is False  # still running: gives up in time
    threading.Timer(0.2, release.set).start()
    begin = time.monotonic()
    assert drain(max_wait_s=10, quiet_s=0.1) is True
    assert time.monotonic() - begin >= 0.2  # waited for the call, then for the quiet
    worker.join(10)
    assert pipeline_calls._state["in_flight"] == 0


def test_a_wrapped_function_keeps_its_result_errors_and_name():
    @pipeline_call
    def broken():
        raise ValueError("bad clip")

    assert pipeline_call(lambda a, b=2: a * b)(3, b=4) == 12
    with pytest.raises(ValueError, match="bad clip"):
        broken()
    assert broken.__name__ == "broken"
    assert pipeline_calls._state["in_flight"] == 0
