"""The layer plan of an architecture: one typed, frozen spec per layer, in order.

`layer_plan(arch)` is the single place that turns an `Architecture` into a
sequence of layer specs (channel flow, shortcut rule, squeeze-excite placement,
fusion widths). Each spec owns what follows from it: its widths (through
`tsnet_keras.space.rules`), its cost (`spec.cost(frames, height, width)`, read
by `accounting` and the layer tables of the expected MACs), the Keras layer it
makes (`spec.make_layer()`, read by `TSNet`) and how that layer is wired into
the two-stream graph (`spec.inputs(features)` / `spec.store(features, output)`).
Group and block indices are fields, never parsed back from layer names.

| spec | layer | name |
|---|---|---|
| `StemSpec` | `VideoStem` | `{stream}_stem` |
| `MBConvSpec` | `MBConv3D` | `{stream}_g{group:02d}_b{block:02d}` |
| `GloReSpec` | `GloRe3D` | `{stream}_g{group:02d}_glore` |
| `FusionSpec` | `TSFusion` | `fusion_g{group:02d}` |
| `StreamHeadSpec` | `StreamHead` | `{stream}_head` |
| `ClassifierSpec` | `ClassificationHead` | `classifier` |

Rules (X3D and SlowFast conventions; the width and placement rules themselves
live in `tsnet_keras.space.rules`):

- squeeze-excite on every other block of a stage (blocks 0, 2, 4, ... counted
  across the stage's groups), hidden width `round_width(inner * ratio)`;
- shortcut: identity when stride is 1 and widths match, else a 1x1x1 projection
  (+BN) with the block's stride;
- after group i: GloRe on each stream whose group i has `attention=True`, then
  the TS-Fusion of sparse group i, which reads dense group i's output (after
  its GloRe) and concatenates (or sums) into the sparse stream.

Costs follow anchors.md: parameters include BN gamma/beta, MACs are the
multiply-adds of one view; batch norm, activations, pooling and residual
additions cost no MACs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from tsnet_keras.checks import check_int
from tsnet_keras.renames import renamed_attribute
from tsnet_keras.space.architecture import Architecture
from tsnet_keras.space.rules import (
    FUSION_CONV_KERNEL,
    block_squeeze_excite_width,
    fused_width,
    glore_widths,
    inner_width,
    needs_projection,
    round_width,
    same_output_size,
    stage_position,
)

# Keys of the `features` dict the specs wire through (besides the stream names).
POOLED = "pooled"
LOGITS = "logits"


class Cost(NamedTuple):
    """Cost of one layer for one view.

    Attributes:
        params: trainable parameters including BN gamma/beta.
        bn_channels: channels normalised by batch norms inside the layer.
        macs: multiply-adds.
        output_shape: (frames, height, width, channels) after the layer
            (`(channels,)` for the classifier).
    """

    params: int
    bn_channels: int
    macs: int
    output_shape: tuple


class LayerSpec:
    """What every layer spec provides (the subclasses are frozen dataclasses).

    Every spec has `name`, `stream`, `group`, `in_channels`, `channels` and
    `spatial_stride`; `kind` is a label for reports ("stem", "mbconv", "glore",
    "fusion", "stream_head", "classifier"), not something to switch on.
    """

    kind: ClassVar[str] = ""

    # `out_channels` was the specs' name of the output width (`channels` in layers and JSON).
    out_channels = renamed_attribute("out_channels", "channels")

    @property
    def part(self) -> str:
        """Where the layer's cost is reported: its stream, "fusion" or "classifier"."""
        return self.stream

    @property
    def input_stream(self) -> str:
        """The stream whose frames and spatial size the layer reads."""
        return self.stream

    def output_size(self, height, width) -> tuple:
        """Spatial size after the layer ("same" padding with the layer's stride)."""
        stride = self.spatial_stride
        return same_output_size(height, stride), same_output_size(width, stride)

    def cost(self, frames: int, height: int, width: int) -> Cost:
        """Params, BN channels, MACs and output shape for an input of this size."""
        raise NotImplementedError

    def make_layer(self):
        """The Keras layer of this spec, named `self.name`."""
        raise NotImplementedError

    def inputs(self, features: dict):
        """The layer's input from `features` (stream name -> tensor, plus `POOLED`)."""
        return features[self.stream]

    def store(self, features: dict, output) -> None:
        """Records the layer's output in `features`."""
        features[self.stream] = output


