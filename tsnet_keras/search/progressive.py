"""Progressive search (paper section 4.2) and the one-shot baseline, one function per step.

| step | searches | fixed / inherited |
|---|---|---|
| 1 | sparse stream alone (kernels, widths, expansion), with its own head | - |
| 2 | dense stream and fusion ops | sparse stream = step 1's most probable architecture, its weights inherited |
| 3 | attention places (GloRe on/off) in both streams | everything else = step 2's result, weights inherited |
| "one_shot" | every variable at once (paper Table 9 baseline) | - |

`run_search_step` writes into `output_dir`:

- `distribution.json`: the learned distribution (space, logits, marginals);
- `architecture.json`: the step's result: the most probable architecture, or with
  `target_macs` the most probable one within it, using at least `RESULT_FLOOR` (90%)
  of it where an architecture near the argmax does (`most_probable_within`);
- `model.weights.h5`: weights of `build_model(architecture)` sliced from the
  supernet (what the next step inherits; optionally BN-recalibrated);
- `supernet.weights.npz`: every supernet variable by path;
- `evidence.json` (with the evidence logits optimizer): which variables the held-out
  scores decided and with what z (`evidence_report`; the rest are leans);
- `history.csv` / `history.json`: one row per epoch (loss, held-out score,
  entropy, expected / sampled / most-probable MACs);
- `logs/`: TensorBoard;
- `checkpoint.npz`: the full search state every `checkpoint_every` steps
  (atomic). Running the same call again after a crash resumes from it; after
  a finished search it returns the stored result.

Data: `train_data` is a finite `tf.data.Dataset` of `(x, y)` batches (one
epoch in a fixed order) or a callable `epoch -> dataset` (per-epoch shuffling
with a seed). Step n scores the sampled architectures on held-out batch n of a
cycle: `val_data` is either a dataset of held-out batches (one cycle, repeated)
or a callable `start_batch -> dataset` whose first element is batch
`start_batch` of the cycle (it is repeated too, so one rotated cycle is
enough). Use the callable for decoding pipelines: it positions the held-out
data at the list level, before anything is decoded (`RecipeData.heldout_batches`
rotates the held-out video list), whereas a dataset of unknown length has to be
skipped batch by batch, decoding every batch it passes. x is a clip tensor
(single stream) or a dict `{"sparse", "dense"}`. Resuming replays the data from
the step of the checkpoint, so with deterministic datasets a resumed search
equals an uninterrupted one.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from tsnet_keras.engine import (
    Checkpointer,
    EpochHistory,
    check_same_config,
    check_same_start,
    distributed_fit_epochs,
    fit_epochs,
    local_replicas,
    worker_info,
    write_history,
)
from tsnet_keras.search.batch_norm import recalibrate_batch_norm
from tsnet_keras.search.checkpoint import (
    CHECKPOINT_FILE,
    find_checkpoint,
    load_checkpoint,
    read_checkpoint_meta,
    remove_stale_temp_files,
    save_checkpoint,
    write_npz_atomically,
)
from tsnet_keras.checks import check_choice
from tsnet_keras.files import atomic_path, atomic_write_text
from tsnet_keras.renames import renamed_argument, renamed_keys, renamed_rows
from tsnet_keras.search.distribution import ArchitectureDistribution
from tsnet_keras.search.estimator import DEFAULTS
from tsnet_keras.search.evidence import LOGITS_OPTIMIZERS, evidence_report
from tsnet_keras.search.expected_macs import MacsModel
from tsnet_keras.search.optimizers import WEIGHTS_OPTIMIZERS
from tsnet_keras.search.parsec import ParsecSearch, check_target_macs, graph_optimization
from tsnet_keras.models.supernet import layer_choices
from tsnet_keras.space.architecture import Architecture
from tsnet_keras.space.rules import DEFAULT_CROP
from tsnet_keras.space.search_space import TwoStreamSpace

SEARCH_STEPS = (1, 2, 3, "one_shot")
# `ParsecSearch`'s stream dropout by step. Step 2 trains a new dense stream beside the sparse
# stream step 1 fitted, which otherwise starves it of gradient (BENCHMARKS.md section 8,
# "stream dropout"); the other steps keep 0 (one stream, or both streams start together).
STREAM_DROPOUT = {1: 0.0, 2: 0.5, 3: 0.0, "one_shot": 0.0}
# A step's result uses at least this share of its FLOPs target where an architecture
# near the argmax does (`most_probable_within`): a budget asked for is a budget used.
RESULT_FLOOR = 0.9
EVIDENCE_FILE = "evidence.json"
HISTORY_FIELDS = (
    "epoch", "step", "loss", "heldout_score", "logits_loss", "entropy", "expected_macs",
    "sampled_macs", "most_probable_macs", "seconds",
)


class SearchDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class SearchResult:
    """What one search step produced.

    Attributes:
        step: 1, 2, 3 or "one_shot".
        output_dir: where the outputs are.
        architecture: the most probable `Architecture`.
        distribution: the `ArchitectureDistribution`.
        history: list of per-epoch dicts (`HISTORY_FIELDS`).
        search: the `ParsecSearch` model (None when loaded from a finished run).
    """

    step: object
    output_dir: str
    architecture: Architecture
    distribution: ArchitectureDistribution
    history: list = field(default_factory=list)
    search: ParsecSearch | None = None


# ------------------------------------------------------------------ spaces
def step_space(step, space: TwoStreamSpace, previous: Architecture | None = None) -> TwoStreamSpace:
    """The sub-space one progressive step searches.

    Args:
        step: 1, 2, 3 or "one_shot".
        space: the full space (e.g. `auto_tsnet()`).
        previous: the previous step's most probable architecture (steps 2, 3).

    Raises:
        ValueError: unknown step, missing previous architecture, or a previous
            architecture that is not in `space` (the message names the variable).
    """
    if step not in SEARCH_STEPS:
        raise ValueError(f"`step` must be one of {SEARCH_STEPS}, got {step!r}.")
    if step == "one_shot":
        return space
    if step == 1:
        single = space.single_stream() if space.dense is not None else space
        return single.only(1)
    if space.dense is None:
        raise ValueError(f"step {step} needs a two-stream space; this one has no dense stream.")
    if previous is None:
        raise ValueError(f"step {step} needs the previous step's architecture (`previous_dir`).")
    if step == 2:
        try:
            space.single_stream().validate(
                Architecture(sparse=previous.sparse, head_units=previous.head_units,
                             dropout_rate=previous.dropout_rate,
                             fusion_merge=previous.fusion_merge)
            )
        except ValueError as error:
            raise ValueError(
                f"the step-1 architecture does not belong to this space: {error}"
            ) from None
        sparse_keys = [v.key for v in space.variables(searchable=False) if v.stream == "sparse"
                       and v.name not in ("fusion", "attention")]
        single_values = space.single_stream().values(
            Architecture(sparse=previous.sparse, head_units=previous.head_units,
                         dropout_rate=previous.dropout_rate, fusion_merge=previous.fusion_merge)
        )
        base = space.architecture({k: single_values[k] for k in sparse_keys})
        return space.only(2, fixed=base)
    try:
        space.validate(previous)
    except ValueError as error:
        raise ValueError(f"the step-2 architecture does not belong to this space: {error}") from None
    return space.only(3, fixed=previous)


# -------------------------------------------------------------------- data
def _check_split(data, name, epoch=0):
    dataset = data(epoch) if callable(data) else data
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"`{name}` must be a tf.data.Dataset (or a callable -> dataset), "
                        f"got {type(dataset).__name__}.")
    cardinality = int(tf.data.experimental.cardinality(dataset))
    if cardinality == 0:
        raise ValueError(f"`{name}` is empty: the search needs at least one batch.")
    for first in dataset.take(1):
        break
    else:
        raise ValueError(f"`{name}` is empty: the search needs at least one batch.")
    return dataset, cardinality, int(tf.nest.flatten(first[1])[0].shape[0])


def _check_batches(train_batch, heldout_batch, replicas, samples_per_replica, path_batch):
    """Each replica trains its samples on its batch (or on shares of it: `path_batch="split"`)
    and scores them on its held-out share."""
    needed = samples_per_replica if path_batch == "split" else 1
    if train_batch // replicas < needed:
        raise ValueError(
            f"`train_data` batches of {train_batch} clips over {replicas} replica(s) give "
            f"{train_batch // replicas} per replica, fewer than {needed} (with "
            f"path_batch={path_batch!r} and samples_per_replica={samples_per_replica}): use a "
            f"global batch of at least {replicas * needed}."
        )
    if heldout_batch < replicas:
        raise ValueError(
            f"`val_data` batches of {heldout_batch} clips leave some of the {replicas} replicas "
            f"without a held-out clip: use held-out batches of at least {replicas}."
        )


def heldout_positions(val_data):
    """`val_data` as a callable `start_batch -> dataset` of held-out batches from there, cycled.

    A callable is used as it is (then repeated); a dataset is repeated and skipped
    to `start_batch` modulo its length (every batch up to `start_batch` when the
    length is unknown, decoding each: pass a callable for decoding pipelines).
    """
    if callable(val_data):
        return lambda start: val_data(int(start)).repeat()
    size = int(tf.data.experimental.cardinality(val_data))

    def from_position(start):
        offset = start % size if size > 0 else start
        return val_data.repeat().skip(offset)

    return from_position


def _labels_in_range(num_classes, name):
    """A dataset map that stops with an error naming `name` at a label outside the classes.

    A label >= num_classes (or -1) would give an all-zero one-hot target: a loss and
    a score of 0 for that clip, silently.
    """
    def check(x, y):
        if not y.dtype.is_integer:
            return x, y
        message = f"`{name}` has a label outside [0, {num_classes}) (num_classes={num_classes})"
        with tf.control_dependencies([
            tf.debugging.assert_non_negative(y, message=message),
            tf.debugging.assert_less(y, tf.cast(num_classes, y.dtype), message=message),
        ]):
            return x, tf.identity(y)

    return check


def _epoch_dataset(train_data, heldout_at, epoch, skip, steps_per_epoch, num_classes,
                   split=None):
    """The epoch's `((x, y), (x_heldout, y_heldout))` from step `skip` on.

    `split`: None, or `(replicas, train_batch, heldout_batch)` to cut each batch
    in per-replica batches (a worker of `MultiWorkerMirroredStrategy` with
    several replicas hands one to each).
    """
    train = train_data(epoch) if callable(train_data) else train_data
    train = train.take(steps_per_epoch).skip(skip).map(_labels_in_range(num_classes, "train_data"))
    # Step n uses held-out batch n of the cycle.
    heldout = heldout_at(epoch * steps_per_epoch + skip).map(
        _labels_in_range(num_classes, "val_data"))
    if split is not None and split[0] > 1:
        replicas, train_batch, heldout_batch = split
        train = train.rebatch(train_batch // replicas, drop_remainder=True)
        heldout = heldout.rebatch(heldout_batch // replicas, drop_remainder=True)
    return tf.data.Dataset.zip((train, heldout))


# --------------------------------------------------------------- callbacks
class _NaNGuard(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.failed = None

    def on_train_batch_end(self, batch, logs=None):
        for name in ("loss", "logits_loss", "expected_macs"):
            value = (logs or {}).get(name)
            if value is not None and not math.isfinite(float(value)):
                self.failed = (name, float(value), int(self.model.search_step.numpy()))
                self.model.stop_training = True
                return


class _WarmUp(keras.callbacks.Callback):
    """Logits frozen in the first `epochs` epochs, through `logits_frozen_flag`: a variable
    read by the traced step, so switching it at an epoch's start retraces nothing."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.model.logits_frozen = epoch < self.epochs


