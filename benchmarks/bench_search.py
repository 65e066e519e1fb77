"""PARSEC search step against plain training, and retracing, on the TensorFlow backend.

(a) Time and peak memory of one search step against one training step of the
    SAME architecture built as a fixed model (`build_model`), same training
    batch. The search step trains K samples (`--samples`, default 4 as the
    library) along their paths and scores them on a held-out batch; to compare
    like with like the distribution is set to a point mass on the architecture,
    so every sample is that architecture. `--path-batch split` (the default
    here) divides the batch among the K paths: one forward and backward pass in
    all, compared with the fixed step directly. `--path-batch full` (the
    library's default) trains each path on the whole batch, K passes: the
    "per pass" columns divide by K fixed steps. Also timed: the weights part
    alone (K gradients + the masked update), the K summed gradients alone and
    the optimizer update alone, against the fixed model's gradients and SGD
    update. `--updates restricted dense` times MaskedSGD's update restricted to
    the active boxes and the dense masked update, each in its own process (the
    dense one the whole step only, unless `--dense-parts`).
    Each side runs in its own process. Memory: resident
    set size sampled every millisecond during the timed steps (glibc told to
    return large buffers at once: MALLOC_MMAP_THRESHOLD_=65536), reported as the
    step's peak above the RSS before the step ("step peak"), and the process'
    peak RSS (VmHWM, includes weights, optimizer state and graph tracing).
    `tf.config.experimental.get_memory_info` has no CPU allocator statistics.
(u) The masked update alone, restricted vs dense, alternated in one process
    (robust to the load of a shared machine), on gradients that are non-zero
    exactly on the architecture's slices of the supernet weights.
(s) Start-up: build, trace + first step of `fit`, and the process' peak RSS of
    the search against the fixed model of the sampled and the largest
    architecture (goals: <= 2x the sampled one's start-up, <= 1.5x the largest
    one's peak memory).
(b) Traces of the Keras train function (and of the per-sample functions inside
    it) over 100 search steps whose sampled architectures change every step.
(c) GPU: measured only where a GPU is present (none in the run recorded in
    RESULTS_search.md).

Run:
    python benchmarks/bench_search.py                      # crop 64, batch 8, all parts
    python benchmarks/bench_search.py --crop 96 --steps 10 --parts a
    python benchmarks/bench_search.py --parts a --archs smallest --steps 5 \
        --path-batch full --updates restricted dense
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ("smallest", "sampled", "largest")
UPDATES = ("restricted", "dense")


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


def fixed_train_step(model, optimizer, x, y, apply=None):
    """The fixed model's traced training step on one batch (no XLA); returns the loss.
    `apply(gradients, variables)` takes the gradients instead of `optimizer`, if given."""
    import keras
    import tensorflow as tf

    @tf.function(jit_compile=False)
    def step():
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, True))
        grads = tape.gradient(loss, model.trainable_variables)
        if apply is None:
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
        else:
            apply(grads, model.trainable_variables)
        return loss

    return step


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

    step = fixed_train_step(model, optimizer, x, y)

    @tf.function(jit_compile=False)
    def gradients():
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, True))
        return tape.gradient(loss, model.trainable_variables)

    @tf.function(jit_compile=False)
    def gradients_only():
        return tf.add_n([tf.reduce_sum(g[..., :1]) for g in gradients()])

    @tf.function(jit_compile=False)
    def update_only(grads):
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    result = _time_steps(step, args)
    gradients_only()
    result["gradients_only"] = _time_steps(gradients_only, args)
    grads = gradients()
    update_only(grads)
    result["update_only"] = _time_steps(lambda: update_only(grads), args)
    result.update(first_step_s=first, hwm_mb=_hwm_mb(), params=int(model.count_params()))
    return result


def worker_search(args):
    import keras
    import numpy as np
    import tensorflow as tf

    from tsnet_keras.search import MaskedSGD, ParsecSearch

    space = _space(args.space)
    keras.utils.set_random_seed(0)
    samples = args.samples
    search = ParsecSearch(space, args.classes, crop=args.crop, samples_per_replica=samples,
                          path_batch=args.path_batch)
    search.compile(MaskedSGD(0.4, momentum=0.9,
                             restrict_to_active=args.update == "restricted"))
    x, y = (tf.constant(a) for a in _batch(args, args.batch, 0))
    hx, hy = (tf.constant(a) for a in _batch(args, args.heldout_batch, 1))
    step_fn = tf.function(search.train_step)
    dist = search.distribution

    def point_mass(name):
        indices = space.indices(_architecture(space, name))
        dist.set_logits({k: 50.0 * np.eye(n)[indices[k]] for k, n in zip(dist.keys, dist.sizes)})

    weights = search.supernet.trainable_variables

    def gradients():
        indices = search.sample(0)
        scale = tf.constant(1.0 / samples)
        total = None
        for s in range(samples):
            part_x, part_y = (x[s::samples], y[s::samples]) if args.path_batch == "split" else (x, y)
            _, grads, _, _ = search._sample_gradients(part_x, part_y, indices[s], scale)
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
        return total

    @tf.function
    def train_only():
        """The weight update of the search step alone (no scoring, no alpha update): the
        step's own `_train_weights` (box gradients where the optimizer takes them)."""
        scores = tf.range(samples, dtype=tf.float32)
        search._train_weights(x, y, search.sample(0), scores, tf.distribute.get_replica_context())

    @tf.function
    def gradients_only():
        return tf.add_n([tf.reduce_sum(g[..., :1]) for g in gradients()])

    @tf.function
    def update_only(grads):
        search.optimizer.apply_gradients(zip(grads, weights))

    results = {}
    start = time.perf_counter()
    point_mass(args.archs[0])
    step_fn(((x, y), (hx, hy)))
    first = time.perf_counter() - start
    for name in args.archs:
        point_mass(name)
        step_fn(((x, y), (hx, hy)))  # warm-up (no retrace)
        results[name] = _time_steps(lambda: step_fn(((x, y), (hx, hy))), args)
        if args.step_only or (args.update == "dense" and not args.dense_parts):
            # Each extra function costs minutes of graph optimisation: the dense
            # reference times the whole step only.
            nan = {"ms_per_step": float("nan"), "step_peak_mb": float("nan")}
            results[name].update(train_only=nan, gradients_only=nan, update_only=nan)
            continue
        train_only()
        results[name]["train_only"] = _time_steps(train_only, args)
        gradients_only()
        results[name]["gradients_only"] = _time_steps(gradients_only, args)
        fixed_grads = tf.function(gradients)()
        update_only(fixed_grads)
        results[name]["update_only"] = _time_steps(lambda: update_only(fixed_grads), args)
        del fixed_grads
    results["first_step_s"] = first
    results["traces"] = step_fn.experimental_get_tracing_count()
    results["hwm_mb"] = _hwm_mb()
    results["supernet_params"] = int(search.supernet.count_params())
    return results