@dataclass(frozen=True)
class StemSpec(LayerSpec):
    """A stream's stem: 1 x k x k conv with stride, then a depthwise t x 1 x 1 conv, BN, ReLU."""

    kind: ClassVar[str] = "stem"
    group: ClassVar[int] = -1

    name: str
    stream: str
    in_channels: int
    channels: int
    spatial_stride: int
    temporal_kernel: int
    spatial_kernel: int

    def cost(self, frames, height, width) -> Cost:
        k, t = self.spatial_kernel, self.temporal_kernel
        cin, cout = self.in_channels, self.channels
        h, w = self.output_size(height, width)
        params = k * k * cin * cout + t * cout
        return Cost(params + 2 * cout, cout, frames * h * w * params, (frames, h, w, cout))

    def make_layer(self):
        from tsnet_keras.layers import VideoStem

        return VideoStem(
            channels=self.channels,
            temporal_kernel=self.temporal_kernel,
            spatial_kernel=self.spatial_kernel,
            spatial_stride=self.spatial_stride,
            name=self.name,
        )


@dataclass(frozen=True)
class MBConvSpec(LayerSpec):
    """Block `block` of group `group` of a stream: an X3D inverted bottleneck."""

    kind: ClassVar[str] = "mbconv"

    name: str
    stream: str
    group: int
    block: int
    in_channels: int
    channels: int
    spatial_stride: int
    expansion: float
    inner_channels: int
    temporal_kernel: int
    spatial_kernel: int
    squeeze_excite_channels: int
    squeeze_excite: float
    projection: bool
    residual_activation: str

    @classmethod
    def of(cls, stream: str, group: int, block: int, in_channels: int, channels: int,
           expansion: float, temporal_kernel: int, spatial_kernel: int, *, stride: int,
           squeeze_excite: float, stage_position: int, residual_activation: str) -> MBConvSpec:
        """The block with its derived widths: inner, squeeze-excite and the shortcut rule.

        `stride` is the group's stride (applied by block 0 only); `squeeze_excite`
        the group's ratio and `stage_position` the block's index in its stage.
        """
        inner = inner_width(channels, expansion)
        se_channels = block_squeeze_excite_width(inner, squeeze_excite, stage_position)
        stride = stride if block == 0 else 1
        return cls(
            name=f"{stream}_g{group:02d}_b{block:02d}", stream=stream, group=group, block=block,
            in_channels=in_channels, channels=channels, spatial_stride=stride,
            expansion=expansion, inner_channels=inner, temporal_kernel=temporal_kernel,
            spatial_kernel=spatial_kernel, squeeze_excite_channels=se_channels,
            squeeze_excite=squeeze_excite if se_channels else 0.0,
            projection=needs_projection(in_channels, channels, stride),
            residual_activation=residual_activation,
        )

    def cost(self, frames, height, width) -> Cost:
        cin, cout, inner = self.in_channels, self.channels, self.inner_channels
        t, k, hidden = self.temporal_kernel, self.spatial_kernel, self.squeeze_excite_channels
        h, w = self.output_size(height, width)
        in_positions, out_positions = frames * height * width, frames * h * w
        params = cin * inner + t * k * k * inner + inner * cout
        macs = in_positions * cin * inner + out_positions * (t * k * k * inner + inner * cout)
        bn = 2 * inner + cout
        if hidden:
            params += inner * hidden + hidden + hidden * inner + inner
            macs += 2 * inner * hidden
        if self.projection:
            params += cin * cout
            macs += out_positions * cin * cout
            bn += cout
        return Cost(params + 2 * bn, bn, macs, (frames, h, w, cout))

    def make_layer(self):
        from tsnet_keras.layers import MBConv3D

        return MBConv3D(
            channels=self.channels,
            expansion=self.expansion,
            temporal_kernel=self.temporal_kernel,
            spatial_kernel=self.spatial_kernel,
            spatial_stride=self.spatial_stride,
            squeeze_excite=self.squeeze_excite,
            residual_activation=self.residual_activation,
            name=self.name,
        )


