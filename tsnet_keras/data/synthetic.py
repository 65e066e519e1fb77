"""A built-in synthetic video dataset whose classes need motion, and fine motion.

Every video shows one coloured shape crossing a textured background, a grey
distractor shape moving in a random direction, and brightness flicker. The class
is the product of three factors:

- appearance: one (shape, colour) pair, e.g. a red disc (one frame shows it);
- direction: the shape moves right / left (/ down / up with 16+ classes); one
  frame cannot show it, since start positions are drawn so that every position
  is equally likely for every direction;
- wobble: the shape oscillates across its path with a period of exactly 16
  frames, or moves straight. Frames 16 apart see the same phase of the
  oscillation, so the default sparse stream (4 frames at stride 16) cannot tell
  wobbling from straight motion, and the dense stream (32 frames at stride 2)
  can.

So a single frame reaches at most 1 / (directions x 2) of the classes by
appearance (chance x appearances), the sparse stream at most 1/2 accuracy on the
wobble factor, and only a model that sees fine temporal detail solves the task.
The distractor wobbles half of the time too, so "something wobbles" is not
enough: the model has to follow the coloured shape.

Default: 8 classes (2 appearances x 2 directions x 2 wobbles), 80 training and
20 validation videos per class, 96 x 80 pixels, 72 frames at 30 fps, H.264
(libx264, yuv420p) .mp4 files, about 45 s to write on 2 cores. Use crop 64 with
scale jitter (64, 80) (the `recommended` arguments of the returned object): the
frames are made at the size the CPU recipes train at, so nothing is lost to
downscaling.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading

import av
import numpy as np

from tsnet_keras.checks import check_choice, check_int

GENERATOR_VERSION = 2
APPEARANCES = (
    ("disc", "red", (230, 40, 40)),
    ("square", "blue", (40, 80, 240)),
    ("triangle", "green", (40, 200, 60)),
    ("ring", "yellow", (240, 220, 40)),
    ("cross", "magenta", (220, 50, 220)),
    ("diamond", "cyan", (40, 220, 230)),
)
DIRECTIONS = (("right", (1.0, 0.0)), ("left", (-1.0, 0.0)), ("down", (0.0, 1.0)), ("up", (0.0, -1.0)))
WOBBLES = ("steady", "wobble")


def default_cache_dir() -> str:
    """`$TSNET_KERAS_CACHE`, or `~/.cache/tsnet_keras`."""
    return os.environ.get("TSNET_KERAS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tsnet_keras")


def write_video(path, frames, fps: float = 30.0, codec: str = "libx264", pix_fmt: str = "yuv420p",
                options: dict | None = None, gop_size: int | None = None,
                container_options: dict | None = None) -> None:
    """Writes uint8 RGB frames `(T, H, W, 3)` as a video file with PyAV.

    Args:
        path: output file; the container follows the extension (.mp4, .webm, ...).
        frames: uint8 array or sequence of `(H, W, 3)` arrays (H, W even for yuv420p).
        fps: float. Frame rate.
        codec: str. Encoder (`"libx264"`, `"libvpx-vp9"`, ...).
        pix_fmt: str. Pixel format of the stream.
        options: dict of encoder options, e.g. `{"crf": "23", "preset": "veryfast"}`.
        gop_size: int or None. Key-frame interval.
        container_options: dict of muxer options, e.g. `{"movflags": "faststart"}`.
    """
    from fractions import Fraction

    frames = list(frames)
    if not frames:
        raise ValueError(f"write_video: no frames to write to {os.fspath(path)!r}.")
    height, width = frames[0].shape[:2]
    with av.open(os.fspath(path), "w", options=dict(container_options or {})) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if options:
            stream.options = dict(options)
        if gop_size:
            stream.codec_context.gop_size = gop_size
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# --------------------------------------------------------------------------- classes


def class_grid(num_classes: int) -> tuple[int, int]:
    """`(appearances, directions)` for `num_classes = appearances x directions x 2`."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 4 or num_classes % 4:
        raise ValueError(f"make_synthetic_dataset: `num_classes` must be a multiple of 4 >= 4, got {num_classes!r}.")
    directions = 4 if num_classes % 8 == 0 and num_classes >= 16 else 2
    appearances = num_classes // (2 * directions)
    if appearances > len(APPEARANCES):
        raise ValueError(
            f"make_synthetic_dataset: `num_classes` must be at most {len(APPEARANCES) * 8}, got {num_classes}."
        )
    return appearances, directions


