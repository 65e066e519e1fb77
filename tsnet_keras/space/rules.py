"""The width, placement and name rules shared by the space, the layers and the accounting.

Each rule lives here once. `Architecture`, `layer_plan`, the Keras layers
(`MBConv3D`, `GloRe3D`, `TSFusion` and their super versions), `accounting`,
the layer tables of the expected MACs and the supernet all import it, so none
of them can drift. This module imports nothing of the package: it sits at the
bottom of the dependency order.
"""

from __future__ import annotations

FUSION_OPS = ("none", "time_to_channel", "time_strided_sample", "time_strided_conv")
FUSION_MERGES = ("concat", "sum")

# SlowFast's time-strided-conv lateral connection: kernel 5 x 1 x 1, 2 x C_dense outputs.
FUSION_CONV_KERNEL = 5
FUSION_CONV_MULTIPLIER = 2

# Training crop of X3D-S and Auto-TSNet: the size at which MACs are counted by default.
DEFAULT_CROP = 160


def round_width(width: float, multiplier: float = 1.0, min_width: int = 8, divisor: int = 8) -> int:
    """X3D's width rounding: nearest multiple of `divisor`, never 10% below."""
    width *= multiplier
    rounded = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * width:
        rounded += divisor
    return int(rounded)


def inner_width(channels: int, expansion: float) -> int:
    """Expanded (depthwise) width of an MBConv block: relative to its OUTPUT width, as in X3D."""
    return int(round(channels * expansion))


def squeeze_excite_width(inner: int, ratio: float) -> int:
    """Squeeze-excite hidden width: X3D's `round_width(inner * ratio)`; 0 when ratio is 0.

    X3D-S at ratio 1/16: 8 / 8 / 16 / 32 for inner widths 54 / 108 / 216 / 432.
    """
    return round_width(inner * ratio) if ratio else 0


def stage_position(groups, group: int, block: int) -> int:
    """Index of block `block` of `groups[group]` among all blocks of its stage.

    `groups`: a sequence of objects with `stage` and `repeats` (block groups or
    their search-space counterparts).
    """
    stage = groups[group].stage
    return sum(g.repeats for g in groups[:group] if g.stage == stage) + block


def has_squeeze_excite(position: int) -> bool:
    """X3D places squeeze-excite on every other block of a stage: blocks 0, 2, 4, ..."""
    return position % 2 == 0


def block_squeeze_excite_width(inner: int, ratio: float, position: int) -> int:
    """Squeeze-excite hidden width of the block at `position` in its stage (0: no SE)."""
    return squeeze_excite_width(inner, ratio) if ratio > 0 and has_squeeze_excite(position) else 0


def needs_projection(in_channels: int, channels: int, stride: int) -> bool:
    """X3D's shortcut rule: a 1x1x1 projection (+BN) unless stride is 1 and the widths match."""
    return stride != 1 or in_channels != channels


# The residual kinds of an inverted-bottleneck block, one name each (fixed and super block):
# "auto" follows `needs_projection`; "projection" always projects (1x1x1 + BN); "identity"
# always adds x (stride 1, equal widths); "none" adds no residual (fixed block only).
SHORTCUTS = ("auto", "projection", "identity", "none")


def uses_projection(shortcut: str, in_channels: int, channels: int, stride: int) -> bool:
    """Whether a block with residual kind `shortcut` (`SHORTCUTS`) projects its input."""
    if shortcut == "projection":
        return True
    if shortcut in ("identity", "none"):
        return False
    return needs_projection(in_channels, channels, stride)


def fused_width(
    fusion: str,
    dense_channels: int,
    alpha: int,
    conv_multiplier: int = FUSION_CONV_MULTIPLIER,
) -> int:
    """Channels a TS-Fusion op brings from the dense stream (SlowFast's three ops; 0 for "none").

    Raises:
        ValueError: when `fusion` is not one of `FUSION_OPS`.
    """
    if fusion not in FUSION_OPS:
        raise ValueError(f"`fusion` must be one of {FUSION_OPS}, got {fusion!r}.")
    return {
        "none": 0,
        "time_to_channel": alpha * dense_channels,
        "time_strided_sample": dense_channels,
        "time_strided_conv": conv_multiplier * dense_channels,
    }[fusion]


def glore_widths(channels: int) -> tuple:
    """GloRe's `(state_channels, num_nodes)` for `channels` inputs: `(C // 2, C // 4)`."""
    return channels // 2, channels // 4


def same_output_size(size, stride: int):
    """Output size of a "same"-padded convolution with `stride`: `ceil(size / stride)`.

    Works on ints and on symbolic sizes (tensors) alike.
    """
    return -(-size // stride)


__all__ = [
    "DEFAULT_CROP",
    "FUSION_CONV_KERNEL",
    "FUSION_CONV_MULTIPLIER",
    "FUSION_MERGES",
    "FUSION_OPS",
    "block_squeeze_excite_width",
    "fused_width",
    "glore_widths",
    "has_squeeze_excite",
    "inner_width",
    "needs_projection",
    "round_width",
    "same_output_size",
    "squeeze_excite_width",
    "stage_position",
]
