"""The search space as data: what can be chosen per block group, stream and model.

A space mirrors an `Architecture` field for field, with a tuple of choices where
the architecture has one value. Six variables can be searched per block group
(paper section 3.5): `temporal_kernel`, `spatial_kernel`, `channels`,
`expansion`, `fusion` (sparse stream, TS-Fusion after the group) and
`attention` (GloRe after the group). A variable with a single choice is fixed.

The progressive search (paper section 4.2) splits the variables in steps:

| step | variables |
|---|---|
| 1 | sparse stream: temporal_kernel, spatial_kernel, channels, expansion |
| 2 | dense stream: the same four; fusion ops of the sparse stream |
| 3 | attention in both streams |
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from tsnet_keras.checks import check_choice
from tsnet_keras.space.architecture import (
    FUSION_MERGES,
    FUSION_OPS,
    Architecture,
    BlockGroup,
    Stem,
    Stream,
)

BACKBONE_VARIABLES = ("temporal_kernel", "spatial_kernel", "channels", "expansion")
VARIABLES = BACKBONE_VARIABLES + ("fusion", "attention")
STEPS = (1, 2, 3)


def choice_range(minimum, maximum, step) -> tuple:
    """Choices of a (min, max, step) range, both ends included (paper Table 1).

    Example:

    >>> choice_range(32, 48, 8)
    (32, 40, 48)
    >>> choice_range(1.5, 6.0, 0.75)
    (1.5, 2.25, 3.0, 3.75, 4.5, 5.25, 6.0)
    """
    if step <= 0:
        raise ValueError(f"choice_range: `step` must be > 0, got {step}.")
    if maximum < minimum:
        raise ValueError(f"choice_range: `max` ({maximum}) is below `min` ({minimum}).")
    count = int(round((maximum - minimum) / step)) + 1
    values = [minimum + i * step for i in range(count)]
    if abs(values[-1] - maximum) > 1e-9:
        raise ValueError(
            f"choice_range: ({minimum}, {maximum}, {step}) does not end on max; "
            f"the last value would be {values[-1]}."
        )
    if all(isinstance(v, int) for v in (minimum, maximum, step)):
        return tuple(int(v) for v in values)
    return tuple(round(float(v), 6) for v in values)


@dataclass(frozen=True)
class Variable:
    """One searchable (or fixed) variable of a space.

    Args:
        stream: "sparse" or "dense".
        group: int, the block-group index within the stream.
        name: one of `VARIABLES`.
        choices: tuple of the allowed values.
    """

    stream: str
    group: int
    name: str
    choices: tuple

    @property
    def key(self) -> str:
        """Stable, readable identifier, e.g. `sparse[3].channels`."""
        return f"{self.stream}[{self.group}].{self.name}"

    @property
    def step(self) -> int:
        """The progressive-search step that searches this variable."""
        if self.name == "attention":
            return 3
        if self.name == "fusion" or self.stream == "dense":
            return 2
        return 1

    @property
    def searchable(self) -> bool:
        return len(self.choices) > 1


@dataclass(frozen=True)
class BlockGroupSpace:
    """Choices for one block group (one row of the paper's Table 1).

    Args:
        stage: int. Stage of the group.
        repeats: int. MBConv3D blocks in the group (N).
        stride: int. Spatial stride of the first block (S).
        channels: tuple of int. Output-channel choices.
        expansion: tuple of float. Expansion-rate choices.
        temporal_kernel: tuple of odd int. Defaults to (1, 3, 5) (Table 2).
        spatial_kernel: tuple of odd int. Defaults to (3, 5) (Table 2).
        fusion: tuple of str. TS-Fusion candidates after the group (sparse stream
            only); ("none",) where no fusion block can be placed.
        attention: tuple of bool. (False, True) where a GloRe block is a candidate.
        squeeze_excite: float. Fixed squeeze-excite ratio (X3D: 1/16).
    """

    stage: int
    repeats: int
    stride: int
    channels: tuple
    expansion: tuple = choice_range(1.5, 6.0, 0.75)
    temporal_kernel: tuple = (1, 3, 5)
    spatial_kernel: tuple = (3, 5)
    fusion: tuple = ("none",)
    attention: tuple = (False,)
    squeeze_excite: float = 0.0625

    def __post_init__(self):
        for name in VARIABLES:
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
                raise TypeError(
                    f"BlockGroupSpace: `{name}` must be a tuple of choices, got {value!r}."
                )
            if not value:
                raise ValueError(f"BlockGroupSpace: `{name}` has no choices.")
            if len(set(value)) != len(value):
                raise ValueError(f"BlockGroupSpace: `{name}` has duplicate choices {value}.")
            object.__setattr__(self, name, tuple(value))
        for op in self.fusion:
            if op not in FUSION_OPS:
                raise ValueError(
                    f"BlockGroupSpace: fusion choice {op!r} is not one of {FUSION_OPS}."
                )
        for value in self.attention:
            if not isinstance(value, bool):
                raise TypeError(f"BlockGroupSpace: attention choices must be bools, got {value!r}.")
        # Building the extreme groups validates every numeric choice once.
        for pick in (min, max):
            self.group({name: pick(getattr(self, name)) for name in BACKBONE_VARIABLES})

    def group(self, values: Mapping) -> BlockGroup:
        """The concrete `BlockGroup` for one value per variable (missing: first choice)."""
        return BlockGroup(
            stage=self.stage,
            repeats=self.repeats,
            stride=self.stride,
            squeeze_excite=self.squeeze_excite,
            **{name: values.get(name, getattr(self, name)[0]) for name in VARIABLES},
        )


@dataclass(frozen=True)
class StreamSpace:
    """Choices for one stream: fixed stem, frames and head, searchable groups.

    Args:
        frames: int. Input frames.
        stem: `Stem` (fixed).
        groups: tuple of `BlockGroupSpace`.
        head_channels: int. Width of the head conv (fixed).
    """

    frames: int
    stem: Stem
    groups: tuple
    head_channels: int

    def __post_init__(self):
        groups = tuple(self.groups)
        if not groups:
            raise ValueError("StreamSpace: `groups` must hold at least one BlockGroupSpace.")
        for index, group in enumerate(groups):
            if not isinstance(group, BlockGroupSpace):
                raise TypeError(f"StreamSpace: groups[{index}] must be a BlockGroupSpace.")
        object.__setattr__(self, "groups", groups)


@dataclass(frozen=True)
class TwoStreamSpace:
    """The multivariate two-stream search space (paper section 3, Table 1).

    Args:
        sparse: `StreamSpace`.
        dense: `StreamSpace` or None (single-stream spaces).
        head_units: int. Classifier hidden units. Defaults to 2048.
        dropout_rate: float. Defaults to 0.5.
        fusion_merge: "concat" or "sum". Defaults to "concat".

    Example:

    >>> space = tsnet_keras.spaces.auto_tsnet()
    >>> arch = space.sample(seed=0)
    >>> space.validate(arch)
    >>> space.size(step=3)
    4096
    """

    sparse: StreamSpace
    dense: StreamSpace | None = None
    head_units: int = 2048
    dropout_rate: float = 0.5
    fusion_merge: str = "concat"

    def __post_init__(self):
        check_choice("fusion_merge", self.fusion_merge, FUSION_MERGES, where="TwoStreamSpace")
        # Fails early (with Architecture's message) on misaligned streams.
        self.architecture({})

    # ------------------------------------------------------------ variables
    def streams(self):
        yield "sparse", self.sparse
        if self.dense is not None:
            yield "dense", self.dense

    def variables(self, step: int | None = None, searchable: bool = True) -> list:
        """The variables of the space, in a stable order.

        Args:
            step: None for all, or 1, 2, 3 for one progressive-search step.
            searchable: if True (default) only variables with several choices.

        Returns:
            list of `Variable`.
        """
        if step is not None and step not in STEPS:
            raise ValueError(f"`step` must be None or one of {STEPS}, got {step!r}.")
        result = []
        for stream_name, stream in self.streams():
            for index, group in enumerate(stream.groups):
                for name in VARIABLES:
                    variable = Variable(stream_name, index, name, getattr(group, name))
                    if searchable and not variable.searchable:
                        continue
                    if step is not None and variable.step != step:
                        continue
                    result.append(variable)
        return result

    def variable(self, key: str) -> Variable:
        for variable in self.variables(searchable=False):
            if variable.key == key:
                return variable
        raise KeyError(f"No variable {key!r} in this space.")

    def size(self, step: int | None = None) -> int:
        """Number of architectures (of one progressive step, or of the whole space)."""
        return math.prod(len(v.choices) for v in self.variables(step=step))

    # -------------------------------------------------------- architectures
    def architecture(self, values: Mapping | None = None) -> Architecture:
        """The architecture for `values` (variable key -> value).

        Fixed variables take their only choice; searchable variables that are
        missing take their first choice. Unknown keys and values outside the
        choices raise a ValueError naming the variable and the allowed values.
        """
        values = dict(values or {})
        known = {v.key: v for v in self.variables(searchable=False)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"Unknown variable {key!r}; see space.variables().")
            if value not in known[key].choices:
                raise ValueError(
                    f"{key} = {value!r} is not allowed; choices are {known[key].choices}."
                )
        streams = {}
        for stream_name, stream in self.streams():
            groups = []
            for index, group in enumerate(stream.groups):
                prefix = f"{stream_name}[{index}]."
                picks = {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}
                groups.append(group.group(picks))
            streams[stream_name] = Stream(
                frames=stream.frames,
                stem=stream.stem,
                groups=tuple(groups),
                head_channels=stream.head_channels,
            )
        return Architecture(
            sparse=streams["sparse"],
            dense=streams.get("dense"),
            head_units=self.head_units,
            dropout_rate=self.dropout_rate,
            fusion_merge=self.fusion_merge,
        )

    def from_indices(self, indices: Mapping) -> Architecture:
        """The architecture for `indices` (variable key -> index into its choices)."""
        return self.architecture(
            {key: self.variable(key).choices[int(i)] for key, i in indices.items()}
        )

    def values(self, arch: Architecture, step: int | None = None) -> dict:
        """Variable key -> value of `arch` (after validating it against the space)."""
        self.validate(arch)
        return {
            v.key: getattr(getattr(arch, v.stream).groups[v.group], v.name)
            for v in self.variables(step=step, searchable=False)
        }

    def indices(self, arch: Architecture, step: int | None = None) -> dict:
        """Variable key -> index of `arch`'s choice, searchable variables only."""
        values = self.values(arch)
        return {
            v.key: v.choices.index(values[v.key]) for v in self.variables(step=step)
        }

    def sample(self, seed=None) -> Architecture:
        """An architecture drawn uniformly at random (independent choices).

        Args:
            seed: int, None or a `numpy.random.Generator`.
        """
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return self.architecture(
            {v.key: v.choices[int(rng.integers(len(v.choices)))] for v in self.variables()}
        )

    def extreme(self, largest: bool = True) -> Architecture:
        """The architecture with every numeric choice at its max (or min).

        Fusion takes "time_strided_conv"/"time_to_channel" (largest) or "none";
        attention True (largest) or False where allowed.
        """
        values = {}
        for v in self.variables():
            if v.name == "fusion":
                order = ("none", "time_strided_sample", "time_strided_conv", "time_to_channel")
                ranked = sorted(v.choices, key=order.index)
                values[v.key] = ranked[-1] if largest else ranked[0]
            else:
                values[v.key] = max(v.choices) if largest else min(v.choices)
        return self.architecture(values)

    def validate(self, arch: Architecture) -> None:
        """Raises a ValueError unless `arch` is an architecture of this space.

        The message names the stream, the block group, the variable and the
        allowed values.
        """
        if not isinstance(arch, Architecture):
            raise TypeError(f"validate expects an Architecture, got {type(arch).__name__}.")
        for name in ("head_units", "dropout_rate", "fusion_merge"):
            if getattr(arch, name) != getattr(self, name):
                raise ValueError(
                    f"architecture {name}={getattr(arch, name)!r} but the space has "
                    f"{getattr(self, name)!r}."
                )
        for stream_name in ("sparse", "dense"):
            stream_space = getattr(self, stream_name)
            stream = getattr(arch, stream_name)
            if (stream_space is None) != (stream is None):
                raise ValueError(
                    f"the space {'has no' if stream_space is None else 'has a'} {stream_name} "
                    f"stream but the architecture {'has one' if stream else 'has none'}."
                )
            if stream is not None:
                _validate_stream(stream_name, stream, stream_space)

    def contains(self, arch: Architecture) -> bool:
        try:
            self.validate(arch)
        except ValueError:
            return False
        return True

    # ---------------------------------------------------------- sub-spaces
    def fix(self, arch: Architecture, step: int | None = None, keys=None) -> "TwoStreamSpace":
        """A copy where variables take `arch`'s value as their only choice.

        Args:
            arch: an architecture of this space.
            step: fix the variables of this progressive step (e.g. 1 after step 1).
            keys: or an explicit iterable of variable keys.
        """
        if (step is None) == (keys is None):
            raise ValueError("fix: pass exactly one of `step` or `keys`.")
        values = self.values(arch)
        if keys is None:
            keys = [v.key for v in self.variables(step=step, searchable=False)]
        keys = set(keys)
        unknown = keys - set(values)
        if unknown:
            raise ValueError(f"fix: unknown variable(s) {sorted(unknown)}.")
        return self._replace_choices({k: (values[k],) for k in keys})

    def only(self, step: int, fixed: Architecture | None = None) -> "TwoStreamSpace":
        """The sub-space searched by one progressive step.

        Variables of other steps are fixed: to `fixed`'s values where given,
        otherwise earlier steps must be given and later steps take their default
        (first choice, i.e. no attention / no fusion in the Auto-TSNet space).
        """
        check_choice("step", step, STEPS)
        base = fixed if fixed is not None else self.architecture({})
        values = self.values(base)
        changes = {}
        for v in self.variables(searchable=False):
            if v.step != step:
                changes[v.key] = (values[v.key],)
        return self._replace_choices(changes)

    def _replace_choices(self, changes: Mapping) -> "TwoStreamSpace":
        streams = {}
        for stream_name, stream in self.streams():
            groups = []
            for index, group in enumerate(stream.groups):
                prefix = f"{stream_name}[{index}]."
                update = {k[len(prefix):]: v for k, v in changes.items() if k.startswith(prefix)}
                groups.append(dataclasses.replace(group, **update))
            streams[stream_name] = dataclasses.replace(stream, groups=tuple(groups))
        return dataclasses.replace(self, **streams)

    def single_stream(self) -> "TwoStreamSpace":
        """The sparse stream alone (progressive step 1 searches it with its own head)."""
        sparse = dataclasses.replace(
            self.sparse,
            groups=tuple(dataclasses.replace(g, fusion=("none",)) for g in self.sparse.groups),
        )
        return dataclasses.replace(self, sparse=sparse, dense=None)



# ------------------------------------------------------------------ validation helpers
def _validate_stream(stream_name, stream, stream_space) -> None:
    """`TwoStreamSpace.validate` for one stream: its fixed fields, then each block group."""
    for name in ("frames", "stem", "head_channels"):
        if getattr(stream, name) != getattr(stream_space, name):
            raise ValueError(
                f"{stream_name} stream: {name}={getattr(stream, name)!r} but the space "
                f"has {getattr(stream_space, name)!r}."
            )
    if len(stream.groups) != len(stream_space.groups):
        raise ValueError(
            f"{stream_name} stream: {len(stream.groups)} block groups but the space "
            f"has {len(stream_space.groups)}."
        )
    for index, (group, choices) in enumerate(zip(stream.groups, stream_space.groups)):
        where = f"{stream_name} block group {index} (stage {choices.stage})"
        _validate_group(where, group, choices)


def _validate_group(where, group, choices) -> None:
    """A block group's fixed fields equal the space's, and its variables are allowed choices."""
    for name in ("stage", "repeats", "stride", "squeeze_excite"):
        if getattr(group, name) != getattr(choices, name):
            raise ValueError(
                f"{where}: {name}={getattr(group, name)!r} but the space has "
                f"{getattr(choices, name)!r}."
            )
    for name in VARIABLES:
        if getattr(group, name) not in getattr(choices, name):
            raise ValueError(
                f"{where}: {name}={getattr(group, name)!r} is not allowed; "
                f"choices are {getattr(choices, name)}."
            )


# ------------------------------------------------------------------ space <-> dict
def space_to_dict(space: TwoStreamSpace) -> dict:
    """A JSON-ready dict of a `TwoStreamSpace` (inverse: `space_from_dict`)."""
    if not isinstance(space, TwoStreamSpace):
        raise TypeError(f"space_to_dict expects a TwoStreamSpace, got {type(space).__name__}.")
    return json.loads(json.dumps(dataclasses.asdict(space)))


def space_from_dict(data) -> TwoStreamSpace:
    """Rebuilds a `TwoStreamSpace` from `space_to_dict`'s output."""
    if isinstance(data, TwoStreamSpace):
        return data
    if not isinstance(data, dict):
        raise TypeError(f"space_from_dict expects a dict, got {type(data).__name__}.")

    def stream(item):
        if item is None:
            return None
        groups = tuple(
            BlockGroupSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in g.items()})
            for g in item["groups"]
        )
        return StreamSpace(
            frames=item["frames"], stem=Stem(**item["stem"]), groups=groups,
            head_channels=item["head_channels"],
        )

    data = dict(data)
    return TwoStreamSpace(
        sparse=stream(data.pop("sparse")), dense=stream(data.pop("dense", None)), **data
    )

__all__ = [
    "BACKBONE_VARIABLES",
    "BlockGroupSpace",
    "STEPS",
    "StreamSpace",
    "TwoStreamSpace",
    "VARIABLES",
    "Variable",
    "choice_range",
    "space_from_dict",
    "space_to_dict",
]
