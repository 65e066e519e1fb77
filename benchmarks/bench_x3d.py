"""X3D-S speed of tsnet_keras: forward and training step against PyTorch.

Usage:
    python benchmarks/bench_x3d.py [--size S] [--batches 1 4] [--repeats 5]
    python benchmarks/bench_x3d.py --policy mixed_bfloat16   # bfloat16 compute
    python benchmarks/bench_x3d.py --tf-pools 1 2   # TensorFlow's thread pools (intra, inter)
    python benchmarks/bench_x3d.py --batches 8 32 --policy mixed_bfloat16   # on a GPU
    KERAS_BACKEND=jax python benchmarks/bench_x3d.py ...   # the same layers on JAX

The Keras backend is KERAS_BACKEND's (TensorFlow when unset): on TensorFlow the
step is a `tf.function` with a `GradientTape`, on JAX a jitted
`stateless_call` + `optimizer.stateless_apply` with the state donated. On a
machine with a CUDA GPU both frameworks run there (TensorFlow and JAX place
their arrays on the GPU by themselves, torch is moved to "cuda"); with a mixed
policy torch runs under `torch.autocast` with the same compute dtype.
`--frames` and `--crop` shrink the clip for quick checks of the script itself.

Shapes follow the X3D-S recipe: 13 x 160^2 clips, 400 classes; SGD with momentum.
The same network is timed in the same run as

- PyTorchVideo's own `pytorchvideo.models.x3d.create_x3d` (pip install
  pytorchvideo; it needs no torchvision for X3D, so a stand-in `torchvision.ops`
  is put in place when torchvision is missing: only its detection head uses it);
- the plain PyTorch X3D of `torch_x3d_reference.py` (eager, grouped `nn.Conv3d`).

All implementations alternate call by call, round by round, so they see the
same machine load and their ratios hold on a shared machine; the first call of
each (tracing, warm-up) is excluded and the median of the timed calls is
reported. The goals of issue 14 are printed last as ratios to PyTorchVideo:
training step <= 0.8x at batch 1 and 4, forward <= 0.8x at batch 1.
"""

import argparse
import dataclasses
import functools
import os
import statistics
import sys
import time
import types

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX: leave GPU memory to torch

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tsnet_keras import build_model, complexity, presets  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402

GOAL = 0.8
_BACKEND = keras.backend.backend()
OURS = "tsnet_keras/" + {"tensorflow": "TF", "jax": "JAX"}.get(_BACKEND, _BACKEND)


