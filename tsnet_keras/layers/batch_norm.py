"""Batch normalization over the channels of video tensors, fused on TensorFlow.

Keras' `BatchNormalization` computes the moments and the normalization as
separate elementwise ops (about twenty ops and their gradients per layer on
TensorFlow). TensorFlow has one fused kernel for both directions
(`FusedBatchNormV3` and its gradient) for 4D channels-last tensors; a video
tensor `(batch, frames, height, width, channels)` is 4D after merging batch and
frames, and the statistics over all non-channel axes are the same.
`benchmarks/bench_x3d.py` measures the effect on X3D-S.
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tsnet_keras")
class VideoBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` over the last axis, fused on TensorFlow.

    Same arguments, weights, moving-statistics update (biased batch variance)
    and outputs as the Keras layer. In training on the TensorFlow backend, for
    a float32 input of rank 4 or 5 normalized over its last axis without a mask
    or renormalization, it runs TensorFlow's fused kernel (X3D-S training step
    about 6% less CPU time); with `update_statistics=False` (forward only) only
    above `COMPOSED_FORWARD_MAX_VALUES` values per channel (`fusable`).
    Inference uses the Keras layer: its two elementwise ops were faster than
    the fused kernel there (X3D-S forward 0.13 s against 0.21 s CPU time).

    Example:

    >>> bn = VideoBatchNormalization(momentum=0.9, epsilon=1e-5)
    >>> print(bn(keras.random.normal((2, 4, 8, 8, 16)), training=True).shape)
    (2, 4, 8, 8, 16)
    """

    def _fusable(self, inputs, mask, update_statistics=True):
        return (
            mask is None
            and not self.renorm
            and self.axis in (-1, len(inputs.shape) - 1)
            and fusable(inputs, self.compute_dtype, update_statistics)
        )

    def call(self, inputs, training=None, mask=None, update_statistics=True):
        """As Keras' layer; with `update_statistics=False`, training normalises with the
        batch statistics and leaves the moving ones alone (scoring in a search)."""
        inputs = ops.convert_to_tensor(inputs)
        training = bool(training) and self.trainable
        if training and not update_statistics:
            if mask is not None:
                raise ValueError("VideoBatchNormalization: `update_statistics` needs mask=None.")
            return self._batch_statistics_call(inputs)
        if training and self._fusable(inputs, mask):
            return _fused_training_call(self, inputs)
        return super().call(inputs, training=training, mask=mask)

    def _batch_statistics_call(self, inputs):
        """Normalises with the batch moments; the moving ones stay as they are."""
        scale, offset = _scale_and_offset(self)
        if self._fusable(inputs, None, update_statistics=False):
            return fused_batch_norm_training(inputs, scale, offset, self.epsilon)[0]
        x = ops.cast(inputs, "float32")
        mean, variance = batch_moments(x)
        outputs = ops.batch_normalization(x, mean, variance, axis=-1, epsilon=self.epsilon,
                                          offset=offset, scale=scale)
        return ops.cast(outputs, inputs.dtype)


def _scale_and_offset(layer):
    """The layer's gamma and beta, None where it has no scale or no centre."""
    return (layer.gamma if layer.scale else None), (layer.beta if layer.center else None)


def batch_moments(inputs):
    """The batch mean and (biased) variance over every axis but the last, in float32."""
    return ops.moments(ops.cast(inputs, "float32"), axes=list(range(len(inputs.shape) - 1)))


# Forward only, the fused kernel costs about 0.2 ms a call whatever the size; composed ops are
# cheaper up to about this many values per channel (BENCHMARKS.md section 3c).
COMPOSED_FORWARD_MAX_VALUES = 256


def fusable(inputs, compute_dtype, update_statistics=True) -> bool:
    """Whether a training batch norm of `inputs` runs `fused_batch_norm_training`:
    TensorFlow, rank 4 or 5, float32; and where the moving statistics do not update (a
    search's held-out scoring: batch statistics, forward only), more than
    `COMPOSED_FORWARD_MAX_VALUES` values per channel (known statically).

    The fused kernel pays for itself in its gradient op; forward only, on the small tensors
    of a search's late stages, composed ops are faster.
    """
    if not (keras.backend.backend() == "tensorflow" and len(inputs.shape) in (4, 5)
            and inputs.dtype == "float32" and compute_dtype == "float32"):
        return False
    values = tuple(inputs.shape[:-1])
    return (update_statistics or None in values
            or math.prod(values) > COMPOSED_FORWARD_MAX_VALUES)


def fused_batch_norm_training(inputs, scale, offset, epsilon):
    """`(outputs, mean, variance)` of a training batch norm over the last axis, fused.

    TensorFlow's `FusedBatchNormV3` (one op, one gradient op) on the input with its
    leading axes merged to 4D; the statistics are over every axis but the last,
    `variance` the biased one (as Keras keeps). The channel count may be known only
    at run time (a super-block's sliced width). `scale` / `offset` None: 1 / 0.
    """
    import tensorflow as tf

    flat, shape, count = _as_4d(inputs)
    def channels():  # read only where needed: a run-time channel count costs two ops
        return flat.shape[-1] if flat.shape[-1] is not None else tf.shape(flat)[-1]

    empty = tf.constant([], inputs.dtype)
    # The raw op, not tf.nn.fused_batch_norm, which raises epsilon to cuDNN's
    # minimum 1.001e-5 (X3D uses 1e-5).
    outputs, mean, variance = tf.raw_ops.FusedBatchNormV3(
        x=flat,
        scale=tf.ones([channels()]) if scale is None else tf.convert_to_tensor(scale),
        offset=tf.zeros([channels()]) if offset is None else tf.convert_to_tensor(offset),
        mean=empty,
        variance=empty,
        epsilon=epsilon,
        data_format="NHWC",
        is_training=True,
    )[:3]
    # The fused kernel returns the unbiased (n - 1) variance.
    if count is None:
        count = tf.cast(tf.size(flat) // channels(), variance.dtype)
    return tf.reshape(outputs, shape), mean, variance * (count - 1.0) / count


def _as_4d(inputs):
    """`(flat, shape, count)`: `inputs` with its leading axes merged to 4D, the shape to
    restore and the number of values per channel (None where it is known only at run time).

    With the non-channel axes static (a search step's widths are run-time channel counts
    only), the reshapes need no shape arithmetic and the count is a constant.
    """
    import tensorflow as tf

    static = tuple(inputs.shape[:-1])
    if None not in static:
        flat = tf.reshape(inputs, [math.prod(static[:-2]), static[-2], static[-1], -1])
        return flat, [*static, -1], float(math.prod(static))
    shape = tf.shape(inputs)
    return tf.reshape(inputs, tf.stack([-1, shape[-3], shape[-2], shape[-1]])), shape, None


def _fused_training_call(layer, inputs):
    outputs, mean, variance = fused_batch_norm_training(inputs, *_scale_and_offset(layer),
                                                        layer.epsilon)
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    return outputs
