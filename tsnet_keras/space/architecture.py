"""Concrete architectures: one choice per variable, immutable, JSON round trip.

An `Architecture` is plain data that reads as a table (MoViNet block-spec
style): a sparse stream, an optional dense stream and the classifier head.
Each stream is a stem followed by block groups; each block group is `repeats`
MBConv3D blocks with the same operator choices, optionally followed by a GloRe
attention block and, in the sparse stream, a TS-Fusion block that brings the
dense stream's features in.

Data flow of a two-stream architecture (`build_model` follows it exactly):

```
sparse clip ─ stem ─ group 0 ─ [GloRe] ─ (+ fusion 0) ─ group 1 ─ ... ─ head conv ─ pool ─┐
                                              ↑                                          concat ─ FC ─ logits
dense clip ── stem ─ group 0 ─ [GloRe] ───────┴──────── group 1 ─ ... ─ head conv ─ pool ─┘
```
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from tsnet_keras.checks import (
    ArgumentTypeError,
    check_choice,
    check_int,
    check_number,
    check_stride,
    fail,
)
from tsnet_keras.space.rules import FUSION_MERGES, FUSION_OPS, inner_width

RESIDUAL_ACTIVATIONS = ("none", "relu")
STREAMS = ("sparse", "dense")


def _check_number(owner, name, value, minimum=None, below=None, strict=False):
    """A finite Python int or float (not a bool, not a string); returns it as float."""
    return check_number(name, value, minimum, below, strict=strict, where=owner, plain=True)


def _check_stride(owner, name, value):
    _check_int(owner, name, value)
    check_stride(name, value, where=owner)


def _check_int(owner, name, value, minimum=1, odd=False):
    check_int(name, value, minimum, where=owner, odd=odd, plain=True)


@dataclass(frozen=True)
class Stem:
    """The stem of a stream (X3D style): per-frame conv, then a channel-wise temporal conv.

    Args:
        channels: int. Output channels.
        temporal_kernel: int, odd. Kernel of the channel-wise temporal conv
            (5 in X3D, 3 in the Auto-TSNet space of Table 1).
        spatial_kernel: int, odd. Kernel of the per-frame conv. Defaults to 3.
        spatial_stride: int. Stride of the per-frame conv. Defaults to 2.
    """

    channels: int
    temporal_kernel: int = 5
    spatial_kernel: int = 3
    spatial_stride: int = 2

    def __post_init__(self):
        _check_int("Stem", "channels", self.channels)
        _check_int("Stem", "temporal_kernel", self.temporal_kernel, odd=True)
        _check_int("Stem", "spatial_kernel", self.spatial_kernel, odd=True)
        _check_stride("Stem", "spatial_stride", self.spatial_stride)


@dataclass(frozen=True)
class BlockGroup:
    """A block group: `repeats` MBConv3D blocks that share one architecture.

    Args:
        stage: int. The stage (1-4) the group belongs to.
        repeats: int. Number of MBConv3D blocks (column N of the paper's Table 1).
        stride: int. Spatial stride of the first block (column S).
        channels: int. Output channels of every block.
        expansion: float. Inner width of each block = round(channels * expansion).
        temporal_kernel: int, odd. Temporal kernel t of the depthwise conv.
        spatial_kernel: int, odd. Spatial kernel k of the depthwise conv.
        squeeze_excite: float. Squeeze-excite ratio of the blocks that carry one
            (every other block of a stage, X3D style); 0 disables it.
        attention: bool. Whether a GloRe block follows the group.
        fusion: str. Sparse stream only: the TS-Fusion op after the group, one of
            `FUSION_OPS`; "none" leaves the sparse stream unchanged.
    """

    stage: int
    repeats: int
    stride: int
    channels: int
    expansion: float
    temporal_kernel: int = 3
    spatial_kernel: int = 3
    squeeze_excite: float = 0.0625
    attention: bool = False
    fusion: str = "none"

    def __post_init__(self):
        _check_int("BlockGroup", "stage", self.stage, minimum=0)
        _check_int("BlockGroup", "repeats", self.repeats)
        _check_stride("BlockGroup", "stride", self.stride)
        _check_int("BlockGroup", "channels", self.channels)
        _check_int("BlockGroup", "temporal_kernel", self.temporal_kernel, odd=True)
        _check_int("BlockGroup", "spatial_kernel", self.spatial_kernel, odd=True)
        expansion = _check_number("BlockGroup", "expansion", self.expansion, 0, strict=True)
        object.__setattr__(self, "expansion", expansion)
        if self.inner_channels < 1:
            raise ValueError(
                f"BlockGroup: `expansion` {expansion} gives an inner width of "
                f"round({self.channels} x {expansion}) = {self.inner_channels} channels; it must "
                "be at least 1."
            )
        _check_number("BlockGroup", "squeeze_excite", self.squeeze_excite, 0, below=1)
        if not isinstance(self.attention, bool):
            fail("attention", "True or False", self.attention, "BlockGroup", ArgumentTypeError)
        check_choice("fusion", self.fusion, FUSION_OPS, where="BlockGroup")

    @property
    def inner_channels(self) -> int:
        """Width of the depthwise convolution (expanded width)."""
        return inner_width(self.channels, self.expansion)


@dataclass(frozen=True)
class Stream:
    """One stream: input frames, a stem, block groups and the head conv width.

    Args:
        frames: int. Input frames of the stream (4 sparse, 32 dense in the paper).
        stem: `Stem`.
        groups: tuple of `BlockGroup`, in order.
        head_channels: int. Width of the 1x1x1 head conv before pooling
            (432 in X3D-S).
    """

    frames: int
    stem: Stem
    groups: tuple
    head_channels: int

    def __post_init__(self):
        _check_int("Stream", "frames", self.frames)
        _check_int("Stream", "head_channels", self.head_channels)
        if not isinstance(self.stem, Stem):
            raise TypeError(f"Stream: `stem` must be a Stem, got {type(self.stem).__name__}.")
        if not isinstance(self.groups, (tuple, list)):
            raise TypeError(f"Stream: `groups` must be a list of BlockGroup, got "
                            f"{type(self.groups).__name__}.")
        groups = tuple(self.groups)
        if not groups:
            raise ValueError("Stream: `groups` must hold at least one BlockGroup.")
        for index, group in enumerate(groups):
            if not isinstance(group, BlockGroup):
                raise TypeError(
                    f"Stream: groups[{index}] must be a BlockGroup, got {type(group).__name__}."
                )
        object.__setattr__(self, "groups", groups)

    @property
    def depth(self) -> int:
        """Number of MBConv3D blocks."""
        return sum(group.repeats for group in self.groups)


@dataclass(frozen=True)
class Architecture:
    """A concrete single- or two-stream architecture (one choice per variable).

    Args:
        sparse: `Stream`. The sparse (slow) stream; the only stream of
            single-stream models such as X3D.
        dense: `Stream` or None. The dense (fast) stream. Its groups align with the
            sparse stream's groups (same count and strides), so the fusion after
            sparse group i reads the dense features after dense group i.
        head_units: int. Hidden units of the classifier (2048 in X3D).
        dropout_rate: float. Dropout before the final linear layer.
        fusion_merge: str. How fused dense features join the sparse stream:
            "concat" (SlowFast's default; the next sparse block sees more
            channels) or "sum" (fused width must equal the sparse width).
        residual_activation: str. Activation after each block's residual add:
            "none" (the default of the searched models) or "relu" (X3D as
            published in PySlowFast and PyTorchVideo; `presets.x3d` uses it).

    Example:

    >>> arch = tsnet_keras.presets.x3d("S")
    >>> text = arch.to_json()
    >>> Architecture.from_json(text) == arch
    True
    """

    sparse: Stream
    dense: Stream | None = None
    head_units: int = 2048
    dropout_rate: float = 0.5
    fusion_merge: str = "concat"
    residual_activation: str = "none"

    def __post_init__(self):
        if not isinstance(self.sparse, Stream):
            raise TypeError("Architecture: `sparse` must be a Stream.")
        if self.dense is not None and not isinstance(self.dense, Stream):
            raise TypeError("Architecture: `dense` must be a Stream or None.")
        _check_int("Architecture", "head_units", self.head_units)
        _check_number("Architecture", "dropout_rate", self.dropout_rate, 0, below=1)
        check_choice("fusion_merge", self.fusion_merge, FUSION_MERGES, where="Architecture")
        check_choice("residual_activation", self.residual_activation, RESIDUAL_ACTIVATIONS,
                     where="Architecture")
        if self.dense is None:
            for index, group in enumerate(self.sparse.groups):
                if group.fusion != "none":
                    raise ValueError(
                        f"Architecture: sparse group {index} has fusion={group.fusion!r} "
                        "but the architecture has no dense stream."
                    )
            return
        if len(self.dense.groups) != len(self.sparse.groups):
            raise ValueError(
                "Architecture: the dense stream must have as many block groups as the "
                f"sparse stream ({len(self.dense.groups)} != {len(self.sparse.groups)})."
            )
        if self.dense.frames % self.sparse.frames:
            raise ValueError(
                f"Architecture: dense frames ({self.dense.frames}) must be a multiple of "
                f"sparse frames ({self.sparse.frames})."
            )
        if self.dense.stem.spatial_stride != self.sparse.stem.spatial_stride:
            raise ValueError("Architecture: both stems must have the same spatial_stride.")
        for index, (s, d) in enumerate(zip(self.sparse.groups, self.dense.groups)):
            if s.stride != d.stride:
                raise ValueError(
                    f"Architecture: group {index} has stride {s.stride} in the sparse stream "
                    f"but {d.stride} in the dense stream; fusion needs equal spatial sizes."
                )
            if d.fusion != "none":
                raise ValueError(
                    f"Architecture: dense group {index} has fusion={d.fusion!r}; fusion "
                    "blocks live in the sparse stream only."
                )

    # ----------------------------------------------------------------- views
    @property
    def two_stream(self) -> bool:
        return self.dense is not None

    @property
    def alpha(self) -> int:
        """Frame-rate ratio dense / sparse (8 for 32 vs 4 frames)."""
        return self.dense.frames // self.sparse.frames if self.dense else 1

    def streams(self):
        """Yields (name, stream) for the streams present, sparse first."""
        yield "sparse", self.sparse
        if self.dense is not None:
            yield "dense", self.dense

    # ------------------------------------------------------------- variants
    def replace_groups(self, stream: str, **changes) -> "Architecture":
        """Returns a copy with `changes` applied to every group of `stream`."""
        target = getattr(self, stream)
        groups = tuple(dataclasses.replace(g, **changes) for g in target.groups)
        return dataclasses.replace(self, **{stream: dataclasses.replace(target, groups=groups)})

    def without_attention(self) -> "Architecture":
        """The paper's dagger variant: every GloRe block removed."""
        arch = self
        for name, _ in self.streams():
            arch = arch.replace_groups(name, attention=False)
        return arch

    def scale_depth(self, factor: int | float) -> "Architecture":
        """Multiplies every group's repeats by `factor` (rounded up).

        Auto-TSNet-L is Auto-TSNet-S with `scale_depth(2)` (paper section 5.3).
        """
        if factor <= 0:
            raise ValueError(f"scale_depth: `factor` must be > 0, got {factor}.")
        arch = self
        for name, stream in self.streams():
            groups = tuple(
                dataclasses.replace(g, repeats=max(1, math.ceil(g.repeats * factor)))
                for g in stream.groups
            )
            arch = dataclasses.replace(arch, **{name: dataclasses.replace(stream, groups=groups)})
        return arch

    # ---------------------------------------------------------- serialising
    def to_dict(self) -> dict:
        """A plain, JSON-ready dict (the form stored in model configs)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        """Inverse of `to_dict`; unknown or missing fields raise a ValueError."""
        if isinstance(data, Architecture):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"Architecture.from_dict expects a dict, got {type(data).__name__}.")
        data = dict(data)
        _known_fields(cls, data, "architecture")
        for name in STREAMS:
            if data.get(name) is not None:
                data[name] = _stream_from_dict(data[name], name)
        return cls(**data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"Architecture.from_json: not valid JSON ({error}).") from None
        return cls.from_dict(data)

    def save(self, path) -> None:
        """Writes the architecture as JSON to `path`."""
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.to_json())

    @classmethod
    def load(cls, path) -> "Architecture":
        with open(path, encoding="utf-8") as handle:
            return cls.from_json(handle.read())

    # ------------------------------------------------------------- printing
    def table(self) -> str:
        """The architecture as a table, one row per block group (paper Table 1 style)."""
        header = (
            f"{'stream':<7}{'group':>6}{'stage':>6}{'N':>4}{'S':>3}{'C_out':>7}"
            f"{'exp':>6}{'t':>3}{'k':>3}{'SE':>8}  {'attention':<10}{'fusion'}"
        )
        lines = [header, "-" * len(header)]
        for name, stream in self.streams():
            stem = stream.stem
            lines.append(
                f"{name:<7}{'stem':>6}{0:>6}{1:>4}{stem.spatial_stride:>3}{stem.channels:>7}"
                f"{'-':>6}{stem.temporal_kernel:>3}{stem.spatial_kernel:>3}{'-':>8}  "
                f"{'':<10}{'':}  frames={stream.frames}"
            )
            for index, g in enumerate(stream.groups):
                lines.append(
                    f"{name:<7}{index:>6}{g.stage:>6}{g.repeats:>4}{g.stride:>3}{g.channels:>7}"
                    f"{g.expansion:>6.2f}{g.temporal_kernel:>3}{g.spatial_kernel:>3}"
                    f"{g.squeeze_excite:>8.4g}  {('GloRe' if g.attention else '-'):<10}"
                    f"{g.fusion if name == 'sparse' and self.dense is not None else ''}"
                )
            lines.append(f"{name:<7}{'head':>6}{'':>6}{'':>4}{'':>3}{stream.head_channels:>7}")
        lines.append(
            f"classifier: {self.head_units} hidden units, dropout {self.dropout_rate}, "
            f"fusion merge {self.fusion_merge}"
            + (
                f", {self.residual_activation} after each residual add"
                if self.residual_activation != "none"
                else ""
            )
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _known_fields(cls, data: dict, where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {unknown}; allowed fields are {sorted(names)}."
        )
    missing = sorted(
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}.")


def _stream_from_dict(data, where: str) -> Stream:
    if isinstance(data, Stream):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"{where}: expected a dict, got {type(data).__name__}.")
    data = dict(data)
    _known_fields(Stream, data, where)
    data["stem"] = _part_from_dict(Stem, data["stem"], f"{where}.stem")
    if not isinstance(data["groups"], (list, tuple)):
        raise TypeError(f"{where}.groups: expected a list of block groups, got "
                        f"{type(data['groups']).__name__} {data['groups']!r}.")
    data["groups"] = tuple(_part_from_dict(BlockGroup, group, f"{where}.groups[{index}]")
                           for index, group in enumerate(data["groups"]))
    try:
        return Stream(**data)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{where}: {error}") from None


def _part_from_dict(cls, data, where: str):
    """A `Stem` / `BlockGroup` from its dict; every error names `where` (e.g. sparse.groups[2])."""
    if not isinstance(data, dict):
        raise TypeError(f"{where}: expected a dict, got {type(data).__name__} {data!r}.")
    _known_fields(cls, dict(data), where)
    try:
        return cls(**data)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{where}: {error}") from None


__all__ = [
    "Architecture",
    "BlockGroup",
    "FUSION_MERGES",
    "FUSION_OPS",
    "RESIDUAL_ACTIVATIONS",
    "Stem",
    "Stream",
]
