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


def test_dropout_draws_drop_the_units_drawn_below_the_rate(rng):
    """With `dropout_draws` (a caller's own stateless draws) the head drops the hidden
    units whose draw is below the rate and scales the others by 1 / (1 - rate)."""
    features = rng.normal(size=(4, 8)).astype("float32")
    draws = rng.uniform(size=(4, 16)).astype("float32")
    layer = ClassificationHead(3, hidden_units=16, dropout_rate=0.25)
    layer.build(features.shape)
    randomize_weights(layer, rng)
    hidden = relu(features @ weight(layer, "hidden_kernel")) * (draws >= 0.25) / 0.75
    expected = hidden @ weight(layer, "logits_kernel") + weight(layer, "logits_bias")
    out = to_numpy(layer(features, training=True, dropout_draws=draws))
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)
    assert 0 < (draws < 0.25).sum() < draws.size  # some units dropped, not all
    inference = to_numpy(layer(features, training=False, dropout_draws=draws))
    np.testing.assert_allclose(inference, to_numpy(layer(features, training=False)))


def _two_stream_head(rng, stream_dropout, seed=3):
    layer = ClassificationHead(4, hidden_units=16, dropout_rate=0.0,
                               stream_dropout=stream_dropout, seed=seed)
    layer.build([(8, 5), (8, 3)])
    randomize_weights(layer, rng)
    return layer


def test_stream_dropout_drops_whole_clips_of_the_sparse_stream(rng):
    sparse = rng.normal(size=(8, 5)).astype("float32")
    dense = rng.normal(size=(8, 3)).astype("float32")
    layer = _two_stream_head(rng, 0.5)
    training = to_numpy(layer([sparse, dense], training=True))
    blind = to_numpy(layer([np.zeros_like(sparse), dense], training=False))
    seeing = to_numpy(layer([sparse, dense], training=False))
    dropped = np.all(np.isclose(training, blind, atol=1e-5), axis=1)
    kept = np.all(np.isclose(training, seeing, atol=1e-5), axis=1)
    assert np.all(dropped ^ kept)  # every clip is either blind to its sparse clip or sees it
    assert 0 < dropped.sum() < 8
    np.testing.assert_allclose(to_numpy(layer([sparse, dense], training=False)), seeing)


def test_stream_dropout_rate_and_zero_rate(rng):
    sparse = rng.normal(size=(8, 5)).astype("float32")
    dense = rng.normal(size=(8, 3)).astype("float32")
    plain = _two_stream_head(rng, 0.0)
    np.testing.assert_allclose(to_numpy(plain([sparse, dense], training=True)),
                               to_numpy(plain([sparse, dense], training=False)), atol=1e-6)
    layer = _two_stream_head(rng, 0.25)
    keeps = np.concatenate([to_numpy(layer._keep(sparse)) for _ in range(200)])
    assert set(np.unique(keeps)) == {0.0, 1.0}
    assert abs(1 - keeps.mean() - 0.25) < 0.04


def test_stream_dropout_needs_two_streams():
    with pytest.raises(ValueError, match="stream_dropout"):
        ClassificationHead(4, stream_dropout=0.5).build((2, 8))
    with pytest.raises(ValueError, match="stream_dropout"):
        ClassificationHead(4, stream_dropout=1.0)


def test_x3d_s_parameter_counts():
    stream = StreamHead(432)
    stream.build((None, 13, 5, 5, 192))
    classifier = ClassificationHead(400)
    classifier.build((None, 432))
    assert sum(int(np.prod(w.shape)) for w in stream.trainable_weights) == 192 * 432 + 2 * 432
    assert classifier.count_params() == 432 * 2048 + 2048 * 400 + 400
