"""Video pipeline speed: `video_dataset` against a plain PyAV loop and a training step.

Usage:
    python benchmarks/bench_data.py [--videos 16] [--clips 96] [--batch 8]
                                    [--video-dir DIR] [--skip-model]

Writes `--videos` Kinetics-like test videos once (340 x 256, 10 s at 30 fps,
H.264 with x264's default key-frame interval of 250; synthetic moving content)
into `--video-dir` (default: a temporary folder), then prints, side by side in
one run, two-stream training clips per second (4 x 16 sparse + 32 x 2 dense
frames, scale jitter [182, 228], crop 160, flip) of:

1. a plain single-threaded PyAV loop that decodes the same frames (seek to the
   key frame, decode the 64-frame window, convert + resize the 32 needed frames,
   crop, flip) and nothing else: the floor for decoding cost;
2. `video_dataset(num_parallel_calls=1)`: the same work plus tf.data,
   normalisation and batching; the ratio to (1) is the pipeline's overhead;
3. `video_dataset` with 2 / 4 / AUTOTUNE parallel calls (threads:
   tf.numpy_function in tf.data's thread pool; PyAV releases the GIL while
   decoding and scaling);
4. a process pool (spawn) running the plain loop, feeding tf.data through
   `from_generator`: the process-based alternative;
5. the training-step time of X3D-S (13 x 160^2) and Manual-TSNet-70% (4 + 32 x
   160^2, the two-stream consumer of these clips) at the same batch size.

Every figure is the median over `--repeats` timed passes of `--clips` clips after
one warm-up batch. `--no-tf` keeps the rows that need no TensorFlow, (1) and the
process pool without tf.data, for a machine whose training runs on another
Keras backend (benchmarks/device_check.sh on a GPU machine without TensorFlow).
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import statistics
import tempfile
import threading
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import av  # noqa: E402
import numpy as np  # noqa: E402

WIDTH, HEIGHT, FRAMES, FPS = 340, 256, 300, 30
JITTER, CROP = (182, 228), 160
WINDOW, DENSE, DENSE_STRIDE = 64, 32, 2


def make_videos(folder: str, count: int) -> list[str]:
    """Kinetics-like clips: synthetic moving shapes at 340 x 256, 10 s, keyint 250."""
    from tqdm.auto import tqdm

    from tsnet_keras.data.synthetic import class_factors, render_video, write_video

    os.makedirs(folder, exist_ok=True)
    classes = class_factors(8)
    paths = []
    for index in tqdm(range(count), desc="benchmark videos"):
        path = os.path.join(folder, f"bench{index:03d}.mp4")
        if not os.path.isfile(path):
            frames = render_video(classes[index % 8], np.random.default_rng(index), WIDTH, HEIGHT, FRAMES)
            write_video(path + ".tmp.mp4", frames, FPS, options={"crf": "23", "preset": "veryfast"}, gop_size=250)
            os.replace(path + ".tmp.mp4", path)
        paths.append(path)
    return paths


def plain_clip(job):
    """Decodes one training clip with PyAV only; returns uint8 (32, 160, 160, 3)."""
    from tsnet_keras.data.decode import output_size

    path, seed = job
    rng = np.random.default_rng(seed)
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate)
        start = int(rng.integers(0, stream.frames - WINDOW + 1))
        needed = set(range(start, start + WINDOW, DENSE_STRIDE))
        width, height = output_size(stream.codec_context.width, stream.codec_context.height,
                                    int(rng.integers(JITTER[0], JITTER[1] + 1)))
        if start > 0:
            container.seek(int((start - 1) / fps / stream.time_base), stream=stream, backward=True)
        frames = []
        for frame in container.decode(stream):
            index = int(round(frame.pts * stream.time_base * fps))
            if index in needed:
                frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
            if index >= start + WINDOW - DENSE_STRIDE:
                break
    clip = np.stack(frames)
    top = int(rng.integers(0, height - CROP + 1))
    left = int(rng.integers(0, width - CROP + 1))
    clip = clip[:, top : top + CROP, left : left + CROP]
    return clip[:, :, ::-1] if rng.random() < 0.5 else clip


def timed_clips(iterate, clips: int, repeats: int) -> float:
    """Median clips/s of `iterate(clips)` (which returns how many clips it produced)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        produced = iterate(clips)
        rates.append(produced / (time.perf_counter() - start))
    return statistics.median(rates)


def dataset_rate(paths, batch, clips, repeats, parallel, **kwargs):
    from tsnet_keras.data import video_dataset

    dataset = video_dataset([(path, 0) for path in paths], mode="train", batch_size=batch, seed=0, repeat=True,
                            num_parallel_calls=parallel, **kwargs)
    iterator = iter(dataset)
    next(iterator)  # warm-up: tracing, thread pools

    def run(count):
        produced = 0
        while produced < count:
            inputs, _ = next(iterator)
            produced += int(inputs["dense"].shape[0])
        return produced

    rate = timed_clips(run, clips, repeats)
    return rate, dataset.failures


