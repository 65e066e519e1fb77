"""`video_dataset`: the one entry point from annotation files to model-ready batches.

Data flow of one training element (one random draw per clip, shared by both
streams):

    (video index, clip seed)                            tf.data: shuffle, repeat
      -> short side s ~ U[jitter]                        graph, stateless
      -> read frames of one window at target fps,        PyAV in tf.numpy_function
         resized to short side s; unreadable ->          (threads: PyAV releases
         counted, replaced by another video                the GIL while decoding)
      -> one crop (+ flip) of every frame                graph
      -> gather: sparse = frames[sparse positions], dense = frames[dense positions]
      -> batch (uint8, a quarter of the bytes of float32 to copy)
      -> float32, Kinetics mean/std (one multiply-add)
      -> ({"sparse": (B, 4, 160, 160, 3), "dense": (B, 32, 160, 160, 3)}, label)

In test mode each video is decoded once for all its clips; each (clip, crop)
becomes one element with its `video_id` and `view_id`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tsnet_keras.checks import check_choice, check_int
from tsnet_keras.data import augment, tfrecord
from tsnet_keras.data.decode import read_frame_folder, read_video
from tsnet_keras.data.failures import DecodeFailures, TooManyFailuresError
from tsnet_keras.data.options import without_autotune
from tsnet_keras.data.pipeline_calls import pipeline_call
from tsnet_keras.data.lists import (
    VideoList,
    read_kinetics_csv,
    read_list_file,
    read_ssv2_json,
    records_from_pairs,
)
from tsnet_keras.data.sampling import ClipSampler

MODES = ("train", "val", "test")
FORMATS = ("auto", "list", "kinetics", "ssv2", "frames", "tfrecord")
SSV2_LABEL_FILES = ("labels.json", "something-something-v2-labels.json")


# --------------------------------------------------------------------------- sources


def detect_format(list_file) -> str:
    """Guesses the annotation format of `list_file` (see `video_dataset`)."""
    if isinstance(list_file, VideoList):
        return "list"
    if not isinstance(list_file, (str, os.PathLike)):
        items = list(list_file)
        if items and all(isinstance(item, (str, os.PathLike)) and os.fspath(item).endswith(".tfrecord") for item in items):
            return "tfrecord"
        return "list"
    path = os.fspath(list_file)
    if path.endswith(".tfrecord") or "*" in path or "?" in path:
        return "tfrecord"
    if os.path.isdir(path):
        return "tfrecord"
    if path.endswith(".json"):
        return "ssv2"
    if path.endswith(".csv") and os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            header = handle.readline()
        if "youtube_id" in header:
            return "kinetics"
    return "list"


def _find_ssv2_labels(split_file: str):
    folder = os.path.dirname(os.path.abspath(split_file))
    for name in SSV2_LABEL_FILES:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"video_dataset: Something-Something-V2 needs `labels_file`; none given and none of "
        f"{SSV2_LABEL_FILES} found next to {split_file!r}."
    )


def load_video_list(list_file, data_root=None, format: str = "auto", labels_file=None, classes=None) -> VideoList:
    """Reads any supported annotation format into a `VideoList` (not TFRecords)."""
    if format == "auto":
        format = detect_format(list_file)
    if format == "tfrecord":
        raise ValueError("load_video_list: TFRecord shards are read by video_dataset directly.")
    if isinstance(list_file, VideoList):
        return list_file if data_root is None else records_from_pairs(list_file.records, data_root)
    if format == "kinetics":
        return read_kinetics_csv(list_file, data_root, classes=classes)
    if format == "ssv2":
        return read_ssv2_json(list_file, labels_file or _find_ssv2_labels(os.fspath(list_file)), data_root)
    if isinstance(list_file, (str, os.PathLike)):
        return read_list_file(list_file, data_root)
    return records_from_pairs(list_file, data_root)


# --------------------------------------------------------------------------- decoding


class _ClipLoader:
    """The Python side of the pipeline: decodes clips for tf.numpy_function."""

    def __init__(self, videos: VideoList, sampler: ClipSampler, target_fps, source_fps, frames_format: bool,
                 failures: DecodeFailures, max_retries: int):
        self.records = videos.records
        self.sampler = sampler
        self.target_fps = target_fps
        self.source_fps = source_fps
        self.frames_format = frames_format
        self.failures = failures
        self.max_retries = max_retries

    def _read(self, path, select, short_side):
        if self.frames_format or os.path.isdir(path):
            return read_frame_folder(path, select, short_side, self.target_fps, self.source_fps)
        return read_video(path, select, short_side, self.target_fps)

    def _attempt(self, index, select, short_side):
        """Decoded frames, or None (failure recorded)."""
        path = self.records[index].path
        if self.failures.is_known_bad(path):
            return None
        try:
            decoded = self._read(path, select, short_side)
        except Exception as error:  # noqa: BLE001 - a broken file must never stop an epoch
            self.failures.record(path, f"{type(error).__name__}: {error}", len(self.records))
            return None
        self.failures.record(path, None, len(self.records))
        return decoded

    def _split(self, decoded, num_sparse):
        positions = decoded.positions
        sparse = positions[..., :num_sparse]
        dense = positions[..., num_sparse:]
        return decoded.frames, sparse.astype(np.int64), dense.astype(np.int64)

    def train(self, index, clip_seed, short_side):
        index, short_side = int(index), int(short_side)
        rng = np.random.default_rng([int(clip_seed) & 0xFFFFFFFFFFFFFFFF, index])

        def select(num_frames):
            sparse, dense = self.sampler.train_indices(num_frames, rng)
            return sparse if dense is None else np.concatenate([sparse, dense])

        for _ in range(self.max_retries + 1):
            decoded = self._attempt(index, select, short_side)
            if decoded is not None:
                frames, sparse, dense = self._split(decoded, self.sampler.sparse_frames)
                return frames, sparse, dense, np.int64(self.records[index].label)
            index = int(rng.integers(len(self.records)))  # replace the broken video by another one
        raise TooManyFailuresError(
            f"no readable video after {self.max_retries} replacements; {self.failures.summary()}"
        )

    def views(self, index, short_side, num_clips):
        index, short_side, num_clips = int(index), int(short_side), int(num_clips)

        def select(num_frames):
            sparse, dense = self.sampler.test_indices(num_frames, num_clips)
            return sparse if dense is None else np.concatenate([sparse, dense], axis=1)

        decoded = self._attempt(index, select, short_side)
        label = np.int64(self.records[index].label)
        if decoded is None:
            empty = np.zeros((0, 1, 1, 3), np.uint8)
            dense_frames = self.sampler.dense_frames or 0
            return (empty, np.zeros((num_clips, self.sampler.sparse_frames), np.int64),
                    np.zeros((num_clips, dense_frames), np.int64), label, False)
        frames, sparse, dense = self._split(decoded, self.sampler.sparse_frames)
        return frames, sparse, dense, label, True


def _tfrecord_sample(parsed, name, sampler: ClipSampler, target_fps, clip_seed, failures,
                     num_classes=None, num_clips=None):
    """Checks a parsed TFRecord example and samples its frames, decoding nothing.

    Returns `(encoded, positions, ok)`: the JPEG strings of the sampled frames
    (each once), the positions of every sampled frame in them, and whether the
    example is usable. A broken example (missing label, label out of range, bad
    `num_frames` or `fps`, a cut JPEG among the sampled frames) is recorded in
    `failures` under `shard#record` and gives ok = False (filter it out); a
    frame that fails to decode is caught by `tfrecord.decode_jpeg_checked`.
    """
    total = sampler.sparse_frames + (sampler.dense_frames or 0)
    shape = (total,) if num_clips is None else (num_clips, total)

    def select(num_stored, stored_fps, seed, label, stored, name):
        name = name.decode("utf-8", "replace")
        problem = tfrecord.record_problem(int(label), int(num_stored), float(stored_fps),
                                          int(stored), num_classes)
        if problem is not None:
            failures.record(name, f"broken TFRecord example: {problem}")
            return np.zeros(shape, np.int64), False
        return _stored_indices(sampler, num_stored, stored_fps, target_fps, seed, num_clips), True

    def check_jpegs(encoded, ok, name):
        if not ok:
            return False
        problem = tfrecord.jpeg_problem(encoded)
        if problem is not None:  # a success is recorded once the frames decode
            failures.record(name.decode("utf-8", "replace"), f"broken TFRecord example: {problem}")
        return problem is None

    inputs = [parsed["num_frames"], parsed["fps"], clip_seed, parsed["label"],
              tf.size(parsed["frames"], out_type=tf.int64), name]
    indices, ok = tf.numpy_function(pipeline_call(select), inputs, [tf.int64, tf.bool])
    indices.set_shape(shape)
    unique, positions = tf.unique(tf.reshape(indices, [-1]))
    stored = tf.shape(parsed["frames"], out_type=tf.int64)[0]
    encoded = tf.gather(parsed["frames"], tf.minimum(unique, tf.maximum(stored - 1, 0)))
    encoded = tf.cond(stored > 0, lambda: encoded, lambda: tf.fill(tf.shape(unique), b""))
    ok = tf.numpy_function(pipeline_call(check_jpegs), [encoded, ok, name], tf.bool)
    ok.set_shape([])
    positions = tf.reshape(tf.cast(positions, tf.int64), tf.shape(indices))
    return encoded, positions, ok


def _stored_indices(sampler: ClipSampler, num_stored, stored_fps, target_fps, seed, num_clips):
    """The stored frames (indices) of the frames `sampler` picks at `target_fps` (default:
    the stored rate): one clip drawn with `seed` (`num_clips` None), else `num_clips` test clips."""
    stored_fps = float(stored_fps)
    rate = float(target_fps or stored_fps)
    num_frames = max(1, int(np.floor(int(num_stored) * rate / stored_fps + 1e-6)))
    if num_clips is None:
        rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFFFFFF)
        sparse, dense = sampler.train_indices(num_frames, rng)
        indices = sparse if dense is None else np.concatenate([sparse, dense])
    else:
        sparse, dense = sampler.test_indices(num_frames, num_clips)
        indices = sparse if dense is None else np.concatenate([sparse, dense], axis=1)
    source = np.floor(indices * (stored_fps / rate) + 1e-6).astype(np.int64)
    return np.clip(source, 0, int(num_stored) - 1)


def check_shard(shard) -> tuple:
    """`(num_shards, index)` from None, a pair or a `tf.distribute.InputContext`."""
    if shard is None:
        return 1, 0
    if isinstance(shard, tf.distribute.InputContext):
        return shard.num_input_pipelines, shard.input_pipeline_id
    ok = (isinstance(shard, (tuple, list)) and len(shard) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shard))
    if not ok or not 0 <= shard[1] < shard[0]:
        raise ValueError(f"video_dataset: `shard` must be None, (num_shards, index) with "
                         f"0 <= index < num_shards, or a tf.distribute.InputContext; got {shard!r}.")
    return int(shard[0]), int(shard[1])


def worker_shard(strategy=None) -> tuple:
    """`(num_workers, worker_index)` of this process: `video_dataset(..., shard=worker_shard())`.

    `(1, 0)` on one machine; under `MultiWorkerMirroredStrategy`, one part per worker.
    """
    from tsnet_keras.engine import worker_info

    workers, index, _ = worker_info(strategy)
    return workers, index


def _split_positions(positions, sampler):
    return positions[..., : sampler.sparse_frames], positions[..., sampler.sparse_frames :]


def check_labels(videos: VideoList, num_classes: int, source="videos") -> None:
    """Refuses labels outside [0, num_classes) other than -1 (unlabelled), naming the video.

    A label beyond the classes would train as nothing (an all-zero one-hot target)
    or count as a new class; it is a typo in the list, not data.
    """
    _check_positive_int("num_classes", num_classes)
    labels = videos.labels
    bad = np.flatnonzero((labels >= num_classes) | (labels < -1))
    if bad.size:
        record = videos[int(bad[0])]
        raise ValueError(
            f"video_dataset: {source!r} has {bad.size} label(s) outside [0, {num_classes}) "
            f"(num_classes={num_classes}); the first: {record.path!r} with label {record.label}."
        )


# --------------------------------------------------------------------------- graph side


def _check_positive_int(name, value, allow_zero=False):
    check_int(name, value, 0 if allow_zero else 1, where="video_dataset")


def video_dataset(
    list_file,
    data_root=None,
    mode: str = "train",
    batch_size: int = 8,
    *,
    format: str = "auto",
    labels_file=None,
    classes: Sequence[str] | None = None,
    sparse_frames: int = 4,
    sparse_stride: int = 16,
    dense_frames: int | None = 32,
    dense_stride: int = 2,
    temporal_sampling: str | None = None,
    crop_size: int = 160,
    jitter: tuple[int, int] = (182, 228),
    test_short_side: int | None = None,
    flip: bool | None = None,
    target_fps: float | None = 30.0,
    source_fps: float | None = None,
    num_views: int = 10,
    num_crops: int = 1,
    num_parallel_calls: int | None = None,
    shuffle: bool | None = None,
    shuffle_buffer: int = 1024,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool | None = None,
    max_failure_fraction: float = 0.5,
    check_after: int = 20,
    max_retries: int = 10,
    failures: DecodeFailures | None = None,
    num_classes: int | None = None,
    mean: Sequence[float] = augment.KINETICS_MEAN,
    std: Sequence[float] = augment.KINETICS_STD,
    shard=None,
) -> tf.data.Dataset:
    """Two-stream (or single-stream) video clips as a `tf.data.Dataset`.

    Args:
        list_file: annotations: a PySlowFast list file (`path label` per line,
            space or comma separated), a Kinetics CSV, an SSv2 split JSON, TFRecord
            shards (a `.tfrecord` path, glob, folder or list of paths), a
            `VideoList`, or a Python list of `(path, label)` pairs. Paths in list
            files may be video files or folders of JPEG frames.
        data_root: folder that relative paths are joined to, or None.
        mode: `"train"` (random clip and augmentation), `"val"` (one centre clip,
            one centre crop) or `"test"` (`num_views` x `num_crops` views per video).
        batch_size: int.
        format: `"auto"` (detect from `list_file`), `"list"`, `"kinetics"`,
            `"ssv2"`, `"frames"` (every path is a JPEG frame folder) or `"tfrecord"`.
        labels_file: SSv2 labels JSON (default: `labels.json` or
            `something-something-v2-labels.json` next to the split file).
        classes: Kinetics class names in label order (default: sorted labels of
            the CSV; pass the training classes when reading validation files).
        sparse_frames, sparse_stride: frames and temporal stride of the sparse
            stream (default 4 x 16).
        dense_frames, dense_stride: the same for the dense stream (default
            32 x 2); `dense_frames=0` or None gives single-stream mode (e.g.
            X3D-S: `sparse_frames=13, sparse_stride=6, dense_frames=None`).
        temporal_sampling: `"window"` (one window per clip) or `"segment"`
            (default for SSv2); see `tsnet_keras.data.sampling`.
        crop_size: int. Training / single-crop test crop (default 160).
        jitter: `(min, max)` short-side range of training scale jitter
            (default (182, 228)); `min >= crop_size`.
        test_short_side: int. Short side in val/test mode (default `jitter[0]`).
            With `num_crops=3` the crops are `test_short_side` squares.
        flip: bool. Random horizontal flip in training (default True, False for
            SSv2 whose labels say left/right).
        target_fps: float or None. Frame rate clips are sampled at (default 30,
            as PySlowFast); None uses each video's own rate.
        source_fps: float or None. Rate of JPEG frame folders (default: the
            target rate).
        num_views: int. Temporal clips per video in test mode (default 10).
        num_crops: 1 (centre) or 3 (left/centre/right) spatial crops in test mode.
        num_parallel_calls: int or None. Videos decoded in parallel (threads);
            None lets tf.data tune it.
        shuffle: bool. Shuffle videos (default True in training only).
        shuffle_buffer: int. Buffer of the TFRecord example shuffle.
        seed: int or None. Seed of shuffling, clip positions and augmentation;
            every epoch draws new values, reproducibly.
        repeat: bool. Repeat forever (default False: one pass per epoch).
        drop_remainder: bool. Drop the last partial batch (default: True in
            training, so every batch has `batch_size` clips).
        max_failure_fraction: float. Stop with `TooManyFailuresError` when more
            than this fraction of the first `check_after` videos is unreadable.
        check_after: int. See `max_failure_fraction` (default 20).
        max_retries: int. Training replaces an unreadable video by a random other
            one, at most this many times in a row.
        failures: `DecodeFailures` to record into (default: a new one, also
            available as `dataset.failures`).
        num_classes: int or None. When given, every label must be in
            [0, num_classes) (or -1, unlabelled): a list with another label is
            refused before anything is decoded (the message names the video).
        mean, std: per-channel normalisation of [0, 1] pixels (Kinetics values
            of PySlowFast by default).
        shard: None, `(num_shards, index)` or a `tf.distribute.InputContext`:
            read only every `num_shards`-th video from `index` on (one worker's
            share under `MultiWorkerMirroredStrategy`, see `worker_shard`). The
            list is sharded before anything is decoded; TFRecords by shard file
            when there are at least `num_shards` files, else by record (each
            worker reads every record but decodes only its own). Test-mode
            `video_id`s stay positions in the whole list.

    Returns:
        `tf.data.Dataset`. Two-stream train/val elements:
        `({"sparse": (B, sparse_frames, C, C, 3), "dense": (B, dense_frames, C, C,
        3)}, label (B,))`, float32 inputs, int64 labels (-1 for unlabelled);
        single-stream: `(sparse, label)`. Test mode adds a third item
        `{"video_id": (B,) int64, "view_id": (B,) int32}` (video_id = position in
        the list; view_id = clip * num_crops + crop); use
        `tsnet_keras.data.evaluate_views` or `model.predict` on it, not
        `model.evaluate` (Keras would read the ids as sample weights).
        The dataset carries `failures` (`DecodeFailures`, queryable during and
        after iteration) and `videos` (the `VideoList`, None for TFRecords).

    Example:

    >>> train = video_dataset("train.csv", "videos", mode="train", batch_size=8, seed=0)  # doctest: +SKIP
    >>> model.fit(train, epochs=1)  # doctest: +SKIP
    >>> print(train.failures.summary())  # doctest: +SKIP
    """
    test_short_side = _check_dataset_arguments(
        mode, format, batch_size, crop_size, num_views, max_retries, num_crops, jitter,
        test_short_side, target_fps,
    )
    num_shards, shard_index = check_shard(shard)
    if format == "auto":
        format = detect_format(list_file)
    ssv2 = format == "ssv2"
    flip = (not ssv2) if flip is None else bool(flip)
    temporal_sampling = temporal_sampling or ("segment" if ssv2 else "window")
    sampler = ClipSampler(sparse_frames, sparse_stride, dense_frames or None, dense_stride, temporal_sampling)
    shuffle = (mode == "train") if shuffle is None else shuffle
    drop_remainder = (mode == "train") if drop_remainder is None else drop_remainder
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    failures = failures if failures is not None else DecodeFailures(max_failure_fraction, check_after)
    pipeline = _ClipPipeline(sampler, mode, crop_size, jitter, flip, test_short_side, num_views,
                             num_crops, mean, std)
    order = {"shuffle": shuffle, "seed": seed, "repeat": repeat, "parallel": parallel}
    if format == "tfrecord":
        videos = None
        dataset = _tfrecord_clips(list_file, data_root, pipeline, failures, (num_shards, shard_index),
                                  shuffle_buffer=shuffle_buffer, target_fps=target_fps,
                                  num_classes=num_classes, **order)
    else:
        videos = load_video_list(list_file, data_root, format, labels_file, classes)
        if len(videos) == 0:
            raise ValueError(f"video_dataset: {list_file!r} lists no videos.")
        if num_classes is not None:
            check_labels(videos, num_classes, list_file if isinstance(list_file, (str, os.PathLike)) else "the list")
        loader = _ClipLoader(videos, sampler, target_fps, source_fps, format == "frames", failures, max_retries)
        dataset = _list_clips(videos, loader, pipeline, (num_shards, shard_index), **order)
    dataset = without_autotune(
        dataset.batch(batch_size, drop_remainder=drop_remainder)
        .map(pipeline.normalize_batch, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    dataset.failures = failures
    dataset.videos = videos
    return dataset


def _check_dataset_arguments(mode, format, batch_size, crop_size, num_views, max_retries,
                             num_crops, jitter, test_short_side, target_fps) -> int:
    """Checks `video_dataset`'s arguments; the val/test short side (default `jitter[0]`)."""
    check_choice("mode", mode, MODES, where="video_dataset")
    check_choice("format", format, FORMATS, where="video_dataset")
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("crop_size", crop_size)
    _check_positive_int("num_views", num_views)
    _check_positive_int("max_retries", max_retries, allow_zero=True)
    check_choice("num_crops", num_crops, (1, 3), where="video_dataset")
    if len(jitter) != 2 or not crop_size <= jitter[0] <= jitter[1]:
        raise ValueError(
            f"video_dataset: `jitter` must be (min, max) with crop_size ({crop_size}) <= min <= max, got {jitter!r}."
        )
    test_short_side = int(jitter[0]) if test_short_side is None else test_short_side
    if test_short_side < crop_size:
        raise ValueError(
            f"video_dataset: `test_short_side` ({test_short_side}) must be >= crop_size ({crop_size})."
        )
    if target_fps is not None and not target_fps > 0:
        raise ValueError(f"video_dataset: `target_fps` must be > 0 or None, got {target_fps!r}.")
    return test_short_side