@dataclass(frozen=True)
class GloReSpec(LayerSpec):
    """The GloRe block after group `group` of a stream (keeps the width)."""

    kind: ClassVar[str] = "glore"
    spatial_stride: ClassVar[int] = 1

    name: str
    stream: str
    group: int
    channels: int
    state_channels: int
    num_nodes: int

    @classmethod
    def of(cls, stream: str, group: int, channels: int) -> GloReSpec:
        """The block over `channels`: widths from `rules.glore_widths`."""
        states, nodes = glore_widths(channels)
        return cls(f"{stream}_g{group:02d}_glore", stream, group, channels, states, nodes)

    @property
    def in_channels(self) -> int:
        return self.channels

    def cost(self, frames, height, width) -> Cost:
        cin, state, nodes = self.channels, self.state_channels, self.num_nodes
        positions = frames * height * width
        params = (
            cin * state + state + cin * nodes + nodes  # state and projection convs
            + nodes * nodes + nodes + state * state  # graph convolution
            + state * cin  # extend conv
        )
        macs = (
            positions * cin * (state + nodes)
            + 2 * positions * state * nodes  # project to nodes and back
            + state * nodes * (nodes + state)
            + positions * state * cin
        )
        return Cost(params + 2 * cin, cin, macs, (frames, height, width, cin))

    def make_layer(self):
        from tsnet_keras.layers import GloRe3D

        return GloRe3D(state_channels=self.state_channels, num_nodes=self.num_nodes, name=self.name)


@dataclass(frozen=True)
class FusionSpec(LayerSpec):
    """The TS-Fusion after sparse group `group`: dense group `group` into the sparse stream."""

    kind: ClassVar[str] = "fusion"
    stream: ClassVar[str] = ""
    spatial_stride: ClassVar[int] = 1

    name: str
    group: int
    in_channels: int
    channels: int
    fusion: str
    dense_channels: int
    alpha: int
    fused_channels: int
    merge: str

    @classmethod
    def of(cls, group: int, sparse_channels: int, dense_channels: int, fusion: str,
           alpha: int, merge: str) -> FusionSpec:
        """The fusion with its fused width (`rules.fused_width`); a sum keeps the sparse width."""
        added = fused_width(fusion, dense_channels, alpha)
        out = sparse_channels + added if merge == "concat" else sparse_channels
        return cls(f"fusion_g{group:02d}", group, sparse_channels, out, fusion,
                   dense_channels, alpha, added, merge)

    @property
    def part(self) -> str:
        return "fusion"

    @property
    def input_stream(self) -> str:
        return "sparse"

    def cost(self, frames, height, width) -> Cost:
        out = (frames, height, width, self.channels)
        if self.fusion != "time_strided_conv":
            return Cost(0, 0, 0, out)
        fused = self.fused_channels
        params = FUSION_CONV_KERNEL * self.dense_channels * fused
        return Cost(params + 2 * fused, fused, frames * height * width * params, out)

    def make_layer(self):
        from tsnet_keras.layers import TSFusion

        return TSFusion(fusion=self.fusion, merge=self.merge, name=self.name)

    def inputs(self, features: dict):
        return [features["sparse"], features["dense"]]

    def store(self, features: dict, output) -> None:
        features["sparse"] = output


@dataclass(frozen=True)
class StreamHeadSpec(LayerSpec):
    """A stream's head: 1x1x1 conv, BN, ReLU, global average pooling."""

    kind: ClassVar[str] = "stream_head"
    group: ClassVar[int] = -1
    spatial_stride: ClassVar[int] = 1

    name: str
    stream: str
    in_channels: int
    channels: int

    def cost(self, frames, height, width) -> Cost:
        cout = self.channels
        params = self.in_channels * cout
        return Cost(params + 2 * cout, cout, frames * height * width * params, (1, 1, 1, cout))

    def make_layer(self):
        from tsnet_keras.layers import StreamHead

        return StreamHead(channels=self.channels, name=self.name)

    def store(self, features: dict, output) -> None:
        features.setdefault(POOLED, []).append(output)


