"""The shared width / placement / name rules of `tsnet_keras.space.rules`, and their users."""

import inspect

import pytest

from tsnet_keras import presets
from tsnet_keras.accounting import complexity, layer_cost
from tsnet_keras.layers import GloRe3D, MBConv3D, TSFusion
from tsnet_keras.search import MacsModel, layer_tables
from tsnet_keras.space import auto_tsnet
from tsnet_keras.space.architecture import FUSION_OPS as ARCHITECTURE_FUSION_OPS
from tsnet_keras.space.plan import FusionSpec, GloReSpec, MBConvSpec, layer_plan
from tsnet_keras.space.rules import (
    DEFAULT_CROP,
    FUSION_CONV_KERNEL,
    FUSION_CONV_MULTIPLIER,
    FUSION_OPS,
    block_squeeze_excite_width,
    fused_width,
    glore_widths,
    inner_width,
    same_output_size,
    squeeze_excite_width,
    stage_position,
)


@pytest.mark.parametrize("inner, hidden", [(54, 8), (108, 8), (216, 16), (432, 32)])
def test_squeeze_excite_width_is_x3d_s(inner, hidden):
    # X3D-S stage widths 24 / 48 / 96 / 192 x 2.25, SE ratio 1/16 (PyTorchVideo's widths).
    assert squeeze_excite_width(inner, 1 / 16) == hidden
    assert MBConv3D.squeeze_excite_channels(inner, 1 / 16) == hidden
    assert squeeze_excite_width(inner, 0.0) == 0


def test_squeeze_excite_on_every_other_block_of_a_stage_across_groups():
    groups = auto_tsnet().sparse.groups  # stage 1 = group 0 (1 block) + group 1 (2 blocks)
    assert (groups[0].stage, groups[1].stage, groups[2].stage) == (1, 1, 2)
    assert [stage_position(groups, 1, block) for block in range(2)] == [1, 2]
    assert stage_position(groups, 2, 0) == 0
    assert [block_squeeze_excite_width(54, 1 / 16, p) for p in range(4)] == [8, 0, 8, 0]
    assert block_squeeze_excite_width(54, 0.0, 0) == 0


def test_plan_squeeze_excite_follows_the_rule():
    arch = presets.x3d("S")
    hidden = [s.squeeze_excite_channels for s in layer_plan(arch) if isinstance(s, MBConvSpec)]
    # Stage depths 3 / 5 / 11 / 7: SE on blocks 0, 2, 4, ... of each stage.
    expected = []
    for depth, width in zip((3, 5, 11, 7), (8, 8, 16, 32)):
        expected += [width if block % 2 == 0 else 0 for block in range(depth)]
    assert hidden == expected


def test_inner_width_is_shared_by_architecture_and_layer():
    group = presets.x3d("S").sparse.groups[0]
    assert group.inner_channels == inner_width(group.channels, group.expansion) == 54
    assert MBConv3D(24, 2.25).inner == 54
    assert inner_width(10, 1.25) == 12  # round half to even, as Python's round


def test_fused_width_and_fusion_names_are_shared():
    assert ARCHITECTURE_FUSION_OPS is FUSION_OPS
    widths = [fused_width(op, 8, 4) for op in FUSION_OPS]
    assert widths == [0, 32, 8, FUSION_CONV_MULTIPLIER * 8]
    assert [TSFusion.fused_channels(op, 8, 4) for op in FUSION_OPS] == widths
    with pytest.raises(ValueError, match="fusion"):
        fused_width("time_to_frame", 8, 4)


def test_fusion_conv_defaults_match_accounting():
    fusion = TSFusion("time_strided_conv")
    assert (fusion.conv_kernel, fusion.conv_channel_multiplier) == (
        FUSION_CONV_KERNEL, FUSION_CONV_MULTIPLIER)
    spec = FusionSpec.of(0, 16, 8, "time_strided_conv", alpha=4, merge="concat")
    assert (spec.fused_channels, spec.channels) == (16, 32)
    params, bn, _, _ = layer_cost(spec, 4, 7, 7)
    assert params - 2 * bn == FUSION_CONV_KERNEL * 8 * 16


def test_glore_widths_are_shared():
    assert glore_widths(64) == (32, 16)
    assert GloRe3D.resolved_widths(64) == (32, 16)
    blocks = [s for s in layer_plan(presets.get("auto_tsnet_s")) if isinstance(s, GloReSpec)]
    assert blocks
    for spec in blocks:
        widths = (spec.state_channels, spec.num_nodes)
        assert widths == glore_widths(spec.in_channels)


def test_same_output_size():
    assert [same_output_size(size, 2) for size in (160, 7, 1)] == [80, 4, 1]
    assert same_output_size(13, 1) == 13


def test_default_crop_is_one_constant():
    assert DEFAULT_CROP == 160
    for function in (complexity, layer_tables, MacsModel):
        assert inspect.signature(function).parameters["crop"].default == DEFAULT_CROP
