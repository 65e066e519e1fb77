"""Per-layer tables over the joint choices of the variables each layer depends on.

Every layer of `layer_plan(arch)` depends on a few variables of the space only:

| layer | variables |
|---|---|
| block b > 0 of group i | channels, expansion, temporal and spatial kernel of group i |
| block 0 of group i | the same, plus what sets its input width: channels of group i - 1 and, in the sparse stream of a two-stream space, fusion op of group i - 1 and dense channels of group i - 1 |
| GloRe after group i | attention and channels of group i |
| TS-Fusion after sparse group i | fusion op of group i and dense channels of group i |
| stream head | what sets the stream's last width (as block 0) |
| stems, classifier | nothing (constant) |

`layer_tables(space)` enumerates, for every layer that can appear in an
architecture of the space, the joint choices of its variables (fixed variables
included, with their single choice) and records the layer's spec (as
`layer_plan` would build it), its multiply-adds (`spec.cost(...).macs`) and the
integer fields the supernet needs (widths, kernels, on/off). The specs of
every choice come from the same constructors `layer_plan` uses
(`MBConvSpec.of`, `GloReSpec.of`, `FusionSpec.of`), so the rules are not
restated here; what this module adds is which variables each spec depends on. The expected MACs
of a distribution over architectures and the supernet's per-sample
configuration are both contractions / look-ups of these tables, so they agree
with `complexity(arch)` exactly (tests check every layer against `layer_plan`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

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
from tsnet_keras.space.rules import (
    DEFAULT_CROP,
    FUSION_OPS,
    fused_width,
    stage_position,
)
from tsnet_keras.space.search_space import TwoStreamSpace

# Integer fields recorded per spec type (all tables of one type have the same fields).
FIELDS = {
    MBConvSpec: (
        "in_base", "in_extra", "in_channels", "channels", "inner_channels",
        "squeeze_excite_channels", "temporal_kernel", "spatial_kernel", "projection",
    ),
    GloReSpec: ("attention", "channels"),
    FusionSpec: ("fusion", "dense_channels", "fused_channels"),
    StreamHeadSpec: ("in_base", "in_extra", "in_channels"),
    StemSpec: (),
    ClassifierSpec: (),
}


@dataclass
class LayerTable:
    """One layer of the plan as a table over the choices of its variables.

    Attributes:
        template: the layer's spec in the plan of the space's "maximal"
            architecture (every GloRe and fusion present); its type says what
            the layer is, and it gives `name`, `kind`, `stream`, `group`, `block`.
        keys: variable keys the layer depends on (fixed variables included).
        choices: the choices of each key, in order.
        input_size: (frames, height, width) at the layer's input.
        specs: object array of shape `shape`: the layer spec, or None where the
            layer is absent (GloRe off, fusion "none").
        macs: float64 array of shape `shape`: multiply-adds of one view.
        fields: dict name -> int64 array of shape `shape` (see `FIELDS`).
    """

    template: LayerSpec
    keys: tuple
    choices: tuple
    input_size: tuple
    specs: np.ndarray
    macs: np.ndarray
    fields: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The layer name (as in `layer_plan` and the built model)."""
        return self.template.name

    @property
    def kind(self) -> str:
        """The spec's label ("stem", "mbconv", ...), for reports."""
        return self.template.kind

    @property
    def stream(self) -> str:
        """"sparse", "dense" or "" (fusion, classifier)."""
        return self.template.stream

    @property
    def group(self) -> int:
        """Block-group index, or -1."""
        return self.template.group

    @property
    def block(self) -> int:
        """Block index within the group (MBConv blocks), or -1."""
        return getattr(self.template, "block", -1)

    @property
    def shape(self) -> tuple:
        return tuple(len(c) for c in self.choices)

    def index(self, values) -> tuple:
        """The table index for `values` (variable key -> value)."""
        return tuple(c.index(values[k]) for k, c in zip(self.keys, self.choices))

    def maximum(self, name: str) -> int:
        """Largest value of an integer field over all choices."""
        return int(self.fields[name].max()) if self.fields[name].size else 0

    def present_spec(self) -> LayerSpec:
        """The spec of the first choice where the layer is present."""
        return next(s for s in self.specs.reshape(-1) if s is not None)


def _group_key(stream, index, name):
    return f"{stream}[{index}].{name}"


