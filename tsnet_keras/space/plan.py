"""The layer plan of an architecture: every layer with its exact widths, in order.

`layer_plan(arch)` is the single place that turns an `Architecture` into a
sequence of layer specifications (channel flow, shortcut rule, squeeze-excite
placement, fusion widths). The model builder instantiates it and the accounting
counts it, so the two cannot drift apart.

Rules (X3D and SlowFast conventions; the width and placement rules themselves
live in `tsnet_keras.space.rules`):

- squeeze-excite on every other block of a stage (blocks 0, 2, 4, ... counted
  across the stage's groups), hidden width `round_width(inner * ratio)`;
- shortcut: identity when stride is 1 and widths match, else a 1x1x1 projection
  (+BN) with the block's stride;
- after group i: GloRe on each stream whose group i has `attention=True`, then
  the TS-Fusion of sparse group i, which reads dense group i's output (after
  its GloRe) and concatenates (or sums) into the sparse stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tsnet_keras.space.architecture import Architecture
from tsnet_keras.space.rules import (
    block_squeeze_excite_width,
    fused_width,
    glore_widths,
    round_width,
    stage_position,
)


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the plan.

    Args:
        kind: "stem", "mbconv", "glore", "fusion", "stream_head" or "classifier".
        name: the Keras layer name used by the builder.
        stream: "sparse", "dense" or "" (fusion, classifier).
        group: block-group index, or -1.
        in_channels: input channels (of the sparse input for fusion).
        out_channels: output channels.
        spatial_stride: spatial stride the layer applies.
        options: kind-specific settings (kernels, expansion, SE width, ...).
    """

    kind: str
    name: str
    stream: str
    group: int
    in_channels: int
    out_channels: int
    spatial_stride: int = 1
    options: dict = field(default_factory=dict)


def glore_spec(name: str, stream: str, group: int, channels: int) -> LayerSpec:
    """The GloRe block after a group: widths from `rules.glore_widths`."""
    states, nodes = glore_widths(channels)
    return LayerSpec(
        "glore", name, stream, group, channels, channels,
        options={"state_channels": states, "num_nodes": nodes},
    )


def layer_plan(arch: Architecture, num_classes: int = 400) -> list:
    """Every layer of `arch`, in the order the builder creates them.

    Raises:
        ValueError: for a sum merge whose fused width differs from the sparse width.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive int, got {num_classes!r}.")
    plan = []
    width = {}
    for name, stream in arch.streams():
        plan.append(_stem_spec(name, stream))
        width[name] = stream.stem.channels

    for index in range(len(arch.sparse.groups)):
        for name, stream in arch.streams():
            for block in range(stream.groups[index].repeats):
                spec = _mbconv_spec(arch, name, stream, index, block, width[name])
                plan.append(spec)
                width[name] = spec.out_channels
        for name, stream in arch.streams():
            if stream.groups[index].attention:
                plan.append(glore_spec(f"{name}_g{index:02d}_glore", name, index, width[name]))
        fusion = _fusion_spec(arch, index, width)
        if fusion is not None:
            plan.append(fusion)
            width["sparse"] = fusion.out_channels

    plan.extend(_head_specs(arch, width, num_classes))
    return plan


def _stem_spec(name: str, stream) -> LayerSpec:
    """The stem of one stream."""
    stem = stream.stem
    return LayerSpec(
        "stem", f"{name}_stem", name, -1, 3, stem.channels, stem.spatial_stride,
        {"temporal_kernel": stem.temporal_kernel, "spatial_kernel": stem.spatial_kernel},
    )


def _mbconv_spec(
    arch: Architecture, name: str, stream, index: int, block: int, in_channels: int
) -> LayerSpec:
    """Block `block` of group `index` of one stream, reading `in_channels`."""
    group = stream.groups[index]
    stride = group.stride if block == 0 else 1
    cin, cout = in_channels, group.channels
    inner = group.inner_channels
    se_hidden = block_squeeze_excite_width(
        inner, group.squeeze_excite, stage_position(stream.groups, index, block)
    )
    return LayerSpec(
        "mbconv", f"{name}_g{index:02d}_b{block:02d}", name, index, cin, cout,
        stride,
        {
            "expansion": group.expansion,
            "inner_channels": inner,
            "temporal_kernel": group.temporal_kernel,
            "spatial_kernel": group.spatial_kernel,
            "se_hidden": se_hidden,
            "squeeze_excite_ratio": group.squeeze_excite if se_hidden else 0.0,
            "projection": stride != 1 or cin != cout,
            "residual_activation": arch.residual_activation,
        },
    )


def _fusion_spec(arch: Architecture, index: int, width: dict):
    """The TS-Fusion after group `index`, or None when there is none."""
    operation = arch.sparse.groups[index].fusion
    if arch.dense is None or operation == "none":
        return None
    added = fused_width(operation, width["dense"], arch.alpha)
    if arch.fusion_merge == "sum":
        if added != width["sparse"]:
            raise ValueError(
                f"sparse group {index}: fusion {operation!r} with merge='sum' gives "
                f"{added} channels but the sparse stream has {width['sparse']}; "
                "use merge='concat' or another op."
            )
        out = width["sparse"]
    else:
        out = width["sparse"] + added
    return LayerSpec(
        "fusion", f"fusion_g{index:02d}", "", index, width["sparse"], out,
        options={
            "operation": operation,
            "dense_channels": width["dense"],
            "alpha": arch.alpha,
            "fused_channels": added,
            "merge": arch.fusion_merge,
        },
    )


def _head_specs(arch: Architecture, width: dict, num_classes: int) -> list:
    """The stream heads, then the classifier over their concatenated features."""
    specs = []
    features = 0
    for name, stream in arch.streams():
        specs.append(
            LayerSpec("stream_head", f"{name}_head", name, -1, width[name], stream.head_channels)
        )
        features += stream.head_channels
    specs.append(
        LayerSpec(
            "classifier", "classifier", "", -1, features, num_classes,
            options={"hidden_units": arch.head_units, "dropout_rate": arch.dropout_rate},
        )
    )
    return specs


__all__ = ["LayerSpec", "fused_width", "glore_spec", "layer_plan", "round_width"]
