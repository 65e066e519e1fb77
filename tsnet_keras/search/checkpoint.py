"""Atomic checkpoints of a running search: kill -9 at any moment loses at most N steps.

A checkpoint is ONE `.npz` file holding every variable of the search (supernet
weights and BN statistics, alpha, the step counter, dropout seed states), the
state of both optimizers (momentum, Adam moments, iteration counters) and a
JSON blob (history, configuration). It is written to a temporary file in the
same directory, flushed to disk and moved over the previous checkpoint with
`os.replace`, so a crash during a save leaves the last good checkpoint intact.

Resuming restores all of it; the step counter drives the architecture draws
(stateless, seeded by step) and the data position, so a resumed search
continues exactly where the checkpoint was taken.
"""

from __future__ import annotations

import json
import os

import numpy as np
from keras import ops

CHECKPOINT_FILE = "checkpoint.npz"
_META = "__meta__"


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
    if search.alpha_optimizer is not None:
        groups["alpha_optimizer"] = list(search.alpha_optimizer.variables)
    return groups


def write_npz_atomically(path, arrays: dict) -> None:
    """`np.savez` to `path` through a temp file + fsync + `os.replace`."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(temp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    try:  # make the rename itself durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def save_checkpoint(search, path, meta: dict | None = None) -> None:
    """Writes the full search state to `path` atomically.

    Args:
        search: a compiled `ParsecSearch`.
        path: file path (e.g. `output_dir / CHECKPOINT_FILE`).
        meta: JSON-serialisable dict stored alongside (history, configuration).
    """
    arrays, names = {}, {}
    for group, variables in _groups(search).items():
        names[group] = [variable.path for variable in variables]
        for index, variable in enumerate(variables):
            arrays[f"{group}/{index:05d}"] = np.asarray(ops.convert_to_numpy(variable))
    payload = {"meta": meta or {}, "names": names}
    arrays[_META] = np.frombuffer(json.dumps(payload).encode("utf-8"), dtype=np.uint8)
    write_npz_atomically(path, arrays)


def read_checkpoint_meta(path) -> dict:
    """The `meta` dict of a checkpoint (without loading the arrays)."""
    with np.load(os.fspath(path)) as data:
        return json.loads(bytes(data[_META]).decode("utf-8"))["meta"]


def load_checkpoint(search, path) -> dict:
    """Restores a checkpoint written by `save_checkpoint`; returns its `meta`.

    Raises:
        ValueError: when the checkpoint does not match the search's variables
            (another space or configuration); nothing is assigned then.
    """
    with np.load(os.fspath(path)) as data:
        payload = json.loads(bytes(data[_META]).decode("utf-8"))
        assignments = []
        for group, variables in _groups(search).items():
            stored = payload["names"].get(group)
            current = [variable.path for variable in variables]
            if stored is None or len(stored) != len(current):
                raise ValueError(
                    f"checkpoint {path}: {group} has {0 if stored is None else len(stored)} "
                    f"variables, the search has {len(current)}; it is from another search."
                )
            for index, variable in enumerate(variables):
                value = data[f"{group}/{index:05d}"]
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"checkpoint {path}: {stored[index]} has shape {value.shape}, the "
                        f"search's {current[index]} has {tuple(variable.shape)}."
                    )
                assignments.append((variable, value))
    for variable, value in assignments:
        variable.assign(value)
    return payload["meta"]


__all__ = [
    "CHECKPOINT_FILE",
    "load_checkpoint",
    "read_checkpoint_meta",
    "save_checkpoint",
    "search_variables",
    "write_npz_atomically",
]
