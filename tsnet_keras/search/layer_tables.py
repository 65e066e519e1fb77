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
included, with their single choice) and records the layer's `LayerSpec` (as
`layer_plan` would build it), its multiply-adds (`accounting.layer_cost`) and the
integer fields the supernet needs (widths, kernels, on/off). The expected MACs
of a distribution over architectures and the supernet's per-sample
configuration are both contractions / look-ups of these tables, so they agree
with `complexity(arch)` exactly (tests check every layer against `layer_plan`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from tsnet_keras.accounting import layer_cost
from tsnet_keras.space.plan import LayerSpec, glore_spec, layer_plan
from tsnet_keras.space.rules import (
    DEFAULT_CROP,
    FUSION_OPS,
    block_squeeze_excite_width,
    fused_width,
    inner_width,
    same_output_size,
    stage_position,
)
from tsnet_keras.space.specs import TwoStreamSpace

# Integer fields recorded per layer kind (all tables of one kind have the same fields).
FIELDS = {
    "mbconv": (
        "in_base", "in_extra", "in_channels", "out_channels", "inner_channels",
        "se_hidden", "temporal_kernel", "spatial_kernel", "projection",
    ),
    "glore": ("present", "channels"),
    "fusion": ("operation", "dense_channels", "fused_channels"),
    "stream_head": ("in_base", "in_extra", "in_channels"),
    "stem": (),
    "classifier": (),
}


@dataclass
class LayerTable:
    """One layer of the plan as a table over the choices of its variables.

    Attributes:
        name: the layer name (as in `layer_plan` and the built model).
        kind: "stem", "mbconv", "glore", "fusion", "stream_head" or "classifier".
        stream: "sparse", "dense" or "" (fusion, classifier).
        group: block-group index, or -1.
        block: block index within the group (mbconv), or -1.
        keys: variable keys the layer depends on (fixed variables included).
        choices: the choices of each key, in order.
        input_size: (frames, height, width) at the layer's input.
        specs: object array of shape `shape`: the `LayerSpec`, or None where the
            layer is absent (GloRe off, fusion "none").
        macs: float64 array of shape `shape`: multiply-adds of one view.
        fields: dict name -> int64 array of shape `shape` (see `FIELDS`).
    """

    name: str
    kind: str
    stream: str
    group: int
    block: int
    keys: tuple
    choices: tuple
    input_size: tuple
    specs: np.ndarray
    macs: np.ndarray
    fields: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(len(c) for c in self.choices)

    def index(self, values) -> tuple:
        """The table index for `values` (variable key -> value)."""
        return tuple(c.index(values[k]) for k, c in zip(self.keys, self.choices))

    def maximum(self, name: str) -> int:
        """Largest value of an integer field over all choices."""
        return int(self.fields[name].max()) if self.fields[name].size else 0


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
            operation = values[_group_key("sparse", index, "fusion")]
            if operation != "none" and self.space.fusion_merge == "concat":
                extra = fused_width(
                    operation, values[_group_key("dense", index, "channels")], self.alpha
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
    plan = layer_plan(maximal, num_classes)

    # Input sizes follow the strides only, so the maximal plan gives them all.
    frames = {name: stream.frames for name, stream in maximal.streams()}
    size = {name: (height, width) for name in frames}
    tables = []
    for template in plan:
        stream = template.stream if template.kind not in ("fusion", "classifier") else "sparse"
        in_size = (frames[stream],) + tuple(size[stream])
        table = _table_for(template, space, rules, choices_of, in_size)
        tables.append(table)
        if template.kind in ("stem", "mbconv"):
            h, w = size[stream]
            stride = template.spatial_stride
            size[stream] = (same_output_size(h, stride), same_output_size(w, stride))
    return tables


def _parse_block(name):
    # "sparse_g03_b02" -> (3, 2)
    parts = name.split("_")
    return int(parts[1][1:]), int(parts[2][1:])


def _table_for(template: LayerSpec, space, rules, choices_of, in_size):
    kind = template.kind
    group, block, stream = template.group, -1, template.stream
    if kind == "mbconv":
        group, block = _parse_block(template.name)
        stream_space = getattr(space, stream)
        own = tuple(
            _group_key(stream, group, n)
            for n in ("channels", "expansion", "temporal_kernel", "spatial_kernel")
        )
        keys = (rules.width_keys(stream, group - 1) if block == 0 else ()) + own
        position = stage_position(stream_space.groups, group, block)
        ratio = stream_space.groups[group].squeeze_excite
        stride = stream_space.groups[group].stride if block == 0 else 1
    elif kind == "glore":
        keys = (_group_key(stream, group, "attention"), _group_key(stream, group, "channels"))
    elif kind == "fusion":
        keys = (
            _group_key("sparse", group, "fusion"),
            _group_key("dense", group, "channels"),
            _group_key("sparse", group, "channels"),
        )
    elif kind == "stream_head":
        keys = rules.width_keys(stream, len(getattr(space, stream).groups) - 1)
    else:
        keys = ()
    choices = tuple(choices_of[k] for k in keys)
    shape = tuple(len(c) for c in choices)
    if kind == "mbconv":
        specs, macs, fields = _mbconv_arrays(
            template, keys, choices, own, stream, group, block, rules, ratio, position, stride,
            in_size,
        )
    else:
        specs = np.empty(shape, dtype=object)
        macs = np.zeros(shape, dtype=np.float64)
        fields = {name: np.zeros(shape, dtype=np.int64) for name in FIELDS[kind]}
        for index in itertools.product(*(range(n) for n in shape)):
            values = {k: c[i] for k, c, i in zip(keys, choices, index)}
            if kind == "glore":
                spec, record = _glore(template, values, stream, group)
            elif kind == "fusion":
                spec, record = _fusion(template, values, group, rules)
            elif kind == "stream_head":
                spec, record = _stream_head(template, values, stream, rules, space)
            else:
                spec, record = template, {}
            specs[index] = spec
            macs[index] = 0 if spec is None else layer_cost(spec, *in_size)[2]
            for name, value in record.items():
                fields[name][index] = value
    return LayerTable(
        name=template.name, kind=kind, stream=template.stream, group=group, block=block,
        keys=keys, choices=choices, input_size=in_size, specs=specs, macs=macs, fields=fields,
    )


def _mbconv_arrays(template, keys, choices, own, stream, group, block, rules, ratio, position,
                   stride, in_size):
    """The block's table, built once per (input width, own choices).

    The first block of a group depends on the previous group only through its
    input width, so the joint table is a look-up of a (width x own) table.
    """
    width_keys = keys[: len(keys) - len(own)]
    width_choices, own_choices = choices[: len(width_keys)], choices[len(width_keys):]
    width_shape = tuple(len(c) for c in width_choices)
    own_shape = tuple(len(c) for c in own_choices)
    own_values = [
        dict(zip(own, combo)) for combo in itertools.product(*own_choices)
    ]
    if block == 0:
        widths = [
            rules.width(dict(zip(width_keys, combo)), stream, group - 1)
            for combo in itertools.product(*width_choices)
        ]
    else:
        widths = [None]
    # Rows: distinct input widths (None: the group's own width, blocks b > 0).
    def channels(width):
        return None if width is None else width[0] + width[1]

    inputs = sorted({channels(w) for w in widths}, key=lambda c: (c is None, c))
    lookup = {c: i for i, c in enumerate(inputs)}
    built = np.empty((len(inputs), len(own_values)), dtype=object)
    cost = np.zeros((len(inputs), len(own_values)))
    table_fields = {name: np.zeros((len(inputs), len(own_values)), np.int64)
                    for name in FIELDS["mbconv"]}
    for row, cin in enumerate(inputs):
        for column, values in enumerate(own_values):
            spec, record = _mbconv(template, values, stream, group,
                                   values[own[0]] if cin is None else cin, ratio, position, stride)
            built[row, column] = spec
            cost[row, column] = layer_cost(spec, *in_size)[2]
            for name, value in record.items():
                table_fields[name][row, column] = value
    rows = np.array([lookup[channels(w)] for w in widths]).reshape(width_shape)
    full = width_shape + own_shape

    def expand(array):
        return array[rows].reshape(full)

    fields = {k: expand(v) for k, v in table_fields.items()}
    if block == 0:
        bases = np.array([w[0] for w in widths]).reshape(width_shape + (1,) * len(own_shape))
        extras = np.array([w[1] for w in widths]).reshape(width_shape + (1,) * len(own_shape))
        fields["in_base"] = np.broadcast_to(bases, full).copy()
        fields["in_extra"] = np.broadcast_to(extras, full).copy()
    else:
        fields["in_base"] = fields["out_channels"].copy()
        fields["in_extra"] = np.zeros(full, np.int64)
    return expand(built), expand(cost), fields


def _mbconv(template, values, stream, group, cin, ratio, position, stride):
    cout = values[_group_key(stream, group, "channels")]
    expansion = values[_group_key(stream, group, "expansion")]
    t = values[_group_key(stream, group, "temporal_kernel")]
    k = values[_group_key(stream, group, "spatial_kernel")]
    inner = inner_width(cout, expansion)
    se_hidden = block_squeeze_excite_width(inner, ratio, position)
    projection = stride != 1 or cin != cout
    spec = LayerSpec(
        "mbconv", template.name, stream, group, cin, cout, stride,
        {
            "expansion": float(expansion),
            "inner_channels": inner,
            "temporal_kernel": t,
            "spatial_kernel": k,
            "se_hidden": se_hidden,
            "squeeze_excite_ratio": ratio if se_hidden else 0.0,
            "projection": projection,
            "residual_activation": template.options["residual_activation"],
        },
    )
    record = {
        "in_channels": cin, "out_channels": cout,
        "inner_channels": inner, "se_hidden": se_hidden, "temporal_kernel": t,
        "spatial_kernel": k, "projection": int(projection),
    }
    return spec, record


def _glore(template, values, stream, group):
    channels = values[_group_key(stream, group, "channels")]
    present = bool(values[_group_key(stream, group, "attention")])
    record = {"present": int(present), "channels": channels}
    if not present:
        return None, record
    return glore_spec(template.name, stream, group, channels), record


def _fusion(template, values, group, rules):
    operation = values[_group_key("sparse", group, "fusion")]
    dense = values[_group_key("dense", group, "channels")]
    added = fused_width(operation, dense, rules.alpha)
    record = {
        "operation": FUSION_OPS.index(operation), "dense_channels": dense,
        "fused_channels": added,
    }
    if operation == "none":
        return None, record
    sparse_width = values[_group_key("sparse", group, "channels")]
    merge = rules.space.fusion_merge
    spec = LayerSpec(
        "fusion", template.name, "", group, sparse_width,
        sparse_width + added if merge == "concat" else sparse_width,
        options={
            "operation": operation, "dense_channels": dense, "alpha": rules.alpha,
            "fused_channels": added, "merge": merge,
        },
    )
    return spec, record


def _stream_head(template, values, stream, rules, space):
    last = len(getattr(space, stream).groups) - 1
    base, extra = rules.width(values, stream, last)
    spec = LayerSpec(
        "stream_head", template.name, stream, -1, base + extra, template.out_channels
    )
    return spec, {"in_base": base, "in_extra": extra, "in_channels": base + extra}


__all__ = ["FIELDS", "LayerTable", "layer_tables"]
