"""Argument checks and shape helpers shared by the layers (private)."""

import numbers


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
    """Output size of a "same"-padded convolution: ceil(size / stride)."""
    return None if size is None else -(-size // stride)
