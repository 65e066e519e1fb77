"""Decoding with PyAV: only the frames a clip needs, resized in the decoder.

`read_video` opens a file, works out how many frames it has at the target frame
rate, asks a `select(num_frames)` callable which of them it needs (see
`tsnet_keras.data.sampling`), seeks to the key frame before the first one and
decodes forward by pts until the last one; frames in between are decoded but
never converted. Each needed frame is converted to RGB and resized so that its
short side is `short_side` by FFmpeg's swscale in one step. The container is
always closed, also on errors (unclosed containers leak decoder memory).

Frames are resampled to `target_fps` (30 by default, as PySlowFast) by index:
target frame k shows the source frame at time k / target_fps. A video shorter
than the clip repeats its last frame (the sampler clamps indices); a file that
ends more than a second before the frame count in its header (truncated after
its index was written) raises `VideoDecodeError` when a needed frame is missing. A file that cannot be opened or decoded
raises `VideoDecodeError` (or `FileNotFoundError`); `tsnet_keras.data.dataset`
skips and counts those.

`read_frame_folder` does the same for a folder of extracted JPEG frames.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable

import av
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Needed frames further apart than this (source frames) are reached by a new seek.
SEEK_GAP = 300


class VideoDecodeError(RuntimeError):
    """A video (or frame folder) could not be opened or decoded."""


@dataclasses.dataclass(frozen=True)
class DecodedFrames:
    """Distinct frames of one or more clips and where each clip index points.

    Args:
        frames: uint8 array `(distinct_frames, height, width, 3)`.
        positions: int array shaped like the requested indices; entry i is the
            row of `frames` that shows requested frame i.
        num_frames: int. Frames of the video at the target frame rate.
    """

    frames: np.ndarray
    positions: np.ndarray
    num_frames: int


def output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """`(width, height)` after scaling the short side to `short_side` (aspect kept)."""
    if short_side is None:
        return int(width), int(height)
    if height <= width:
        return max(short_side, int(round(width * short_side / height))), int(short_side)
    return int(short_side), max(short_side, int(round(height * short_side / width)))


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"video {path!r} does not exist.")
    if not os.path.isfile(path):
        raise VideoDecodeError(f"video {path!r} is not a regular file.")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"video {path!r} is empty (0 bytes).")


def _local(path: str) -> str:
    """`path` for FFmpeg as a local file only (no URL, `pipe:` or `concat:` protocols)."""
    return "file:" + os.path.abspath(path)


def _frame_count(container, stream, fps: float) -> int:
    if stream.frames:
        return int(stream.frames)
    if stream.duration is not None and stream.time_base is not None:
        return int(round(float(stream.duration * stream.time_base) * fps))
    if container.duration:
        return int(round(container.duration / av.time_base * fps))
    # No duration in the header (rare): count packets, which needs no decoding.
    count = sum(1 for packet in container.demux(stream) if packet.pts is not None)
    container.seek(0)
    return count


def _source_indices(requested: np.ndarray, source_fps: float, target_fps: float, num_source: int):
    source = np.floor(requested * (source_fps / target_fps) + 1e-6).astype(np.int64)
    return np.clip(source, 0, num_source - 1)


def _select(select, num_frames: int) -> np.ndarray:
    requested = np.asarray(select(num_frames))
    if requested.size == 0 or not np.issubdtype(requested.dtype, np.integer):
        raise ValueError(f"select() must return a non-empty array of ints, got {requested!r}.")
    return requested


def read_video(
    path,
    select: Callable[[int], np.ndarray],
    short_side: int | None = None,
    target_fps: float | None = 30.0,
    seek_gap: int = SEEK_GAP,
) -> DecodedFrames:
    """Decodes the frames `select` asks for.

    Args:
        path: str or path-like. The video file.
        select: callable `num_frames -> int array` of frame indices at the
            target frame rate (any shape, values in `[0, num_frames)`).
        short_side: int or None. Resize so the short side has this length
            (aspect ratio kept); None keeps the decoded size.
        target_fps: float or None. Frame rate that indices count in; None uses
            the video's own rate.
        seek_gap: int. Needed frames more than this many source frames apart
            are reached by seeking instead of decoding the frames in between.

    Returns:
        `DecodedFrames`: `frames` `(distinct, height, width, 3)` uint8 and
        `positions` shaped like `select`'s result.

    Raises:
        FileNotFoundError: the file does not exist.
        VideoDecodeError: the file is empty, not a video, or decoding failed
            before the needed frames were reached.

    Example:

    >>> sampler = ClipSampler()  # doctest: +SKIP
    >>> clip = read_video("a.mp4", lambda n: np.stack(sampler.train_indices(n, rng)), 182)  # doctest: +SKIP
    >>> clip.frames[clip.positions].shape  # doctest: +SKIP
    (2, 32, 182, 242, 3)
    """
    path = os.fspath(path)
    _check_file(path)
    try:
        container = av.open(_local(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise VideoDecodeError(f"cannot open {path!r}: {error}") from error
    with container:
        stream, fps = _video_stream(container, path)
        num_source = _source_frame_count(container, stream, fps, path)
        target = float(target_fps) if target_fps else fps
        num_frames = max(1, int(math.floor(num_source * target / fps + 1e-6)))
        requested = _select(select, num_frames)
        source = _source_indices(requested, fps, target, num_source)
        needed = np.unique(source)
        size = output_size(stream.codec_context.width, stream.codec_context.height, short_side)
        reader = _FrameReader(container, stream, fps, size, path, num_source)
        try:
            rows = reader.read(needed, seek_gap)
        except (av.error.FFmpegError, ValueError) as error:
            raise VideoDecodeError(f"decoding {path!r} failed: {error}") from error
        if not rows:
            raise VideoDecodeError(f"{path!r}: no frame could be decoded.")
    return _pack(rows, needed, source, num_frames)


def _video_stream(container, path: str):
    """The first video stream of `container` (decoded with threads) and its frame rate."""
    if not container.streams.video:
        raise VideoDecodeError(f"{path!r} has no video stream.")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if not fps > 0 or not stream.time_base:
        raise VideoDecodeError(f"{path!r} has no frame rate.")
    return stream, fps


def _source_frame_count(container, stream, fps: float, path: str) -> int:
    """Frames of `stream` at its own rate; at least one."""
    try:
        num_source = _frame_count(container, stream, fps)
    except av.error.FFmpegError as error:
        raise VideoDecodeError(f"cannot read {path!r}: {error}") from error
    if num_source < 1:
        raise VideoDecodeError(f"{path!r} has no frames.")
    return num_source


class _FrameReader:
    """Decodes the needed source frames segment by segment, by pts.

    Remembers the last frame decoded (and its index) across segments, so a needed
    index the decoder has passed takes the frame shown at its time.
    """

    def __init__(self, container, stream, fps: float, size, path: str, num_source: int):
        self.container = container
        self.stream = stream
        self.fps = fps
        self.width, self.height = size
        self.path = path
        self.num_source = num_source
        self.start_pts = stream.start_time or 0
        self.seconds_per_pts = float(stream.time_base)
        self.rows = {}
        self.last_frame, self.last_array, self.last_index = None, None, None

    def convert(self, frame):
        return frame.to_ndarray(
            format="rgb24", width=self.width, height=self.height, interpolation="BILINEAR"
        )

    def read(self, needed: np.ndarray, seek_gap: int) -> dict:
        """`{source index: RGB array}` for every index in `needed` (sorted, distinct)."""
        segments = np.split(needed, np.flatnonzero(np.diff(needed) > seek_gap) + 1)
        for segment in segments:
            if segment[0] > 0 and (
                self.last_frame is None or segment[0] - self.last_index > seek_gap
            ):
                pts = self.start_pts + int((segment[0] - 1) / self.fps / self.seconds_per_pts)
                self.container.seek(
                    max(pts, self.start_pts), stream=self.stream, backward=True, any_frame=False
                )
            self._read_segment(segment.tolist())
        return self.rows

    def _read_segment(self, pending: list) -> None:
        position = 0
        for frame in self.container.decode(self.stream):
            if frame.pts is None:
                continue
            self.last_index = int(
                round((frame.pts - self.start_pts) * self.seconds_per_pts * self.fps)
            )
            # Needed indices this frame has passed take the frame shown at their time.
            while position < len(pending) and pending[position] < self.last_index:
                if self.last_frame is not None and self.last_array is None:
                    self.last_array = self.convert(self.last_frame)
                self.rows[pending[position]] = (
                    self.last_array if self.last_frame is not None else self.convert(frame)
                )
                position += 1
            if position < len(pending) and pending[position] == self.last_index:
                self.last_frame, self.last_array = frame, self.convert(frame)
                self.rows[pending[position]] = self.last_array
                position += 1
            else:
                self.last_frame, self.last_array = frame, None
            if position == len(pending):
                break
        if position < len(pending) and self.last_frame is not None:
            self._repeat_last(pending, position)

    def _repeat_last(self, pending: list, position: int) -> None:
        # End of stream before the last needed frame: the header overstates the
        # length. Within a second (rounding of durations) repeat the last frame;
        # further off the file is truncated.
        if pending[-1] - self.last_index > max(self.fps, 2):
            raise VideoDecodeError(
                f"{self.path!r} ends at frame {self.last_index} but its header says "
                f"{self.num_source} frames (truncated file?)."
            )
        if self.last_array is None:
            self.last_array = self.convert(self.last_frame)
        for index in pending[position:]:
            self.rows[index] = self.last_array


def _pack(rows: dict, needed: np.ndarray, source: np.ndarray, num_frames: int) -> DecodedFrames:
    frames = np.stack([rows[int(index)] for index in needed])
    positions = np.searchsorted(needed, source).astype(np.int64)
    return DecodedFrames(frames, positions, num_frames)


def frame_files(folder) -> list[str]:
    """Sorted image files (`.jpg`, `.jpeg`, `.png`) of a frame folder."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"frame folder {folder!r} does not exist.")
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(IMAGE_EXTENSIONS))
    return [os.path.join(folder, name) for name in names]