def _tensorboard_available():
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------- files
def _fixed_model_weights(search, arch, output_dir, num_classes, recalibration):
    from tsnet_keras.models import build_model

    model = build_model(arch, num_classes=num_classes, crop=None)
    search.supernet.copy_to_model(model, arch)
    if recalibration is not None:
        dataset, batches = recalibration
        recalibrate_batch_norm(model, dataset, batches)
    path = os.path.join(output_dir, "model.weights.h5")
    with atomic_path(path, suffix=".weights.h5") as temp:
        model.save_weights(temp)
    return model


def _write_evidence(search, output_dir) -> None:
    """`EVIDENCE_FILE`: which variables the evidence decided (removed for other optimizers)."""
    path = os.path.join(output_dir, EVIDENCE_FILE)
    report = evidence_report(search.distribution, search.logits_optimizer)
    if report is not None:
        atomic_write_text(path, json.dumps(report, indent=1))
    elif os.path.exists(path):
        os.remove(path)


def load_evidence(output_dir) -> dict | None:
    """A finished step's `EVIDENCE_FILE` (`evidence_report`), None where it has none."""
    path = os.path.join(output_dir, EVIDENCE_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _write_outputs(search, output_dir, history, num_classes, recalibration):
    distribution = search.distribution
    arch = distribution.most_probable_within(search.target_macs, floor=RESULT_FLOOR)
    distribution.save(os.path.join(output_dir, "distribution.json"))
    _write_evidence(search, output_dir)
    atomic_write_text(os.path.join(output_dir, "architecture.json"), arch.to_json())
    write_npz_atomically(
        os.path.join(output_dir, "supernet.weights.npz"),
        {v.path: np.asarray(keras.ops.convert_to_numpy(v)) for v in search.supernet.variables},
    )
    _fixed_model_weights(search, arch, output_dir, num_classes, recalibration)
    write_history(output_dir, history, HISTORY_FIELDS)
    return arch


def _remove_worker_dir(write_dir, output_dir):
    """A non-chief worker's temp folder goes once the run ends (the chief's is output_dir)."""
    if os.fspath(write_dir) != os.fspath(output_dir):
        shutil.rmtree(write_dir, ignore_errors=True)


def load_step_result(output_dir) -> SearchResult:
    """Reads the outputs of a finished `run_search_step`."""
    distribution = ArchitectureDistribution.load(os.path.join(output_dir, "distribution.json"))
    arch = Architecture.load(os.path.join(output_dir, "architecture.json"))
    history = []
    path = os.path.join(output_dir, "history.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            history = renamed_rows(json.load(handle))
    found = find_checkpoint(os.path.join(output_dir, CHECKPOINT_FILE))
    step = found["meta"]["config"]["step"] if found is not None else None
    return SearchResult(step, os.fspath(output_dir), arch, distribution, history)


# ----------------------------------------------------------- inheritance
def inherit_weights(supernet, previous_dir, num_classes: int) -> list:
    """Loads a previous step's `model.weights.h5` into the matching super-block slices.

    The previous architecture must lie in this supernet's space for every
    variable both spaces share (checked first; the error names the variable).

    Returns:
        Names of the layers that received weights.
    """
    from tsnet_keras.models import build_model

    for name in ("architecture.json", "distribution.json", "model.weights.h5"):
        if not os.path.exists(os.path.join(previous_dir, name)):
            raise ValueError(f"previous_dir {previous_dir!r} has no {name}; run the previous step first.")
    previous_space = ArchitectureDistribution.load(
        os.path.join(previous_dir, "distribution.json")
    ).space
    arch = Architecture.load(os.path.join(previous_dir, "architecture.json"))
    previous_space.validate(arch)
    previous_values = previous_space.values(arch)
    target = {v.key: v.choices for v in supernet.space.variables(searchable=False)}
    for key, value in previous_values.items():
        if key in target and value not in target[key]:
            raise ValueError(
                f"cannot inherit weights from {previous_dir!r}: its architecture has "
                f"{key} = {value!r}, which this space does not allow (choices {target[key]})."
            )
    model = build_model(arch, num_classes=num_classes, crop=None)
    try:
        model.load_weights(os.path.join(previous_dir, "model.weights.h5"))
    except ValueError as error:
        raise ValueError(
            f"cannot inherit weights from {previous_dir!r} (num_classes={num_classes}?): {error}"
        ) from None
    weights = {}
    for layer in model.layers:
        if layer.weights:
            prefix = layer.name + "/"
            weights[layer.name] = {
                (v.path.split(prefix, 1)[1] if prefix in v.path else v.name):
                np.asarray(keras.ops.convert_to_numpy(v)) for v in layer.weights
            }
    choices = layer_choices(previous_space, arch)
    return supernet.load_fixed_weights(weights, choices)


# ------------------------------------------------------------- the step
# `ParsecSearch` arguments a resumed run does not depend on (the initial weights are restored,
# Grappler and the paths in flight change speed and memory only), so a checkpoint written
# without them, or with other values, still resumes.
NOT_COMPARED = ("outer_taps", "graph_optimization", "paths_in_flight")


def run_config(step, search, settings, extra_config=None) -> dict:
    """What a checkpoint stores to recognise its search: the `ParsecSearch`'s config
    (every constructor argument, so new ones are compared too), `settings` and
    `extra_config`, as they read back from JSON."""
    score = search.score
    if callable(score):  # get_config refuses callables; compare the function's name
        search.score = "accuracy"
        try:
            config = search.get_config()
        finally:
            search.score = score
        config["score"] = f"{getattr(score, '__module__', '')}.{getattr(score, '__qualname__', score)}"
    else:
        config = search.get_config()
    for key in ("name", *NOT_COMPARED):
        config.pop(key, None)
    # Compared only where it acts: it changes nothing without a warm-up, and checkpoints
    # written before it existed hold the default (stream dropout's too).
    if not settings.get("warmup_epochs") or config.get("warmup_sampling") == "distribution":
        config.pop("warmup_sampling", None)
    if not config.get("stream_dropout"):
        config.pop("stream_dropout", None)
    config = {"step": step, **config, **settings, **(extra_config or {})}
    return json.loads(json.dumps(config, default=str))


def run_search_step(
    step,
    space: TwoStreamSpace,
    train_data,
    val_data,
    output_dir,
    previous_dir=None,
    *,
    num_classes: int,
    epochs: int = 1,
    steps_per_epoch: int | None = None,
    crop=DEFAULT_CROP,
    target_macs=None,
    macs_penalty: float = 1.0,
    hinge: str = "expected",
    samples_per_replica: int = DEFAULTS.samples_per_replica,
    score="accuracy",
    temperature: float = DEFAULTS.temperature,
    warmup_epochs: int = 0,
    stream_dropout: float | None = None,
    learning_rate: float = 0.4,
    momentum: float = 0.9,
    weight_decay: float | None = None,
    weights_optimizer: str = "sgd",
    logits_learning_rate: float = 0.025,
    logits_optimizer: str = DEFAULTS.logits_optimizer,
    seed: int = 0,
    checkpoint_every: int = 100,
    recalibrate_batches: int = 0,
    strategy=None,
    resume: bool = True,
    tensorboard: bool = True,
    callbacks=None,
    verbose="auto",
    dynamic_shapes=None,
    extra_config=None,
    **parsec_options,
) -> SearchResult:
    """Runs one progressive-search step (or the one-shot search) and writes its outputs.

    Args:
        step: 1, 2, 3 or "one_shot".
        space: the full `TwoStreamSpace` (the step's sub-space is derived).
        train_data: dataset of `(x, y)` batches (one epoch) or callable epoch -> dataset.
        val_data: dataset of held-out `(x, y)` batches (cycled), or a callable
            `start_batch -> dataset` starting at that batch of the cycle (see the
            module docstring; no decoding to reach a position).
        output_dir: directory for the outputs (created).
        previous_dir: output_dir of the previous step (steps 2 and 3).
        num_classes: int.
        epochs: int. Search epochs (paper: 800 / 400 / 200 on MiniKinetics-100).
        steps_per_epoch: int or None (the training dataset's length).
        crop: training crop, for the MACs. Defaults to 160.
        target_macs: None, int or (low, high): the FLOPs hinge's target for the
            network this step searches (sparse stream alone in step 1).
        macs_penalty, hinge, samples_per_replica, score, temperature: see `ParsecSearch`.
        warmup_epochs: int. First epochs train the weights only (logits frozen).
        stream_dropout: float or None: `ParsecSearch`'s; None takes the step's
            `STREAM_DROPOUT` (0.5 in step 2, 0 elsewhere).
        learning_rate, momentum, weight_decay: SGD of the weights (cosine decay
            over the whole step). Defaults 0.4, 0.9, None.
        weights_optimizer: "sgd" (`MaskedSGD`, the paper's) or "adamw"
            (`MaskedAdamW` at `learning_rate`).
        logits_learning_rate: Adam's rate on the architecture logits (the paper's
            alpha), with `logits_optimizer="adam"`. Defaults to 0.025
            (`alpha_learning_rate` is its deprecated name).
        logits_optimizer: "evidence" (the default, `EvidenceOptimizer`: a logit
            moves only on evidence, see `tsnet_keras.search.evidence`) or "adam".
        seed: int. Seeds the architecture draws.
        checkpoint_every: int. Steps between checkpoints (0: epoch ends only).
        recalibrate_batches: int. If > 0, BN statistics of the saved fixed model
            are recomputed on that many training batches (precise BN).
        strategy: a `tf.distribute.Strategy` (default: the current one).
        resume: bool. Resume from `output_dir/checkpoint.npz` if present.
        tensorboard: bool. Write TensorBoard logs to `output_dir/logs`.
        callbacks: extra Keras callbacks.
        verbose: `fit` verbosity.
        dynamic_shapes: passed to the `Supernet`.
        extra_config: dict of other settings that change the result (e.g. a
            recipe's batch size and held-out share), stored and compared on resume.
        **parsec_options: other `ParsecSearch` arguments, passed through.

    Every setting that changes the result (`ParsecSearch.get_config()`, the
    optimizers' settings, the length, `extra_config`) is stored in the
    checkpoint; resuming with a different one is refused, naming it.

    Returns:
        `SearchResult`.

    Raises:
        ValueError: bad step, empty split, unreachable `target_macs`, previous
            architecture outside the space, a checkpoint with other settings
            (the message names them; `resume=False` starts over).
        SearchDivergedError: the loss became NaN / infinite (last good
            checkpoint kept).
    """
    logits_learning_rate = renamed_argument(
        parsec_options, "alpha_learning_rate", "logits_learning_rate", logits_learning_rate,
        0.025, where="run_search_step")
    _check_step_arguments(epochs, weights_optimizer, warmup_epochs, checkpoint_every)
    sub_space = step_space(step, space, _previous_architecture(step, previous_dir))
    data = _check_data(train_data, val_data, strategy, steps_per_epoch, samples_per_replica,
                       parsec_options.get("path_batch", DEFAULTS.path_batch))
    check_target_macs(MacsModel(sub_space, num_classes, crop), target_macs)
    folder = _prepare_output(output_dir, data.chief, resume)

    search = _new_search(data.strategy, sub_space, num_classes, seed, crop=crop,
                         samples_per_replica=samples_per_replica, score=score,
                         temperature=temperature, target_macs=target_macs,
                         macs_penalty=macs_penalty, hinge=hinge, dynamic_shapes=dynamic_shapes,
                         stream_dropout=(STREAM_DROPOUT[step] if stream_dropout is None
                                         else stream_dropout), **parsec_options)
    optimizers = {"learning_rate": learning_rate, "momentum": momentum,
                  "weight_decay": weight_decay, "weights_optimizer": weights_optimizer,
                  "logits_learning_rate": logits_learning_rate,
                  "logits_optimizer": check_choice("logits_optimizer", logits_optimizer,
                                                   LOGITS_OPTIMIZERS)}
    config = _step_config(step, search, data, optimizers, extra_config, epochs=epochs,
                          warmup_epochs=warmup_epochs, recalibrate_batches=recalibrate_batches)
    if _finished_before(folder, config):
        _remove_worker_dir(folder.write_dir, output_dir)
        return load_step_result(output_dir)

    history = _resume_or_inherit(search, data, folder, optimizers, epochs, previous_dir,
                                 num_classes, output_dir)
    _run_epochs(search, data, folder, config, history, train_data, num_classes, epochs=epochs,
                warmup_epochs=warmup_epochs, checkpoint_every=checkpoint_every,
                tensorboard=tensorboard, callbacks=callbacks, verbose=verbose)
    arch = _finish_step(search, config, history, folder, num_classes,
                        _recalibration(train_data, recalibrate_batches))
    _remove_worker_dir(folder.write_dir, output_dir)
    return SearchResult(step, os.fspath(output_dir), arch, search.distribution, history, search)


@dataclass(frozen=True)
class _StepData:
    """A step's checked data and where it runs (`_check_data`)."""

    strategy: object
    train_batch: int
    heldout_batch: int
    heldout_at: object  # `heldout_positions(val_data)`
    steps_per_epoch: int
    workers: int
    chief: bool


@dataclass(frozen=True)
class _StepFolder:
    """Where a step writes (`_prepare_output`): the checkpoint found, this worker's folder
    and its checkpoint path."""

    found: dict | None
    write_dir: str
    checkpoint_path: str


def _step_config(step, search, data, optimizers, extra_config, *, epochs, warmup_epochs,
                 recalibrate_batches) -> dict:
    """The step's `run_config`: the search, its length and optimizers, the workers."""
    settings = {"epochs": epochs, "steps_per_epoch": data.steps_per_epoch,
                "warmup_epochs": warmup_epochs, **optimizers,
                "recalibrate_batches": recalibrate_batches}
    if data.workers > 1:  # each worker's batch is its share: the global batch changes with them
        settings["workers"] = data.workers
    return run_config(step, search, settings, extra_config)


def _finished_before(folder, config) -> bool:
    """Whether the checkpoint found is a completed search with this `config` (one with
    other settings is refused, naming them)."""
    found = folder.found
    if found is None:
        return False
    check_same_config(found["path"], renamed_keys(found["meta"].get("config", {})), config)
    return bool(found["meta"].get("completed"))


def _run_epochs(search, data, folder, config, history, train_data, num_classes, *, epochs,
                warmup_epochs, checkpoint_every, tensorboard, callbacks, verbose) -> None:
    """Runs the step's epochs (from the restored step) with its checkpoints, history and NaN
    guard; `SearchDivergedError` if the loss diverged."""
    guard, checkpointer, recorder, user_callbacks = _step_callbacks(
        search, config, history, folder.write_dir, folder.checkpoint_path, checkpoint_every,
        data.steps_per_epoch, tensorboard, callbacks,
    )
    split = ((local_replicas(data.strategy), data.train_batch, data.heldout_batch)
             if data.workers > 1 else None)
    _search_epochs(
        search, data.strategy, lambda epoch, skip: _epoch_dataset(
            train_data, data.heldout_at, epoch, skip, data.steps_per_epoch, num_classes, split),
        epochs=epochs, steps_per_epoch=data.steps_per_epoch, verbose=verbose,
        callbacks=[_WarmUp(warmup_epochs), guard, recorder, checkpointer, *user_callbacks],
    )
    _raise_if_diverged(guard, checkpointer, folder.checkpoint_path)


def _new_search(strategy, sub_space, num_classes, seed, **options) -> ParsecSearch:
    """The step's `ParsecSearch`, with the same initial weights in every run with this seed
    (a resumed run restores them anyway)."""
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        return ParsecSearch(sub_space, num_classes, seed=seed, **options)


def _search_epochs(search, strategy, epoch_dataset, **fit_options) -> None:
    """The engine's loop: Keras' `fit` on one worker, the engine's own loop on several."""
    workers = worker_info(strategy)[0]
    loop = fit_epochs if workers == 1 else functools.partial(distributed_fit_epochs,
                                                             strategy=strategy)
    with graph_optimization(search.graph_optimization):  # fit applies it too; the loop needs it
        loop(search, epoch_dataset, step_fn=_search_step_number, **fit_options)


def _recalibration(train_data, batches):
    """`(dataset, batches)` the saved fixed model's BN statistics are recomputed on, or None."""
    if not batches:
        return None
    return (train_data(0) if callable(train_data) else train_data), batches


def _finish_step(search, config, history, folder, num_classes, recalibration) -> Architecture:
    """Writes the step's outputs and its completed checkpoint; the most probable architecture."""
    done = _search_step_number(search)
    arch = _write_outputs(search, folder.write_dir, history, num_classes, recalibration)
    save_checkpoint(search, folder.checkpoint_path,
                    _checkpoint_meta(config, history, done, completed=True))
    return arch


def _check_step_arguments(epochs, weights_optimizer, warmup_epochs, checkpoint_every) -> None:
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive int, got {epochs!r}.")
    if weights_optimizer not in WEIGHTS_OPTIMIZERS:
        raise ValueError(f"`weights_optimizer` must be one of {WEIGHTS_OPTIMIZERS}, got "
                         f"{weights_optimizer!r}.")
    if not 0 <= warmup_epochs < epochs:
        raise ValueError(f"`warmup_epochs` must be in [0, epochs), got {warmup_epochs!r}.")
    if checkpoint_every < 0:
        raise ValueError(f"`checkpoint_every` must be >= 0, got {checkpoint_every!r}.")


def _previous_architecture(step, previous_dir):
    """The architecture step 2 or 3 starts from (None for step 1 and the one-shot search)."""
    if step not in (2, 3):
        return None
    if previous_dir is None:
        raise ValueError(f"step {step} needs `previous_dir` (the output_dir of step {step - 1}).")
    path = os.path.join(previous_dir, "architecture.json")
    if not os.path.exists(path):
        raise ValueError(f"previous_dir {previous_dir!r} has no architecture.json.")
    return Architecture.load(path)


def _check_data(train_data, val_data, strategy, steps_per_epoch, samples_per_replica, path_batch):
    """Checks both splits against the strategy's replicas.

    Returns:
        `_StepData`.
    """
    _, train_size, train_batch = _check_split(train_data, "train_data")
    _, _, heldout_batch = _check_split(val_data, "val_data")
    heldout_at = heldout_positions(val_data)
    strategy = strategy or tf.distribute.get_strategy()
    _check_batches(train_batch, heldout_batch, local_replicas(strategy), samples_per_replica,
                   path_batch)
    if steps_per_epoch is None:
        if train_size < 0:
            raise ValueError("the length of `train_data` is unknown: pass `steps_per_epoch`.")
        steps_per_epoch = train_size
    if train_size > 0 and steps_per_epoch > train_size:
        raise ValueError(
            f"`steps_per_epoch` ({steps_per_epoch}) exceeds the batches of `train_data` "
            f"({train_size})."
        )
    workers, _, chief = worker_info(strategy)
    return _StepData(strategy, train_batch, heldout_batch, heldout_at, steps_per_epoch,
                     workers, chief)


def _prepare_output(output_dir, chief, resume):
    """The checkpoint found (or None), the folder this worker writes, its checkpoint path."""
    os.makedirs(output_dir, exist_ok=True)
    if chief:
        remove_stale_temp_files(output_dir)
    found = find_checkpoint(os.path.join(output_dir, CHECKPOINT_FILE)) if resume else None
    # Several machines: the chief writes output_dir, the others a temp folder (removed at the end).
    write_dir = output_dir if chief else tempfile.mkdtemp(prefix="tsnet-worker-")
    return _StepFolder(found, write_dir, os.path.join(write_dir, CHECKPOINT_FILE))


def _resume_or_inherit(search, data, folder, optimizers, epochs, previous_dir, num_classes,
                       output_dir) -> list:
    """Compiles the search, then restores the checkpoint found, else inherits the previous
    step's weights; the history."""
    strategy, found = data.strategy, folder.found
    with strategy.scope():
        search.compile(total_steps=epochs * data.steps_per_epoch, **optimizers)
    # Before any restore: assigning variables are collectives under MultiWorkerMirroredStrategy.
    check_same_start(strategy, found["meta"].get("step", 0) if found is not None else 0,
                     output_dir)
    history = []
    if found is not None:
        history = renamed_rows(load_checkpoint(search, found).get("history", []))
    elif previous_dir is not None:
        inherit_weights(search.supernet, previous_dir, num_classes)
    return history


def _checkpoint_meta(config, history, at_step, completed) -> dict:
    return {"config": config, "history": history, "step": at_step, "completed": completed}


def _search_step_number(model) -> int:
    return int(model.search_step.numpy())


def _most_probable_macs(model) -> dict:
    dist = model.distribution
    return {"most_probable_macs": dist.macs_model.macs_of(dist.most_probable())}


def _step_callbacks(search, config, history, write_dir, checkpoint_path, checkpoint_every,
                    steps_per_epoch, tensorboard, callbacks):
    """`(NaN guard, checkpointer, history recorder, the user's callbacks)` of a step."""
    guard = _NaNGuard()
    healthy = lambda: guard.failed is None  # noqa: E731
    checkpointer = Checkpointer(
        lambda model, at_step: save_checkpoint(
            model, checkpoint_path, _checkpoint_meta(config, history, at_step, False)
        ),
        _search_step_number, checkpoint_every, steps_per_epoch, healthy,
    )
    recorder = EpochHistory(history, HISTORY_FIELDS, _search_step_number,
                            lambda rows: write_history(write_dir, rows, HISTORY_FIELDS),
                            _most_probable_macs, healthy)
    user_callbacks = []
    if tensorboard and not _tensorboard_available():
        warnings.warn("TensorBoard is not installed (pip install tensorboard): no logs written.")
        tensorboard = False
    if tensorboard:
        user_callbacks.append(keras.callbacks.TensorBoard(
            log_dir=os.path.join(write_dir, "logs"), update_freq="epoch", profile_batch=0,
            write_graph=False,
        ))
    return guard, checkpointer, recorder, user_callbacks + list(callbacks or [])


def _raise_if_diverged(guard, checkpointer, checkpoint_path) -> None:
    if not guard.failed:
        return
    name, value, at_step = guard.failed
    last = checkpointer.last_step
    if last is None and os.path.exists(checkpoint_path):
        last = read_checkpoint_meta(checkpoint_path).get("step")
    raise SearchDivergedError(
        f"the search diverged at step {at_step}: {name} = {value}. Stopped; the last "
        f"good checkpoint ({checkpoint_path}, step {last}) is kept. Lower the learning "
        "rate or check the data, then run again to resume from it."
    )


def progressive_search(
    space: TwoStreamSpace,
    train_data,
    val_data,
    output_dir,
    *,
    num_classes: int,
    epochs=(800, 400, 200),
    target_macs=(None, None, None),
    warmup_epochs=0,
    stream_dropout=(None, None, None),
    **kwargs,
) -> list:
    """Steps 1, 2 and 3 in `output_dir/step1`, `step2`, `step3` (paper section 4.2).

    Args:
        epochs: epochs of each step (paper: 800, 400, 200).
        target_macs: per-step MACs targets (step 1: the sparse stream alone).
        warmup_epochs: int (every step) or one per step: first epochs with the
            logits frozen.
        stream_dropout: one per step; None takes the step's `STREAM_DROPOUT`.
        **kwargs: other `run_search_step` arguments, shared by the steps.

    Returns:
        list of three `SearchResult`.
    """
    if isinstance(warmup_epochs, int):
        warmup_epochs = (warmup_epochs,) * 3
    results, previous = [], None
    for index, step in enumerate((1, 2, 3)):
        directory = os.path.join(output_dir, f"step{step}")
        results.append(run_search_step(
            step, space, train_data, val_data, directory, previous, num_classes=num_classes,
            epochs=epochs[index], target_macs=target_macs[index],
            warmup_epochs=warmup_epochs[index], stream_dropout=stream_dropout[index], **kwargs,
        ))
        previous = directory
    return results


def one_shot_search(space, train_data, val_data, output_dir, **kwargs) -> SearchResult:
    """Searches every variable at once (the paper's Table 9 baseline)."""
    return run_search_step("one_shot", space, train_data, val_data, output_dir, **kwargs)


__all__ = [
    "HISTORY_FIELDS",
    "SEARCH_STEPS",
    "STREAM_DROPOUT",
    "SearchDivergedError",
    "SearchResult",
    "heldout_positions",
    "inherit_weights",
    "load_step_result",
    "one_shot_search",
    "progressive_search",
    "run_search_step",
    "step_space",
]
