"""Random architectures at equal FLOPs (`tsnet_keras.search.baselines`)."""

import math

import numpy as np
import pytest

from tsnet_keras.accounting import complexity
from tsnet_keras.search import baselines
from tsnet_keras.search.distribution import ArchitectureDistribution
from tsnet_keras.spaces import get_space

from .spaces import tiny_single_stream

CROP = 32


def macs(arch, num_classes=5):
    return complexity(arch, num_classes, crop=CROP).macs


def test_draws_are_within_the_tolerance_of_the_target_and_seeded():
    space = get_space("auto_tsnet_mini")
    target = macs(space.sample(3))
    drawn = baselines.random_architectures(space, target, 4, num_classes=5, crop=CROP)
    assert len(drawn) == 4 and len(set(map(repr, drawn))) == 4
    assert all(abs(macs(a) / target - 1) <= baselines.FLOPS_TOLERANCE for a in drawn)
    assert all(space.contains(a) for a in drawn)
    # the k-th accepted draw does not depend on how many were asked for; seeds differ
    assert baselines.random_architectures(space, target, 2, num_classes=5, crop=CROP) == drawn[:2]
    other = baselines.random_architectures(space, target, 4, num_classes=5, crop=CROP, seed=1)
    assert other != drawn


def test_kept_variables_are_drawn_among_their_kept_choices_the_others_vary():
    space = get_space("auto_tsnet_mini")
    target = macs(space.sample(3))
    kept = {"sparse[1].temporal_kernel": [5], "sparse[0].fusion": ["none", "time_to_channel"]}
    drawn = baselines.random_architectures(space, target, 6, num_classes=5, crop=CROP,
                                           kept=kept)
    assert all(abs(macs(a) / target - 1) <= baselines.FLOPS_TOLERANCE for a in drawn)
    assert {a.sparse.groups[1].temporal_kernel for a in drawn} == {5}
    assert {a.sparse.groups[0].fusion for a in drawn} == {"none", "time_to_channel"}
    assert len({a.sparse.groups[2].temporal_kernel for a in drawn}) > 1
    with pytest.raises(ValueError, match=r"sparse\[1\].temporal_kernel has no choice\(s\) \[7\]"):
        baselines.random_architectures(space, target, 1, num_classes=5, crop=CROP,
                                       kept={"sparse[1].temporal_kernel": [3, 7]})
    with pytest.raises(ValueError, match="'nope' is not a variable"):
        baselines.random_architectures(space, target, 1, num_classes=5, crop=CROP,
                                       kept={"nope": [1]})


def test_a_draw_is_the_distributions_sample_at_uniform_logits():
    space = tiny_single_stream()
    dist = ArchitectureDistribution(space, 5, CROP)
    assert all(baselines.uniform_draw(space, s) == dist.sample(s) for s in range(5))


def test_a_target_outside_the_space_is_refused_with_the_figures(monkeypatch):
    space = tiny_single_stream()
    monkeypatch.setattr(baselines, "MAX_DRAWS", 50)
    monkeypatch.setattr(baselines, "_CHUNK", 16)
    largest = macs(space.extreme(largest=True))
    with pytest.raises(ValueError, match=r"0 of 2 random architectures of 50 draws are within 5%"):
        baselines.random_architectures(space, 3 * largest, 2, num_classes=5, crop=CROP)
    with pytest.raises(ValueError, match="`count`"):
        baselines.random_architectures(space, largest, -1, num_classes=5, crop=CROP)


def test_searched_vs_random_in_standard_deviations():
    summary = baselines.searched_vs_random(0.6, [0.3, 0.4, 0.5])
    assert summary["random_mean"] == pytest.approx(0.4)
    assert summary["random_std"] == pytest.approx(0.1)
    assert summary["beats_mean_by_std"] == pytest.approx(2.0)
    assert summary["share_below"] == 1.0 and summary["random_max"] == 0.5
    assert baselines.searched_vs_random(0.45, [0.3, 0.4, 0.5])["share_below"] == pytest.approx(2 / 3)
    one = baselines.searched_vs_random(0.6, [0.3])
    assert math.isnan(one["random_std"]) and math.isnan(one["beats_mean_by_std"])
    with pytest.raises(ValueError, match="at least one"):
        baselines.searched_vs_random(0.6, np.array([]))


def test_entropy_left_is_one_when_nothing_is_learned_and_warns(caplog):
    import logging

    from tsnet_keras.recipes.search import UNSETTLED_ENTROPY, _warn_if_unsettled, entropy_left

    space = tiny_single_stream()
    dist = ArchitectureDistribution(space, 5, CROP)
    assert entropy_left(dist) == pytest.approx(1.0)
    dist.set_logits({key: np.eye(size)[0] * 8.0 for key, size in zip(dist.keys, dist.sizes)})
    assert entropy_left(dist) < 0.05
    with caplog.at_level(logging.WARNING, logger="tsnet_keras"):
        _warn_if_unsettled(0.5, verbose=True)
        assert not caplog.records
        _warn_if_unsettled(UNSETTLED_ENTROPY + 0.05, verbose=True)
    assert "kept 95% of its uniform entropy" in caplog.text and "random_baselines" in caplog.text


def _target_metrics(gflops, most_probable_gflops, target_gflops):
    return {"architecture": {"gflops": gflops}, "most_probable_gflops": most_probable_gflops,
            "target_gflops": target_gflops}


def test_an_architecture_over_the_flops_target_is_reported(caplog):
    import logging

    from tsnet_keras.recipes.search import OVER_TARGET, _report_target

    with caplog.at_level(logging.INFO, logger="tsnet_keras"):
        _report_target(_target_metrics(0.07 * (1 + OVER_TARGET / 2), 0.07, 0.07), verbose=True)
        _report_target(_target_metrics(0.5, 0.5, None), verbose=True)  # no target
        _report_target(_target_metrics(0.066, None, 0.07), verbose=True)  # no step recorded
        assert not caplog.records
        _report_target(_target_metrics(0.087, 0.087, 0.07), verbose=True)
        assert "0.087 GFLOPs per view, 24% above target_gflops (0.07)" in caplog.text
        caplog.clear()
        _report_target(_target_metrics(0.069, 0.09, 0.07), verbose=True)
    assert caplog.records[0].levelno == logging.INFO
    assert "most probable architecture took 0.09 GFLOPs" in caplog.text
    assert "within the target, using at least 90% of it where one near the argmax does " \
           "(0.069 GFLOPs)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tsnet_keras"):
        _report_target(_target_metrics(0.066, 0.05, 0.07), verbose=True)  # raised to the budget
    assert "most probable architecture took 0.05 GFLOPs" in caplog.text


def test_the_comparison_line_says_when_every_random_architecture_scored_the_same():
    from tsnet_keras.recipes.baselines import describe
    from tsnet_keras.search.baselines import searched_vs_random

    tied = describe(searched_vs_random(1.0, [1.0] * 5), 5)
    assert "nan" not in tied
    assert "100.0% +- 0.0% (all equal: the searched one ties them" in tied
    spread = describe(searched_vs_random(0.9, [0.7, 0.8, 0.9]), 3)
    assert "80.0% +- 10.0% (searched - mean = +1.0 std)" in spread
    assert "(searched - mean" not in describe(searched_vs_random(0.9, [0.7]), 1)
