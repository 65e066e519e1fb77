"""Progressive vs one-shot search vs random vs hand-made, two streams, through the recipes.

The paper's comparison (section 5.4, Table 9) at CPU scale, asked of the recipes as a user
runs them: the architecture of a finished progressive chain (`--progressive`: a folder
with `step3/`, the search recipes' output), a one-shot search of the same space with as
many search steps as the three progressive steps together (run here through
`search_step("one_shot", ...)`), `--random` architectures drawn uniformly from the space
within 5% of the progressive one's FLOPs, and a hand-made X3D-like two-stream model of the
same space at the closest FLOPs (`hand_made`). Each is trained from scratch by the retrain
recipe with its notebook's defaults (20 x 40 AdamW steps) at `--retrain-crop` (default:
the searches' `--crop`; FLOPs are matched there), for `--seeds` seeds (random:
`--random-seeds`, default 1: seed 0 each), and scored by the evaluate recipe's S row
(10-Center). The summary compares each mean with the random architectures' means and gives
the seed noise (`seed_std`, pooled over every architecture retrained with two seeds or
more): a spread of random means no larger than `seed_std / sqrt(seeds)` is what seeds
alone make. Every finished run is kept in `--output`, so a rerun resumes. `--train-list`,
`--val-list` and `--data-root` take other data (as the recipes' parameters of those
names), for example a larger synthetic dataset; `--no-one-shot` leaves the one-shot search
out; `--also NAME=CHAIN` adds another chain's step-3 result (for example one searched on
that data), retrained and scored as the progressive one. `--decided NAME=CHAIN` adds
`--random` draws at the same FLOPs with the variables CHAIN's steps decided kept to the
choices the evidence left (`evidence.json`) and the others uniform (NAME_0, NAME_1, ...):
against the plain random draws it measures what the search's decisions alone are worth.

    python benchmarks/bench_chain_comparison.py --progressive runs/chain --output runs/compare \\
        --crop 32 --retrain-crop 64 --oneshot-epochs 72 --target-gflops 0.0175 --seeds 3 \\
        --random 5 --plot docs/images/chain_comparison.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tsnet_keras import recipes  # noqa: E402
from tsnet_keras.accounting import complexity  # noqa: E402
from tsnet_keras.search import baselines  # noqa: E402
from tsnet_keras.search.progressive import load_evidence  # noqa: E402
from tsnet_keras.space.architecture import Architecture  # noqa: E402
from tsnet_keras.spaces import auto_tsnet_mini  # noqa: E402

RETRAIN = dict(epochs=20, steps_per_epoch=40, checkpoint_every=0)  # the retrain notebook's
HAND_MADE_FUSION = "time_strided_conv"  # SlowFast's best lateral connection


def hand_made(space, target_macs, num_classes, crop) -> Architecture:
    """X3D-like by hand: t = 3 and k = 3 everywhere, one expansion and one relative width for
    every group of both streams (each stream's last group's expansion set apart to reach the
    FLOPs), SlowFast's time-strided conv wherever a fusion fits, no attention; of all such
    models the one closest in MACs to `target_macs`."""
    variables = space.variables()
    expansions = sorted(set.intersection(*(set(v.choices) for v in variables
                                           if v.key.endswith(".expansion"))))
    widths = min(len(v.choices) for v in variables if v.key.endswith(".channels"))
    best = None
    last_groups = {f"{stream}[{len(getattr(space, stream).groups) - 1}]"
                   for stream in ("sparse", "dense")}
    for expansion, last, step in itertools.product(expansions, expansions, range(widths)):
        picks = {}
        for v in variables:
            group, name = v.key.rsplit(".", 1)
            value = {"temporal_kernel": 3, "spatial_kernel": 3,
                     "expansion": last if group in last_groups else expansion,
                     "attention": False,
                     "fusion": HAND_MADE_FUSION if HAND_MADE_FUSION in v.choices else "none",
                     "channels": v.choices[round(step * (len(v.choices) - 1)
                                                 / max(widths - 1, 1))]}[name]
            picks[v.key] = v.choices.index(value)
        arch = space.from_indices(picks)
        gap = abs(complexity(arch, num_classes, crop=crop).macs / target_macs - 1)
        if best is None or gap < best[0]:
            best = (gap, arch)
    return best[1]


def trained_top1(arch, folder, crop, seed, data) -> float:
    """Retrain recipe (notebook defaults) then the evaluate recipe's S row; kept on disk."""
    done = os.path.join(folder, "top1.json")
    if os.path.exists(done):
        with open(done) as handle:
            return json.load(handle)["top1"]
    recipes.retrain(arch, os.path.join(folder, "retrain"), data=data, crop=crop, seed=seed,
                    verbose=0, **RETRAIN)
    metrics = recipes.evaluate(os.path.join(folder, "retrain"), os.path.join(folder, "evaluate"),
                               data=data, rows=("S",), verbose=0)
    with open(done, "w") as handle:
        json.dump({"top1": metrics["top1"]}, handle)
    return metrics["top1"]


