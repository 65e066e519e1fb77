"""The training engine in the search: no lost history row, settings checked on resume,
checkpoint fall-back, stale temp files, callbacks that see one run (EarlyStopping)."""

import json
import os
import re
import shutil
import warnings

import keras
import numpy as np
import pytest

from tests.search.data import clip_dataset
from tests.search.spaces import progressive_space, search_space
from tsnet_keras.search import ParsecSearch, progressive, run_search_step
from tsnet_keras.search.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    find_checkpoint,
    previous_path,
    read_checkpoint_meta,
    save_checkpoint,
    write_npz_atomically,
)

OPTIONS = {"num_classes": 3, "crop": 8, "epochs": 2, "steps_per_epoch": 3, "verbose": 0,
           "checkpoint_every": 3, "samples_per_replica": 2, "tensorboard": False}


def _run(output_dir, **changes):
    train = clip_dataset(12, 4, frames=2, dense_frames=4, crop=8, classes=3, seed=0)
    heldout = clip_dataset(8, 4, frames=2, dense_frames=4, crop=8, classes=3, seed=1)
    return run_search_step(1, progressive_space(), train, heldout, output_dir,
                           **dict(OPTIONS, **changes))


class InterruptAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.search_step.numpy()) == self.step:
            raise KeyboardInterrupt(f"interrupted after step {self.step}")