# --------------------------------------------------------------------------- pipeline
class _ClipPipeline:
    """The graph side after decoding: training augmentation or val/test views, normalisation.

    Train: scale jitter, random crop and flip, one clip per video. Val: one centre
    clip, one centre crop. Test: `num_views` clips x `num_crops` crops per video.
    """

    def __init__(self, sampler, mode, crop_size, jitter, flip, test_short_side, num_views,
                 num_crops, mean, std):
        self.sampler = sampler
        self.mode = mode
        self.crop_size = crop_size
        self.jitter = jitter
        self.flip = flip
        self.test_short_side = test_short_side
        self.clips = 1 if mode != "test" else num_views
        self.crops = 1 if mode != "test" else num_crops
        self.view_crop = crop_size if self.crops == 1 else test_short_side
        self.mean, self.std = tuple(float(x) for x in mean), tuple(float(x) for x in std)

    def finish(self, frames, sparse_positions, dense_positions, crop):
        """Picks each stream's uint8 frames from the cropped union of frames."""
        sparse = tf.gather(frames, sparse_positions)
        sparse.set_shape([self.sampler.sparse_frames, crop, crop, 3])
        if not self.sampler.two_stream:
            return sparse
        dense = tf.gather(frames, dense_positions)
        dense.set_shape([self.sampler.dense_frames, crop, crop, 3])
        return {"sparse": sparse, "dense": dense}

    def normalize_batch(self, inputs, *rest):
        # After batching: tf.data's batch copies uint8 clips, a quarter of the float bytes.
        return (tf.nest.map_structure(lambda frames: augment.normalize(frames, self.mean, self.std),
                                      inputs), *rest)

    def train_element(self, frames, sparse_positions, dense_positions, label, clip_seed, short_side):
        frames = augment.resize_short_side(frames, short_side)
        frames, _ = augment.random_crop_and_flip(frames, self.crop_size, clip_seed, self.flip)
        return self.finish(frames, sparse_positions, dense_positions, self.crop_size), label

    def view_elements(self, frames, sparse_positions, dense_positions, label, video_id):
        """One dataset element per (clip, crop) of a decoded video."""
        frames = augment.resize_short_side(frames, self.test_short_side)
        shape = tf.shape(frames)
        crops, view_crop = self.crops, self.view_crop

        def view(view_id):
            clip, crop = view_id // crops, view_id % crops
            top, left = augment.crop_offsets(shape[1], shape[2], view_crop, crop, crops)
            sparse_idx = tf.gather(sparse_positions, clip)
            dense_idx = tf.gather(dense_positions, clip)
            wanted = tf.concat([sparse_idx, dense_idx], axis=0)
            selected = tf.gather(frames, wanted)[:, top : top + view_crop, left : left + view_crop, :]
            count = self.sampler.sparse_frames
            positions = tf.range(tf.shape(wanted)[0], dtype=tf.int64)
            inputs = self.finish(selected, positions[:count], positions[count:], view_crop)
            if self.mode == "val":
                return inputs, label
            return inputs, label, {"video_id": video_id, "view_id": tf.cast(view_id, tf.int32)}

        return tf.data.Dataset.range(self.clips * crops).map(view)


