"""load_pytorchvideo_x3d: converted X3D equals the PyTorch model in eval mode."""

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.models.pytorchvideo_x3d import pytorchvideo_create_x3d, reference_x3d  # noqa: E402
from tsnet_keras.models import load_pytorchvideo_x3d  # noqa: E402
from tsnet_keras.presets import X3D_SIZES  # noqa: E402

# 33 = 32 + 1: every stride-2 layer sees an odd size, where PyTorch's and Keras'
# padding agree (see tsnet_keras/models/pytorchvideo.py).
CROP = 33


def clip(size, crop=CROP, batch=2, seed=0):
    frames = X3D_SIZES[size]["frames"]
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, frames, crop, crop, generator=generator)


def torch_logits(model, x):
    with torch.no_grad():
        return model(x).numpy()


def keras_logits(model, x):
    return np.asarray(model(x.permute(0, 2, 3, 4, 1).numpy(), training=False))


def assert_close_to_scale(actual, expected):
    scale = np.abs(expected).max()
    assert scale > 0.1
    assert np.abs(actual - expected).max() <= 1e-4 * scale


@pytest.mark.parametrize("size", ["XS", "S"])
def test_converted_x3d_matches_pytorch(size):
    torch.manual_seed(1)
    reference = reference_x3d(size, CROP, num_classes=7)
    x = clip(size)
    model = load_pytorchvideo_x3d(reference.state_dict(), size=size)
    assert model.num_classes == 7
    assert_close_to_scale(keras_logits(model, x), torch_logits(reference, x))


def test_fine_tuning_gets_a_new_classifier_and_keeps_the_rest():
    torch.manual_seed(2)
    reference = reference_x3d("XS", CROP, num_classes=7)
    state = reference.state_dict()
    full = load_pytorchvideo_x3d(state, size="XS")
    tuned = load_pytorchvideo_x3d(state, size="XS", num_classes=3)
    assert tuned.num_classes == 3
    assert tuned.get_layer("classifier").logits_kernel.shape == (2048, 3)
    new = {"classifier/logits_kernel", "classifier/logits_bias"}
    kept = {w.path: np.asarray(w) for w in full.weights if w.path not in new}
    for weight in tuned.weights:
        if weight.path not in new:
            np.testing.assert_array_equal(np.asarray(weight), kept[weight.path], err_msg=weight.path)
    # The new head is freshly initialised: its logits are not the checkpoint's.
    x = clip("XS")
    assert np.abs(keras_logits(tuned, x)).max() < 0.5 * np.abs(torch_logits(reference, x)).max()


# PyTorchVideo name -> PySlowFast name, written from PySlowFast's module names
# (X3DStem conv_xy / conv / bn, ResBlock branch1 / branch1_bn, X3DTransform a / b / se / c,
# X3DHead conv_5 / lin_5 / projection).
SLOWFAST_FROM_PYTORCHVIDEO = [
    ("blocks.0.conv.conv_t.", "s1.pathway0_stem.conv_xy."),
    ("blocks.0.conv.conv_xy.", "s1.pathway0_stem.conv."),
    ("blocks.0.norm.", "s1.pathway0_stem.bn."),
    ("blocks.5.pool.pre_conv.", "head.conv_5."),
    ("blocks.5.pool.pre_norm.", "head.conv_5_bn."),
    ("blocks.5.pool.post_conv.", "head.lin_5."),
    ("blocks.5.proj.", "head.projection."),
]
SLOWFAST_BLOCK_PARTS = [
    ("branch1_conv.", "branch1."),
    ("branch1_norm.", "branch1_bn."),
    ("branch2.conv_a.", "branch2.a."),
    ("branch2.norm_a.", "branch2.a_bn."),
    ("branch2.conv_b.", "branch2.b."),
    ("branch2.norm_b.0.", "branch2.b_bn."),
    ("branch2.norm_b.1.block.0.", "branch2.se.fc1."),
    ("branch2.norm_b.1.block.2.", "branch2.se.fc2."),
    ("branch2.conv_c.", "branch2.c."),
    ("branch2.norm_c.", "branch2.c_bn."),
]


def slowfast_name(name):
    for old, new in SLOWFAST_FROM_PYTORCHVIDEO:
        if name.startswith(old):
            return new + name[len(old) :]
    _, stage, _, block, rest = name.split(".", 4)
    for old, new in SLOWFAST_BLOCK_PARTS:
        if rest.startswith(old):
            return f"s{int(stage) + 1}.pathway0_res{block}.{new}{rest[len(old):]}"
    raise AssertionError(name)


def test_pyslowfast_checkpoint_file_loads_like_the_state_dict(tmp_path):
    torch.manual_seed(3)
    reference = reference_x3d("XS", CROP, num_classes=5)
    state = {"module." + slowfast_name(k): v for k, v in reference.state_dict().items()}
    path = tmp_path / "x3d_xs_slowfast.pyth"
    torch.save({"epoch": 3, "model_state": state, "cfg": "TRAIN: ..."}, path)
    x = clip("XS")
    model = load_pytorchvideo_x3d(str(path), size="XS")
    assert_close_to_scale(keras_logits(model, x), torch_logits(reference, x))


def test_wrong_size_names_the_likely_one():
    reference = reference_x3d("XS", CROP, num_classes=4)
    # XS, S and M share their weights (depth 2.2); L is deeper.
    with pytest.raises(ValueError, match="fits size XS / S / M"):
        load_pytorchvideo_x3d(reference.state_dict(), size="L")


def test_unknown_weight_is_named():
    state = dict(reference_x3d("XS", CROP, num_classes=4).state_dict())
    state["blocks.5.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="blocks.5.extra.weight"):
        load_pytorchvideo_x3d(state, size="XS")


def test_reading_a_file_without_torch_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"tsnet_keras\[torch\]"):
        load_pytorchvideo_x3d(tmp_path / "x3d.pyth", size="XS")


@pytest.mark.skipif(pytorchvideo_create_x3d() is None, reason="pytorchvideo (and torchvision) not installed")
def test_replica_matches_pytorchvideo():
    torch.manual_seed(4)
    real = reference_x3d("XS", CROP, num_classes=6)
    replica = reference_x3d("XS", CROP, num_classes=6, replica=True)
    real_state = real.state_dict()
    assert {k: tuple(v.shape) for k, v in replica.state_dict().items()} == {
        k: tuple(v.shape) for k, v in real_state.items()
    }
    replica.load_state_dict(real_state)
    x = clip("XS")
    np.testing.assert_allclose(torch_logits(replica, x), torch_logits(real, x), atol=1e-5)
