"""Video files written once per test session (small, lossless index videos)."""

import os

import numpy as np
import pytest

from tests.data.video_files import index_frames, write_index_video
from tsnet_keras.data.synthetic import write_video


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    """A folder with index videos and one of each kind of broken file.

    - `long.mp4`: 100 frames, 64 x 48, 30 fps, a key frame every 16 frames;
    - `other.mp4`: 90 frames; `short.mp4`: 3 frames; `fast.mp4`: 120 frames at 60 fps;
    - `empty.mp4` (0 bytes), `truncated.mp4` (first 40% of a video),
      `text.mp4` (a text file); `missing.mp4` is not written;
    - `truncated_indexed.mp4`: first half of a video whose index is at the front.
    """
    folder = tmp_path_factory.mktemp("videos")
    write_index_video(folder / "long.mp4", 100)
    write_index_video(folder / "other.mp4", 90)
    write_index_video(folder / "short.mp4", 3)
    write_index_video(folder / "fast.mp4", 120, fps=60)
    (folder / "empty.mp4").write_bytes(b"")
    data = (folder / "long.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: int(len(data) * 0.4)])
    (folder / "text.mp4").write_text("this is not a video\n" * 20)
    # Index (moov) at the front, so the file opens and its first half decodes.
    write_index_video(folder / "indexed.mp4", 100, faststart=True)
    data = (folder / "indexed.mp4").read_bytes()
    (folder / "truncated_indexed.mp4").write_bytes(data[: len(data) // 2])
    return folder


BROKEN = ("empty.mp4", "truncated.mp4", "text.mp4", "missing.mp4")


@pytest.fixture(scope="session")
def frame_folder(tmp_path_factory):
    """A folder of 40 JPEG frames of an index video (`img_00001.jpg`, ...)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("frames") / "clip"
    folder.mkdir()
    for index, frame in enumerate(index_frames(40)):
        Image.fromarray(frame).save(folder / f"img_{index + 1:05d}.jpg", quality=98)
    return folder


@pytest.fixture(scope="session")
def moving_videos(tmp_path_factory):
    """Two H.264 videos (yuv420p) with plain content, for end-to-end tests."""
    folder = tmp_path_factory.mktemp("plain")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(2):
        frames = np.repeat(rng.integers(0, 255, size=(1, 48, 64, 3), dtype=np.uint8), 80, axis=0)
        path = os.path.join(folder, f"plain{index}.mp4")
        write_video(path, frames)
        paths.append(path)
    return paths