def class_factors(num_classes: int) -> list[dict]:
    """One dict per class: name, description, shape, colour, direction, wobble."""
    appearances, directions = class_grid(num_classes)
    classes = []
    for shape, colour, _ in APPEARANCES[:appearances]:
        for direction, _ in DIRECTIONS[:directions]:
            for wobble in WOBBLES:
                motion = "wobbling across its path every 16 frames" if wobble == "wobble" else "in a straight line"
                classes.append({
                    "name": f"{colour}-{shape}_{direction}_{wobble}",
                    "description": f"{colour} {shape} moving {direction}, {motion}",
                    "shape": shape,
                    "colour": colour,
                    "direction": direction,
                    "wobble": wobble == "wobble",
                })
    return classes


# --------------------------------------------------------------------------- rendering


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    distance = np.hypot(dx, dy)
    if shape == "disc":
        return distance <= radius
    if shape == "square":
        return (np.abs(dx) <= 0.8 * radius) & (np.abs(dy) <= 0.8 * radius)
    if shape == "triangle":
        return (dy <= 0.8 * radius) & (np.abs(dx) <= 0.6 * (dy + radius))
    if shape == "ring":
        return (distance <= radius) & (distance >= 0.55 * radius)
    if shape == "cross":
        thin = 0.32 * radius
        return ((np.abs(dx) <= thin) & (np.abs(dy) <= radius)) | ((np.abs(dy) <= thin) & (np.abs(dx) <= radius))
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    if shape == "ellipse":
        return (dx / radius) ** 2 + (dy / (0.6 * radius)) ** 2 <= 1.0
    raise ValueError(f"unknown shape {shape!r}")