def startup_model(args, space):
    """`(model, data)` of a start-up run: a `ParsecSearch` (`args.arch == "search"`) or the
    fixed model of `args.arch`, compiled, with its endless dataset."""
    import keras
    import tensorflow as tf

    from tsnet_keras.models import build_model
    from tsnet_keras.search import ParsecSearch, search_dataset

    from tsnet_keras.data.options import without_autotune

    x, y = _batch(args, args.batch, 0)
    # Autotuning off, as every dataset the toolkit builds: with it on, a `fit` can end only
    # at the autotuning thread's next wake-up (BENCHMARKS.md section 10).
    train = without_autotune(tf.data.Dataset.from_tensors((x, y)).repeat())
    keras.utils.set_random_seed(0)
    if args.arch != "search":
        model = build_model(_architecture(space, args.arch), num_classes=args.classes,
                            crop=args.crop)
        model.compile(keras.optimizers.SGD(0.4, momentum=0.9),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=False)
        return model, train
    model = ParsecSearch(space, args.classes, crop=args.crop, samples_per_replica=args.samples,
                         path_batch=args.path_batch,
                         graph_optimization=getattr(args, "graph_optimization", None))
    model.compile(learning_rate=0.4, momentum=0.9)
    hx, hy = _batch(args, args.heldout_batch, 1)
    return model, search_dataset(train, tf.data.Dataset.from_tensors((hx, hy)))


def worker_startup(args):
    """Build, then trace + first step of `fit`, then 2 more steps; the process' peak RSS."""
    start = time.perf_counter()
    model, data = startup_model(args, _space(args.space))
    built = time.perf_counter()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
    first = time.perf_counter()
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    later = (time.perf_counter() - first) / 2
    return {"build_s": built - start, "first_step_s": first - built, "later_step_s": later,
            "hwm_mb": _hwm_mb()}


