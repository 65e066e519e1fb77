"""Python functions that tf.data pipelines call, and a process that can exit while one runs.

The pipelines decode in Python (`tf.numpy_function`, `tf.py_function`), called from
TensorFlow's own threads. A tf.data iterator still alive when Python exits (a script's
`batch = next(iterator)` at module level, a notebook kernel shut down mid-epoch) is
destroyed while the interpreter finalises: its destructor waits for the Python calls its
threads have in flight, and those can no longer take the interpreter lock, so the process
hangs for good (TensorFlow issue 21277; `tests/data/test_pipeline_calls.py`).

Every such function is wrapped by `pipeline_call`, which counts the calls in flight. At
exit, before finalisation, `drain` waits until none has run for `QUIET_S`: the pipelines'
buffers are then full, their threads wait without Python, and the iterators are destroyed
without waiting on anything. A process whose pipelines are done pays nothing.
"""

from __future__ import annotations

import atexit
import functools
import threading
import time

QUIET_S = 0.25  # no pipeline call for this long: the buffers are full
MAX_WAIT_S = 30.0  # a pipeline that never fills (say, every video broken) does not block exit

_lock = threading.Lock()
_state = {"in_flight": 0, "last_end": float("-inf")}


def pipeline_call(function):
    """`function`, counted while it runs (see the module docstring)."""

    @functools.wraps(function)
    def counted(*args, **kwargs):
        with _lock:
            _state["in_flight"] += 1
        try:
            return function(*args, **kwargs)
        finally:
            with _lock:
                _state["in_flight"] -= 1
                _state["last_end"] = time.monotonic()

    return counted


def quiet(quiet_s: float = QUIET_S) -> bool:
    """Whether no pipeline call is running and none ended in the last `quiet_s` seconds."""
    with _lock:
        return _state["in_flight"] == 0 and time.monotonic() - _state["last_end"] >= quiet_s


def drain(max_wait_s: float = MAX_WAIT_S, quiet_s: float = QUIET_S) -> bool:
    """Waits until `quiet(quiet_s)`, at most `max_wait_s` seconds; returns whether it is."""
    deadline = time.monotonic() + max_wait_s
    while not quiet(quiet_s):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


atexit.register(drain)

__all__ = ["MAX_WAIT_S", "QUIET_S", "drain", "pipeline_call", "quiet"]