def _draw(image: np.ndarray, shape: str, centre, radius: float, colour) -> None:
    height, width = image.shape[:2]
    x, y = centre
    reach = int(np.ceil(radius)) + 1
    top, bottom = max(int(y) - reach, 0), min(int(y) + reach + 1, height)
    left, right = max(int(x) - reach, 0), min(int(x) + reach + 1, width)
    if top >= bottom or left >= right:
        return
    rows, cols = np.mgrid[top:bottom, left:right]
    mask = _shape_mask(shape, cols + 0.5 - x, rows + 0.5 - y, radius)
    image[top:bottom, left:right][mask] = colour


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth, low-contrast random colour field plus a faint static texture."""
    grid = rng.uniform(70, 170, size=(4, 5, 3))
    rows = np.linspace(0, grid.shape[0] - 1, height)
    cols = np.linspace(0, grid.shape[1] - 1, width)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, grid.shape[0] - 1), np.minimum(c0 + 1, grid.shape[1] - 1)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    field = (
        grid[r0][:, c0] * (1 - fr) * (1 - fc) + grid[r1][:, c0] * fr * (1 - fc)
        + grid[r0][:, c1] * (1 - fr) * fc + grid[r1][:, c1] * fr * fc
    )
    texture = rng.normal(0, 5, size=(height // 4, width // 4, 1)).repeat(4, 0).repeat(4, 1)
    return np.clip(field + texture, 0, 255)


def _trajectory(rng, num_frames, width, height, direction, speed, wobble_amplitude, period):
    """Centre positions `(T, 2)`: straight path (centred on a random midpoint) plus wobble."""
    direction = np.asarray(direction, dtype=np.float64)
    across = np.array([-direction[1], direction[0]])
    midpoint = np.array([rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height])
    time = np.arange(num_frames) - (num_frames - 1) / 2
    phase = rng.uniform(0, 2 * np.pi)
    wobble = wobble_amplitude * np.sin(2 * np.pi * np.arange(num_frames) / period + phase)
    return midpoint + time[:, None] * speed * direction + wobble[:, None] * across


def video_parameters(factors: dict, rng: np.random.Generator, width: int = 96, height: int = 80,
                     num_frames: int = 72, wobble_period: int = 16) -> dict:
    """Random content of one video of a class: paths, sizes, colours, background.

    Returns:
        dict with `path` `(num_frames, 2)` (x, y centre of the class shape),
        `radius`, `colour` (uint8 RGB), `distractor_path`, `distractor_radius`,
        `grey`, `background` `(height, width, 3)` float and `flicker` `(num_frames,)`.
    """
    rgb = next(rgb for shape, _, rgb in APPEARANCES if shape == factors["shape"])
    direction = dict(DIRECTIONS)[factors["direction"]]
    # Sizes in pixels of an 80-pixel short side: the shape covers about a quarter
    # of the frame height and moves about its radius every 16 frames, so each
    # pair of sparse frames (stride 16) shows a clear displacement.
    scale = min(width, height) / 80
    radius = rng.uniform(10, 13) * scale
    speed = rng.uniform(0.55, 0.7) * scale
    amplitude = rng.uniform(4, 5.5) * scale * bool(factors["wobble"])
    path = _trajectory(rng, num_frames, width, height, direction, speed, amplitude, wobble_period)
    colour = np.clip(np.asarray(rgb) * rng.uniform(0.85, 1.1), 0, 255).astype(np.uint8)
    # Distractor: grey ellipse, random direction and speed, wobbling half of the time.
    angle = rng.uniform(0, 2 * np.pi)
    distractor_path = _trajectory(
        rng, num_frames, width, height, (np.cos(angle), np.sin(angle)), rng.uniform(0.2, 0.7) * scale,
        rng.uniform(3, 5) * scale * (rng.random() < 0.5), wobble_period,
    )
    return {
        "path": path,
        "radius": radius,
        "colour": colour,
        "distractor_path": distractor_path,
        "distractor_radius": rng.uniform(6, 9) * scale,
        "grey": np.full(3, rng.uniform(60, 200)),
        "background": _background(rng, height, width),
        "flicker": rng.normal(0, 4, size=num_frames),
    }


def render_video(factors: dict, rng: np.random.Generator, width: int = 96, height: int = 80,
                 num_frames: int = 72, wobble_period: int = 16) -> np.ndarray:
    """Frames `(num_frames, height, width, 3)` uint8 of one video of a class."""
    content = video_parameters(factors, rng, width, height, num_frames, wobble_period)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for index in range(num_frames):
        image = content["background"] + content["flicker"][index]
        _draw(image, "ellipse", content["distractor_path"][index], content["distractor_radius"], content["grey"])
        _draw(image, factors["shape"], content["path"][index], content["radius"], content["colour"])
        np.clip(image, 0, 255, out=image)
        frames[index] = image
    return frames


def _write_one(job) -> None:
    path, factors, seed, width, height, num_frames, fps, wobble_period = job
    rng = np.random.default_rng(seed)
    frames = render_video(factors, rng, width, height, num_frames, wobble_period)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_video(path, frames, fps, options={"crf": "23", "preset": "veryfast"}, gop_size=60)


# --------------------------------------------------------------------------- dataset


@dataclasses.dataclass(frozen=True)
class SyntheticDataset:
    """Where a synthetic dataset lives and what its classes mean.

    Args:
        root: str. Dataset folder.
        train_list, val_list: str. PySlowFast list files (`path label`, paths
            relative to `root`).
        classes: tuple of class names, `classes[label]`.
        descriptions: tuple of str, what each class shows.
        factors: tuple of dicts (shape, colour, direction, wobble) per class.
        recommended: dict of `video_dataset` arguments suited to the frame size.
    """

    root: str
    train_list: str
    val_list: str
    classes: tuple[str, ...]
    descriptions: tuple[str, ...]
    factors: tuple[dict, ...]
    recommended: dict

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def dataset(self, split: str = "train", mode: str | None = None, **kwargs):
        """`video_dataset` of a split with the recommended crop and jitter.

        Args:
            split: `"train"` or `"val"`.
            mode: `video_dataset` mode (default: "train" for the train split,
                "val" otherwise).
            **kwargs: override any `video_dataset` argument.
        """
        from tsnet_keras.data.dataset import video_dataset

        check_choice("split", split, ("train", "val"), where="SyntheticDataset.dataset")
        arguments = dict(self.recommended)
        arguments.update(kwargs)
        list_file = self.train_list if split == "train" else self.val_list
        return video_dataset(list_file, self.root, mode or ("train" if split == "train" else "val"), **arguments)


def _load(root: str) -> SyntheticDataset:
    with open(os.path.join(root, "dataset.json"), encoding="utf-8") as handle:
        meta = json.load(handle)
    return SyntheticDataset(
        root=root,
        train_list=os.path.join(root, "train.csv"),
        val_list=os.path.join(root, "val.csv"),
        classes=tuple(item["name"] for item in meta["classes"]),
        descriptions=tuple(item["description"] for item in meta["classes"]),
        factors=tuple(meta["classes"]),
        recommended=dict(meta["recommended"]),
    )


def make_synthetic_dataset(
    root=None,
    num_classes: int = 8,
    videos_per_class: int = 80,
    val_videos_per_class: int = 20,
    width: int = 96,
    height: int = 80,
    num_frames: int = 72,
    fps: float = 30.0,
    wobble_period: int = 16,
    seed: int = 0,
    workers: int | None = None,
    verbose: bool = True,
) -> SyntheticDataset:
    """Writes (once) and returns the built-in synthetic video dataset.

    Generation is idempotent and atomic: videos are written into a temporary
    folder next to `root`, which is renamed to `root` when complete, so a killed
    run never leaves a half dataset; an existing complete dataset is reused.

    Args:
        root: folder of the dataset, or None for
            `$TSNET_KERAS_CACHE/synthetic-<hash of the arguments>` (default cache
            `~/.cache/tsnet_keras`).
        num_classes: int. A multiple of 4 (appearances x directions x 2 wobbles);
            default 8.
        videos_per_class: int. Training videos per class (default 80).
        val_videos_per_class: int. Validation videos per class (default 20).
        width, height: int. Frame size, even (default 96 x 80).
        num_frames: int. Frames per video (default 72: 2.4 s at 30 fps; the
            default dense window is 63 frames).
        fps: float. Frame rate (default 30).
        wobble_period: int. Oscillation period in frames (default 16, the
            default sparse stride, so the sparse stream cannot see it).
        seed: int. Seed of all random content.
        workers: int or None. Encoding processes (default: CPU count).
        verbose: bool. Show a progress bar.

    Returns:
        `SyntheticDataset` with the list files, class names and their meaning.

    Example:

    >>> data = make_synthetic_dataset()  # doctest: +SKIP
    >>> data.classes[:2]  # doctest: +SKIP
    ('red-disc_right_steady', 'red-disc_right_wobble')
    >>> train = data.dataset("train", batch_size=8)  # doctest: +SKIP
    """
    classes = class_factors(num_classes)
    _check_sizes(videos_per_class, val_videos_per_class, width, height, num_frames, wobble_period)
    params = {
        "version": GENERATOR_VERSION, "num_classes": num_classes, "videos_per_class": videos_per_class,
        "val_videos_per_class": val_videos_per_class, "width": width, "height": height,
        "num_frames": num_frames, "fps": fps, "wobble_period": wobble_period, "seed": seed,
    }
    root = _dataset_root(root, params)
    if os.path.isfile(os.path.join(root, "dataset.json")):
        return _load(root)
    if os.path.exists(root) and os.listdir(root):
        raise FileExistsError(f"make_synthetic_dataset: {root!r} exists but holds no complete dataset; remove it.")

    _write_dataset(root, classes, params, workers, verbose)
    return _load(root)


def _write_dataset(root: str, classes, params: dict, workers, verbose) -> None:
    """Writes the dataset into a staging folder next to `root`, then renames it to `root`."""
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=parent)
    try:
        _write_videos(staging, classes, params, workers, verbose)
        _write_meta(staging, classes, params)
        _publish(staging, root)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)


def _check_sizes(videos_per_class, val_videos_per_class, width, height, num_frames, wobble_period) -> None:
    where = "make_synthetic_dataset"
    for name, value in (("videos_per_class", videos_per_class), ("num_frames", num_frames), ("wobble_period", wobble_period)):
        check_int(name, value, 1, where=where)
    check_int("val_videos_per_class", val_videos_per_class, 0, where=where)
    if width % 2 or height % 2 or min(width, height) < 32:
        raise ValueError(f"make_synthetic_dataset: `width` and `height` must be even and >= 32, got {width} x {height}.")


def _dataset_root(root, params: dict) -> str:
    """`root` as an absolute path; None names a cache folder after a hash of `params`."""
    if root is None:
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        root = os.path.join(default_cache_dir(), f"synthetic-{digest}")
    return os.path.abspath(os.fspath(root))


def _write_videos(staging: str, classes, params: dict, workers, verbose) -> None:
    """Encodes every video into `staging` and writes the train and val list files."""
    jobs, lines = [], {"train": [], "val": []}
    counts = (("train", params["videos_per_class"], 0), ("val", params["val_videos_per_class"], 1))
    for split, count, split_id in counts:
        for label, factors in enumerate(classes):
            for index in range(count):
                relative = f"videos/{split}/{factors['name']}/{index:04d}.mp4"
                lines[split].append(f"{relative} {label}")
                jobs.append((os.path.join(staging, relative), factors, [params["seed"], split_id, label, index],
                             params["width"], params["height"], params["num_frames"], params["fps"],
                             params["wobble_period"]))
    _run_jobs(jobs, workers, verbose)
    for split in ("train", "val"):
        with open(os.path.join(staging, f"{split}.csv"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines[split]) + ("\n" if lines[split] else ""))


def _write_meta(staging: str, classes, params: dict) -> None:
    """`dataset.json`: the arguments, the class factors and the recommended pipeline settings."""
    short_side = min(params["width"], params["height"])
    crop = max(16, (short_side * 7 // 8) // 8 * 8)
    # No horizontal flip: it would turn "moving right" into "moving left" (as in SSv2).
    recommended = {"crop_size": crop, "jitter": [crop, short_side], "test_short_side": crop, "flip": False}
    meta = {"params": params, "classes": classes, "recommended": recommended,
            "note": "class = appearance x direction x wobble; see tsnet_keras.data.synthetic"}
    with open(os.path.join(staging, "dataset.json"), "w", encoding="utf-8") as handle:
        json.dump(meta, handle, indent=1)


def _publish(staging: str, root: str) -> None:
    """Renames the complete `staging` folder to `root` (another process may have won)."""
    try:
        os.rename(staging, root)
    except OSError:
        if not os.path.isfile(os.path.join(root, "dataset.json")):
            if os.path.isdir(root) and not os.listdir(root):
                os.rmdir(root)
                os.rename(staging, root)
            else:
                raise


def _run_jobs(jobs, workers, verbose) -> None:
    from tqdm.auto import tqdm

    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    progress = tqdm(total=len(jobs), desc="synthetic videos", disable=not verbose, unit="video")
    try:
        if workers == 1:
            for job in jobs:
                _write_one(job)
                progress.update()
        else:
            _run_in_subprocesses(jobs, workers, progress)
    finally:
        progress.close()


_WORKER_COMMAND = "from tsnet_keras.data.synthetic import _worker; _worker()"


def _worker() -> None:
    """A generation subprocess: reads its jobs (JSON) from stdin, prints a line per video written."""
    for job in json.load(sys.stdin):
        _write_one(tuple(job))
        print(job[0], flush=True)


def _forward_lines(stream, lines: queue.Queue) -> None:
    for _ in stream:
        lines.put(1)
    lines.put(None)


def _run_in_subprocesses(jobs, workers: int, progress) -> None:
    """Renders and encodes `jobs` in `workers` fresh Python processes.

    Plain subprocesses, not multiprocessing: a spawn pool re-imports the caller's
    script, which fails in scripts without an `if __name__ == "__main__"` guard,
    and fork is unsafe once TensorFlow threads run. The workers import only
    NumPy and PyAV.
    """
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    lines = queue.Queue()
    processes, logs = [], []
    try:
        for worker in range(workers):
            log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
            logs.append(log)
            process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_COMMAND], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, text=True, env=env,
            )
            processes.append(process)
            threading.Thread(target=_forward_lines, args=(process.stdout, lines), daemon=True).start()
            try:
                process.stdin.write(json.dumps(jobs[worker::workers]))
                process.stdin.close()
            except BrokenPipeError:
                pass  # the worker died at start; its exit code and log say why
        finished = 0
        while finished < workers:
            if lines.get() is None:
                finished += 1
            else:
                progress.update()
        for process, log in zip(processes, logs):
            if process.wait() != 0:
                log.seek(0)
                raise RuntimeError(
                    f"make_synthetic_dataset: a generation worker failed (exit code {process.returncode}):\n"
                    + log.read()[-3000:]
                )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