class Events(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.counts = {}

    def _count(self, name):
        self.counts[name] = self.counts.get(name, 0) + 1

    def on_train_begin(self, logs=None):
        self._count("train_begin")

    def on_train_end(self, logs=None):
        self._count("train_end")

    def on_epoch_begin(self, epoch, logs=None):
        self._count("epoch_begin")

    def on_train_batch_end(self, batch, logs=None):
        self._count("batches")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("finished") / "run"
    _run(output_dir)
    return output_dir


def test_a_run_killed_right_after_an_epochs_last_checkpoint_keeps_its_row(tmp_path, monkeypatch):
    real = progressive.save_checkpoint

    def save_then_die(search, path, meta):
        real(search, path, meta)
        if meta["step"] == 3 and not meta["completed"]:
            raise KeyboardInterrupt("killed right after the checkpoint of step 3")

    monkeypatch.setattr(progressive, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "run")  # checkpoint_every=3: the epoch's last step
    meta = read_checkpoint_meta(tmp_path / "run" / CHECKPOINT_FILE)
    assert meta["step"] == 3 and [row["step"] for row in meta["history"]] == [3]
    monkeypatch.undo()
    events = Events()
    result = _run(tmp_path / "run", callbacks=[events])
    assert events.counts["batches"] == 3  # resumed at step 3
    assert [row["step"] for row in result.history] == [3, 6]
    with open(tmp_path / "run" / "history.csv") as handle:
        assert len(handle.read().strip().splitlines()) == 3


@pytest.mark.parametrize("change, name", [
    ({"learning_rate": 0.1}, "learning_rate"),
    ({"temperature": 2.0}, "temperature"),
    ({"macs_penalty": 3.0}, "macs_penalty"),
    ({"logits_learning_rate": 0.5}, "logits_learning_rate"),
    ({"momentum": 0.5}, "momentum"),
    ({"weight_decay": 1e-4}, "weight_decay"),
    ({"warmup_epochs": 1}, "warmup_epochs"),
    ({"score": "log_likelihood"}, "score"),
    ({"extra_config": {"batch_size": 4}}, "batch_size"),
])
def test_a_changed_setting_is_refused_on_resume_naming_it(finished, change, name):
    value = re.escape(str(next(iter(change.values())))) if name != "batch_size" else "4"
    with pytest.raises(ValueError, match=rf"\b{name}: .* in the checkpoint, \"?{value}\"? now.*"
                                         r"resume=False"):
        _run(finished, **change)


def test_the_same_settings_return_the_finished_result(finished):
    assert _run(finished).search is None


@pytest.mark.parametrize("change", [{"outer_taps": "zeros"}, {"graph_optimization": True}])
def test_settings_a_resumed_run_does_not_depend_on_are_not_compared(finished, change):
    # A checkpoint from before these arguments existed (or with other values) still resumes.
    assert _run(finished, **change).search is None


GRAPPLER_SEEN = ("disable_meta_optimizer", "remapping", "constant_folding")


def test_fit_runs_grappler_s_remapper_alone_on_cpus_and_restores_the_options(tmp_path):
    import tensorflow as tf

    seen = []

    class Options(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            options = tf.config.optimizer.get_experimental_options()
            seen.append(tuple(options.get(name) for name in GRAPPLER_SEEN))

    before = tf.config.optimizer.get_experimental_options()
    _run(tmp_path / "default", epochs=1, callbacks=[Options()])
    _run(tmp_path / "on", epochs=1, callbacks=[Options()], graph_optimization=True)
    if tf.config.list_logical_devices("GPU"):
        assert seen[0][0] is False
    else:
        assert seen[0] == (False, True, False)  # the meta optimizer on, the remapper alone
    assert seen[1][0] is False and seen[1][2] is not False  # Grappler whole
    after = tf.config.optimizer.get_experimental_options()
    assert after.get("disable_meta_optimizer", False) == before.get("disable_meta_optimizer", False)
    assert after.get("constant_folding", True) is before.get("constant_folding", True)


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    output_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(output_dir, checkpoint_every=2, callbacks=[InterruptAt(5)])
    latest = output_dir / CHECKPOINT_FILE
    assert read_checkpoint_meta(latest)["step"] == 4
    assert read_checkpoint_meta(previous_path(latest))["step"] == 3  # the epoch end
    latest.write_bytes(latest.read_bytes()[:1000])
    stale = [output_dir / ".checkpoint.npz.tmp-99999", output_dir / ".tmp-99999.weights.h5",
             output_dir / "history.json.tmp-99999"]
    for path in stale:
        path.write_bytes(b"left by a killed run")
    events = Events()
    with pytest.warns(UserWarning, match=r"checkpoint\.npz cannot be read.*previous checkpoint "
                                         r".*checkpoint\.previous\.npz \(step 3\)"):
        result = _run(output_dir, checkpoint_every=2, callbacks=[events])
    assert events.counts["batches"] == 3  # steps 4 to 6
    assert [row["step"] for row in result.history] == [3, 6]
    assert not any(path.exists() for path in stale)


@pytest.mark.parametrize("damage", ["truncated", "empty", "bit-flipped"])
def test_a_damaged_latest_checkpoint_is_named_and_the_previous_one_used(tmp_path, damage):
    search = ParsecSearch(search_space(), 5, crop=8)
    search.compile()
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(search, path, {"step": 1})
    save_checkpoint(search, path, {"step": 2})
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = b""
    else:
        data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=re.escape(str(path)) + " cannot be read"):
        found = find_checkpoint(path)
    assert found["meta"] == {"step": 1}
    previous = previous_path(path)
    with open(previous, "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*" + re.escape(previous)
                       + ".*resume=False"):
        find_checkpoint(path)


def test_write_errors_name_the_path(tmp_path):
    target = tmp_path / "missing-folder" / CHECKPOINT_FILE
    with pytest.raises(OSError, match=re.escape(str(target))):
        write_npz_atomically(target, {"a": np.zeros(2)})


def test_early_stopping_ends_a_search_and_callbacks_see_one_run(tmp_path):
    events = Events()
    # No later epoch improves the loss by 1e9: EarlyStopping stops when `patience` = 2 epochs
    # went without, if its count survives from epoch to epoch (one run, not one per epoch).
    stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=1e9, patience=2)
    result = _run(tmp_path / "run", epochs=5, steps_per_epoch=1, callbacks=[stop, events])
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert events.counts == {"train_begin": 1, "train_end": 1, "epoch_begin": 3, "batches": 3}
    assert read_checkpoint_meta(tmp_path / "run" / CHECKPOINT_FILE)["completed"]
    assert os.path.exists(tmp_path / "run" / "architecture.json")


def test_a_search_is_one_fit_and_its_warm_up_switches_a_variable_not_the_step(tmp_path,
                                                                              monkeypatch):
    fits, traces, logit_values = [], [], []
    real_fit, real_step = ParsecSearch.fit, ParsecSearch.train_step

    def fit(self, *args, **kwargs):
        fits.append((kwargs["initial_epoch"], kwargs["epochs"]))
        return real_fit(self, *args, **kwargs)

    def train_step(self, data):  # Python runs it only while tracing
        traces.append(data)
        return real_step(self, data)

    class Logits(keras.callbacks.Callback):
        def _record(self):
            logit_values.append(np.concatenate([np.ravel(v.numpy()) for v in
                                                self.model.distribution.trainable_weights]))

        def on_train_begin(self, logs=None):
            self._record()

        def on_train_batch_end(self, batch, logs=None):
            frozen.append(self.model.logits_frozen)

        def on_epoch_end(self, epoch, logs=None):
            self._record()

    frozen = []
    monkeypatch.setattr(ParsecSearch, "fit", fit)
    monkeypatch.setattr(ParsecSearch, "train_step", train_step)
    # A continuous score: the sampled paths' scores never tie, so unfrozen logits must move
    # (tied accuracies would leave them, rightly, where they are).
    _run(tmp_path / "run", epochs=3, warmup_epochs=1, callbacks=[Logits()],
         score="log_likelihood")
    assert fits == [(0, 3)]
    assert len(traces) == 1  # traced once, though the warm-up ended after epoch 1
    assert frozen == [True] * 3 + [False] * 6
    start, warm_up, _, end = logit_values
    np.testing.assert_array_equal(warm_up, start)  # frozen in epoch 1
    assert np.abs(end - warm_up).max() > 1e-3  # searched in epochs 2 and 3


