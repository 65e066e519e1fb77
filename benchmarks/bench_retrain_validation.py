"""The retrain recipe's per-epoch validation: decoded at every epoch, or once and kept.

Usage:
    python benchmarks/bench_retrain_validation.py [--epochs 4] [--rounds 2]

Runs `tsnet-keras retrain` (`recipe_run.py`: the CLI's defaults, the built-in synthetic
dataset, crop 64, batch 8, 160 validation videos) on a step-1 architecture of
`auto_tsnet_mini` (`sample(0)`), `2 x rounds` times in one process, alternating: "decoded" replaces
`in_memory_if_small` by a pass-through (what the library did before), "kept" is the
library's default. A callback times each epoch and its validation
(`on_test_begin` to `on_test_end`). Epoch 0 (the trace, the first decode) is left out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402

from recipe_run import run_recipe  # noqa: E402


class EpochTimes(keras.callbacks.Callback):
    """Seconds of each epoch and of its validation."""

    def __init__(self):
        super().__init__()
        self.epochs, self.validations = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()

    def on_test_begin(self, logs=None):
        self.test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        self.validations.append(time.perf_counter() - self.test_start)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self.epoch_start)


def one_run(kept, epochs) -> dict:
    from tsnet_keras.recipes import data, train
    from tsnet_keras.search import step_space
    from tsnet_keras.spaces import get_space

    train.in_memory_if_small = data.in_memory_if_small if kept else (lambda dataset, *_: dataset)
    times = EpochTimes()
    with tempfile.TemporaryDirectory() as folder:
        step_space(1, get_space("auto_tsnet_mini")).sample(0).save(
            os.path.join(folder, "architecture.json"))
        run_recipe(["retrain", "--previous-dir", folder, "--epochs", str(epochs),
                    "--output-dir", os.path.join(folder, "retrain")], [times])
    return {"validation": statistics.median(times.validations[1:]),
            "epoch": statistics.median(times.epochs[1:])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"retrain recipe defaults, {args.epochs} epochs a run; medians over epochs 1 on, s")
    print(f"{'validation data':>16} {'validation':>11} {'epoch':>7}")
    for _ in range(args.rounds):
        for kept in (False, True):
            row = one_run(kept, args.epochs)
            print(f"{'kept' if kept else 'decoded':>16} {row['validation']:>11.2f} "
                  f"{row['epoch']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
