"""PyAV decoding: the right frames, frame-rate resampling, broken files, no leaks."""

import os

import numpy as np
import pytest

from tests.data.conftest import BROKEN
from tests.data.video_files import frame_index
from tsnet_keras.data.decode import VideoDecodeError, output_size, read_frame_folder, read_video


def shown(decoded):
    return frame_index(decoded.frames[decoded.positions])


def test_window_in_the_middle_is_decoded_exactly(video_dir):
    wanted = np.arange(50, 82, 2)  # after several key frames: needs a seek
    decoded = read_video(video_dir / "long.mp4", lambda n: wanted)
    assert decoded.num_frames == 100
    np.testing.assert_array_equal(shown(decoded), wanted)
    assert decoded.frames.shape == (16, 48, 64, 3)  # only the distinct needed frames


def test_repeated_and_unsorted_indices_keep_their_shape(video_dir):
    wanted = np.array([[70, 10, 10], [99, 0, 35]])
    decoded = read_video(video_dir / "long.mp4", lambda n: wanted)
    assert decoded.positions.shape == (2, 3) and decoded.frames.shape[0] == 5
    np.testing.assert_array_equal(shown(decoded), wanted)


def test_far_apart_frames_are_reached_by_seeking(video_dir):
    decoded = read_video(video_dir / "long.mp4", lambda n: np.array([1, 95]), seek_gap=10)
    np.testing.assert_array_equal(shown(decoded), [1, 95])


def test_resampling_to_the_target_frame_rate(video_dir):
    decoded = read_video(video_dir / "fast.mp4", lambda n: np.arange(n), target_fps=30)
    assert decoded.num_frames == 60  # 120 frames at 60 fps = 2 s = 60 frames at 30 fps
    np.testing.assert_array_equal(shown(decoded), 2 * np.arange(60))
    slow = read_video(video_dir / "long.mp4", lambda n: np.arange(6), target_fps=60)
    np.testing.assert_array_equal(shown(slow), [0, 0, 1, 1, 2, 2])
    native = read_video(video_dir / "fast.mp4", lambda n: np.arange(n), target_fps=None)
    assert native.num_frames == 120


def test_short_video_repeats_its_last_frame(video_dir):
    decoded = read_video(video_dir / "short.mp4", lambda n: np.minimum(np.arange(8), n - 1))
    assert decoded.num_frames == 3
    np.testing.assert_array_equal(shown(decoded), [0, 1, 2, 2, 2, 2, 2, 2])


def test_resize_in_the_decoder_keeps_the_aspect_ratio(video_dir):
    decoded = read_video(video_dir / "long.mp4", lambda n: np.array([0]), short_side=96)
    assert decoded.frames.shape == (1, 96, 128, 3)
    assert output_size(width=48, height=64, short_side=96) == (96, 128)


@pytest.mark.parametrize("name", BROKEN)
def test_broken_files_raise_a_clear_error(video_dir, name):
    error = FileNotFoundError if name == "missing.mp4" else VideoDecodeError
    with pytest.raises(error, match=name):
        read_video(video_dir / name, lambda n: np.arange(4))


def test_file_truncated_after_its_index(video_dir):
    early = read_video(video_dir / "truncated_indexed.mp4", lambda n: np.arange(0, 20, 2))
    np.testing.assert_array_equal(shown(early), np.arange(0, 20, 2))
    with pytest.raises(VideoDecodeError, match="truncated"):
        read_video(video_dir / "truncated_indexed.mp4", lambda n: np.arange(60, 100, 2))


def test_empty_file_error_says_so(video_dir):
    with pytest.raises(VideoDecodeError, match="0 bytes"):
        read_video(video_dir / "empty.mp4", lambda n: np.arange(4))


def test_containers_are_closed_even_on_errors(video_dir):
    def open_files():
        return len(os.listdir("/proc/self/fd"))

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc")
    read_video(video_dir / "long.mp4", lambda n: np.arange(4))
    before = open_files()
    for _ in range(20):
        read_video(video_dir / "long.mp4", lambda n: np.arange(10, 20))
        for name in BROKEN:
            with pytest.raises((VideoDecodeError, FileNotFoundError)):
                read_video(video_dir / name, lambda n: np.arange(4))
    assert open_files() <= before


def test_jpeg_frame_folder(frame_folder):
    decoded = read_frame_folder(frame_folder, lambda n: np.array([3, 0, 39, 39]), short_side=24)
    assert decoded.num_frames == 40 and decoded.frames.shape == (3, 24, 32, 3)
    full = read_frame_folder(frame_folder, lambda n: np.arange(n))
    np.testing.assert_array_equal(shown(full), np.arange(40))
    half = read_frame_folder(frame_folder, lambda n: np.arange(n), target_fps=15, source_fps=30)
    np.testing.assert_array_equal(shown(half), 2 * np.arange(20))


def test_frame_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_frame_folder(tmp_path / "nowhere", lambda n: np.arange(2))
    with pytest.raises(VideoDecodeError, match="no image files"):
        read_frame_folder(tmp_path, lambda n: np.arange(2))


def test_only_local_regular_files_are_opened(tmp_path, video_dir, monkeypatch):
    import shutil

    from tsnet_keras.data.decode import VideoDecodeError, read_video

    # A local file whose name looks like an FFmpeg protocol is read as the file itself.
    shutil.copy(video_dir / "long.mp4", tmp_path / "concat:clip.mp4")
    monkeypatch.chdir(tmp_path)
    decoded = read_video("concat:clip.mp4", lambda n: np.arange(min(n, 4)), 32)
    assert len(decoded.positions) == 4

    for url in ("http://example.com/a.mp4", "pipe:0", "concat:a.mp4|b.mp4"):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            read_video(url, lambda n: [0], 32)
    with pytest.raises(VideoDecodeError, match="not a regular file"):
        read_video(str(tmp_path), lambda n: [0], 32)