def test_a_batch_smaller_than_the_samples_is_refused_before_training_when_split(tmp_path):
    train = clip_dataset(12, 1, frames=2, dense_frames=4, crop=8, classes=3)
    heldout = clip_dataset(8, 4, frames=2, dense_frames=4, crop=8, classes=3, seed=1)
    with pytest.raises(ValueError, match=r"batches of 1 clips over 1 replica.*samples_per_replica=2"):
        run_search_step(1, progressive_space(), train, heldout, tmp_path / "run",
                        path_batch="split", **OPTIONS)
    assert not os.path.exists(tmp_path / "run" / CHECKPOINT_FILE)


def test_tensorboard_writes_one_event_file_per_run(tmp_path):
    pytest.importorskip("tensorboard")
    import glob

    _run(tmp_path / "run", epochs=3, steps_per_epoch=1, tensorboard=True)
    files = glob.glob(str(tmp_path / "run" / "logs" / "train" / "events.out.tfevents.*"))
    assert len(files) == 1, files  # one writer for the run, not one per epoch


def test_a_label_beyond_the_classes_stops_the_search_naming_the_split(tmp_path):
    import tensorflow as tf

    train = clip_dataset(12, 4, frames=2, dense_frames=4, crop=8, classes=3)
    train = train.map(lambda x, y: (x, tf.where(y == y[0], tf.cast(7, y.dtype), y)))
    heldout = clip_dataset(8, 4, frames=2, dense_frames=4, crop=8, classes=3, seed=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`train_data` has a label outside "
                                                             r"\[0, 3\)"):
        run_search_step(1, progressive_space(), train, heldout, tmp_path / "run", **OPTIONS)


def _dense_run(loop, epochs=3, callbacks=()):
    """A Dense model trained by `loop` (fit_epochs or distributed_fit_epochs): weights, rows, events."""
    import tensorflow as tf

    from tsnet_keras.engine import EpochHistory

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    rows, events = [], Events()
    step_fn = lambda trained: int(trained.optimizer.iterations.numpy())  # noqa: E731
    recorder = EpochHistory(rows, ("epoch", "step", "loss", "seconds"), step_fn, lambda r: None)
    stopped = loop(model, lambda epoch, skip: tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
                   .skip(skip), epochs=epochs, steps_per_epoch=4, step_fn=step_fn,
                   callbacks=[recorder, events, *callbacks], verbose=0)
    return [w.numpy() for w in model.weights], rows, events.counts, stopped


def test_the_multi_worker_loop_trains_as_fit_does_with_the_same_callbacks():
    import functools

    import tensorflow as tf

    from tsnet_keras.engine import distributed_fit_epochs, fit_epochs

    loop = functools.partial(distributed_fit_epochs, strategy=tf.distribute.get_strategy())
    want, got = _dense_run(fit_epochs), _dense_run(loop)
    for a, b in zip(want[0], got[0]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert [row["step"] for row in got[1]] == [row["step"] for row in want[1]] == [4, 8, 12]
    np.testing.assert_allclose([r["loss"] for r in got[1]], [r["loss"] for r in want[1]], rtol=1e-5)
    assert got[2] == want[2] == {"train_begin": 1, "train_end": 1, "epoch_begin": 3, "batches": 12}
    stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=1e9, patience=1)
    _, rows, counts, stopped = _dense_run(loop, epochs=5, callbacks=[stop])
    assert stopped and [row["epoch"] for row in rows] == [1, 2] and counts["train_end"] == 1


