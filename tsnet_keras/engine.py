"""The training loop that the search (`run_search_step`) and retraining (`retrain`) share.

A run is a sequence of epochs of `steps_per_epoch` steps, resumable from any
step: epoch e's data come from `make_dataset(epoch, skip)` (the data of epoch
e with the `skip` batches a resumed run already did left out). `fit_epochs`
chains the epochs left into one dataset (`epoch_stream`, each epoch's dataset
made when it is reached) and runs ONE Keras `fit(epochs=N, initial_epoch=...)`;
a run resumed inside an epoch first finishes that epoch in a shorter `fit`.
What the two callers share:

- `RunCallbacks`: the callbacks see ONE run even across that extra `fit`:
  `on_train_begin` once, `on_train_end` once at the end, `stop_training` ends
  the run (EarlyStopping works), TensorBoard's batch step does not restart;
- `EpochHistory` then `Checkpointer`: at an epoch's end the history row is
  added first and the checkpoint, holding that row, written after it, so a run
  killed at any moment never loses a row (a checkpoint on an epoch's last step
  is always the epoch-end one);
- `write_history`: `history.json` and `history.csv`, atomically.
"""

from __future__ import annotations

import collections
import csv
import functools
import io
import json
import os
import time

import keras

from tsnet_keras.data.options import without_autotune
from tsnet_keras.data.pipeline_calls import pipeline_call
from tsnet_keras.files import atomic_write_text, remove_stale_temp_files

_HOOKS = (
    "on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end",
    "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end",
)


class RunCallbacks(keras.callbacks.Callback):
    """Callbacks that see the epochs of several `fit` calls as one training run.

    `on_train_begin` reaches them at the first `fit` only; `on_train_end` when
    the run calls `finish()`. Every other hook is forwarded as it comes.
    """

    def __init__(self, callbacks):
        super().__init__()
        self.callbacks = list(callbacks or [])
        self._began = False
        for hook in _HOOKS:
            setattr(self, hook, self._forward(hook))

    def _forward(self, hook):
        def call(*args, **kwargs):
            for callback in self.callbacks:
                getattr(callback, hook)(*args, **kwargs)

        return call

    def set_model(self, model):
        # Once per model: TensorBoard's set_model starts new event writers (and leaks the old).
        if getattr(self, "_forwarded_model", None) is not model:
            self._forwarded_model = model
            for callback in self.callbacks:
                callback.set_model(model)
        super().set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def on_train_begin(self, logs=None):
        if not self._began:
            self._began = True
            for callback in self.callbacks:
                callback.on_train_begin(logs)

    def finish(self, logs=None):
        """Ends the run for the callbacks (`on_train_end`), if it began."""
        if self._began:
            self._began = False
            for callback in self.callbacks:
                callback.on_train_end(logs)


class EpochHistory(keras.callbacks.Callback):
    """Appends one row per epoch to `rows` and writes it (before the epoch's checkpoint).

    Args:
        rows: list of dicts, extended in place (what the checkpoint stores).
        fields: the row's fields (`epoch`, `step`, then logged metrics, ..., `seconds`).
        step_fn: `model -> steps done`.
        write_fn: `rows -> None`, called after each row.
        extra_fn: `model -> dict` of computed fields (e.g. the learning rate), or None.
        healthy: `() -> bool`; no row while it is False (a diverged epoch).
    """

    def __init__(self, rows, fields, step_fn, write_fn, extra_fn=None, healthy=None):
        super().__init__()
        self.rows, self.fields, self.step_fn = rows, fields, step_fn
        self.write_fn, self.extra_fn = write_fn, extra_fn
        self.healthy = healthy or (lambda: True)
        self._started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if not self.healthy():
            return
        logs = logs or {}
        row = {"epoch": epoch + 1, "step": self.step_fn(self.model)}
        for name in self.fields:
            if name in logs and name not in row:
                row[name] = float(logs[name])
        if self.extra_fn is not None:
            row.update(self.extra_fn(self.model))
        row["seconds"] = round(time.time() - self._started, 3)
        self.rows.append(row)
        self.write_fn(self.rows)


