"""Shared helpers of the weight-sharing super-blocks (private)."""

import contextlib
import threading

import keras
import numpy as np
from keras import ops

_BOX_READER = threading.local()


@contextlib.contextmanager
def box_reader(reader):
    """Within the block, `active_slice` of a `keras.Variable` first asks
    `reader(variable, starts, sizes)` (full-rank tuples, size -1: to the axis's end) for
    the box; None from it means a plain read. The search's box gradients use it
    (`tsnet_keras.search.box_gradients`). Per thread, so replicas do not share it."""
    previous = getattr(_BOX_READER, "reader", None)
    _BOX_READER.reader = reader
    try:
        yield reader
    finally:
        _BOX_READER.reader = previous


def active_slice(tensor, sizes, starts=()):
    """The box of `tensor` at `starts` (zeros by default) of `sizes` along its leading axes,
    the remaining axes whole: one plain slice (`keras.ops.slice`).

    A super layer reads its widest weights this way. On TensorFlow a plain slice needs one
    packed size vector, and its gradient is a Pad; a strided slice (`kernel[:a, :b]`) needs
    three packed vectors and its gradient, `StridedSliceGrad`, is a slower kernel
    (BENCHMARKS.md section 3b). Sizes and starts may be tensors; a size None (an axis whose
    length only a traced TensorFlow graph leaves unknown) takes the axis to its end. Pass
    the variable itself, not its value, so that a `box_reader` can serve the read.
    """
    shape = tuple(tensor.shape)
    starts = tuple(starts) + (0,) * (len(shape) - len(starts))
    sizes = tuple(-1 if size is None else size for size in tuple(sizes) + shape[len(sizes):])
    reader = getattr(_BOX_READER, "reader", None)
    if reader is not None and isinstance(tensor, keras.Variable):
        box = reader(tensor, starts, sizes)
        if box is not None:
            return box
    return ops.slice(ops.convert_to_tensor(tensor), starts, sizes)


# Input kernels of a block after a fusion have `max_in_base + max_in_extra` rows: row
# `r < max_in_base` reads stream channel `r`, row `max_in_base + j` reads fused channel `j`.
def input_rows(kernel, in_base, in_extra, max_in_base, max_in_extra, columns=None):
    """The rows of an input kernel that `in_base` stream + `in_extra` fused channels read
    (and of those rows the first `columns` columns; None: all), one slice per row block."""
    sizes = (lambda rows: (rows,)) if columns is None else (lambda rows: (rows, columns))
    rows = active_slice(kernel, sizes(in_base))
    if max_in_extra:
        extra = active_slice(kernel, sizes(in_extra), (max_in_base,))
        rows = ops.concatenate([rows, extra], axis=0)
    return rows


def input_row_indices(layer, choice):
    """`input_rows` as NumPy indices for one choice (`in_base`, optional `in_extra`), checked
    against the layer's `max_in_base` / `max_in_extra`."""
    base, extra = int(choice["in_base"]), int(choice.get("in_extra", 0))
    if base > layer.max_in_base or extra > layer.max_in_extra:
        raise ValueError(
            f"{layer.name}: input ({base} + {extra}) exceeds the block's widest "
            f"input ({layer.max_in_base} + {layer.max_in_extra})."
        )
    return np.concatenate([np.arange(base), layer.max_in_base + np.arange(extra)]).astype(int)


class ChoiceWeightsMixin:
    """`choice_weights` / `assign_choice_weights` from a layer's `_choice_slices`.

    `_choice_slices(choice)` returns `{path: ((variable, index), value)}`: the
    slice of a widest weight that one choice uses, in the fixed layer's layout.
    """

    def choice_weights(self, choice):
        """The weights one choice uses, in the fixed layer's layout (NumPy), by path."""
        return {path: value for path, (_, value) in self._choice_slices(choice).items()}

    def assign_choice_weights(self, choice, weights, strict=True):
        """Writes one choice's weights (fixed-layer layout) into the widest weights.

        Args:
            choice: the choice (as for `choice_weights`).
            weights: dict path -> array with exactly the choice's shapes.
            strict: if False, weights missing from `weights` are left unchanged.
        """
        for path, ((variable, index), value) in self._choice_slices(choice).items():
            if path not in weights:
                if strict:
                    raise ValueError(f"{self.name}: missing weight {path!r}.")
                continue
            new = weights[path]
            if tuple(new.shape) != tuple(value.shape):
                raise ValueError(
                    f"{self.name}/{path}: shape {tuple(new.shape)} does not fit the "
                    f"choice's {tuple(value.shape)}."
                )
            full = ops.convert_to_numpy(variable).copy()
            full[index] = new
            variable.assign(full)
