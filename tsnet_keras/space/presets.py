"""Ready-made architectures by name: X3D, Manual-TSNet-P% and Auto-TSNet-S/M/L.

One registry says what each name builds and where it comes from:

>>> presets.names()
('x3d_xs', 'x3d_s', 'x3d_m', 'x3d_l', 'manual_tsnet_85', 'manual_tsnet_70', ...)
>>> arch = presets.get("x3d_s")
>>> presets.info("auto_tsnet_s").source

`x3d(size)` reproduces the reference X3D (Feichtenhofer, CVPR 2020; the
PySlowFast implementation) exactly: X3D-S has 3,794,322 parameters and
1.963 GMACs at 13 x 160^2; `tsnet_keras.models.load_pytorchvideo_x3d` loads its
pretrained PyTorchVideo / PySlowFast weights. `manual_tsnet(sparse_share)`
builds the paper's two-stream baseline of section 5.4 with widths solved by the
accounting. `auto_tsnet_s()` is the searched architecture of the paper's
Figure 3 as far as the text describes it (see its docstring for what is read
and what is assumed).
"""

from __future__ import annotations

import dataclasses
import math

from tsnet_keras.accounting import complexity
from tsnet_keras.checks import check_choice
from tsnet_keras.space.architecture import Architecture, BlockGroup, Stem, Stream
from tsnet_keras.space.auto_tsnet import GROUP_LAYOUT
from tsnet_keras.space.rules import round_width

# size -> (frames, depth multiplier, train crop, test crop, sampling stride)
X3D_SIZES = {
    "XS": {"frames": 4, "depth": 2.2, "train_crop": 160, "test_crop": 182, "stride": 12},
    "S": {"frames": 13, "depth": 2.2, "train_crop": 160, "test_crop": 182, "stride": 6},
    "M": {"frames": 16, "depth": 2.2, "train_crop": 224, "test_crop": 256, "stride": 5},
    "L": {"frames": 16, "depth": 5.0, "train_crop": 312, "test_crop": 356, "stride": 5},
}
X3D_WIDTHS = (24, 48, 96, 192)
X3D_EXPANSION = 2.25
X3D_HEAD_CHANNELS = 432


def x3d(size: str = "S") -> Architecture:
    """The X3D architecture of the given size (single stream).

    Args:
        size: "XS", "S", "M" or "L". Input sizes and recipe in `X3D_SIZES`.

    Returns:
        `Architecture` with only a sparse stream: stem 24 channels (temporal
        kernel 5), stages of widths 24/48/96/192, depths ceil(d x [1, 2, 5, 3]),
        expansion 2.25, 3x3x3 depthwise kernels, squeeze-excite 1/16 on every
        other block, ReLU after each residual add, head 432 -> 2048.

    Example:

    >>> arch = x3d("S")
    >>> arch.sparse.depth
    26
    """
    check_choice("size", size, tuple(X3D_SIZES), where="x3d")
    config = X3D_SIZES[size]
    groups = tuple(
        BlockGroup(
            stage=stage + 1,
            repeats=math.ceil(config["depth"] * base),
            stride=2,
            channels=width,
            expansion=X3D_EXPANSION,
            temporal_kernel=3,
            spatial_kernel=3,
            squeeze_excite=0.0625,
        )
        for stage, (width, base) in enumerate(zip(X3D_WIDTHS, (1, 2, 5, 3)))
    )
    stream = Stream(
        frames=config["frames"],
        stem=Stem(channels=24, temporal_kernel=5),
        groups=groups,
        head_channels=X3D_HEAD_CHANNELS,
    )
    return Architecture(sparse=stream, residual_activation="relu")


# Table 7 of the paper: 5 fusion blocks placed +1 / +1 / +2 / +1 over stages 1-4.
MANUAL_FUSION_PLACES = (1, 3, 5, 7, 9)


def _x3d_like_stream(frames: int, multiplier: float, fusion_places=(), divisor: int = 8) -> Stream:
    """X3D-S macro structure in the Auto-TSNet group layout, widths x multiplier."""

    def scaled(width):
        return round_width(width, multiplier, min_width=divisor, divisor=divisor)

    groups = []
    for index, (stage, repeats, stride) in enumerate(GROUP_LAYOUT):
        groups.append(
            BlockGroup(
                stage=stage,
                repeats=repeats,
                stride=stride,
                channels=scaled(X3D_WIDTHS[stage - 1]),
                expansion=X3D_EXPANSION,
                temporal_kernel=3,
                spatial_kernel=3,
                fusion="time_strided_conv" if index in fusion_places else "none",
            )
        )
    return Stream(
        frames=frames,
        stem=Stem(channels=scaled(24), temporal_kernel=5),
        groups=tuple(groups),
        head_channels=scaled(X3D_HEAD_CHANNELS),
    )


