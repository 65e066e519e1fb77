"""Old names that still read: one table of renamed arguments, attributes and JSON keys.

A name changes once, here; readers of saved files (checkpoints, `history.json`,
checkpoint configurations, layer configs) pass what they read through
`renamed_keys`, and functions that took the old keyword argument pop it with
`renamed_argument`, which warns with a `DeprecationWarning` naming the new one.

| old | new | why |
|---|---|---|
| `alpha_learning_rate` | `logits_learning_rate` | the paper's alpha is also TS-Fusion's frame-rate ratio |
| `alpha_optimizer` | `logits_optimizer` | (the search variables are the distribution's logits) |
| `alpha_loss` | `logits_loss` | |
| `alpha_frozen` | `logits_frozen` | |
| `filters` (VideoStem, MBConv3D, StreamHead, SuperStreamHead) | `channels` | one word for a width |
| `max_filters` (SuperMBConv3D) | `max_channels` | |
| `operation` (TSFusion), `operations` (SuperTSFusion) | `fusion`, `fusions` | the architecture's name of the fusion op |
| `enabled` (SuperAttention call) | `attention` | the architecture's name of the GloRe choice |
| `squeeze_excite_ratio` (MBConv3D, MBConvSpec) | `squeeze_excite` | the architecture's name of the SE ratio |
| `se_hidden` (layer tables, SuperMBConv3D call, MBConvSpec), `squeeze_excite_hidden` (MBConv3D attribute) | `squeeze_excite_channels` | the SE width, a width like `inner_channels` |
| `max_se_hidden` (SuperMBConv3D) | `max_squeeze_excite_channels` | |
| `out_channels` (layer specs, layer-table field) | `channels` | the layers' and the architecture's name of the output width |
"""

from __future__ import annotations

import warnings

# Search logits: PARSEC's alpha, renamed because TS-Fusion's `alpha` is SlowFast's
# frame-rate ratio.
SEARCH_LOGITS = {
    "alpha_learning_rate": "logits_learning_rate",
    "alpha_optimizer": "logits_optimizer",
    "alpha_loss": "logits_loss",
    "alpha_frozen": "logits_frozen",
}

# Layer widths: one word, `channels`, in layers, specs and JSON (Keras' `filters` was a second
# one). Saved layer configs with the old keys load through each layer's `from_config`.
LAYER_WIDTHS = {
    "filters": "channels",
    "max_filters": "max_channels",
}

# The fusion op: `fusion` as in the architecture's groups (TS-Fusion's layer argument was
# `operation`, the super layer's `operations`).
FUSION_NAMES = {
    "operation": "fusion",
    "operations": "fusions",
}

# Squeeze-excite: two ideas, two names. The ratio (SE width over the block's inner width) is
# `squeeze_excite`, as in the architecture's groups and their JSON; the width it gives is
# `squeeze_excite_channels`, as `inner_channels` is the inner width.
SQUEEZE_EXCITE_NAMES = {
    "squeeze_excite_ratio": "squeeze_excite",
    "se_hidden": "squeeze_excite_channels",
    "max_se_hidden": "max_squeeze_excite_channels",
}

_MISSING = object()


def renamed_keys(mapping: dict, renames: dict = SEARCH_LOGITS) -> dict:
    """A copy of `mapping` (read from an old file) with each old key under its new name.

    A key present under both names keeps the new one's value.
    """
    result = {}
    for key, value in mapping.items():
        new = renames.get(key, key)
        if new != key and new in mapping:
            continue
        result[new] = value
    return result


def renamed_rows(rows, renames: dict = SEARCH_LOGITS) -> list:
    """`renamed_keys` of every row of a history (a list of dicts)."""
    return [renamed_keys(row, renames) for row in rows]


def renamed_argument(kwargs: dict, old: str, new: str, value, default, *, where: str):
    """The value of argument `new`, taking a deprecated `old` out of `kwargs`.

    Args:
        kwargs: the caller's `**kwargs` (the old name is removed from it).
        old, new: the argument's old and new names.
        value: what was passed as `new`.
        default: `new`'s default (passing both names is an error only when
            `value` differs from it).
        where: the function, for the messages.

    Raises:
        TypeError: both names were given.
    """
    passed = kwargs.pop(old, _MISSING)
    if passed is _MISSING:
        return value
    if value is not default and value != default:
        raise TypeError(f"{where}: pass `{new}` only (`{old}` is its old name), not both.")
    warnings.warn(f"{where}: `{old}` is deprecated, pass `{new}`.", DeprecationWarning,
                  stacklevel=3)
    return passed


def renamed_attribute(old: str, new: str):
    """A property `old` that reads and writes attribute `new`, with a DeprecationWarning."""

    def warn():
        warnings.warn(f"`{old}` is deprecated, use `{new}`.", DeprecationWarning, stacklevel=3)

    def getter(self):
        warn()
        return getattr(self, new)

    def setter(self, value):
        warn()
        setattr(self, new, value)

    return property(getter, setter, doc=f"Deprecated name of `{new}`.")


__all__ = ["FUSION_NAMES", "LAYER_WIDTHS", "SEARCH_LOGITS", "SQUEEZE_EXCITE_NAMES", "renamed_argument",
           "renamed_attribute", "renamed_keys", "renamed_rows"]
