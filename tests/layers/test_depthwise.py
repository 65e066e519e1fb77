"""depthwise_conv3d against an explicit-loop NumPy convolution."""

import functools

import keras
import numpy as np
import pytest
from keras import ops

from tests.layers.layer_reference import depthwise_conv3d as reference
from tests.layers.layer_reference import same_padding, to_numpy
from tsnet_keras.layers import depthwise, depthwise_conv3d


def tap_loop(x, kernel, spatial_stride=1, max_taps=5, loop=depthwise.depthwise_conv3d_tap_loop):
    """`depthwise_conv3d_tap_loop` on `kernel` centred in a 5-tap kernel whose outer taps
    are garbage (a loop that read them would fail); the bounds are tensors on TensorFlow,
    as the supernet passes them."""
    taps = kernel.shape[0]
    outer = (max_taps - taps) // 2
    garbage = ops.full((outer,) + tuple(kernel.shape[1:]), 7.0)
    full = ops.concatenate([garbage, kernel, garbage], axis=0) if outer else kernel
    first, count = outer, taps
    if keras.backend.backend() == "tensorflow":
        first, count = ops.convert_to_tensor(first, "int32"), ops.convert_to_tensor(count, "int32")
    return loop(x, full, first, count, spatial_stride)


# depthwise_conv3d dispatches per backend; check every exact method on this one,
# values and gradients (tests/test_backends.py runs this file on JAX and torch).
# On JAX the dispatch is the (jitted) shifts method, which is slow to run eagerly.
METHODS = {"dispatch": depthwise_conv3d, "taps": depthwise.depthwise_conv3d_taps}
if keras.backend.backend() != "jax":
    METHODS["shifts"] = depthwise.depthwise_conv3d_shifts
    METHODS["tap_loop"] = tap_loop  # the supernet's TensorFlow path; not for JAX's tracers
    # ... through one traced function (TensorFlow; in place on torch)
    METHODS["shared_tap_loop"] = functools.partial(tap_loop, loop=depthwise.shared_tap_loop)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("temporal_kernel", [1, 3, 5])
