"""Item 3's search step and its parts against the fixed step, in one process (TensorFlow).

`bench_search.py --step-only` runs the fixed model and the search in separate processes
for a few steps; between processes the fixed step moves by 10-20% on a shared CPU, more
than a change of a few % to the step. This script builds both in one process and times,
alternating, medians of `--repeats` rounds:

    fixed    the smallest architecture's fixed training step (SGD momentum)
    step     the search's train_step, its distribution pinned to that architecture
    weights  the step's weight part alone (`_train_weights`: K forward and backward
             passes and the masked update)
    score    the step's held-out scoring alone (`_score_samples`: K forward passes)

Ratios are per trained path: ms / (K x fixed), as in BENCHMARKS.md section 3c.

The search's parts are called, first and timed, with Grappler as `ParsecSearch.fit`
runs them (`--grappler default`: Grappler's remapper alone on CPUs,
`tsnet_keras.search.parsec.graph_optimization`); the fixed step as Keras runs it
(Grappler on). Every call runs inside its setting: TensorFlow instantiates a function
again, optimised the other way, when it is called under another setting than before.

    python benchmarks/bench_search_parts.py
    PYTHONPATH=<an older checkout> python benchmarks/bench_search_parts.py
    python benchmarks/bench_search_parts.py --space auto_tsnet_mini --crop 32 \
        --heldout-batch 16 --arch sampled     # the search recipes' own setting

`--space` and `--arch` pick the step-1 space (the paper's `auto_tsnet` by default) and
the architecture both the fixed model and the pinned search run: the smallest (item 3's),
the largest, or `sampled` (`space.sample(--arch-seed)`).

`--memory` also prints each part's peak memory above what was allocated before the call,
from TensorFlow's own allocator statistics (on CPUs these need TensorFlow's BFC allocator,
`TF_CPU_ALLOCATOR_USE_BFC=true`, which the option sets before TensorFlow starts; times
are then taken with that allocator). A process's resident size cannot show it: after the
first steps the allocator reuses the pages it holds, so a step's peak above the resident
size before it reads a few MB whatever the step allocates.

    python benchmarks/bench_search_parts.py --memory     # item 3's time and memory
    python benchmarks/bench_search_parts.py --memory --paths-in-flight 2

`--also-optimizers NAME ...` adds a part per name: the step of another pinned search
(`step+NAME`), run with the CPUs' default optimizers (`CPU_OPTIMIZERS`) and that one of
Grappler's: which of them would pay for the search's step on this CPU. `remapping` adds
none: its `step+remapping` is a control, the step's own setting in a search built later.

    python benchmarks/bench_search_parts.py --repeats 15 --also-optimizers remapping \
        layout_optimizer shape_optimization constant_folding implementation_selector
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import machine  # noqa: E402

SAMPLES, BATCH, CLASSES = 4, 8, 400
GRAPPLER = {"default": None, "on": True, "off": False}  # ParsecSearch(graph_optimization=...)


def pinned_search(space, arch, crop, paths_in_flight=1, samples=SAMPLES):
    """A `ParsecSearch` whose K = `samples` samples are all `arch` (logits 50 on its choices)."""
    import numpy as np

    from tsnet_keras.search import MaskedSGD, ParsecSearch

    search = ParsecSearch(space, CLASSES, crop=crop, samples_per_replica=samples,
                          path_batch="full", paths_in_flight=paths_in_flight)
    search.compile(MaskedSGD(0.4, momentum=0.9))
    dist, chosen = search.distribution, space.indices(arch)
    dist.set_logits({key: 50.0 * np.eye(n)[chosen[key]] for key, n in zip(dist.keys, dist.sizes)})
    return search


def fixed_step(arch, crop, x, y, apply=None):
    """The fixed model's traced training step (SGD momentum; `apply`: as
    `bench_search.fixed_train_step`'s)."""
    import keras

    from bench_search import fixed_train_step
    from tsnet_keras.models import build_model

    model = build_model(arch, num_classes=CLASSES, crop=crop)
    optimizer = keras.optimizers.SGD(0.4, momentum=0.9)
    optimizer.build(model.trainable_variables)
    return fixed_train_step(model, optimizer, x, y, apply)


