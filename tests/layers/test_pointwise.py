"""`pointwise`: the 1x1x1 convolution as one 2D matmul, against NumPy."""

import keras
import numpy as np
import pytest

from tests.layers.layer_reference import to_numpy
from tsnet_keras.layers.pointwise import pointwise


@pytest.mark.parametrize("shape", [(6, 5), (2, 7, 5), (2, 3, 4, 3, 5)])
def test_pointwise_matches_numpy(rng, shape):
    x = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=(5, 4)).astype("float32")
    np.testing.assert_allclose(to_numpy(pointwise(x, kernel)), x @ kernel, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="run-time widths: TensorFlow")
def test_pointwise_with_widths_known_only_at_run_time(rng):
    """As in a search step: input channels and kernel columns sliced by tensors."""
    import tensorflow as tf

    x = rng.normal(size=(2, 3, 4, 4, 8)).astype("float32")
    kernel = rng.normal(size=(8, 6)).astype("float32")

    @tf.function(input_signature=[tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int32)])
    def sliced(rows, columns):
        return pointwise(tf.constant(x)[..., :rows], tf.constant(kernel)[:rows, :columns])

    out = to_numpy(sliced(tf.constant(5), tf.constant(3)))
    np.testing.assert_allclose(out, x[..., :5] @ kernel[:5, :3], rtol=1e-5, atol=1e-5)
