"""X3D-S speed on the TensorFlow backend: forward clips/s and training-step time.

Usage:
    python benchmarks/bench_x3d.py [--size S] [--batches 1 8] [--repeats 5]

Prints one line per batch size and implementation. Shapes follow the X3D-S
recipe: 13 x 160^2 clips, 400 classes. The first call of each function (tracing)
is excluded; the median of `--repeats` timed calls is reported. Unless
`--no-torch`, the same network in plain PyTorch (`torch_x3d_reference.py`, eager,
grouped `nn.Conv3d`; same parameter count) is timed in the same run, so the ratio
is measured side by side.
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


def timed_side_by_side(functions, repeats):
    """Medians of `functions` called in turn, `repeats` rounds.

    Alternating the implementations round by round lets both see the same
    machine load, so their ratio holds on a shared machine.
    """
    for function in functions:
        function()  # trace / warm up
    times = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            function()
            times[index].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="S", choices=sorted(presets.X3D_SIZES))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
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
    print(f"{'impl':>14} {'batch':>5} {'forward s/batch':>16} {'forward clips/s':>16} {'s/clip':>8} {'train step s':>13}")
    reference = None if args.no_torch else torch_reference(args.size)
    for batch in args.batches:
        x = tf.constant(np.random.default_rng(0).normal(size=(batch, config["frames"], crop, crop, 3)), tf.float32)
        y = tf.constant(np.arange(batch) % 400)
        tf_forward, tf_step = (lambda: forward(x).numpy()), (lambda: float(train_step(x, y)))
        if reference is None:
            fwd, step = timed(tf_forward, args.repeats), timed(tf_step, max(2, args.repeats // 2))
        else:
            torch_forward, torch_step = reference(x.numpy(), y.numpy())
            fwd, tfwd = timed_side_by_side([tf_forward, torch_forward], args.repeats)
            step, tstep = timed_side_by_side([tf_step, torch_step], max(2, args.repeats // 2))
        print(f"{'tsnet_keras/TF':>14} {batch:>5} {fwd:>16.3f} {batch / fwd:>16.2f} {fwd / batch:>8.3f} {step:>13.3f}")
        if reference is not None:
            print(f"{'PyTorch ref':>14} {batch:>5} {tfwd:>16.3f} {batch / tfwd:>16.2f} {tfwd / batch:>8.3f} {tstep:>13.3f}"
                  f"   (TF speed-up: forward {tfwd / fwd:.2f}x, train {tstep / step:.2f}x)")


def torch_reference(size):
    """Returns `make(x, y) -> (forward(), train_step())` for the PyTorch X3D."""
    if size != "S" and size != "XS" and size != "M":
        return None  # the reference module is built for the X3D-S/XS/M widths
    import sys

    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_x3d_reference import X3D

    torch.set_num_threads(os.cpu_count())
    model = X3D(num_classes=400)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    print(f"PyTorch {torch.__version__} reference: {sum(p.numel() for p in model.parameters()):,} params, "
          f"{torch.get_num_threads()} threads, eager")

    def make(x, y):
        tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))).float()
        ty = torch.from_numpy(y.astype("int64"))

        def forward():
            model.eval()
            with torch.no_grad():
                model(tx)

        def step():
            model.train()
            optimizer.zero_grad()
            loss = loss_fn(model(tx), ty)
            loss.backward()
            optimizer.step()
            return float(loss.detach())

        return forward, step

    return make


if __name__ == "__main__":
    main()