def candidates(args, space, data) -> dict:
    """Name -> architecture: progressive, one-shot, hand-made and the random draws."""
    progressive = recipes.load_architecture(os.path.join(args.progressive, "step3"))
    target = complexity(progressive, data.num_classes, crop=args.retrain_crop).macs
    archs = {"progressive": progressive}
    for name, folder in args.also:
        archs[name] = recipes.load_architecture(os.path.join(folder, "step3"))
    if args.one_shot:
        one_shot_dir = args.one_shot_dir or os.path.join(args.output, "one_shot")
        recipes.search_step("one_shot", one_shot_dir, data=data, crop=args.crop,
                            epochs=args.oneshot_epochs, target_gflops=args.target_gflops,
                            verbose=0)
        archs["one_shot"] = recipes.load_architecture(one_shot_dir)
    archs["hand_made"] = hand_made(space, target, data.num_classes, args.retrain_crop)
    drawn = baselines.random_architectures(space, target, args.random,
                                           num_classes=data.num_classes, crop=args.retrain_crop)
    archs.update({f"random_{i}": arch for i, arch in enumerate(drawn)})
    for name, chain in args.decided:
        kept = baselines.random_architectures(space, target, args.random,
                                              num_classes=data.num_classes,
                                              crop=args.retrain_crop, kept=decided_choices(chain))
        archs.update({f"{name}_{i}": arch for i, arch in enumerate(kept)})
    return archs


def decided_choices(chain) -> dict:
    """Variable key -> the choices a chain's three steps kept where they decided (their
    `evidence.json`: the favoured one, or those the evidence did not rule out)."""
    kept = {}
    for step in ("step1", "step2", "step3"):
        evidence = load_evidence(os.path.join(chain, step))
        if evidence is None:
            raise SystemExit(f"{chain}/{step} has no evidence.json (the evidence logits "
                             "optimizer writes it)")
        kept.update({key: entry["kept"] for key, entry in evidence["decided"].items()})
    return kept


def draw_seeds(args, name) -> range:
    """Seeds of one candidate: `--random-seeds` for the draws (random and --decided),
    `--seeds` for the rest."""
    draws = ("random_", *(f"{prefix}_" for prefix, _ in args.decided))
    return range(args.random_seeds if name.startswith(draws) else args.seeds)


def seed_std(results) -> float:
    """The pooled standard deviation of one architecture's top-1 over its seeds (ddof 1,
    every architecture with two seeds or more); NaN where none has two."""
    spreads = [np.var(r["top1"], ddof=1) for r in results.values() if len(r["top1"]) > 1]
    return float(np.sqrt(np.mean(spreads))) if spreads else float("nan")


def summary(results) -> dict:
    """Each architecture's mean top-1 against the random ones' means
    (`baselines.searched_vs_random`), and the seed noise to read the spread against."""
    random = [float(np.mean(r["top1"])) for name, r in results.items()
              if name.startswith("random_")]
    rows = {}
    for name, r in results.items():
        mean = float(np.mean(r["top1"]))
        compared = baselines.searched_vs_random(mean, random)
        rows[name] = {"gflops": r["gflops"], "top1": r["top1"], "mean": mean,
                      "above_random_mean_in_std": compared["beats_mean_by_std"]}
    return {"random_mean": compared["random_mean"], "random_std": compared["random_std"],
            "seed_std": seed_std(results), "groups": draw_groups(results), "rows": rows}


def draw_groups(results) -> dict:
    """Per family of draws (`random_0`, `random_1`, ... -> "random"): the mean, std (ddof 1)
    and count of its members' mean top-1."""
    families = {}
    for name, r in results.items():
        match = re.fullmatch(r"(.+)_(\d+)", name)
        if match:
            families.setdefault(match.group(1), []).append(float(np.mean(r["top1"])))
    return {family: {"mean": float(np.mean(means)),
                     "std": float(np.std(means, ddof=1)) if len(means) > 1 else float("nan"),
                     "count": len(means)}
            for family, means in families.items()}


COLOURS = {"progressive": "tab:green", "one_shot": "tab:orange", "hand_made": "tab:blue"}


def _colour(name, decided_prefixes) -> str:
    """Searched results purple, random draws grey, draws with decided variables olive."""
    if name in COLOURS:
        return COLOURS[name]
    if name.startswith("random_"):
        return "tab:grey"
    decided = decided_prefixes and name.startswith(decided_prefixes)
    return "tab:olive" if decided else "tab:purple"


