"""The hand-made two-stream model of benchmarks/bench_chain_comparison.py: what it claims to be."""

import argparse
import json
import types

import pytest

from tests.scripts import load_script
from tsnet_keras.accounting import complexity
from tsnet_keras.spaces import auto_tsnet_mini


def _module():
    return load_script("benchmarks/bench_chain_comparison.py")


@pytest.mark.parametrize("seed", [0, 3])
def test_hand_made_is_x3d_like_and_matches_the_flops_of_a_sampled_model(seed):
    space = auto_tsnet_mini()
    target = complexity(space.sample(seed=seed), num_classes=8, crop=32).macs
    arch = _module().hand_made(space, target, num_classes=8, crop=32)
    groups = arch.sparse.groups + arch.dense.groups
    assert {g.temporal_kernel for g in groups} == {3}
    assert {g.spatial_kernel for g in groups} == {3}
    assert not any(g.attention for g in groups)
    assert len({g.expansion for g in arch.sparse.groups[:-1] + arch.dense.groups[:-1]}) == 1
    fusions = [g.fusion for g, choices in zip(arch.sparse.groups, space.sparse.groups)
               if len(choices.fusion) > 1]
    assert fusions and set(fusions) == {"time_strided_conv"}
    assert complexity(arch, num_classes=8, crop=32).macs == pytest.approx(target, rel=0.05)


def test_without_one_shot_the_candidates_are_progressive_hand_made_and_random(tmp_path):
    space = auto_tsnet_mini()
    (tmp_path / "step3").mkdir()
    space.sample(seed=1).save(str(tmp_path / "step3" / "architecture.json"))
    module = _module()
    args = argparse.Namespace(
        progressive=str(tmp_path), retrain_crop=32, one_shot=False, random=2, also=[],
        decided=[])
    data = types.SimpleNamespace(num_classes=8)
    archs = module.candidates(args, space, data)
    assert list(archs) == ["progressive", "hand_made", "random_0", "random_1"]
    target = complexity(archs["progressive"], num_classes=8, crop=32).macs
    for name in ("random_0", "random_1"):
        assert complexity(archs[name], num_classes=8, crop=32).macs == pytest.approx(target, rel=0.05)


def test_also_adds_other_chains_results_after_the_progressive_one(tmp_path):
    space = auto_tsnet_mini()
    for name, seed in (("chain", 1), ("other", 2)):
        (tmp_path / name / "step3").mkdir(parents=True)
        space.sample(seed=seed).save(str(tmp_path / name / "step3" / "architecture.json"))
    module = _module()
    args = argparse.Namespace(progressive=str(tmp_path / "chain"), retrain_crop=32,
                              one_shot=False, random=0, decided=[],
                              also=[module._named_chain(f"here={tmp_path / 'other'}")])
    archs = module.candidates(args, space, types.SimpleNamespace(num_classes=8))
    assert list(archs) == ["progressive", "here", "hand_made"]
    assert archs["here"].to_dict() == space.sample(seed=2).to_dict()
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=CHAIN_FOLDER"):
        module._named_chain("no_folder")


def test_summary_scores_random_architectures_by_their_seed_means_and_gives_the_seed_noise():
    results = {
        "progressive": {"gflops": 0.06, "top1": [0.50, 0.48, 0.52]},
        "random_0": {"gflops": 0.06, "top1": [0.40, 0.44, 0.42]},
        "random_1": {"gflops": 0.06, "top1": [0.60]},
    }
    report = _module().summary(results)
    assert report["random_mean"] == pytest.approx((0.42 + 0.60) / 2)
    assert report["random_std"] == pytest.approx(abs(0.60 - 0.42) / 2 ** 0.5)
    assert report["seed_std"] == pytest.approx(0.02)  # both 3-seed rows have std 0.02
    assert report["rows"]["progressive"]["mean"] == pytest.approx(0.50)


def test_decided_draws_fix_what_the_chains_steps_decided(tmp_path):
    space = auto_tsnet_mini()
    (tmp_path / "chain" / "step3").mkdir(parents=True)
    space.sample(seed=1).save(str(tmp_path / "chain" / "step3" / "architecture.json"))
    decided = {"step1": {"sparse[1].temporal_kernel": 5}, "step2": {"sparse[0].fusion": "none"},
               "step3": {}}
    for step, choices in decided.items():
        (tmp_path / "chain" / step).mkdir(exist_ok=True)
        evidence = {"threshold": 3.0, "undecided": [],
                    "decided": {k: {"choice": c, "kept": [c], "z": {}} for k, c in choices.items()}}
        (tmp_path / "chain" / step / "evidence.json").write_text(json.dumps(evidence))
    module = _module()
    args = argparse.Namespace(progressive=str(tmp_path / "chain"), retrain_crop=32,
                              one_shot=False, random=2, also=[], random_seeds=1, seeds=3,
                              decided=[module._named_chain(f"kept={tmp_path / 'chain'}")])
    archs = module.candidates(args, space, types.SimpleNamespace(num_classes=8))
    assert list(archs) == ["progressive", "hand_made", "random_0", "random_1", "kept_0", "kept_1"]
    for name in ("kept_0", "kept_1"):
        assert archs[name].sparse.groups[1].temporal_kernel == 5
        assert archs[name].sparse.groups[0].fusion == "none"
    assert [len(module.draw_seeds(args, n)) for n in archs] == [3, 3, 1, 1, 1, 1]
    groups = module.draw_groups({"random_0": {"top1": [0.5, 0.7]}, "random_1": {"top1": [0.4]},
                                 "kept_0": {"top1": [0.8]}, "progressive": {"top1": [0.1]}})
    assert groups["random"] == {"mean": pytest.approx(0.5), "std": pytest.approx(0.1 * 2 ** 0.5),
                                "count": 2}
    assert groups["kept"]["count"] == 1 and "progressive" not in groups
    (tmp_path / "chain" / "step2" / "evidence.json").unlink()
    with pytest.raises(SystemExit, match="step2 has no evidence.json"):
        module.decided_choices(str(tmp_path / "chain"))
