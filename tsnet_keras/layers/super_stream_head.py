"""Stream head of a supernet: the `StreamHead` conv reading the sampled input width."""

import keras
from keras import ops

from tsnet_keras.layers import _checks
from tsnet_keras.layers._super import ChoiceWeightsMixin, input_row_indices, input_rows
from tsnet_keras.layers.sliced_batch_norm import (
    SlicedBatchNormalization,
    default_dynamic_shapes,
)
from tsnet_keras.renames import LAYER_WIDTHS, renamed_argument, renamed_keys


@keras.saving.register_keras_serializable(package="tsnet_keras")
class SuperStreamHead(ChoiceWeightsMixin, keras.layers.Layer):
    """`StreamHead` (1x1x1 conv, BN, ReLU, global average pool) over a sampled input width.

    The output width is fixed; the input is the stream's last block group
    (`in_base` channels) followed, in the sparse stream, by `in_extra` fused
    channels. Rows are laid out as in `SuperMBConv3D`: row `r < in_base` reads
    stream channel `r`, row `max_in_base + j` reads fused channel `j`.

    Args:
        channels: int. Output features.
        max_in_base: int. Widest stream width.
        max_in_extra: int. Widest fused width. Defaults to 0.
        dynamic_shapes: bool or None. None: True on TensorFlow.
        **kwargs: base `keras.layers.Layer` arguments.

    Weights:
        `kernel` `(max_in_base + max_in_extra, channels)` and the BN sublayer `bn`.

    Returns:
        `(batch, channels)`.
    """

    def __init__(self, channels=None, max_in_base=None, max_in_extra=0, dynamic_shapes=None,
                 **kwargs):
        channels = renamed_argument(kwargs, "filters", "channels", channels, None,
                                    where=type(self).__name__)
        super().__init__(**kwargs)
        name = type(self).__name__
        self.channels = _checks.check_positive_int(name, "channels", channels)
        self.max_in_base = _checks.check_positive_int(name, "max_in_base", max_in_base)
        self.max_in_extra = _checks.check_int(name, "max_in_extra", max_in_extra, 0, plain=True)
        self.dynamic_shapes = default_dynamic_shapes() if dynamic_shapes is None else dynamic_shapes
        self.bn = SlicedBatchNormalization(
            channels, dynamic_shapes=self.dynamic_shapes, dtype=self.dtype_policy, name="bn"
        )

    def build(self, input_shape=None):
        self.kernel = self.add_weight(
            name="kernel", shape=(self.max_in_base + self.max_in_extra, self.channels),
            initializer="he_normal",
        )
        self.bn.build()
        self.built = True

    def call(self, inputs, in_base=None, in_extra=None, training=None, update_statistics=True):
        in_base = self.max_in_base if in_base is None else in_base
        in_extra = (self.max_in_extra if in_extra is None else in_extra) if self.max_in_extra else 0
        kernel = (input_rows(self.kernel, in_base, in_extra, self.max_in_base, self.max_in_extra)
                  if self.dynamic_shapes else ops.convert_to_tensor(self.kernel))
        x = self.bn(ops.matmul(inputs, kernel), width=self.channels, training=training,
                    update_statistics=update_statistics)
        return ops.mean(ops.relu(x), axis=(1, 2, 3))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.channels)

    def _choice_slices(self, choice):

        rows = input_row_indices(self, choice)
        result = {"kernel": ((self.kernel, rows), ops.convert_to_numpy(self.kernel)[rows])}
        for weight in ("gamma", "beta", "moving_mean", "moving_variance"):
            variable = getattr(self.bn, weight)
            result[f"bn/{weight}"] = ((variable, slice(None)), ops.convert_to_numpy(variable))
        return result

    # Saved models from before `filters` was renamed `channels` still load.
    filters = property(lambda self: self.channels, doc="Old name of `channels`.")

    @classmethod
    def from_config(cls, config):
        return super().from_config(renamed_keys(config, LAYER_WIDTHS))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "max_in_base": self.max_in_base,
                "max_in_extra": self.max_in_extra,
                "dynamic_shapes": self.dynamic_shapes,
            }
        )
        return config
