"""Item 3's weights part taken apart: the masked update, and what one more path costs
(TensorFlow, one process).

`bench_search_parts.py` times the search's weights part (K paths' forward and backward
passes, their gradients summed, the masked update) against the fixed step. This script
builds both with and without their optimizer step and times them alternating (medians of
`--repeats` rounds, after one untimed round):

    fixed                 the smallest architecture's fixed training step (SGD momentum)
    fixed, no update      the same, its gradients summed into a scalar instead of applied
    weights K             the weights part of a search pinned to that architecture, K paths
    weights K, no update  the same, the paths' box gradients summed into a scalar

for K = 4 (item 3's) and 2. Derived, each the median of the per-round values:

    update share    1 - no update / with update: of the fixed step, of the weights part
    one more path   (weights 4 - weights 2) / 2, both without the update: a path's forward
                    and backward passes, its gradients added to the others' and its batch
                    norms' statistics; against the fixed step without its update

    python benchmarks/bench_search_update.py              # item 3: crop 64, the smallest
    python benchmarks/bench_search_update.py --threads 1 2
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import machine  # noqa: E402

PARTS = ("fixed", "fixed, no update", "weights 4", "weights 4, no update", "weights 2",
         "weights 2, no update")


def sink_gradients(tf, gradients, sink):
    """Adds each gradient's first entry to the scalar variable `sink`: every gradient is
    computed, none is applied."""
    firsts = [tf.reshape(gradient, (-1,))[:1] for gradient in gradients if gradient is not None]
    sink.assign_add(tf.reduce_sum(tf.concat(firsts, 0)))


def weights_part(tf, space, arch, crop, x, y, samples, sink=None):
    """The weights part of a search pinned to `arch` with K = `samples`; with `sink`, the
    optimizer's `apply_box_gradients` (this search's only) sums the gradients there."""
    from bench_search_parts import pinned_search

    search = pinned_search(space, arch, crop, samples=samples)
    if sink is not None:
        search.optimizer.apply_box_gradients = lambda per_weight, weights: sink_gradients(
            tf, [gradient for parts in per_weight for gradient, _ in parts], sink)
    order = tf.range(samples, dtype=tf.float32)  # distinct scores: rank weights
    context = tf.distribute.get_replica_context
    return tf.function(lambda: search._train_weights(x, y, search.sample(0), order, context()))


def build_parts(tf, crop):
    """{name: traced callable} of `PARTS`, on `bench_search_parts`' batches, each under its
    Grappler setting (`grappler_setting`: the fixed steps as Keras runs a model, the
    search's parts as `ParsecSearch.fit` runs them)."""
    import keras

    from bench_search_parts import (BATCH, chosen_architecture, fixed_step, grappler_setting,
                                    random_batches, under_setting)
    from tsnet_keras.search import step_space
    from tsnet_keras.search.parsec import CPU_OPTIMIZERS, graph_optimization
    from tsnet_keras.spaces import get_space

    keras.utils.set_random_seed(0)
    ((x, y),) = random_batches(tf, crop, BATCH)
    space = step_space(1, get_space("auto_tsnet"))
    arch = chosen_architecture(space, "smallest")
    sink = tf.Variable(0.0)
    built = {"fixed": fixed_step(arch, crop, x, y), "fixed, no update": fixed_step(
        arch, crop, x, y, apply=lambda gradients, _: sink_gradients(tf, gradients, sink))}
    for samples in (4, 2):
        built[f"weights {samples}"] = weights_part(tf, space, arch, crop, x, y, samples)
        built[f"weights {samples}, no update"] = weights_part(tf, space, arch, crop, x, y,
                                                              samples, sink)
    return {name: under_setting(graph_optimization, fn, grappler_setting(
        name.split(",")[0], None, CPU_OPTIMIZERS)) for name, fn in built.items()}


def derived(times):
    """{name: median of the per-round values} of the quantities in the module's docstring."""
    rounds = list(zip(*(times[name] for name in PARTS)))
    values = {"update share, fixed step": [], "update share, weights part (K = 4)": [],
              "one more path / fixed, no update": [],
              "weights 4 a path / fixed": []}
    for fixed, fixed_bare, w4, w4_bare, _, w2_bare in rounds:
        values["update share, fixed step"].append(1 - fixed_bare / fixed)
        values["update share, weights part (K = 4)"].append(1 - w4_bare / w4)
        values["one more path / fixed, no update"].append((w4_bare - w2_bare) / 2 / fixed_bare)
        values["weights 4 a path / fixed"].append(w4 / 4 / fixed)
    return {name: statistics.median(series) for name, series in values.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, nargs=2, metavar=("INTRA", "INTER"),
                        help="TensorFlow's intra-op and inter-op thread pools (default: "
                             "TensorFlow's own)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    import tensorflow as tf

    from bench_search_parts import timed_rounds
    from tsnet_keras.cli import set_threads

    set_threads(args.threads)  # before TensorFlow's first op
    print(f"TensorFlow {tf.__version__}; {machine.describe()}; auto_tsnet step 1, smallest "
          f"architecture; crop {args.crop}; medians of {args.repeats}; threads (intra, "
          f"inter): {args.threads or 'default'}")
    parts = build_parts(tf, args.crop)
    for name, fn in parts.items():
        start = time.perf_counter()
        fn(), fn()
        print(f"  {name}: trace + two calls {time.perf_counter() - start:.1f} s", flush=True)
    times, _ = timed_rounds(parts, args.repeats)
    for name in PARTS:
        print(f"{name:>22} {statistics.median(times[name]):8.1f} ms")
    for name, value in derived(times).items():
        print(f"{name:>38} {value:7.3f}")


if __name__ == "__main__":
    main()
