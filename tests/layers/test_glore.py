"""GloRe3D against NumPy; identity at initialisation; published parameter counts."""

import numpy as np
import pytest

from tests.layers.layer_reference import batch_norm, randomize_weights, relu, to_numpy, weight
from tsnet_keras.layers import GloRe3D


def numpy_glore(layer, x):
    batch, channels = x.shape[0], x.shape[-1]
    positions = x.reshape(batch, -1, channels)
    x_state = positions @ weight(layer, "state_kernel") + weight(layer, "state_bias")
    x_proj = positions @ weight(layer, "proj_kernel") + weight(layer, "proj_bias")
    graph = np.einsum("bls,bln->bsn", x_state, x_proj)
    if layer.normalize:
        graph = graph / positions.shape[1]
    graph = relu(graph @ weight(layer, "node_kernel") + weight(layer, "node_bias") + graph)
    # State-wise 1D conv S -> S: out[s'] = sum_s W[s, s'] * graph[s].
    graph = np.einsum("bsn,st->btn", graph, weight(layer, "state_update_kernel"))
    reverse = np.einsum("bln,bsn->bls", x_proj, graph)
    extended = (reverse @ weight(layer, "extend_kernel")).reshape(x.shape)
    return x + batch_norm(extended, layer.bn)


@pytest.mark.parametrize(
    "kwargs", [{}, {"normalize": False}, {"state_channels": 6, "num_nodes": 3}]
)
def test_matches_numpy(rng, kwargs):
    x = rng.normal(size=(2, 3, 4, 5, 16)).astype("float32")
    layer = GloRe3D(**kwargs)
    layer.build(x.shape)
    randomize_weights(layer, rng, scale=0.3)
    out = to_numpy(layer(x, training=False))
    np.testing.assert_allclose(out, numpy_glore(layer, x), atol=1e-4, rtol=1e-4)
    assert (layer.states, layer.nodes) == (
        kwargs.get("state_channels", 8),
        kwargs.get("num_nodes", 4),
    )


@pytest.mark.parametrize("training", [False, True])
def test_identity_at_initialisation(rng, training):
    x = rng.normal(size=(2, 3, 4, 4, 16)).astype("float32")
    out = to_numpy(GloRe3D()(x, training=training))
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("channels, expected", [(512, 411_136), (1024, 1_641_472)])
def test_published_parameter_counts(channels, expected):
    layer = GloRe3D()
    layer.build((None, 2, 2, 2, channels))
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    assert trainable == expected  # conv/FC weights and biases + BN gamma/beta
    # Keras' count_params() also counts the BN moving mean/variance.
    assert layer.count_params() == expected + 2 * channels


def test_too_few_channels():
    with pytest.raises(ValueError, match="num_nodes"):
        GloRe3D().build((None, 2, 2, 2, 3))
