"""Exact expected MACs of a distribution over architectures, differentiable in the logits.

The MACs of an architecture are a sum over the layers of its plan, and each
layer depends on a few variables only (`layer_tables`). With independent
categorical choices, the expectation of one layer's MACs is its table contracted
with the choice probabilities of its variables:

    E[MACs] = constant + sum_terms einsum(table_term, p_v1, p_v2, ...)

This is exact (no sampling) and differentiable, so a FLOPs hinge on it gives
the architecture logits an analytic gradient. Layers with the same variables
are summed into one term; fixed variables (one choice) drop out.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from tsnet_keras.space.layer_tables import layer_tables
from tsnet_keras.space.rules import DEFAULT_CROP
from tsnet_keras.space.search_space import TwoStreamSpace

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class MacsModel:
    """MACs of every architecture of a space as a sum of small tables.

    Args:
        space: `TwoStreamSpace`.
        num_classes: int. Classifier outputs. Defaults to 400.
        crop: int or (height, width). Input crop. Defaults to 160.
        tables: optional precomputed `layer_tables(space, num_classes, crop)`.

    Attributes:
        keys: searchable variable keys, in `space.variables()` order (the order
            of the probability vectors passed to `expected`).
        constant: MACs of the layers that depend on no searchable variable.
        terms: list of (variable positions, float64 table).

    Example:

    >>> model = MacsModel(space, crop=160)
    >>> uniform = [np.full(len(v.choices), 1 / len(v.choices)) for v in space.variables()]
    >>> model.expected_numpy(uniform)  # mean MACs of a uniformly random architecture
    """

    def __init__(
        self, space: TwoStreamSpace, num_classes: int = 400, crop=DEFAULT_CROP, tables=None
    ):
        if not isinstance(space, TwoStreamSpace):
            raise TypeError(f"MacsModel expects a TwoStreamSpace, got {type(space).__name__}.")
        self.space = space
        self.num_classes = num_classes
        self.crop = crop
        variables = space.variables()
        self.keys = tuple(v.key for v in variables)
        self.sizes = tuple(len(v.choices) for v in variables)
        position = {key: i for i, key in enumerate(self.keys)}
        tables = layer_tables(space, num_classes, crop) if tables is None else tables
        constant = 0.0
        merged = {}
        for table in tables:
            axes = [a for a, key in enumerate(table.keys) if key in position]
            macs = table.macs.reshape([table.shape[a] for a in axes])  # fixed axes have size 1
            if not axes:
                constant += float(macs)
                continue
            positions = [position[table.keys[a]] for a in axes]
            order = np.argsort(positions)
            key = tuple(positions[i] for i in order)
            merged[key] = merged.get(key, 0.0) + np.transpose(macs, order)
        self.constant = constant
        self.terms = sorted(merged.items())
        self._tables32 = self._flat32 = None

    # ------------------------------------------------------------ concrete
    def macs(self, indices) -> float:
        """MACs of the architecture with these choice indices (sequence in `keys` order)."""
        indices = [int(i) for i in indices]
        total = self.constant
        for positions, table in self.terms:
            total += float(table[tuple(indices[p] for p in positions)])
        return total

    def macs_of(self, arch) -> float:
        """MACs of an `Architecture` of the space."""
        values = self.space.indices(arch)
        return self.macs([values[key] for key in self.keys])

    # ---------------------------------------------------------- expected
    def expected_numpy(self, probabilities) -> float:
        """E[MACs] in float64 for a list of probability vectors (in `keys` order)."""
        probabilities = [np.asarray(p, dtype=np.float64) for p in probabilities]
        total = self.constant
        for positions, table in self.terms:
            total += float(np.einsum(self._equation(len(positions)), table,
                                     *[probabilities[p] for p in positions]))
        return total

    def expected(self, probabilities):
        """E[MACs] as a differentiable backend tensor (float32).

        Args:
            probabilities: list of tensors, one probability vector per
                searchable variable, in `keys` order.
        """
        total = ops.convert_to_tensor(np.float32(self.constant))
        for (positions, _), table in zip(self.terms, self._float32_tables()):
            total = total + ops.einsum(
                self._equation(len(positions)), ops.convert_to_tensor(table),
                *[probabilities[p] for p in positions]
            )
        return total

    def sampled(self, indices):
        """MACs of sampled architectures as a float32 tensor: `indices` is an int tensor
        (..., V), the result (...). One look-up of every term's entry for all samples: a
        few ops, however many terms and samples (a step's K samples at once)."""
        values, strides, offsets = self._flat_tables()
        indices = ops.cast(indices, "int32")
        entries = ops.sum(ops.expand_dims(indices, -2) * strides, axis=-1) + offsets
        return np.float32(self.constant) + ops.sum(ops.take(values, entries), axis=-1)

    def _flat_tables(self):
        """`(values, strides, offsets)`: the float32 terms' tables concatenated flat, and
        where term t's entry for indices i is, `offsets[t] + strides[t] . i` (a term's
        strides are zero on the variables it does not depend on)."""
        if self._flat32 is None:  # NumPy, as `_float32_tables`
            tables = self._float32_tables()
            strides = np.zeros((len(self.terms), len(self.keys)), "int32")
            for t, ((positions, _), table) in enumerate(zip(self.terms, tables)):
                for axis, p in enumerate(positions):
                    strides[t, p] = int(np.prod(table.shape[axis + 1:]))
            sizes = [table.size for table in tables]
            offsets = np.cumsum([0] + sizes)[:-1].astype("int32")
            values = [table.reshape(-1) for table in tables]
            self._flat32 = (np.concatenate(values) if values else np.zeros(0, "float32"),
                            strides, offsets)
        return self._flat32

    def _float32_tables(self):
        # NumPy, not tensors: a tensor cached during one trace is out of scope in the next.
        if self._tables32 is None:
            self._tables32 = [table.astype("float32") for _, table in self.terms]
        return self._tables32

    @staticmethod
    def _equation(rank):
        letters = _LETTERS[:rank]
        return letters + "," + ",".join(letters) + "->"

    # ------------------------------------------------------------- bounds
    def macs_range(self) -> tuple:
        """Exact (smallest, largest) MACs over every architecture of the space.

        Min-sum (max-sum) variable elimination over the terms, so no enumeration
        of the space is needed.
        """
        return self._optimum(np.min), self._optimum(np.max)

    def _optimum(self, reduce):
        factors = [(tuple(p), t) for p, t in self.terms]
        total = self.constant
        remaining = {p for positions, _ in factors for p in positions}
        def cost(variable, factors):
            scope = set()
            for positions, _ in factors:
                if variable in positions:
                    scope.update(positions)
            return math.prod(self.sizes[p] for p in scope)

        while remaining:
            best = min(sorted(remaining), key=lambda v, f=factors: cost(v, f))
            involved = [f for f in factors if best in f[0]]
            factors = [f for f in factors if best not in f[0]]
            scope = sorted({p for positions, _ in involved for p in positions})
            combined = 0.0
            for positions, table in involved:
                combined = combined + _broadcast(table, positions, scope, self.sizes)
            reduced = reduce(combined, axis=scope.index(best))
            rest = tuple(p for p in scope if p != best)
            if rest:
                factors.append((rest, reduced))
            else:
                total += float(reduced)
            remaining.discard(best)
        for _, table in factors:  # scalars left over (none in practice)
            total += float(table)
        return total


def check_target_macs(macs_model, target_macs):
    """Validates a MACs target against the space's exact range; returns (low, high) or None.

    Raises:
        ValueError: if the target is not a positive number / ordered pair, or lies
            outside the MACs the space can reach (the hinge could never be
            satisfied, or would never act).
    """
    if target_macs is None:
        return None
    if isinstance(target_macs, (int, float, np.integer, np.floating)) and not isinstance(
        target_macs, bool
    ):
        low, high = 0.0, float(target_macs)
    elif isinstance(target_macs, (tuple, list)) and len(target_macs) == 2:
        low, high = (float(v) for v in target_macs)
    else:
        raise ValueError(
            f"`target_macs` must be a number or a (low, high) pair, got {target_macs!r}."
        )
    if not 0 <= low < high:
        raise ValueError(f"`target_macs` needs 0 <= low < high, got ({low}, {high}).")
    smallest, largest = macs_model.macs_range()
    if high < smallest:
        raise ValueError(
            f"target_macs {high:.4g} is below the smallest architecture of the space "
            f"({smallest:.4g} MACs at crop {macs_model.crop}): no architecture can meet it."
        )
    if low > largest:
        raise ValueError(
            f"target_macs lower bound {low:.4g} is above the largest architecture of the "
            f"space ({largest:.4g} MACs at crop {macs_model.crop})."
        )
    if low == 0 and high >= largest:
        raise ValueError(
            f"target_macs {high:.4g} is at or above the largest architecture of the space "
            f"({largest:.4g} MACs at crop {macs_model.crop}): the FLOPs hinge would never act. "
            "Pass target_macs=None to search without it."
        )
    return (low, high)


def _broadcast(table, positions, scope, sizes):
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    table = np.transpose(table, order)
    ordered = [positions[i] for i in order]
    shape = [sizes[p] if p in ordered else 1 for p in scope]
    return table.reshape(shape)


__all__ = ["MacsModel", "check_target_macs"]