def test_one_machine_is_one_worker_and_the_chief():
    import tensorflow as tf

    from tsnet_keras.engine import check_same_start, local_replicas, worker_info
    from tsnet_keras.recipes.common import WorkerShare

    assert worker_info() == (1, 0, True)
    assert local_replicas(tf.distribute.get_strategy()) == 1
    check_same_start(tf.distribute.get_strategy(), 5, "here")  # nothing to compare
    share = WorkerShare(tf.distribute.get_strategy(), "out")
    assert (share.shard, share.write_dir, share.batch(5), share.batches(9, 2)) == (None, "out", 5, 4)
    share.workers = 2
    with pytest.raises(ValueError, match=r"`batch_size` \(5\) must be a multiple of the 2 workers"):
        share.batch(5)


# ------------------------------------------- files from before the logits rename
# The names the code wrote before the search logits (the paper's alpha) were renamed.
_OLD_NAMES = {"logits_optimizer": "alpha_optimizer", "logits_learning_rate": "alpha_learning_rate",
              "logits_loss": "alpha_loss", "logits_adam": "alpha_adam",
              "logits_frozen": "alpha_frozen"}


def _old(text):
    for new, old in _OLD_NAMES.items():
        text = text.replace(new, old)
    return text


def _write_in_the_old_format(folder):
    """Rewrites a run's checkpoint and history.json the way the code before the rename wrote
    them: array group `alpha_optimizer`, config key `alpha_learning_rate`, history `alpha_loss`."""
    path = os.path.join(folder, CHECKPOINT_FILE)
    with np.load(path) as data:
        arrays = {_old(key): data[key] for key in data.files}
    payload = json.loads(_old(bytes(arrays.pop("__meta__")).decode("utf-8")))
    arrays["__meta__"] = np.frombuffer(json.dumps(payload).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    history = os.path.join(folder, "history.json")
    if os.path.exists(history):
        with open(history) as handle:
            text = handle.read()
        with open(history, "w") as handle:
            handle.write(_old(text))
    assert "alpha_optimizer" in read_checkpoint_meta_names(path)


def read_checkpoint_meta_names(path):
    with np.load(path) as data:
        return json.loads(bytes(data["__meta__"]).decode("utf-8"))["names"]


def test_a_finished_run_from_before_the_rename_loads_with_the_new_names(finished, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(finished, old)
    _write_in_the_old_format(old)
    loaded = progressive.load_step_result(old)
    assert loaded.history and all("logits_loss" in row and "alpha_loss" not in row
                                  for row in loaded.history)
    result = _run(old)  # the stored settings match (alpha_learning_rate read as the new name)
    assert result.search is None  # the finished result, not a new search
    assert [row["logits_loss"] for row in result.history] == \
        [row["logits_loss"] for row in progressive.load_step_result(finished).history]


def test_a_checkpoint_from_before_the_rename_resumes_like_an_uninterrupted_run(finished,
                                                                                 tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "run", callbacks=[InterruptAt(5)])
    _write_in_the_old_format(tmp_path / "run")
    events = Events()
    result = _run(tmp_path / "run", callbacks=[events])
    assert events.counts["batches"] == 3  # resumed at step 3
    assert [sorted(row) for row in result.history] == \
        [sorted(row) for row in progressive.load_step_result(finished).history]
    reference = progressive.load_step_result(finished).distribution
    for got, want in zip(result.distribution.logits, reference.logits):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)


def test_the_old_learning_rate_argument_warns_and_counts_as_the_new_one(finished):
    with pytest.warns(DeprecationWarning, match="logits_learning_rate"):
        result = _run(finished, alpha_learning_rate=OPTIONS.get("logits_learning_rate", 0.025))
    assert result.search is None
    with pytest.warns(DeprecationWarning), \
            pytest.raises(ValueError, match=r"logits_learning_rate: 0.025 in the checkpoint"):
        _run(finished, alpha_learning_rate=0.5)
    with pytest.raises(TypeError, match="logits_learning_rate.*not both"):
        _run(finished, alpha_learning_rate=0.5, logits_learning_rate=0.5)


def test_the_old_compile_arguments_and_attributes_still_work():
    search = ParsecSearch(search_space(), 5, crop=8)
    with pytest.warns(DeprecationWarning, match="alpha_learning_rate"):
        search.compile(alpha_learning_rate=0.125, logits_optimizer="adam")
    assert float(search.logits_optimizer.learning_rate) == 0.125
    with pytest.warns(DeprecationWarning, match="logits_frozen"):
        search.alpha_frozen = True
    assert search.logits_frozen
    with pytest.warns(DeprecationWarning, match="logits_optimizer"):
        assert search.alpha_optimizer is search.logits_optimizer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search.compile(logits_learning_rate=0.25, logits_optimizer="adam")  # the new names do not warn
    assert float(search.logits_optimizer.learning_rate) == 0.25
