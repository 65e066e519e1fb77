"""Every layer: get_config() equals its arguments, from_config round trip, and a
saved .keras model reloads with safe_mode=True and gives identical outputs."""

import keras
import numpy as np
import pytest

from tests.layers.layer_reference import randomize_weights, to_numpy
from tsnet_keras.layers import (
    ClassificationHead,
    GloRe3D,
    MBConv3D,
    StreamHead,
    TSFusion,
    VideoStem,
)

VIDEO = (2, 4, 6, 6, 8)
DENSE = (2, 8, 6, 6, 4)

# (class, non-default constructor arguments, input shapes)
CASES = {
    "stem": (
        VideoStem,
        dict(filters=5, temporal_kernel=3, spatial_kernel=5, spatial_stride=1),
        [VIDEO],
    ),
    "mbconv3d": (
        MBConv3D,
        dict(
            filters=12,
            expansion=1.5,
            temporal_kernel=5,
            spatial_kernel=3,
            spatial_stride=2,
            squeeze_excite_ratio=0.25,
            activation="relu",
            shortcut="projection",
        ),
        [VIDEO],
    ),
    "glore": (GloRe3D, dict(state_channels=6, num_nodes=3, normalize=False), [VIDEO]),
    "ts_fusion": (
        TSFusion,
        dict(
            operation="time_strided_conv",
            merge="concat",
            conv_kernel=3,
            conv_channel_multiplier=3,
        ),
        [VIDEO, DENSE],
    ),
    "stream_head": (StreamHead, dict(filters=7), [VIDEO]),
    "classification_head": (
        ClassificationHead,
        dict(num_classes=5, hidden_units=9, dropout_rate=0.25),
        [(2, 8), (2, 3)],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_get_config_equals_arguments(case):
    cls, kwargs, _ = CASES[case]
    layer = cls(**kwargs, name=f"{case}_layer")
    config = layer.get_config()
    for argument, value in kwargs.items():
        assert config[argument] == value, argument
        assert getattr(layer, argument) == value, argument
    clone = cls.from_config(config)
    assert clone.get_config() == config


@pytest.mark.parametrize("case", sorted(CASES))
def test_saved_model_reloads(case, rng, tmp_path):
    cls, kwargs, shapes = CASES[case]
    inputs = [keras.Input(shape[1:]) for shape in shapes]
    inputs = inputs if len(inputs) > 1 else inputs[0]
    layer = cls(**kwargs)
    model = keras.Model(inputs, layer(inputs))
    randomize_weights(layer, rng, scale=0.3)
    data = [rng.normal(size=shape).astype("float32") for shape in shapes]
    data = data if len(data) > 1 else data[0]
    expected = to_numpy(model(data, training=False))

    path = tmp_path / f"{case}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(to_numpy(loaded(data, training=False)), expected)
    assert isinstance(loaded.layers[-1], cls)
    assert loaded.layers[-1].get_config() == layer.get_config()


def test_mbconv3d_callable_activation_config():
    layer = MBConv3D(8, 2.0, activation=keras.activations.gelu)
    assert layer.get_config()["activation"] == "gelu"


INVALID = [
    (VideoStem, dict(filters=0), "filters"),
    (VideoStem, dict(filters=8, temporal_kernel=4), "temporal_kernel"),
    (VideoStem, dict(filters=8, spatial_stride=3), "spatial_stride"),
    (MBConv3D, dict(filters=8, expansion=0), "expansion"),
    (MBConv3D, dict(filters=8, expansion=2.0, temporal_kernel=2), "temporal_kernel"),
    (MBConv3D, dict(filters=8, expansion=2.0, spatial_kernel=4), "spatial_kernel"),
    (MBConv3D, dict(filters=8, expansion=2.0, spatial_stride=3), "spatial_stride"),
    (MBConv3D, dict(filters=8, expansion=2.0, squeeze_excite_ratio=-0.1), "squeeze_excite_ratio"),
    (MBConv3D, dict(filters=8, expansion=2.0, shortcut="residual"), "shortcut"),
    (MBConv3D, dict(filters=8, expansion=2.0, spatial_stride=2, shortcut="identity"), "shortcut"),
    (MBConv3D, dict(filters=8, expansion=2.0, activation="no_such_fn"), "activation"),
    (MBConv3D, dict(filters=-1, expansion=2.0), "filters"),
    (GloRe3D, dict(state_channels=0), "state_channels"),
    (GloRe3D, dict(num_nodes=2.5), "num_nodes"),
    (GloRe3D, dict(normalize="yes"), "normalize"),
    (TSFusion, dict(operation="add"), "operation"),
    (TSFusion, dict(operation="none", merge="max"), "merge"),
    (TSFusion, dict(operation="time_strided_conv", conv_kernel=4), "conv_kernel"),
    (
        TSFusion,
        dict(operation="time_strided_conv", conv_channel_multiplier=0),
        "conv_channel_multiplier",
    ),
    (StreamHead, dict(filters=None), "filters"),
    (ClassificationHead, dict(num_classes=0), "num_classes"),
    (ClassificationHead, dict(num_classes=4, hidden_units=0), "hidden_units"),
    (ClassificationHead, dict(num_classes=4, dropout_rate=1.0), "dropout_rate"),
]


@pytest.mark.parametrize(
    "cls, kwargs, field", INVALID, ids=[f"{c.__name__}-{f}" for c, _, f in INVALID]
)
def test_invalid_arguments_name_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        cls(**kwargs)
