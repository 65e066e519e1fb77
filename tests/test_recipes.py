"""tsnet_keras.recipes: parameter errors before training, your own list files with a broken
video, resuming an interrupted retrain, the held-out split, the schedule and the table."""

import csv
import json
import logging
import math
import os
import shutil

import keras
import numpy as np
import pytest

from tsnet_keras import recipes
from tsnet_keras.data.synthetic import make_synthetic_dataset
from tsnet_keras.recipes.common import choose_strategy, read_json
from tsnet_keras.recipes.data import split_heldout
from tsnet_keras.recipes.evaluate import NOT_TRAINED, variant_crops, variant_views
from tsnet_keras.recipes.search import DistributionSnapshots
from tsnet_keras.recipes.train import TopKAccuracy, learning_rate_schedule, peak_learning_rate
from tsnet_keras.space.architecture import Architecture
from tsnet_keras.spaces import get_space

CROP = 32
TINY = {"crop": CROP, "batch_size": 2, "verbose": 0}


# --------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def own_videos(tmp_path_factory):
    """Someone else's dataset: videos in one folder, list files in another, one broken video.

    4 classes x 3 training + 1 validation H.264 videos of 64 x 48 pixels (72 frames); the lists
    use paths relative to the video folder (`data_root`) and each lists `broken.mp4` (a text file).
    """
    root = tmp_path_factory.mktemp("own")
    generated = make_synthetic_dataset(root / "generated", num_classes=4, videos_per_class=3,
                                       val_videos_per_class=1, width=64, height=48, num_frames=72,
                                       workers=1, verbose=False)
    clips = root / "clips"
    shutil.copytree(os.path.join(generated.root, "videos"), clips)
    (clips / "broken.mp4").write_text("not a video\n" * 10)
    lists = root / "lists"
    lists.mkdir()
    for split, source in (("train", generated.train_list), ("val", generated.val_list)):
        with open(source) as handle:
            lines = [line.strip() for line in handle if line.strip()]
        # paths relative to clips/, not to the list file's folder
        lines = [line.replace("videos/", "", 1) for line in lines] + ["broken.mp4 1"]
        (lists / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return {"data_root": str(clips), "train_list": str(lists / "train.txt"),
            "val_list": str(lists / "val.txt")}


@pytest.fixture(scope="module")
def own_data(own_videos):
    return recipes.resolve_data(**own_videos, verbose=False)


def two_stream_arch():
    return get_space("auto_tsnet_mini").sample(0)


def sparse_arch():
    return get_space("auto_tsnet_mini").single_stream().sample(0)


def assert_finite(*values):
    for value in values:
        assert value is not None and math.isfinite(value), value


# ----------------------------------------------------------- errors before training
def test_data_parameter_errors_name_the_parameter(own_videos, tmp_path):
    with pytest.raises(ValueError, match="`val_list` is empty"):
        recipes.resolve_data(train_list=own_videos["train_list"])
    with pytest.raises(ValueError, match="`train_list`.*not a file"):
        recipes.resolve_data(train_list=str(tmp_path / "missing.txt"), val_list=own_videos["val_list"])
    with pytest.raises(ValueError, match="`data_root`.*not a folder"):
        recipes.resolve_data(str(tmp_path / "nowhere"), own_videos["train_list"], own_videos["val_list"])
    with pytest.raises(ValueError, match="none of the .* `train_list`.*data_root"):
        recipes.resolve_data(str(tmp_path), own_videos["train_list"], own_videos["val_list"])
    high = tmp_path / "val_high.txt"
    high.write_text("a.mp4 7\n")
    with pytest.raises(ValueError, match="`val_list`.*labels >= 4"):
        recipes.resolve_data(own_videos["data_root"], own_videos["train_list"], str(high))
    with pytest.raises(ValueError, match="`num_classes`"):
        recipes.resolve_data(**own_videos, num_classes=2)
    # A typo label (1000 among 0..3) is an error, not 997 new classes.
    typo = tmp_path / "train_typo.txt"
    with open(own_videos["train_list"]) as handle:
        typo.write_text(handle.read() + "clip.mp4 1000\n")
    with pytest.raises(ValueError, match=r"`train_list`.*labels up to 1000.*typo"):
        recipes.resolve_data(own_videos["data_root"], str(typo), own_videos["val_list"])


def test_recipe_parameter_errors_come_before_the_data(tmp_path):
    # The lists do not exist either: the first error must be the numeric parameter's.
    missing = {"train_list": str(tmp_path / "t.txt"), "val_list": str(tmp_path / "v.txt")}
    out = str(tmp_path / "out")
    cases = [
        (lambda: recipes.search_step(1, out, epochs=0, **missing), "`epochs`"),
        (lambda: recipes.search_step(1, out, target_gflops=-1.0, **missing), "`target_gflops`"),
        (lambda: recipes.search_step(1, out, space="nope", **missing), "`space`"),
        (lambda: recipes.search_step(1, out, previous_dir=out, **missing), "`previous_dir`"),
        (lambda: recipes.search_step(2, out, str(tmp_path / "step1"), **missing), "`previous_dir`.*step 1"),
        (lambda: recipes.search_step(1, out, heldout_fraction=1.0, **missing), "`heldout_fraction`"),
        (lambda: recipes.search_step(1, out, optimizer="adam", **missing), "`optimizer`"),
        (lambda: recipes.search_step(1, out, adamw_learning_rate=0.0, **missing),
         "`adamw_learning_rate`"),
        (lambda: recipes.retrain(sparse_arch(), out, batch_size=0, **missing), "`batch_size`"),
        (lambda: recipes.retrain(sparse_arch(), out, epochs=2, warmup_epochs=2, **missing),
         "`warmup_epochs`"),
        (lambda: recipes.retrain(sparse_arch(), out, label_smoothing=1.5, **missing), "`label_smoothing`"),
        (lambda: recipes.retrain(sparse_arch(), out, mixed_precision="yes", **missing), "`mixed_precision`"),
        (lambda: recipes.retrain(sparse_arch(), out, stream_dropout=0.5, **missing),
         "`stream_dropout`.*without a dense stream"),
        (lambda: recipes.retrain(two_stream_arch(), out, stream_dropout=1.0, **missing),
         "`stream_dropout`"),
        (lambda: recipes.evaluate(str(tmp_path), out, **missing), "`previous_dir`.*model.keras"),
        (lambda: recipes.load_architecture(str(tmp_path)), "`previous_dir`.*architecture.json"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert not os.path.exists(out)


class _Handed(Exception):
    pass


@pytest.fixture
def handed(monkeypatch):
    """The keyword arguments `search_step` hands to `run_search_step` (which then stops)."""
    import tsnet_keras.search

    kwargs = {}

    def record(*args, **given):
        kwargs.update(given)
        raise _Handed

    monkeypatch.setattr(tsnet_keras.search, "run_search_step", record)
    return kwargs


@pytest.mark.parametrize("settings, expected", [
    ({}, ("adamw", 2e-3)),  # the retrain recipe's default
    ({"optimizer": "sgd"}, ("sgd", 0.4 * 2 / 64)),  # the paper's 0.4 at batch 64, linear scaling
    ({"optimizer": "sgd", "base_learning_rate": 0.8, "batch_size": 4}, ("sgd", 0.05)),
])
def test_search_step_hands_the_retrain_rule_for_the_weights_optimizer(own_data, tmp_path, handed,
                                                                     settings, expected):
    with pytest.raises(_Handed):
        recipes.search_step(1, str(tmp_path / "s1"), data=own_data, heldout_fraction=0.34,
                            **{**TINY, **settings})
    assert handed["weights_optimizer"] == expected[0]
    assert handed["learning_rate"] == pytest.approx(expected[1])


def test_search_step_reads_the_old_learning_rate_name(own_data, tmp_path, handed):
    with pytest.warns(DeprecationWarning, match="base_learning_rate"), pytest.raises(_Handed):
        recipes.search_step(1, str(tmp_path / "s1"), data=own_data, heldout_fraction=0.34,
                            optimizer="sgd", learning_rate=0.8, **TINY)
    assert handed["learning_rate"] == pytest.approx(0.8 * 2 / 64)
    assert "base_learning_rate" not in handed


def test_unreachable_target_is_refused_before_training(own_data, tmp_path):
    with pytest.raises(ValueError, match="target_macs .* below the smallest"):
        recipes.search_step(1, str(tmp_path / "s1"), data=own_data, target_gflops=1e-6, epochs=1,
                            steps_per_epoch=1, heldout_fraction=0.34, samples_per_replica=2,
                            **TINY)
    assert not os.path.exists(tmp_path / "s1" / "checkpoint.npz")


def test_a_search_epoch_longer_than_one_pass_goes_over_the_videos_again(own_data, tmp_path):
    # 8 search-training videos in batches of 2 make 4 batches a pass; the epoch asks for 6 steps
    recipes.search_step(1, str(tmp_path / "s1"), data=own_data, epochs=1, steps_per_epoch=6,
                        heldout_fraction=0.34, samples_per_replica=2, **TINY)
    with open(tmp_path / "s1" / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [6]


def test_search_step_names_what_the_evidence_decided(own_data, tmp_path, caplog):
    """After 3 steps no logit can pass z = 3 (|z| <= sqrt(steps)): the file and the
    metrics say nothing was decided, and the log says the choices are leans."""
    with caplog.at_level(logging.INFO, logger="tsnet_keras.recipes"):
        outcome = recipes.search_step(1, str(tmp_path / "s1"), data=own_data, epochs=1,
                                      steps_per_epoch=3, heldout_fraction=0.34,
                                      samples_per_replica=2, **{**TINY, "verbose": 1})
    with open(tmp_path / "s1" / "evidence.json") as handle:
        evidence = json.load(handle)
    assert evidence["threshold"] == 3.0 and evidence["decided"] == {}
    assert evidence["undecided"] == list(outcome.result.distribution.keys)
    assert outcome.metrics["decided_variables"] == {}
    assert f"decided 0 of {len(evidence['undecided'])} variables" in caplog.text


# --------------------------------------------------------- your own list files
def test_own_list_file_with_a_broken_video_trains_and_evaluates(own_videos, tmp_path):
    data = recipes.resolve_data(**own_videos, verbose=False)
    assert data.num_classes == 4 and data.num_train_videos == 13 and not data.synthetic
    outcome = recipes.retrain(two_stream_arch(), str(tmp_path / "retrain"), data=data, epochs=1,
                              steps_per_epoch=2, warmup_epochs=0, stream_dropout=0.5, **TINY)
    broken = os.path.join(own_videos["data_root"], "broken.mp4")
    metrics = read_json(str(tmp_path / "retrain" / "metrics.json"))
    assert metrics["settings"]["stream_dropout"] == 0.5
    assert outcome.model.get_layer("classifier").stream_dropout == 0.5
    assert broken in metrics["data"]["failed_files"]  # the validation pass met it
    assert_finite(metrics["loss"], metrics["val_loss"], metrics["val_top1_one_clip"])
    assert os.path.exists(tmp_path / "retrain" / "model.keras")
    assert outcome.metrics["epochs_completed"] == 1

    result = recipes.evaluate(str(tmp_path / "retrain"), str(tmp_path / "evaluate"),
                              **own_videos, num_views=2, rows=("S", "M", "L"), verbose=False)
    measured = {row["row"]: row for row in result["rows"]}
    assert measured["S"]["num_videos"] == 4  # 5 listed, the broken one skipped
    assert measured["S"]["num_views"] == 8
    assert_finite(result["top1"], result["top5"], measured["M"]["top1"])
    assert measured["L"]["top1"] is None and measured["L"]["status"] == NOT_TRAINED
    assert broken in result["data"]["failed_files"]
    table = (tmp_path / "evaluate" / "table.md").read_text()
    assert "Auto-TSNet-L" in table and "not trained" in table and "\u00d7 2" in table


# ------------------------------------------------------------------ resuming
class Interrupt(keras.callbacks.Callback):
    """Raises after `after` training batches of this run (a killed job)."""

    def __init__(self, after):
        super().__init__()
        self.after, self.seen = after, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.after:
            raise KeyboardInterrupt("simulated interruption")


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs, self.batches, self.first_step = [], 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.first_step is None and hasattr(self.model.optimizer, "iterations"):
            self.first_step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


# The epoch-checkpoint case is `slow` (about 90 s on 2 cores); the default run keeps the
# mid-epoch (step) case, which also resumes inside an epoch.
@pytest.mark.parametrize("checkpoint_every, saved_step", [
    pytest.param(0, 2, id="epoch-checkpoints", marks=pytest.mark.slow),
    pytest.param(1, 3, id="step-checkpoints"),
])
def test_retrain_resumes_after_interruption(own_data, tmp_path, checkpoint_every, saved_step):
    arch, out = sparse_arch(), str(tmp_path / "retrain")
    settings = dict(data=own_data, epochs=3, steps_per_epoch=2, warmup_epochs=1, validate=False,
                    checkpoint_every=checkpoint_every, **TINY)
    with pytest.raises(KeyboardInterrupt):
        recipes.retrain(arch, out, callbacks=[Interrupt(after=3)], **settings)
    state = read_json(os.path.join(out, "checkpoint", "state.json"))
    assert state["step"] == saved_step and not state["completed"]
    assert [row["epoch"] for row in state["history"]] == [1]
    assert not os.path.exists(os.path.join(out, "model.keras"))

    recorder = Recorder()
    outcome = recipes.retrain(arch, out, callbacks=[recorder], **settings)
    assert recorder.first_step == saved_step  # optimizer state (and schedule position) restored
    assert recorder.batches == 6 - saved_step  # not from scratch
    assert recorder.epochs == [1, 2]  # continues in the epoch of the saved step
    assert int(outcome.model.optimizer.iterations.numpy()) == 6
    assert [row["epoch"] for row in outcome.history] == [1, 2, 3]
    with open(os.path.join(out, "history.csv")) as handle:
        assert len(handle.read().strip().splitlines()) == 4

    # A finished run returns its stored model; other settings in the same folder are refused.
    again = recipes.retrain(arch, out, **settings)
    assert again.metrics["epochs_completed"] == 3
    with pytest.raises(ValueError, match="other settings.*epochs: 3 in the checkpoint, 4 now"):
        recipes.retrain(arch, out, **dict(settings, epochs=4))


@pytest.mark.slow  # ~30 s; the engine's own test covers the same kill (search/test_engine.py)
def test_retrain_killed_right_after_an_epochs_checkpoint_keeps_its_row(own_data, tmp_path,
                                                                        monkeypatch):
    from tsnet_keras.recipes import train

    arch, out = sparse_arch(), str(tmp_path / "retrain")
    settings = dict(data=own_data, epochs=2, steps_per_epoch=2, warmup_epochs=0, validate=False,
                    checkpoint_every=2, **TINY)  # a checkpoint on each epoch's last step
    real = train.TrainingCheckpoint.save

    def save_then_die(self, model, state):
        real(self, model, state)
        if state["step"] == 2:
            raise KeyboardInterrupt("killed right after the checkpoint of step 2")

    monkeypatch.setattr(train.TrainingCheckpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        recipes.retrain(arch, out, **settings)
    state = read_json(os.path.join(out, "checkpoint", "state.json"))
    assert state["step"] == 2 and [row["epoch"] for row in state["history"]] == [1]
    monkeypatch.undo()
    recorder = Recorder()
    outcome = recipes.retrain(arch, out, callbacks=[recorder], **settings)
    assert recorder.batches == 2 and recorder.first_step == 2
    assert [row["epoch"] for row in outcome.history] == [1, 2]
    assert outcome.metrics["epochs_completed"] == 2
    # The last two checkpoints are kept; a changed setting is refused naming both values.
    folder = os.path.join(out, "checkpoint")
    assert sorted(f for f in os.listdir(folder) if f.endswith(".h5")) == [
        "step-000000002.weights.h5", "step-000000004.weights.h5"]
    with pytest.raises(ValueError, match=r"momentum: 0.9 in the checkpoint, 0.5 now.*resume=False"):
        recipes.retrain(arch, out, **dict(settings, momentum=0.5))


def test_a_retrain_epoch_longer_than_one_pass_goes_over_the_videos_again(own_data, tmp_path):
    # 12 training videos in batches of 2 make 6 batches a pass; the epoch asks for 8 steps
    outcome = recipes.retrain(sparse_arch(), str(tmp_path / "retrain"), data=own_data, epochs=1,
                              steps_per_epoch=8, warmup_epochs=0, validate=False, **TINY)
    assert outcome.metrics["epochs_completed"] == 1
    assert outcome.history[-1]["step"] == 8


@pytest.mark.slow  # ~20 s; the engine's early-stopping test (search/test_engine.py) runs by default
def test_early_stopping_ends_a_retrain(own_data, tmp_path):
    stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=1e9, patience=2)
    outcome = recipes.retrain(sparse_arch(), str(tmp_path / "retrain"), data=own_data, epochs=5,
                              steps_per_epoch=1, warmup_epochs=0, validate=False,
                              callbacks=[stop], **TINY)
    assert [row["epoch"] for row in outcome.history] == [1, 2, 3]
    assert outcome.metrics["epochs_completed"] == 3


def test_training_checkpoint_falls_back_when_the_latest_weights_are_damaged(tmp_path):
    from tsnet_keras.recipes.train import TrainingCheckpoint

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    checkpoint = TrainingCheckpoint(tmp_path / "checkpoint")
    kernel = model.layers[0].kernel
    kernel.assign(np.ones((3, 2)))
    checkpoint.save(model, {"step": 1})
    kernel.assign(np.full((3, 2), 2.0))
    checkpoint.save(model, {"step": 2})
    kernel.assign(np.full((3, 2), 3.0))
    checkpoint.save(model, {"step": 3})
    files = sorted(os.listdir(tmp_path / "checkpoint"))
    assert files == ["state.json", "state.previous.json", "step-000000002.weights.h5",
                     "step-000000003.weights.h5"]
    latest = tmp_path / "checkpoint" / "step-000000003.weights.h5"
    latest.write_bytes(latest.read_bytes()[:200])
    with pytest.warns(UserWarning, match=r"step-000000003\.weights\.h5.*previous checkpoint"):
        state = checkpoint.restore(model)
    assert state["step"] == 2
    np.testing.assert_array_equal(np.asarray(kernel), np.full((3, 2), 2.0))


@pytest.mark.slow
def test_search_step_resumes_after_interruption(own_data, tmp_path):
    out = str(tmp_path / "step1")
    settings = dict(data=own_data, epochs=2, steps_per_epoch=2, checkpoint_every=1, snapshot_every=1,
                    heldout_fraction=0.34, target_gflops=0.0, samples_per_replica=2, **TINY)
    with pytest.raises(KeyboardInterrupt):
        recipes.search_step(1, out, callbacks=[Interrupt(after=3)], **settings)
    recorder = Recorder()
    outcome = recipes.search_step(1, out, callbacks=[recorder], **settings)
    assert recorder.batches == 1  # only the last of the 4 steps was left
    assert [row["epoch"] for row in outcome.history] == [1, 2]
    snapshots = [s["step"] for s in recipes.load_snapshots(out)]
    assert snapshots == [0, 1, 2, 3, 4]
    assert_finite(outcome.metrics["heldout_score"], outcome.metrics["entropy"])


def test_held_out_batches_are_positioned_without_decoding_the_skipped_ones(own_data):
    from tsnet_keras.data.lists import VideoList
    from tsnet_keras.search.progressive import heldout_positions

    videos = VideoList(tuple(r for r in own_data.train if "broken" not in r.path))
    options = dict(crop=CROP, batch_size=2, frames=(4, None), seed=0)
    by_position = heldout_positions(own_data.heldout_batches(videos, cache_mb=0, **options))
    cycle = len(videos) // 2
    attempts = []
    for start in (0, 50, 200, 800):  # a long search: 800 steps are 400 passes over the list
        before = own_data.failures.num_attempts
        for _ in by_position(start).take(1):
            pass
        attempts.append(own_data.failures.num_attempts - before)
    # At most one pass over the list whatever the start (skipping would decode 2 x start).
    assert max(attempts) <= 2 * cycle, attempts
    # Batch k of the cycle, as the plain dataset cycled batch by batch gives it.
    plain = heldout_positions(own_data.dataset("val", "val", videos=videos, drop_remainder=True,
                                               **options))
    for start in (1, cycle + 2):
        (want_x, want_y), = plain(start).take(1)
        (got_x, got_y), = by_position(start).take(1)
        np.testing.assert_array_equal(got_y, want_y)
        np.testing.assert_array_equal(got_x, want_x)
    with pytest.raises(ValueError, match="do not fill one batch"):
        own_data.heldout_batches(VideoList(videos.records[:1]), **options)


def test_held_out_cycle_is_decoded_once_and_kept_in_memory(own_data):
    from tsnet_keras.data.lists import VideoList
    from tsnet_keras.search.progressive import heldout_positions

    videos = VideoList(tuple(r for r in own_data.train if "broken" not in r.path))
    options = dict(crop=CROP, batch_size=2, frames=(4, None), seed=0)
    decoding = heldout_positions(own_data.heldout_batches(videos, cache_mb=0, **options))
    in_memory = heldout_positions(own_data.heldout_batches(videos, **options))
    cycle = len(videos) // 2
    decoded = []
    for start in (0, 1, cycle + 2, 801):  # positions of a long search, and of a resume
        before = own_data.failures.num_attempts
        got = [batch for batch in in_memory(start).take(cycle + 1)]  # one cycle and a batch more
        decoded.append(own_data.failures.num_attempts - before)
        want = [batch for batch in decoding(start).take(cycle + 1)]
        for (got_x, got_y), (want_x, want_y) in zip(got, want, strict=True):
            np.testing.assert_array_equal(got_y, want_y)
            np.testing.assert_array_equal(got_x, want_x)
    # The first call decodes one cycle, later ones nothing; decoding every cycle reads each time.
    assert decoded[0] >= 2 * cycle and decoded[1:] == [0, 0, 0], decoded


def test_clip_size_of_a_batched_dataset_counts_every_element():
    import tensorflow as tf

    from tsnet_keras.recipes.data import _clip_megabytes

    clips = tf.data.Dataset.from_tensors(({"sparse": tf.zeros((2, 4, 32, 32, 3)),
                                           "dense": tf.zeros((2, 32, 32, 32, 3))},
                                          tf.zeros((2,), tf.int32)))
    assert _clip_megabytes(clips) == ((4 + 32) * 32 * 32 * 3 * 4 + 4) / 2**20
    frames_unknown = tf.data.Dataset.from_generator(
        lambda: iter(()), output_signature=(tf.TensorSpec((2, None, 32, 32, 3)),
                                            tf.TensorSpec((2,), tf.int32)))
    assert _clip_megabytes(frames_unknown) == float("inf")  # never kept in memory


def test_held_out_videos_that_all_fail_to_decode_are_named(own_data):
    from tsnet_keras.data.lists import VideoList
    from tsnet_keras.search.progressive import heldout_positions

    broken = [r for r in own_data.train if "broken" in r.path]
    at = heldout_positions(own_data.heldout_batches(VideoList(tuple(broken * 2)), crop=CROP,
                                                    batch_size=2, frames=(4, None)))
    with pytest.raises(ValueError, match="none of the 2 held-out videos gave a batch"):
        at(0)


def test_distribution_snapshots_follow_the_restored_step(tmp_path):
    class FakeDistribution:
        def marginals(self):
            return {"sparse/g0/expansion": {1.5: 0.25, 3.0: 0.75}}

    class FakeSearch:
        def __init__(self, step):
            self.search_step = keras.Variable(step, dtype="int64")
            self.distribution = FakeDistribution()

    path = tmp_path / "distribution_history.json"
    path.write_text(json.dumps([{"step": s, "sparse/g0/expansion": {"1.5": 0.5, "3.0": 0.5}}
                                for s in (0, 2, 4, 6)]))
    callback = DistributionSnapshots(path, every=2)
    callback.set_model(FakeSearch(4))  # the checkpoint was taken at step 4
    callback.on_train_begin()
    callback.model.search_step.assign(6)
    callback.on_train_batch_end(0)
    steps = [s["step"] for s in json.loads(path.read_text())]
    assert steps == [0, 2, 4, 6]
    assert json.loads(path.read_text())[-1]["sparse/g0/expansion"] == {"1.5": 0.25, "3.0": 0.75}


# ------------------------------------------------------------------ pure pieces
def test_split_heldout_is_per_class_disjoint_and_reproducible(own_data):
    train, heldout = split_heldout(own_data.train, 0.34, seed=3)
    again = split_heldout(own_data.train, 0.34, seed=3)
    assert [r.path for r in heldout] == [r.path for r in again[1]]
    assert not {r.path for r in train} & {r.path for r in heldout}
    assert len(train) + len(heldout) == len(own_data.train)
    labels = own_data.train.labels
    for label in np.unique(labels):
        assert (train.labels == label).sum() >= 1
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_heldout(own_data.train, 0.0)


def test_learning_rate_rule_warm_up_and_cosine():
    assert peak_learning_rate(0.4, 64) == pytest.approx(0.4)
    assert peak_learning_rate(0.4, 8) == pytest.approx(0.05)
    schedule = learning_rate_schedule(0.8, total_steps=110, warmup_steps=10)
    rates = np.array([float(schedule(step)) for step in range(111)])
    np.testing.assert_allclose(rates[:11], np.linspace(0.08, 0.8, 11), rtol=1e-5)
    cosine = 0.8 * 0.5 * (1 + np.cos(np.pi * np.arange(101) / 100))
    np.testing.assert_allclose(rates[10:], cosine, rtol=1e-4, atol=1e-6)


def test_top_k_accuracy_reads_mixed_precision_logits():
    labels = np.eye(4)[[0, 1, 2]]
    logits = np.array([[5.0, 4.0, 0.0, 0.0], [5.0, 4.0, 0.0, 0.0], [5.0, 4.0, 0.0, 0.0]])
    metric = TopKAccuracy(k=2)
    metric.update_state(labels, keras.ops.cast(logits, "bfloat16"))
    assert float(metric.result()) == pytest.approx(2 / 3)


def test_variants_follow_the_paper():
    # 10-Center: short side 182, centre crop 160 (section 5.2); M and L at X3D's sizes.
    assert variant_views(160) == {"S": (182, 160), "M": (256, 224), "L": (356, 312)}
    # 10-LeftCenterRight: three squares of the test size along the long side.
    assert variant_crops(160, num_crops=3) == {"S": 182, "M": 256, "L": 356}
    assert variant_views(64) == {"S": (72, 64), "M": (102, 90), "L": (142, 124)}
    arch = Architecture.from_dict(two_stream_arch().to_dict())
    variants = recipes.variant_architectures(arch)
    assert variants["S"] == variants["M"] == arch
    assert variants["L"] == arch.scale_depth(2)
    assert variants["L\u2020"] == arch.scale_depth(2).without_attention()
    assert not any(g.attention for _, s in variants["S\u2020"].streams() for g in s.groups)


def test_single_device_uses_the_default_strategy():
    import tensorflow as tf

    if len(tf.config.list_logical_devices("GPU")) > 1:
        pytest.skip("several GPUs: MirroredStrategy is expected")
    strategy = choose_strategy(verbose=False)
    assert strategy.num_replicas_in_sync == 1
    assert not isinstance(strategy, tf.distribute.MirroredStrategy)


def test_the_devices_line_is_logged_not_printed(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="tsnet_keras.recipes"):
        strategy = choose_strategy()
    assert f"{strategy.num_replicas_in_sync} replica(s)" in caplog.text
    assert "devices:" in caplog.text and "devices:" not in capsys.readouterr().out


def test_one_shot_search_step_takes_no_previous_step(tmp_path):
    with pytest.raises(ValueError, match="previous_dir"):
        recipes.search_step("one_shot", str(tmp_path / "out"), str(tmp_path))
    with pytest.raises(ValueError, match="`step` must be one of"):
        recipes.search_step(4, str(tmp_path / "out"))


def test_importing_the_recipes_quiets_tensorflows_cpp_warnings():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "import os, tsnet_keras.recipes; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    for preset, expected in ((None, "2"),):  # a preset value is left alone (setdefault)
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        env["PYTHONPATH"] = root
        if preset is not None:
            env["TF_CPP_MIN_LOG_LEVEL"] = preset
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, timeout=300, cwd=root)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().splitlines()[-1] == expected



# ------------------------------------------------------- searched vs random
@pytest.mark.slow  # three trainings (2 min on 2 busy cores); the recipe chain test runs one
def test_evaluate_compares_with_random_architectures_trained_identically(own_data, tmp_path):
    from tsnet_keras.recipes.baselines import RANDOM_DIR

    arch, space = sparse_arch(), get_space("auto_tsnet_mini").single_stream()
    recipes.retrain(arch, str(tmp_path / "retrain"), data=own_data, epochs=1, steps_per_epoch=2,
                    warmup_epochs=0, adamw_learning_rate=1e-3, **TINY)
    common = dict(data=own_data, num_views=1, rows=("S",), verbose=False)
    with pytest.raises(ValueError, match="`random_baselines`"):
        recipes.evaluate(str(tmp_path / "retrain"), str(tmp_path / "bad"), random_baselines=-1,
                         **common)
    with pytest.raises(ValueError, match="`space`: the evaluated architecture is not in"):
        recipes.evaluate(str(tmp_path / "retrain"), str(tmp_path / "bad"), random_baselines=1,
                         space="auto_tsnet", **common)
    assert not (tmp_path / "bad").exists()  # refused before measuring or training anything

    result = recipes.evaluate(str(tmp_path / "retrain"), str(tmp_path / "evaluate"),
                              random_baselines=2, space=space, **common)
    compared = result["random_baselines"]
    searched = complexity_gflops(arch, own_data.num_classes)
    assert compared["searched"] == result["top1"] and len(compared["rows"]) == 2
    for row in compared["rows"]:
        assert abs(row["gflops_per_view"] / searched - 1) <= 0.05
        assert Architecture.from_dict(row["architecture"]) != arch
        settings = read_json(os.path.join(row["folder"], "metrics.json"))["settings"]
        assert settings["peak_learning_rate"] == pytest.approx(1e-3)  # trained identically
        assert (settings["epochs"], settings["steps_per_epoch"], settings["seed"]) == (1, 2, 0)
        assert row["num_views"] == result["rows"][0]["num_views"] and 0.0 <= row["top1"] <= 1.0
    assert os.path.isdir(tmp_path / "evaluate" / RANDOM_DIR / "1")
    mean = np.mean([row["top1"] for row in compared["rows"]])
    assert compared["random_mean"] == pytest.approx(mean)
    assert "Searched vs random" in (tmp_path / "evaluate" / "table.md").read_text()


def complexity_gflops(arch, num_classes):
    from tsnet_keras.accounting import complexity

    return complexity(arch, num_classes, crop=CROP).gflops


def test_retrain_arguments_reproduce_the_recorded_peak_learning_rate():
    from tsnet_keras.recipes.train import retrain_arguments

    adamw = retrain_arguments({"optimizer": "adamw", "peak_learning_rate": 1e-3, "epochs": 3,
                               "batch_size": 8, "crop": 64, "num_classes": 4,
                               "stream_dropout": 0.5})
    assert adamw == {"optimizer": "adamw", "adamw_learning_rate": 1e-3, "epochs": 3,
                     "batch_size": 8, "stream_dropout": 0.5}  # crop and classes: the caller's
    sgd = retrain_arguments({"optimizer": "sgd", "peak_learning_rate": 0.05, "batch_size": 8})
    assert peak_learning_rate(sgd["base_learning_rate"], 8, sgd["reference_batch_size"]) == 0.05


def test_retrain_validation_is_decoded_once_and_kept_in_memory(own_data, tmp_path):
    import tensorflow as tf

    from tsnet_keras.recipes.common import WorkerShare
    from tsnet_keras.recipes.data import in_memory_if_small
    from tsnet_keras.recipes.train import _retrain_data

    options = dict(crop=CROP, batch_size=2, frames=(4, None), seed=0, steps_per_epoch=1,
                   validate=True)
    share = WorkerShare(tf.distribute.get_strategy(), str(tmp_path))
    _, in_memory, _ = _retrain_data(own_data, share, val_steps=0, **options)
    decoded, passes = [], []
    for _ in range(3):  # three epochs' validation
        before = own_data.failures.num_attempts
        passes.append([batch for batch in in_memory])
        decoded.append(own_data.failures.num_attempts - before)
    assert decoded[0] >= len(own_data.val) - 1 and decoded[1:] == [0, 0], decoded
    plain = own_data.dataset("val", "val", crop=CROP, batch_size=2, frames=(4, None), seed=0)
    want = [(x, tf.one_hot(y, own_data.num_classes)) for x, y in plain]
    for got in passes:
        for (got_x, got_y), (want_x, want_y) in zip(got, want, strict=True):
            np.testing.assert_array_equal(got_x, want_x)
            np.testing.assert_array_equal(got_y, want_y)
    # Too large for the cap, or of an unknown size: decoded at every pass, as before.
    assert in_memory_if_small(plain, len(own_data.val), "validation", cache_mb=0) is plain
    assert in_memory_if_small(plain, None, "validation") is plain
