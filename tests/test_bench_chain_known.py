"""The two-stream known-answer chain benchmark: the clips hide the order from every
architecture without t = 5 in the mixing group, whatever the fusion op (fixed models)."""

import keras
import numpy as np
import pytest

from tests.scripts import load_script
from tsnet_keras.models.tsnet import build_model
from tsnet_keras.search import baselines


@pytest.fixture(scope="module")
def chain():
    return load_script("benchmarks/bench_chain_known.py")


def _order_difference(chain, arch):
    """Largest relative change of the logits when the two moving frames swap places."""
    keras.utils.set_random_seed(0)
    model = build_model(arch, num_classes=4, crop=16)
    for weight in model.weights:  # residual branches start at zero (gamma 0): wake them
        if weight.path.endswith("gamma"):
            weight.assign(np.ones(weight.shape, "float32"))
    clips = np.random.default_rng(1).normal(size=(3, 4, 16, 16, 3)).astype("float32")
    forward = np.asarray(model(chain.chain_inputs(clips), training=False))
    backward = np.asarray(model(chain.chain_inputs(clips[:, [0, 2, 1, 3]]), training=False))
    return np.max(np.abs(forward - backward)) / np.max(np.abs(forward))


def test_chain_inputs_put_the_two_frames_three_apart_and_their_mean_in_the_sparse_stream(chain):
    clips = np.random.default_rng(0).normal(size=(2, 4, 8, 8, 3)).astype("float32")
    inputs = chain.chain_inputs(clips)
    assert inputs["dense"].shape == (2, chain.DENSE_FRAMES, 8, 8, 3)
    np.testing.assert_array_equal(inputs["dense"][:, 3], clips[:, 1])
    np.testing.assert_array_equal(inputs["dense"][:, 6], clips[:, 2])
    assert not np.any(np.delete(inputs["dense"], [3, 6], axis=1))
    assert inputs["sparse"].shape == (2, 4, 8, 8, 3)
    for frame in range(4):
        np.testing.assert_allclose(inputs["sparse"][:, frame], (clips[:, 1] + clips[:, 2]) / 2)


def test_the_control_task_holds_the_mean_in_both_dense_frames(chain):
    clips = np.random.default_rng(0).normal(size=(2, 4, 8, 8, 3)).astype("float32")
    inputs = chain.chain_inputs(clips, order=False)
    mean = (clips[:, 1] + clips[:, 2]) / 2
    for position in chain.DENSE_LAYOUT.values():
        np.testing.assert_allclose(inputs["dense"][:, position], mean)
    np.testing.assert_allclose(inputs["sparse"], chain.chain_inputs(clips)["sparse"])


def test_diagnosis_spaces_pin_what_they_say(chain):
    only_t = chain.diagnosis_space("only_t")
    assert [v.key for v in only_t.variables()] == [chain.KEY]
    assert only_t.architecture({chain.KEY: 5}) == chain.variant(5)
    t5 = chain.diagnosis_space("t5")
    keys = [v.key for v in t5.variables()]
    assert chain.KEY not in keys
    assert len(keys) == len(list(chain.chain_space().variables())) - 1
    assert chain.diagnosis_space("chain") == chain.chain_space()


def test_chain_space_mixes_frames_in_one_dense_group_only(chain):
    space = chain.chain_space()
    assert space.sparse.stem.temporal_kernel == space.dense.stem.temporal_kernel == 1
    assert {g.temporal_kernel for g in space.sparse.groups} == {(1,)}
    kernels = [g.temporal_kernel for g in space.dense.groups]
    assert kernels.pop(chain.MIXING_GROUP) == (1, 3, 5)
    assert set(kernels) == {(1,)}
    assert [len(g.fusion) > 1 for g in space.sparse.groups][:2] == [True, False]


@pytest.mark.parametrize("fusion", ["none", "time_to_channel", "time_strided_sample",
                                    "time_strided_conv"])
@pytest.mark.parametrize("t", [1, 3, 5])
def test_only_t5_in_the_mixing_group_sees_the_order_whatever_the_fusion(chain, t, fusion):
    arch = chain.variant(t, fusion)
    difference = _order_difference(chain, arch)
    assert chain.sees_order(arch) == (t == 5)
    # Blind: float32 rounding (at most 6e-6 measured); t = 5: 1e-3 to 2e-2 on this draw.
    if t == 5:
        assert difference > 5e-4
    else:
        assert difference < 2e-5


