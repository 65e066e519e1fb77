"""Training an architecture from scratch (paper section 5.2), resumable.

`retrain(arch, output_dir, ...)` builds `build_model(arch)` with fresh weights
and trains it with the paper's recipe:

- `optimizer="sgd"`: the paper's SGD, momentum 0.9, peak learning rate
  `base_learning_rate x batch_size / reference_batch_size` (linear scaling
  rule, Goyal et al. 2017). The paper gives 0.4 without its batch size; we
  read it as the rate of a global batch of 64, so batch 8 trains at 0.05 and
  batch 512 at 3.2 (the search recipe reads it the same way);
- `optimizer="adamw"` (the default): AdamW at `adamw_learning_rate` (2e-3).
  At the CPU recipes' batch of 8 the paper's SGD learns the synthetic task too
  slowly for a run of minutes (measured: nothing in 800 steps at 0.05, where
  AdamW learns it within a few hundred; BENCHMARKS.md section 5);
- cosine decay over all steps after a linear warm-up of `warmup_epochs`
  (from a tenth of the peak, as PySlowFast);
- weight decay 5e-5 (X3D's; the paper does not say), optional label smoothing
  and mixed precision (float16 on GPUs, bfloat16 on CPUs).

Resuming: the model and optimizer state (weights, momentum, step counter, and
so the learning-rate schedule) are saved every `checkpoint_every` steps and at
each epoch end into `output_dir/checkpoint/`: a weights file named by its step,
then `state.json` pointing at it, each written atomically, so a run killed at
any moment leaves a consistent pair. The previous pair is kept
(`state.previous.json` and its weights); older weights are deleted only after
the new state is written, and a latest pair that cannot be read falls back to
the previous one with a warning naming the file. Running the same call again
continues from the saved step (mid-epoch: the epoch's data are replayed from the
same seed and the batches already seen skipped); other settings are refused,
naming them. An epoch's history row is written before its checkpoint, so no
row is ever lost. A finished run returns its stored model. The loop is
`tsnet_keras.engine` (shared with the search): callbacks see one run
(EarlyStopping ends it).

Outputs in `output_dir`: `model.keras` (loads with `keras.saving.load_model`,
the architecture inside), `architecture.json`, `history.csv` / `history.json`
(per epoch: loss, accuracy, top-5, validation figures, learning rate, seconds)
and `metrics.json`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import os
import time
import types
import warnings

import keras

from tsnet_keras.checks import check_choice, check_stream_dropout
from tsnet_keras.engine import (
    Checkpointer,
    EpochHistory,
    check_same_config,
    check_same_start,
    distributed_fit_epochs,
    fit_epochs,
    remove_stale_temp_files,
    write_history,
)
from tsnet_keras.files import atomic_path
from tsnet_keras.recipes.common import (
    MODEL_FILE,
    architecture_summary,
    as_json,
    check_int,
    check_number,
    check_output_dir,
    epoch_data,
    WorkerShare,
    choose_strategy,
    load_trained_model,
    read_json,
    write_architecture,
    write_json,
    write_metrics,
)
from tsnet_keras.recipes.data import (
    RecipeData,
    in_memory_if_small,
    logger,
    resolve_data,
    stream_frames,
)
from tsnet_keras.space.architecture import Architecture

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
PREVIOUS_STATE_FILE = "state.previous.json"
HISTORY_FIELDS = ("epoch", "step", "loss", "accuracy", "top5", "val_loss", "val_accuracy",
                  "val_top5", "learning_rate", "seconds")


def peak_learning_rate(base_learning_rate: float, batch_size: int, reference_batch_size: int = 64) -> float:
    """The linear scaling rule: `base_learning_rate * batch_size / reference_batch_size`."""
    return base_learning_rate * batch_size / reference_batch_size


OPTIMIZERS = ("adamw", "sgd")


def peak_rate(optimizer: str, adamw_learning_rate: float, base_learning_rate: float,
              batch_size: int, reference_batch_size: int = 64) -> float:
    """The peak learning rate of `optimizer`, read the same way by the search and the retrain:
    AdamW's as given, SGD's by the linear scaling rule (`peak_learning_rate`). Both rates
    are checked, whichever is used."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    adamw_learning_rate = check_number("adamw_learning_rate", adamw_learning_rate, strict=True)
    base_learning_rate = check_number("base_learning_rate", base_learning_rate, strict=True)
    if optimizer == "adamw":
        return adamw_learning_rate
    return peak_learning_rate(base_learning_rate, batch_size, reference_batch_size)