def manual_tsnet(
    sparse_share: float = 0.70,
    target_macs: int | None = None,
    sparse_frames: int = 4,
    dense_frames: int = 32,
    crop: int = 160,
    tolerance: float = 0.05,
) -> Architecture:
    """Manual-TSNet-P% (paper section 5.4, Table 4): two X3D-S-like streams.

    Each stream keeps X3D-S's macro structure (depths 3/5/11/7, expansion
    2.25, stem kernel 5); channels are scaled uniformly per stream so that the
    total one-view MACs is close to X3D-S's and the sparse stream takes
    `sparse_share` of it. Five time-strided-conv fusion blocks are placed
    +1/+1/+2/+1 over stages 1-4 (paper Table 7). The widths are solved with
    `complexity`: first the sparse multiplier whose stream is closest to
    `sparse_share * target_macs`, then the dense multiplier (fusion and
    classifier included) closest to the remaining budget. Widths are rounded
    to multiples of 8 as in X3D; where that cannot meet the target within
    `tolerance` (a 32-frame stream of 8-channel X3D-S blocks already costs
    0.55 GMACs at 160^2, 28% of X3D-S), multiples of 4 are used instead.

    Args:
        sparse_share: float in (0, 1). Share P of the total MACs taken by the
            sparse stream (paper: 0.85, 0.70, 0.55).
        target_macs: int. Total one-view MACs; defaults to X3D-S at 13 x 160^2.
        sparse_frames, dense_frames: int. Input frames (4 and 32).
        crop: int. Crop at which MACs are matched. Defaults to 160.
        tolerance: float. Allowed relative error of the total and of the share.

    Returns:
        `Architecture`.

    Raises:
        ValueError: when no widths meet the target within `tolerance`.
    """
    if not 0 < sparse_share < 1:
        raise ValueError(f"manual_tsnet: `sparse_share` must be in (0, 1), got {sparse_share}.")
    if target_macs is None:
        target_macs = complexity(x3d("S"), crop=crop).macs
    if target_macs <= 0:
        raise ValueError(f"manual_tsnet: `target_macs` must be > 0, got {target_macs}.")
    multipliers = [0.05 + 0.01 * i for i in range(400)]
    best = None
    for divisor in (8, 4):
        sparse_streams = _distinct(
            _x3d_like_stream(sparse_frames, m, MANUAL_FUSION_PLACES, divisor) for m in multipliers
        )
        sparse_streams.sort(
            key=lambda s: abs(
                complexity(Architecture(sparse=_strip_fusion(s)), crop=crop).by_stream()["sparse"]
                - sparse_share * target_macs
            )
        )
        dense_streams = _distinct(_x3d_like_stream(dense_frames, m, divisor=divisor) for m in multipliers)
        for sparse in sparse_streams[:4]:
            for dense in dense_streams:
                arch = Architecture(sparse=sparse, dense=dense)
                cost = complexity(arch, crop=crop)
                error = max(
                    abs(cost.macs / target_macs - 1),
                    abs(cost.by_stream()["sparse"] / cost.macs - sparse_share),
                )
                if best is None or error < best[0]:
                    best = (error, arch)
                if cost.macs > 1.2 * target_macs:
                    break
        if best[0] <= tolerance:
            return best[1]
    raise ValueError(
        f"manual_tsnet: no uniform widths give {target_macs / 1e9:.3f} GMACs with a sparse "
        f"share of {sparse_share:.2f} within tolerance {tolerance}; closest error {best[0]:.3f}."
    )


def _distinct(streams) -> list:
    result = []
    for stream in streams:
        if not result or stream != result[-1]:
            result.append(stream)
    return result


def _strip_fusion(stream: Stream) -> Stream:
    return dataclasses.replace(
        stream, groups=tuple(dataclasses.replace(g, fusion="none") for g in stream.groups)
    )


# variant -> (depth factor, test crop), paper section 5.3
AUTO_TSNET_VARIANTS = {"S": (1, 182), "M": (1, 256), "L": (2, 356)}


def auto_tsnet_variant(arch: Architecture, variant: str) -> tuple:
    """The paper's S / M / L variants of a searched architecture (section 5.3).

    Returns:
        (architecture, test crop): S at 182^2, M the same network at 256^2, L
        with doubled depth at 356^2.
    """
    check_choice("variant", variant, tuple(AUTO_TSNET_VARIANTS))
    factor, crop = AUTO_TSNET_VARIANTS[variant]
    return (arch.scale_depth(factor) if factor != 1 else arch), crop


# Figure 3 / section 5.5.3: the two GloRe blocks sit in sparse stage 3; of the
# attention candidates (space.auto_tsnet.DEFAULT_ATTENTION_PLACES) these are the
# ones in stage 3.
AUTO_TSNET_S_ATTENTION = (5, 7)