class Checkpointer(keras.callbacks.Callback):
    """Saves every `every` steps (0: epoch ends only) and at each epoch's end.

    A step that ends an epoch is saved by `on_epoch_end` only, after
    `EpochHistory` added the row, so the checkpoint of that step holds it.

    Args:
        save_fn: `(model, step) -> None`.
        step_fn: `model -> steps done`.
        healthy: `() -> bool`; nothing is saved while it is False.
    """

    def __init__(self, save_fn, step_fn, every, steps_per_epoch, healthy=None):
        super().__init__()
        self.save_fn, self.step_fn = save_fn, step_fn
        self.every, self.steps_per_epoch = every, steps_per_epoch
        self.healthy = healthy or (lambda: True)
        self.last_step = None

    def _save(self):
        step = self.step_fn(self.model)
        self.save_fn(self.model, step)
        self.last_step = step

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_fn(self.model)
        if (self.every and step % self.every == 0 and step % self.steps_per_epoch
                and self.healthy()):
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        if self.healthy():
            self._save()


def fit_epochs(model, make_dataset, *, epochs, steps_per_epoch, step_fn, callbacks,
               **fit_kwargs) -> bool:
    """Runs the epochs left after `step_fn(model)` steps in ONE Keras `fit`.

    The data of every epoch left come as one dataset (`epoch_stream`), each
    epoch's made when the stream reaches it, so a run is a single
    `fit(epochs=epochs, initial_epoch=...)`. A run resumed inside an epoch does
    the rest of that epoch in a first, shorter `fit` (Keras' `steps_per_epoch`
    is the same for every epoch of a `fit`), then the single `fit` of the
    others: one `fit` per run, two when resumed mid-epoch. The callbacks see
    one run either way (`RunCallbacks`).

    Args:
        make_dataset: `(epoch, skip) -> dataset` of that epoch minus `skip` batches.
            Later epochs' datasets are made in a tf.data thread, once each.
        step_fn: `model -> steps done` (restored from a checkpoint on resume).
        callbacks: the run's callbacks, the internal ones (history, checkpoint,
            guards) first.
        **fit_kwargs: other `fit` arguments (verbose, validation_data).

    Returns:
        True when `stop_training` ended the run early.
    """
    run = RunCallbacks(callbacks)
    fit = functools.partial(model.fit, callbacks=[run], shuffle=False, **fit_kwargs)
    first, skip = divmod(step_fn(model), steps_per_epoch)
    stopped = False
    if skip and first < epochs:
        fit(without_autotune(make_dataset(first, skip).take(steps_per_epoch - skip)),
            initial_epoch=first, epochs=first + 1, steps_per_epoch=steps_per_epoch - skip)
        first, stopped = first + 1, model.stop_training
    if first < epochs and not stopped:
        fit(epoch_stream(make_dataset, first, epochs, steps_per_epoch), initial_epoch=first,
            epochs=epochs, steps_per_epoch=steps_per_epoch)
        stopped = model.stop_training
    run.finish()
    return bool(stopped)


_EPOCHS_KEPT_ALIVE = 3
# Batches the stream reads ahead, across epoch ends: the next epoch's dataset is made and its
# first batch decoded while the last steps of this one run, not while its first step waits
# (the default step-1 search: first steps 555-739 ms without, 278-337 with, others 272-365).
# On 2 busy cores the epoch takes as long either way; spare cores absorb it (BENCHMARKS.md 7c).
STREAM_PREFETCH = 2


