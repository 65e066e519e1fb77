"""Channel-wise (depthwise) 3D convolution for channels-last video tensors.

Keras has no ``DepthwiseConv3D``. A depthwise ``t x k x k`` convolution equals
the sum over its ``t`` temporal taps of per-frame 2D depthwise convolutions of
time-shifted frames. On CPU that decomposition is far faster than a grouped 3D
convolution with TensorFlow and at least as fast with torch; XLA (JAX) runs a
plain sum of ``t * k * k`` shifted slices fastest. ``benchmarks/bench_depthwise.py``
measures every method per backend. All methods are exact and share the kernel
layout ``(t, k, k, channels)``.

The frame windows of the taps are plain slices (``ops.slice``), never strided
slices: TensorFlow's CPU gradient of a strided slice was 80% of an X3D-S
training step, the gradient of a plain slice is one Pad. A hand-written
backward pass in keras.ops (``keras.ops.custom_gradient``) lost to the
backends' own depthwise gradient kernels (``custom_grad`` in the benchmark).
"""

import contextlib
import functools
import threading

import keras
from keras import ops

from tsnet_keras.checks import check_stride
from tsnet_keras.space.rules import same_output_size


def _check_kernel(inputs, kernel, spatial_stride):
    if len(inputs.shape) != 5:
        raise ValueError(
            "depthwise_conv3d expects inputs of shape (batch, frames, height, "
            f"width, channels); got shape {tuple(inputs.shape)}."
        )
    if len(kernel.shape) != 4:
        raise ValueError(
            "depthwise_conv3d expects a kernel of shape (temporal_kernel, "
            f"spatial_kernel, spatial_kernel, channels); got {tuple(kernel.shape)}."
        )
    temporal_kernel = kernel.shape[0]
    if temporal_kernel % 2 != 1:
        raise ValueError(
            "depthwise_conv3d needs an odd temporal kernel size (kernel.shape[0]) "
            f"for 'same' padding in time; got {temporal_kernel}."
        )
    check_stride("spatial_stride", spatial_stride, where="depthwise_conv3d")
    if inputs.shape[-1] is not None and inputs.shape[-1] != kernel.shape[-1]:
        raise ValueError(
            f"depthwise_conv3d: inputs have {inputs.shape[-1]} channels but the "
            f"kernel has {kernel.shape[-1]}."
        )


def _add_responses(a, b):
    """`a + b` for the tap loop's sums; on TensorFlow an `AddN`, whose gradient needs
    neither operand. `AddV2`'s needs both operands' shapes, which are dynamic in a
    supernet (the sliced width): its backward then holds both operands from the
    forward pass to the backward (two output-sized tensors a block; BENCHMARKS.md 1e,
    session 15)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.math.add_n([a, b])
    return ops.add(a, b)


def _pad_time(inputs, pad):
    if pad == 0:
        return inputs
    return ops.pad(inputs, ((0, 0), (pad, pad), (0, 0), (0, 0), (0, 0)))


def shifted_frames(clip, shift, window):
    """`clip` (5D, static sizes `window` where known) `shift` frames on: frame t of the
    result is frame t + shift of the clip, zeros where that is outside it. The frames kept
    are sliced and padded back to the clip's length, so the copy is the clip's size at
    most, not a clip padded by the kernel's whole reach (BENCHMARKS.md 1e, session 15)."""
    frames = window[1]
    size = ops.maximum(frames - ops.abs(shift), 0)
    start = ops.minimum(ops.maximum(shift, 0), frames)
    before = ops.minimum(ops.maximum(-shift, 0), frames)
    kept = ops.slice(clip, (0, start, 0, 0, 0), (window[0], size) + tuple(window[2:]))
    shifted = ops.pad(kept, ((0, 0), (before, frames - size - before), (0, 0), (0, 0), (0, 0)))
    return ops.reshape(shifted, window)


def frame_window(padded, start, shape):
    """`padded[:, start : start + shape[1]]` for a 5D tensor of window `shape`.

    `ops.slice`, not a strided slice: on TensorFlow the gradient of a strided
    slice (StridedSliceGrad) took 80% of an X3D-S CPU training step, the
    gradient of a plain slice is one Pad (benchmarks/bench_x3d.py).
    """
    return ops.slice(padded, (0, start, 0, 0, 0), shape)