def timed_side_by_side(functions, repeats):
    """Medians of wall-clock and CPU seconds of `functions` called in turn, `repeats` rounds.

    Alternating the implementations round by round lets both see the same
    machine load, so their wall-clock ratio holds on a shared machine. The CPU
    time of the process during each call (all its threads) is the work the call
    did, which waiting for a busy CPU does not inflate: on a loaded machine it
    is the steadier figure.
    """
    for function in functions:
        function()  # trace / warm up
    walls, cpus = [[] for _ in functions], [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            start, start_cpu = time.perf_counter(), time.process_time()
            function()
            walls[index].append(time.perf_counter() - start)
            cpus[index].append(time.process_time() - start_cpu)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus, strict=True)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="S", choices=sorted(presets.X3D_SIZES))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=5, help="forward calls; train steps: half")
    parser.add_argument(
        "--policy", default="float32", choices=("float32", "mixed_bfloat16", "mixed_float16"),
        help="Keras dtype policy; torch runs under autocast with the same compute dtype",
    )
    parser.add_argument("--frames", type=int, help="clip length (default: the preset's)")
    parser.add_argument("--crop", type=int, help="crop size (default: the preset's training crop)")
    parser.add_argument("--no-torch", action="store_true", help="time tsnet_keras alone")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(),
        help="CPU threads of each framework (1 keeps ratios stable on a loaded machine)",
    )
    parser.add_argument(
        "--tf-pools", type=int, nargs=2, metavar=("INTRA", "INTER"),
        help="TensorFlow's intra-op and inter-op pools instead of --threads for both "
        "(as `tsnet-keras --threads`)",
    )
    args = parser.parse_args()
    if keras.backend.backend() == "tensorflow":
        _configure_tensorflow(args.tf_pools or (args.threads, args.threads))

    print(f"{machine.describe()}; load average at start: {os.getloadavg()[0]:.2f}")
    config = presets.X3D_SIZES[args.size]
    crop, frames = args.crop or config["train_crop"], args.frames or config["frames"]
    implementations = {OURS: keras_x3d(args.size, frames, crop, args.policy)}
    if not args.no_torch and args.size == "S":
        implementations.update(torch_models(args.threads, frames, crop, args.policy))
    print(f"{'impl':>16} {'batch':>5} {'forward s':>10} {'forward CPU s':>14} {'train step s':>13} "
          f"{'train CPU s':>12}")
    results = {}
    for batch in args.batches:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(batch, frames, crop, crop, 3)).astype("float32")
        y = np.arange(batch) % 400
        calls = {name: make(x, y) for name, make in implementations.items()}
        forwards = timed_side_by_side([c[0] for c in calls.values()], args.repeats)
        steps = timed_side_by_side([c[1] for c in calls.values()], max(2, args.repeats // 2))
        for name, fwd, step in zip(calls, forwards, steps, strict=True):
            results[name, batch] = (fwd, step)
            print(f"{name:>16} {batch:>5} {fwd[0]:>10.3f} {fwd[1]:>14.3f} {step[0]:>13.3f} "
                  f"{step[1]:>12.3f}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print_goals(results, args.batches)


def print_goals(results, batches):
    """Issue 14's goals as ratios tsnet_keras / PyTorchVideo (and / plain PyTorch)."""
    for reference in ("PyTorchVideo", "PyTorch ref"):
        if (reference, batches[0]) not in results:
            continue
        print(f"\nratios {OURS} : {reference}, wall clock / CPU time "
              f"(goal <= {GOAL} where marked)")
        for batch in batches:
            ours, theirs = results[OURS, batch], results[reference, batch]
            for index, what in enumerate(("forward", "train step")):
                wall, cpu = (ours[index][k] / theirs[index][k] for k in (0, 1))
                goal = (what == "train step" and batch in (1, 4)) or (what == "forward" and batch == 1)
                verdict = f"wall {_verdict(wall)}, CPU {_verdict(cpu)}" if goal else ""
                print(f"  {what:>10} batch {batch:>2}: {wall:.2f} / {cpu:.2f}  {verdict}")


def _verdict(ratio):
    return "met" if ratio <= GOAL else "missed"


def _configure_tensorflow(pools):
    import tensorflow as tf

    from tsnet_keras.cli import set_threads

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)  # leave memory to torch
    set_threads(pools)


def keras_x3d(size, frames, crop, policy):
    """Returns `make(x, y) -> (forward(), train_step())` for tsnet_keras' X3D."""
    keras.mixed_precision.set_dtype_policy(policy)
    arch = presets.x3d(size)
    arch = dataclasses.replace(arch, sparse=dataclasses.replace(arch.sparse, frames=frames))
    model = build_model(arch, num_classes=400, crop=crop)
    cost = complexity(arch, crop=crop)
    optimizer = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    maker = _jax_maker if keras.backend.backend() == "jax" else _tensorflow_maker
    make, where = maker(model, optimizer, loss_fn)
    print(f"tsnet_keras X3D-{size}: {cost.params:,} params, {cost.gflops:.3f} GMACs/clip at "
          f"{frames}x{crop}^2; {where}; Keras {keras.__version__}, policy {policy}")
    return make


def _tensorflow_maker(model, optimizer, loss_fn):
    import tensorflow as tf

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

    def make(x, y):
        x, y = tf.constant(x), tf.constant(y)
        return (lambda: forward(x).numpy()), (lambda: float(train_step(x, y)))

    devices = [d.device_type for d in tf.config.list_logical_devices()]
    threads = tf.config.threading.get_intra_op_parallelism_threads()
    return make, f"devices {devices}; TF {tf.__version__}, {threads} threads"


def _jax_maker(model, optimizer, loss_fn):
    """Keras' JAX training loop by hand: jitted stateless calls, the state donated."""
    import jax

    def loss_and_state(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, logits), non_trainable

    gradient = jax.value_and_grad(loss_and_state, has_aux=True)
    forward = jax.jit(lambda trainable, non_trainable, x: model.stateless_call(
        trainable, non_trainable, x, training=False)[0])

    @functools.partial(jax.jit, donate_argnums=0)
    def train_step(state, x, y):
        trainable, non_trainable, optimizer_state = state
        (loss, non_trainable), grads = gradient(trainable, non_trainable, x, y)
        trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_state)

    state = [[v.value for v in variables] for variables in
             (model.trainable_variables, model.non_trainable_variables, optimizer.variables)]

    def make(x, y):
        x, y = jax.device_put(x), jax.device_put(y)

        def step():
            loss, state[:] = train_step(tuple(state), x, y)
            return float(loss)

        return (lambda: forward(state[0], state[1], x).block_until_ready()), step

    return make, f"devices {[d.platform for d in jax.devices()]}; JAX {jax.__version__}"


def torch_models(threads, frames, crop, policy):
    """`{name: make}` for PyTorchVideo's X3D-S (when installed) and the plain PyTorch one."""
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_x3d_reference import X3D

    torch.set_num_threads(threads)
    models = {}
    pytorchvideo_x3d = _pytorchvideo_create_x3d()
    if pytorchvideo_x3d is None:
        print("PyTorchVideo: not installed (pip install pytorchvideo), row skipped")
    else:
        models["PyTorchVideo"] = pytorchvideo_x3d(
            input_clip_length=frames, input_crop_size=crop, depth_factor=2.2, model_num_class=400
        )
    models["PyTorch ref"] = X3D(num_classes=400)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    for name, model in models.items():
        print(f"{name}: torch {torch.__version__}, {sum(p.numel() for p in model.parameters()):,} "
              f"params, {torch.get_num_threads()} threads, eager, {device}, {policy}")
    return {name: _torch_maker(model.to(device), device, policy) for name, model in models.items()}


def _pytorchvideo_create_x3d():
    try:
        import torchvision  # noqa: F401
    except ImportError:  # X3D does not use torchvision; pytorchvideo.models imports RoIAlign
        stub, stub_ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        stub_ops.RoIAlign = type("RoIAlign", (), {})
        stub.ops = stub_ops
        sys.modules.setdefault("torchvision", stub)
        sys.modules.setdefault("torchvision.ops", stub_ops)
    try:
        from pytorchvideo.models.x3d import create_x3d
    except ImportError:
        return None
    except Exception as error:  # noqa: BLE001 - an old pytorchvideo against a new torchvision
        print(f"PyTorchVideo: import failed ({type(error).__name__}: {error})")
        return None
    return create_x3d


def _torch_maker(model, device, policy):
    import torch

    dtype = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(policy)
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)

    def autocast():
        return torch.autocast(device, dtype=dtype, enabled=dtype is not None)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def make(x, y):
        tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))).float().to(device)
        ty = torch.from_numpy(y.astype("int64")).to(device)

        def forward():
            model.eval()
            with torch.no_grad(), autocast():
                model(tx)
            sync()

        def step():
            model.train()
            optimizer.zero_grad()
            with autocast():
                loss = loss_fn(model(tx), ty)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            return float(loss.detach())

        return forward, step

    return make


if __name__ == "__main__":
    main()
