"""VideoStem against NumPy; parameter count."""

import numpy as np
import pytest

from tests.layers.layer_reference import batch_norm, randomize_weights, relu, spatial_conv, to_numpy
from tsnet_keras.layers import VideoStem


def numpy_stem(layer, x):
    y = spatial_conv(x, to_numpy(layer.spatial_conv_kernel), layer.spatial_stride)
    kernel = to_numpy(layer.temporal_conv_kernel)
    pad = layer.temporal_kernel // 2
    padded = np.pad(y, ((0, 0), (pad, pad), (0, 0), (0, 0), (0, 0)))
    frames = x.shape[1]
    z = np.zeros_like(y)
    for t in range(frames):
        for tap in range(layer.temporal_kernel):
            z[:, t] += padded[:, t + tap] * kernel[tap]
    return relu(batch_norm(z, layer.bn))


@pytest.mark.parametrize(
    "kwargs", [{}, {"temporal_kernel": 3, "spatial_kernel": 5, "spatial_stride": 1}]
)
def test_matches_numpy(rng, kwargs):
    x = rng.normal(size=(2, 5, 9, 8, 3)).astype("float32")
    layer = VideoStem(6, **kwargs)
    layer.build(x.shape)
    randomize_weights(layer, rng)
    out = to_numpy(layer(x, training=False))
    assert out.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(out, numpy_stem(layer, x), atol=1e-4, rtol=1e-4)


def test_x3d_s_parameter_count():
    layer = VideoStem(24)
    layer.build((None, 13, 160, 160, 3))
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    # Conv kernels + BN gamma/beta (the anchors' "params incl. BN gamma/beta").
    assert trainable == 3 * 24 * 9 + 5 * 24 + 2 * 24
    # Keras' count_params() also counts the non-trainable BN moving mean/variance.
    assert layer.count_params() == trainable + 2 * 24