@pytest.mark.parametrize("spatial_kernel", [3, 5])
def test_matches_numpy(rng, method, stride, temporal_kernel, spatial_kernel):
    # Odd and even sizes: "same" padding is asymmetric for stride 2 on even sizes.
    x = rng.normal(size=(2, 4, 7, 6, 3)).astype("float32")
    kernel = rng.normal(size=(temporal_kernel, spatial_kernel, spatial_kernel, 3))
    kernel = kernel.astype("float32")
    out = to_numpy(METHODS[method](x, kernel, spatial_stride=stride))
    expected = reference(x, kernel, stride)
    assert out.shape == (2, 4, -(-7 // stride), -(-6 // stride), 3)
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)


def test_rejects_even_temporal_kernel(rng):
    x = rng.normal(size=(1, 4, 5, 5, 2)).astype("float32")
    with pytest.raises(ValueError, match="odd temporal kernel"):
        depthwise_conv3d(x, np.zeros((2, 3, 3, 2), "float32"))


def test_rejects_bad_stride(rng):
    x = rng.normal(size=(1, 4, 5, 5, 2)).astype("float32")
    with pytest.raises(ValueError, match="spatial_stride"):
        depthwise_conv3d(x, np.zeros((3, 3, 3, 2), "float32"), spatial_stride=3)


def reference_gradients(x, kernel, stride, upstream):
    """d<upstream, conv(x, kernel)>/dx and /dkernel by the definition of the conv.

    Every kernel entry (tap, row, col) multiplies one strided window of the
    zero-padded input: its gradient is that window summed against `upstream`,
    and `upstream` times the entry flows back into that window.
    """
    x, kernel, upstream = (np.asarray(a, np.float64) for a in (x, kernel, upstream))
    _, frames, height, width, _ = x.shape
    taps, size = kernel.shape[:2]
    pad_h, pad_w = same_padding(height, size, stride), same_padding(width, size, stride)
    padded = np.pad(x, ((0, 0), (taps // 2, taps // 2), pad_h, pad_w, (0, 0)))
    grad_padded, grad_kernel = np.zeros_like(padded), np.zeros_like(kernel)
    out_h, out_w = upstream.shape[2:4]
    for tap in range(taps):
        for row in range(size):
            for col in range(size):
                index = (
                    slice(None),
                    slice(tap, tap + frames),
                    slice(row, row + stride * (out_h - 1) + 1, stride),
                    slice(col, col + stride * (out_w - 1) + 1, stride),
                )
                grad_kernel[tap, row, col] = np.sum(padded[index] * upstream, axis=(0, 1, 2, 3))
                grad_padded[index] += upstream * kernel[tap, row, col]
    grad_x = grad_padded[
        :, taps // 2 : taps // 2 + frames, pad_h[0] : pad_h[0] + height, pad_w[0] : pad_w[0] + width
    ]
    return grad_x, grad_kernel


def backend_gradients(fn, x, kernel, upstream):
    """fn(x, kernel) and the gradients of sum(upstream * fn) by this backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x, kernel = tf.constant(x), tf.constant(kernel)
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = fn(x, kernel)
            loss = tf.reduce_sum(y * upstream)
        return (y, *tape.gradient(loss, [x, kernel]))
    if backend == "jax":
        import jax

        def loss(x, kernel):
            y = fn(x, kernel)
            return jax.numpy.sum(y * upstream), y

        (grad_x, grad_kernel), y = jax.grad(loss, argnums=(0, 1), has_aux=True)(x, kernel)
        return y, grad_x, grad_kernel
    import torch

    x, kernel = torch.tensor(x, requires_grad=True), torch.tensor(kernel, requires_grad=True)
    y = fn(x, kernel)
    (y * torch.tensor(upstream)).sum().backward()
    return y.detach(), x.grad, kernel.grad


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("temporal_kernel", [1, 3])
def test_gradients_match_numpy(rng, method, stride, temporal_kernel):
    x = rng.normal(size=(2, 4, 7, 6, 3)).astype("float32")
    kernel = rng.normal(size=(temporal_kernel, 3, 3, 3)).astype("float32")
    out_shape = (2, 4, -(-7 // stride), -(-6 // stride), 3)
    upstream = rng.normal(size=out_shape).astype("float32")
    fn = functools.partial(METHODS[method], spatial_stride=stride)
    y, grad_x, grad_kernel = (to_numpy(t) for t in backend_gradients(fn, x, kernel, upstream))
    expected_x, expected_kernel = reference_gradients(x, kernel, stride, upstream)
    np.testing.assert_allclose(y, reference(x, kernel, stride), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(grad_x, expected_x, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(grad_kernel, expected_kernel, atol=1e-4, rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the tap loop is not for JAX")
@pytest.mark.parametrize("loop", ["tap_loop", "shared_tap_loop"])
@pytest.mark.parametrize("frames", [1, 2, 3])
def test_tap_loop_on_clips_shorter_than_its_reach(rng, frames, loop):
    # A 5-tap kernel shifts by up to 2 frames: on 1 or 2 frames some taps keep no frame.
    x = rng.normal(size=(2, frames, 5, 4, 3)).astype("float32")
    kernel = rng.normal(size=(5, 3, 3, 3)).astype("float32")
    upstream = rng.normal(size=(2, frames, 5, 4, 3)).astype("float32")
    gradients = backend_gradients(METHODS[loop], x, kernel, upstream)
    y, grad_x, grad_kernel = (to_numpy(t) for t in gradients)
    expected_x, expected_kernel = reference_gradients(x, kernel, 1, upstream)
    np.testing.assert_allclose(y, reference(x, kernel, 1), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(grad_x, expected_x, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(grad_kernel, expected_kernel, atol=1e-4, rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the tap loop is not for JAX")
def test_shifted_frames_against_numpy(rng):
    """Frame t of the result is frame t + shift of the clip, zeros outside it, for shifts
    within, at and beyond the clip's length."""
    x = rng.normal(size=(2, 3, 4, 5, 2)).astype("float32")
    padded = np.pad(x, ((0, 0), (6, 6), (0, 0), (0, 0), (0, 0)))
    for shift in range(-5, 6):
        got = depthwise.shifted_frames(ops.convert_to_tensor(x), ops.convert_to_tensor(shift),
                                       x.shape)
        np.testing.assert_array_equal(to_numpy(got), padded[:, 6 + shift : 9 + shift])


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the tap loop is not for JAX")
@pytest.mark.parametrize("loop", ["tap_loop", "shared_tap_loop"])
@pytest.mark.parametrize("stride", [1, 2])
def test_tap_loop_with_one_tap_is_the_fixed_convolution(rng, stride, loop):
    """A 1-tap kernel runs no loop step: the fixed layer's convolution (plus zeros in
    place), bit for bit, values and gradients (the supernet's 1-tap blocks train as the
    fixed model's)."""
    x = rng.normal(size=(2, 4, 7, 6, 3)).astype("float32")
    kernel = rng.normal(size=(1, 3, 3, 3)).astype("float32")
    upstream = rng.normal(size=(2, 4, -(-7 // stride), -(-6 // stride), 3)).astype("float32")
    fixed = functools.partial(depthwise.depthwise_conv3d_taps, spatial_stride=stride)
    looped = functools.partial(METHODS[loop], spatial_stride=stride)
    for got, want in zip(backend_gradients(looped, x, kernel, upstream),
                         backend_gradients(fixed, x, kernel, upstream)):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="traced TensorFlow graph")
@pytest.mark.parametrize("temporal_kernel", [1, 3, 5])
def test_tap_loop_traced_with_unknown_channels(rng, temporal_kernel):
    """As the supernet runs it: one trace, the channel count and the taps known at run time."""
    import tensorflow as tf

    x = rng.normal(size=(2, 4, 6, 5, 3)).astype("float32")
    kernel = rng.normal(size=(temporal_kernel, 3, 3, 3)).astype("float32")
    outer = np.full(((5 - temporal_kernel) // 2, 3, 3, 3), 7.0, "float32")  # never read
    full = np.concatenate([outer, kernel, outer])
    traced = tf.function(depthwise.depthwise_conv3d_tap_loop, input_signature=[
        tf.TensorSpec((2, 4, 6, 5, None)), tf.TensorSpec((5, 3, 3, None)),
        tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int32)])
    out = traced(x, full, len(outer), temporal_kernel)
    np.testing.assert_allclose(to_numpy(out), reference(x, kernel, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="traced TensorFlow graph")
def test_shared_tap_loop_traces_once_per_shape_unless_inlined_in_place(rng):
    """Blocks of one input shape call one traced loop; `inlined_tap_loops` puts the loop
    (a while op) in each caller instead."""
    import tensorflow as tf

    kernel = tf.constant(rng.normal(size=(5, 3, 3, 3)).astype("float32"))
    small, large = (tf.constant(rng.normal(size=(2, 4, n, n, 3)).astype("float32")) for n in (4, 6))
    first, taps = tf.constant(1), tf.constant(3)

    def three_blocks():
        return [depthwise.shared_tap_loop(x, kernel, first, taps) for x in (small, large, small)]

    def ops_of(function):
        graph = tf.function(function, autograph=False).get_concrete_function().graph
        calls = [op.get_attr("f").name for op in graph.get_operations()
                 if op.type in ("PartitionedCall", "StatefulPartitionedCall")]
        return calls, [op for op in graph.get_operations() if "While" in op.type]

    calls, loops = ops_of(three_blocks)
    assert len(calls) == 3 and len(set(calls)) == 2 and not loops
    with depthwise.inlined_tap_loops():
        calls, loops = ops_of(three_blocks)
    assert not calls and len(loops) == 3
    expected = reference(small.numpy(), kernel.numpy()[1:4], 1)
    np.testing.assert_allclose(three_blocks()[2], expected, atol=1e-5, rtol=1e-5)


def _op_types(library):
    """{function name: the op types it runs, those of the functions it calls included}."""
    bodies = {f.signature.name: f.node_def for f in library.function}

    def types(name, seen=()):
        found = set()
        for node in bodies[name]:
            found.add(node.op)
            called = node.attr["f"].func.name if "f" in node.attr else ""
            if called in bodies and called not in seen:
                found |= types(called, seen + (name,))
        return found

    return {name: types(name) for name in bodies}


def _ancestors(tensor):
    """The ops `tensor` depends on in its graph, through data and control edges."""
    found, stack = set(), [tensor.op]
    while stack:
        op = stack.pop()
        if op not in found:
            found.add(op)
            stack.extend([t.op for t in op.inputs] + list(op.control_inputs))
    return found


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="traced TensorFlow graph")
@pytest.mark.parametrize("taps", [1, 3])
def test_shared_tap_loop_gradient_at_the_clip_waits_for_no_kernel_gradient(rng, taps):
    """With the width unknown (a supernet's sliced channels): the forward call hands the
    backward nothing but its result, and the clip's gradient, which the rest of the
    backward pass waits for, depends on no filter gradient. Holding a response or a sum
    from forward to backward cost an output-sized tensor a block (BENCHMARKS.md 1e,
    session 15); one backward call for both gradients held the clip's until the kernel's
    was done (session 16)."""
    import tensorflow as tf

    kernel = tf.constant(rng.normal(size=(5, 3, 3, 6)).astype("float32"))

    @tf.function(autograph=False, input_signature=[tf.TensorSpec((2, 4, 8, 8, None))])
    def gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            active = kernel[..., : tf.shape(x)[-1]]
            tape.watch(active)
            y = depthwise.shared_tap_loop(x, active, (5 - taps) // 2, tf.constant(taps))
            loss = ops.sum(y * y)
        return tape.gradient(loss, [x, active])

    concrete = gradients.get_concrete_function()
    types = _op_types(concrete.graph.as_graph_def().library)
    calls = [op for op in concrete.graph.get_operations() if op.type == "PartitionedCall"]
    forward = [op for op in calls if "Depthwise" in str(types[op.get_attr("f").name])
               and not any("Backprop" in t for t in types[op.get_attr("f").name])]
    assert len(forward) == 1 and len(forward[0].outputs) == 1  # the result only
    waits = set()
    for op in _ancestors(concrete.graph.outputs[0]):  # the clip's gradient
        waits |= types[op.get_attr("f").name] if op in calls else {op.type}
    assert "DepthwiseConv2dNativeBackpropInput" in waits
    assert "DepthwiseConv2dNativeBackpropFilter" not in waits
    x = tf.constant(rng.normal(size=(2, 4, 8, 8, 6)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        out = depthwise.depthwise_conv3d_tap_loop(x, kernel, (5 - taps) // 2, taps)
        loss = ops.sum(out * out)
    first = (5 - taps) // 2
    np.testing.assert_allclose(out, reference(x.numpy(), kernel.numpy()[first:first + taps], 1),
                               atol=1e-5, rtol=1e-5)
    for got, want in zip(gradients(x), tape.gradient(loss, [x, kernel])):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("height", [6, 7])
def test_subsample_space_matches_strided_slice(rng, height):
    x = rng.normal(size=(2, 3, height, 5, 4)).astype("float32")
    out = to_numpy(depthwise.subsample_space(x, 2))
    np.testing.assert_array_equal(out, x[:, :, ::2, ::2])
    np.testing.assert_array_equal(to_numpy(depthwise.subsample_space(x, 1)), x)
