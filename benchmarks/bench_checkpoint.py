"""What a search checkpoint costs, measured inside the default step-1 recipe's own run.

Usage:
    python benchmarks/bench_checkpoint.py [--epochs 4] [--every 4]

Runs `tsnet_keras.recipes.search_step(1, ...)` with the step-1 notebook's defaults, as
`tsnet-keras search --step 1` does (the built-in synthetic dataset, `auto_tsnet_mini`,
crop 32, batch 8, K = 4, 16 held-out clips) and a callback that,
every `--every` steps of that run, times on the live search:

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
import inspect
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402


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


def recipe_defaults(function, command="search") -> dict:
    """The parameters of `command`'s notebook (search: step 1's) that `function` takes: the
    CLI's defaults."""
    from tsnet_keras.cli import COMMANDS, notebook_parameters, notebooks_dir

    shown = notebook_parameters(notebooks_dir() / COMMANDS[command].notebook)
    positional = {"step", "output_dir", "previous_dir", "arch"}
    taken = set(inspect.signature(function).parameters) - positional
    return {name: value for name, (value, _) in shown.items() if name in taken}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--every", type=int, default=4, help="steps between timings")
    args = parser.parse_args()
    from tsnet_keras.recipes import search_step

    with tempfile.TemporaryDirectory() as folder:
        timer = CheckpointTimer(args.every, folder)
        options = {**recipe_defaults(search_step), "epochs": args.epochs, "verbose": 0,
                   "checkpoint_every": 0, "callbacks": [timer]}
        search_step(1, output_dir=os.path.join(folder, "step1"), **options)
    print(f"default step-1 search, {args.epochs} epochs, timed every {args.every} steps "
          f"({timer.calls} times), {timer.variables} variables")
    print(f"{'what':<12} {'median ms':>10} {'min':>8} {'max':>8}")
    for name, values in timer.times.items():
        if values:
            print(f"{name:<12} {statistics.median(values):>10.1f} {min(values):>8.1f} "
                  f"{max(values):>8.1f}")
    medians = {name: statistics.median(values) for name, values in timer.times.items() if values}
    ratio = medians["one by one"] / medians["one call"]
    print(f"read, one by one / one call: {ratio:.1f}x")


if __name__ == "__main__":
    main()
