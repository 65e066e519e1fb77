"""The first step of each epoch against the others, in the default step-1 recipe's run.

Usage:
    python benchmarks/bench_epoch_start.py [--epochs 10] [--rounds 2]

Runs `tsnet-keras search --step 1` (`recipe_run.py`: the CLI's defaults) `2 x rounds`
times in one process, alternating the epoch stream's read-ahead
(`tsnet_keras.engine.STREAM_PREFETCH`) between 0 (what the library did before: an
epoch's dataset made, and its first batch decoded, when its first step asks for it)
and the library's default. A callback times every step (`on_train_batch_begin` to
`on_train_batch_end`: the traced step, its input included) and every epoch. Epoch 0
(the trace) is left out of the figures.
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


class StepTimes(keras.callbacks.Callback):
    """Seconds of each step, grouped by epoch, and of each epoch."""

    def __init__(self):
        super().__init__()
        self.steps, self.epochs = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.steps.append([])
        self.epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self.step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1].append(time.perf_counter() - self.step_start)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self.epoch_start)


def one_run(prefetch, epochs) -> dict:
    from tsnet_keras import engine

    engine.STREAM_PREFETCH = prefetch
    times = StepTimes()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        run_recipe(["search", "--step", "1", "--epochs", str(epochs), "--output-dir", folder],
                   [times])
    later = times.steps[1:]
    return {"first step": statistics.median(steps[0] for steps in later),
            "other steps": statistics.median(t for steps in later for t in steps[1:]),
            "epoch": statistics.median(times.epochs[1:]),
            "run": time.perf_counter() - start}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from tsnet_keras import engine

    default = engine.STREAM_PREFETCH
    print(f"default step-1 search, {args.epochs} epochs a run; medians over epochs 1 on, ms")
    print(f"{'read-ahead':>10} {'first step':>11} {'other steps':>12} {'epoch':>8} {'run s':>7}")
    for _ in range(args.rounds):
        for prefetch in (0, default):
            row = one_run(prefetch, args.epochs)
            print(f"{prefetch:>10} {1e3 * row['first step']:>11.0f} "
                  f"{1e3 * row['other steps']:>12.0f} {1e3 * row['epoch']:>8.0f} "
                  f"{row['run']:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
