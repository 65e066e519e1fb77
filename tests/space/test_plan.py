"""The typed layer specs of `layer_plan`: fields instead of parsed names, widths that
agree with the layers they make, and one cost per spec."""

import dataclasses

import pytest

from tsnet_keras import presets
from tsnet_keras.accounting import complexity
from tsnet_keras.layers import ClassificationHead, GloRe3D, MBConv3D, StreamHead, TSFusion, VideoStem
from tsnet_keras.space import auto_tsnet
from tsnet_keras.space.plan import (
    ClassifierSpec,
    FusionSpec,
    GloReSpec,
    LayerSpec,
    MBConvSpec,
    StemSpec,
    StreamHeadSpec,
    layer_plan,
)

LAYER_OF = {
    StemSpec: VideoStem,
    MBConvSpec: MBConv3D,
    GloReSpec: GloRe3D,
    FusionSpec: TSFusion,
    StreamHeadSpec: StreamHead,
    ClassifierSpec: ClassificationHead,
}


def _plans():
    yield presets.x3d("S")
    yield presets.get("auto_tsnet_s")
    space = auto_tsnet()
    for seed in range(4):
        yield space.sample(seed=seed)


@pytest.mark.parametrize("arch", list(_plans()), ids=lambda a: f"{a.dense is not None}")
def test_specs_are_typed_frozen_and_named_from_their_fields(arch):
    plan = layer_plan(arch)
    assert {type(spec) for spec in plan} <= set(LAYER_OF)
    names = set()
    for spec in plan:
        assert isinstance(spec, LayerSpec)
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.name = "renamed"
        names.add(spec.name)
        if isinstance(spec, MBConvSpec):
            assert spec.name == f"{spec.stream}_g{spec.group:02d}_b{spec.block:02d}"
            assert spec.projection == (spec.spatial_stride != 1 or spec.in_channels != spec.channels)
        elif isinstance(spec, GloReSpec):
            assert spec.name == f"{spec.stream}_g{spec.group:02d}_glore"
        elif isinstance(spec, FusionSpec):
            assert spec.name == f"fusion_g{spec.group:02d}"
            assert spec.part == "fusion" and spec.input_stream == "sparse"
    assert len(names) == len(plan), "layer names must be unique"
    # Blocks of a group are numbered 0, 1, ... in plan order; only block 0 strides.
    for stream, _ in arch.streams():
        blocks = [(s.group, s.block, s.spatial_stride) for s in plan
                  if isinstance(s, MBConvSpec) and s.stream == stream]
        for group, block, stride in blocks:
            assert block == sum(1 for g, b, _ in blocks if g == group and b < block)
            assert block == 0 or stride == 1


def test_layers_made_by_specs_have_the_spec_widths():
    plan = layer_plan(presets.get("auto_tsnet_s"), num_classes=7)
    for spec in plan:
        layer = spec.make_layer()
        assert type(layer) is LAYER_OF[type(spec)] and layer.name == spec.name
        if isinstance(spec, MBConvSpec):
            assert (layer.channels, layer.inner, layer.squeeze_excite_channels) == (
                spec.channels, spec.inner_channels, spec.squeeze_excite_channels)
            assert layer.spatial_stride == spec.spatial_stride
        elif isinstance(spec, GloReSpec):
            assert layer.resolved_widths(spec.channels) == (spec.state_channels, spec.num_nodes)
        elif isinstance(spec, FusionSpec):
            fused = TSFusion.fused_channels(spec.fusion, spec.dense_channels, spec.alpha)
            assert fused == spec.fused_channels and layer.merge == spec.merge
        elif isinstance(spec, ClassifierSpec):
            assert (layer.num_classes, layer.hidden_units) == (7, spec.hidden_units)
        else:
            assert layer.channels == spec.channels


def test_complexity_is_the_sum_of_the_spec_costs_by_part():
    arch = presets.get("auto_tsnet_s")
    cost = complexity(arch, crop=112)
    plan = layer_plan(arch)
    assert [layer.name for layer in cost.layers] == [spec.name for spec in plan]
    assert [layer.part for layer in cost.layers] == [spec.part for spec in plan]
    parts = cost.by_stream()
    assert set(parts) == {"sparse", "dense", "fusion", "classifier"}
    assert sum(parts.values()) == cost.macs


def test_sum_merge_with_a_mismatched_fused_width_is_refused_naming_the_group():
    arch = presets.get("auto_tsnet_s")
    data = arch.to_dict()
    data["fusion_merge"] = "sum"
    with pytest.raises(ValueError, match=r"sparse group \d+: fusion .* merge='sum'"):
        layer_plan(type(arch).from_dict(data))


def test_a_spec_reads_its_old_width_name_out_channels():
    """`out_channels` was the specs' name of what layers and JSON call `channels`."""
    for spec in layer_plan(presets.get("auto_tsnet_s"), num_classes=7):
        with pytest.warns(DeprecationWarning, match="`out_channels` is deprecated, use `channels`"):
            assert spec.out_channels == spec.channels
        assert "out_channels" not in {f.name for f in dataclasses.fields(spec)}