def read_frame_folder(
    folder,
    select: Callable[[int], np.ndarray],
    short_side: int | None = None,
    target_fps: float | None = 30.0,
    source_fps: float | None = None,
) -> DecodedFrames:
    """Reads the frames `select` asks for from a folder of JPEG/PNG frames.

    Frames are taken in file-name order (zero-padded names such as
    `img_00001.jpg` sort correctly).

    Args:
        folder: str or path-like. The frame folder.
        select: callable `num_frames -> int array`, as in `read_video`.
        short_side: int or None. Resize the short side to this length.
        target_fps: float or None. Frame rate that indices count in.
        source_fps: float or None. Rate the frames were extracted at; None
            means the target rate (no resampling).

    Returns:
        `DecodedFrames`.

    Raises:
        FileNotFoundError: the folder does not exist.
        VideoDecodeError: the folder has no images or one cannot be decoded.
    """
    files = frame_files(folder)
    if not files:
        raise VideoDecodeError(f"frame folder {os.fspath(folder)!r} has no image files.")
    source_rate = float(source_fps or target_fps or 30.0)
    target = float(target_fps or source_rate)
    num_frames = max(1, int(math.floor(len(files) * target / source_rate + 1e-6)))
    requested = _select(select, num_frames)
    source = _source_indices(requested, source_rate, target, len(files))
    needed = np.unique(source)
    rows = {}
    for index in needed.tolist():
        try:
            with av.open(_local(files[index])) as container:
                frame = next(container.decode(video=0))
                width, height = output_size(frame.width, frame.height, short_side)
                rows[index] = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
        except (av.error.FFmpegError, StopIteration, ValueError) as error:
            raise VideoDecodeError(f"cannot decode frame {files[index]!r}: {error}") from error
    shapes = {array.shape for array in rows.values()}
    if len(shapes) > 1:
        raise VideoDecodeError(f"frames of {os.fspath(folder)!r} differ in size: {sorted(shapes)}.")
    return _pack(rows, needed, source, num_frames)
