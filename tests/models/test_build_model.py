"""build_model: params equal the analytic accounting, MACs agree with an
independent count from the traced graph, and models survive save/load."""

import numpy as np
import pytest

import keras

from tests.models.graph_macs import graph_macs
from tsnet_keras import build_model, presets
from tsnet_keras.accounting import complexity
from tsnet_keras.space import auto_tsnet


def trainable_params(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def dummy_inputs(arch, crop, batch=1):
    rng = np.random.default_rng(0)
    x = {
        name: rng.normal(size=(batch, stream.frames, crop, crop, 3)).astype("float32")
        for name, stream in arch.streams()
    }
    return x if arch.dense is not None else x["sparse"]


@pytest.mark.parametrize("size", ["XS", "S", "M", "L"])
def test_x3d_params_match_reference(size):
    crop = presets.X3D_SIZES[size]["train_crop"]
    arch = presets.x3d(size)
    model = build_model(arch, num_classes=400, crop=crop)
    cost = complexity(arch, crop=crop)
    expected = {"XS": 3_794_322, "S": 3_794_322, "M": 3_794_322, "L": 6_153_432}[size]
    assert trainable_params(model) == cost.params == expected
    assert model.count_params() == cost.params_keras


def test_x3d_s_macs_from_graph():
    arch = presets.x3d("S")
    model = build_model(arch, num_classes=400, crop=160)
    counted = graph_macs(model, dummy_inputs(arch, 160))
    analytic = complexity(arch, crop=160).macs
    # The stem's channel-wise temporal conv (0.5% of X3D-S) may be elementwise
    # multiply-adds that the graph walk does not see; everything else matches.
    assert abs(counted / analytic - 1) < 0.01


def test_manual_tsnet_params_and_macs():
    arch = presets.manual_tsnet(0.70)
    model = build_model(arch, num_classes=400, crop=160)
    cost = complexity(arch, crop=160)
    assert trainable_params(model) == cost.params
    assert model.count_params() == cost.params_keras
    assert abs(graph_macs(model, dummy_inputs(arch, 160)) / cost.macs - 1) < 0.01


# 50 sampled architectures in all: the first 12 in the default run, the other 38
# with `-m slow` (each builds a two-stream model and walks its graph, ~5-10 s).
SAMPLED_SEEDS = [pytest.param(seed, marks=[pytest.mark.slow] if seed >= 12 else []) for seed in range(50)]


@pytest.mark.parametrize("seed", SAMPLED_SEEDS)
def test_sampled_architectures_params_and_macs(seed):
    arch = auto_tsnet().sample(seed=seed)
    crop = 64  # spatial size does not change params; MACs are checked at this crop
    model = build_model(arch, num_classes=10, crop=crop)
    cost = complexity(arch, num_classes=10, crop=crop)
    assert trainable_params(model) == cost.params
    assert model.count_params() == cost.params_keras
    counted = graph_macs(model, dummy_inputs(arch, crop))
    assert abs(counted / cost.macs - 1) < 0.01, (counted, cost.macs)


def test_save_load_gives_identical_outputs(tmp_path):
    arch = auto_tsnet().sample(seed=7)
    model = build_model(arch, num_classes=5, crop=32)
    x = dummy_inputs(arch, 32, batch=2)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_config()["architecture"] == arch.to_dict()
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(loaded(x, training=False)),
    )


def test_stream_dropout_is_stored_and_acts_in_training_only(tmp_path):
    arch = auto_tsnet().sample(seed=7)
    model = build_model(arch, num_classes=5, crop=32, stream_dropout=0.5)
    assert model.get_layer("classifier").stream_dropout == 0.5
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_config()["stream_dropout"] == 0.5
    x = dummy_inputs(arch, 32, batch=2)
    plain = build_model(arch, num_classes=5, crop=32)
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x, training=False)),
                               keras.ops.convert_to_numpy(plain(x, training=False)), atol=1e-6)
    with pytest.raises(ValueError, match="stream_dropout"):
        build_model(presets.x3d("XS"), num_classes=3, crop=32, stream_dropout=0.5)


def test_single_stream_model_takes_one_tensor():
    arch = presets.x3d("XS")
    model = build_model(arch, num_classes=3, crop=32)
    out = model(dummy_inputs(arch, 32, batch=2), training=False)
    assert tuple(out.shape) == (2, 3)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="Architecture"):
        build_model({"sparse": {}})
    with pytest.raises(ValueError, match="crop"):
        build_model(presets.x3d("XS"), crop=0)
    with pytest.raises(ValueError, match="num_classes"):
        build_model(presets.x3d("XS"), num_classes=0)


def test_root_build_model_shows_its_signature():
    import inspect

    parameters = inspect.signature(build_model).parameters
    assert list(parameters) == ["arch", "num_classes", "crop", "weights", "name",
                                "stream_dropout"]
    assert build_model.__doc__ and "Args:" in build_model.__doc__
