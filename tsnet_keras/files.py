"""Atomic file writes, and the clean-up of what a killed write leaves behind.

Every output file (JSON, CSV, `.npz` and `.weights.h5` checkpoints, TFRecord shards) is
written to a temp file beside it, flushed to disk, then moved onto its name with
`os.replace`: a reader sees the old file or the new one, never half of one.

Temp files are named `.NAME.tmp-PID` (plus a suffix where the writer needs one, e.g.
`.weights.h5` for Keras). `STALE_PATTERNS` matches them and the names older versions
used (`NAME.tmp-PID`, `.tmp-PID.weights.h5`); `remove_stale_temp_files` deletes them at
the start of a run.
"""

from __future__ import annotations

import contextlib
import glob
import os

TEMP_MARK = ".tmp-"
STALE_PATTERNS = (f".*{TEMP_MARK}*", f"*{TEMP_MARK}*", f"{TEMP_MARK}*.weights.h5")


def temp_path(path, suffix: str = "") -> str:
    """The temp file an atomic write of `path` goes through: `.NAME.tmp-PID` + `suffix`."""
    directory, name = os.path.split(os.fspath(path))
    return os.path.join(directory, f".{name}{TEMP_MARK}{os.getpid()}{suffix}")


def _fsync_file(path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder) -> None:
    """Makes a rename in `folder` durable; a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path, suffix: str = "", keep_previous=None):
    """Yields a temp path to write; when the block succeeds it becomes `path`.

    Args:
        path: the file to write.
        suffix: ending the temp file's name must have (Keras wants `.weights.h5`).
        keep_previous: None, or a path the current `path` is moved to first (the
            previous checkpoint).

    On an exception in the block (or in the move) the temp file is removed and
    `path` is left as it was; the exception propagates.
    """
    path = os.fspath(path)
    temp = temp_path(path, suffix)
    try:
        yield temp
        _fsync_file(temp)
        if keep_previous is not None and os.path.exists(path):
            os.replace(path, keep_previous)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    _fsync_folder(os.path.dirname(path))


def atomic_write_bytes(path, data: bytes, keep_previous=None) -> None:
    """Writes `data` to `path` atomically (see `atomic_path`)."""
    with atomic_path(path, keep_previous=keep_previous) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)


def atomic_write_text(path, text: str, keep_previous=None) -> None:
    """Writes `text` (UTF-8) to `path` atomically (see `atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"), keep_previous=keep_previous)


def remove_stale_temp_files(folder) -> list:
    """Deletes temp files that a killed or failed atomic write left in `folder`; returns them."""
    removed = []
    for pattern in STALE_PATTERNS:
        for path in glob.glob(os.path.join(glob.escape(os.fspath(folder)), pattern)):
            if os.path.isfile(path) and path not in removed:
                try:
                    os.remove(path)
                except OSError as error:
                    raise OSError(f"cannot remove the stale temp file {path}: {error}") from error
                removed.append(path)
    return removed


__all__ = [
    "STALE_PATTERNS",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "remove_stale_temp_files",
    "temp_path",
]
