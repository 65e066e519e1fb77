"""Atomic checkpoints of a running search: kill -9 at any moment loses at most N steps.

A checkpoint is ONE `.npz` file holding every variable of the search (supernet
weights and BN statistics, the architecture logits, the step counter, dropout seed states), the
state of both optimizers (momentum, Adam moments, iteration counters) and a
JSON blob (history, configuration). It is written to a temporary file in the
same directory, flushed to disk and moved over the previous checkpoint with
`os.replace`, so a crash during a save leaves the last good checkpoint intact.

The last two checkpoints are kept (`checkpoint.npz` and
`checkpoint.previous.npz`): a latest one that cannot be read (truncated, empty,
bit-flipped: the zip CRC catches it) is reported with a warning naming the file
and the previous one is used. Temp files a killed write left behind are removed
by `remove_stale_temp_files` at the start of a run.

Resuming restores all of it; the step counter drives the architecture draws
(stateless, seeded by step) and the data position, so a resumed search
continues exactly where the checkpoint was taken.
"""

from __future__ import annotations

import json
import os
import warnings
import weakref
import zipfile

import numpy as np
import tensorflow as tf

from tsnet_keras.files import atomic_path, remove_stale_temp_files
from tsnet_keras.renames import SEARCH_LOGITS
from tsnet_keras.search.parsec import graph_optimization

CHECKPOINT_FILE = "checkpoint.npz"
_META = "__meta__"
_READERS = weakref.WeakKeyDictionary()  # search -> (its variables' ids, their traced read)


class CheckpointError(ValueError):
    """A checkpoint file cannot be read (the message names it)."""


def previous_path(path) -> str:
    """Where the checkpoint before `path` is kept (`checkpoint.previous.npz`)."""
    root, extension = os.path.splitext(os.fspath(path))
    return f"{root}.previous{extension}"


def search_variables(search) -> list:
    """Every variable of a `ParsecSearch` model, in a stable order (no duplicates)."""
    seen, result = set(), []
    layers = [search] + list(search.supernet.plan_layers) + [search.distribution]
    for layer in layers:
        for variable in layer.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                result.append(variable)
    return result


def _groups(search):
    groups = {"model": search_variables(search)}
    if search.optimizer is not None:
        groups["weights_optimizer"] = list(search.optimizer.variables)
    if search.logits_optimizer is not None:
        groups["logits_optimizer"] = list(search.logits_optimizer.variables)
    return groups


def _stored_group(checkpoint, group):
    """The name `group` has in `checkpoint` (a checkpoint from before a rename uses the old one)."""
    if group in checkpoint["names"]:
        return group
    old = {new: old for old, new in SEARCH_LOGITS.items()}.get(group)
    return old if old in checkpoint["names"] else group


def write_npz_atomically(path, arrays: dict, keep_previous: str | None = None) -> None:
    """`np.savez` to `path` atomically (`tsnet_keras.files.atomic_path`).

    Args:
        keep_previous: path the current `path` is moved to before the new file
            replaces it (the previous checkpoint), or None.

    Raises:
        OSError: naming `path` (disk full, no permission, ...); `path` is intact.
    """
    path = os.fspath(path)
    try:
        with atomic_path(path, keep_previous=keep_previous) as temp:
            with open(temp, "wb") as handle:
                np.savez(handle, **arrays)
    except OSError as error:
        raise OSError(f"cannot write {path}: {error}") from error


def _read_values(search, variables) -> list:
    """NumPy values of `variables`, read in one traced call (kept per search until its
    variables change; Grappler off at every call, so it is instantiated once): one
    eager read per variable costs about 0.1 ms, a median 51 ms a checkpoint of the default step-1
    search's 448 variables, one call 6 ms (BENCHMARKS.md 7b)."""
    key = tuple(id(variable) for variable in variables)
    reader = _READERS.get(search)
    if reader is None or reader[0] != key:
        read = tf.function(lambda: [tf.identity(v.value) for v in variables], autograph=False)
        _READERS[search] = reader = (key, read)
    with graph_optimization(False):
        return [np.asarray(value) for value in reader[1]()]


