"""The masked update's box write: its cost by box and by variable size (TensorFlow).

The search's update writes each large weight's active box, and the box of its momentum,
in place (`tsnet_keras.search.optimizers._write_box`: TensorFlow's
`ResourceStridedSliceAssign`). This script times that write alone, in a traced function
of `--count` writes to as many variables, against the same function computing the box and
writing nothing, the two called in turn (medians of `--repeats` rounds; "write": the median
of the per-round differences): per write, and per box entry for boxes of 10,000 entries on;
for item 3's box shapes (the smallest architecture's expand kernel and depthwise kernel
boxes) and for a small box in variables of growing size. A write that copied the whole variable
would grow with the variable; one that is bound by the box grows with the box.

    python benchmarks/bench_box_write.py
"""

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import machine  # noqa: E402

# (variable shape, box shape): item 3's kinds of box, then one box in ever larger variables.
CASES = (
    ((2064, 344), (372, 248)),
    ((2064, 344), (372, 344)),
    ((5, 5, 5, 2064), (5, 3, 3, 372)),
    ((5, 5, 5, 2064), (5, 5, 5, 372)),
    ((64, 512), (16, 16)),
    ((1024, 512), (16, 16)),
    ((8192, 512), (16, 16)),
)


def write_function(tf, variable_shape, box_shape, count, write):
    """(a traced function, its `count` variables of `variable_shape`): the function computes
    a box for each variable and, with `write`, writes it at the variable's origin."""
    from tsnet_keras.search.optimizers import _write_box

    variables = [tf.Variable(tf.random.normal(variable_shape)) for _ in range(count)]
    box, sink = tf.random.normal(box_shape), tf.Variable(0.0)
    origin = tf.zeros((len(variable_shape),), tf.int32)

    @tf.function
    def run():
        for variable in variables:
            new_box = box * 1.0001
            if write:
                _write_box(variable.handle, origin, new_box)
            else:
                sink.assign_add(tf.reshape(new_box, (-1,))[0])

    return run, variables


def paired_us(bare, written, repeats):
    """Medians of µs a call of `bare`, of `written` and of their difference, the two called
    in turn `repeats` times after two untimed calls each."""
    bare(), bare(), written(), written()
    times = {bare: [], written: []}
    for _ in range(repeats):
        for function in (bare, written):
            start = time.perf_counter()
            function()
            times[function].append(1e6 * (time.perf_counter() - start))
    differences = [w - b for b, w in zip(times[bare], times[written])]
    return (statistics.median(times[bare]), statistics.median(times[written]),
            statistics.median(differences))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20, help="writes per traced call")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeats < 1:
        parser.error("--count and --repeats must be at least 1")
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}; {machine.describe()}; {args.count} writes a call, "
          f"medians of {args.repeats} rounds")
    print(f"{'variable':>16} {'box':>16} {'no write µs':>12} {'with µs':>9} {'write µs':>9} "
          f"{'ns an entry':>12}")
    for variable_shape, box_shape in CASES:
        bare, written, write = (value / args.count for value in paired_us(*(
            write_function(tf, variable_shape, box_shape, args.count, writes)[0]
            for writes in (False, True)), args.repeats))
        entries = math.prod(box_shape)
        ns = f"{1000 * write / entries:.2f}" if entries >= 10000 else "-"
        print(f"{str(variable_shape):>16} {str(box_shape):>16} {bare:12.1f} {written:9.1f} "
              f"{write:9.1f} {ns:>12}")


if __name__ == "__main__":
    main()