def auto_tsnet_s() -> Architecture:
    """Auto-TSNet-S, the paper's searched two-stream model, as far as it can be read.

    Read from the paper (section 5.10 and Figure 3's caption, Tables 5 and 11):
    two streams in the Auto-TSNet space (`space.auto_tsnet()`, Table 1
    layout, 4 sparse and 32 dense frames); spatial kernel 5 and temporal kernel 1
    "widely used in both streams"; attention only in the sparse stream: two GloRe
    blocks in stage 3; 2.46 one-view GFLOPs and 8.6 M parameters.

    Assumed (Figure 3 is a drawing whose per-group values the text does not
    give): every group uses temporal kernel 1 and spatial kernel 5; every group
    takes the middle width of its Table 1 range and expansion 2.25 (X3D's);
    the GloRe blocks follow groups 5 and 7 (the stage-3 attention candidates);
    time-strided-conv fusion after groups 1, 3, 5, 7, 9 (the Manual-TSNet
    placement of Table 7). This gives 2.32 GMACs at 160^2 and 8.27 M parameters
    (paper: 2.46 G, 8.6 M); `tests/test_presets.py` records both.

    Returns:
        `Architecture` inside `space.auto_tsnet()`.
    """
    from tsnet_keras.space.auto_tsnet import auto_tsnet

    space = auto_tsnet()
    values = {}
    for variable in space.variables(searchable=False):
        stream, rest = variable.key.split("[", 1)
        index, name = int(rest.split("]")[0]), variable.key.rsplit(".", 1)[1]
        choices = variable.choices
        values[variable.key] = {
            "temporal_kernel": 1,
            "spatial_kernel": 5,
            "channels": choices[len(choices) // 2],
            "expansion": X3D_EXPANSION,
            "attention": stream == "sparse" and index in AUTO_TSNET_S_ATTENTION,
            "fusion": "time_strided_conv"
            if stream == "sparse" and index in MANUAL_FUSION_PLACES
            else "none",
        }[name]
    return space.architecture(values)


@dataclasses.dataclass(frozen=True)
class Preset:
    """One registry entry.

    Args:
        name: str. The registry key (`x3d_s`).
        build: callable returning the `Architecture`.
        test_crop: int. Crop of the paper's single-view test.
        description: str. One line.
        source: str. Where the architecture comes from, and how exact it is.
        weights: str. Where pretrained weights come from ("" when none exist).
    """

    name: str
    build: object
    test_crop: int
    description: str
    source: str
    weights: str = ""


def _registry() -> dict:
    entries = []
    for size in X3D_SIZES:
        entries.append(
            Preset(
                f"x3d_{size.lower()}",
                lambda size=size: x3d(size),
                X3D_SIZES[size]["test_crop"],
                f"X3D-{size}, single stream, {X3D_SIZES[size]['frames']} frames",
                "Feichtenhofer, CVPR 2020; exact (PySlowFast / PyTorchVideo structure and widths)",
                "PyTorchVideo hub or PySlowFast checkpoint: build_model(..., weights=path)",
            )
        )
    for share in (85, 70, 55):
        entries.append(
            Preset(
                f"manual_tsnet_{share}",
                lambda share=share: manual_tsnet(share / 100),
                182,
                f"Manual-TSNet-{share}%: two X3D-S-like streams, {share}% of the MACs sparse",
                "Auto-TSNet paper section 5.4, Table 4 / 7; widths solved by the accounting",
            )
        )
    for variant in ("S", "M", "L"):
        entries.append(
            Preset(
                f"auto_tsnet_{variant.lower()}",
                lambda variant=variant: auto_tsnet_variant(auto_tsnet_s(), variant)[0],
                AUTO_TSNET_VARIANTS[variant][1],
                f"Auto-TSNet-{variant}: the searched two-stream model, depth "
                f"x{AUTO_TSNET_VARIANTS[variant][0]}, test crop {AUTO_TSNET_VARIANTS[variant][1]}",
                "Auto-TSNet paper Figure 3 as far as the text reads; see presets.auto_tsnet_s",
            )
        )
    return {entry.name: entry for entry in entries}


def names() -> tuple:
    """Every registered preset name, in registry order."""
    return tuple(_registry())


def info(name: str) -> Preset:
    """The registry entry of `name` (source, test crop, where weights come from)."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"Unknown preset {name!r}; choose one of {tuple(registry)}.")
    return registry[name]


def get(name: str) -> Architecture:
    """The `Architecture` registered as `name` (see `names()`)."""
    return info(name).build()


__all__ = [
    "Preset",
    "X3D_SIZES",
    "auto_tsnet_s",
    "auto_tsnet_variant",
    "get",
    "info",
    "manual_tsnet",
    "names",
    "x3d",
]

