"""Searched vs random vs hand-made at equal FLOPs, each retrained identically (CPU scale).

The space is the known-answer space of `bench_search_quality.py` (only one group
can see the frames' order, through its temporal kernel), on the built-in
synthetic dataset at crop 32, sparse stream only. Architectures of equal FLOPs
really differ there: on the "order" clips a third of the space (t = 1 in that
group) cannot tell the direction of motion; on the "gap" clips (`--construction
gap`: two frames 3 apart among blank ones) two thirds cannot (t = 1 or 3), and
three in four near a small FLOPs budget (`known --target-macs 9.5`), where t = 5
is costly. Only there does a search that finds t = 5 beat the random mean by more
than one standard deviation reliably: where most random draws see, their bimodal
spread is wider than the searched one's lead (BENCHMARKS.md section 8).

1. The searched architecture: the result of a search at the library's defaults
   (`--search-steps`), or of the first run of a `known.json` of
   `bench_search_quality.py known` (`--known-json`). The result is what the recipes
   take: the most probable architecture, within 90-100% of the search's FLOPs target
   when it had one (`known --target-macs`).
2. `--random` architectures drawn uniformly from the space, kept when their MACs
   are within 5% of the searched one's.
3. A hand-made one: t = 3 in the temporal group (X3D's kernel; blind on "gap"
   clips by construction), 3 x 3 spatial kernels, one expansion and one relative
   width for every group, the combination closest in MACs to the searched one.

Each is trained from scratch `--seeds` times (AdamW 2e-3, cosine, batch 8,
`--steps` steps) and scored on the validation videos (never seen by the search).

Usage:
    python benchmarks/bench_searched_vs_random.py --known-json runs/known/known.json
    python benchmarks/bench_search_quality.py known --construction gap --seeds 1 \\
        --steps 3600 --weights-optimizer adamw --learning-rate 2e-3 --output runs/known_gap
    python benchmarks/bench_searched_vs_random.py --known-json runs/known_gap/known.json \\
        --random 8 --output runs/searched_vs_random_gap.json
    python benchmarks/bench_search_quality.py known --construction gap --seeds 1 \\
        --steps 3600 --weights-optimizer adamw --learning-rate 2e-3 --target-macs 9.5 \\
        --output runs/known_gap_budget
    python benchmarks/bench_searched_vs_random.py --known-json runs/known_gap_budget/known.json \\
        --random 8 --steps 3000 --output runs/searched_vs_random_gap_budget.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_search_quality as quality  # noqa: E402
from tsnet_keras.accounting import complexity  # noqa: E402
from tsnet_keras.models.tsnet import build_model  # noqa: E402
from tsnet_keras.search import baselines  # noqa: E402
from tsnet_keras.space.architecture import Architecture  # noqa: E402

def macs(arch, num_classes) -> int:
    return complexity(arch, num_classes, crop=quality.CROP).macs


def validation_clips(crop=quality.CROP, frames=4, stride=16) -> dict:
    """The synthetic validation videos, one centre view each (cached like the search's)."""
    path = quality._cache_path(crop=crop, frames=frames, stride=stride, split="val")
    if os.path.exists(path):
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    from tsnet_keras.recipes.data import resolve_data

    data = resolve_data(verbose=False)
    dataset = data.dataset("val", "val", batch_size=64, crop=crop, frames=(frames, None),
                           sparse_stride=stride)
    pairs = [(x.numpy().astype("float16"), y.numpy()) for x, y in dataset]
    arrays = {"x": np.concatenate([p[0] for p in pairs]), "y": np.concatenate([p[1] for p in pairs])}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)
    return arrays


def construction_of(args) -> str:
    """`--construction`, or the one `--known-json`'s search ran on; refuses a mismatch."""
    searched_on = None
    if args.known_json:
        with open(args.known_json) as f:
            searched_on = json.load(f).get("construction", "order")
    if args.construction and searched_on and args.construction != searched_on:
        raise SystemExit(f"--construction {args.construction}: {args.known_json} was searched "
                         f"on {searched_on!r} clips")
    return args.construction or searched_on or "order"