def random_batches(tf, crop, *sizes):
    """`(clips, labels)` of each of `sizes`, drawn in turn from one generator seeded 0 (so
    every script that calls it runs on the same batches)."""
    import numpy as np

    rng = np.random.default_rng(0)
    batches = []
    for size in sizes:
        clips = tf.constant(rng.normal(size=(size, 4, crop, crop, 3)).astype("float32"))
        batches.append((clips, tf.constant(rng.integers(0, CLASSES, size).astype("int32"))))
    return batches


def chosen_architecture(space, arch="smallest", seed=0):
    """The architecture of `space` both sides run: smallest, largest or sampled (`seed`)."""
    if arch == "sampled":
        return space.sample(seed)
    return space.extreme(largest=arch == "largest")


def functions(tf, crop, heldout_batch=4, space_name="auto_tsnet", arch="smallest", seed=0,
              paths_in_flight=1, also=()):
    """{name: traced callable} of the four parts (and a `step+NAME` per name of `also`: the
    step of one more pinned search), on `random_batches`."""
    import keras

    from tsnet_keras.search import step_space
    from tsnet_keras.spaces import get_space

    keras.utils.set_random_seed(0)
    (x, y), (hx, hy) = random_batches(tf, crop, BATCH, heldout_batch)
    space = step_space(1, get_space(space_name))
    arch = chosen_architecture(space, arch, seed)
    search = pinned_search(space, arch, crop, paths_in_flight)
    order = tf.range(SAMPLES, dtype=tf.float32)  # distinct scores: rank weights
    context = tf.distribute.get_replica_context

    def step(search):
        traced = tf.function(search.train_step)
        return lambda: traced(((x, y), (hx, hy)))

    return {
        "fixed": fixed_step(arch, crop, x, y),
        "step": step(search),
        "weights": tf.function(lambda: search._train_weights(
            x, y, search.sample(0), order, context())),
        "score": tf.function(lambda: search._score_samples(hx, hy, search.sample(0))),
        **{f"step+{name}": step(pinned_search(space, arch, crop, paths_in_flight))
           for name in also},
    }


def grappler_setting(part, grappler, cpu_optimizers):
    """`graph_optimization`'s argument for `part`: Grappler whole for the fixed step (as
    Keras runs it), `cpu_optimizers` and NAME for a `step+NAME`, `grappler` otherwise."""
    if part == "fixed":
        return True
    if part.startswith("step+"):
        return (*cpu_optimizers, part[len("step+"):])
    return grappler


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--heldout-batch", type=int, default=4,
                        help="held-out clips each path is scored on (bench_search.py's default "
                             "4; the search recipes' `heldout_batch_size` 16)")
    parser.add_argument("--space", default="auto_tsnet", choices=("auto_tsnet", "auto_tsnet_mini"),
                        help="step 1 of this space (auto_tsnet_mini: the search recipes')")
    parser.add_argument("--arch", default="smallest", choices=("smallest", "largest", "sampled"))
    parser.add_argument("--arch-seed", type=int, default=0, help="the seed of `--arch sampled`")
    parser.add_argument("--grappler", choices=GRAPPLER, default="default",
                        help="for the search's parts: as `fit` runs them (default: the "
                             "remapper alone on CPUs), on or off")
    parser.add_argument("--also-optimizers", nargs="+", default=(), metavar="NAME",
                        help="a `step+NAME` part each: the step with the CPUs' default "
                             "optimizers and NAME, one of `GRAPPLER_OPTIMIZERS` (CPUs only)")
    parser.add_argument("--paths-in-flight", type=int, default=1, choices=(1, 2),
                        help="the search's `paths_in_flight` (1: the default)")
    parser.add_argument("--threads", type=int, nargs=2, metavar=("INTRA", "INTER"),
                        help="TensorFlow's intra-op and inter-op thread pools (default: "
                             "TensorFlow's own, one per core each)")
    parser.add_argument("--memory", action="store_true",
                        help="also each part's peak allocator memory above the memory allocated "
                             "before the call (sets TF_CPU_ALLOCATOR_USE_BFC=true)")
    args = parser.parse_args(argv)
    if args.memory:  # before TensorFlow starts: only the BFC allocator keeps statistics on CPUs
        os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    import tensorflow as tf

    from tsnet_keras.cli import set_threads
    from tsnet_keras.search.parsec import (CPU_OPTIMIZERS, check_graph_optimization,
                                           graph_optimization)

    set_threads(args.threads)  # before TensorFlow's first op, as `tsnet-keras --threads`
    try:
        check_graph_optimization(args.also_optimizers)
    except ValueError as error:
        parser.error(f"--also-optimizers: {error}")
    if args.also_optimizers and tf.config.list_logical_devices("GPU"):
        parser.error("--also-optimizers: a GPU is visible, where the search runs Grappler whole")

    print(f"TensorFlow {tf.__version__}; {machine.describe()}; {args.space} step 1, {args.arch} "
          f"architecture; crop {args.crop}, K = {SAMPLES}, "
          f"batch {BATCH} per path, held-out batch {args.heldout_batch}; medians of {args.repeats}; "
          f"paths in flight {args.paths_in_flight}; "
          f"Grappler for the search: {args.grappler}; threads (intra, inter): "
          f"{args.threads or 'default'}; memory: "
          f"{'BFC allocator statistics' if args.memory else 'not measured'}")
    built = functions(tf, args.crop, args.heldout_batch, args.space, args.arch, args.arch_seed,
                      args.paths_in_flight, args.also_optimizers)
    parts = {name: under_setting(graph_optimization, fn, grappler_setting(
                 name, GRAPPLER[args.grappler], CPU_OPTIMIZERS)) for name, fn in built.items()}
    for name, fn in parts.items():
        start = time.perf_counter()
        fn(), fn()
        print(f"  {name}: trace + two calls {time.perf_counter() - start:.1f} s", flush=True)
    times, peaks = timed_rounds(parts, args.repeats, tf if args.memory else None)
    report(times)
    if args.memory:
        report_memory(peaks)


