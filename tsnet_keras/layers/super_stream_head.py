"""Stream head of a supernet: the `StreamHead` conv reading the sampled input width."""

import keras
from keras import ops

from tsnet_keras.layers import _checks
from tsnet_keras.layers._super import ChoiceWeightsMixin
from tsnet_keras.layers.sliced_batch_norm import (
    SlicedBatchNormalization,
    default_dynamic_shapes,
)


@keras.saving.register_keras_serializable(package="tsnet_keras")
class SuperStreamHead(ChoiceWeightsMixin, keras.layers.Layer):
    """`StreamHead` (1x1x1 conv, BN, ReLU, global average pool) over a sampled input width.

    The output width is fixed; the input is the stream's last block group
    (`in_base` channels) followed, in the sparse stream, by `in_extra` fused
    channels. Rows are laid out as in `SuperMBConv3D`: row `r < in_base` reads
    stream channel `r`, row `max_in_base + j` reads fused channel `j`.

    Args:
        filters: int. Output features.
        max_in_base: int. Widest stream width.
        max_in_extra: int. Widest fused width. Defaults to 0.
        dynamic_shapes: bool or None. None: True on TensorFlow.
        **kwargs: base `keras.layers.Layer` arguments.

    Weights:
        `kernel` `(max_in_base + max_in_extra, filters)` and the BN sublayer `bn`.

    Returns:
        `(batch, filters)`.
    """

    def __init__(self, filters, max_in_base, max_in_extra=0, dynamic_shapes=None, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        self.filters = _checks.check_positive_int(name, "filters", filters)
        self.max_in_base = _checks.check_positive_int(name, "max_in_base", max_in_base)
        self.max_in_extra = _checks.check_int(name, "max_in_extra", max_in_extra, 0, plain=True)
        self.dynamic_shapes = default_dynamic_shapes() if dynamic_shapes is None else dynamic_shapes
        self.bn = SlicedBatchNormalization(
            filters, dynamic_shapes=self.dynamic_shapes, dtype=self.dtype_policy, name="bn"
        )

    def build(self, input_shape=None):
        self.kernel = self.add_weight(
            name="kernel", shape=(self.max_in_base + self.max_in_extra, self.filters),
            initializer="he_normal",
        )
        self.bn.build()
        self.built = True

    def call(self, inputs, in_base=None, in_extra=None, training=None, update_statistics=True):
        in_base = self.max_in_base if in_base is None else in_base
        in_extra = (self.max_in_extra if in_extra is None else in_extra) if self.max_in_extra else 0
        kernel = ops.convert_to_tensor(self.kernel)
        if self.dynamic_shapes:
            rows = kernel[:in_base]
            if self.max_in_extra:
                rows = ops.concatenate(
                    [rows, kernel[self.max_in_base : self.max_in_base + in_extra]], axis=0
                )
            kernel = rows
        x = self.bn(ops.matmul(inputs, kernel), width=self.filters, training=training,
                    update_statistics=update_statistics)
        return ops.mean(ops.relu(x), axis=(1, 2, 3))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.filters)

    def _choice_slices(self, choice):
        import numpy as np

        base, extra = int(choice["in_base"]), int(choice.get("in_extra", 0))
        if base > self.max_in_base or extra > self.max_in_extra:
            raise ValueError(
                f"{self.name}: input ({base} + {extra}) exceeds ({self.max_in_base} + "
                f"{self.max_in_extra})."
            )
        rows = np.concatenate([np.arange(base), self.max_in_base + np.arange(extra)]).astype(int)
        result = {"kernel": ((self.kernel, rows), ops.convert_to_numpy(self.kernel)[rows])}
        for weight in ("gamma", "beta", "moving_mean", "moving_variance"):
            variable = getattr(self.bn, weight)
            result[f"bn/{weight}"] = ((variable, slice(None)), ops.convert_to_numpy(variable))
        return result

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "max_in_base": self.max_in_base,
                "max_in_extra": self.max_in_extra,
                "dynamic_shapes": self.dynamic_shapes,
            }
        )
        return config