def plot(json_path, path):
    """10-Center top-1 per architecture: one dot per seed, a bar at the mean, random's band."""
    from matplotlib.figure import Figure

    with open(json_path, encoding="utf-8") as handle:
        report = json.load(handle)
    results, summary_ = report["results"], report["summary"]
    decided = tuple(f"{prefix}_" for prefix, _ in report["settings"].get("decided", []))
    figure = Figure(figsize=(7, 3.4))
    axis = figure.subplots()
    for x, (name, result) in enumerate(results.items()):
        colour = _colour(name, decided)
        top1 = 100 * np.asarray(result["top1"])
        axis.scatter([x] * len(top1), top1, color=colour, s=18, zorder=3)
        axis.hlines(top1.mean(), x - 0.3, x + 0.3, color=colour)
        axis.text(x, 3, f"{result['gflops']:.3f}", ha="center", fontsize=7)
    mean, std = 100 * summary_["random_mean"], 100 * summary_["random_std"]
    axis.axhspan(mean - std, mean + std, color="tab:grey", alpha=0.15,
                 label="random: mean +- 1 std")
    axis.legend(loc="lower left", bbox_to_anchor=(0.0, 0.1), fontsize=8)
    axis.set_xticks(range(len(results)), list(results), rotation=30, fontsize=8)
    axis.set(ylabel="10-Center top-1 (%)", ylim=(0, 102),
             title="two streams, equal FLOPs (GFLOPs per view at the bottom), retrained identically")
    axis.title.set_fontsize(9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _named_chain(text):
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=CHAIN_FOLDER, got {text!r}")
    return name, folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--progressive", required=True, help="a chain folder with step3/")
    parser.add_argument("--output", required=True)
    parser.add_argument("--crop", type=int, default=32, help="the searches' crop")
    parser.add_argument("--retrain-crop", type=int, default=None,
                        help="crop of the retrains and of the FLOPs matching (default: --crop)")
    parser.add_argument("--one-shot-dir", default="",
                        help="the one-shot search's folder (default: OUTPUT/one_shot)")
    parser.add_argument("--oneshot-epochs", type=int, default=72)
    parser.add_argument("--one-shot", action=argparse.BooleanOptionalAction, default=True,
                        help="--no-one-shot: leave the one-shot search out")
    parser.add_argument("--data-root", default="", help="as the recipes' data_root")
    parser.add_argument("--train-list", default="",
                        help="as the recipes' train_list (default: the built-in synthetic data)")
    parser.add_argument("--val-list", default="", help="as the recipes' val_list")
    parser.add_argument("--target-gflops", type=float, default=0.0175)
    parser.add_argument("--also", nargs="*", type=_named_chain, default=[], metavar="NAME=CHAIN",
                        help="more chains' step-3 results, retrained as the progressive one "
                             "(for example one searched on the comparison's own data)")
    parser.add_argument("--decided", nargs="*", type=_named_chain, default=[], metavar="NAME=CHAIN",
                        help="--random draws more, each with the variables CHAIN's steps decided "
                             "(their evidence.json) kept to the choices the evidence left: is what "
                             "the search decided worth it?")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--random", type=int, default=5)
    parser.add_argument("--random-seeds", type=int, default=1,
                        help="retrains of each random architecture (their mean is its score)")
    parser.add_argument("--plot", default="", help="PNG path: the figure of the results")
    parser.add_argument("--plot-only", action="store_true",
                        help="only draw --plot from OUTPUT/comparison.json")
    args = parser.parse_args(argv)
    args.retrain_crop = args.retrain_crop or args.crop
    if args.plot_only:
        return plot(os.path.join(args.output, "comparison.json"), args.plot)
    data = recipes.resolve_data(args.data_root, args.train_list, args.val_list, verbose=False)
    space = auto_tsnet_mini()
    archs = candidates(args, space, data)
    results = {}
    for name, arch in archs.items():
        top1 = [trained_top1(arch, os.path.join(args.output, name, f"seed{s}"),
                             args.retrain_crop, s, data) for s in draw_seeds(args, name)]
        gflops = complexity(arch, data.num_classes, crop=args.retrain_crop).macs / 1e9
        results[name] = {"gflops": gflops, "top1": top1, "architecture": arch.to_dict()}
        print(f"| {name} | {gflops:.4f} | {' / '.join(f'{100 * t:.1f}' for t in top1)} |",
              flush=True)
    report = summary(results) if args.random >= 2 else {}
    with open(os.path.join(args.output, "comparison.json"), "w") as handle:
        json.dump({"settings": vars(args), "results": results, "summary": report}, handle,
                  indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    for name, row in report.get("rows", {}).items():
        print(f"{name}: mean {100 * row['mean']:.1f}% ({row['above_random_mean_in_std']:+.1f} std)")
    if args.plot and report:
        plot(os.path.join(args.output, "comparison.json"), args.plot)


if __name__ == "__main__":
    main()
