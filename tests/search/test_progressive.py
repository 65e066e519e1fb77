"""Progressive search steps: outputs, weight inheritance and clear errors before training."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.search.data import clip_dataset
from tests.search.spaces import progressive_space
from tsnet_keras.models import build_model
from tsnet_keras.search import (
    SearchDivergedError,
    Supernet,
    inherit_weights,
    load_step_result,
    run_search_step,
    step_space,
)
from tsnet_keras.search.checkpoint import CHECKPOINT_FILE, read_checkpoint_meta

CLASSES = 3
CROP = 8
# Softmax weights move the logits on every step (ranks leave it alone when the samples tie,
# which on these random clips is most steps), so the warm-up test can see the gate.
COMMON = {"num_classes": CLASSES, "crop": CROP, "epochs": 1, "steps_per_epoch": 3, "verbose": 0,
          "checkpoint_every": 2, "samples_per_replica": 2, "weighting": "softmax"}


def _data(size=12, seed=0):
    return clip_dataset(size, 4, frames=2, dense_frames=4, crop=CROP, classes=CLASSES, seed=seed)


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """Runs steps 1, 2, 3 once for the module (three short searches)."""
    root = tmp_path_factory.mktemp("progressive")
    space = progressive_space()
    results, previous = [], None
    for step in (1, 2, 3):
        directory = os.fspath(root / f"step{step}")
        # Step 3 runs 2 epochs, the first one a warm-up with the logits frozen.
        options = dict(COMMON, epochs=2, warmup_epochs=1) if step == 3 else COMMON
        results.append(run_search_step(step, space, _data(), _data(8, 1), directory, previous,
                                       **options))
        previous = directory
    return space, results


def test_each_step_writes_its_outputs(steps):
    _, results = steps
    for result in results:
        files = set(os.listdir(result.output_dir))
        assert {"distribution.json", "architecture.json", "model.weights.h5",
                "supernet.weights.npz", "history.csv", "history.json", CHECKPOINT_FILE,
                "logs"} <= files
        assert os.listdir(os.path.join(result.output_dir, "logs"))  # TensorBoard events
        with open(os.path.join(result.output_dir, "history.json")) as handle:
            history = json.load(handle)
        assert [row["step"] for row in history] == [3 * (i + 1) for i in range(len(history))]
        for key in ("loss", "heldout_score", "entropy", "expected_macs", "sampled_macs",
                    "most_probable_macs"):
            assert np.isfinite(history[-1][key]), key
        with open(os.path.join(result.output_dir, "history.csv")) as handle:
            assert handle.readline().startswith("epoch,step,loss")
        loaded = load_step_result(result.output_dir)
        assert loaded.architecture == result.architecture
        assert read_checkpoint_meta(os.path.join(result.output_dir, CHECKPOINT_FILE))["completed"]


def test_warm_up_epochs_leave_logits_untouched(steps):
    _, (_, _, step3) = steps
    first, second = step3.history
    uniform = 2 * np.log(2.0)  # step 3 searches two on/off variables
    assert first["entropy"] == pytest.approx(uniform, abs=1e-6)
    assert second["entropy"] != pytest.approx(uniform, abs=1e-6)
    # The logits' optimizer counts the 3 steps after the warm-up only (one traced step).
    assert int(step3.search.logits_optimizer.iterations.numpy()) == 3


def test_steps_fix_what_earlier_steps_found(steps):
    space, (step1, step2, step3) = steps
    assert step1.architecture.dense is None
    assert step2.architecture.sparse == dataclasses.replace(
        step1.architecture.sparse,
        groups=tuple(dataclasses.replace(g, fusion=s.fusion) for g, s in
                     zip(step1.architecture.sparse.groups, step2.architecture.sparse.groups)),
    )
    assert step3.architecture.without_attention() == step2.architecture.without_attention()
    assert [v.step for v in step1.distribution.search_variables] == [1] * 4
    assert {v.step for v in step2.distribution.search_variables} == {2}
    assert {v.step for v in step3.distribution.search_variables} == {3}
    space.validate(step3.architecture)


def test_step_two_inherits_the_step_one_weights(steps):
    space, (step1, _, _) = steps
    sub_space = step_space(2, space, step1.architecture)
    supernet = Supernet(sub_space, num_classes=CLASSES)
    written = inherit_weights(supernet, step1.output_dir, CLASSES)
    assert "sparse_g00_b00" in written and "classifier" in written
    source = build_model(step1.architecture, num_classes=CLASSES, crop=None)
    source.load_weights(os.path.join(step1.output_dir, "model.weights.h5"))
    arch = sub_space.architecture({})  # sparse fixed to step 1's result, no fusion
    target = supernet.fixed_weights(arch)
    for layer in source.layers:
        if layer.name.startswith("sparse_g"):
            for v in layer.weights:
                path = v.path.split(layer.name + "/", 1)[1]
                np.testing.assert_array_equal(target[layer.name][path], np.asarray(v))
    # The classifier's rows for the sparse features come from step 1.
    rows = np.asarray(source.get_layer("classifier").hidden_kernel)
    np.testing.assert_array_equal(target["classifier"]["hidden_kernel"][: rows.shape[0]], rows)


def test_rerunning_a_finished_step_returns_its_result(steps):
    space, (step1, _, _) = steps
    again = run_search_step(1, space, _data(), _data(8, 1), step1.output_dir, **COMMON)
    assert again.search is None  # loaded, not searched again
    assert again.architecture == step1.architecture


def test_previous_architecture_outside_the_space_is_refused(steps, tmp_path):
    space, (step1, _, _) = steps
    # A space whose sparse group 0 no longer allows step 1's channel choice.
    width = step1.architecture.sparse.groups[0].channels
    other = {8: (16,), 16: (8,)}[width]
    groups = list(space.sparse.groups)
    groups[0] = dataclasses.replace(groups[0], channels=other)
    changed = dataclasses.replace(space, sparse=dataclasses.replace(space.sparse, groups=tuple(groups)))
    with pytest.raises(ValueError, match=r"sparse block group 0.*channels"):
        run_search_step(2, changed, _data(), _data(8, 1), tmp_path / "x", step1.output_dir,
                        **COMMON)
    # Inheriting into a supernet of another space names the variable too.
    supernet = Supernet(step_space(1, changed), num_classes=CLASSES)
    with pytest.raises(ValueError, match=r"sparse\[0\]\.channels"):
        inherit_weights(supernet, step1.output_dir, CLASSES)
    assert not os.path.exists(tmp_path / "x" / CHECKPOINT_FILE)


def test_empty_split_and_unreachable_target_are_refused_before_training(tmp_path):
    space = progressive_space()
    empty = _data().take(0)
    with pytest.raises(ValueError, match="train_data` is empty"):
        run_search_step(1, space, empty, _data(), tmp_path / "a", **COMMON)
    with pytest.raises(ValueError, match="val_data` is empty"):
        run_search_step(1, space, _data(), _data().filter(lambda x, y: False), tmp_path / "b",
                        **COMMON)
    smallest = space.single_stream().extreme(largest=False)
    from tsnet_keras.accounting import complexity

    too_small = complexity(smallest, CLASSES, CROP).macs // 2
    with pytest.raises(ValueError, match="below the smallest architecture"):
        run_search_step(1, space, _data(), _data(), tmp_path / "c", target_macs=too_small,
                        **COMMON)
    with pytest.raises(ValueError, match="previous_dir"):
        run_search_step(2, space, _data(), _data(), tmp_path / "d", **COMMON)
    for name in "abcd":
        assert not os.path.exists(tmp_path / name / CHECKPOINT_FILE)


def test_the_steps_architecture_meets_the_target_its_argmax_misses(tmp_path):
    from tsnet_keras.accounting import complexity

    space = progressive_space()
    largest = complexity(space.single_stream().extreme(largest=True), CLASSES, CROP).macs
    target = (0.95 * largest, largest)  # a short search's argmax is well below it
    result = run_search_step(1, space, _data(), _data(8, 1), tmp_path / "s", target_macs=target,
                             **COMMON)
    assert result.history[-1]["most_probable_macs"] < target[0]
    assert target[0] <= complexity(result.architecture, CLASSES, CROP).macs <= target[1]
    assert result.architecture == result.distribution.most_probable_within(target)


def test_nan_loss_stops_the_search_and_keeps_the_last_good_checkpoint(tmp_path):
    space = progressive_space()
    good = _data(24)

    def poison(index, batch):
        x, y = batch
        bad = tf.where(index == 3, np.float32(np.nan), np.float32(0.0))
        x = {k: v + bad if k == "sparse" else v for k, v in x.items()}
        return x, y

    train = good.enumerate().map(poison)  # batch 3 (step 4) holds NaNs
    options = dict(COMMON, steps_per_epoch=6)
    with pytest.raises(SearchDivergedError, match="diverged at step 4.*step 2"):
        run_search_step(1, space, train, _data(8, 1), tmp_path / "run", **options)
    checkpoint = tmp_path / "run" / CHECKPOINT_FILE
    meta = read_checkpoint_meta(checkpoint)
    assert meta["step"] == 2 and not meta["completed"]
    with np.load(checkpoint) as data:
        for key in data.files:
            if data[key].dtype.kind == "f":
                assert np.all(np.isfinite(data[key])), key
    assert not os.path.exists(tmp_path / "run" / "architecture.json")


def test_a_held_out_callable_is_asked_for_the_batch_of_each_epochs_first_step(tmp_path):
    heldout = _data(8, 1)  # a cycle of 2 batches
    starts = []

    def val_data(start):
        starts.append(start)
        offset = start % 2
        return heldout.skip(offset).concatenate(heldout.take(offset))

    options = dict(COMMON, epochs=2, tensorboard=False)
    result = run_search_step(1, progressive_space(), _data(), val_data, tmp_path / "run",
                             **options)
    assert starts == [0, 0, 3]  # the check before training, then epochs starting at steps 0, 3
    assert [row["step"] for row in result.history] == [3, 6]


def test_warmup_sampling_is_compared_on_resume_only_where_it_acts(tmp_path):
    """`run_config` leaves `warmup_sampling` out where it cannot act (at its default, which
    checkpoints written before the option existed hold, or without a warm-up) and compares
    it otherwise."""
    from tsnet_keras.search.parsec import ParsecSearch
    from tsnet_keras.search.progressive import run_config

    space = step_space(1, progressive_space())
    largest = ParsecSearch(space, CLASSES, crop=CROP, warmup_sampling="largest_kernels")
    assert "warmup_sampling" not in run_config(1, ParsecSearch(space, CLASSES, crop=CROP),
                                               {"warmup_epochs": 1})
    assert "warmup_sampling" not in run_config(1, largest, {"warmup_epochs": 0})
    assert run_config(1, largest, {"warmup_epochs": 1})["warmup_sampling"] == "largest_kernels"
    directory = os.fspath(tmp_path / "step1")
    options = dict(COMMON, epochs=2, warmup_epochs=1)
    run_search_step(1, progressive_space(), _data(), _data(8, 1), directory, **options)
    with pytest.raises(ValueError, match="warmup_sampling"):
        run_search_step(1, progressive_space(), _data(), _data(8, 1), directory,
                        **dict(options, warmup_sampling="largest_kernels"))


def test_progressive_search_takes_a_warm_up_per_step(tmp_path):
    from tsnet_keras.search import progressive_search

    options = {k: v for k, v in COMMON.items() if k not in ("epochs", "num_classes")}
    results = progressive_search(progressive_space(), _data(), _data(8, 1), os.fspath(tmp_path),
                                 num_classes=CLASSES, epochs=(1, 2, 1), warmup_epochs=(0, 1, 0),
                                 tensorboard=False, **options)
    steps_moved = [int(r.search.logits_optimizer.iterations.numpy()) for r in results]
    assert [r.search.stream_dropout for r in results] == [0.0, 0.5, 0.0]  # STREAM_DROPOUT
    assert steps_moved == [3, 3, 3]  # step 2: its 3 steps after the warm-up epoch only


def test_stream_dropout_is_compared_on_resume_only_where_it_acts():
    """At 0 (what checkpoints written before the option hold) `run_config` leaves it out."""
    from tsnet_keras.search.parsec import ParsecSearch
    from tsnet_keras.search.progressive import run_config

    space = progressive_space()
    assert "stream_dropout" not in run_config(2, ParsecSearch(space, CLASSES, crop=CROP), {})
    dropped = ParsecSearch(space, CLASSES, crop=CROP, stream_dropout=0.5)
    assert run_config(2, dropped, {})["stream_dropout"] == 0.5