def _ok_only(*element):
    return element[-1]


def _without_ok(*element):
    return element[:-1]


# --------------------------------------------------------------------------- sources
def _tfrecord_clips(list_file, data_root, pipeline: _ClipPipeline, failures, shard, *, shuffle,
                    seed, repeat, parallel, shuffle_buffer, target_fps, num_classes):
    """Clips from TFRecord shards: train elements or val/test views, unbatched."""
    examples = _tfrecord_examples(list_file, data_root, failures, shard, shuffle=shuffle, seed=seed,
                                  repeat=repeat, shuffle_buffer=shuffle_buffer)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    if pipeline.mode == "train":
        return _tfrecord_train_clips(examples, seeds, pipeline, failures, parallel=parallel,
                                     target_fps=target_fps, num_classes=num_classes)
    return _tfrecord_view_clips(examples, pipeline, failures, parallel=parallel,
                                target_fps=target_fps, num_classes=num_classes)


def _tfrecord_train_clips(examples, seeds, pipeline: _ClipPipeline, failures, *, parallel,
                          target_fps, num_classes):
    """Train elements of TFRecord examples: sample (one clip per `seeds` draw), decode, augment."""
    sampler = pipeline.sampler

    def sample_train(example, clip_seed):
        name, serialized = example
        parsed = tfrecord.parse_example(serialized)
        encoded, positions, ok = _tfrecord_sample(parsed, name, sampler, target_fps, clip_seed,
                                                  failures, num_classes)
        return encoded, positions, parsed["label"], clip_seed, name, ok

    def decode_train(encoded, positions, label, clip_seed, name, ok):
        frames, decoded = tfrecord.decode_jpeg_checked(encoded, name, failures)
        return frames, positions, label, clip_seed, decoded

    def augment_train(frames, positions, label, clip_seed, ok):
        sparse, dense = _split_positions(positions, sampler)
        short_side = augment.random_short_side(clip_seed, pipeline.jitter)
        return pipeline.train_element(frames, sparse, dense, label, clip_seed, short_side)

    return (tf.data.Dataset.zip((examples, seeds))
            .map(sample_train, num_parallel_calls=parallel).filter(_ok_only)
            .map(decode_train, num_parallel_calls=parallel).filter(_ok_only)
            .map(augment_train, num_parallel_calls=parallel))


