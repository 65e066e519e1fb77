"""Does a longer retrain remove the seed spread? Architectures of a comparison, retrained longer.

Takes architectures from a results file of `bench_chain_comparison.py` (by name), retrains
each with the retrain recipe (its defaults but `--epochs`) for the given seeds and scores
it with the evaluate recipe's S row (10-Center), as the comparison did; prints one row per
run and writes them to `--output`/retrain_length.json (finished runs are kept and reused).

    python benchmarks/bench_retrain_length.py \\
        --results benchmarks/results/chain_comparison_evidence.json \\
        --names hand_made random_3 progressive --epochs 20 --seeds 0 1 2 --output runs/length
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tsnet_keras import recipes  # noqa: E402
from tsnet_keras.space.architecture import Architecture  # noqa: E402


def retrained_top1(arch, folder, *, epochs, seed, crop, data) -> dict:
    """Retrain then 10-Center top-1 of one architecture and seed; kept in `folder`."""
    done = os.path.join(folder, "top1.json")
    if os.path.exists(done):
        with open(done) as handle:
            return json.load(handle)
    start = time.time()
    recipes.retrain(arch, os.path.join(folder, "retrain"), data=data, crop=crop, seed=seed,
                    epochs=epochs, steps_per_epoch=40, checkpoint_every=0, verbose=0)
    metrics = recipes.evaluate(os.path.join(folder, "retrain"), os.path.join(folder, "evaluate"),
                               data=data, rows=("S",), verbose=0)
    result = {"top1": metrics["top1"], "seconds": time.time() - start}
    with open(done, "w") as handle:
        json.dump(result, handle)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", required=True, help="a bench_chain_comparison.py JSON")
    parser.add_argument("--names", nargs="+", required=True, help="its rows to retrain")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of 40 steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    with open(args.results) as handle:
        rows = json.load(handle)["results"]
    data = recipes.resolve_data(verbose=False)
    path = os.path.join(args.output, "retrain_length.json")
    report = {}
    if os.path.exists(path):  # runs of earlier calls stay in the report
        with open(path) as handle:
            report = json.load(handle)["runs"]
    for name in args.names:
        arch = Architecture.from_dict(rows[name]["architecture"])
        for seed in args.seeds:
            folder = os.path.join(args.output, f"{name}_e{args.epochs}_s{seed}")
            result = retrained_top1(arch, folder, epochs=args.epochs, seed=seed, crop=args.crop,
                                    data=data)
            report[f"{name}/e{args.epochs}/seed{seed}"] = result
            print(f"| {name} | {seed} | {args.epochs} x 40 | {100 * result['top1']:.1f} | "
                  f"{result['seconds']:.0f} s |", flush=True)
    with open(path, "w") as handle:
        json.dump({"results": args.results, "crop": args.crop, "runs": report}, handle, indent=1)


if __name__ == "__main__":
    main()