def save_checkpoint(search, path, meta: dict | None = None) -> None:
    """Writes the full search state to `path` atomically.

    Args:
        search: a compiled `ParsecSearch`.
        path: file path (e.g. `output_dir / CHECKPOINT_FILE`).
        meta: JSON-serialisable dict stored alongside (history, configuration).
    """
    groups = _groups(search)
    keyed = {f"{group}/{index:05d}": variable for group, variables in groups.items()
             for index, variable in enumerate(variables)}
    arrays = dict(zip(keyed, _read_values(search, list(keyed.values()))))
    names = {group: [variable.path for variable in variables]
             for group, variables in groups.items()}
    payload = {"meta": meta or {}, "names": names}
    arrays[_META] = np.frombuffer(json.dumps(payload).encode("utf-8"), dtype=np.uint8)
    write_npz_atomically(path, arrays, keep_previous=previous_path(path))


def read_checkpoint_meta(path) -> dict:
    """The `meta` dict of a checkpoint (without loading the arrays).

    Raises:
        CheckpointError: the file cannot be read (named).
    """
    path = os.fspath(path)
    try:
        with np.load(path) as data:
            return json.loads(bytes(data[_META]).decode("utf-8"))["meta"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"checkpoint {path} cannot be read: {type(error).__name__}: "
                              f"{error}") from None


def read_checkpoint(path) -> dict:
    """Every array of a checkpoint, read and CRC-checked: `{"path", "meta", "names", "arrays"}`.

    Raises:
        CheckpointError: the file cannot be read (truncated, empty, corrupt), named.
    """
    path = os.fspath(path)
    try:
        with np.load(path) as data:
            payload = json.loads(bytes(data[_META]).decode("utf-8"))
            arrays = {key: data[key] for key in data.files if key != _META}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"checkpoint {path} cannot be read: {type(error).__name__}: "
                              f"{error}") from None
    return {"path": path, "meta": payload["meta"], "names": payload["names"], "arrays": arrays}


def find_checkpoint(path):
    """The newest readable checkpoint: `path`, else the previous one; None if neither exists.

    A latest checkpoint that cannot be read gives a warning naming it, and the
    previous one (`previous_path(path)`) is used.

    Raises:
        CheckpointError: checkpoints exist but none can be read (both named).
    """
    path = os.fspath(path)
    errors = []
    for candidate in (path, previous_path(path)):
        if not os.path.exists(candidate):
            continue
        try:
            checkpoint = read_checkpoint(candidate)
        except CheckpointError as error:
            errors.append(str(error))
            continue
        if errors or candidate != path:
            reason = errors[0] if errors else f"{path} is missing"
            warnings.warn(f"{reason}; resuming from the previous checkpoint {candidate} "
                          f"(step {checkpoint['meta'].get('step')}).", stacklevel=2)
        return checkpoint
    if errors:
        raise CheckpointError("; ".join(errors) + ". Delete them or pass resume=False to start "
                              "over.")
    return None


def load_checkpoint(search, path) -> dict:
    """Restores a checkpoint written by `save_checkpoint`; returns its `meta`.

    Args:
        path: a checkpoint file, or the dict `read_checkpoint` / `find_checkpoint` gave.

    Raises:
        CheckpointError: the file cannot be read.
        ValueError: when the checkpoint does not match the search's variables
            (another space or configuration); nothing is assigned then.
    """
    checkpoint = path if isinstance(path, dict) else read_checkpoint(path)
    path, arrays = checkpoint["path"], checkpoint["arrays"]
    assignments = []
    for group, variables in _groups(search).items():
        stored_group = _stored_group(checkpoint, group)
        stored = checkpoint["names"].get(stored_group)
        current = [variable.path for variable in variables]
        if stored is None or len(stored) != len(current):
            raise ValueError(
                f"checkpoint {path}: {group} has {0 if stored is None else len(stored)} "
                f"variables, the search has {len(current)}; it is from another search."
            )
        for index, variable in enumerate(variables):
            value = arrays[f"{stored_group}/{index:05d}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"checkpoint {path}: {stored[index]} has shape {value.shape}, the "
                    f"search's {current[index]} has {tuple(variable.shape)}."
                )
            assignments.append((variable, value))
    for variable, value in assignments:
        variable.assign(value)
    return checkpoint["meta"]


__all__ = [
    "CHECKPOINT_FILE",
    "CheckpointError",
    "find_checkpoint",
    "load_checkpoint",
    "previous_path",
    "read_checkpoint",
    "remove_stale_temp_files",
    "read_checkpoint_meta",
    "save_checkpoint",
    "search_variables",
    "write_npz_atomically",
]