def epoch_stream(make_dataset, first, epochs, steps_per_epoch):
    """The batches of epochs `first` to `epochs - 1`, in order, as one dataset.

    Epoch `first`'s dataset is made here (its errors raised at once); each later
    one by a `py_function` when the stream reaches it (never all up front: a
    search may have 800 epochs), then read by tf.data as it is. The stream reads
    `STREAM_PREFETCH` batches ahead, so the next epoch's dataset is made while
    this one's last steps run. Each epoch gives exactly `steps_per_epoch`
    batches: longer ones are cut, and one that ends early stops the run with an
    error naming it (it would shift every later epoch).
    """
    import tensorflow as tf

    head = make_dataset(first, 0)
    spec = head.element_spec
    # The Python datasets of the epochs being read: a dataset's own py_functions (the
    # video decoder's) leave TensorFlow's registry when it is collected, and its variant
    # does not keep it alive. The last few suffice: epochs are read one after another.
    alive = collections.deque(maxlen=_EPOCHS_KEPT_ALIVE)

    def build(epoch):
        dataset = make_dataset(int(epoch), 0)
        _check_same_spec(spec, dataset.element_spec, int(epoch))
        alive.append(dataset)
        return tf.data.experimental.to_variant(dataset)

    def later(epoch):
        variant = tf.py_function(pipeline_call(build), [epoch], tf.variant)
        return _numbered(tf.data.experimental.from_variant(variant, spec), epoch, steps_per_epoch)

    stream = _numbered(head, tf.constant(first, tf.int64), steps_per_epoch).concatenate(
        tf.data.Dataset.range(first + 1, epochs).flat_map(later))
    return without_autotune(
        stream.enumerate(first * steps_per_epoch).map(_in_place(steps_per_epoch))
        .prefetch(STREAM_PREFETCH))


def _check_same_spec(spec, other, epoch):
    import tensorflow as tf

    same = tf.nest.map_structure(lambda a, b: a.is_compatible_with(b), spec, other)
    if not all(tf.nest.flatten(same)):
        raise ValueError(f"the dataset of epoch {epoch} has elements {other}, not {spec} as "
                         "the first epoch's: every epoch must give the same structure.")


def _numbered(dataset, epoch, steps_per_epoch):
    """`(step, batch)`: each of the epoch's first `steps_per_epoch` batches with its step."""
    first_step = epoch * steps_per_epoch
    return dataset.take(steps_per_epoch).enumerate().map(
        lambda index, batch: (first_step + index, batch))


def _in_place(steps_per_epoch):
    """`(position, (step, batch)) -> batch`, stopping when a batch is not at its step."""
    import tensorflow as tf

    def check(position, numbered):
        step, batch = numbered
        assertion = tf.debugging.Assert(tf.equal(step, position), [
            "an epoch's dataset ended early: epoch (from 0)", position // steps_per_epoch,
            "gave", position % steps_per_epoch, "batches, not steps_per_epoch =",
            steps_per_epoch])
        with tf.control_dependencies([assertion]):
            return tf.nest.map_structure(tf.identity, batch)

    return check


