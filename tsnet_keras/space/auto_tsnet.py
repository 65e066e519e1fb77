"""The Auto-TSNet search space: paper Table 1 (macro architecture) and Table 2 (kernels).

Each row below is one block group: (stage, N repeats, S stride, channel range).
Both streams share the layout, so the fusion after sparse group i reads dense
group i at the same spatial size.

| stage | N, S per group | sparse channels | dense channels |
|---|---|---|---|
| 0 (stem) | conv 1x3^2 s2, conv 3x1^2 | 24 | 8 |
| 1 | (1, 2), (2, 1) | (32, 48, 8) | 8 then (8, 16, 8) |
| 2 | (1, 2), (4, 1) | (64, 88, 8) | (8, 24, 8) |
| 3 | (1, 2), (3, 1), (3, 1), (4, 1) | (128, 176, 16) | (16, 32, 8) |
| 4 | (1, 2), (3, 1), (3, 1) | (248, 344, 24) | (32, 56, 8) |

Expansion (1.5, 6.0, 0.75) everywhere; temporal kernel {1, 3, 5}; spatial kernel
{3, 5}. Stage depths 3 / 5 / 11 / 7 equal X3D-S's.

Assumptions where the paper is silent (its supplement is not available):

- Fusion candidates: the four SlowFast ops {none, time-to-channel,
  time-strided sampling, time-strided conv} after every block group except the
  last one (10 places: the paper's Table 7 places at most 2 / 2 / 4 / 2 per
  stage), merged by concatenation.
- Attention candidates: two GloRe places per stage 2-4 in each stream
  (2 x 6 = 12 on/off variables, 4096 choices, as the paper states): after both
  groups of stage 2, after groups 2 and 4 of stage 3 and after groups 2 and 3 of
  stage 4 (the last ones of each stage half).
- Dense stage 1, group 1 has 8 output channels only (Table 1 lists "8").
- Head: a 1x1x1 conv per stream of 2.25x the widest last-stage width rounded
  to 8 (776 sparse, 128 dense; X3D's rule 432 = 2.25 x 192), then 2048 units.
- Squeeze-excite (ratio 1/16) on every other block of a stage, as X3D.

Space sizes this gives (`space.size(step)`), against the paper's figures:

| step | this space | paper |
|---|---|---|
| 1 sparse backbone | 3.31e24 | 8e24 |
| 2 dense backbone + fusion | 7.02e28 | 6e24 |
| 3 attention | 4096 | 4096 |
| all | 9.5e56 | 2e53 |

Step 1 uses exactly Table 1 and 2: 42 kernel/expansion combinations per group
for 11 groups times the channel choices, 42^11 x 3^2 x 4^2 x 4^4 x 5^3 = 3.31e24.
The paper's 8e24 is 2.4 times larger, which no choice of the listed ranges
reproduces (an extra 3-way stem kernel would give 9.9e24). Step 2 differs
because the fusion candidates are unknown: the dense backbone alone has
6.7e22 architectures, so the paper's 6e24 leaves a factor of about 90 for
fusion, i.e. fewer places or ops than the 4^10 assumed here. Use
`auto_tsnet(fusion_places=...)` / `fusion_ops=...` to try other assumptions;
the test suite records these figures.
"""

from __future__ import annotations

from tsnet_keras.space.architecture import FUSION_OPS, Stem
from tsnet_keras.space.search_space import (
    BlockGroupSpace,
    StreamSpace,
    TwoStreamSpace,
    choice_range,
)

# (stage, repeats, stride) per block group, shared by both streams.
GROUP_LAYOUT = (
    (1, 1, 2), (1, 2, 1),
    (2, 1, 2), (2, 4, 1),
    (3, 1, 2), (3, 3, 1), (3, 3, 1), (3, 4, 1),
    (4, 1, 2), (4, 3, 1), (4, 3, 1),
)
SPARSE_CHANNELS = {1: (32, 48, 8), 2: (64, 88, 8), 3: (128, 176, 16), 4: (248, 344, 24)}
DENSE_CHANNELS = {1: (8, 16, 8), 2: (8, 24, 8), 3: (16, 32, 8), 4: (32, 56, 8)}
EXPANSIONS = choice_range(1.5, 6.0, 0.75)
DEFAULT_FUSION_PLACES = tuple(range(len(GROUP_LAYOUT) - 1))
DEFAULT_ATTENTION_PLACES = (2, 3, 5, 7, 9, 10)


def _two_stream_space(layout, sparse, dense, fusion_ops, fusion_places, attention_places, fusion_merge,
                      head_units=2048) -> TwoStreamSpace:
    """A `TwoStreamSpace` over `layout` rows (stage, repeats, stride).

    `sparse` and `dense` are (stem channels, frames, per-group (min, max, step)
    widths, head channels); fusion candidates go into the sparse stream only.
    """
    for place in tuple(fusion_places) + tuple(attention_places):
        if not 0 <= place < len(layout):
            raise ValueError(
                f"fusion/attention place {place} is not a block group index (0..{len(layout) - 1})."
            )

    def stream(stem_channels, frames, widths, head_channels, with_fusion):
        groups = tuple(
            BlockGroupSpace(
                stage=stage,
                repeats=repeats,
                stride=stride,
                channels=choice_range(*widths[index]),
                expansion=EXPANSIONS,
                fusion=tuple(fusion_ops) if with_fusion and index in fusion_places else ("none",),
                attention=(False, True) if index in attention_places else (False,),
            )
            for index, (stage, repeats, stride) in enumerate(layout)
        )
        return StreamSpace(frames=frames, stem=Stem(channels=stem_channels, temporal_kernel=3),
                           groups=groups, head_channels=head_channels)

    return TwoStreamSpace(
        sparse=stream(*sparse, with_fusion=True),
        dense=stream(*dense, with_fusion=False),
        head_units=head_units,
        fusion_merge=fusion_merge,
    )


def auto_tsnet(
    sparse_frames: int = 4,
    dense_frames: int = 32,
    fusion_ops: tuple = FUSION_OPS,
    fusion_places: tuple = DEFAULT_FUSION_PLACES,
    attention_places: tuple = DEFAULT_ATTENTION_PLACES,
    fusion_merge: str = "concat",
) -> TwoStreamSpace:
    """The Auto-TSNet two-stream search space (paper Tables 1 and 2).

    Args:
        sparse_frames: int. Sparse stream input frames. Defaults to 4.
        dense_frames: int. Dense stream input frames. Defaults to 32.
        fusion_ops: tuple of str. TS-Fusion candidates at each fusion place.
        fusion_places: tuple of int. Block groups followed by a super TS-Fusion.
        attention_places: tuple of int. Block groups (in both streams) followed
            by a super attention block (GloRe on/off).
        fusion_merge: "concat" (default) or "sum".

    Returns:
        `TwoStreamSpace`.

    Example:

    >>> space = auto_tsnet()
    >>> len(space.variables(step=1))
    44
    """
    dense_widths = [DENSE_CHANNELS[stage] for stage, _, _ in GROUP_LAYOUT]
    dense_widths[0] = (8, 8, 8)  # Table 1 lists a single width for dense stage 1, group 1
    return _two_stream_space(
        GROUP_LAYOUT,
        sparse=(24, sparse_frames, [SPARSE_CHANNELS[stage] for stage, _, _ in GROUP_LAYOUT], 776),
        dense=(8, dense_frames, dense_widths, 128),
        fusion_ops=fusion_ops, fusion_places=fusion_places, attention_places=attention_places,
        fusion_merge=fusion_merge,
    )


__all__ = ["auto_tsnet", "GROUP_LAYOUT", "DEFAULT_ATTENTION_PLACES", "DEFAULT_FUSION_PLACES"]


# A scaled-down space with the same six variables per block group, for CPUs, the
# built-in synthetic dataset, tests and the recipes' default run.
MINI_GROUP_LAYOUT = ((1, 1, 2), (2, 1, 2), (2, 1, 1), (3, 1, 2), (3, 1, 1), (4, 1, 2))
MINI_SPARSE_CHANNELS = {1: (16, 24, 8), 2: (24, 40, 8), 3: (40, 64, 8), 4: (64, 96, 16)}
MINI_DENSE_CHANNELS = {1: (8, 8, 8), 2: (8, 16, 8), 3: (16, 24, 8), 4: (16, 32, 8)}


def auto_tsnet_mini(
    sparse_frames: int = 4,
    dense_frames: int = 32,
    fusion_ops: tuple = FUSION_OPS,
    fusion_places: tuple = (0, 1, 2, 3, 4),
    attention_places: tuple = (2, 4, 5),
    fusion_merge: str = "concat",
    head_units: int = 256,
) -> TwoStreamSpace:
    """A small Auto-TSNet space for CPUs and the built-in synthetic dataset.

    The same variables as `auto_tsnet()` (temporal kernel {1, 3, 5}, spatial
    kernel {3, 5}, output channels, expansion 1.5..6.0 step 0.75, fusion op,
    attention on/off) over 6 block groups of one block each instead of 11 groups
    and 26 blocks, with about a third of the widths:

    | stage | N, S per group | sparse channels | dense channels |
    |---|---|---|---|
    | 0 (stem) | conv 1x3^2 s2, conv 3x1^2 | 16 | 8 |
    | 1 | (1, 2) | (16, 24, 8) | 8 |
    | 2 | (1, 2), (1, 1) | (24, 40, 8) | (8, 16, 8) |
    | 3 | (1, 2), (1, 1) | (40, 64, 8) | (16, 24, 8) |
    | 4 | (1, 2) | (64, 96, 16) | (16, 32, 8) |

    Fusion candidates after groups 0-4, attention candidates after groups 2, 4
    and 5, head convs of 216 (sparse) and 72 (dense) channels, 256 hidden units.
    A step-1 search on it runs at a few steps per second at crop 64 on two CPU
    cores; it is the recipes' default so that they finish on a laptop. Use
    `auto_tsnet()` for the paper's space.

    Example:

    >>> space = auto_tsnet_mini()
    >>> len(space.variables(step=1))
    24
    """
    return _two_stream_space(
        MINI_GROUP_LAYOUT,
        sparse=(16, sparse_frames, [MINI_SPARSE_CHANNELS[stage] for stage, _, _ in MINI_GROUP_LAYOUT], 216),
        dense=(8, dense_frames, [MINI_DENSE_CHANNELS[stage] for stage, _, _ in MINI_GROUP_LAYOUT], 72),
        fusion_ops=fusion_ops, fusion_places=fusion_places, attention_places=attention_places,
        fusion_merge=fusion_merge, head_units=head_units,
    )


__all__ = __all__ + ["auto_tsnet_mini", "MINI_GROUP_LAYOUT"]
