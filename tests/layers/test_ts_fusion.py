"""TSFusion operations against NumPy; merge shapes; alpha validation."""

import numpy as np
import pytest

from tests.layers.layer_reference import batch_norm, randomize_weights, relu, to_numpy
from tsnet_keras.layers import TSFusion

SPARSE_FRAMES, ALPHA = 3, 4


@pytest.fixture
def streams(rng):
    sparse = rng.normal(size=(2, SPARSE_FRAMES, 4, 5, 6)).astype("float32")
    dense = rng.normal(size=(2, ALPHA * SPARSE_FRAMES, 4, 5, 3)).astype("float32")
    return sparse, dense


def run(layer, sparse, dense, rng):
    layer.build([sparse.shape, dense.shape])
    randomize_weights(layer, rng)
    out = to_numpy(layer([sparse, dense], training=False))
    assert out.shape == tuple(layer.compute_output_shape([sparse.shape, dense.shape]))
    assert layer.alpha == ALPHA
    return out


def test_none_returns_sparse(streams, rng):
    sparse, dense = streams
    layer = TSFusion("none")
    np.testing.assert_array_equal(run(layer, sparse, dense, rng), sparse)
    assert not layer.weights


def test_time_to_channel_order(streams, rng):
    sparse, dense = streams
    out = run(TSFusion("time_to_channel"), sparse, dense, rng)
    channels = dense.shape[-1]
    assert out.shape[-1] == 6 + ALPHA * channels
    np.testing.assert_array_equal(out[..., :6], sparse)
    fused = out[..., 6:]
    for t in range(SPARSE_FRAMES):
        for a in range(ALPHA):
            # Channel a * C_f + c of frame t is channel c of dense frame alpha * t + a.
            np.testing.assert_array_equal(
                fused[:, t, :, :, a * channels : (a + 1) * channels], dense[:, ALPHA * t + a]
            )


def test_time_strided_sample_indices(streams, rng):
    sparse, dense = streams
    out = run(TSFusion("time_strided_sample"), sparse, dense, rng)
    for t in range(SPARSE_FRAMES):
        np.testing.assert_array_equal(out[:, t, :, :, 6:], dense[:, ALPHA * t])


@pytest.mark.parametrize("conv_kernel, multiplier", [(5, 2), (3, 1)])
def test_time_strided_conv(streams, rng, conv_kernel, multiplier):
    sparse, dense = streams
    layer = TSFusion(
        "time_strided_conv", conv_kernel=conv_kernel, conv_channel_multiplier=multiplier
    )
    out = run(layer, sparse, dense, rng)
    kernel = to_numpy(layer.fusion_kernel)
    assert kernel.shape == (conv_kernel, 3, multiplier * 3)
    expected = np.zeros(sparse.shape[:-1] + (multiplier * 3,))
    for t in range(SPARSE_FRAMES):
        for tap in range(conv_kernel):
            source = ALPHA * t + tap - conv_kernel // 2  # stride alpha, zero padding k//2
            if 0 <= source < dense.shape[1]:
                expected[:, t] += dense[:, source] @ kernel[tap]
    expected = relu(batch_norm(expected, layer.bn))
    np.testing.assert_array_equal(out[..., :6], sparse)
    np.testing.assert_allclose(out[..., 6:], expected, atol=1e-4, rtol=1e-4)


def test_sum_merge(rng):
    sparse = rng.normal(size=(2, 2, 3, 3, 8)).astype("float32")
    dense = rng.normal(size=(2, 8, 3, 3, 2)).astype("float32")
    out = run_alpha(TSFusion("time_to_channel", merge="sum"), sparse, dense)
    fused = dense.reshape(2, 2, 4, 3, 3, 2).transpose(0, 1, 3, 4, 2, 5).reshape(2, 2, 3, 3, 8)
    np.testing.assert_allclose(out, sparse + fused, atol=1e-6)


def run_alpha(layer, sparse, dense):
    out = to_numpy(layer([sparse, dense], training=False))
    assert out.shape == tuple(layer.compute_output_shape([sparse.shape, dense.shape]))
    return out


def test_sum_merge_needs_matching_width(streams):
    sparse, dense = streams
    with pytest.raises(ValueError, match="merge='sum'"):
        TSFusion("time_strided_sample", merge="sum").build([sparse.shape, dense.shape])


def test_alpha_must_divide(rng):
    sparse = rng.normal(size=(1, 3, 4, 4, 2)).astype("float32")
    dense = rng.normal(size=(1, 10, 4, 4, 2)).astype("float32")
    with pytest.raises(ValueError, match="integer multiple"):
        TSFusion("time_strided_sample")([sparse, dense])


def test_spatial_sizes_must_match(rng):
    sparse = rng.normal(size=(1, 2, 4, 4, 2)).astype("float32")
    dense = rng.normal(size=(1, 8, 8, 8, 2)).astype("float32")
    with pytest.raises(ValueError, match="height"):
        TSFusion("time_strided_sample")([sparse, dense])


@pytest.mark.parametrize(
    "operation, expected",
    [("none", 0), ("time_to_channel", 64), ("time_strided_sample", 8), ("time_strided_conv", 16)],
)
def test_fused_channels(operation, expected):
    assert TSFusion.fused_channels(operation, 8, 8) == expected
