"""Test videos whose pixels say which frame and which position they show.

Frame t of an "index video" has red = 2 t + 1 everywhere (t < 128), green = a
horizontal ramp 0..255 and blue = a vertical ramp 0..255. After decoding,
resizing, cropping and normalising, the red level gives the frame index and the
green/blue levels at the corners give the crop position (and the flip).
"""

from __future__ import annotations

import numpy as np

from tsnet_keras.data.augment import KINETICS_MEAN, KINETICS_STD
from tsnet_keras.data.synthetic import write_video

LOSSLESS = {"qp": "0", "preset": "ultrafast"}


def index_frames(num_frames: int, width: int = 64, height: int = 48) -> np.ndarray:
    if num_frames > 128:
        raise ValueError("index videos hold at most 128 frames")
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    frames[..., 1] = np.round(np.linspace(0, 255, width))[None, None, :]
    frames[..., 2] = np.round(np.linspace(0, 255, height))[None, :, None]
    frames[..., 0] = (2 * np.arange(num_frames) + 1)[:, None, None]
    return frames


def write_index_video(path, num_frames: int = 100, width: int = 64, height: int = 48, fps: float = 30.0,
                      gop_size: int | None = 16, codec: str = "libx264", faststart: bool = False) -> str:
    """Writes a (nearly) lossless index video and returns its path as str."""
    options = LOSSLESS if codec == "libx264" else {"lossless": "1", "deadline": "realtime", "cpu-used": "8"}
    pix_fmt = "yuv444p"
    write_video(path, index_frames(num_frames, width, height), fps, codec=codec, pix_fmt=pix_fmt,
                options=options, gop_size=gop_size,
                container_options={"movflags": "faststart"} if faststart else None)
    return str(path)


def frame_index(frames: np.ndarray) -> np.ndarray:
    """Frame index of frames `(..., H, W, 3)` from their mean red level (robust to +-1 levels)."""
    return np.floor(np.asarray(frames, dtype=np.float64)[..., 0].mean(axis=(-1, -2)) / 2).astype(int)


def unnormalize(frames) -> np.ndarray:
    """Normalised float frames back to [0, 255] levels."""
    frames = np.asarray(frames, dtype=np.float64)
    return (frames * np.array(KINETICS_STD) + np.array(KINETICS_MEAN)) * 255.0