def _tfrecord_view_clips(examples, pipeline: _ClipPipeline, failures, *, parallel, target_fps,
                         num_classes):
    """Val/test views of TFRecord examples: sample the test clips, decode, one element per view."""
    sampler = pipeline.sampler

    def sample_views(video_id, example):
        name, serialized = example
        parsed = tfrecord.parse_example(serialized)
        encoded, positions, ok = _tfrecord_sample(parsed, name, sampler, target_fps,
                                                  tf.constant(0, tf.int64), failures,
                                                  num_classes, pipeline.clips)
        return encoded, positions, parsed["label"], video_id, name, ok

    def decode_views(encoded, positions, label, video_id, name, ok):
        frames, decoded = tfrecord.decode_jpeg_checked(encoded, name, failures)
        sparse, dense = _split_positions(positions, sampler)
        return frames, sparse, dense, label, video_id, decoded

    return (examples.enumerate().map(sample_views, num_parallel_calls=parallel)
            .filter(_ok_only).map(decode_views, num_parallel_calls=parallel)
            .filter(_ok_only).map(_without_ok)
            .flat_map(pipeline.view_elements))


def _tfrecord_examples(list_file, data_root, failures, shard, *, shuffle, seed, repeat,
                       shuffle_buffer):
    """`(shard#record name, serialized example)` pairs of this worker's part, shuffled."""
    num_shards, shard_index = shard
    shards = tfrecord.find_shards(list_file, data_root)
    by_file = num_shards > 1 and len(shards) >= num_shards
    if by_file:
        shards = shards[shard_index::num_shards]
    files = tf.data.Dataset.from_tensor_slices(shards)
    if shuffle:
        files = files.shuffle(len(shards), seed=seed, reshuffle_each_iteration=True)
    for shard_file in shards:  # a shard cut short: counted, its complete records still read
        _, problem = tfrecord.check_shard(shard_file)
        if problem is not None:
            failures.record(shard_file, problem)

    def read_shard(path):
        records = tf.data.TFRecordDataset(path).ignore_errors()
        return records.enumerate().map(
            lambda index, record: (tf.strings.join([path, "#", tf.strings.as_string(index)]), record))

    examples = files.interleave(
        read_shard, cycle_length=min(4, len(shards)), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if num_shards > 1 and not by_file:  # before parsing: the others' JPEGs are never decoded
        examples = examples.shard(num_shards, shard_index)
    if shuffle:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        examples = examples.repeat()
    return examples


def _list_clips(videos, loader: _ClipLoader, pipeline: _ClipPipeline, shard, *, shuffle, seed,
                repeat, parallel):
    """Clips decoded from a video list: train elements or val/test views, unbatched."""
    indices = _list_indices(videos, shard, shuffle=shuffle, seed=seed, repeat=repeat)
    if pipeline.mode == "train":
        return _list_train_clips(indices, loader, pipeline, seed=seed, parallel=parallel)
    return _list_view_clips(indices, loader, pipeline, parallel=parallel)


def _list_indices(videos, shard, *, shuffle, seed, repeat):
    """This worker's positions in the video list (its part of `shard`), shuffled, repeated."""
    num_shards, shard_index = shard
    if len(videos) < num_shards:
        raise ValueError(f"video_dataset: {len(videos)} videos cannot fill the {num_shards} "
                         f"parts of `shard`: each worker needs at least one.")
    indices = tf.data.Dataset.range(len(videos)).shard(num_shards, shard_index)
    if shuffle:
        indices = indices.shuffle(len(videos), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    return indices


def _list_train_clips(indices, loader: _ClipLoader, pipeline: _ClipPipeline, *, seed, parallel):
    """Train elements of the listed videos: one clip per `seed`-stream draw, augmented."""
    sampler = pipeline.sampler
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def load_train(index, clip_seed):
        short_side = augment.random_short_side(clip_seed, pipeline.jitter)
        frames, sparse, dense, label = tf.numpy_function(
            pipeline_call(loader.train), [index, clip_seed, short_side],
            [tf.uint8, tf.int64, tf.int64, tf.int64]
        )
        frames.set_shape([None, None, None, 3])
        sparse.set_shape([sampler.sparse_frames])
        dense.set_shape([sampler.dense_frames or 0])
        label.set_shape([])
        return pipeline.train_element(frames, sparse, dense, label, clip_seed, short_side)

    return tf.data.Dataset.zip((indices, seeds)).map(load_train, num_parallel_calls=parallel)


def _list_view_clips(indices, loader: _ClipLoader, pipeline: _ClipPipeline, *, parallel):
    """Val/test views of the listed videos: the test clips of each, one element per view."""
    sampler = pipeline.sampler
    clips = pipeline.clips

    def load_views(index):
        frames, sparse, dense, label, ok = tf.numpy_function(
            pipeline_call(loader.views), [index, pipeline.test_short_side, clips],
            [tf.uint8, tf.int64, tf.int64, tf.int64, tf.bool]
        )
        frames.set_shape([None, None, None, 3])
        sparse.set_shape([clips, sampler.sparse_frames])
        dense.set_shape([clips, sampler.dense_frames or 0])
        label.set_shape([])
        ok.set_shape([])
        return frames, sparse, dense, label, index, ok

    return (
        indices.map(load_views, num_parallel_calls=parallel)
        .filter(_ok_only)
        .map(_without_ok)
        .flat_map(pipeline.view_elements)
    )