def process_rate(paths, batch, clips, repeats, workers):
    """Process pool of plain PyAV loops feeding tf.data (normalise, gather, batch)."""
    import tensorflow as tf

    from tsnet_keras.data import augment

    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        next_job = iter(range(10**9))

        def submit():
            index = next(next_job)
            return pool.apply_async(plain_clip, ((paths[index % len(paths)], index),))

        stop = threading.Event()

        def generate():
            # At most 2 clips per worker in flight: an unbounded imap would queue every job.
            pending = collections.deque(submit() for _ in range(2 * workers))
            while not stop.is_set():
                pending.append(submit())
                yield pending.popleft().get()

        def finish(clip):
            frames = augment.normalize(clip)
            return {"sparse": tf.gather(frames, tf.range(0, DENSE, 8)), "dense": frames}, tf.constant(0, tf.int64)

        dataset = (
            tf.data.Dataset.from_generator(generate, output_signature=tf.TensorSpec([DENSE, CROP, CROP, 3], tf.uint8))
            .map(finish, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE)
        )
        iterator = iter(dataset)
        next(iterator)

        def run(count):
            produced = 0
            while produced < count:
                inputs, _ = next(iterator)
                produced += int(inputs["dense"].shape[0])
            return produced

        rate = timed_clips(run, clips, repeats)
        raw_rate = _pool_rate(pool, paths, clips, repeats)
        # Stop the generator and drop the iterator while the pool still answers,
        # or tf.data's generator thread waits forever on a terminated pool.
        stop.set()
        del iterator, dataset
    return rate, raw_rate


def _pool_rate(pool, paths, clips, repeats):
    """Decoding in the pool's processes, results pickled back, no tf.data."""

    def raw(count):
        jobs = [(paths[index % len(paths)], 10**6 + index) for index in range(count)]
        return len(pool.map(plain_clip, jobs, chunksize=1))

    return timed_clips(raw, clips, repeats)


def pool_only_rate(paths, clips, repeats, workers):
    """`_pool_rate` with a pool of its own: the process-pool row without TensorFlow."""
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        warm_up = [(paths[0], 2 * 10**6 + i) for i in range(workers)]
        pool.map(plain_clip, warm_up, chunksize=1)  # every worker started before timing
        return _pool_rate(pool, paths, clips, repeats)


def train_step_seconds(arch_name: str, batch: int, repeats: int):
    import keras
    import tensorflow as tf

    from tsnet_keras import build_model, presets

    if arch_name == "x3d_s":
        arch, shapes = presets.x3d("S"), {"sparse": (13, CROP)}
    else:
        arch, shapes = presets.manual_tsnet(0.70), {"sparse": (4, CROP), "dense": (32, CROP)}
    model = build_model(arch, num_classes=400, crop=CROP)
    rng = np.random.default_rng(0)
    inputs = {name: tf.constant(rng.normal(size=(batch, frames, crop, crop, 3)), tf.float32)
              for name, (frames, crop) in shapes.items()}
    if len(inputs) == 1:
        inputs = inputs["sparse"]
    labels = tf.constant(np.arange(batch) % 400)
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(inputs, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        float(step())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--video-dir", default=None)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--no-tf", action="store_true",
                        help="decoding rows only (plain loop, process pool): no TensorFlow needed")
    args = parser.parse_args()

    folder = args.video_dir or tempfile.mkdtemp(prefix="bench_data_")
    paths = make_videos(folder, args.videos)
    print(f"{len(paths)} videos {WIDTH}x{HEIGHT}, {FRAMES} frames at {FPS} fps (H.264, keyint 250); "
          f"clips: 4x16 sparse + 32x2 dense, jitter {JITTER}, crop {CROP}; batch {args.batch}; "
          f"{os.cpu_count()} CPU threads; PyAV {av.__version__}")

    print(f"\n{'pipeline':<58} {'clips/s':>8} {'ms/clip':>8}")
    rows = []

    def report(label, rate):
        rows.append((label, rate))
        print(f"{label:<58} {rate:>8.2f} {1000 / rate:>8.1f}", flush=True)

    jobs = iter(range(10**6))
    plain = timed_clips(lambda count: sum(1 for _ in (plain_clip((paths[i % len(paths)], i))
                                                       for i in (next(jobs) for _ in range(count)))),
                        args.clips, args.repeats)
    report("plain PyAV loop, 1 thread", plain)
    workers = os.cpu_count() or 2
    if args.no_tf:
        report(f"process pool ({workers}) of plain loops, pickled only",
               pool_only_rate(paths, args.clips, args.repeats, workers))
        return
    single, _ = dataset_rate(paths, args.batch, args.clips, args.repeats, 1)
    report("video_dataset, num_parallel_calls=1", single)
    for parallel, label in ((2, "2"), (4, "4"), (None, "AUTOTUNE")):
        rate, failures = dataset_rate(paths, args.batch, args.clips, args.repeats, parallel)
        report(f"video_dataset, threads, num_parallel_calls={label}", rate)
    process, raw = process_rate(paths, args.batch, args.clips, args.repeats, workers)
    report(f"process pool ({workers}) of plain loops, pickled only", raw)
    report(f"process pool ({workers}) -> tf.data.from_generator", process)
    print(f"\noverhead of video_dataset at equal parallelism (plain / num_parallel_calls=1 time per clip): "
          f"{plain / single:.2f}x")
    print(f"decode failures during the run: {failures.summary()}")

    if not args.skip_model:
        best = max(rate for label, rate in rows if label.startswith("video_dataset"))
        print(f"\n{'model (training step, batch ' + str(args.batch) + ')':<58} {'s/step':>8} {'clips/s':>8}"
              f" {'data s/batch':>13}")
        for name, label in (("x3d_s", "X3D-S 13x160^2"), ("manual_tsnet", "Manual-TSNet-70% 4+32x160^2")):
            try:
                seconds = train_step_seconds(name, args.batch, args.repeats)
            except Exception as error:  # noqa: BLE001 - report, keep the data figures
                print(f"{label:<58} failed: {type(error).__name__}: {error}")
                continue
            print(f"{label:<58} {seconds:>8.2f} {args.batch / seconds:>8.2f} {args.batch / best:>13.2f}")


if __name__ == "__main__":
    main()
