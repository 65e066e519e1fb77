"""How long deleting a tf.data iterator waits, with tf.data autotuning on and off.

Each row: make an iterator over a trivial dataset, run `--steps` steps of CPU work
(a chain of matmuls in a `tf.function` that reads the iterator), then delete the
iterator, as Keras does at the end of every `fit`, `evaluate` and `predict`.
With autotuning on (tf.data's default), the deletion may wait for the autotuning
thread's current sleep (periods doubling from 10 ms), so the call ends at
10 ms x (2^n - 1) after the iterator was made. `tsnet_keras.data.options.
without_autotune` turns it off; every dataset the toolkit hands to Keras has it.

    python benchmarks/bench_autotune_stall.py [--sizes 20 50 80 120] [--steps 3] [--fit]

`--fit` adds Keras `fit` calls of 1-9 steps of a fixed model of the search benchmarks'
space (`bench_search.py`, a sampled architecture, crop 64, batch 8) on one dataset
with autotuning on and off.
"""

import argparse
import time


def run(autotune: bool, sizes, steps):
    import tensorflow as tf

    from tsnet_keras.data.options import without_autotune

    dataset = tf.data.Dataset.from_tensors(tf.zeros((4,))).repeat()
    if not autotune:
        dataset = without_autotune(dataset)
    matrix = tf.random.normal((1500, 1500))

    @tf.function
    def step(iterator, n):
        x, y = next(iterator), matrix
        for _ in tf.range(n):
            y = tf.tanh(tf.matmul(y, matrix) * 1e-3)
        return tf.reduce_sum(x) + tf.reduce_sum(y)

    step(iter(dataset), tf.constant(1))
    rows = []
    for n in sizes:
        start = time.perf_counter()
        iterator = iter(dataset)
        for _ in range(steps):
            float(step(iterator, tf.constant(n)))
        worked = time.perf_counter()
        del iterator
        done = time.perf_counter()
        rows.append((n, worked - start, done - worked))
    return rows


def fit_rows(autotune: bool, steps=(1, 2, 3, 4, 5, 6, 7, 9)):
    """(steps, seconds) of `fit(steps_per_epoch=steps)` of a fixed sampled architecture."""
    import os
    import sys

    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_search

    args = argparse.Namespace(arch="sampled", crop=64, batch=8, classes=8)
    model, data = bench_search.startup_model(args, bench_search._space("paper"))
    if autotune:  # startup_model turns it off
        options = tf.data.Options()
        options.autotune.enabled = True
        data = data.with_options(options)
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
    rows = []
    for n in steps:
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=n, epochs=1, verbose=0)
        rows.append((n, time.perf_counter() - start))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 80, 120])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--fit", action="store_true", help="also time Keras fit calls")
    args = parser.parse_args(argv)
    print("| autotune | matmuls a step | work s | iterator deletion s | total s |")
    print("|---|---|---|---|---|")
    for autotune in (True, False):
        for n, work, deletion in run(autotune, args.sizes, args.steps):
            print(f"| {'on' if autotune else 'off'} | {n} | {work:.2f} | {deletion:.2f} | "
                  f"{work + deletion:.2f} |", flush=True)
    if args.fit:
        on, off = fit_rows(True), fit_rows(False)
        print("\n| fit steps | autotune on s | autotune off s |\n|---|---|---|")
        for (n, with_it), (_, without) in zip(on, off):
            print(f"| {n} | {with_it:.2f} | {without:.2f} |", flush=True)


if __name__ == "__main__":
    main()