def make_optimizer(name: str, schedule, momentum: float, weight_decay: float):
    """"sgd" (the paper's: momentum, weight decay) or "adamw" (decoupled weight decay)."""
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=momentum, weight_decay=weight_decay or None)
    if name == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=weight_decay or 0.0)
    raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got {name!r}.")


def learning_rate_schedule(peak: float, total_steps: int, warmup_steps: int):
    """Cosine decay to 0 over `total_steps`, after a linear warm-up from `peak / 10`."""
    if warmup_steps <= 0:
        return keras.optimizers.schedules.CosineDecay(peak, max(1, total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10, decay_steps=max(1, total_steps - warmup_steps),
        warmup_target=peak, warmup_steps=warmup_steps,
    )


@keras.saving.register_keras_serializable(package="tsnet_keras")
class TopKAccuracy(keras.metrics.TopKCategoricalAccuracy):
    """Top-k accuracy of one-hot labels that also reads float16 / bfloat16 logits.

    `TopKCategoricalAccuracy` passes the logits to `in_top_k`, which accepts float32 only,
    so mixed-precision models fail with it.
    """

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(y_true, keras.ops.cast(y_pred, "float32"), sample_weight)


# ------------------------------------------------------------------------ checkpoint
class TrainingCheckpoint:
    """Atomic weights + state checkpoints of a training run in one folder (the last two kept)."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.state_path = os.path.join(self.folder, STATE_FILE)
        self.previous_state_path = os.path.join(self.folder, PREVIOUS_STATE_FILE)

    def exists(self) -> bool:
        return os.path.exists(self.state_path) or os.path.exists(self.previous_state_path)

    def _states(self):
        """Readable (path, state) pairs, newest first; unreadable ones warned about."""
        states = []
        for path in (self.state_path, self.previous_state_path):
            if not os.path.exists(path):
                continue
            try:
                states.append((path, read_json(path)))
            except (OSError, ValueError) as error:
                warnings.warn(f"retrain: {path} cannot be read ({error}); using the previous "
                              "checkpoint.", stacklevel=3)
        return states

    def read(self) -> dict:
        """The newest readable state.

        Raises:
            ValueError: state files exist but none can be read (named).
        """
        states = self._states()
        if not states:
            raise ValueError(f"no readable checkpoint state in {self.folder} ({STATE_FILE}, "
                             f"{PREVIOUS_STATE_FILE}); delete them or pass resume=False.")
        return states[0][1]

    def save(self, model, state: dict) -> None:
        os.makedirs(self.folder, exist_ok=True)
        step = int(state["step"])
        name = f"step-{step:09d}.weights.h5"
        path = os.path.join(self.folder, name)
        try:
            with atomic_path(path, suffix=".weights.h5") as temp:
                model.save_weights(temp)  # model and optimizer variables
            if os.path.exists(self.state_path):
                previous = read_json(self.state_path)
                if previous.get("weights") != name:
                    os.replace(self.state_path, self.previous_state_path)
            write_json(self.state_path, {**state, "weights": name})
        except OSError as error:
            raise OSError(f"retrain: cannot write the checkpoint in {self.folder} ({path}): "
                          f"{error}") from error
        # Only now, with the new state on disk, drop weights no state refers to.
        keep = {name}
        if os.path.exists(self.previous_state_path):
            keep.add(read_json(self.previous_state_path).get("weights"))
        for old in glob.glob(os.path.join(glob.escape(self.folder), "step-*.weights.h5")):
            if os.path.basename(old) not in keep:
                os.remove(old)

    def restore(self, model) -> dict:
        """Loads the newest readable pair (falls back to the previous one, with a warning)."""
        model.optimizer.build(model.trainable_variables)
        errors = []
        for path, state in self._states():
            weights = os.path.join(self.folder, str(state.get("weights")))
            try:
                model.load_weights(weights)
            except Exception as error:  # noqa: BLE001 - h5py/Keras raise several types
                errors.append(f"{weights}: {type(error).__name__}: {error}")
                continue
            if errors:
                warnings.warn(f"retrain: {errors[0]} cannot be read; resuming from the previous "
                              f"checkpoint {path} (step {state.get('step')}).", stacklevel=2)
            return state
        raise ValueError("retrain: no checkpoint in " + self.folder + " can be read (" +
                         "; ".join(errors) + "); delete it or pass resume=False.")


def _mixed_precision_policy() -> str:
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


@dataclasses.dataclass
class RetrainOutcome:
    """What `retrain` returns: the trained model, its per-epoch history and the metrics."""

    model: keras.Model
    history: list
    metrics: dict


def _retrain_data(data, share, *, crop, batch_size, frames, seed, steps_per_epoch, validate,
                  val_steps):
    """`(train_data(epoch), val_data or None, steps_per_epoch)` of this worker (one-hot labels).

    Several workers: each reads its shard of the lists in batches of its part of
    `batch_size`, and every worker runs the same number of steps. An epoch longer
    than one pass over the training videos goes over them again.
    """
    import tensorflow as tf

    worker_batch = share.batch(batch_size)
    options = {"shard": share.shard} if share.shard else {}

    def one_hot(x, y):
        return x, tf.one_hot(y, data.num_classes)

    def one_pass(epoch):
        dataset = data.dataset("train", "train", crop=crop, batch_size=worker_batch, frames=frames,
                               seed=seed * 1000 + epoch, **options)
        return dataset.map(one_hot)

    train_data, batches = epoch_data(one_pass, steps_per_epoch)
    if not steps_per_epoch:
        steps_per_epoch = batches
        if share.workers > 1 and data.num_train_videos is not None:
            steps_per_epoch = share.batches(data.num_train_videos, batch_size)
        if steps_per_epoch < 1:
            raise ValueError(f"`batch_size` ({batch_size}) exceeds the training videos, or their "
                             "number is unknown (TFRecords): give `steps_per_epoch`.")
    val_data = None
    if validate:
        val_data = data.dataset("val", "val", crop=crop, batch_size=worker_batch, frames=frames,
                                seed=seed, **options).map(one_hot)
        if val_steps:
            val_data = val_data.take(val_steps)
        val_data = in_memory_if_small(val_data, _val_clips(data, val_steps, worker_batch),
                                      "validation")
    return train_data, val_data, steps_per_epoch


def _val_clips(data, val_steps, batch_size):
    """The validation clips of a pass at most (None for TFRecord shards: not known)."""
    counts = [len(data.val)] if hasattr(data.val, "records") else []
    if val_steps:
        counts.append(val_steps * batch_size)
    return min(counts, default=None)


def retrain(
    arch: Architecture,
    output_dir,
    *,
    data: RecipeData | None = None,
    data_root="",
    train_list="",
    val_list="",
    num_classes: int = 0,
    epochs: int = 4,
    steps_per_epoch: int = 0,
    batch_size: int = 8,
    crop: int = 64,
    optimizer: str = "adamw",
    adamw_learning_rate: float = 2e-3,
    base_learning_rate: float = 0.4,
    reference_batch_size: int = 64,
    warmup_epochs: int = 1,
    weight_decay: float = 5e-5,
    momentum: float = 0.9,
    label_smoothing: float = 0.0,
    stream_dropout: float = 0.0,
    mixed_precision: bool = False,
    seed: int = 0,
    checkpoint_every: int = 0,
    validate: bool = True,
    val_steps: int = 0,
    strategy=None,
    resume: bool = True,
    callbacks=None,
    verbose="auto",
) -> RetrainOutcome:
    """Trains `arch` from scratch on the recipe data; resumes an interrupted run.

    Args:
        arch: `Architecture` (e.g. the searched one, `load_architecture(step3_dir)`).
        output_dir: folder of the outputs and the checkpoint.
        data: a `RecipeData`; default `resolve_data(data_root, train_list, val_list, num_classes)`.
        epochs: int. Training epochs (paper: 300 on Kinetics-400).
        steps_per_epoch: int. 0: one pass over the training videos.
        batch_size: int. Global batch (split between replicas).
        crop: int. Training crop (paper: 160).
        optimizer: "adamw" (default: learns the synthetic task in CPU minutes) or
            "sgd" (the paper's, momentum 0.9).
        adamw_learning_rate: peak rate of AdamW (2e-3).
        base_learning_rate, reference_batch_size: peak rate of SGD =
            base x batch_size / reference (paper: 0.4; reference 64, see the module docstring).
        warmup_epochs: int. Linear warm-up epochs (< epochs).
        weight_decay, momentum: SGD settings (5e-5, 0.9).
        label_smoothing: float in [0, 1).
        stream_dropout: float in [0, 1). Two-stream architectures: the share of
            training clips whose sparse-stream features the classifier drops, so the
            dense stream learns to classify alone (`tsnet_keras.models.TSNet`).
        mixed_precision: bool. float16 compute on GPUs, bfloat16 on CPUs.
        seed: int. Weight initialisation and data order (epoch e uses seed x 1000 + e).
        checkpoint_every: int. Steps between checkpoints (0: epoch ends only).
        validate: bool. One centre clip per validation video after each epoch.
        val_steps: int. Validation batches per epoch (0: all).
        strategy: `tf.distribute.Strategy`; default `choose_strategy()`.
        resume: bool. Continue from `output_dir/checkpoint` when present.
        callbacks: extra Keras callbacks.
        verbose: `fit` verbosity.

    Returns:
        `RetrainOutcome`.

    Raises:
        ValueError: a bad parameter (named), or a checkpoint from another run.
    """
    run = _retrain_options(
        arch, output_dir, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
        crop=crop, optimizer=optimizer, adamw_learning_rate=adamw_learning_rate,
        base_learning_rate=base_learning_rate, reference_batch_size=reference_batch_size,
        warmup_epochs=warmup_epochs, weight_decay=weight_decay, momentum=momentum,
        label_smoothing=label_smoothing, stream_dropout=stream_dropout,
        mixed_precision=mixed_precision, seed=seed, checkpoint_every=checkpoint_every,
        val_steps=val_steps)
    if data is None:
        data = resolve_data(data_root, train_list, val_list, num_classes)
    strategy = strategy or choose_strategy()
    share = WorkerShare(strategy, run.output_dir)
    train_data, val_data, run.steps_per_epoch = _retrain_data(
        data, share, crop=run.crop, batch_size=run.batch_size, frames=stream_frames(arch),
        seed=run.seed, steps_per_epoch=run.steps_per_epoch, validate=validate,
        val_steps=run.val_steps)
    config = _retrain_config(arch, run, data.num_classes, share.workers)
    checkpoint, writer = _retrain_checkpoints(run.output_dir, share)
    state = None
    if resume and checkpoint.exists():
        state = checkpoint.read()
        check_same_config(checkpoint.state_path, state.get("config", {}), config)
        if state.get("completed") and os.path.exists(os.path.join(run.output_dir, MODEL_FILE)):
            return _completed_outcome(run.output_dir, state, share)
    try:
        with _dtype_policy(run.mixed_precision):
            return _train_and_write(arch, run, data, strategy, share, (checkpoint, writer),
                                    state, config, (train_data, val_data),
                                    callbacks=callbacks, verbose=verbose)
    finally:
        share.finish()


def _retrain_options(arch, output_dir, *, epochs, steps_per_epoch, batch_size, crop, optimizer,
                     adamw_learning_rate, base_learning_rate, reference_batch_size,
                     warmup_epochs, weight_decay, momentum, label_smoothing, stream_dropout,
                     mixed_precision, seed, checkpoint_every, val_steps) -> types.SimpleNamespace:
    """`retrain`'s arguments checked (a ValueError naming the bad one), with the peak rate."""
    if not isinstance(arch, Architecture):
        raise ValueError(f"`arch` must be an Architecture, got {type(arch).__name__}.")
    run = types.SimpleNamespace(
        output_dir=check_output_dir(output_dir),
        epochs=check_int("epochs", epochs),
        steps_per_epoch=check_int("steps_per_epoch", steps_per_epoch or 0, minimum=0),
        batch_size=check_int("batch_size", batch_size),
        crop=check_int("crop", crop, minimum=16),
        seed=check_int("seed", seed, minimum=0),
        warmup_epochs=check_int("warmup_epochs", warmup_epochs, minimum=0),
    )
    if run.warmup_epochs >= run.epochs:
        raise ValueError(
            f"`warmup_epochs` ({run.warmup_epochs}) must be < `epochs` ({run.epochs}).")
    reference_batch_size = check_int("reference_batch_size", reference_batch_size)
    run.peak = peak_rate(optimizer, adamw_learning_rate, base_learning_rate, run.batch_size,
                         reference_batch_size)
    run.optimizer = optimizer
    run.weight_decay = check_number("weight_decay", weight_decay)
    run.momentum = check_number("momentum", momentum, below=1.0)
    run.label_smoothing = check_number("label_smoothing", label_smoothing, below=1.0)
    run.stream_dropout = check_stream_dropout(stream_dropout, arch.dense is not None)
    run.checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=0)
    run.val_steps = check_int("val_steps", val_steps, minimum=0)
    if not isinstance(mixed_precision, bool):
        raise ValueError(f"`mixed_precision` must be True or False, got {mixed_precision!r}.")
    run.mixed_precision = mixed_precision
    return run


def _retrain_config(arch, run, num_classes, workers) -> dict:
    """What the checkpoint stores to recognise its run (compared on resume), as JSON reads it."""
    config = {
        "optimizer": run.optimizer,
        "architecture": arch.to_dict(), "num_classes": num_classes, "crop": run.crop,
        "epochs": run.epochs, "steps_per_epoch": run.steps_per_epoch,
        "batch_size": run.batch_size, "peak_learning_rate": run.peak,
        "warmup_epochs": run.warmup_epochs, "weight_decay": run.weight_decay,
        "momentum": run.momentum, "label_smoothing": run.label_smoothing,
        "mixed_precision": run.mixed_precision, "seed": run.seed,
    }
    if run.stream_dropout:  # runs from before the option resume (theirs was 0)
        config["stream_dropout"] = run.stream_dropout
    if workers > 1:
        config["workers"] = workers
    return as_json(config)


@contextlib.contextmanager
def _dtype_policy(mixed_precision):
    """Mixed precision inside the block when asked; the previous policy restored after it."""
    previous_policy = keras.config.dtype_policy()
    if mixed_precision:
        keras.config.set_dtype_policy(_mixed_precision_policy())
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _train_and_write(arch, run, data, strategy, share, checkpoints, state, config, datasets, *,
                     callbacks, verbose) -> RetrainOutcome:
    """Builds (or restores) the model, trains the epochs left and writes the run's files."""
    checkpoint, writer = checkpoints
    train_data, val_data = datasets
    num_classes, steps_per_epoch = data.num_classes, run.steps_per_epoch
    keras.utils.set_random_seed(run.seed)
    model = _compiled_model(
        arch, strategy, num_classes=num_classes, crop=run.crop, optimizer=run.optimizer,
        peak=run.peak, total_steps=run.epochs * steps_per_epoch,
        warmup_steps=run.warmup_epochs * steps_per_epoch, momentum=run.momentum,
        weight_decay=run.weight_decay, label_smoothing=run.label_smoothing,
        stream_dropout=run.stream_dropout)
    history = _restore(model, strategy, checkpoint, state, run.epochs * steps_per_epoch,
                       steps_per_epoch)
    done, seconds = _train(
        model, strategy, share, writer, config, history, train_data, val_data,
        epochs=run.epochs, steps_per_epoch=steps_per_epoch,
        checkpoint_every=run.checkpoint_every, callbacks=callbacks, verbose=verbose)
    model.save(os.path.join(share.write_dir, MODEL_FILE))
    write_architecture(share.write_dir, arch)
    metrics = _retrain_metrics(arch, num_classes, run.crop, model, history, config, data, seconds)
    write_metrics(share.write_dir, metrics)
    writer.save(model, _retrain_state(config, history, done, completed=True))
    return RetrainOutcome(model, history, metrics)


def _retrain_checkpoints(output_dir, share) -> tuple:
    """`(checkpoint read, checkpoint written)`: the chief's, and this worker's."""
    os.makedirs(output_dir, exist_ok=True)
    checkpoint = TrainingCheckpoint(os.path.join(output_dir, CHECKPOINT_DIR))
    # Several machines: every worker reads the chief's checkpoint and writes into its write_dir.
    writer = TrainingCheckpoint(os.path.join(share.write_dir, CHECKPOINT_DIR))
    for folder in (output_dir, checkpoint.folder):
        if os.path.isdir(folder) and share.chief:
            remove_stale_temp_files(folder)
    return checkpoint, writer


def _completed_outcome(output_dir, state, share) -> RetrainOutcome:
    """The outcome of a run that already completed, read back from its folder."""
    model = load_trained_model(os.path.join(output_dir, MODEL_FILE))
    metrics = read_json(os.path.join(output_dir, "metrics.json"))
    logger.info("retrain: %s is complete; loaded %s.", output_dir, MODEL_FILE)
    share.finish()
    return RetrainOutcome(model, state.get("history", []), metrics)


def _compiled_model(arch, strategy, *, num_classes, crop, optimizer, peak, total_steps,
                    warmup_steps, momentum, weight_decay, label_smoothing, stream_dropout):
    """`arch` built and compiled under `strategy` with the run's optimizer and loss."""
    from tsnet_keras.models import build_model

    with strategy.scope():
        model = build_model(arch, num_classes=num_classes, crop=crop,
                            stream_dropout=stream_dropout)
        model.compile(
            optimizer=make_optimizer(
                optimizer, learning_rate_schedule(peak, total_steps, warmup_steps),
                momentum, weight_decay,
            ),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                      label_smoothing=label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"),
                     TopKAccuracy(k=min(5, num_classes), name="top5")],
        )
    return model


