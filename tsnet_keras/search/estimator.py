"""How PARSEC turns the K sampled architectures' held-out scores into updates.

Each search step draws K architectures A_1..A_K ~ p(A | logits) and scores them on
the same held-out clips. The update of the architecture logits (the paper's alpha)
is the score-function (REINFORCE) gradient

    grad = -sum_k a_k * grad_logits log p(A_k | logits),

and for a categorical with one-hot sample a, grad log p = a - softmax(logits).
The weighting decides the coefficients a_k:

| weighting | a_k | what it does with K samples that tie |
|---|---|---|
| "softmax" | softmax(s / tau)_k (PARSEC's importance weights) | pulls the logits towards the samples: a random walk |
| "baseline" | softmax(s / tau)_k - 1 / K | no update |
| "rank" | centred rank of s_k, divided by K - 1 | no update |

"softmax" is the importance-weighted Monte-Carlo estimator as PARSEC states it:
its weights sum to 1, so even when all scores are equal the gradient pulls the
logits towards whatever was sampled, and the variables that do not matter lock in on
random choices. Subtracting the mean weight (a baseline) keeps the expected
gradient and removes that term; ranks also make the step independent of the
score's scale (accuracy in [0, 1] or in percent, a batch of 8 or 128 clips).
Measured in `benchmarks/bench_search_quality.py` (BENCHMARKS.md).

The supernet weights can be trained with the same importance weights
(`weight_update="importance"`, PARSEC's joint objective) or with the plain mean
over the sampled paths (`"mean"`).

`path_batch` says which clips each sampled path trains on: `"full"` (default:
every path sees the whole replica batch, S forward/backward passes) or
`"split"` (the batch is divided among the S paths, one pass in all). Splitting
leaves batch norm a few clips per path: with 8 clips and S = 4 the supernet
learned nothing in 1,200 steps on a path where the whole batch reached the fixed
model's accuracy (BENCHMARKS.md section 8).
"""

from __future__ import annotations

import dataclasses

from keras import ops

from tsnet_keras.checks import check_choice

WEIGHTINGS = ("softmax", "baseline", "rank")
WEIGHT_UPDATES = ("mean", "importance")
PATH_BATCHES = ("full", "split")


@dataclasses.dataclass(frozen=True)
class EstimatorDefaults:
    """The search's estimator defaults, chosen by measurement (BENCHMARKS.md section 8).

    `ParsecSearch`, `run_search_step` and the recipes all read them from here.
    """

    samples_per_replica: int = 4
    weighting: str = "rank"
    temperature: float = 1.0
    weight_update: str = "mean"
    path_batch: str = "full"
    # "evidence": the planted choice found with the others within 0.15 of uniform (Adam
    # drifts them 0.28-0.41), and the recipe chain at least as good (section 8).
    logits_optimizer: str = "evidence"


DEFAULTS = EstimatorDefaults()


def importance_weights(scores, temperature: float):
    """softmax(scores / temperature) over the K samples (shape (K,))."""
    return ops.softmax(ops.cast(scores, "float32") / temperature)


def centred_ranks(scores):
    """Rank of each score among the K (ties share the mean rank), minus the mean rank.

    Returns a (K,) float32 tensor that sums to 0, in [-(K-1)/2, (K-1)/2].
    """
    scores = ops.cast(scores, "float32")
    above = ops.cast(ops.greater(scores[:, None], scores[None, :]), "float32")
    ties = ops.cast(ops.equal(scores[:, None], scores[None, :]), "float32")
    count = ops.cast(ops.shape(scores)[0], "float32")
    ranks = ops.sum(above, axis=1) + 0.5 * (ops.sum(ties, axis=1) - 1.0)
    return ranks - 0.5 * (count - 1.0)


def advantages(scores, weighting: str, temperature: float):
    """The coefficients a_k of the logits' gradient (see the module docstring)."""
    check_choice("weighting", weighting, WEIGHTINGS)
    if weighting == "softmax":
        return importance_weights(scores, temperature)
    count = ops.cast(ops.shape(scores)[0], "float32")
    if weighting == "baseline":
        return importance_weights(scores, temperature) - 1.0 / count
    return centred_ranks(scores) / ops.maximum(count - 1.0, 1.0)  # "rank"


def sample_loss_weights(scores, weight_update: str, temperature: float):
    """Per-sample multipliers of the supernet loss, mean 1 over the K samples."""
    check_choice("weight_update", weight_update, WEIGHT_UPDATES)
    count = ops.cast(ops.shape(scores)[0], "float32")
    if weight_update == "mean":
        return ops.ones_like(ops.cast(scores, "float32"))
    return importance_weights(scores, temperature) * count  # "importance"


__all__ = [
    "DEFAULTS",
    "EstimatorDefaults",
    "WEIGHTINGS",
    "WEIGHT_UPDATES",
    "advantages",
    "centred_ranks",
    "importance_weights",
    "sample_loss_weights",
]