def worker_update(args):
    """MaskedSGD restricted vs dense update alone, alternated in one process.

    The gradient of each supernet weight is non-zero exactly on the slices the
    architecture uses (`_choice_slices`), random there: the pattern a step of
    that architecture leaves, without tracing the supernet.
    """
    import numpy as np
    import tensorflow as tf

    from tsnet_keras.search import MaskedSGD, Supernet

    space = _space(args.space)
    supernet = Supernet(space, args.classes)
    weights = supernet.trainable_variables
    rng = np.random.default_rng(0)
    gradients = {id(v): np.zeros(v.shape, "float32") for v in weights}
    layers = {layer.name: layer for layer in supernet.plan_layers}
    for name, choice in supernet.choices_of(_architecture(space, args.arch)).items():
        if hasattr(layers[name], "_choice_slices"):
            for (variable, index), _ in layers[name]._choice_slices(choice).values():
                if id(variable) in gradients:
                    gradient = gradients[id(variable)]
                    gradient[index] = rng.normal(size=gradient[index].shape)
    gradients = [tf.constant(gradients[id(v)]) for v in weights]
    functions = {}
    for update in UPDATES:
        optimizer = MaskedSGD(0.4, momentum=0.9, restrict_to_active=update == "restricted")
        optimizer.build(weights)
        functions[update] = tf.function(
            lambda g, optimizer=optimizer: optimizer.apply_gradients(zip(g, weights)))
        functions[update](gradients)
    times = {update: [] for update in UPDATES}
    for _ in range(2 * args.steps + 1):
        for update, function in functions.items():
            start = time.perf_counter()
            function(gradients)
            times[update].append(time.perf_counter() - start)
    result = {update: 1000 * float(np.median(t)) for update, t in times.items()}
    result["active_entries"] = int(sum(int(np.count_nonzero(g)) for g in gradients))
    result["entries"] = int(sum(int(np.prod(v.shape)) for v in weights))
    return result


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


def _spawn(kind, args, arch=None, update="restricted"):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0",
               PYTHONPATH=ROOT)
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind,
               "--crop", str(args.crop), "--batch", str(args.batch), "--steps", str(args.steps),
               "--heldout-batch", str(args.heldout_batch), "--classes", str(args.classes),
               "--space", args.space, "--path-batch", args.path_batch, "--samples", str(args.samples),
               "--update", update, "--archs", *args.archs]
    if args.step_only:
        command.append("--step-only")
    if arch:
        command += ["--arch", arch]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if output.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{output.stdout[-3000:]}\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def _cell(value, reference, width, digits=0):
    return f"{value:.{digits}f} ({value / max(reference, 1e-9):.2f})".rjust(width)


def _part_a(args):
    samples, full = args.samples, args.path_batch == "full"
    passes = samples if full else 1  # whole-batch forward/backward passes per step
    space = ('Auto-TSNet step-1 space (sparse stream, 4 frames, 26 blocks)'
             if args.space == 'paper' else 'tiny test space')
    print(f"\n(a) {space}, crop {args.crop}, batch {args.batch}, K = {samples} paths x "
          f"{args.batch if full else args.batch // samples} clips (path_batch={args.path_batch!r}: "
          f"{passes} whole-batch pass(es) per step), held-out batch {args.heldout_batch}, "
          f"median of {args.steps} steps")
    searches = {update: _spawn("search", args, update=update) for update in args.updates}
    fixed = {name: _spawn("fixed", args, name) for name in args.archs}
    for update, search in searches.items():
        print(f"\n    MaskedSGD update: {update}. Supernet {search['supernet_params']:,} params "
              f"(widest); trace + first step {search['first_step_s']:.1f} s; traces for "
              f"{len(args.archs)} architectures: {search['traces']}; process peak RSS "
              f"{search['hwm_mb']:.0f} MB")
        print("    ms per step (ratio to the fixed step; per pass: ratio to "
              f"{passes} x the fixed step); MB: step peak above the RSS before the step")
        print(f"    {'arch':<9}{'params':>11}{'fixed ms':>9}{'search ms':>15}{'per pass':>9}"
              f"{'weights-only':>14}{'per pass':>9}{'grads-only':>14}{'update-only':>14}"
              f"{'fixed MB':>9}{'search MB':>13}{'weights MB':>13}{'fixed RSS':>10}")
        for name in args.archs:
            f, s = fixed[name], search[name]
            w, g, u = s["train_only"], s["gradients_only"], s["update_only"]
            ms = f["ms_per_step"]
            print(f"    {name:<9}{f['params']:>11,}{ms:>9.0f}{_cell(s['ms_per_step'], ms, 15)}"
                  f"{s['ms_per_step'] / (passes * ms):>9.2f}{_cell(w['ms_per_step'], ms, 14)}"
                  f"{w['ms_per_step'] / (passes * ms):>9.2f}"
                  f"{_cell(g['ms_per_step'], f['gradients_only']['ms_per_step'], 14)}"
                  f"{_cell(u['ms_per_step'], f['update_only']['ms_per_step'], 14)}"
                  f"{f['step_peak_mb']:>9.0f}{_cell(s['step_peak_mb'], f['step_peak_mb'], 13)}"
                  f"{_cell(w['step_peak_mb'], f['step_peak_mb'], 13)}{f['hwm_mb']:>10.0f}")
    print("    weights-only: the step's own weight update (box gradients where the optimizer "
          "takes them); grads-only / update-only: the K paths' summed widest-shape gradients "
          "alone and the optimizer update of them alone (ratios to the fixed model's gradients "
          "and SGD update)")


