"""Searched vs random at equal FLOPs, as the evaluate recipe reports it (`random_baselines=N`).

N architectures are drawn uniformly from the search space, keeping those whose
one-view MACs at the training crop are within 5% of the searched model's
(`tsnet_keras.search.baselines`). Each is trained from scratch with the
searched model's recorded `retrain` settings (same optimizer, peak learning
rate, schedule, epochs, batch, seed) into `output_dir/random/<i>` (resumable;
no per-epoch validation), and scored with the same multi-view protocol as the
searched model's S row.
The outcome says where the searched model lands among them: its top-1 minus the
random mean, in the random architectures' standard deviations.
"""

from __future__ import annotations

import math
import os

from tsnet_keras.accounting import complexity
from tsnet_keras.recipes.data import logger
from tsnet_keras.recipes.train import retrain, retrain_arguments
from tsnet_keras.search.baselines import random_architectures, searched_vs_random

RANDOM_DIR = "random"


def draw_baselines(arch, space, count: int, *, num_classes: int, crop: int) -> list:
    """`count` random architectures of `space` within 5% of `arch`'s MACs at `crop`.

    Raises ValueError before any training when `arch` is not in `space` or the
    space has too few architectures at its FLOPs.
    """
    if not space.contains(arch):
        raise ValueError("`space`: the evaluated architecture is not in this space; pass the "
                         "space it was searched in (the search recipes' `space`).")
    target = complexity(arch, num_classes, crop=crop).macs
    return random_architectures(space, target, count, num_classes=num_classes, crop=crop)


def random_baselines(drawn: list, *, searched_top1: float, settings: dict, data, output_dir,
                     crop: int, measure, verbose) -> dict:
    """Trains and scores the random architectures `drawn` (by `draw_baselines`).

    Args:
        drawn: the random `Architecture`s.
        searched_top1: the searched model's multi-view top-1 (the S row).
        settings: its `retrain` settings (`metrics.json["settings"]`).
        crop: its training crop.
        measure: `(model, arch) -> dict` with the multi-view `top1` / `top5`, the S
            row's protocol.

    Returns:
        `searched_vs_random(...)` plus `rows`, one per random architecture.
    """
    kwargs = retrain_arguments(settings)
    rows = []
    for index, candidate in enumerate(drawn):
        if verbose:
            logger.info("random architecture %d of %d (within 5%% of the searched FLOPs): "
                        "training from scratch", index + 1, len(drawn))
        folder = os.path.join(output_dir, RANDOM_DIR, str(index))
        model = retrain(candidate, folder, data=data, crop=crop, validate=False,
                        verbose=2 if verbose else 0, **kwargs).model
        cost = complexity(candidate, data.num_classes, crop=crop)
        rows.append({"index": index, "folder": folder, "gflops_per_view": cost.gflops,
                     "params": cost.params, "architecture": candidate.to_dict(),
                     **measure(model, candidate)})
    summary = {**searched_vs_random(searched_top1, [row["top1"] for row in rows]), "rows": rows}
    if verbose:
        logger.info("%s", describe(summary, len(rows)))
    return summary


def describe(summary: dict, count: int) -> str:
    """One line: searched vs the random mean, in standard deviations."""
    line = (f"searched {100 * summary['searched']:.1f}% top-1 vs {count} random architectures at "
            f"equal FLOPs: {100 * summary['random_mean']:.1f}%")
    std = summary["random_std"]
    if std == 0:  # every random architecture scored the same
        tie = "ties them" if summary["searched"] == summary["random_mean"] else "differs from all"
        line += f" +- 0.0% (all equal: the searched one {tie}; no spread to measure against)"
    elif not math.isnan(std):  # NaN with one random architecture
        line += f" +- {100 * std:.1f}% (searched - mean = {summary['beats_mean_by_std']:+.1f} std)"
    return line + f"; best random {100 * summary['random_max']:.1f}%"


def markdown(summary: dict) -> str:
    """The comparison as a Markdown table (appended to the evaluate recipe's table.md)."""
    lines = ["", "Searched vs random architectures of the same space at equal FLOPs "
             "(within 5%), trained identically:", "",
             "| model | GFLOPs per view | top-1 (%) | top-5 (%) |", "|---|---|---|---|"]
    for row in summary["rows"]:
        lines.append(f"| random {row['index']} | {row['gflops_per_view']:.4f} | "
                     f"{100 * row['top1']:.1f} | {100 * row['top5']:.1f} |")
    lines += ["", describe(summary, len(summary["rows"])) + "."]
    return "\n".join(lines)


__all__ = ["RANDOM_DIR", "describe", "draw_baselines", "markdown", "random_baselines"]
