"""What can be searched and what was chosen: spaces, architectures, the Auto-TSNet space,
and the layer plan (typed layer specs) of an architecture."""

from tsnet_keras.space.architecture import (
    FUSION_MERGES,
    FUSION_OPS,
    Architecture,
    BlockGroup,
    Stem,
    Stream,
)
from tsnet_keras.space.auto_tsnet import auto_tsnet
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
from tsnet_keras.space.search_space import (
    BACKBONE_VARIABLES,
    STEPS,
    VARIABLES,
    BlockGroupSpace,
    StreamSpace,
    TwoStreamSpace,
    Variable,
    choice_range,
)