def searched_architecture(args, clips, construction) -> Architecture:
    if args.known_json:
        with open(args.known_json) as f:
            known = json.load(f)
        return quality.search_result(quality.known_answer_space(construction=construction),
                                     int(clips["num_classes"]), known["runs"][0]["marginals"],
                                     quality.target_macs_of(known["settings"]))
    settings = quality.SearchSettings(steps=args.search_steps)
    space = quality.known_answer_space(construction=construction)
    watch = quality.CONSTRUCTIONS[construction]["watch"]
    run = quality.run_search(space, clips, settings, args.search_seed,
                             watch=(f"sparse[{quality.KNOWN_GROUP}].temporal_kernel", watch))
    return Architecture.from_dict(run["result"])


def random_architectures(space, num_classes, target, count, seed=0) -> list:
    """`count` uniform draws from `space` whose MACs are within 5% of `target`."""
    return baselines.random_architectures(space, target, count, num_classes=num_classes,
                                          crop=quality.CROP, seed=seed)


def hand_made(space, num_classes, target) -> Architecture:
    """t = 3 where time is seen, k = 3, one expansion and one relative width for all groups
    (the last group's expansion set apart to reach the FLOPs), closest in MACs to `target`."""
    base = baselines.uniform_draw(space, 0)
    groups = space.sparse.groups
    expansions = sorted(set.intersection(*(set(g.expansion) for g in groups)))
    width_steps = min(len(g.channels) for g in groups)
    best = None
    for expansion, last, step in itertools.product(expansions, expansions, range(width_steps)):
        new_groups = tuple(
            dataclasses.replace(
                group, expansion=last if index == len(groups) - 1 else expansion,
                spatial_kernel=3,
                channels=choices.channels[round(step * (len(choices.channels) - 1)
                                                / max(width_steps - 1, 1))],
                temporal_kernel=3 if index == quality.KNOWN_GROUP else group.temporal_kernel)
            for index, (group, choices) in enumerate(zip(base.sparse.groups, groups)))
        arch = dataclasses.replace(base, sparse=dataclasses.replace(base.sparse, groups=new_groups))
        gap = abs(macs(arch, num_classes) / target - 1)
        if best is None or gap < best[0]:
            best = (gap, arch)
    return best[1]


def blind_share(space, num_classes, target, construction, draws=300) -> float:
    """Share of equal-FLOPs uniform draws whose temporal group cannot see the motion."""
    archs = random_architectures(space, num_classes, target, draws, seed=1)
    blind = quality.CONSTRUCTIONS[construction]["blind"]
    return float(np.mean([a.sparse.groups[quality.KNOWN_GROUP].temporal_kernel in blind
                          for a in archs]))


def retrain(arch, clips, val, seed, steps) -> float:
    """Validation top-1 of `arch` trained from scratch (AdamW 2e-3, cosine, batch 8)."""
    data = quality.search_data(clips, quality.SearchSettings(steps=steps), seed)
    return fit_and_score(arch, int(clips["num_classes"]), data.map(lambda train, heldout: train),
                         (val["x"].astype("float32"), val["y"]), seed, steps)


