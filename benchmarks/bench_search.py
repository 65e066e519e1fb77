"""PARSEC search step against plain training, and retracing, on the TensorFlow backend.

(a) Time and peak memory of one search step against one training step of the
    SAME architecture built as a fixed model (`build_model`), same training
    batch. The search step trains K = 2 samples (each on half the batch) along
    their paths and scores both on a held-out batch; to compare like with like
    the distribution is set to a point mass on the architecture, so both samples
    are that architecture. `--path-batch split` (the default here, one forward and
    backward pass in all) is what this comparison measures; `--path-batch full`
    (the library's default) trains each sample on the whole batch, K passes. Each side runs in its own process. Memory: resident
    set size sampled every millisecond during the timed steps (glibc told to
    return large buffers at once: MALLOC_MMAP_THRESHOLD_=65536), reported as the
    step's peak above the RSS before the step ("step peak"), and the process'
    peak RSS (VmHWM, includes weights, optimizer state and graph tracing).
    `tf.config.experimental.get_memory_info` has no CPU allocator statistics.
(b) Traces of the Keras train function (and of the per-sample functions inside
    it) over 100 search steps whose sampled architectures change every step.
(c) GPU: measured only where a GPU is present (none in the run recorded in
    RESULTS_search.md).

Run:
    python benchmarks/bench_search.py                      # crop 64, batch 8, all parts
    python benchmarks/bench_search.py --crop 96 --steps 10 --parts a
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ("smallest", "sampled", "largest")


def _rss_mb():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _hwm_mb():
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _PeakSampler:
    def __init__(self):
        self.peak, self._stop = 0.0, threading.Event()

    def __enter__(self):
        self.peak = _rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _space(name="paper"):
    if name == "tiny":  # the tests' sparse-only space: checks this script in seconds
        sys.path.insert(0, ROOT)
        from tests.search.spaces import tiny_single_stream

        return tiny_single_stream()
    from tsnet_keras.search import step_space
    from tsnet_keras.space import auto_tsnet

    return step_space(1, auto_tsnet())


def _architecture(space, name):
    if name == "smallest":
        return space.extreme(largest=False)
    if name == "largest":
        return space.extreme(largest=True)
    return space.sample(seed=0)


def _batch(args, size, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(size, 4, args.crop, args.crop, 3)).astype("float32")
    y = rng.integers(0, args.classes, size).astype("int32")
    return x, y


def _time_steps(step, args):
    times, peaks = [], []
    for _ in range(args.steps):
        before = _rss_mb()
        with _PeakSampler() as sampler:
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        peaks.append(sampler.peak - before)
    times.sort()
    return {"ms_per_step": 1000 * times[len(times) // 2], "step_peak_mb": max(peaks)}


def worker_fixed(args):
    import keras
    import tensorflow as tf

    from tsnet_keras.models import build_model

    space = _space(args.space)
    arch = _architecture(space, args.arch)
    keras.utils.set_random_seed(0)
    model = build_model(arch, num_classes=args.classes, crop=args.crop)
    optimizer = keras.optimizers.SGD(0.4, momentum=0.9)
    optimizer.build(model.trainable_variables)
    x, y = (tf.constant(a) for a in _batch(args, args.batch, 0))

    @tf.function(jit_compile=False)
    def step():
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    result = _time_steps(step, args)
    result.update(first_step_s=first, hwm_mb=_hwm_mb(), params=int(model.count_params()))
    return result


def worker_search(args):
    import keras
    import numpy as np
    import tensorflow as tf

    from tsnet_keras.search import ParsecSearch

    space = _space(args.space)
    keras.utils.set_random_seed(0)
    search = ParsecSearch(space, args.classes, crop=args.crop, samples_per_replica=2,
                          path_batch=args.path_batch)
    search.compile(learning_rate=0.4, momentum=0.9)
    x, y = (tf.constant(a) for a in _batch(args, args.batch, 0))
    hx, hy = (tf.constant(a) for a in _batch(args, args.heldout_batch, 1))
    step_fn = tf.function(search.train_step)
    dist = search.distribution

    def point_mass(name):
        indices = space.indices(_architecture(space, name))
        dist.set_logits({k: 50.0 * np.eye(n)[indices[k]] for k, n in zip(dist.keys, dist.sizes)})

    weights = search.supernet.trainable_variables

    @tf.function
    def train_only():
        """The weight update of the search step alone (no scoring, no alpha update)."""
        indices = search.sample(0)
        scale = tf.constant(0.5)
        gradients = None
        for s in range(2):
            _, grads = search._sample_gradients(x[s::2], y[s::2], indices[s], scale)
            gradients = grads if gradients is None else [a + b for a, b in zip(gradients, grads)]
        search.optimizer.apply_gradients(zip(gradients, weights))

    results = {}
    start = time.perf_counter()
    point_mass(args.archs[0])
    step_fn(((x, y), (hx, hy)))
    first = time.perf_counter() - start
    for name in args.archs:
        point_mass(name)
        step_fn(((x, y), (hx, hy)))  # warm-up (no retrace)
        results[name] = _time_steps(lambda: step_fn(((x, y), (hx, hy))), args)
        train_only()
        results[name]["train_only"] = _time_steps(train_only, args)
    results["first_step_s"] = first
    results["traces"] = step_fn.experimental_get_tracing_count()
    results["hwm_mb"] = _hwm_mb()
    results["supernet_params"] = int(search.supernet.count_params())
    return results


def worker_traces(args):
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, ROOT)
    from tests.search.spaces import tiny_two_stream
    from tsnet_keras.search import ParsecSearch, search_dataset

    space = tiny_two_stream()
    rng = np.random.default_rng(0)
    x = {"sparse": rng.normal(size=(16, 4, 16, 16, 3)).astype("float32"),
         "dense": rng.normal(size=(16, 8, 16, 16, 3)).astype("float32")}
    y = rng.integers(0, 5, 16).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    search = ParsecSearch(space, 5, crop=16, samples_per_replica=2)
    search.compile()
    # train_step's Python body runs once per trace of Keras' train function.
    traces = {"train_step": 0}
    train_step = search.train_step

    def counted(data):
        traces["train_step"] += 1
        return train_step(data)

    search.train_step = counted
    seen = set()
    for step in range(100):
        search.search_step.assign(step)
        seen.update(tuple(row) for row in np.asarray(search.sample(0)))
    search.search_step.assign(0)
    start = time.perf_counter()
    search.fit(search_dataset(data.repeat(), data), steps_per_epoch=100, epochs=1, verbose=0,
               shuffle=False)
    return {
        "steps": int(search.search_step.numpy()),
        "distinct_architectures": len(seen),
        "space_size": space.size(),
        "train_function_traces": traces["train_step"],
        "sample_gradient_traces": search._sample_gradients.experimental_get_tracing_count(),
        "sample_score_traces": search._sample_score.experimental_get_tracing_count(),
        "seconds": time.perf_counter() - start,
    }


def _spawn(kind, args, arch=None):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0",
               PYTHONPATH=ROOT)
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind,
               "--crop", str(args.crop), "--batch", str(args.batch), "--steps", str(args.steps),
               "--heldout-batch", str(args.heldout_batch), "--classes", str(args.classes),
               "--space", args.space, "--path-batch", args.path_batch, "--archs", *args.archs]
    if arch:
        command += ["--arch", arch]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if output.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{output.stdout[-3000:]}\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heldout-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--parts", default="abc")
    parser.add_argument("--path-batch", choices=("split", "full"), default="split",
                        help="which clips each sampled path trains on (ParsecSearch's path_batch)")
    parser.add_argument("--worker", choices=("fixed", "search", "traces"))
    parser.add_argument("--arch", choices=ARCHS, default="sampled")
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS),
                        help="architectures timed in part a")
    parser.add_argument("--space", choices=("paper", "tiny"), default="paper",
                        help="paper: step 1 of auto_tsnet(); tiny: the tests' small space")
    args = parser.parse_args()
    if args.worker:
        result = {"fixed": worker_fixed, "search": worker_search, "traces": worker_traces}[
            args.worker](args)
        print(json.dumps(result))
        return

    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores")
    if "a" in args.parts:
        print(f"\n(a) {'Auto-TSNet step-1 space (sparse stream, 4 frames, 26 blocks)' if args.space == 'paper' else 'tiny test space'}, crop "
              f"{args.crop}, batch {args.batch} (2 samples x {args.batch // 2 if args.path_batch == 'split' else args.batch} clips), held-out "
              f"batch {args.heldout_batch}, median of {args.steps} steps")
        search = _spawn("search", args)
        print(f"    supernet: {search['supernet_params']:,} params (widest); trace + first step "
              f"{search['first_step_s']:.1f} s; traces for {len(args.archs)} architectures: {search['traces']}; "
              f"process peak RSS {search['hwm_mb']:.0f} MB")
        print("    time: ms per step (ratio to fixed); memory: step peak MB above the RSS "
              "before the step (ratio)")
        header = (f"    {'architecture':<10}{'params':>11}{'fixed ms':>10}{'search ms':>15}"
                  f"{'weights-only ms':>17}{'fixed MB':>10}{'search MB':>14}"
                  f"{'weights-only MB':>17}{'fixed RSS MB':>14}")
        print(header)
        for name in args.archs:
            fixed = _spawn("fixed", args, name)
            s, w = search[name], search[name]["train_only"]

            def cell(value, reference, width, digits=0):
                return f"{value:.{digits}f} ({value / max(reference, 1e-9):.2f})".rjust(width)

            print(f"    {name:<10}{fixed['params']:>11,}{fixed['ms_per_step']:>10.0f}"
                  f"{cell(s['ms_per_step'], fixed['ms_per_step'], 15)}"
                  f"{cell(w['ms_per_step'], fixed['ms_per_step'], 17)}"
                  f"{fixed['step_peak_mb']:>10.0f}"
                  f"{cell(s['step_peak_mb'], fixed['step_peak_mb'], 14)}"
                  f"{cell(w['step_peak_mb'], fixed['step_peak_mb'], 17)}"
                  f"{fixed['hwm_mb']:>14.0f}")
    if "b" in args.parts:
        traces = _spawn("traces", args)
        print(f"\n(b) 100 search steps, tiny two-stream space ({traces['space_size']:,} "
              f"architectures, {traces['distinct_architectures']} distinct ones sampled on "
              f"replica 0): train-function traces {traces['train_function_traces']}, "
              f"per-sample gradient traces {traces['sample_gradient_traces']}, score traces "
              f"{traces['sample_score_traces']} ({traces['seconds']:.1f} s incl. tracing)")
    if "c" in args.parts:
        gpus = tf.config.list_physical_devices("GPU")
        print(f"\n(c) GPU: {'found ' + str(len(gpus)) + ' (run part a there)' if gpus else 'none on this machine, not measured'}")


if __name__ == "__main__":
    main()
