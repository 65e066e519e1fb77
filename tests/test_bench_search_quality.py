"""The known-answer constructions of benchmarks/bench_search_quality.py: blind by design.

`gap` clips put two of a clip's frames 3 apart among blank ones. Swapping the two frames
reverses the motion; a network whose only temporal kernel is 1 or 3 must give
the same logits for both clips (every window of 3 frames holds one of them with
the same blanks around it), and one with a 5-frame kernel must not.
"""

import dataclasses

import keras
import numpy as np
import pytest

from tests.scripts import load_script
from tsnet_keras.models.tsnet import build_model
from tsnet_keras.search import baselines


@pytest.fixture(scope="module")
def quality():
    return load_script("benchmarks/bench_search_quality.py")


def _with_kernel(quality, construction, t):
    space = quality.known_answer_space(construction=construction)
    arch = baselines.uniform_draw(space, 0)
    groups = tuple(dataclasses.replace(g, temporal_kernel=t) if i == quality.KNOWN_GROUP else g
                   for i, g in enumerate(arch.sparse.groups))
    return dataclasses.replace(arch, sparse=dataclasses.replace(arch.sparse, groups=groups))


def _swapped_logits(quality, arch, clips):
    keras.utils.set_random_seed(0)
    model = build_model(arch, num_classes=4, crop=16)
    for weight in model.weights:  # residual branches start at zero (gamma 0): wake them
        if weight.path.endswith("gamma"):
            weight.assign(np.ones(weight.shape, "float32"))
    swapped = clips[:, [0, 2, 1, 3]]  # the two frames the layout keeps, swapped
    return (np.asarray(model(quality.arrange(clips, "gap"), training=False)),
            np.asarray(model(quality.arrange(swapped, "gap"), training=False)))


def test_gap_layout_puts_two_frames_three_apart_among_blanks(quality):
    clips = np.random.default_rng(0).normal(size=(2, 4, 8, 8, 3)).astype("float32")
    out = quality.arrange(clips, "gap")
    assert out.shape == (2, 8, 8, 8, 3)
    np.testing.assert_array_equal(out[:, 2], clips[:, 1])
    np.testing.assert_array_equal(out[:, 5], clips[:, 2])
    assert not np.any(np.delete(out, [2, 5], axis=1))
    assert quality.arrange(clips, "order") is clips


@pytest.mark.parametrize("t, blind", [(1, True), (3, True), (5, False)])
def test_gap_clips_hide_the_order_from_kernels_up_to_three(quality, t, blind):
    clips = np.random.default_rng(1).normal(size=(3, 4, 16, 16, 3)).astype("float32")
    forward, backward = _swapped_logits(quality, _with_kernel(quality, "gap", t), clips)
    difference = np.max(np.abs(forward - backward)) / np.max(np.abs(forward))
    if blind:
        assert difference < 1e-5
    else:
        assert difference > 1e-3


def test_known_space_has_one_group_that_mixes_frames(quality):
    for construction, spec in quality.CONSTRUCTIONS.items():
        space = quality.known_answer_space(construction=construction)
        assert space.sparse.frames == spec["frames"]
        assert space.sparse.stem.temporal_kernel == 1
        kernels = [g.temporal_kernel for g in space.sparse.groups]
        assert kernels.pop(quality.KNOWN_GROUP) == (1, 3, 5)
        assert set(kernels) == {(1,)}


def test_known_target_macs_reaches_the_search_in_macs(quality):
    args = quality.build_parser().parse_args(["known", "--construction", "gap",
                                              "--target-macs", "9.5"])
    assert dict(quality.known_settings(args).estimator)["target_macs"] == 9_500_000
    args = quality.build_parser().parse_args(["known"])
    assert "target_macs" not in dict(quality.known_settings(args).estimator)


def test_search_result_keeps_the_found_kernel_within_the_flops_target(quality):
    from tsnet_keras.accounting import complexity

    space = quality.known_answer_space(construction="gap")
    distribution = quality.ArchitectureDistribution(space, 8, quality.CROP)
    marginals = distribution.marginals()  # uniform
    key = f"sparse[{quality.KNOWN_GROUP}].temporal_kernel"
    marginals[key] = {1: 0.1, 3: 0.1, 5: 0.8}
    plain = quality.search_result(space, 8, marginals)
    assert plain.sparse.groups[quality.KNOWN_GROUP].temporal_kernel == 5
    target = 9_500_000
    result = quality.search_result(space, 8, marginals, target)
    assert result.sparse.groups[quality.KNOWN_GROUP].temporal_kernel == 5
    macs = complexity(result, 8, crop=quality.CROP).macs
    assert quality.RESULT_FLOOR * target <= macs <= target