@dataclass(frozen=True)
class ClassifierSpec(LayerSpec):
    """The classifier over the concatenated pooled features of the streams."""

    kind: ClassVar[str] = "classifier"
    stream: ClassVar[str] = ""
    group: ClassVar[int] = -1
    spatial_stride: ClassVar[int] = 1

    name: str
    in_channels: int
    channels: int
    hidden_units: int
    dropout_rate: float
    stream_dropout: float = 0.0  # a training setting (`TSNet`'s), not the architecture's

    @property
    def part(self) -> str:
        return "classifier"

    @property
    def input_stream(self) -> str:
        return "sparse"

    def cost(self, frames, height, width) -> Cost:
        cin, hidden, cout = self.in_channels, self.hidden_units, self.channels
        params = cin * hidden + hidden * cout + cout
        return Cost(params, 0, cin * hidden + hidden * cout, (cout,))

    def make_layer(self):
        from tsnet_keras.layers import ClassificationHead

        return ClassificationHead(
            num_classes=self.channels,
            hidden_units=self.hidden_units,
            dropout_rate=self.dropout_rate,
            stream_dropout=self.stream_dropout,
            name=self.name,
        )

    def inputs(self, features: dict):
        return features[POOLED]

    def store(self, features: dict, output) -> None:
        features[LOGITS] = output


def layer_plan(arch: Architecture, num_classes: int = 400) -> list:
    """Every layer of `arch`, in the order the builder creates them.

    Raises:
        ValueError: for a sum merge whose fused width differs from the sparse width.
    """
    check_int("num_classes", num_classes, plain=True)
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
                width[name] = spec.channels
        for name, stream in arch.streams():
            if stream.groups[index].attention:
                plan.append(GloReSpec.of(name, index, width[name]))
        fusion = _fusion_spec(arch, index, width)
        if fusion is not None:
            plan.append(fusion)
            width["sparse"] = fusion.channels

    plan.extend(_head_specs(arch, width, num_classes))
    return plan


def _stem_spec(name: str, stream) -> StemSpec:
    """The stem of one stream."""
    stem = stream.stem
    return StemSpec(
        name=f"{name}_stem", stream=name, in_channels=3, channels=stem.channels,
        spatial_stride=stem.spatial_stride, temporal_kernel=stem.temporal_kernel,
        spatial_kernel=stem.spatial_kernel,
    )


def _mbconv_spec(
    arch: Architecture, name: str, stream, index: int, block: int, in_channels: int
) -> MBConvSpec:
    """Block `block` of group `index` of one stream, reading `in_channels`."""
    group = stream.groups[index]
    return MBConvSpec.of(
        name, index, block, in_channels, group.channels, group.expansion,
        group.temporal_kernel, group.spatial_kernel, stride=group.stride,
        squeeze_excite=group.squeeze_excite,
        stage_position=stage_position(stream.groups, index, block),
        residual_activation=arch.residual_activation,
    )


def _fusion_spec(arch: Architecture, index: int, width: dict):
    """The TS-Fusion after group `index`, or None when there is none."""
    fusion = arch.sparse.groups[index].fusion
    if arch.dense is None or fusion == "none":
        return None
    spec = FusionSpec.of(index, width["sparse"], width["dense"], fusion, arch.alpha,
                         arch.fusion_merge)
    if arch.fusion_merge == "sum" and spec.fused_channels != width["sparse"]:
        raise ValueError(
            f"sparse group {index}: fusion {fusion!r} with merge='sum' gives "
            f"{spec.fused_channels} channels but the sparse stream has {width['sparse']}; "
            "use merge='concat' or another op."
        )
    return spec


def _head_specs(arch: Architecture, width: dict, num_classes: int) -> list:
    """The stream heads, then the classifier over their concatenated features."""
    specs = [
        StreamHeadSpec(f"{name}_head", name, width[name], stream.head_channels)
        for name, stream in arch.streams()
    ]
    features = sum(spec.channels for spec in specs)
    specs.append(ClassifierSpec("classifier", features, num_classes, arch.head_units,
                                arch.dropout_rate))
    return specs


__all__ = [
    "ClassifierSpec",
    "Cost",
    "FusionSpec",
    "GloReSpec",
    "LayerSpec",
    "MBConvSpec",
    "StemSpec",
    "StreamHeadSpec",
    "fused_width",
    "layer_plan",
    "round_width",
]
