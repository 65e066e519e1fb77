"""VideoBatchNormalization (fused on TensorFlow) against Keras' BatchNormalization."""

import keras
import numpy as np
import pytest

from tests.layers.layer_reference import EPSILON, batch_norm, randomize_weights, to_numpy
from tsnet_keras.layers.batch_norm import VideoBatchNormalization


def _pair(rng, shape):
    layers = [
        cls(momentum=0.9, epsilon=EPSILON)
        for cls in (keras.layers.BatchNormalization, VideoBatchNormalization)
    ]
    for layer in layers:
        layer.build(shape)
    randomize_weights(layers[0], rng)
    for source, target in zip(layers[0].weights, layers[1].weights, strict=True):
        target.assign(source)
    return layers


@pytest.mark.parametrize("shape", [(2, 3, 5, 4, 6), (3, 5, 4, 6)])
def test_inference_matches_numpy(rng, shape):
    x = rng.normal(1.0, 3.0, size=shape).astype("float32")
    _, layer = _pair(rng, shape)
    np.testing.assert_allclose(
        to_numpy(layer(x, training=False)), batch_norm(x, layer), atol=1e-5, rtol=1e-5
    )


def test_training_matches_keras(rng):
    """Outputs, input/gamma/beta gradients and moving statistics."""
    shape = (2, 3, 5, 4, 6)
    x = rng.normal(1.0, 3.0, size=shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    results = []
    keras_layer, video_layer = _pair(rng, shape)
    start_mean, start_variance = to_numpy(video_layer.moving_mean), to_numpy(video_layer.moving_variance)
    for layer in (keras_layer, video_layer):
        outputs = _train_call(layer, x, upstream)
        results.append(outputs + [to_numpy(layer.moving_mean), to_numpy(layer.moving_variance)])
    for ours, theirs in zip(results[1], results[0], strict=True):
        scale = max(np.max(np.abs(theirs)), 1.0)
        np.testing.assert_allclose(ours / scale, theirs / scale, atol=2e-6)
    # Moving statistics: momentum 0.9 towards the batch mean and biased variance.
    axes = tuple(range(len(shape) - 1))
    expected_mean = 0.9 * start_mean + 0.1 * x.mean(axis=axes)
    expected_variance = 0.9 * start_variance + 0.1 * x.var(axis=axes)
    np.testing.assert_allclose(results[1][-2], expected_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(results[1][-1], expected_variance, rtol=1e-5, atol=1e-5)


def _train_call(layer, x, upstream):
    variables = [layer.gamma, layer.beta]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [x] + variables)
        return [to_numpy(t) for t in [y, *grads]]
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        y = layer(x, training=True)
        (y * torch.tensor(upstream)).sum().backward()
        return [to_numpy(t) for t in [y.detach(), x.grad] + [v.value.grad for v in variables]]
    y = layer(x, training=True)  # JAX: values and moving statistics only (stateless grads)
    return [to_numpy(y)]


@pytest.mark.parametrize("update", [False, True], ids=["held", "moved"])
def test_update_statistics_moves_or_holds_the_moving_statistics(rng, update):
    """Batch statistics in both cases; the moving ones move only with update_statistics."""
    shape = (2, 3, 5, 4, 6)
    x = rng.normal(1.0, 3.0, size=shape).astype("float32")
    keras_layer, layer = _pair(rng, shape)
    start = [to_numpy(layer.moving_mean), to_numpy(layer.moving_variance)]
    want = to_numpy(keras_layer(x, training=True))
    got = to_numpy(layer(x, training=True, update_statistics=update))
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
    moved = [to_numpy(keras_layer.moving_mean), to_numpy(keras_layer.moving_variance)]
    expected_statistics = moved if update else start
    for ours, expected in zip([layer.moving_mean, layer.moving_variance], expected_statistics):
        np.testing.assert_allclose(to_numpy(ours), expected, atol=1e-5, rtol=1e-5)


def test_update_statistics_false_holds_the_moving_statistics(rng):
    shape = (3, 5, 4, 6)
    x = rng.normal(1.0, 3.0, size=shape).astype("float32")
    keras_layer, layer = _pair(rng, shape)
    start = [to_numpy(layer.moving_mean), to_numpy(layer.moving_variance)]
    got = to_numpy(layer(x, training=True, update_statistics=False))
    np.testing.assert_allclose(got, to_numpy(keras_layer(x, training=True)), atol=2e-5, rtol=1e-5)
    np.testing.assert_array_equal(to_numpy(layer.moving_mean), start[0])
    np.testing.assert_array_equal(to_numpy(layer.moving_variance), start[1])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the fused sliced path is TensorFlow's (dynamic shapes)")
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 3, 5, 4, 3)])
def test_sliced_batch_norm_fused_path_matches_the_composed_one(rng, shape):
    """`SlicedBatchNormalization.normalize` in training (fused kernel on the active width,
    a width tensor as in a search step) against `statistics` + `apply` (composed ops) and
    against `normalize` without the statistics' update (the scoring's composed path):
    outputs, statistics padded to the widest width, input and gamma/beta gradients."""
    import tensorflow as tf

    from tsnet_keras.layers.sliced_batch_norm import SlicedBatchNormalization

    layer = SlicedBatchNormalization(10, epsilon=EPSILON)
    layer.build()
    layer.gamma.assign(rng.normal(1.0, 0.3, size=10).astype("float32"))
    layer.beta.assign(rng.normal(size=10).astype("float32"))
    x = rng.normal(1.0, 3.0, size=shape[:-1] + (6,)).astype("float32")
    upstream = rng.normal(size=x.shape).astype("float32")
    width = tf.constant(6)

    def run(path):
        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            if path in ("fused", "scoring"):
                y, mean, variance = layer.normalize(inputs, width, training=True,
                                                    update_statistics=path == "fused")
            else:
                mean, variance = layer.statistics(inputs, width, training=True)
                y = layer.apply(inputs, width, mean, variance)
            loss = tf.reduce_sum(y * upstream)
        grads = tape.gradient(loss, [inputs, layer.gamma.value, layer.beta.value])
        return [to_numpy(v) for v in (y, mean, variance, *grads)]

    composed = run("composed")
    for path in ("fused", "scoring"):
        for ours, theirs in zip(run(path), composed, strict=True):
            scale = max(np.max(np.abs(theirs)), 1.0)
            np.testing.assert_allclose(ours / scale, theirs / scale, atol=3e-6)
    axes = tuple(range(len(x.shape) - 1))
    mean, variance = run("fused")[1:3]
    np.testing.assert_allclose(mean[:6], x.mean(axis=axes), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(variance[:6], x.var(axis=axes), rtol=1e-5, atol=1e-5)
    assert not mean[6:].any() and not variance[6:].any()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the fused kernel is TensorFlow's")
@pytest.mark.parametrize("update", [True, False])
@pytest.mark.parametrize("sliced", [True, False])
@pytest.mark.parametrize("side", [4, 8])
def test_the_fused_kernel_runs_where_the_statistics_update_or_the_tensor_is_large(
        update, sliced, side):
    """Training with the update (its gradient follows) runs `FusedBatchNormV3`; batch
    statistics without the update (a search's scoring, forward only) run it only above
    `COMPOSED_FORWARD_MAX_VALUES` values per channel, composed ops below (`fusable`). Both
    layers, the sliced one at a run-time width; 96 and 384 values per channel."""
    import tensorflow as tf

    from tsnet_keras.layers.batch_norm import COMPOSED_FORWARD_MAX_VALUES
    from tsnet_keras.layers.sliced_batch_norm import SlicedBatchNormalization

    layer = SlicedBatchNormalization(10) if sliced else VideoBatchNormalization()
    layer.build((2, 3, side, side, 10))
    kwargs = {"width": tf.constant(6)} if sliced else {}
    channels = 6 if sliced else 10

    @tf.function
    def call(x):
        return layer(x, training=True, update_statistics=update, **kwargs)

    graph = call.get_concrete_function(tf.TensorSpec((2, 3, side, side, channels))).graph
    kinds = {op.type for op in graph.get_operations()}
    large = 2 * 3 * side * side > COMPOSED_FORWARD_MAX_VALUES
    assert ("FusedBatchNormV3" in kinds) is (update or large)


def test_deferred_updates_write_nothing_and_apply_as_the_update_would(rng):
    """Within `deferred_updates` a sliced BN's update records its values and writes
    nothing; `apply_updates` then moves the statistics as the update in place does."""
    from tsnet_keras.layers.sliced_batch_norm import (
        SlicedBatchNormalization,
        apply_updates,
        deferred_updates,
    )

    deferred, direct = SlicedBatchNormalization(10), SlicedBatchNormalization(10)
    for layer in (deferred, direct):
        layer.build()
    x = rng.normal(size=(4, 2, 3, 3, 10)).astype("float32")
    x = x[..., :6] if deferred.dynamic_shapes else x * (np.arange(10) < 6)  # width 6 of 10
    before = to_numpy(deferred.moving_mean).copy()
    with deferred_updates() as records:
        deferred(x, width=6, training=True)
    np.testing.assert_array_equal(to_numpy(deferred.moving_mean), before)
    assert [record[0] for record in records] == [deferred]
    apply_updates([deferred], [record[1:] for record in records])
    direct(x, width=6, training=True)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(to_numpy(getattr(deferred, name)),
                                   to_numpy(getattr(direct, name)), rtol=1e-6)
    assert not np.array_equal(to_numpy(deferred.moving_mean)[:6], before[:6])
    np.testing.assert_array_equal(to_numpy(deferred.moving_mean)[6:], before[6:])
