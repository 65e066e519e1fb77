"""The pointwise (1x1x1) convolution of video blocks: one 2D matmul over the channels."""

import math

from keras import ops


def pointwise(x, kernel):
    """`x @ kernel` over the last axis of `x` (rank >= 2), as one 2D matmul.

    The same arithmetic as `keras.ops.matmul(x, kernel)` for a 2D `kernel`, but
    with the leading axes merged first: on TensorFlow, `matmul` of a higher-rank
    `x` goes through `tensordot`, which builds some forty graph ops (shape
    gathers, products, transposes) where the channel count is known only at run
    time, as in a super-block's sliced widths; this builds a handful.

    Args:
        x: `(..., C_in)` tensor.
        kernel: `(C_in, C_out)` tensor or variable.

    Returns:
        `(..., C_out)` tensor.
    """
    if len(x.shape) == 2:
        return ops.matmul(x, kernel)
    leading = tuple(x.shape[:-1])
    if None not in leading:  # only the channel counts may be run-time: no shape arithmetic
        flat = ops.matmul(ops.reshape(x, (math.prod(leading), -1)), kernel)
        return ops.reshape(flat, (*leading, -1))
    shape = ops.shape(x)
    flat = ops.matmul(ops.reshape(x, (-1, shape[-1])), kernel)
    return ops.reshape(flat, (*shape[:-1], ops.shape(kernel)[-1]))


__all__ = ["pointwise"]
