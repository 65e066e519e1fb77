"""Time exact depthwise 3D convolution methods per Keras backend.

Forward + backward (gradients for the input and the kernel) of a depthwise
3x3x3 convolution on a (2, 13, 40, 40, 54) tensor, the X3D-S stage-1 shape at
crop 160. Every backend runs in its own subprocess (KERAS_BACKEND set before
Keras is imported) and the table prints all of them side by side, so the
numbers come from one run on one machine.

Run:
    python benchmarks/bench_depthwise.py            # all backends found
    python benchmarks/bench_depthwise.py --repeats 10 --backends tensorflow jax

depthwise_conv3d uses "shifts" on JAX and "taps" elsewhere.

Methods (all exact up to float32 rounding; the largest difference to "taps" over the
output and both gradients, relative to that tensor's largest magnitude, is printed):
    taps        sum over temporal taps of per-frame 2D depthwise convolutions
                (tsnet_keras.layers.depthwise.depthwise_conv3d_taps)
    multiplier  one per-frame 2D depthwise conv with channel multiplier t over
                the padded clip, then a shifted sum of the t outputs
    grouped     one grouped 3D convolution, groups == channels
                (tsnet_keras.layers.depthwise.depthwise_conv3d_grouped)
    dense_diag  dense 3D convolution with a block-diagonal (t,k,k,C,C) kernel
    shifts      sum of t*k*k shifted, strided slices times one kernel entry each
                (tsnet_keras.layers.depthwise.depthwise_conv3d_shifts)
    custom_grad taps forward with a hand-written backward in keras.ops
                (`keras.ops.custom_gradient`): input gradient = the taps
                convolution of the output gradient with the kernel flipped in
                time and space (stride 1), kernel gradient = t*k*k shifted
                products of input and output gradient, each summed in one
                reduction (keras.ops has no depthwise filter-gradient op)
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys

SHAPE = (2, 13, 40, 40, 54)
METHODS = ("taps", "custom_grad", "multiplier", "grouped", "dense_diag", "shifts")
KERNEL = (3, 3, 3, 54)


def _multiplier(inputs, kernel, spatial_stride=1):
    from keras import ops

    temporal_kernel, spatial_kernel, _, channels = kernel.shape
    batch, frames, height, width, _ = inputs.shape
    pad = temporal_kernel // 2
    padded = ops.pad(inputs, ((0, 0), (pad, pad), (0, 0), (0, 0), (0, 0)))
    flat = ops.reshape(padded, (-1, height, width, channels))
    # (k, k, C, t): output channel c * t + tap.
    stacked = ops.transpose(kernel, (1, 2, 3, 0))
    response = ops.depthwise_conv(flat, stacked, strides=spatial_stride, padding="same")
    out_h, out_w = response.shape[1], response.shape[2]
    response = ops.reshape(
        response, (batch, frames + 2 * pad, out_h, out_w, channels, temporal_kernel)
    )
    output = None
    for tap in range(temporal_kernel):
        term = response[:, tap : tap + frames, :, :, :, tap]
        output = term if output is None else output + term
    return output


def _custom_grad(inputs, kernel, spatial_stride=1):
    import keras
    from keras import ops

    from tsnet_keras.layers import depthwise

    if spatial_stride != 1:
        raise ValueError("custom_grad: only spatial_stride 1 is written")
    temporal_kernel, size = kernel.shape[0], kernel.shape[1]

    @keras.ops.custom_gradient
    def conv(x, k):
        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            flipped = ops.flip(ops.flip(ops.flip(k, 0), 1), 2)
            grad_x = depthwise.depthwise_conv3d_taps(upstream, flipped)
            t_pad, s_pad = temporal_kernel // 2, size // 2
            padded = ops.pad(x, ((0, 0), (t_pad, t_pad), (s_pad, s_pad), (s_pad, s_pad), (0, 0)))
            frames, height, width = x.shape[1], x.shape[2], x.shape[3]
            entries = [
                ops.sum(padded[:, t : t + frames, i : i + height, j : j + width] * upstream,
                        axis=(0, 1, 2, 3))
                for t in range(temporal_kernel) for i in range(size) for j in range(size)
            ]
            grad_k = ops.reshape(ops.stack(entries), k.shape)
            return grad_x, grad_k

        return depthwise.depthwise_conv3d_taps(x, k), grad

    return conv(inputs, kernel)


def _dense_diag(inputs, kernel, spatial_stride=1):
    from keras import ops

    channels = kernel.shape[-1]
    eye = ops.eye(channels, dtype=kernel.dtype)
    dense = ops.expand_dims(kernel, -2) * eye  # (t, k, k, C, C), zero off-diagonal
    return ops.conv(inputs, dense, strides=(1, spatial_stride, spatial_stride), padding="same")


def _worker(repeats, selected):
    import time

    import keras
    import numpy as np

    from tsnet_keras.layers import depthwise

    backend = keras.backend.backend()
    methods = {
        "taps": depthwise.depthwise_conv3d_taps,
        "custom_grad": _custom_grad,
        "multiplier": _multiplier,
        "grouped": depthwise.depthwise_conv3d_grouped,
        "dense_diag": _dense_diag,
        "shifts": depthwise.depthwise_conv3d_shifts,
    }
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(SHAPE).astype("float32")
    k_np = (rng.standard_normal(KERNEL) * 0.2).astype("float32")
    g_np = rng.standard_normal(SHAPE).astype("float32")

    def make_step(fn):
        if backend == "tensorflow":
            import tensorflow as tf

            @tf.function
            def step(x, k, g):
                with tf.GradientTape() as tape:
                    tape.watch([x, k])
                    y = fn(x, k)
                    loss = tf.reduce_sum(y * g)
                return (y,) + tuple(tape.gradient(loss, [x, k]))

            args = [tf.constant(a) for a in (x_np, k_np, g_np)]
            return lambda: [t.numpy() for t in step(*args)]
        if backend == "jax":
            import jax
            import jax.numpy as jnp

            def loss(x, k, g):
                y = fn(x, k)
                return jnp.sum(y * g), y

            step = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
            args = [jnp.asarray(a) for a in (x_np, k_np, g_np)]

            def run():
                (gx, gk), y = step(*args)
                return [np.asarray(y), np.asarray(gx), np.asarray(gk)]

            return run
        if backend == "torch":
            import torch

            def run():
                x = torch.tensor(x_np, requires_grad=True)
                k = torch.tensor(k_np, requires_grad=True)
                y = fn(x, k)
                (y * torch.tensor(g_np)).sum().backward()
                return [t.detach().numpy() for t in (y, x.grad, k.grad)]

            return run
        raise ValueError(f"unsupported backend {backend}")

    # Warm up (compile) every method, then time them round robin so that load
    # from other processes hits all methods alike; report min and median.
    rows, runs, reference = {}, {}, None
    for name in selected:
        rows[name] = {"backend": backend, "method": name}
        try:
            runs[name] = make_step(methods[name])
            outputs = runs[name]()
            runs[name]()
            if reference is None:
                reference = outputs
            rows[name]["max_rel_diff"] = float(
                max(
                    np.max(np.abs(a - b)) / np.max(np.abs(b))
                    for a, b in zip(outputs, reference, strict=True)
                )
            )
        except Exception as error:  # report, keep benchmarking the others
            rows[name]["error"] = f"{type(error).__name__}: {str(error)[:80]}"
            runs.pop(name, None)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    for name in selected:
        if name in times:
            rows[name]["min_seconds"] = float(np.min(times[name]))
            rows[name]["median_seconds"] = float(np.median(times[name]))
        print("RESULT " + json.dumps(rows[name]), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax", "torch"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.repeats, args.methods)
        return

    rows = []
    for backend in args.backends:
        module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
        if importlib.util.find_spec(module) is None:
            print(f"skipping {backend}: not importable")
            continue
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        result = subprocess.run(
            [sys.executable, __file__, "--worker", "--repeats", str(args.repeats)]
            + ["--methods", *args.methods],
            env=env,
            capture_output=True,
            text=True,
        )
        found = [
            json.loads(line[len("RESULT ") :])
            for line in result.stdout.splitlines()
            if line.startswith("RESULT ")
        ]
        if not found:
            print(f"{backend} worker failed:\n{result.stderr[-2000:]}")
        rows.extend(found)

    print(
        f"\ndepthwise 3D conv, forward+backward, input {SHAPE}, kernel {KERNEL[:3]}, "
        f"{args.repeats} timed runs each (round robin), seconds"
    )
    print(f"{'backend':<11} {'method':<11} {'min':>8} {'median':>8} {'rel. diff':>10}")
    for row in rows:
        if "error" in row:
            print(f"{row['backend']:<11} {row['method']:<11} {'failed':>8}  {row['error']}")
        else:
            print(
                f"{row['backend']:<11} {row['method']:<11} {row['min_seconds']:>8.4f} "
                f"{row['median_seconds']:>8.4f} {row['max_rel_diff']:>10.1e}"
            )


if __name__ == "__main__":
    main()
