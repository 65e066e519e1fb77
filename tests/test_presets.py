"""The preset registry and `tsnet_keras.build_model` by name, with weights."""

import inspect

import numpy as np
import pytest

import tsnet_keras
from tsnet_keras import build_model, presets
from tsnet_keras.accounting import complexity
from tsnet_keras.space import Architecture, auto_tsnet


def test_registry_names_the_paper_models():
    names = presets.names()
    for name in ("x3d_xs", "x3d_s", "x3d_m", "x3d_l", "manual_tsnet_70", "auto_tsnet_s"):
        assert name in names
    assert len(set(names)) == len(names)
    assert presets.get("x3d_s") == presets.x3d("S")
    assert presets.info("x3d_s").test_crop == presets.X3D_SIZES["S"]["test_crop"]
    assert all(presets.info(name).source for name in names)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="x3d_s"):
        presets.get("x3d_xxl")


def test_manual_tsnet_70_is_the_solved_baseline():
    arch = presets.get("manual_tsnet_70")
    cost = complexity(arch)
    assert arch == presets.manual_tsnet(0.70)
    assert cost.by_stream()["sparse"] / cost.macs == pytest.approx(0.70, abs=0.05)


def test_auto_tsnet_s_follows_what_the_paper_states():
    arch = presets.get("auto_tsnet_s")
    auto_tsnet().validate(arch)  # inside the paper's space (Table 1 / 2)
    assert arch.two_stream and (arch.sparse.frames, arch.dense.frames) == (4, 32)
    # GloRe only in the sparse stream, two blocks, both in stage 3 (section 5.5.3).
    glore = [(name, g.stage) for name, s in arch.streams() for g in s.groups if g.attention]
    assert glore == [("sparse", 3), ("sparse", 3)]
    groups = [g for _, stream in arch.streams() for g in stream.groups]
    assert {(g.temporal_kernel, g.spatial_kernel) for g in groups} == {(1, 5)}
    # Paper: 2.46 one-view GFLOPs (Table 5), 8.6 M params (Table 11); the
    # assumed widths give 2.32 G and 8.27 M.
    cost = complexity(arch, crop=160)
    assert cost.gflops == pytest.approx(2.46, rel=0.07)
    assert cost.params == pytest.approx(8.6e6, rel=0.05)


def test_auto_tsnet_l_doubles_the_depth():
    small, large = presets.get("auto_tsnet_s"), presets.get("auto_tsnet_l")
    assert large.sparse.depth == 2 * small.sparse.depth
    assert presets.info("auto_tsnet_l").test_crop == 356


def test_build_model_has_a_real_signature():
    parameters = inspect.signature(tsnet_keras.build_model).parameters
    assert list(parameters) == ["arch", "num_classes", "crop", "weights", "name",
                                "stream_dropout"]
    kinds = {p.kind for p in parameters.values()}
    assert inspect.Parameter.VAR_POSITIONAL not in kinds
    assert inspect.Parameter.VAR_KEYWORD not in kinds


def test_build_model_by_name_loads_keras_weights(tmp_path):
    source = build_model("x3d_xs", num_classes=5, crop=32)
    assert source.name == "x3d_xs" and source.num_classes == 5
    assert isinstance(source.arch, Architecture)
    path = tmp_path / "x3d_xs.weights.h5"
    source.save_weights(path)
    loaded = build_model("x3d_xs", num_classes=5, crop=32, weights=path)
    x = np.random.default_rng(0).normal(size=(1, 4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(loaded(x, training=False)), np.asarray(source(x, training=False)), atol=1e-6
    )


def test_build_model_loads_a_pytorch_x3d_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    from tests.models.pytorchvideo_x3d import reference_x3d

    reference = reference_x3d("XS", 33, num_classes=6)
    path = tmp_path / "x3d_xs.pyth"
    torch.save(reference.state_dict(), path)
    model = build_model("x3d_xs", crop=33, weights=path)
    assert model.num_classes == 6
    x = torch.randn(1, 3, 4, 33, 33, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x).numpy()
    actual = np.asarray(model(x.permute(0, 2, 3, 4, 1).numpy(), training=False))
    assert np.abs(actual - expected).max() <= 1e-4 * np.abs(expected).max()


def test_build_model_rejects_mismatched_weights(tmp_path):
    with pytest.raises(ValueError, match="x3d_\\* presets only"):
        build_model("manual_tsnet_70", weights=tmp_path / "model.pyth")
    with pytest.raises(ValueError, match="weights.h5"):
        build_model("x3d_xs", weights=tmp_path / "model.keras")