def test_hand_made_is_blind_x3d_like_and_within_five_percent_of_the_target(chain):
    space = chain.chain_space()
    target = chain.macs(baselines.uniform_draw(space, 3), 8)
    arch = chain.hand_made(space, 8, target)
    assert abs(chain.macs(arch, 8) / target - 1) < 0.05
    assert not chain.sees_order(arch)
    assert arch.sparse.groups[0].fusion == "time_strided_conv"
    groups = arch.sparse.groups + arch.dense.groups
    assert {g.spatial_kernel for g in groups} == {3} and not any(g.attention for g in groups)


def test_summary_and_figure_of_a_comparison(chain, tmp_path):
    results = {}
    for index, (name, top1) in enumerate([("progressive", [0.5, 0.6]), ("one-shot", [0.3, 0.3]),
                                          ("hand-made", [0.3, 0.2]), ("random 0", [0.3, 0.3]),
                                          ("random 1", [0.5, 0.5]), ("random 2", [0.2, 0.2])]):
        arch = chain.variant(5 if name in ("progressive", "random 1") else 3, "none", index)
        results[name] = {"architecture": arch.to_dict(), "top1": top1,
                         "sees_order": chain.sees_order(arch)}
    summary = chain.summary_of(results)
    assert summary["random_mean"] == pytest.approx(1 / 3)
    assert summary["random_std"] == pytest.approx(np.std([0.3, 0.5, 0.2], ddof=1))
    assert summary["progressive_beats_random_by_std"] == pytest.approx(
        (0.55 - 1 / 3) / np.std([0.3, 0.5, 0.2], ddof=1))
    assert summary["random_seeing"] == 1 and summary["hand_made"] == pytest.approx(0.25)
    chain.versus._write(str(tmp_path / "comparison.json"), {**results, "summary": summary})
    args = chain.build_parser().parse_args(["plot", "--output", str(tmp_path),
                                            "--path", str(tmp_path / "figure.png")])
    chain.plot(args)
    assert (tmp_path / "figure.png").stat().st_size > 10_000


def test_read_curve_keeps_the_last_record_of_a_step_a_resumed_run_repeated(chain, tmp_path):
    path = tmp_path / "curve.jsonl"
    path.write_text('{"step": 50, "5": 0.3}\n{"step": 100, "5": 0.4}\n'
                    '{"step": 100, "5": 0.5}\n{"step": 150, "5": 0.6}\n')
    assert [(r["step"], r["5"]) for r in chain.read_curve(path)] == [(50, 0.3), (100, 0.5),
                                                                      (150, 0.6)]


def test_search_arguments_default_to_the_documented_run(chain):
    args = chain.build_parser().parse_args(["search"])
    assert (args.mode, tuple(args.steps), args.target_macs, args.train_epochs) == (
        "progressive", (600, 3600, 400), chain.TARGET_MACS, 3)
    args = chain.build_parser().parse_args(["search", "--train-epochs", "12"])
    assert args.train_epochs == 12
    assert (args.space, args.control, args.warmup_steps, args.warmup_sampling) == (
        "chain", False, 0, "distribution")
    assert args.stream_dropout is None  # the library's per-step default (STREAM_DROPOUT)


def test_a_resumed_comparison_accepts_its_own_entries_and_refuses_another_architecture(chain):
    import json

    space = chain.chain_space()
    arch, other = baselines.uniform_draw(space, 0), baselines.uniform_draw(space, 1)
    results = {}
    chain.entry_of(results, "random 0", arch, 8, "comparison.json")["top1"].append(0.5)
    resumed = json.loads(json.dumps(results))  # as read back from the file
    assert chain.entry_of(resumed, "random 0", arch, 8, "comparison.json")["top1"] == [0.5]
    with pytest.raises(SystemExit, match="random 0's architecture differs"):
        chain.entry_of(resumed, "random 0", other, 8, "comparison.json")
    with pytest.raises(SystemExit, match="stream_dropout=0.0, this run asks 0.5"):
        chain.entry_of(resumed, "random 0", arch, 8, "comparison.json", stream_dropout=0.5)
    del resumed["random 0"]["stream_dropout"]  # entries from before the option had none
    assert chain.entry_of(resumed, "random 0", arch, 8, "comparison.json")["top1"] == [0.5]
