"""depthwise_conv3d against an explicit-loop NumPy convolution."""

import keras
import numpy as np
import pytest

from tests.layers.layer_reference import depthwise_conv3d as reference
from tests.layers.layer_reference import to_numpy
from tsnet_keras.layers import depthwise, depthwise_conv3d

# depthwise_conv3d dispatches per backend; check every exact method on this one.
# On JAX the dispatch is the (jitted) shifts method, which is slow to run eagerly.
METHODS = {"dispatch": depthwise_conv3d, "taps": depthwise.depthwise_conv3d_taps}
if keras.backend.backend() != "jax":
    METHODS["shifts"] = depthwise.depthwise_conv3d_shifts


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("temporal_kernel", [1, 3, 5])
@pytest.mark.parametrize("spatial_kernel", [3, 5])
def test_matches_numpy(rng, method, stride, temporal_kernel, spatial_kernel):
    # Odd and even sizes: "same" padding is asymmetric for stride 2 on even sizes.
    x = rng.normal(size=(2, 4, 7, 6, 3)).astype("float32")
    kernel = rng.normal(size=(temporal_kernel, spatial_kernel, spatial_kernel, 3))
    kernel = kernel.astype("float32")
    out = to_numpy(METHODS[method](x, kernel, spatial_stride=stride))
    expected = reference(x, kernel, stride)
    assert out.shape == (2, 4, -(-7 // stride), -(-6 // stride), 3)
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)


def test_rejects_even_temporal_kernel(rng):
    x = rng.normal(size=(1, 4, 5, 5, 2)).astype("float32")
    with pytest.raises(ValueError, match="odd temporal kernel"):
        depthwise_conv3d(x, np.zeros((2, 3, 3, 2), "float32"))


def test_rejects_bad_stride(rng):
    x = rng.normal(size=(1, 4, 5, 5, 2)).astype("float32")
    with pytest.raises(ValueError, match="spatial_stride"):
        depthwise_conv3d(x, np.zeros((3, 3, 3, 2), "float32"), spatial_stride=3)
