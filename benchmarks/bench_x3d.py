"""X3D-S speed on the TensorFlow backend: forward clips/s and training-step time.

Usage:
    python benchmarks/bench_x3d.py [--size S] [--batches 1 8] [--repeats 5]

Prints one line per batch size. Shapes follow the X3D-S recipe: 13 x 160^2
clips, 400 classes. The first call of each function (tracing) is excluded;
the median of `--repeats` timed calls is reported.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tsnet_keras import build_model, complexity, presets  # noqa: E402


def timed(function, repeats):
    function()  # trace / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="S", choices=sorted(presets.X3D_SIZES))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    config = presets.X3D_SIZES[args.size]
    arch = presets.x3d(args.size)
    crop = config["train_crop"]
    model = build_model(arch, num_classes=400, crop=crop)
    cost = complexity(arch, crop=crop)
    optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def forward(x):
        return model(x, training=False)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    print(f"X3D-{args.size}: {cost.params:,} params, {cost.gflops:.3f} GMACs/clip at "
          f"{config['frames']}x{crop}^2; TF {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPU threads")
    print(f"{'batch':>5} {'forward s/batch':>16} {'forward clips/s':>16} {'s/clip':>8} {'train step s':>13}")
    for batch in args.batches:
        x = tf.constant(np.random.default_rng(0).normal(size=(batch, config["frames"], crop, crop, 3)), tf.float32)
        y = tf.constant(np.arange(batch) % 400)
        fwd = timed(lambda: forward(x).numpy(), args.repeats)
        step = timed(lambda: float(train_step(x, y)), max(2, args.repeats // 2))
        print(f"{batch:>5} {fwd:>16.3f} {batch / fwd:>16.2f} {fwd / batch:>8.3f} {step:>13.3f}")


if __name__ == "__main__":
    main()
