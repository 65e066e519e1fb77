"""TFRecord shards of JPEG-encoded frames, for datasets too large to decode on the fly.

One `tf.train.Example` per video:

| feature      | type          | meaning                                        |
|--------------|---------------|------------------------------------------------|
| `video_id`   | bytes         | name of the video (file name without extension) |
| `label`      | int64         | class index (-1: unlabelled)                   |
| `num_frames` | int64         | frames stored                                  |
| `fps`        | float         | rate the frames were resampled to              |
| `height`     | int64         | frame height                                   |
| `width`      | int64         | frame width                                    |
| `frames`     | bytes list    | the JPEG-encoded frames, in order              |

`write_tfrecords` decodes each video once (PyAV, resampled to `fps`, optionally
resized), skipping and counting unreadable files; `video_dataset` reads the
shards with `format="tfrecord"` (or a path ending in `.tfrecord`), decoding only
the JPEGs of the sampled frames inside the TensorFlow graph.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os

import numpy as np
import tensorflow as tf

from tsnet_keras.data.decode import read_video
from tsnet_keras.data.failures import DecodeFailures
from tsnet_keras.data.pipeline_calls import pipeline_call
from tsnet_keras.files import atomic_path

MISSING = -2  # parsed value of an absent int64 field (labels are >= -1)
FEATURES = {
    "video_id": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "label": tf.io.FixedLenFeature([], tf.int64, default_value=MISSING),
    "num_frames": tf.io.FixedLenFeature([], tf.int64, default_value=MISSING),
    "fps": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    "height": tf.io.FixedLenFeature([], tf.int64, default_value=MISSING),
    "width": tf.io.FixedLenFeature([], tf.int64, default_value=MISSING),
    "frames": tf.io.VarLenFeature(tf.string),
}


@dataclasses.dataclass(frozen=True)
class TFRecordShards:
    """What `write_tfrecords` wrote.

    Args:
        shards: tuple of str, the shard files.
        num_videos: int, videos written.
        failures: `DecodeFailures` of the videos that could not be read.
    """

    shards: tuple[str, ...]
    num_videos: int
    failures: DecodeFailures


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def video_example(video_id: str, label: int, frames: np.ndarray, fps: float, jpeg_quality: int = 90) -> bytes:
    """Serialises one video `(T, H, W, 3)` uint8 as a `tf.train.Example`."""
    encoded = [tf.io.encode_jpeg(frame, quality=jpeg_quality).numpy() for frame in frames]
    features = {
        "video_id": _bytes([video_id.encode("utf-8")]),
        "label": _int(label),
        "num_frames": _int(len(frames)),
        "fps": tf.train.Feature(float_list=tf.train.FloatList(value=[float(fps)])),
        "height": _int(frames.shape[1]),
        "width": _int(frames.shape[2]),
        "frames": _bytes(encoded),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _write_examples(videos, writers, failures, fps, short_side, jpeg_quality, verbose) -> int:
    """Decodes `videos` into `writers` round-robin; returns how many were written."""
    from tqdm.auto import tqdm

    written = 0
    for record in tqdm(videos, desc="writing TFRecords", disable=not verbose):
        try:
            decoded = read_video(record.path, np.arange, short_side=short_side, target_fps=fps)
        except Exception as error:  # noqa: BLE001 - any unreadable file is skipped and counted
            failures.record(record.path, f"{type(error).__name__}: {error}")
            continue
        failures.record(record.path, None)
        frames = decoded.frames[decoded.positions]
        writers[written % len(writers)].write(
            video_example(record.video_id, record.label, frames, fps, jpeg_quality))
        written += 1
    return written


def write_tfrecords(
    videos,
    output_dir,
    num_shards: int = 1,
    name: str = "videos",
    fps: float = 30.0,
    short_side: int | None = None,
    jpeg_quality: int = 90,
    verbose: bool = True,
) -> TFRecordShards:
    """Writes videos as TFRecord shards of JPEG frames.

    Videos go to shards round-robin; each shard is written to a temporary file
    and renamed when complete, so an interrupted run leaves no partial shard.

    Args:
        videos: `VideoList` or sequence of `(path, label)` pairs.
        output_dir: folder for the shards (created).
        num_shards: int. Number of shard files.
        name: str. Shard name prefix: `{name}-00000-of-00004.tfrecord`.
        fps: float. Frame rate the frames are resampled to.
        short_side: int or None. Resize the short side to this length (e.g. 256);
            None keeps the decoded size.
        jpeg_quality: int in [1, 100].
        verbose: bool. Show a progress bar.

    Returns:
        `TFRecordShards`.

    Example:

    >>> shards = write_tfrecords(read_list_file("train.csv", "videos"), "shards", 4)  # doctest: +SKIP
    >>> dataset = video_dataset(shards.shards, mode="train", batch_size=8)  # doctest: +SKIP
    """
    from tsnet_keras.data.lists import VideoList, records_from_pairs

    if num_shards < 1:
        raise ValueError(f"write_tfrecords: `num_shards` must be >= 1, got {num_shards}.")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"write_tfrecords: `jpeg_quality` must be in [1, 100], got {jpeg_quality}.")
    videos = videos if isinstance(videos, VideoList) else records_from_pairs(videos)
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    paths = [os.path.join(output_dir, f"{name}-{shard:05d}-of-{num_shards:05d}.tfrecord") for shard in range(num_shards)]
    failures = DecodeFailures(max_failure_fraction=1.0)
    with contextlib.ExitStack() as shards:  # each shard becomes its name when all are written
        writers = [tf.io.TFRecordWriter(shards.enter_context(atomic_path(path))) for path in paths]
        try:
            written = _write_examples(videos, writers, failures, fps, short_side, jpeg_quality, verbose)
        finally:
            for writer in writers:
                writer.close()
    return TFRecordShards(tuple(paths), written, failures)


def find_shards(source, data_root=None) -> list[str]:
    """Shard files from a path, a glob pattern, a folder of `*.tfrecord` or a list of paths."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    shards = []
    for item in items:
        item = os.fspath(item)
        if data_root is not None and not os.path.isabs(item):
            item = os.path.join(os.fspath(data_root), item)
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "*.tfrecord")))
        elif glob.has_magic(item):
            found = sorted(glob.glob(item))
        else:
            if not os.path.isfile(item):
                raise FileNotFoundError(f"TFRecord shard {item!r} does not exist.")
            found = [item]
        shards.extend(found)
    if not shards:
        raise FileNotFoundError(f"no TFRecord shards found in {source!r}.")
    return shards


