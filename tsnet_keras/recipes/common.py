"""What every recipe shares: parameter checks, the strategy, metrics files, folders."""

from __future__ import annotations

import json
import math
import numbers
import os

from tsnet_keras import checks
from tsnet_keras.checks import check_int  # noqa: F401  (the recipes' import)
from tsnet_keras.files import atomic_write_text
from tsnet_keras.space.architecture import Architecture

METRICS_FILE = "metrics.json"
ARCHITECTURE_FILE = "architecture.json"
MODEL_FILE = "model.keras"


# ------------------------------------------------------------------ parameter checks
def check_number(name: str, value, minimum: float = 0.0, below: float | None = None,
                 strict: bool = False) -> float:
    """`checks.check_number` with the recipes' default bound: a parameter >= 0."""
    return checks.check_number(name, value, minimum, below, strict=strict)


def check_output_dir(output_dir, name: str = "output_dir") -> str:
    if not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir):
        raise ValueError(f"`{name}` must be a folder path, got {output_dir!r}.")
    output_dir = os.fspath(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"`{name}` {output_dir!r} exists and is not a folder.")
    return output_dir


def check_previous_dir(previous_dir, needs: tuple, produced_by: str, name: str = "previous_dir") -> str:
    """`previous_dir` as str, after checking that it holds the files `needs`."""
    if not isinstance(previous_dir, (str, os.PathLike)) or not os.fspath(previous_dir):
        raise ValueError(f"`{name}` must be the output_dir of {produced_by}, got {previous_dir!r}.")
    previous_dir = os.fspath(previous_dir)
    if not os.path.isdir(previous_dir):
        raise ValueError(f"`{name}` {previous_dir!r} does not exist; run {produced_by} first.")
    missing = [file for file in needs if not os.path.exists(os.path.join(previous_dir, file))]
    if missing:
        raise ValueError(
            f"`{name}` {previous_dir!r} has no {', '.join(missing)}; run {produced_by} first "
            "(or let it finish)."
        )
    return previous_dir


def load_architecture(previous_dir, name: str = "previous_dir",
                      produced_by: str = "a search step") -> Architecture:
    """The `architecture.json` of a previous recipe's output folder."""
    previous_dir = check_previous_dir(previous_dir, (ARCHITECTURE_FILE,), produced_by, name)
    try:
        return Architecture.load(os.path.join(previous_dir, ARCHITECTURE_FILE))
    except (ValueError, TypeError) as error:
        raise ValueError(f"`{name}`: {os.path.join(previous_dir, ARCHITECTURE_FILE)} is not an "
                         f"architecture ({error}).") from None


def named_space(space):
    """`space` itself, or the named space (`tsnet_keras.spaces.get_space`)."""
    from tsnet_keras.space.named_spaces import get_space

    if isinstance(space, str):
        try:
            space = get_space(space)
        except ValueError as error:
            raise ValueError(f"`space`: {error}") from None
    return space


def load_trained_model(path):
    """A `model.keras` written by `retrain` (a `TSNet`, its architecture inside)."""
    import keras

    import tsnet_keras.models  # noqa: F401  (registers TSNet and the layers)

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001 - any loading failure is the file's fault
        raise ValueError(f"{path!r} is not a tsnet_keras model saved by `retrain`: "
                         f"{str(error)[:300]}") from None
    if not hasattr(model, "architecture"):
        raise ValueError(f"{path!r} holds a {type(model).__name__}, not a tsnet_keras TSNet.")
    return model


# ------------------------------------------------------------------------- devices
def choose_strategy(verbose: bool = True):
    """`MirroredStrategy` over the visible GPUs when there are several, else the default.

    Global batches: `batch_size` is split between the replicas.
    """
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if verbose:
        from tsnet_keras.recipes.data import console_logging, logger

        where = f"{len(gpus)} GPUs (MirroredStrategy)" if len(gpus) > 1 else (
            "1 GPU" if gpus else "CPU")
        console_logging()
        logger.info("devices: %s; %d replica(s)", where, strategy.num_replicas_in_sync)
    return strategy


class WorkerShare:
    """This process' part of a run under `strategy` (everything on one machine).

    Attributes:
        workers, index, chief: from `tsnet_keras.engine.worker_info`.
        shard: None, or `(workers, index)` for `video_dataset(shard=...)`.
        write_dir: where this process writes: `output_dir` on the chief, a temp
            folder (removed by `finish()`) on the other workers.
    """

    def __init__(self, strategy, output_dir):
        import tempfile

        from tsnet_keras.engine import worker_info

        self.workers, self.index, self.chief = worker_info(strategy)
        self.shard = (self.workers, self.index) if self.workers > 1 else None
        self.output_dir = os.fspath(output_dir)
        self.write_dir = (self.output_dir if self.chief
                          else tempfile.mkdtemp(prefix="tsnet-worker-"))

    def batch(self, batch_size: int, name: str = "batch_size") -> int:
        """This worker's part of a global batch (refused unless it divides evenly)."""
        if batch_size % self.workers:
            raise ValueError(f"`{name}` ({batch_size}) must be a multiple of the {self.workers} "
                             "workers: each reads an equal part of every global batch.")
        return batch_size // self.workers

    def batches(self, num_videos: int, batch_size: int) -> int:
        """Full global batches per epoch that every worker's share of `num_videos` fills."""
        return (num_videos // self.workers) // self.batch(batch_size)

    def finish(self):
        if self.write_dir != self.output_dir:
            import shutil

            shutil.rmtree(self.write_dir, ignore_errors=True)


def epoch_data(one_pass, steps_per_epoch: int):
    """`(train_data(epoch), batches)`: an epoch's training batches and one pass's length.

    `one_pass(epoch)` is one pass over the training videos; `batches` its known
    length (< 0: unknown, e.g. TFRecords). An epoch of more steps than one pass
    (`steps_per_epoch` as given; 0: one pass) goes over the videos again, so a
    small dataset trains with any `steps_per_epoch` instead of running dry.
    """
    batches = int(one_pass(0).cardinality())
    if not 0 < batches < steps_per_epoch:
        return one_pass, batches
    return (lambda epoch: one_pass(epoch).repeat()), batches


# ------------------------------------------------------------------------- files
def _plain(value):
    """JSON-ready copy: NumPy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return str(value)


def as_json(value):
    """`value` as it reads back from a JSON file (tuples become lists), for comparisons."""
    return json.loads(json.dumps(_plain(value)))


def write_json(path, data) -> None:
    """Writes JSON atomically (`tsnet_keras.files.atomic_write_text`: never half-written)."""
    atomic_write_text(path, json.dumps(_plain(data), indent=2))


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_metrics(output_dir, metrics: dict) -> str:
    """Writes `output_dir/metrics.json` (non-finite numbers become null); returns its path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, METRICS_FILE)
    write_json(path, metrics)
    return path


def write_architecture(output_dir, arch: Architecture) -> str:
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, ARCHITECTURE_FILE)
    write_json(path, arch.to_dict())
    return path


def architecture_summary(arch: Architecture, num_classes: int, crop: int) -> dict:
    """Params and one-view GFLOPs of `arch` at `crop`, split by stream."""
    from tsnet_keras.accounting import complexity

    cost = complexity(arch, num_classes=num_classes, crop=crop)
    return {
        "params": cost.params,
        "gflops": cost.gflops,
        "crop": crop,
        "gflops_by_part": {part: macs / 1e9 for part, macs in cost.by_stream().items()},
        "two_stream": arch.two_stream,
        "attention_blocks": sum(g.attention for _, s in arch.streams() for g in s.groups),
        "fusion_blocks": sum(g.fusion != "none" for g in arch.sparse.groups),
    }


__all__ = [
    "ARCHITECTURE_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "architecture_summary",
    "as_json",
    "check_int",
    "check_number",
    "check_output_dir",
    "check_previous_dir",
    "choose_strategy",
    "load_architecture",
    "load_trained_model",
    "named_space",
    "read_json",
    "write_architecture",
    "write_json",
    "write_metrics",
]
