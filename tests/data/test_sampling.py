"""Two-stream clip sampling arithmetic (pure NumPy)."""

import numpy as np
import pytest

from tsnet_keras.data.sampling import ClipSampler


def test_default_streams_share_one_window_and_align():
    sampler = ClipSampler()
    assert sampler.window == 64 and sampler.alpha == 8
    sparse, dense = sampler.window_indices(start=5)
    np.testing.assert_array_equal(dense, 5 + 2 * np.arange(32))
    np.testing.assert_array_equal(sparse, 5 + 16 * np.arange(4))
    np.testing.assert_array_equal(sparse, dense[:: sampler.alpha])


def test_shorter_stream_is_centred_in_the_window():
    sampler = ClipSampler(sparse_frames=4, sparse_stride=16, dense_frames=16, dense_stride=2)
    sparse, dense = sampler.window_indices(start=0)
    assert sampler.window == 64 and sampler.alpha is None
    np.testing.assert_array_equal(dense, 16 + 2 * np.arange(16))  # (64 - 32) / 2 = 16
    np.testing.assert_array_equal(sparse, 16 * np.arange(4))
    # the dense span [16, 47] is centred in the window [0, 63]
    assert (dense[0] + dense[-1] + 1) / 2 == (0 + 63) / 2


@pytest.mark.parametrize("num_frames", [64, 90, 300])
def test_train_windows_stay_inside_the_video(num_frames):
    sampler = ClipSampler()
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        sparse, dense = sampler.train_indices(num_frames, rng)
        assert dense.min() >= 0 and dense.max() <= num_frames - 1
        np.testing.assert_array_equal(np.diff(dense), 2)
        np.testing.assert_array_equal(sparse, dense[::8])
        starts.add(int(dense[0]))
    assert max(starts) <= num_frames - 64
    if num_frames > 64:
        assert len(starts) > 1  # random positions


def test_short_video_repeats_its_last_frame():
    sparse, dense = ClipSampler().train_indices(3, np.random.default_rng(0))
    np.testing.assert_array_equal(dense, [0, 2] + [2] * 30)
    np.testing.assert_array_equal(sparse, [0, 2, 2, 2])


def test_test_clips_are_uniformly_spaced_from_start_to_end():
    sampler = ClipSampler()
    sparse, dense = sampler.test_indices(num_frames=300, num_clips=10)
    assert sparse.shape == (10, 4) and dense.shape == (10, 32)
    starts = dense[:, 0]
    assert starts[0] == 0 and dense[-1, -1] == 300 - 64 + 62
    np.testing.assert_allclose(np.diff(starts), (300 - 64) / 9, atol=1)
    single_sparse, single_dense = sampler.test_indices(300, 1)
    assert single_dense[0, 0] == (300 - 64) // 2


def test_single_stream_x3d_sampling():
    sampler = ClipSampler(sparse_frames=13, sparse_stride=6, dense_frames=None)
    assert not sampler.two_stream and sampler.window == 78 and sampler.alpha is None
    sparse, dense = sampler.train_indices(100, np.random.default_rng(1))
    assert dense is None
    np.testing.assert_array_equal(np.diff(sparse), 6)
    sparse, dense = sampler.test_indices(100, 3)
    assert sparse.shape == (3, 13) and dense is None


def test_segment_sampling_covers_the_whole_video():
    sampler = ClipSampler(temporal_sampling="segment")
    sparse, dense = sampler.train_indices(60, np.random.default_rng(0))
    assert np.all(np.diff(dense) >= 0) and dense[0] <= 2 and dense[-1] >= 57
    np.testing.assert_array_equal(sparse, dense[::8])
    test_sparse, test_dense = sampler.test_indices(60, 2)
    assert np.all(test_dense[1] >= test_dense[0])


@pytest.mark.parametrize(
    "kwargs, field",
    [({"sparse_frames": 0}, "sparse_frames"), ({"dense_stride": -1}, "dense_stride"),
     ({"temporal_sampling": "tsn"}, "temporal_sampling"), ({"dense_frames": 2.5}, "dense_frames")],
)
def test_invalid_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ClipSampler(**kwargs)
