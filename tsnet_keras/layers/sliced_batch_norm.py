"""Batch normalisation of the active channels of a weight-sharing super-block."""

import contextlib
import threading

import keras
from keras import ops

from tsnet_keras.checks import check_int
from tsnet_keras.layers._super import active_slice
from tsnet_keras.layers.batch_norm import batch_moments, fusable, fused_batch_norm_training


def default_dynamic_shapes():
    """True where slicing with tensor-valued sizes computes only the chosen width.

    TensorFlow without XLA does (one trace serves every width); JAX and torch need
    static shapes, so there the super-blocks mask at the widest width instead.
    """
    return keras.backend.backend() == "tensorflow"


def channel_mask(width, max_width, dtype="float32"):
    """1.0 for the first `width` of `max_width` channels, 0.0 after."""
    return ops.cast(ops.arange(max_width) < width, dtype)


_DEFERRED = threading.local()  # .records: the open `deferred_updates` list, or None


@contextlib.contextmanager
def deferred_updates():
    """Within: `SlicedBatchNormalization.update` writes nothing; it records
    `(layer, mask, mean, variance)` in the list this yields, for `apply_updates` later.

    A search runs each sampled path in a traced function of its own: one that writes
    no variable can run beside the next path's (`ParsecSearch`'s `paths_in_flight`),
    and the paths' updates are then applied in path order, as if made in place.
    """
    outer, _DEFERRED.records = getattr(_DEFERRED, "records", None), []
    try:
        yield _DEFERRED.records
    finally:
        _DEFERRED.records = outer


def apply_updates(layers, statistics):
    """Applies deferred updates: `layers[i].apply_update(*statistics[i])`, in order."""
    for layer, values in zip(layers, statistics):
        layer.apply_update(*values)


