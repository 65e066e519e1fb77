"""The supernet's tap loop against the fixed layer's taps, forward and backward (TensorFlow).

One clip, a widest kernel of `--max-taps` taps, each tap count `t` in turn: the fixed
layer (`depthwise_conv3d_taps` on the `t` centred taps), `depthwise_conv3d_tap_loop`
(the `t` taps chosen at run time from the widest kernel, traced in place, with TensorFlow's
own gradient) and `shared_tap_loop` (the same loop as the supernet runs it one path at a
time: traced functions for the forward pass and for each gradient). Each
is one `tf.function` returning the output and the gradients for the clip and the kernel,
with Grappler as every search runs on CPUs (`ParsecSearch(graph_optimization=None)`: the
remapper alone).
Medians of `--repeats` calls, the three alternating.

    python benchmarks/bench_tap_loop.py
    PYTHONPATH=<an older checkout> python benchmarks/bench_tap_loop.py   # its tap loop

BENCHMARKS.md section 3c, "The clip through the tap loop".
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import machine  # noqa: E402


def gradient_function(tf, conv, x, kernel, upstream):
    """`tf.function` of `conv(x, kernel)` -> (output, d/dx, d/dkernel) of sum(upstream * out)."""

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            out = conv(x, kernel)
            loss = tf.reduce_sum(out * upstream)
        return (out, *tape.gradient(loss, [x, kernel]))

    return run


def time_pair(functions, repeats):
    """Median ms of each function, called alternately after two warm-up calls."""
    times = {name: [] for name in functions}
    for fn in functions.values():
        fn(), fn()
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(ms) for name, ms in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=5, default=[8, 4, 32, 32, 48],
                        metavar=("BATCH", "FRAMES", "HEIGHT", "WIDTH", "CHANNELS"))
    parser.add_argument("--max-taps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    import numpy as np
    import tensorflow as tf

    from tsnet_keras.layers import depthwise
    from tsnet_keras.search.parsec import graph_optimization

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=args.shape).astype("float32"))
    upstream = tf.constant(rng.normal(size=args.shape).astype("float32"))
    kernel = tf.constant(rng.normal(size=(args.max_taps, 3, 3, args.shape[-1])).astype("float32"))
    print(f"TensorFlow {tf.__version__}; {machine.describe()}; clip {tuple(args.shape)}, "
          f"widest kernel {args.max_taps} taps; ms per forward + backward, medians of {args.repeats}")
    print(f"{'taps':>4} {'fixed layer':>12} {'tap loop':>9} {'ratio':>6} "
          f"{'shared':>7} {'ratio':>6}")
    for taps in range(1, args.max_taps + 1, 2):
        first = (args.max_taps - taps) // 2
        fixed = gradient_function(tf, lambda c, k: depthwise.depthwise_conv3d_taps(
            c, k[first:first + taps]), x, kernel, upstream)
        looped = gradient_function(tf, lambda c, k: depthwise.depthwise_conv3d_tap_loop(
            c, k, tf.constant(first), tf.constant(taps)), x, kernel, upstream)
        shared = gradient_function(tf, lambda c, k: depthwise.shared_tap_loop(
            c, k, tf.constant(first), tf.constant(taps)), x, kernel, upstream)
        with graph_optimization(None):  # as every search on a CPU: the remapper alone
            ms = time_pair({"fixed": fixed, "loop": looped, "shared": shared}, args.repeats)
        print(f"{taps:>4} {ms['fixed']:>12.2f} {ms['loop']:>9.2f} {ms['loop'] / ms['fixed']:>6.2f}"
              f" {ms['shared']:>7.2f} {ms['shared'] / ms['fixed']:>6.2f}")


if __name__ == "__main__":
    main()
