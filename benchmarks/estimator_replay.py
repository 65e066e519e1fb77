"""A fast replay of the alpha update with simulated held-out scores (no network).

`bench_search_quality.py` measures the search on real held-out accuracy; this
script isolates the estimator. Each step draws K architectures from the
distribution over the 24 variables of the `auto_tsnet_mini()` step-1 space
(sizes 3, 2, 3 and 7 per group), scores them on n simulated held-out clips and
applies the library's update (`tsnet_keras.search.estimator.advantages`, Adam
on the logits as `ParsecSearch` does). One planted choice adds `delta` to the
accuracy. Clip outcomes: each sample is right on a clip with probability
`accuracy`; with probability `correlation` a clip's outcome is shared by all K
samples (they share weights), so the K scores are paired.

Usage:
    python benchmarks/estimator_replay.py                # the estimator table of BENCHMARKS.md section 8
    python benchmarks/estimator_replay.py --drift        # drift against evidence and alpha rate
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from tsnet_keras.search.estimator import advantages  # noqa: E402
from tsnet_keras.search.evidence import EvidenceOptimizer  # noqa: E402

SIZES = (3, 2, 3, 7) * 6
PLANTED = (4, 2)  # variable 4 (t of group 1), choice 2
CONFIGS = {
    "previous default: softmax tau 1, K 2, n 8": dict(weighting="softmax", temperature=1.0,
                                                     samples=2, clips=8),
    "softmax tau 0.05, K 4, n 16": dict(weighting="softmax", temperature=0.05, samples=4,
                                        clips=16),
    "baseline tau 0.05, K 4, n 16": dict(weighting="baseline", temperature=0.05, samples=4,
                                         clips=16),
    "rank, K 2, n 16": dict(weighting="rank", samples=2, clips=16),
    "rank, K 4, n 8": dict(weighting="rank", samples=4, clips=8),
    "rank, K 4, n 16 (default)": dict(weighting="rank", samples=4, clips=16),
    "rank, K 4, n 32": dict(weighting="rank", samples=4, clips=32),
    "rank, K 8, n 16": dict(weighting="rank", samples=8, clips=16),
}
# Evidence per step (K scored samples x n clips) and the alpha rate against the drift goal:
# the clip outcomes correlated as the real supernet's are (0.7, see BENCHMARKS.md).
DRIFT_CONFIGS = {
    "rank, K 4, n 16, rate 0.025 (default)": dict(samples=4, clips=16, rate=0.025),
    "rank, K 4, n 16, rate 0.012": dict(samples=4, clips=16, rate=0.012),
    "rank, K 8, n 32, rate 0.025": dict(samples=8, clips=32, rate=0.025),
    "rank, K 8, n 32, rate 0.012": dict(samples=8, clips=32, rate=0.012),
    "rank, K 8, n 64, rate 0.008": dict(samples=8, clips=64, rate=0.008),
    "rank, K 16, n 64, rate 0.008": dict(samples=16, clips=64, rate=0.008),
    "rank, K 4, n 16, evidence (scale 1.5, threshold 3)": dict(samples=4, clips=16,
                                                              optimizer="evidence"),
}


class Adam:
    def __init__(self, shapes, rate=0.025, beta1=0.9, beta2=0.999, epsilon=1e-7):
        self.rate, self.beta1, self.beta2, self.epsilon = rate, beta1, beta2, epsilon
        self.m = [np.zeros(s) for s in shapes]
        self.v = [np.zeros(s) for s in shapes]
        self.t = 0

    def step(self, params, grads):
        self.t += 1
        for i, g in enumerate(grads):
            self.m[i] = self.beta1 * self.m[i] + (1 - self.beta1) * g
            self.v[i] = self.beta2 * self.v[i] + (1 - self.beta2) * g * g
            m_hat = self.m[i] / (1 - self.beta1 ** self.t)
            v_hat = self.v[i] / (1 - self.beta2 ** self.t)
            params[i] -= self.rate * m_hat / (np.sqrt(v_hat) + self.epsilon)


class Evidence:
    """NumPy twin of `tsnet_keras.search.evidence.EvidenceOptimizer`, with its defaults."""

    def __init__(self, shapes):
        library = EvidenceOptimizer()
        self.scale = float(ops.convert_to_numpy(library.learning_rate))
        self.threshold, self.leak, self.epsilon = library.threshold, library.leak, library.epsilon
        self.sums = [np.zeros(s) for s in shapes]
        self.squares = [np.zeros(s) for s in shapes]

    def step(self, params, grads):
        for i, g in enumerate(grads):
            self.sums[i] += g
            self.squares[i] += g * g
            z = self.sums[i] / (np.sqrt(self.squares[i]) + self.epsilon)
            excess = np.maximum(np.abs(z) - self.threshold, 0.0)
            params[i][:] = -self.scale * (np.sign(z) * excess + self.leak * z)


def _softmax(logits):
    e = np.exp(logits - logits.max())
    return e / e.sum()


def _scores(rng, samples, clips, accuracy, correlation):
    shared = rng.random(clips) < accuracy
    own = rng.random((samples, clips)) < accuracy
    return np.where(rng.random((samples, clips)) < correlation, shared, own).mean(axis=1)


def replay(seed, delta, weighting, samples, clips, temperature=1.0, steps=300, accuracy=0.5,
           correlation=0.3, rate=0.025, optimizer="adam"):
    """Returns (P(planted choice), largest marginal - uniform of the other variables)."""
    rng = np.random.default_rng(seed)
    logits = [np.zeros(n) for n in SIZES]
    adam = Adam(SIZES, rate=rate) if optimizer == "adam" else Evidence(SIZES)
    for _ in range(steps):
        probs = [_softmax(l) for l in logits]
        drawn = np.array([[rng.choice(len(p), p=p) for p in probs] for _ in range(samples)])
        scores = _scores(rng, samples, clips, accuracy, correlation)
        scores = scores + delta * (drawn[:, PLANTED[0]] == PLANTED[1])
        a = np.asarray(ops.convert_to_numpy(
            advantages(scores.astype("float32"), weighting, temperature)))
        grads = [-(a[:, None] * (np.eye(len(p))[drawn[:, v]] - p)).sum(0)
                 for v, p in enumerate(probs)]
        adam.step(logits, grads)
    probs = [_softmax(l) for l in logits]
    drift = max(p.max() - 1 / len(p) for v, p in enumerate(probs) if v != PLANTED[0])
    return probs[PLANTED[0]][PLANTED[1]], drift


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delta", type=float, default=5.0, help="accuracy points")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--correlation", type=float, default=None,
                        help="clip-outcome correlation (default 0.3; 0.7 with --drift)")
    parser.add_argument("--drift", action="store_true",
                        help="the drift table: evidence per step and alpha rate (rank weights)")
    args = parser.parse_args(argv)
    configs = ({name: dict(weighting="rank", **config) for name, config in DRIFT_CONFIGS.items()}
               if args.drift else CONFIGS)
    args.correlation = args.correlation or (0.7 if args.drift else 0.3)
    print(f"delta {args.delta:g} points, 300 steps, {args.seeds} seeds, clip-outcome "
          f"correlation {args.correlation}")
    print("| setting | P >= 0.9 | median P | max drift | median drift |")
    print("|---|---|---|---|---|")
    for name, config in configs.items():
        runs = np.array([replay(seed, args.delta / 100, config["weighting"], config["samples"],
                                config["clips"], config.get("temperature", 1.0),
                                correlation=args.correlation, rate=config.get("rate", 0.025),
                                optimizer=config.get("optimizer", "adam"))
                         for seed in range(args.seeds)])
        print(f"| {name} | {int((runs[:, 0] >= 0.9).sum())}/{args.seeds} | "
              f"{np.median(runs[:, 0]):.2f} | {runs[:, 1].max():.2f} | "
              f"{np.median(runs[:, 1]):.2f} |", flush=True)


if __name__ == "__main__":
    main()