def _part_s(args):
    print(f"\n(s) Start-up and process peak memory, crop {args.crop}, batch {args.batch}, "
          f"K = {args.samples}, path_batch={args.path_batch!r}: build, then `fit` for 1 step "
          "(trace + first step), then 2 more steps; each in its own process")
    rows = {name: _spawn("startup", args, name) for name in ("search", "sampled", "largest")}
    search = rows["search"]
    start = search["build_s"] + search["first_step_s"]
    print(f"    {'process':<16}{'build s':>9}{'trace+1st s':>13}{'build+1st s':>13}"
          f"{'later step s':>14}{'peak RSS MB':>13}   search / this: start-up, peak RSS")
    for name, row in rows.items():
        total = row["build_s"] + row["first_step_s"]
        label = "search" if name == "search" else f"fixed {name}"
        print(f"    {label:<16}{row['build_s']:>9.1f}{row['first_step_s']:>13.1f}{total:>13.1f}"
              f"{row['later_step_s']:>14.2f}{row['hwm_mb']:>13.0f}   "
              f"{start / total:.2f}, {search['hwm_mb'] / row['hwm_mb']:.2f}")
    print(f"    goals: search build + first step / fixed sampled = "
          f"{start / (rows['sampled']['build_s'] + rows['sampled']['first_step_s']):.2f} "
          f"(<= 2); search peak RSS / fixed largest = "
          f"{search['hwm_mb'] / rows['largest']['hwm_mb']:.2f} (<= 1.5)")


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
    parser.add_argument("--samples", type=int, default=4,
                        help="K sampled paths per step (ParsecSearch's samples_per_replica; "
                             "the library default is 4)")
    parser.add_argument("--updates", nargs="+", choices=UPDATES, default=["restricted"],
                        help="MaskedSGD update(s) to time, each in its own search process: "
                             "restricted to the active boxes (default) or dense")
    parser.add_argument("--step-only", action="store_true",
                        help="time the whole search step only (no weights/gradients/update parts)")
    parser.add_argument("--dense-parts", action="store_true",
                        help="also time the weights part, gradients and update in the dense "
                             "process (minutes of graph optimisation each)")
    parser.add_argument("--update", choices=UPDATES, default="restricted",
                        help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("fixed", "search", "traces", "startup", "update"))
    parser.add_argument("--arch", choices=ARCHS + ("search",), default="sampled")
    parser.add_argument("--archs", nargs="+", choices=ARCHS, default=list(ARCHS),
                        help="architectures timed in part a")
    parser.add_argument("--space", choices=("paper", "tiny"), default="paper",
                        help="paper: step 1 of auto_tsnet(); tiny: the tests' small space")
    args = parser.parse_args()
    if args.worker:
        result = {"fixed": worker_fixed, "search": worker_search, "traces": worker_traces,
                  "startup": worker_startup, "update": worker_update}[args.worker](args)
        print(json.dumps(result))
        return

    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}; {machine.describe()}")
    if "a" in args.parts:
        _part_a(args)
    if "u" in args.parts:
        print(f"\n(u) MaskedSGD update alone, restricted vs dense, alternated in one process, "
              f"median of {2 * args.steps + 1}; gradients non-zero on each architecture's slices")
        for name in args.archs:
            row = _spawn("update", args, name)
            print(f"    {name:<9} active {row['active_entries']:,} of {row['entries']:,} entries: "
                  f"restricted {row['restricted']:.0f} ms, dense {row['dense']:.0f} ms "
                  f"({row['restricted'] / row['dense']:.2f})")
    if "s" in args.parts:
        _part_s(args)
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
