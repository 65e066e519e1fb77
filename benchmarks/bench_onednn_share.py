"""Item 3's fixed step and one trained path: oneDNN's kernels against the rest (TensorFlow).

`bench_search_parts.py` times the fixed step and the search's weights part (K forward
and backward passes and the masked update). This script splits each into the time
oneDNN's kernels take (matrix products, batch norms, depthwise convolutions: TensorFlow
runs them through oneDNN on CPUs) and the rest: TensorFlow's own kernels (slices, pads,
additions, the box update) and its executor between ops. It runs the parts in a child
process with oneDNN's verbose log on (`ONEDNN_VERBOSE=1`, with timestamps) and sums
each kernel's own execution time inside each timed call. The log adds a few µs a kernel
to both parts.

With one thread in each pool (the default here) no two ops run at once, so the rest is
the wall time less oneDNN's. With more threads oneDNN's kernels overlap other ops and
the split only bounds the rest from below.

    python benchmarks/bench_onednn_share.py                  # item 3: crop 64, smallest
    python benchmarks/bench_onednn_share.py --threads 2 2    # TensorFlow's default pools here
"""

import argparse
import collections
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import machine  # noqa: E402

PARTS = ("fixed", "weights")
WINDOW = "WINDOW"  # the child's line per timed call: WINDOW part start_ms end_ms


def child(args):
    """Times `args.calls` calls of each part (after three untimed ones) and prints each
    call's window in epoch milliseconds, the clock of oneDNN's verbose timestamps."""
    import tensorflow as tf

    from bench_search_parts import functions, grappler_setting, under_setting
    from tsnet_keras.cli import set_threads
    from tsnet_keras.search.parsec import CPU_OPTIMIZERS, graph_optimization

    set_threads(args.threads)
    built = functions(tf, args.crop)
    parts = {name: under_setting(graph_optimization, built[name],
                                 grappler_setting(name, None, CPU_OPTIMIZERS)) for name in PARTS}
    for fn in parts.values():
        fn(), fn(), fn()
    for _ in range(args.calls):
        for name, fn in parts.items():
            start = time.time()
            fn()
            print(f"{WINDOW} {name} {1000 * start:.3f} {1000 * time.time():.3f}", flush=True)


def verbose_kernels(lines):
    """[(timestamp ms, kind, ms)] of the log's kernel executions."""
    kernels = []
    for line in lines:
        fields = line.strip().split(",")
        if len(fields) > 8 and fields[0] == "onednn_verbose" and fields[4] == "exec":
            kernels.append((float(fields[2]), f"{fields[6]} {fields[8]}", float(fields[-1])))
    return kernels


def windows(lines):
    """[(part, start ms, end ms)] of the child's timed calls."""
    found = []
    for line in lines:
        if line.startswith(WINDOW + " "):
            _, name, start, end = line.split()
            found.append((name, float(start), float(end)))
    return found


def split_calls(lines, samples):
    """{part: [(wall ms, oneDNN ms, {kind: ms})]} per unit (the fixed step; one trained path
    of the weights part, its time over `samples`)."""
    kernels, result = verbose_kernels(lines), collections.defaultdict(list)
    for name, start, end in windows(lines):
        unit = samples if name == "weights" else 1
        kinds = collections.Counter()
        for stamp, kind, ms in kernels:
            if start <= stamp <= end:
                kinds[kind] += ms / unit
        result[name].append(((end - start) / unit, sum(kinds.values()), kinds))
    return result


def report(result):
    median = statistics.median
    print(f"{'part':>22} {'wall ms':>8} {'oneDNN ms':>10} {'rest ms':>8}")
    for name, calls in result.items():
        label = "fixed step" if name == "fixed" else "weights part, a path"
        wall, onednn = median(c[0] for c in calls), median(c[1] for c in calls)
        print(f"{label:>22} {wall:8.1f} {onednn:10.1f} {wall - onednn:8.1f}")
    kinds = sorted({kind for calls in result.values() for c in calls for kind in c[2]})
    print(f"\n{'oneDNN kernel, ms a unit':>44}" + "".join(f"{n:>10}" for n in result))
    for kind in kinds:
        print(f"{kind:>44}" + "".join(f"{median(c[2][kind] for c in calls):10.1f}"
                                      for calls in result.values()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--calls", type=int, default=5, help="timed calls of each part")
    parser.add_argument("--threads", type=int, nargs=2, default=(1, 1),
                        metavar=("INTRA", "INTER"), help="TensorFlow's pools (default 1 1)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    from bench_search_parts import SAMPLES

    print(f"{machine.describe()}; item 3's setting (paper space step 1, smallest architecture, "
          f"crop {args.crop}, K = {SAMPLES}); threads (intra, inter) {tuple(args.threads)}; "
          f"medians of {args.calls} calls; oneDNN verbose log on", flush=True)
    env = dict(os.environ, ONEDNN_VERBOSE="1", ONEDNN_VERBOSE_TIMESTAMP="1")
    command = [sys.executable, os.path.abspath(__file__), "--child", "--crop", str(args.crop),
               "--calls", str(args.calls), "--threads", *map(str, args.threads)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if run.returncode:
        sys.exit(f"the child process failed ({run.returncode}):\n{run.stderr[-3000:]}")
    lines = run.stdout.splitlines()
    if not verbose_kernels(lines):
        sys.exit("oneDNN logged no kernel: is TensorFlow built with oneDNN "
                 "(TF_ENABLE_ONEDNN_OPTS)?")
    report(split_calls(lines, SAMPLES))


if __name__ == "__main__":
    main()
