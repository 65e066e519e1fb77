"""Every layer: get_config() equals its arguments, from_config round trip, and a
saved .keras model reloads with safe_mode=True and gives identical outputs."""

import pathlib
import warnings

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
from tsnet_keras.layers.super_mbconv3d import SuperMBConv3D
from tsnet_keras.layers.super_stream_head import SuperStreamHead

VIDEO = (2, 4, 6, 6, 8)
DENSE = (2, 8, 6, 6, 4)

# (class, non-default constructor arguments, input shapes)
CASES = {
    "stem": (
        VideoStem,
        dict(channels=5, temporal_kernel=3, spatial_kernel=5, spatial_stride=1),
        [VIDEO],
    ),
    "mbconv3d": (
        MBConv3D,
        dict(
            channels=12,
            expansion=1.5,
            temporal_kernel=5,
            spatial_kernel=3,
            spatial_stride=2,
            squeeze_excite=0.25,
            activation="relu",
            shortcut="projection",
        ),
        [VIDEO],
    ),
    "glore": (GloRe3D, dict(state_channels=6, num_nodes=3, normalize=False), [VIDEO]),
    "ts_fusion": (
        TSFusion,
        dict(
            fusion="time_strided_conv",
            merge="concat",
            conv_kernel=3,
            conv_channel_multiplier=3,
        ),
        [VIDEO, DENSE],
    ),
    "stream_head": (StreamHead, dict(channels=7), [VIDEO]),
    "classification_head": (
        ClassificationHead,
        dict(num_classes=5, hidden_units=9, dropout_rate=0.25, stream_dropout=0.5, seed=4),
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
    (VideoStem, dict(channels=0), "channels"),
    (VideoStem, dict(channels=8, temporal_kernel=4), "temporal_kernel"),
    (VideoStem, dict(channels=8, spatial_stride=3), "spatial_stride"),
    (MBConv3D, dict(channels=8, expansion=0), "expansion"),
    (MBConv3D, dict(channels=8, expansion=2.0, temporal_kernel=2), "temporal_kernel"),
    (MBConv3D, dict(channels=8, expansion=2.0, spatial_kernel=4), "spatial_kernel"),
    (MBConv3D, dict(channels=8, expansion=2.0, spatial_stride=3), "spatial_stride"),
    (MBConv3D, dict(channels=8, expansion=2.0, squeeze_excite=-0.1), "squeeze_excite"),
    (MBConv3D, dict(channels=8, expansion=2.0, shortcut="residual"), "shortcut"),
    (MBConv3D, dict(channels=8, expansion=2.0, spatial_stride=2, shortcut="identity"), "shortcut"),
    (MBConv3D, dict(channels=8, expansion=2.0, activation="no_such_fn"), "activation"),
    (MBConv3D, dict(channels=-1, expansion=2.0), "channels"),
    (GloRe3D, dict(state_channels=0), "state_channels"),
    (GloRe3D, dict(num_nodes=2.5), "num_nodes"),
    (GloRe3D, dict(normalize="yes"), "normalize"),
    (TSFusion, dict(fusion="add"), "fusion"),
    (TSFusion, dict(fusion="none", merge="max"), "merge"),
    (TSFusion, dict(fusion="time_strided_conv", conv_kernel=4), "conv_kernel"),
    (
        TSFusion,
        dict(fusion="time_strided_conv", conv_channel_multiplier=0),
        "conv_channel_multiplier",
    ),
    (StreamHead, dict(channels=None), "channels"),
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


# ----------------------------------------------- configs from before `filters` -> `channels`
DATA = pathlib.Path(__file__).parent / "data"
OLD_NAMES = {"channels": "filters", "max_channels": "max_filters"}


def test_a_model_saved_before_the_rename_loads_and_computes_the_same():
    """`old_layer_names.keras` was saved by the code before the rename (commit 0891f2f):
    VideoStem(filters=4), MBConv3D(filters=4 / 6), StreamHead(filters=5), BN statistics
    randomised; `old_layer_names_output.npy` is its output on the input below."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # an old file is not the caller's doing
        model = keras.saving.load_model(DATA / "old_layer_names.keras", safe_mode=True)
    assert [layer.channels for layer in model.layers[1:]] == [4, 4, 6, 5]
    assert [layer.squeeze_excite for layer in model.layers[2:4]] == [0.25, 0.0]  # was *_ratio
    x = np.random.default_rng(2).normal(size=(2, 4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x, training=False)),
                               np.load(DATA / "old_layer_names_output.npy"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls, kwargs", [
    (VideoStem, dict(channels=5)),
    (MBConv3D, dict(channels=8, expansion=2.0)),
    (StreamHead, dict(channels=7)),
    (SuperStreamHead, dict(channels=6, max_in_base=8, max_in_extra=4)),
    (SuperMBConv3D, dict(max_channels=16, max_inner_channels=32, kernel_choices=((3, 3),),
                         max_in_base=8)),
])
def test_old_width_names_read_from_configs_and_warn_as_arguments(cls, kwargs):
    config = cls(**kwargs, name="layer").get_config()
    assert not set(OLD_NAMES.values()) & set(config)
    old_config = {OLD_NAMES.get(key, key): value for key, value in config.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert cls.from_config(old_config).get_config() == config
    old_kwargs = {OLD_NAMES.get(key, key): value for key, value in kwargs.items()}
    with pytest.warns(DeprecationWarning, match="`filters`|`max_filters`"):
        layer = cls(**old_kwargs, name="layer")
    assert layer.get_config() == config
    new, old = next((n, o) for n, o in OLD_NAMES.items() if n in kwargs)
    assert getattr(layer, old) == getattr(layer, new) == kwargs[new]


def test_fusion_layers_read_their_old_op_names():
    """`operation` / `operations` (before the rename to the architecture's `fusion`)."""
    from tsnet_keras.layers.super_ts_fusion import SuperTSFusion

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # an old config is not the caller's doing
        layer = TSFusion.from_config({"name": "f", "operation": "time_to_channel", "merge": "concat"})
        assert layer.fusion == "time_to_channel" and layer.get_config()["fusion"] == "time_to_channel"
        assert "operation" not in layer.get_config()
        super_layer = SuperTSFusion.from_config(
            {"name": "s", "operations": ["none", "time_strided_conv"], "max_dense_channels": 8,
             "alpha": 8})
    assert super_layer.fusions == ("none", "time_strided_conv")
    with pytest.warns(DeprecationWarning, match="`operation` is deprecated, pass `fusion`"):
        old = TSFusion(operation="time_strided_sample")
    assert old.fusion == "time_strided_sample"
    with pytest.warns(DeprecationWarning, match="use `fusion`"):
        assert old.operation == "time_strided_sample"
    with pytest.raises(TypeError, match="not both"):
        TSFusion("none", operation="time_to_channel")


# ------------------------- squeeze-excite: `squeeze_excite` (ratio), `squeeze_excite_channels` (width)
def test_mbconv3d_reads_its_old_squeeze_excite_names():
    """`squeeze_excite_ratio` (argument, config key, attribute) and `squeeze_excite_hidden`."""
    layer = MBConv3D(channels=8, expansion=2.0, squeeze_excite=0.25, name="block")
    config = layer.get_config()
    assert config["squeeze_excite"] == 0.25 and "squeeze_excite_ratio" not in config
    old_config = {("squeeze_excite_ratio" if k == "squeeze_excite" else k): v for k, v in config.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # an old config is not the caller's doing
        assert MBConv3D.from_config(old_config).get_config() == config
    with pytest.warns(DeprecationWarning, match="`squeeze_excite_ratio` is deprecated, pass `squeeze_excite`"):
        old = MBConv3D(channels=8, expansion=2.0, squeeze_excite_ratio=0.25, name="block")
    assert old.get_config() == config
    assert old.squeeze_excite_channels == MBConv3D.squeeze_excite_channels(16, 0.25) == 8
    with pytest.warns(DeprecationWarning, match="use `squeeze_excite`"):
        assert old.squeeze_excite_ratio == 0.25
    with pytest.warns(DeprecationWarning, match="use `squeeze_excite_channels`"):
        assert old.squeeze_excite_hidden == 8
    with pytest.raises(TypeError, match="not both"):
        MBConv3D(channels=8, expansion=2.0, squeeze_excite=0.5, squeeze_excite_ratio=0.25)


def test_super_mbconv3d_reads_its_old_squeeze_excite_names():
    """`max_se_hidden` (argument, config key, attribute), call `se_hidden` and choice key."""
    kwargs = dict(max_channels=8, max_inner_channels=16, kernel_choices=((3, 3),), max_in_base=8)
    layer = SuperMBConv3D(**kwargs, max_squeeze_excite_channels=8, name="block")
    config = layer.get_config()
    old_config = {("max_se_hidden" if k == "max_squeeze_excite_channels" else k): v
                  for k, v in config.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert SuperMBConv3D.from_config(old_config).get_config() == config
    with pytest.warns(DeprecationWarning, match="`max_se_hidden` is deprecated"):
        old = SuperMBConv3D(**kwargs, max_se_hidden=8, name="block")
    assert old.get_config() == config
    with pytest.warns(DeprecationWarning, match="use `max_squeeze_excite_channels`"):
        assert old.max_se_hidden == 8
    layer.build()
    randomize_weights(layer, np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(2, 4, 6, 6, 8)).astype("float32")
    new = to_numpy(layer(x, squeeze_excite_channels=4, training=False))
    with pytest.warns(DeprecationWarning, match="`se_hidden` is deprecated"):
        np.testing.assert_array_equal(to_numpy(layer(x, se_hidden=4, training=False)), new)
    assert not np.allclose(to_numpy(layer(x, squeeze_excite_channels=8, training=False)), new)
    with pytest.raises(TypeError, match="unexpected arguments"):
        layer(x, hidden=4)
    choice = {"in_base": 8, "channels": 8, "inner_channels": 16, "temporal_kernel": 3,
              "spatial_kernel": 3, "projection": False}
    weights = layer.choice_weights({**choice, "squeeze_excite_channels": 4})
    old_weights = layer.choice_weights({**choice, "se_hidden": 4})
    assert weights["se_reduce_kernel"].shape == (16, 4)
    assert weights.keys() == old_weights.keys()


def test_every_layer_class_is_registered_under_its_own_name():
    """A `.keras` file names each layer `tsnet_keras>Class`: a class whose registration
    decorator slipped onto a neighbouring function would not load."""
    import inspect

    import tsnet_keras.layers as layers
    from tsnet_keras.layers import super_attention, super_mbconv3d, super_stream_head, super_ts_fusion

    modules = (layers, super_attention, super_mbconv3d, super_stream_head, super_ts_fusion)
    classes = {obj for module in modules for obj in vars(module).values()
               if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer)
               and obj.__module__.startswith("tsnet_keras.")}
    assert SuperMBConv3D in classes
    for cls in classes:
        assert keras.saving.get_registered_name(cls) == f"tsnet_keras>{cls.__name__}", cls