def under_setting(graph_optimization, fn, grappler):
    """`fn`, each call inside `graph_optimization(grappler)`."""

    def call():
        with graph_optimization(grappler):
            return fn()

    return call


def timed_rounds(parts, repeats, tf=None):
    """({name: [ms per round]}, {name: [peak MB per round]}): the parts called in turn,
    after one untimed round (the first call of a function after others were traced can
    take seconds). Peaks (with `tf`) are the allocator's peak above its allocation
    before the call."""
    times, peaks = {name: [] for name in parts}, {name: [] for name in parts}
    for round_ in range(repeats + 1):
        for name, fn in parts.items():
            before = _allocator_reset(tf) if tf else 0.0
            start = time.perf_counter()
            fn()
            if round_:
                times[name].append(1000 * (time.perf_counter() - start))
                if tf:
                    peaks[name].append(_allocator_peak(tf) - before)
    return times, peaks


def _allocator_reset(tf):
    """MB the CPU allocator holds now; its peak statistic restarts from here."""
    tf.config.experimental.reset_memory_stats("CPU:0")
    return tf.config.experimental.get_memory_info("CPU:0")["current"] / 2**20


def _allocator_peak(tf):
    return tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20


def report(times):
    """Medians, and the median of the per-round ratios (each part against the fixed step
    of its own round: robust to a machine that slows down or speeds up); a `step+NAME`
    also against the step of its round."""
    fixed, width = statistics.median(times["fixed"]), max(8, *map(len, times))
    against_step = any(name.startswith("step+") for name in times)
    print(f"{'part':>{width}} {'median ms':>10} {'per trained path':>17} {'median of rounds':>17}"
          + (f" {'/ step, rounds':>15}" if against_step else ""))
    for name, ms in times.items():
        rounds = [t / (SAMPLES * f) for t, f in zip(ms, times["fixed"])]
        to_step = (f"{statistics.median(a / b for a, b in zip(ms, times['step'])):15.3f}"
                   if name.startswith("step+") else "")
        print(f"{name:>{width}} {statistics.median(ms):10.0f} "
              f"{statistics.median(ms) / (SAMPLES * fixed):17.3f} {statistics.median(rounds):17.3f}"
              f" {to_step}".rstrip())


def report_memory(peaks):
    """Median peak MB of each part, and against the fixed step's (item 3 compares the
    search step's peak with the fixed step's, not per path: the paths run one at a time)."""
    fixed = statistics.median(peaks["fixed"])
    width = max(8, *map(len, peaks))
    print(f"{'part':>{width}} {'peak MB':>10} {'/ fixed step':>13}")
    for name, mb in peaks.items():
        print(f"{name:>{width}} {statistics.median(mb):10.1f} "
              f"{statistics.median(mb) / fixed:13.2f}")


if __name__ == "__main__":
    main()