def fit_and_score(arch, num_classes, train, val, seed, steps, stream_dropout=0.0) -> float:
    """Validation top-1 of `arch` trained from scratch on `train` (batches of 8, repeated):
    AdamW 2e-3 with cosine decay over `steps`, weight decay 0.05; `val` = (x, y)."""
    keras.utils.set_random_seed(seed)
    model = build_model(arch, num_classes, crop=quality.CROP, stream_dropout=stream_dropout)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps)
    model.compile(keras.optimizers.AdamW(schedule, weight_decay=0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train, epochs=1, steps_per_epoch=steps, verbose=0)
    return model.evaluate(*val, batch_size=32, verbose=0, return_dict=True)["accuracy"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--known-json", help="known.json of `bench_search_quality.py known`")
    parser.add_argument("--construction", choices=sorted(quality.CONSTRUCTIONS),
                        help="the known-answer clips (default: --known-json's, else order)")
    parser.add_argument("--search-steps", type=int, default=800)
    parser.add_argument("--search-seed", type=int, default=0)
    parser.add_argument("--random", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--output", default="runs/searched_vs_random.json")
    parser.add_argument("--plot", help="only draw the figure of --output's results to this path")
    args = parser.parse_args(argv)
    if args.plot:
        print(plot(args.output, args.plot))
        return
    construction = construction_of(args)
    clips = quality.known_clips(quality.synthetic_clips(), construction)
    val = quality.known_clips(validation_clips(), construction)
    classes = int(clips["num_classes"])
    space = quality.known_answer_space(construction=construction)
    searched = searched_architecture(args, clips, construction)
    target = macs(searched, classes)
    candidates = {"searched": searched, "hand-made": hand_made(space, classes, target)}
    for i, arch in enumerate(random_architectures(space, classes, target, args.random)):
        candidates[f"random {i}"] = arch
    print("| architecture | MACs (crop 32) | t in the temporal group | val top-1 per seed (%) | mean |")
    print("|---|---|---|---|---|")
    results = {}
    for name, arch in candidates.items():
        started = time.time()
        top1 = [retrain(arch, clips, val, seed, args.steps) for seed in range(args.seeds)]
        t = arch.sparse.groups[quality.KNOWN_GROUP].temporal_kernel
        results[name] = {"architecture": arch.to_dict(), "macs": macs(arch, classes), "top1": top1}
        print(f"| {name} | {macs(arch, classes) / 1e6:.2f} M | {t} | "
              f"{' / '.join(f'{100 * a:.1f}' for a in top1)} | {100 * np.mean(top1):.1f} | "
              f"({time.time() - started:.0f} s)", flush=True)
        _write(args.output, results)
    summary = {**_summary(results), "construction": construction,
               "blind_share_at_equal_flops": blind_share(space, classes, target, construction)}
    print(json.dumps(summary, indent=1))
    _write(args.output, {**results, "summary": summary})


def known_t(architecture: dict) -> int:
    """The temporal kernel of the known-answer group of an architecture's dict."""
    return architecture["sparse"]["groups"][quality.KNOWN_GROUP]["temporal_kernel"]


def plot(json_path, path, t_of=known_t, title=None):
    """Validation top-1 per architecture: one dot per seed, a bar at the mean; each
    labelled with `t_of(architecture dict)`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(json_path, encoding="utf-8") as handle:
        results = json.load(handle)
    summary = results.pop("summary")
    construction = summary.get("construction", "order")
    figure, axis = plt.subplots(figsize=(7, 3.4))
    for x, (name, result) in enumerate(results.items()):
        t = t_of(result["architecture"])
        colour = {"searched": "tab:green", "progressive": "tab:green", "one-shot": "tab:orange",
                  "hand-made": "tab:blue"}.get(name, "tab:grey")
        top1 = 100 * np.asarray(result["top1"])
        axis.scatter([x] * len(top1), top1, color=colour, s=18)
        axis.hlines(top1.mean(), x - 0.3, x + 0.3, color=colour)
        axis.text(x, 2, f"t={t}", ha="center", fontsize=8)
    mean, std = 100 * summary["random_mean"], 100 * summary["random_std"]
    if np.isfinite(std):
        axis.axhspan(mean - std, mean + std, color="tab:grey", alpha=0.15,
                     label="random: mean +- 1 std")
        axis.legend(loc="upper right", fontsize=8)
    axis.set_xticks(range(len(results)), list(results), rotation=30, fontsize=8)
    axis.set(ylabel="validation top-1 (%)", ylim=(0, 100),
             title=title or f"known answer ({construction} clips): equal FLOPs (within 5%), "
                            "retrained identically")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _summary(results) -> dict:
    means = [np.mean(r["top1"]) for k, r in results.items() if k.startswith("random")]
    searched = float(np.mean(results["searched"]["top1"]))
    gap = baselines.searched_vs_random(searched, means)
    return {"random_mean": gap["random_mean"], "random_std": gap["random_std"],
            "searched": searched, "hand_made": float(np.mean(results["hand-made"]["top1"])),
            "searched_beats_random_by_std": gap["beats_mean_by_std"]}


def _write(path, payload):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