@keras.saving.register_keras_serializable(package="tsnet_keras")
class SlicedBatchNormalization(keras.layers.Layer):
    """Batch norm whose parameters are stored at the widest width and used for the first `width`.

    A super-block normalises only its active channels: with `dynamic_shapes`
    the input has exactly `width` channels and the layer slices gamma, beta and
    the moving statistics; otherwise the input is at the widest width (inactive
    channels zero) and the output is masked back to zero past `width`. In both
    modes only the active slice of the moving statistics is updated, so the
    statistics of channels an architecture does not use never drift.

    The moving statistics are `synchronization="on_read"` with
    `aggregation="mean"`: under `tf.distribute` every replica updates its own
    copy (each replica runs a different architecture; no cross-replica sync
    point inside the step), and reading them outside the step (checkpoints,
    evaluation) averages the replicas.

    The update is split from the normalisation (`normalize`, `update`) so that a
    block can normalise inside a `keras.ops.cond` / `switch` branch and update the
    statistics outside it: stateful updates inside control flow break under JAX
    and `tf.distribute` (engineering notes). In training with dynamic shapes on
    TensorFlow (float32), `normalize` runs the fused kernel of
    `VideoBatchNormalization` on the active channels (one op and one gradient op
    instead of some twenty of each).

    Args:
        channels: int. Widest width.
        momentum: float. Moving-average momentum (Keras convention). Defaults to 0.9.
        epsilon: float. Defaults to 1e-5.
        gamma_initializer: initializer. Defaults to "ones" ("zeros" for the last
            BN of a residual branch).
        dynamic_shapes: bool or None. None: True on TensorFlow.
        **kwargs: base `keras.layers.Layer` arguments.

    Weights:
        `gamma`, `beta`, `moving_mean`, `moving_variance`, each `(channels,)`:
        the same names as `keras.layers.BatchNormalization`.

    Example:

    >>> bn = SlicedBatchNormalization(16)
    >>> y = bn(x_with_8_channels, width=8, training=True)
    """

    def __init__(
        self,
        channels,
        momentum=0.9,
        epsilon=1e-5,
        gamma_initializer="ones",
        dynamic_shapes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = check_int("channels", channels, plain=True, where="SlicedBatchNormalization")
        self.momentum = momentum
        self.epsilon = epsilon
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.dynamic_shapes = default_dynamic_shapes() if dynamic_shapes is None else dynamic_shapes

    def build(self, input_shape=None):
        shape = (self.channels,)
        self.gamma = self.add_weight(
            name="gamma", shape=shape, initializer=self.gamma_initializer, autocast=False
        )
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros", autocast=False)
        # On-read synchronisation: `add_weight` does not take it, so create the
        # variables in the layer's name scope (same paths as add_weight gives).
        with keras.name_scope(self.name, caller=self):
            self.moving_mean = keras.Variable(
                initializer="zeros", shape=shape, dtype=self.variable_dtype, trainable=False,
                autocast=False, aggregation="mean", synchronization="on_read",
                name="moving_mean",
            )
            self.moving_variance = keras.Variable(
                initializer="ones", shape=shape, dtype=self.variable_dtype, trainable=False,
                autocast=False, aggregation="mean", synchronization="on_read",
                name="moving_variance",
            )
        self.built = True

    def _active(self, vector, width):
        if not self.dynamic_shapes:
            return ops.convert_to_tensor(vector)
        return active_slice(vector, (width,))

    def _pad(self, mean, variance, width):
        """Width-long (dynamic) or widest (masked) statistics, padded to the widest width."""
        if not self.dynamic_shapes:
            return mean, variance
        paddings = [[0, self.channels - width]]
        return ops.pad(mean, paddings), ops.pad(variance, paddings)

    def normalize(self, inputs, width, training, update_statistics=True):
        """`(outputs, mean, variance)`: the active channels normalised, and the statistics
        used (widest width; batch moments in training) for `update`.

        `update_statistics=False`: the caller will not `update` (a search's held-out
        scoring, forward only); `fusable` then takes composed ops for small tensors.
        """
        if not training:
            mean, variance = self.statistics(inputs, width, training)
            return self.apply(inputs, width, mean, variance), mean, variance
        if self.dynamic_shapes and fusable(inputs, self.compute_dtype, update_statistics):
            outputs, mean, variance = fused_batch_norm_training(
                inputs, self._active(self.gamma, width), self._active(self.beta, width),
                self.epsilon)
        else:
            mean, variance = batch_moments(inputs)
            outputs = self._normalized(inputs, width, mean, variance)
        return (outputs, *self._pad(mean, variance, width))

    def statistics(self, inputs, width, training):
        """(mean, variance) at the widest width: batch moments or the moving statistics."""
        if training:
            return self._pad(*batch_moments(inputs), width)
        return ops.convert_to_tensor(self.moving_mean), ops.convert_to_tensor(self.moving_variance)

    def apply(self, inputs, width, mean, variance):
        """Normalises the active channels with the given (widest-width) statistics."""
        return self._normalized(inputs, width, self._active(mean, width),
                                self._active(variance, width))

    def _normalized(self, inputs, width, mean, variance):
        """Normalises with statistics of the input's width (active, or widest masked)."""
        outputs = ops.batch_normalization(
            ops.cast(inputs, "float32"),
            mean=mean,
            variance=variance,
            axis=-1,
            offset=self._active(self.beta, width),
            scale=self._active(self.gamma, width),
            epsilon=self.epsilon,
        )
        if not self.dynamic_shapes:
            outputs = outputs * channel_mask(width, self.channels, outputs.dtype)
        return ops.cast(outputs, self.compute_dtype)

    def update(self, width, mean, variance, active=True):
        """Moves the active slice of the moving statistics towards (mean, variance);
        within `deferred_updates`, records the update instead."""
        mask = ops.arange(self.channels) < width
        if active is not True:
            mask = ops.logical_and(mask, ops.cast(active, "bool"))
        records = getattr(_DEFERRED, "records", None)
        if records is not None:
            records.append((self, mask, mean, variance))
            return
        self.apply_update(mask, mean, variance)

    def apply_update(self, mask, mean, variance):
        """The moving statistics moved towards (mean, variance) where `mask` is True."""
        for moving, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
            current = ops.convert_to_tensor(moving)
            moved = current * self.momentum + value * (1.0 - self.momentum)
            moving.assign(ops.where(mask, moved, current))

    def call(self, inputs, width=None, training=None, update_statistics=True):
        """Normalise (and, when training, update the statistics) in one call."""
        width = self.channels if width is None else width
        outputs, mean, variance = self.normalize(inputs, width, training, update_statistics)
        if training and update_statistics:
            self.update(width, mean, variance)
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
                "dynamic_shapes": self.dynamic_shapes,
            }
        )
        return config
