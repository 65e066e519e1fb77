"""MBConv3D against a NumPy reference of the whole block; parameter counts."""

import keras
import numpy as np
import pytest

from tests.layers.layer_reference import (
    batch_norm,
    depthwise_conv3d,
    randomize_weights,
    relu,
    sigmoid,
    to_numpy,
    weight,
)
from tsnet_keras.layers import MBConv3D


def numpy_block(layer, x):
    y = relu(batch_norm(x @ weight(layer, "expand_kernel"), layer.expand_bn))
    y = depthwise_conv3d(y, weight(layer, "depthwise_kernel"), layer.spatial_stride)
    y = batch_norm(y, layer.depthwise_bn)
    if layer.squeeze_excite:
        squeezed = y.mean(axis=(1, 2, 3), keepdims=True)
        reduce = weight(layer, "se_reduce_kernel"), weight(layer, "se_reduce_bias")
        expand = weight(layer, "se_expand_kernel"), weight(layer, "se_expand_bias")
        squeezed = relu(squeezed @ reduce[0] + reduce[1])
        squeezed = squeezed @ expand[0] + expand[1]
        y = y * sigmoid(squeezed)
    y = y * sigmoid(y)  # swish
    y = batch_norm(y @ weight(layer, "project_kernel"), layer.project_bn)
    if layer.shortcut == "none":
        return y
    if layer.use_projection:
        step = layer.spatial_stride
        shortcut = x[:, :, ::step, ::step] @ weight(layer, "shortcut_kernel")
        return y + batch_norm(shortcut, layer.shortcut_bn)
    return y + x


CASES = {
    "identity": (8, dict(channels=8, expansion=2.25)),
    "identity_se": (8, dict(channels=8, expansion=2.25, squeeze_excite=1 / 16)),
    "projection_stride2_se": (
        6,
        dict(channels=8, expansion=2.0, spatial_stride=2, squeeze_excite=0.25),
    ),
    "projection_width": (6, dict(channels=8, expansion=1.5, temporal_kernel=5, spatial_kernel=5)),
    "forced_projection": (
        8,
        dict(channels=8, expansion=1.0, temporal_kernel=1, shortcut="projection"),
    ),
    "no_shortcut": (6, dict(channels=8, expansion=2.0, spatial_stride=2, shortcut="none")),
    "forced_identity": (8, dict(channels=8, expansion=2.0, shortcut="identity")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_numpy(rng, case):
    channels, kwargs = CASES[case]
    x = rng.normal(size=(2, 4, 7, 6, channels)).astype("float32")
    layer = MBConv3D(**kwargs)
    layer.build(x.shape)
    randomize_weights(layer, rng, scale=0.3)
    assert layer.use_projection == (
        case not in ("identity", "identity_se", "no_shortcut", "forced_identity"))
    out = to_numpy(layer(x, training=False))
    assert out.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(out, numpy_block(layer, x), atol=1e-4, rtol=1e-4)


def test_identity_is_one_name_for_both_blocks_and_refuses_other_widths():
    from tsnet_keras.layers.super_mbconv3d import SHORTCUTS as SUPER_SHORTCUTS
    from tsnet_keras.space.rules import SHORTCUTS

    assert "identity" in SHORTCUTS and set(SUPER_SHORTCUTS) == set(SHORTCUTS) - {"none"}
    layer = MBConv3D(8, 2.0, shortcut="identity")
    with pytest.raises(ValueError, match="`shortcut`='identity' needs as many input channels"):
        layer.build((None, 4, 8, 8, 6))


def test_new_block_is_its_shortcut(rng):
    # project_bn gamma starts at zero, so a fresh identity block passes x through.
    x = rng.normal(size=(2, 3, 5, 5, 8)).astype("float32")
    layer = MBConv3D(8, 2.0, squeeze_excite=0.25)
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), x)


@pytest.mark.parametrize("inner, hidden", [(54, 8), (108, 8), (216, 16), (432, 32)])
def test_x3d_squeeze_excite_widths(inner, hidden):
    assert MBConv3D.squeeze_excite_channels(inner, 1 / 16) == hidden
    assert MBConv3D.squeeze_excite_channels(inner, 0.0) == 0


@pytest.mark.parametrize(
    "in_channels, kwargs",
    [
        (24, dict(channels=24, expansion=2.25, spatial_stride=2, squeeze_excite=1 / 16)),
        (48, dict(channels=96, expansion=2.25, spatial_stride=2, squeeze_excite=1 / 16)),
        (192, dict(channels=192, expansion=2.25)),
        (16, dict(channels=16, expansion=3.0, temporal_kernel=5, spatial_kernel=5)),
        (16, dict(channels=32, expansion=1.0, shortcut="none")),
    ],
)
def test_parameter_count(in_channels, kwargs):
    layer = MBConv3D(**kwargs)
    layer.build((None, 4, 8, 8, in_channels))
    channels = kwargs["channels"]
    inner = int(round(channels * kwargs["expansion"]))
    taps = kwargs.get("temporal_kernel", 3) * kwargs.get("spatial_kernel", 3) ** 2
    hidden = MBConv3D.squeeze_excite_channels(inner, kwargs.get("squeeze_excite", 0))
    expected = in_channels * inner + taps * inner + inner * channels
    expected += 2 * (inner + inner + channels)  # BN gamma/beta
    if hidden:
        expected += 2 * inner * hidden + hidden + inner
    bn_channels = 2 * inner + channels
    if layer.use_projection:
        expected += in_channels * channels + 2 * channels
        bn_channels += channels
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    assert trainable == expected
    # count_params() adds the BN moving mean and variance (non-trainable).
    assert layer.count_params() == expected + 2 * bn_channels


def test_residual_relu_is_relu_of_the_plain_block(rng):
    x = rng.normal(size=(1, 3, 6, 6, 8)).astype("float32")
    plain = MBConv3D(8, 2.0, squeeze_excite=0.25)
    relu = MBConv3D(8, 2.0, squeeze_excite=0.25, residual_activation="relu")
    plain.build(x.shape)
    relu.build(x.shape)
    relu.set_weights(plain.get_weights())
    expected = np.maximum(keras.ops.convert_to_numpy(plain(x, training=False)), 0.0)
    assert (expected == 0).any() and (expected > 0).any()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(relu(x, training=False)), expected, atol=1e-6)
    assert relu.get_config()["residual_activation"] == "relu"
    with pytest.raises(ValueError, match="residual_activation"):
        MBConv3D(8, 2.0, residual_activation="gelu")


def test_frozen_batch_norms_use_the_moving_statistics_in_training(rng):
    """A frozen BN (trainable=False) normalises with its moving statistics in a training
    call too (Keras' convention, kept by the fused training path): both calls agree and
    no statistic moves."""
    layer = MBConv3D(channels=8, expansion=2.0, squeeze_excite=0.25)
    x = rng.normal(size=(2, 3, 6, 6, 4)).astype("float32")
    layer(x)
    randomize_weights(layer, rng, scale=0.3)
    for bn in (layer.expand_bn, layer.depthwise_bn, layer.project_bn, layer.shortcut_bn):
        bn.trainable = False
    before = [to_numpy(v) for v in layer.non_trainable_weights]
    np.testing.assert_allclose(to_numpy(layer(x, training=True)),
                               to_numpy(layer(x, training=False)), atol=1e-6)
    for old, new in zip(before, layer.non_trainable_weights, strict=True):
        np.testing.assert_array_equal(old, to_numpy(new))
