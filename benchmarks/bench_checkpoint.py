"""What a search checkpoint costs, measured inside the default step-1 recipe's own run.

Usage:
    python benchmarks/bench_checkpoint.py [--epochs 4] [--every 4]

Runs `tsnet-keras search --step 1` in this process (`recipe_run.py`: the CLI's defaults,
the built-in synthetic dataset, `auto_tsnet_mini`, crop 32, batch 8, K = 4, 16 held-out
clips) with a callback that, every `--every` steps of that run, times on the live search:

- "one by one": every variable of a checkpoint converted to NumPy with its own
  eager read (`keras.ops.convert_to_numpy`, what `save_checkpoint` did before);
- "one call": the same values through `checkpoint._read_values` (one traced call);
- "save": the library's whole `save_checkpoint` (the read, `np.savez`, the fsync and
  the atomic move) to a scratch folder.

The two reads alternate which goes first; both are checked to give equal arrays.
The first call of the traced read (its trace) is reported apart from the medians.
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
import numpy as np  # noqa: E402

from recipe_run import run_recipe  # noqa: E402


def _one_by_one(variables):
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]


def _timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return 1e3 * (time.perf_counter() - start), result


class CheckpointTimer(keras.callbacks.Callback):
    """Times the two reads and a whole save every `every` steps (milliseconds)."""

    def __init__(self, every, scratch):
        super().__init__()
        self.every, self.scratch, self.calls, self.variables = every, scratch, 0, 0
        self.times = {"one by one": [], "one call": [], "save": [], "first call": []}

    def on_train_batch_end(self, batch, logs=None):
        if (batch + 1) % self.every:
            return
        from tsnet_keras.search import checkpoint

        variables = [v for group in checkpoint._groups(self.model).values() for v in group]
        self.variables = len(variables)
        reads = [("one by one", _one_by_one, (variables,)),
                 ("one call", checkpoint._read_values, (self.model, variables))]
        values = {}
        for name, function, args in (reads if self.calls % 2 else reads[::-1]):
            elapsed, values[name] = _timed(function, *args)
            label = "first call" if name == "one call" and self.calls == 0 else name
            self.times[label].append(elapsed)
        assert all(np.array_equal(a, b) for a, b in zip(*values.values()))
        path = os.path.join(self.scratch, checkpoint.CHECKPOINT_FILE)
        self.times["save"].append(_timed(checkpoint.save_checkpoint, self.model, path)[0])
        self.calls += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--every", type=int, default=4, help="steps between timings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        timer = CheckpointTimer(args.every, folder)
        run_recipe(["search", "--step", "1", "--epochs", str(args.epochs), "--checkpoint-every",
                    "0", "--output-dir", os.path.join(folder, "step1")], [timer])
    print(f"default step-1 search, {args.epochs} epochs, timed every {args.every} steps "
          f"({timer.calls} times), {timer.variables} variables")
    print(f"{'what':<12} {'median ms':>10} {'min':>8} {'max':>8}")
    medians = {name: statistics.median(values) for name, values in timer.times.items() if values}
    for name, median in medians.items():
        times = timer.times[name]
        print(f"{name:<12} {median:>10.1f} {min(times):>8.1f} {max(times):>8.1f}")
    ratio = medians["one by one"] / medians["one call"]
    print(f"read, one by one / one call: {ratio:.1f}x")


if __name__ == "__main__":
    main()
