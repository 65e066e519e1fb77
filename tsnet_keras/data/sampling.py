"""Which frames of a video each stream sees: two-stream clip sampling.

All indices here count frames at the target frame rate (30 fps by default, see
`tsnet_keras.data.decode`). A clip is one temporal window of
`window = max(sparse_frames * sparse_stride, dense_frames * dense_stride)`
frames; both streams sample the same window, so they see the same moment:

    window start s (random in training, uniformly spaced in testing)
    |<---------------------------- window (64) ---------------------------->|
    dense  (32 x stride 2):  s, s+2, s+4, ..., s+62
    sparse ( 4 x stride 16): s,              s+16, ..., s+48
                             = dense[0], dense[8], dense[16], dense[24]

With equal spans (32 * 2 = 4 * 16) sparse frame i is dense frame i * alpha,
alpha = dense_frames / sparse_frames (8). A stream with a shorter span is
centred in the window. Indices past the end of a short video are clamped to its
last frame (the frame is repeated), as in PySlowFast.

`temporal_sampling="segment"` is the segment-based sampling used for
Something-Something-V2: the whole video is cut into `frames` equal segments and
one frame is taken from each (random in training, at the same relative position
in every segment in testing); strides are not used.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tsnet_keras.checks import check_choice, check_int

TEMPORAL_SAMPLINGS = ("window", "segment")


@dataclasses.dataclass(frozen=True)
class ClipSampler:
    """Frame indices of the sparse and (optional) dense stream of one clip.

    Args:
        sparse_frames: int. Frames of the sparse stream (default 4).
        sparse_stride: int. Temporal stride of the sparse stream (default 16).
        dense_frames: int or None. Frames of the dense stream (default 32);
            0 or None gives single-stream sampling (only sparse indices).
        dense_stride: int. Temporal stride of the dense stream (default 2).
        temporal_sampling: `"window"` (one window per clip, default) or
            `"segment"` (one frame per segment of the whole video).

    Example:

    >>> sampler = ClipSampler()                  # 4 x 16 and 32 x 2
    >>> sparse, dense = sampler.window_indices(start=10)
    >>> sparse.tolist(), dense[:3].tolist(), sampler.alpha
    ([10, 26, 42, 58], [10, 12, 14], 8)
    """

    sparse_frames: int = 4
    sparse_stride: int = 16
    dense_frames: int | None = 32
    dense_stride: int = 2
    temporal_sampling: str = "window"

    def __post_init__(self):
        for name in ("sparse_frames", "sparse_stride", "dense_stride"):
            check_int(name, getattr(self, name), 1, where="ClipSampler")
        if self.dense_frames is not None:
            check_int("dense_frames", self.dense_frames, 0, where="ClipSampler")
        check_choice("temporal_sampling", self.temporal_sampling, TEMPORAL_SAMPLINGS,
                     where="ClipSampler")

    @property
    def two_stream(self) -> bool:
        return bool(self.dense_frames)

    @property
    def window(self) -> int:
        """Length of the clip window in frames."""
        span = self.sparse_frames * self.sparse_stride
        if self.two_stream:
            span = max(span, self.dense_frames * self.dense_stride)
        return span

    @property
    def alpha(self) -> int | None:
        """Frame-rate ratio of the streams when sparse frame i is dense frame i*alpha, else None."""
        if not self.two_stream or self.dense_frames % self.sparse_frames:
            return None
        alpha = self.dense_frames // self.sparse_frames
        if self.temporal_sampling == "segment":
            return alpha
        same_span = self.sparse_frames * self.sparse_stride == self.dense_frames * self.dense_stride
        return alpha if same_span and self.sparse_stride == alpha * self.dense_stride else None

    def _stream_offsets(self, frames: int, stride: int) -> np.ndarray:
        return (self.window - frames * stride) // 2 + stride * np.arange(frames)

    def window_indices(self, start: int):
        """Unclamped indices of both streams for a window starting at `start`.

        Returns:
            `(sparse, dense)` int64 arrays of shape `(sparse_frames,)` and
            `(dense_frames,)`; `dense` is None in single-stream mode.
        """
        sparse = start + self._stream_offsets(self.sparse_frames, self.sparse_stride)
        if not self.two_stream:
            return sparse.astype(np.int64), None
        dense = start + self._stream_offsets(self.dense_frames, self.dense_stride)
        return sparse.astype(np.int64), dense.astype(np.int64)

    def _segment_indices(self, num_frames: int, frames: int, fractions: np.ndarray) -> np.ndarray:
        edges = np.round(np.linspace(0, max(num_frames - 1, 0), frames + 1))
        lower, upper = edges[:-1], edges[1:]
        return np.floor(lower + fractions * (upper - lower) + 0.5).astype(np.int64)

    def _segments(self, num_frames: int, fraction_of):
        """Segment sampling: fraction_of(frames) -> position inside each segment."""
        if not self.two_stream:
            return self._segment_indices(num_frames, self.sparse_frames, fraction_of(self.sparse_frames)), None
        dense = self._segment_indices(num_frames, self.dense_frames, fraction_of(self.dense_frames))
        if self.alpha is not None:
            return dense[:: self.alpha][: self.sparse_frames].copy(), dense
        sparse = self._segment_indices(num_frames, self.sparse_frames, fraction_of(self.sparse_frames))
        return sparse, dense

    def clamp(self, indices, num_frames: int):
        if indices is None:
            return None
        return np.clip(indices, 0, max(int(num_frames) - 1, 0))

    def train_indices(self, num_frames: int, rng: np.random.Generator):
        """Indices of one random training clip of a video of `num_frames` frames.

        Returns:
            `(sparse, dense)` clamped to `[0, num_frames - 1]`; `dense` is None
            in single-stream mode.
        """
        if self.temporal_sampling == "segment":
            sparse, dense = self._segments(num_frames, lambda count: rng.random(count))
        else:
            start = int(rng.integers(0, max(num_frames - self.window, 0) + 1))
            sparse, dense = self.window_indices(start)
        return self.clamp(sparse, num_frames), self.clamp(dense, num_frames)

    def test_indices(self, num_frames: int, num_clips: int = 1):
        """Indices of `num_clips` clips uniformly spaced over the video.

        The first clip starts at frame 0 and the last ends at the last frame;
        a single clip is centred.

        Returns:
            `(sparse, dense)` of shapes `(num_clips, sparse_frames)` and
            `(num_clips, dense_frames)`, clamped; `dense` is None in
            single-stream mode.
        """
        if num_clips < 1:
            raise ValueError(f"test_indices: `num_clips` must be >= 1, got {num_clips}.")
        sparse_clips, dense_clips = [], []
        for clip in range(num_clips):
            if self.temporal_sampling == "segment":
                fraction = (clip + 0.5) / num_clips
                sparse, dense = self._segments(num_frames, lambda count: np.full(count, fraction))
            else:
                delta = max(num_frames - self.window, 0)
                start = delta // 2 if num_clips == 1 else int(round(clip * delta / (num_clips - 1)))
                sparse, dense = self.window_indices(start)
            sparse_clips.append(self.clamp(sparse, num_frames))
            dense_clips.append(self.clamp(dense, num_frames))
        sparse = np.stack(sparse_clips)
        dense = np.stack(dense_clips) if self.two_stream else None
        return sparse, dense