def _restore(model, strategy, checkpoint, state, total_steps, steps_per_epoch) -> list:
    """Restores `checkpoint` into `model` when resuming; the history so far."""
    # Before the restore: assigning variables are collectives on several workers.
    check_same_start(strategy, int(state.get("step", 0)) if state is not None else 0,
                     checkpoint.folder)
    history = []
    if state is not None:
        state = checkpoint.restore(model)
        history = state.get("history", [])
        logger.info("retrain: resuming from step %d of %d (epoch %d).", state["step"],
                    total_steps, state["step"] // steps_per_epoch + 1)
    return history


def _retrain_state(config, history, at_step, completed=False) -> dict:
    return {"config": config, "step": at_step, "history": history, "completed": completed}


def _optimizer_step(trained) -> int:
    return int(trained.optimizer.iterations.numpy())


def _learning_rate(trained) -> dict:
    return {"learning_rate": float(keras.ops.convert_to_numpy(trained.optimizer.learning_rate))}


def _train(model, strategy, share, writer, config, history, train_data, val_data, *, epochs,
           steps_per_epoch, checkpoint_every, callbacks, verbose) -> tuple:
    """Fits the remaining epochs, recording and checkpointing; `(steps done, seconds)`."""
    recorder = EpochHistory(history, HISTORY_FIELDS, _optimizer_step,
                            lambda rows: write_history(share.write_dir, rows, HISTORY_FIELDS),
                            _learning_rate)
    checkpointer = Checkpointer(
        lambda trained, at_step: writer.save(trained, _retrain_state(config, history, at_step)),
        _optimizer_step, checkpoint_every, steps_per_epoch)
    started = time.time()
    with warnings.catch_warnings():
        # The validation set's length is unknown (unreadable videos are dropped).
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        loop = fit_epochs
        if share.workers > 1:  # Keras' fit fails there: the engine's own loop
            loop = functools.partial(distributed_fit_epochs, strategy=strategy)
            val_data = (lambda data=val_data: data) if val_data is not None else None
        loop(
            model, lambda epoch, skip: train_data(epoch).take(steps_per_epoch).skip(skip),
            epochs=epochs, steps_per_epoch=steps_per_epoch, step_fn=_optimizer_step,
            callbacks=[recorder, checkpointer, *(callbacks or [])], validation_data=val_data,
            verbose=verbose,
        )
    done = _optimizer_step(model)
    return done, time.time() - started


def _retrain_metrics(arch, num_classes, crop, model, history, config, data, seconds) -> dict:
    """The run's `metrics.json`: the last epoch's figures and the settings."""
    last = history[-1] if history else {}
    return {
        "recipe": "retrain",
        "architecture": architecture_summary(arch, num_classes, crop),
        "keras_params": int(model.count_params()),
        "epochs_completed": len(history),
        "loss": last.get("loss"),
        "accuracy": last.get("accuracy"),
        "top5": last.get("top5"),
        "val_loss": last.get("val_loss"),
        "val_top1_one_clip": last.get("val_accuracy"),
        "val_top5_one_clip": last.get("val_top5"),
        "seconds_this_run": seconds,
        "train_seconds": sum(row.get("seconds", 0.0) for row in history),
        "settings": {k: v for k, v in config.items() if k != "architecture"},
        "data": data.describe(),
    }


# `retrain` settings recorded in metrics.json that a model trained "the same way" reuses as
# they are (the evaluate recipe's variants and random baselines).
_SAME_SETTINGS = ("optimizer", "epochs", "steps_per_epoch", "batch_size", "warmup_epochs",
                  "weight_decay", "momentum", "label_smoothing", "stream_dropout",
                  "mixed_precision", "seed")


def retrain_arguments(settings: dict) -> dict:
    """`retrain` arguments that reproduce a recorded training (`metrics.json["settings"]`).

    The recorded peak learning rate becomes the optimizer's learning rate argument
    (AdamW's, or SGD's with the batch as the reference batch, so the linear scaling
    rule gives it back).
    """
    kwargs = {key: settings[key] for key in _SAME_SETTINGS if key in settings}
    peak = settings.get("peak_learning_rate")
    if peak is not None:
        if settings.get("optimizer", "adamw") == "adamw":
            kwargs["adamw_learning_rate"] = peak
        else:
            kwargs.update(base_learning_rate=peak,
                          reference_batch_size=settings.get("batch_size", 64))
    return kwargs


def load_history(output_dir) -> list:
    """The per-epoch history `retrain` wrote (empty list if none)."""
    path = os.path.join(output_dir, "history.json")
    return read_json(path) if os.path.exists(path) else []


__all__ = [
    "HISTORY_FIELDS",
    "MODEL_FILE",
    "RetrainOutcome",
    "TopKAccuracy",
    "TrainingCheckpoint",
    "learning_rate_schedule",
    "load_history",
    "peak_learning_rate",
    "retrain",
    "retrain_arguments",
]