def check_shard(path) -> tuple:
    """(records, error or None) of a shard, from its record framing alone (seeks, no reads).

    A shard cut short (a copy or a write that did not finish) ends inside a record;
    the records before the cut are still readable.
    """
    size = os.path.getsize(path)
    records, offset = 0, 0
    with open(path, "rb") as handle:
        while offset < size:
            header = handle.read(12)  # uint64 length + uint32 CRC of the length
            if len(header) < 12:
                return records, f"{path}: truncated inside the header of record {records}"
            length = int.from_bytes(header[:8], "little")
            offset += 12 + length + 4
            if offset > size:
                return records, (f"{path}: truncated inside record {records} (the file ends "
                                 f"at byte {size}, the record at {offset})")
            handle.seek(offset)
            records += 1
    return records, None


def record_problem(label, num_frames, fps, stored_frames, num_classes=None):
    """Why a parsed example cannot be used (a sentence), or None."""
    if label == MISSING:
        return "no `label`"
    if label < -1 or (num_classes is not None and label >= num_classes):
        return f"label {label} outside [0, {num_classes})" if num_classes else f"label {label}"
    if num_frames < 1:
        return f"num_frames {num_frames}" if num_frames != MISSING else "no `num_frames`"
    if num_frames != stored_frames:
        return f"num_frames {num_frames} but {stored_frames} frames stored"
    if not np.isfinite(fps) or fps <= 0:
        return f"fps {fps}"
    return None


def jpeg_problem(encoded) -> str | None:
    """Whether JPEG strings lack the start / end markers (a cut or overwritten frame)."""
    for index, data in enumerate(encoded):
        data = bytes(data)
        if not data.startswith(b"\xff\xd8") or not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            return f"frame {index} is not a complete JPEG"
    return None


def parse_example(serialized):
    """Parses one serialised example into a dict of tensors (`frames`: 1-D string tensor)."""
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    parsed["frames"] = tf.sparse.to_dense(parsed["frames"], default_value=b"")
    return parsed


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def _decode_all(encoded):
    return decode_jpeg_frames(encoded)


def decode_jpeg_checked(encoded: tf.Tensor, name: tf.Tensor, failures: DecodeFailures) -> tuple:
    """`(frames (T, H, W, 3) uint8, ok)` of `(T,)` JPEG strings, never an error.

    TensorFlow's own JPEG decoder (the pixels of `decode_jpeg_frames`), called
    from Python so that a frame that does not decode, or frames of different
    sizes, skip the example: recorded in `failures` under `name`
    (`shard#record`) with ok = False. A usable example is recorded as a success.
    """
    def decode(values, label):
        label = label.decode("utf-8", "replace")
        try:
            frames = _decode_all(tf.constant(values)).numpy()
        except (tf.errors.OpError, ValueError) as error:
            reason = str(getattr(error, "message", error)).strip().splitlines()[0][:200]
            failures.record(label, f"broken TFRecord example: a frame does not decode ({reason})")
            return np.zeros((0, 1, 1, 3), np.uint8), False
        failures.record(label, None)
        return frames, True

    frames, ok = tf.numpy_function(pipeline_call(decode), [encoded, name], [tf.uint8, tf.bool])
    frames.set_shape([None, None, None, 3])
    ok.set_shape([])
    return frames, ok


def decode_jpeg_frames(encoded: tf.Tensor) -> tf.Tensor:
    """`(T,)` JPEG strings -> `(T, H, W, 3)` uint8."""
    return tf.map_fn(
        lambda data: tf.io.decode_jpeg(data, channels=3),
        encoded,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )
