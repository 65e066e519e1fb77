"""Tiny search spaces for the search tests (2-3 groups, widths 8-16, small frames)."""

from tsnet_keras.space import BlockGroupSpace, Stem, StreamSpace, TwoStreamSpace


def tiny_single_stream(
    temporal_kernel=(1, 3),
    spatial_kernel=(3, 5),
    channels=((8, 16), (8, 16), (16, 24)),
    expansion=(1.0, 2.0),
    frames=4,
):
    """Sparse stream only: 3 groups (stages 1, 1, 2), every backbone variable searchable."""
    layout = ((1, 1, 2), (1, 2, 1), (2, 1, 2))
    groups = tuple(
        BlockGroupSpace(
            stage=stage, repeats=repeats, stride=stride, channels=tuple(width),
            expansion=tuple(expansion), temporal_kernel=tuple(temporal_kernel),
            spatial_kernel=tuple(spatial_kernel),
        )
        for (stage, repeats, stride), width in zip(layout, channels)
    )
    sparse = StreamSpace(
        frames=frames, stem=Stem(channels=8, temporal_kernel=3), groups=groups, head_channels=16
    )
    return TwoStreamSpace(sparse=sparse, head_units=16, dropout_rate=0.0)


def tiny_two_stream(attention=True, fusion_ops=None):
    """Two streams (4 and 8 frames), 3 groups; fusion after groups 0 and 1, GloRe after 1 and 2."""
    from tsnet_keras.space.architecture import FUSION_OPS

    fusion_ops = tuple(fusion_ops or FUSION_OPS)
    layout = ((1, 1, 2), (1, 2, 1), (2, 1, 2))

    def stream(widths, frames, stem, head, with_fusion):
        groups = []
        for index, ((stage, repeats, stride), width) in enumerate(zip(layout, widths)):
            groups.append(
                BlockGroupSpace(
                    stage=stage, repeats=repeats, stride=stride, channels=width,
                    expansion=(1.0, 2.0), temporal_kernel=(1, 3), spatial_kernel=(3, 5),
                    fusion=fusion_ops if with_fusion and index < 2 else ("none",),
                    attention=(False, True) if attention and index > 0 else (False,),
                )
            )
        return StreamSpace(frames=frames, stem=Stem(channels=stem, temporal_kernel=3),
                           groups=tuple(groups), head_channels=head)

    return TwoStreamSpace(
        sparse=stream(((8, 16), (8, 16), (16, 24)), 4, 8, 16, True),
        dense=stream(((4, 8), (4, 8), (8,)), 8, 4, 8, False),
        head_units=16,
        dropout_rate=0.0,
    )


def brute_force_space():
    """Small enough to enumerate (2^12 architectures) but with every kind of dependency."""

    layout = ((1, 1, 2), (1, 1, 1), (2, 1, 2))

    def stream(widths, frames, stem, head, with_fusion, kernels):
        groups = []
        for index, ((stage, repeats, stride), width) in enumerate(zip(layout, widths)):
            groups.append(
                BlockGroupSpace(
                    stage=stage, repeats=repeats, stride=stride, channels=width,
                    expansion=(1.0, 2.0) if index == 1 else (1.5,),
                    temporal_kernel=kernels if index == 2 else (3,), spatial_kernel=(3,),
                    fusion=(("none", "time_to_channel", "time_strided_conv") if with_fusion
                            and index == 0 else ("none",)),
                    attention=(False, True) if index == 1 else (False,),
                )
            )
        return StreamSpace(frames=frames, stem=Stem(channels=stem, temporal_kernel=3),
                           groups=tuple(groups), head_channels=head)

    return TwoStreamSpace(
        sparse=stream(((8, 16), (16, 24), (16,)), 2, 8, 16, True, (1, 3)),
        dense=stream(((4, 8), (8,), (8, 16)), 4, 4, 8, False, (3,)),
        head_units=16,
        dropout_rate=0.0,
    )


def search_space(channels=((8, 16), (8, 24)), temporal_kernel=(1, 3)):
    """The smallest useful space for search tests: 2 groups of 1 block, no SE.

    Searchable: temporal kernel and channels of both groups (16 architectures).
    """
    groups = tuple(
        BlockGroupSpace(
            stage=stage, repeats=1, stride=2, channels=tuple(width), expansion=(1.0,),
            temporal_kernel=tuple(temporal_kernel), spatial_kernel=(3,), squeeze_excite=0.0,
        )
        for stage, width in zip((1, 2), channels)
    )
    sparse = StreamSpace(frames=4, stem=Stem(channels=8, temporal_kernel=3), groups=groups,
                         head_channels=8)
    return TwoStreamSpace(sparse=sparse, head_units=8, dropout_rate=0.0)


def progressive_space():
    """Two small streams (2 and 4 frames), 2 groups of 1 block, no SE.

    Step 1: t and channels of both sparse groups; step 2: the same in the dense
    stream plus the fusion op after group 0; step 3: GloRe after group 1 in both
    streams.
    """
    def stream(widths, frames, stem, head, with_fusion):
        groups = tuple(
            BlockGroupSpace(
                stage=index + 1, repeats=1, stride=2, channels=width, expansion=(1.0,),
                temporal_kernel=(1, 3), spatial_kernel=(3,), squeeze_excite=0.0,
                fusion=(("none", "time_to_channel", "time_strided_conv")
                        if with_fusion and index == 0 else ("none",)),
                attention=(False, True) if index == 1 else (False,),
            )
            for index, width in enumerate(widths)
        )
        return StreamSpace(frames=frames, stem=Stem(channels=stem, temporal_kernel=3),
                           groups=groups, head_channels=head)

    return TwoStreamSpace(
        sparse=stream(((8, 16), (8, 16)), 2, 8, 8, True),
        dense=stream(((4, 8), (8,)), 4, 4, 8, False),
        head_units=8,
        dropout_rate=0.0,
    )