class _Rules:
    """The channel-flow rules of `layer_plan`, evaluated for one set of values."""

    def __init__(self, space: TwoStreamSpace):
        self.space = space
        self.two_stream = space.dense is not None
        self.alpha = space.dense.frames // space.sparse.frames if self.two_stream else 1

    def width_keys(self, stream, index):
        """Keys that set the width of `stream` after group `index` (-1: the stem)."""
        if index < 0:
            return ()
        keys = (_group_key(stream, index, "channels"),)
        if stream == "sparse" and self.two_stream:
            keys += (_group_key("sparse", index, "fusion"), _group_key("dense", index, "channels"))
        return keys

    def width(self, values, stream, index):
        """(base, extra): the stream's own channels and the fused channels after group `index`."""
        stream_space = getattr(self.space, stream)
        if index < 0:
            return stream_space.stem.channels, 0
        base = values[_group_key(stream, index, "channels")]
        extra = 0
        if stream == "sparse" and self.two_stream:
            fusion = values[_group_key("sparse", index, "fusion")]
            if fusion != "none" and self.space.fusion_merge == "concat":
                extra = fused_width(
                    fusion, values[_group_key("dense", index, "channels")], self.alpha
                )
        return base, extra


def _maximal_values(space):
    """Values under which every optional layer is present (GloRe on, some fusion op)."""
    values = {}
    for v in space.variables(searchable=False):
        if v.name == "attention":
            values[v.key] = True if True in v.choices else v.choices[0]
        elif v.name == "fusion":
            ops = [op for op in v.choices if op != "none"]
            values[v.key] = ops[0] if ops else "none"
        else:
            values[v.key] = v.choices[0]
    return values


def layer_tables(space: TwoStreamSpace, num_classes: int = 400, crop=DEFAULT_CROP) -> list:
    """The `LayerTable` of every layer that can appear in an architecture of `space`.

    Args:
        space: `TwoStreamSpace` (fixed variables are variables with one choice).
        num_classes: int. Classifier outputs. Defaults to 400.
        crop: int or (height, width). Input crop for the MACs. Defaults to 160.

    Returns:
        list of `LayerTable`, in plan order.
    """
    if not isinstance(space, TwoStreamSpace):
        raise TypeError(f"layer_tables expects a TwoStreamSpace, got {type(space).__name__}.")
    height, width = (crop, crop) if isinstance(crop, int) else tuple(crop)
    rules = _Rules(space)
    choices_of = {v.key: v.choices for v in space.variables(searchable=False)}
    maximal = space.architecture(_maximal_values(space))

    # Input sizes follow the strides only, so the maximal plan gives them all.
    frames = {name: stream.frames for name, stream in maximal.streams()}
    size = {name: (height, width) for name in frames}
    tables = []
    for template in layer_plan(maximal, num_classes):
        stream = template.input_stream
        in_size = (frames[stream],) + tuple(size[stream])
        build = _BUILDERS[type(template)]
        keys, specs, macs, fields = build(template, rules, choices_of, in_size)
        tables.append(LayerTable(template, keys, tuple(choices_of[k] for k in keys), in_size,
                                 specs, macs, fields))
        size[stream] = template.output_size(*size[stream])
    return tables


# ------------------------------------------------------------ per spec type
def _constant_table(template, rules, choices_of, in_size):
    """Stems and the classifier depend on no variable: a 0-d table."""
    specs = np.empty((), dtype=object)
    specs[()] = template
    macs = np.array(template.cost(*in_size).macs, dtype=np.float64)
    return (), specs, macs, {}


def _enumerated_table(template, keys, choices_of, in_size, entry):
    """The table of `entry(values) -> (spec or None, fields)` over every joint choice of `keys`."""
    choices = tuple(choices_of[k] for k in keys)
    shape = tuple(len(c) for c in choices)
    specs = np.empty(shape, dtype=object)
    macs = np.zeros(shape, dtype=np.float64)
    fields = {name: np.zeros(shape, dtype=np.int64) for name in FIELDS[type(template)]}
    for index in itertools.product(*(range(n) for n in shape)):
        spec, record = entry({k: c[i] for k, c, i in zip(keys, choices, index)})
        specs[index] = spec
        macs[index] = 0 if spec is None else spec.cost(*in_size).macs
        for name, value in record.items():
            fields[name][index] = value
    return keys, specs, macs, fields


def _glore_table(template, rules, choices_of, in_size):
    stream, group = template.stream, template.group
    attention, channels = (_group_key(stream, group, n) for n in ("attention", "channels"))

    def entry(values):
        present = bool(values[attention])
        record = {"attention": int(present), "channels": values[channels]}
        return (GloReSpec.of(stream, group, values[channels]) if present else None), record

    return _enumerated_table(template, (attention, channels), choices_of, in_size, entry)


