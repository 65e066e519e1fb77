"""Analytic params/MACs against the published X3D figures (anchors.md)."""

import pytest

from tsnet_keras import presets
from tsnet_keras.accounting import complexity
from tsnet_keras.space import auto_tsnet

# size: (params incl. BN affine, conv+FC params, GMACs at train crop, GMACs at test crop)
X3D_ANCHORS = {
    "XS": (3_794_322, 3_762_858, 0.605, None),
    "S": (3_794_322, 3_762_858, 1.963, 2.722),
    "M": (3_794_322, 3_762_858, 4.732, 6.181),
    "L": (6_153_432, 6_087_120, 18.368, 24.764),
}


@pytest.mark.parametrize("size", sorted(X3D_ANCHORS))
def test_x3d_matches_published_figures(size):
    params, conv_fc, train_gmacs, test_gmacs = X3D_ANCHORS[size]
    arch = presets.x3d(size)
    crops = presets.X3D_SIZES[size]
    train = complexity(arch, crop=crops["train_crop"])
    assert train.params == params
    assert train.params_conv_fc == conv_fc
    assert round(train.gflops, 3) == train_gmacs
    if test_gmacs is not None:
        assert round(complexity(arch, crop=crops["test_crop"]).gflops, 3) == test_gmacs


def test_x3d_s_breakdown_is_consistent():
    cost = complexity(presets.x3d("S"))
    assert sum(layer.macs for layer in cost.layers) == cost.macs
    assert cost.layers[0].name == "sparse_stem" and cost.layers[0].params == 3 * 24 * 9 + 5 * 24 + 48
    assert cost.layers[0].output_shape == (13, 80, 80, 24)
    head = [layer for layer in cost.layers if layer.kind == "classifier"][0]
    assert head.params == 432 * 2048 + 2048 * 400 + 400
    assert "sparse_g00_b00" in cost.table()


def test_num_classes_and_crop_change_what_they_should():
    arch = presets.x3d("S")
    a, b = complexity(arch, num_classes=400), complexity(arch, num_classes=10)
    assert a.params - b.params == 2048 * 390 + 390
    assert complexity(arch, crop=(160, 160)).macs == complexity(arch, crop=160).macs
    with pytest.raises(ValueError, match="crop"):
        complexity(arch, crop=0)
    with pytest.raises(ValueError, match="num_classes"):
        complexity(arch, num_classes=0)


def test_an_integral_float_crop_counts_as_the_int_and_others_are_refused_naming_crop():
    arch = presets.x3d("S")
    assert complexity(arch, crop=160.0).macs == complexity(arch, crop=160).macs
    assert complexity(arch, crop=(160.0, 128)).macs == complexity(arch, crop=(160, 128)).macs
    for bad in (160.5, float("nan"), float("inf"), "160", None, (160,), (160, 0), True, -3.0):
        with pytest.raises(ValueError, match="`crop`"):
            complexity(arch, crop=bad)


def test_glore_and_fusion_costs_follow_anchors():
    space = auto_tsnet()
    arch = space.architecture({"sparse[10].attention": True, "sparse[0].fusion": "time_strided_conv"})
    cost = {layer.name: layer for layer in complexity(arch).layers}
    glore = cost["sparse_g10_glore"]
    channels = arch.sparse.groups[10].channels
    state, nodes = channels // 2, channels // 4
    assert glore.params == (
        channels * state + state + channels * nodes + nodes + nodes * nodes + nodes
        + state * state + state * channels + 2 * channels
    )
    fusion = cost["fusion_g00"]
    dense = arch.dense.groups[0].channels
    assert fusion.params == 5 * dense * 2 * dense + 2 * 2 * dense
    assert fusion.output_shape[-1] == arch.sparse.groups[0].channels + 2 * dense


@pytest.mark.parametrize("share", [0.85, 0.70, 0.55])
def test_manual_tsnet_meets_its_constraints(share):
    arch = presets.manual_tsnet(share)
    target = complexity(presets.x3d("S")).macs
    cost = complexity(arch)
    assert abs(cost.macs / target - 1) <= 0.05
    assert abs(cost.by_stream()["sparse"] / cost.macs - share) <= 0.05
    assert [g.fusion for g in arch.sparse.groups].count("time_strided_conv") == 5
    # X3D-S macro structure in each stream.
    assert arch.sparse.depth == arch.dense.depth == 26
    assert {g.expansion for g in arch.sparse.groups} == {2.25}
