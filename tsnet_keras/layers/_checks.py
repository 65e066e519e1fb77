"""Argument checks and shape helpers shared by the layers (private)."""

import numbers

from tsnet_keras.space.rules import same_output_size


def check_positive_int(layer, field, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{layer}: `{field}` must be a positive integer; got {value!r}.")
    return int(value)


def check_odd_positive_int(layer, field, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < 1
        or value % 2 != 1
    ):
        raise ValueError(
            f"{layer}: `{field}` must be an odd positive integer (1, 3, 5, ...); got {value!r}."
        )
    return int(value)


def check_choice(layer, field, value, allowed):
    if value not in allowed:
        allowed_text = ", ".join(repr(choice) for choice in allowed)
        raise ValueError(f"{layer}: `{field}` must be one of {allowed_text}; got {value!r}.")
    return value


def check_stride(layer, field, value):
    if isinstance(value, bool) or value not in (1, 2):
        raise ValueError(f"{layer}: `{field}` must be 1 or 2; got {value!r}.")
    return int(value)


def check_video_shape(layer, input_shape):
    if len(input_shape) != 5:
        raise ValueError(
            f"{layer} expects inputs of shape (batch, frames, height, width, "
            f"channels); got shape {tuple(input_shape)}."
        )
    if input_shape[-1] is None:
        raise ValueError(f"{layer} needs a known channel dimension; got {tuple(input_shape)}.")


def strided_size(size, stride):
    """Output size of a "same"-padded convolution: ceil(size / stride); None stays None."""
    return None if size is None else same_output_size(size, stride)


def strided_video_shape(input_shape, spatial_stride, channels):
    """`(B, T, H, W, C)` after a layer with spatial stride `spatial_stride` and `channels` outputs."""
    batch, frames, height, width, _ = input_shape
    return (batch, frames, strided_size(height, spatial_stride), strided_size(width, spatial_stride), channels)


def add_squeeze_excite_weights(layer, inner, hidden):
    """Creates the squeeze-excite weights of an MBConv3D-like `layer` (reduce and expand FCs)."""
    layer.se_reduce_kernel = layer.add_weight(name="se_reduce_kernel", shape=(inner, hidden), initializer="he_normal")
    layer.se_reduce_bias = layer.add_weight(name="se_reduce_bias", shape=(hidden,), initializer="zeros")
    layer.se_expand_kernel = layer.add_weight(name="se_expand_kernel", shape=(hidden, inner), initializer="he_normal")
    layer.se_expand_bias = layer.add_weight(name="se_expand_bias", shape=(inner,), initializer="zeros")