def subsample_space(inputs, stride):
    """`inputs[:, :, ::stride, ::stride]` of a 5D tensor, without a strided slice.

    Pads height and width to a multiple of `stride`, splits each into
    `(size / stride, stride)` and keeps offset 0: a Pad, a reshape and a plain
    slice, whose gradients are cheap on TensorFlow (see `frame_window`).
    """
    if stride == 1:
        return inputs
    shape = ops.shape(inputs)
    batch, frames, height, width = shape[0], shape[1], shape[2], shape[3]
    channels = inputs.shape[-1] if inputs.shape[-1] is not None else shape[4]
    out_height, out_width = same_output_size(height, stride), same_output_size(width, stride)
    padded = ops.pad(
        inputs,
        ((0, 0), (0, 0), (0, out_height * stride - height), (0, out_width * stride - width), (0, 0)),
    )
    split = ops.reshape(padded, (batch, frames * out_height, stride, out_width, stride * channels))
    kept = ops.slice(split, (0, 0, 0, 0, 0), (batch, frames * out_height, 1, out_width, channels))
    return ops.reshape(kept, (batch, frames, out_height, out_width, channels))


def depthwise_conv3d_taps(inputs, kernel, spatial_stride=1, temporal_kernel=None):
    """Sum over temporal taps of per-frame 2D depthwise convolutions.

    Shapes are read from the tensors, so inputs whose channel count is only
    known at run time (widths sliced with a tensor-valued size) trace once;
    pass `temporal_kernel` when the kernel's leading size is not static.
    """
    temporal_kernel = temporal_kernel or kernel.shape[0]
    shape = ops.shape(inputs)
    batch, frames, height, width, channels = shape[0], shape[1], shape[2], shape[3], shape[4]
    padded = _pad_time(inputs, temporal_kernel // 2)
    output = None
    window = (batch, frames, height, width, channels)
    taps = ops.unstack(ops.convert_to_tensor(kernel), temporal_kernel, axis=0)
    for tap, tap_kernel in enumerate(taps):
        # The centre tap's window is the unpadded clip itself.
        frames_in = inputs if tap == temporal_kernel // 2 else frame_window(padded, tap, window)
        frames_in = ops.reshape(frames_in, (-1, height, width, channels))
        response = ops.depthwise_conv(
            frames_in,
            ops.expand_dims(tap_kernel, -1),
            strides=spatial_stride,
            padding="same",
            data_format="channels_last",
        )
        output = response if output is None else output + response
    out_shape = ops.shape(output)
    return ops.reshape(output, (batch, frames, out_shape[1], out_shape[2], channels))


def _output_window(window, spatial_stride):
    """The 5D shape of a depthwise convolution's output on a clip of shape `window`
    ("same" padding; sizes ints, tensors or None where unknown)."""
    out = tuple(None if size is None else same_output_size(size, spatial_stride)
                for size in window[2:4])
    return tuple(window[:2]) + out + tuple(window[4:])


class _Taps:
    """The temporal taps of a `(max_t, k, k, C)` kernel on a 5D clip, as the tap loops read
    them: `kernel[tap]` convolves each frame of the clip shifted by `tap - centre` frames."""

    def __init__(self, clip, kernel, spatial_stride):
        self.centre = kernel.shape[0] // 2
        self.window = tuple(ops.shape(clip))  # static sizes where known (keras.ops.shape)
        kernel_shape = ops.shape(kernel)
        self.kernel, self.stride = kernel, spatial_stride
        self.strides = (1, spatial_stride, spatial_stride, 1)  # TensorFlow's, per frame
        self.tap_shape = (1, kernel_shape[1], kernel_shape[2], self.window[4])
        self.output_shape = _output_window(self.window, spatial_stride)

    @staticmethod
    def per_frame(tensor):
        """A 5D tensor as `(batch * frames, h, w, C)`."""
        return ops.reshape(tensor, (-1,) + tuple(ops.shape(tensor)[2:]))

    def off_centre(self, first_tap, step):
        """The tap of loop step `step` (0 .. num_taps - 2): the taps before the centre, then
        those after it."""
        return first_tap + step + ops.cast(step >= self.centre - first_tap, "int32")

    def tap_kernel(self, tap):
        """`kernel[tap]` as a depthwise 2D kernel `(k, k, C, 1)`. A plain slice: its
        gradient in a loop is a Pad, not a StridedSliceGrad."""
        tap_kernel = ops.slice(self.kernel, (tap, 0, 0, 0), self.tap_shape)
        return ops.reshape(tap_kernel, self.tap_shape[1:] + (1,))

    def shifted(self, clip, tap):
        """The clip as tap `tap` reads it (`shifted_frames`)."""
        return shifted_frames(clip, tap - self.centre, self.window)

    def response(self, clip, tap):
        """`kernel[tap]` on each frame of a 5D clip: `(batch * frames, h', w', C)`."""
        return ops.depthwise_conv(
            self.per_frame(clip), self.tap_kernel(tap),
            strides=self.stride, padding="same", data_format="channels_last")


def depthwise_conv3d_tap_loop(inputs, kernel, first_tap, num_taps, spatial_stride=1):
    """`depthwise_conv3d_taps` with the temporal kernel `kernel[first_tap : first_tap +
    num_taps]` chosen at run time: one traced tap in a loop, not one branch per size.

    `kernel` is `(max_t, k, k, C)` with an odd `max_t`; the chosen taps are centred in it,
    so `first_tap = (max_t - num_taps) // 2`. The loop adds the `num_taps - 1` off-centre
    taps, tap `i` reading the clip shifted by `i - max_t // 2` frames (`shifted_frames`);
    the centre tap then convolves the clip itself. The clip is a loop variable,
    not a capture, and the centre reads the loop's copy of it: so its gradient enters the
    loop's gradient and none is built from zeros. A 1-tap kernel runs no loop step and
    costs the fixed layer's convolution and one add (BENCHMARKS.md section 3c, "The clip
    through the tap loop"). The sum is `depthwise_conv3d_taps`'s, off-centre taps first.
    The supernet's sliced path uses it on torch; on TensorFlow it runs `shared_tap_loop`
    (the same taps from the centre on, with gradients of its own). One traced tap instead
    of a switch branch per temporal kernel takes a fifth to a third off a search's
    start-up. TensorFlow and torch; not JAX (its loop index is a tracer that `ops.slice`
    cannot take).
    """
    taps = _Taps(inputs, kernel, spatial_stride)

    def add_tap(step, carry):
        output, clip = carry
        tap = taps.off_centre(first_tap, step)
        return _add_responses(output, taps.response(taps.shifted(clip, tap), tap)), clip

    batch, frames, out_height, out_width, channels = taps.output_shape
    zeros = ops.zeros((batch * frames, out_height, out_width, channels), inputs.dtype)
    off_centre, clip = ops.fori_loop(0, num_taps - 1, add_tap, (zeros, inputs))
    output = _add_responses(off_centre, taps.response(clip, taps.centre))
    return ops.reshape(output, taps.output_shape)


_INLINE = threading.local()  # .on: `inlined_tap_loops` is open


def shared_tap_loop(inputs, kernel, first_tap, num_taps, spatial_stride=1):
    """`depthwise_conv3d_tap_loop` for the supernet on TensorFlow: its forward pass, the
    gradient at the clip and the gradient at the kernel are three traced functions per
    stride and input shape (`_tap_loop_functions`), so the blocks of a supernet that share
    a shape trace the loop once, not once a block (start-up 5-6 s shorter for the paper's
    step-1 space; BENCHMARKS.md 1e, session 14). The two gradients are separate calls: the
    clip's, which the rest of the backward pass waits for, does not wait for the kernel's,
    and the forward pass hands the backward only the clip and the kernel (session 16).
    Inside `inlined_tap_loops(True)` and with several replicas (across two workers a nested
    function failed: "Haven't set up remote eager worker") the same three are traced in
    place; on other backends `depthwise_conv3d_tap_loop` is."""
    if keras.backend.backend() != "tensorflow":
        return depthwise_conv3d_tap_loop(inputs, kernel, first_tap, num_taps, spatial_stride)
    inputs, kernel = ops.convert_to_tensor(inputs), ops.convert_to_tensor(kernel)
    if getattr(_INLINE, "on", False) or _replicated():
        functions = _tap_loop_bodies(spatial_stride)
    else:
        functions = _tap_loop_functions(spatial_stride, tuple(inputs.shape),
                                        tuple(kernel.shape), inputs.dtype.name)
    return _split_gradients(functions, inputs, kernel, first_tap, num_taps)


@contextlib.contextmanager
def inlined_tap_loops(inline=True):
    """Within (with `inline`), `shared_tap_loop` traces the loop in place. For callers
    whose calls run at once: two calls of one function instance at once corrupt the heap
    in oneDNN's convolution gradients (BENCHMARKS.md 1e, session 13)."""
    outer, _INLINE.on = getattr(_INLINE, "on", False), bool(inline)
    try:
        yield
    finally:
        _INLINE.on = outer


def _replicated():
    """Whether a `tf.distribute` strategy with several replicas is in scope."""
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync > 1


def _split_gradients(functions, inputs, kernel, first_tap, num_taps):
    """The tap loop's forward function (`functions[0]`) on `(inputs, kernel)`, with the two
    gradient functions as its gradient: each gets what it reads (the clip, the kernel), and
    the clip's gradient is out as soon as its own convolutions are."""
    import tensorflow as tf

    forward, clip_gradient, kernel_gradient = functions
    first_tap, num_taps = (tf.convert_to_tensor(n, tf.int32) for n in (first_tap, num_taps))

    @tf.custom_gradient
    def loop(clip, taps):
        def gradient(upstream):
            return (clip_gradient(upstream, clip, taps, first_tap, num_taps),
                    kernel_gradient(upstream, clip, taps, first_tap, num_taps))

        return forward(clip, taps, first_tap, num_taps), gradient

    return loop(inputs, kernel)


def _tap_loop_bodies(spatial_stride):
    """The forward pass, clip gradient and kernel gradient of the tap loop at this stride."""
    def body(function):
        def run(*args):
            return function(*args, spatial_stride=spatial_stride)

        run.__name__ = function.__name__.lstrip("_")  # "loop_forward", ...
        return run

    return tuple(body(f) for f in (_loop_forward, _loop_clip_gradient, _loop_kernel_gradient))


@functools.cache
def _tap_loop_functions(spatial_stride, input_shape, kernel_shape, dtype):
    """`_tap_loop_bodies`, each traced once for inputs and kernels of these (static) shapes."""
    import tensorflow as tf

    clip, kernel = tf.TensorSpec(input_shape, dtype), tf.TensorSpec(kernel_shape, dtype)
    upstream = tf.TensorSpec(_output_window(input_shape, spatial_stride), dtype)
    scalar = tf.TensorSpec((), tf.int32)
    signatures = ((clip, kernel), (upstream, clip, kernel), (upstream, clip, kernel))
    return tuple(tf.function(body, autograph=False, input_signature=[*signature, scalar, scalar])
                 for body, signature in zip(_tap_loop_bodies(spatial_stride), signatures))


def _loop_forward(clip, kernel, first_tap, num_taps, spatial_stride):
    """The tap loop's sum, from the centre tap's response: no zeros to start from."""
    taps = _Taps(clip, kernel, spatial_stride)

    def add_tap(step, output):
        tap = taps.off_centre(first_tap, step)
        return _add_responses(output, taps.response(taps.shifted(clip, tap), tap))

    output = ops.fori_loop(0, num_taps - 1, add_tap, taps.response(clip, taps.centre))
    return ops.reshape(output, taps.output_shape)


def _loop_clip_gradient(upstream, clip, kernel, first_tap, num_taps, spatial_stride):
    """The gradient at the clip: each tap's input gradient shifted back by its shift."""
    import tensorflow as tf

    taps = _Taps(clip, kernel, spatial_stride)
    upstream, frames = taps.per_frame(upstream), tf.shape(taps.per_frame(clip))

    def at_frames(tap):  # the gradient at the frames tap `tap` reads, 5D
        gradient = tf.nn.depthwise_conv2d_backprop_input(
            frames, taps.tap_kernel(tap), upstream, taps.strides, "SAME")
        return ops.reshape(gradient, taps.window)

    def add_tap(step, total):
        tap = taps.off_centre(first_tap, step)
        return _add_responses(total, shifted_frames(at_frames(tap), taps.centre - tap,
                                                    taps.window))

    return ops.fori_loop(0, num_taps - 1, add_tap, at_frames(taps.centre))


def _loop_kernel_gradient(upstream, clip, kernel, first_tap, num_taps, spatial_stride):
    """The gradient at the `(max_t, k, k, C)` kernel: the chosen taps' filter gradients,
    zeros at the other taps."""
    import tensorflow as tf

    taps = _Taps(clip, kernel, spatial_stride)
    upstream, sizes = taps.per_frame(upstream), tf.stack(taps.tap_shape[1:] + (1,))
    last = kernel.shape[0] - 1

    def at_tap(tap, frames):  # tap `tap`'s gradient placed in the whole kernel
        gradient = tf.nn.depthwise_conv2d_backprop_filter(
            taps.per_frame(frames), sizes, upstream, taps.strides, "SAME")
        return ops.pad(ops.reshape(gradient, taps.tap_shape),
                       ((tap, last - tap), (0, 0), (0, 0), (0, 0)))

    def add_tap(step, total):
        tap = taps.off_centre(first_tap, step)
        return _add_responses(total, at_tap(tap, taps.shifted(clip, tap)))

    return ops.fori_loop(0, num_taps - 1, add_tap, at_tap(taps.centre, clip))


def depthwise_conv3d_grouped(inputs, kernel, spatial_stride=1):
    """One grouped 3D convolution (``groups == channels``)."""
    return ops.conv(
        inputs,
        ops.expand_dims(kernel, -2),  # (t, k, k, 1, channels)
        strides=(1, spatial_stride, spatial_stride),
        padding="same",
        data_format="channels_last",
    )


def depthwise_conv3d_shifts(inputs, kernel, spatial_stride=1):
    """Sum of t*k*k shifted, strided slices, each times one kernel entry.

    Needs static height and width. Elementwise only, so XLA fuses it into one
    loop; grouped convolutions are a slow path of XLA on CPU.
    """
    temporal_kernel, spatial_kernel, _, _ = kernel.shape
    _, _, height, width, _ = inputs.shape
    frames = ops.shape(inputs)[1]
    out_height = same_output_size(height, spatial_stride)
    out_width = same_output_size(width, spatial_stride)
    # Keras "same": total padding max((out - 1) * s + k - size, 0), odd extra at the end.
    pad_height = max((out_height - 1) * spatial_stride + spatial_kernel - height, 0)
    pad_width = max((out_width - 1) * spatial_stride + spatial_kernel - width, 0)
    pad_time = temporal_kernel // 2
    padded = ops.pad(
        inputs,
        (
            (0, 0),
            (pad_time, pad_time),
            (pad_height // 2, pad_height - pad_height // 2),
            (pad_width // 2, pad_width - pad_width // 2),
            (0, 0),
        ),
    )
    row_span = spatial_stride * (out_height - 1) + 1
    col_span = spatial_stride * (out_width - 1) + 1
    output = None
    for tap in range(temporal_kernel):
        for row in range(spatial_kernel):
            for col in range(spatial_kernel):
                window = padded[
                    :,
                    tap : tap + frames,
                    row : row + row_span : spatial_stride,
                    col : col + col_span : spatial_stride,
                ]
                term = window * kernel[tap, row, col]
                output = term if output is None else output + term
    return output


def depthwise_conv3d(inputs, kernel, spatial_stride=1):
    """Depthwise 3D convolution with "same" padding, stride in space only.

    Zero-pads ``t // 2`` frames at each end of the clip and uses Keras'
    ``padding="same"`` convention in space (for stride 2 and an even size, the
    extra padding row/column goes at the end). Computed as the sum over temporal
    taps of per-frame 2D depthwise convolutions; on JAX (XLA) as a sum of
    shifted slices, which was several times faster there. Both are exact.

    Args:
        inputs: tensor of shape `(batch, frames, height, width, channels)`.
        kernel: tensor of shape `(temporal_kernel, spatial_kernel,
            spatial_kernel, channels)`; `temporal_kernel` must be odd.
        spatial_stride: int, 1 or 2, stride in height and width.

    Returns:
        Tensor of shape `(batch, frames, ceil(height / spatial_stride),
        ceil(width / spatial_stride), channels)`.

    Example:

    >>> x = keras.random.normal((2, 8, 16, 16, 24))
    >>> kernel = keras.random.normal((3, 3, 3, 24))
    >>> print(depthwise_conv3d(x, kernel, spatial_stride=2).shape)
    (2, 8, 8, 8, 24)
    """
    _check_kernel(inputs, kernel, spatial_stride)
    # Fastest exact method per backend: benchmarks/bench_depthwise.py.
    if keras.backend.backend() == "jax" and None not in inputs.shape[2:4]:
        return _jitted_shifts()(
            ops.convert_to_tensor(inputs), ops.convert_to_tensor(kernel), spatial_stride
        )
    return depthwise_conv3d_taps(inputs, kernel, spatial_stride)


@functools.cache
def _jitted_shifts():
    # Inside a traced train step this jit is inlined; called eagerly it compiles
    # the t*k*k slices once instead of dispatching them one by one.
    import jax

    return jax.jit(depthwise_conv3d_shifts, static_argnums=2)
