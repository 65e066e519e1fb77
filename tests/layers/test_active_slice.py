"""`active_slice`: how a super layer reads the active box of a widest weight, against NumPy."""

import keras
import numpy as np
import pytest

from tests.layers.layer_reference import to_numpy
from tsnet_keras.layers._super import active_slice, input_rows


@pytest.mark.parametrize(
    "sizes, starts, index",
    [
        ((3,), (), np.s_[:3]),
        ((2, 2), (), np.s_[:2, :2]),
        ((5, 1, 1), (0, 1, 1), np.s_[:5, 1:2, 1:2]),
        ((2,), (3,), np.s_[3:5]),
    ],
)
def test_active_slice_matches_numpy(rng, sizes, starts, index):
    kernel = rng.normal(size=(5, 3, 3, 6)).astype("float32")
    np.testing.assert_array_equal(to_numpy(active_slice(kernel, sizes, starts)), kernel[index])


def test_input_rows_read_stream_then_fused_rows(rng):
    kernel = rng.normal(size=(7, 4)).astype("float32")  # 5 stream rows, 2 fused rows
    rows = to_numpy(input_rows(kernel, 3, 1, max_in_base=5, max_in_extra=2))
    np.testing.assert_array_equal(rows, kernel[[0, 1, 2, 5]])
    box = to_numpy(input_rows(kernel, 3, 1, max_in_base=5, max_in_extra=2, columns=2))
    np.testing.assert_array_equal(box, kernel[[0, 1, 2, 5], :2])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="run-time sizes: TensorFlow")
def test_active_slice_with_run_time_sizes_and_its_gradient(rng):
    """Sizes as tensors and an axis of unknown length, as in a search step; the gradient is
    the upstream gradient in the box and exactly zero elsewhere (what a strided slice gives)."""
    import tensorflow as tf

    widest = rng.normal(size=(6, 5)).astype("float32")
    upstream = rng.normal(size=(4, 3)).astype("float32")

    @tf.function(input_signature=[tf.TensorSpec((), tf.int32)] * 2)
    def gradients(rows, columns):
        variable = tf.constant(widest)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(variable)
            unknown_rows = tf.reshape(variable, (-1, 5))[:6]  # static shape (None, 5)
            plain = active_slice(unknown_rows, (rows, columns))
            strided = variable[:rows, :columns]
            plain_loss = tf.reduce_sum(plain * upstream)
            strided_loss = tf.reduce_sum(strided * upstream)
        return plain, tape.gradient(plain_loss, variable), tape.gradient(strided_loss, variable)

    value, plain_grad, strided_grad = (to_numpy(t) for t in gradients(4, 3))
    np.testing.assert_array_equal(value, widest[:4, :3])
    expected = np.zeros_like(widest)
    expected[:4, :3] = upstream
    np.testing.assert_array_equal(plain_grad, expected)
    np.testing.assert_array_equal(plain_grad, strided_grad)