def _fusion_table(template, rules, choices_of, in_size):
    group = template.group
    keys = (
        _group_key("sparse", group, "fusion"),
        _group_key("dense", group, "channels"),
        _group_key("sparse", group, "channels"),
    )

    def entry(values):
        fusion, dense, sparse = (values[k] for k in keys)
        spec = FusionSpec.of(group, sparse, dense, fusion, rules.alpha, rules.space.fusion_merge)
        record = {
            "fusion": FUSION_OPS.index(fusion), "dense_channels": dense,
            "fused_channels": spec.fused_channels,
        }
        return (None if fusion == "none" else spec), record

    return _enumerated_table(template, keys, choices_of, in_size, entry)


def _stream_head_table(template, rules, choices_of, in_size):
    stream = template.stream
    last = len(getattr(rules.space, stream).groups) - 1

    def entry(values):
        base, extra = rules.width(values, stream, last)
        spec = StreamHeadSpec(template.name, stream, base + extra, template.channels)
        return spec, {"in_base": base, "in_extra": extra, "in_channels": base + extra}

    keys = rules.width_keys(stream, last)
    return _enumerated_table(template, keys, choices_of, in_size, entry)


def _mbconv_table(template, rules, choices_of, in_size):
    """The block's table, built once per (input width, own choices).

    The first block of a group depends on the previous group only through its
    input width, so the joint table is a look-up of a (width x own) table.
    """
    stream, group, block = template.stream, template.group, template.block
    own = tuple(
        _group_key(stream, group, n)
        for n in ("channels", "expansion", "temporal_kernel", "spatial_kernel")
    )
    width_keys = rules.width_keys(stream, group - 1) if block == 0 else ()
    width_shape = tuple(len(choices_of[k]) for k in width_keys)
    own_shape = tuple(len(choices_of[k]) for k in own)
    if block == 0:
        widths = [
            rules.width(dict(zip(width_keys, combo)), stream, group - 1)
            for combo in itertools.product(*(choices_of[k] for k in width_keys))
        ]
    else:
        widths = [None]  # the group's own width
    inputs = sorted({_channels(w) for w in widths}, key=lambda c: (c is None, c))
    built, cost, grid_fields = _mbconv_grid(template, rules, choices_of, own, inputs, in_size)
    rows = np.array([inputs.index(_channels(w)) for w in widths]).reshape(width_shape)
    full = width_shape + own_shape

    def expand(array):
        return array[rows].reshape(full)

    fields = {k: expand(v) for k, v in grid_fields.items()}
    if block == 0:
        fields.update(_input_fields(widths, width_shape, own_shape))
    else:
        fields["in_base"] = fields["channels"].copy()
        fields["in_extra"] = np.zeros(full, np.int64)
    return width_keys + own, expand(built), expand(cost), fields


def _channels(width):
    """Input channels of a `(base, extra)` width; None stays None."""
    return None if width is None else width[0] + width[1]


def _mbconv_grid(template, rules, choices_of, own, inputs, in_size):
    """Specs, MACs and fields over (distinct input width) x (joint own choices)."""
    stream, group, block = template.stream, template.group, template.block
    group_space = getattr(rules.space, stream)
    position = stage_position(group_space.groups, group, block)
    own_values = list(itertools.product(*(choices_of[k] for k in own)))
    shape = (len(inputs), len(own_values))
    built = np.empty(shape, dtype=object)
    cost = np.zeros(shape)
    fields = {name: np.zeros(shape, np.int64) for name in FIELDS[MBConvSpec]}
    for row, cin in enumerate(inputs):
        for column, (cout, expansion, t, k) in enumerate(own_values):
            spec = MBConvSpec.of(
                stream, group, block, cout if cin is None else cin, cout, float(expansion), t, k,
                stride=group_space.groups[group].stride,
                squeeze_excite=group_space.groups[group].squeeze_excite,
                stage_position=position, residual_activation=template.residual_activation,
            )
            built[row, column] = spec
            cost[row, column] = spec.cost(*in_size).macs
            for name in FIELDS[MBConvSpec][2:]:
                fields[name][row, column] = int(getattr(spec, name))
    return built, cost, fields


def _input_fields(widths, width_shape, own_shape):
    """`in_base` / `in_extra` of block 0: the previous group's widths, broadcast over own choices."""
    full = width_shape + own_shape
    fields = {}
    for name, part in (("in_base", 0), ("in_extra", 1)):
        values = np.array([w[part] for w in widths]).reshape(width_shape + (1,) * len(own_shape))
        fields[name] = np.broadcast_to(values, full).copy()
    return fields


# How the table of each spec type is built (the variables it depends on).
_BUILDERS = {
    StemSpec: _constant_table,
    MBConvSpec: _mbconv_table,
    GloReSpec: _glore_table,
    FusionSpec: _fusion_table,
    StreamHeadSpec: _stream_head_table,
    ClassifierSpec: _constant_table,
}


__all__ = ["FIELDS", "LayerTable", "layer_tables"]
