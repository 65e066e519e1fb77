"""StreamHead and ClassificationHead against NumPy; X3D-S parameter counts."""

import numpy as np
import pytest

from tests.layers.layer_reference import batch_norm, randomize_weights, relu, to_numpy, weight
from tsnet_keras.layers import ClassificationHead, StreamHead


def test_stream_head_matches_numpy(rng):
    x = rng.normal(size=(2, 3, 4, 5, 6)).astype("float32")
    layer = StreamHead(7)
    layer.build(x.shape)
    randomize_weights(layer, rng)
    out = to_numpy(layer(x, training=False))
    expected = relu(batch_norm(x @ weight(layer, "kernel"), layer.bn)).mean(axis=(1, 2, 3))
    assert out.shape == layer.compute_output_shape(x.shape) == (2, 7)
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("as_list", [False, True])
def test_classification_head_matches_numpy(rng, as_list):
    first = rng.normal(size=(3, 5)).astype("float32")
    second = rng.normal(size=(3, 4)).astype("float32")
    inputs = [first, second] if as_list else np.concatenate([first, second], -1)
    layer = ClassificationHead(6, hidden_units=10, dropout_rate=0.5)
    layer.build([first.shape, second.shape] if as_list else inputs.shape)
    randomize_weights(layer, rng)
    out = to_numpy(layer(inputs, training=False))  # inference: dropout is off
    features = np.concatenate([first, second], -1)
    hidden = relu(features @ weight(layer, "hidden_kernel"))
    expected = hidden @ weight(layer, "logits_kernel") + weight(layer, "logits_bias")
    assert out.shape == (3, 6)
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)


def test_dropout_active_in_training(rng):
    features = rng.normal(size=(4, 8)).astype("float32")
    layer = ClassificationHead(3, hidden_units=64, dropout_rate=0.5)
    evaluation = to_numpy(layer(features, training=False))
    training = to_numpy(layer(features, training=True))
    assert not np.allclose(evaluation, training)


def test_x3d_s_parameter_counts():
    stream = StreamHead(432)
    stream.build((None, 13, 5, 5, 192))
    classifier = ClassificationHead(400)
    classifier.build((None, 432))
    assert sum(int(np.prod(w.shape)) for w in stream.trainable_weights) == 192 * 432 + 2 * 432
    assert classifier.count_params() == 432 * 2048 + 2048 * 400 + 400