# ------------------------------------------------------------ several machines
def worker_info(strategy=None) -> tuple:
    """`(num_workers, worker_index, is_chief)` of this process under `strategy`.

    One machine (any strategy but `MultiWorkerMirroredStrategy`): `(1, 0, True)`.
    The chief is the `chief` task, or worker 0 when the cluster has none.
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    in_multi_worker = getattr(strategy.extended, "_in_multi_worker_mode", None)
    if in_multi_worker is None or not in_multi_worker():
        return 1, 0, True
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec().as_dict()
    chiefs = len(spec.get("chief", []))
    workers = chiefs + len(spec.get("worker", []))
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    index = task_id + (chiefs if task_type == "worker" else 0)
    return workers, index, index == 0


def local_replicas(strategy) -> int:
    """Replicas of this worker (all of them on one machine)."""
    return max(1, strategy.num_replicas_in_sync // worker_info(strategy)[0])


def check_same_start(strategy, step: int, where) -> None:
    """Every worker must resume from the same step (a collective: call it on all workers).

    A worker that cannot see the chief's checkpoint (`where`: a folder not shared
    by the machines) would start over while the others resume.
    """
    import tensorflow as tf

    if worker_info(strategy)[0] == 1:
        return
    value = strategy.run(lambda: tf.constant([int(step)], tf.int64))
    steps = strategy.gather(value, axis=0).numpy()
    low, high = int(steps.min()), int(steps.max())
    if low != high:
        raise RuntimeError(
            f"the workers start from different steps ({low} and {high}): every worker must "
            f"read the same checkpoint in {where}. Put output_dir on a folder all machines share, "
            "or pass resume=False on every worker."
        )


def _distributed_train_step(model, strategy):
    import tensorflow as tf

    @tf.function
    def step(iterator):
        outputs = strategy.run(model.train_step, args=(next(iterator),))
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in outputs.items()}

    return step


def _distributed_validation(model, strategy, make_validation):
    """`val_`-prefixed metrics of `model.test_step` over one pass (workers stop together)."""
    import tensorflow as tf

    model.reset_metrics()
    iterator = iter(strategy.distribute_datasets_from_function(
        lambda context: without_autotune(make_validation())))
    logs = {}
    while True:
        optional = iterator.get_next_as_optional()
        if not bool(optional.has_value()):
            break
        outputs = strategy.run(model.test_step, args=(optional.get_value(),))
        logs = {name: float(strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None))
                for name, value in outputs.items()}
    return {f"val_{name}": value for name, value in logs.items()}


def _distributed_epoch(model, strategy, step, dataset_fn, steps, callback_list, validation):
    iterator = iter(strategy.distribute_datasets_from_function(
        lambda context: without_autotune(dataset_fn())))
    model.reset_metrics()
    logs = {}
    for batch in range(steps):
        callback_list.on_train_batch_begin(batch)
        logs = {name: float(value) for name, value in step(iterator).items()}
        callback_list.on_train_batch_end(batch, logs)
        if model.stop_training:
            break
    if validation is not None and not model.stop_training:
        logs = {**logs, **_distributed_validation(model, strategy, validation)}
    return logs


def distributed_fit_epochs(model, make_dataset, *, strategy, epochs, steps_per_epoch, step_fn,
                           callbacks, verbose=0, validation_data=None) -> bool:
    """`fit_epochs` for `MultiWorkerMirroredStrategy` (where Keras' `fit` fails).

    The same epochs, callbacks and resume as `fit_epochs`, as one run (one
    `on_train_begin` and `on_train_end`), with `strategy.run(model.train_step)`
    in a `tf.function`. `make_dataset(epoch, skip)` gives THIS worker's batches
    (its share of the global batch, from its shard of the data), with as many
    batches on every worker; it is called when the epoch begins.
    `validation_data`: a callable `() -> dataset` of this worker's validation
    batches, or None. Progress is shown on the chief only.
    """
    step = _distributed_train_step(model, strategy)
    first, skip = divmod(step_fn(model), steps_per_epoch)
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_progbar=bool(verbose) and worker_info(strategy)[2], model=model,
        verbose=1 if verbose == "auto" else verbose, epochs=epochs, steps=steps_per_epoch)
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(first, epochs):
        left = steps_per_epoch - (skip if epoch == first else 0)
        callback_list.on_epoch_begin(epoch)
        logs = _distributed_epoch(
            model, strategy, step, lambda epoch=epoch, left=left: make_dataset(
                epoch, steps_per_epoch - left).take(left),
            left, callback_list, validation_data)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return bool(model.stop_training)


def _shown(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def check_same_config(path, stored: dict, config: dict) -> None:
    """Refuses to resume with other settings: a ValueError naming each changed one.

    Args:
        path: the checkpoint (for the message).
        stored, config: the checkpoint's settings and this call's, as JSON reads them.
    """
    missing = "(not stored)"
    changed = [key for key in dict.fromkeys([*stored, *config])
               if stored.get(key, missing) != config.get(key, missing)]
    if changed:
        details = "; ".join(f"{key}: {_shown(stored.get(key, missing))} in the checkpoint, "
                            f"{_shown(config.get(key, missing))} now" for key in changed)
        raise ValueError(
            f"{path} was written with other settings ({details}). Pass the same settings to "
            "resume, use another output_dir, or pass resume=False to start over."
        )


def write_history(output_dir, rows, fields) -> None:
    """`history.json` (every field) and `history.csv` (`fields`), each written atomically."""
    atomic_write_text(os.path.join(output_dir, "history.json"), json.dumps(rows, indent=2))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_text(os.path.join(output_dir, "history.csv"), buffer.getvalue())


__all__ = ["Checkpointer", "EpochHistory", "RunCallbacks", "check_same_config", "check_same_start",
           "distributed_fit_epochs", "epoch_stream", "fit_epochs", "local_replicas",
           "remove_stale_temp_files", "worker_info", "write_history"]
