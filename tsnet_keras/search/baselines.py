"""Random architectures at the searched one's FLOPs: the baseline a search must beat.

A search is worth its cost only if its architecture beats what a uniform draw
from the same space gives at the same FLOPs, each trained identically (the
paper's comparison, and `benchmarks/bench_searched_vs_random.py`). The evaluate
recipe (`random_baselines=N`) and the benchmark both draw them here.

Draw i uses its own generator, `numpy.random.default_rng(seed * 100_000 + i)`,
with one uniform choice per variable of the space in `space.variables()` order
(the same draws as `ArchitectureDistribution.sample` at uniform logits), so the
k-th accepted architecture does not depend on how many were asked for.
"""

from __future__ import annotations

import numpy as np

from tsnet_keras.accounting import complexity

FLOPS_TOLERANCE = 0.05  # "equal FLOPs": within 5% of the searched architecture's MACs
MAX_DRAWS = 200_000
_CHUNK = 4096


def _uniform_cdfs(sizes, kept=None) -> list:
    """Per variable, the CDF `Generator.choice(size, p=uniform)` searches; a variable in
    `kept` (position -> choice indices) is uniform over those choices only."""
    cdfs = []
    for position, size in enumerate(sizes):
        probabilities = np.full(size, 1.0 / size)
        if kept and position in kept:
            probabilities = np.isin(np.arange(size), kept[position]) / len(kept[position])
        cdf = probabilities.cumsum()
        cdfs.append(cdf / cdf[-1])
    return cdfs


def _draw_indices(cdfs, seed: int) -> list:
    """Choice indices of draw `seed`: `Generator.choice(size, p=uniform)` per variable."""
    uniforms = np.random.default_rng(seed).random(len(cdfs))
    return [int(cdf.searchsorted(u, side="right")) for cdf, u in zip(cdfs, uniforms)]


def uniform_draw(space, seed: int):
    """The architecture of draw `seed`: each variable of `space` uniform, independently."""
    variables = space.variables()
    indices = _draw_indices(_uniform_cdfs([len(v.choices) for v in variables]), seed)
    return space.from_indices({v.key: i for v, i in zip(variables, indices)})


def _kept_columns(space, kept) -> dict:
    """Position -> choice indices of each `kept` variable key -> choices, checked."""
    variables = space.variables()
    keys = [v.key for v in variables]
    columns = {}
    for key, choices in (kept or {}).items():
        if key not in keys:
            raise ValueError(f"`kept`: {key!r} is not a variable of the space.")
        known = variables[keys.index(key)].choices
        unknown = [c for c in choices if c not in known]
        if unknown or not choices:
            raise ValueError(f"`kept`: {key} has no choice(s) {unknown or choices!r} "
                             f"(choices: {known}).")
        columns[keys.index(key)] = [known.index(c) for c in choices]
    return columns


def random_architectures(space, target_macs: float, count: int, *, num_classes: int, crop,
                         seed: int = 0, tolerance: float = FLOPS_TOLERANCE,
                         kept: dict | None = None) -> list:
    """`count` uniform draws from `space` whose one-view MACs are within `tolerance` of target.

    The MACs of a draw come from the space's layer tables (`MacsModel`, exact), so
    a million draws take seconds.

    Args:
        space: a `TwoStreamSpace` (all its searchable variables are drawn).
        target_macs: the MACs to match (the searched architecture's, at `crop`).
        count: int. Architectures wanted.
        num_classes, crop: the accounting's settings (those of the searched model).
        seed: int. Which draws (see the module docstring).
        tolerance: relative MACs gap accepted.
        kept: variable key -> choices, optional: those variables are drawn uniformly
            among these choices only (one choice: fixed), for example what a search
            decided (`evidence_report`'s "kept"); the others stay uniform over all.

    Raises:
        ValueError: when `MAX_DRAWS` draws give fewer than `count` (the target is
            outside what the space can build, or too rare in it).
    """
    from tsnet_keras.search.expected_macs import MacsModel

    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"`count` must be an int >= 0, got {count!r}.")
    model = MacsModel(space, num_classes, crop)
    cdfs = _uniform_cdfs(model.sizes, _kept_columns(space, kept))
    found = []
    for first in range(0, MAX_DRAWS, _CHUNK):
        if len(found) == count:
            break
        draws = range(first, min(first + _CHUNK, MAX_DRAWS))
        indices = np.array([_draw_indices(cdfs, seed * 100_000 + d) for d in draws])
        macs = np.full(len(indices), model.constant)
        for positions, table in model.terms:
            macs += table[tuple(indices[:, p] for p in positions)]
        for row in indices[np.abs(macs / target_macs - 1.0) <= tolerance][:count - len(found)]:
            found.append(space.from_indices(dict(zip(model.keys, row))))
    if len(found) < count:
        raise ValueError(
            f"only {len(found)} of {count} random architectures of {MAX_DRAWS} draws are within "
            f"{tolerance:.0%} of {target_macs / 1e9:.4g} GMACs: the target is rare in this space.")
    return found


def searched_vs_random(searched: float, random: list) -> dict:
    """How far the searched score lands above the random ones, in their standard deviations.

    Args:
        searched: the searched architecture's score (e.g. top-1 in [0, 1]).
        random: the random architectures' scores (one each; at least one).

    Returns:
        dict with `searched`, `random_mean`, `random_std` (ddof 1; NaN for one),
        `random_max`, `beats_mean_by_std` (NaN when the std is NaN or 0) and
        `share_below` (the share of random scores below the searched one).
    """
    scores = np.asarray(random, dtype="float64")
    if scores.size == 0:
        raise ValueError("`random` needs at least one score.")
    std = float(np.std(scores, ddof=1)) if scores.size > 1 else float("nan")
    mean = float(scores.mean())
    gap = (searched - mean) / std if np.isfinite(std) and std > 0 else float("nan")
    return {"searched": float(searched), "random_mean": mean, "random_std": std,
            "random_max": float(scores.max()), "beats_mean_by_std": float(gap),
            "share_below": float(np.mean(scores < searched))}


__all__ = ["FLOPS_TOLERANCE", "random_architectures", "searched_vs_random", "uniform_draw"]
