"""Argument checks (`tsnet_keras.checks`, with the layer name) and shape helpers of the layers (private)."""

from tsnet_keras import checks
from tsnet_keras.space.rules import same_output_size


def check_positive_int(layer, field, value):
    return checks.check_int(field, value, 1, where=layer)


def check_int(layer, field, value, minimum=1, plain=False):
    return checks.check_int(field, value, minimum, where=layer, plain=plain)


def check_odd_positive_int(layer, field, value):
    return checks.check_int(field, value, 1, where=layer, odd=True)


def check_choice(layer, field, value, allowed):
    return checks.check_choice(field, value, allowed, where=layer)


def check_number(layer, field, value, minimum=None, below=None, strict=False):
    """Validates a real number; returns it unchanged (layer configs keep what they were given)."""
    checks.check_number(field, value, minimum, below, strict=strict, where=layer)
    return value


def check_bool(layer, field, value):
    return checks.check_bool(field, value, where=layer)


def check_stride(layer, field, value):
    return checks.check_stride(field, value, where=layer)


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
