"""Super TS-Fusion: the fusion op (and the dense width it reads) chosen per call."""

import keras
from keras import ops

from tsnet_keras.layers import _checks
from tsnet_keras.layers.pointwise import pointwise
from tsnet_keras.layers._super import ChoiceWeightsMixin, active_slice
from tsnet_keras.renames import FUSION_NAMES, renamed_keys
from tsnet_keras.layers.sliced_batch_norm import (
    SlicedBatchNormalization,
    channel_mask,
    default_dynamic_shapes,
)
from tsnet_keras.layers.ts_fusion import (
    TSFusion,
    time_strided_sample,
    time_strided_taps,
    time_to_channel,
)
from tsnet_keras.space.rules import FUSION_CONV_KERNEL, FUSION_CONV_MULTIPLIER, FUSION_OPS


@keras.saving.register_keras_serializable(package="tsnet_keras")
class SuperTSFusion(ChoiceWeightsMixin, keras.layers.Layer):
    """TS-Fusion whose fusion is a tensor input (`TSFusion` math, concat merge).

    Inputs `[sparse, dense]` as `TSFusion`: sparse `(B, T, H, W, C_s)`, dense
    `(B, alpha * T, H, W, C_f)` with `C_f = dense_channels` active channels.
    `fusions[fusion_index]` maps the dense stream to `C_fused` channels
    (0 for "none", `alpha * C_f`, `C_f` or `2 * C_f`), concatenated after the
    sparse channels. `keras.ops.switch` runs only the chosen op; the
    time-strided conv reads the first `C_f` input and `2 * C_f` output channels
    of the widest `fusion_kernel`, and its BN statistics are updated outside the
    switch, only when that op ran.

    Output layout without dynamic shapes: `[sparse (widest), fused (max_fused)]`
    with the fused channels compacted at the start of their block, so the next
    block's input row `max_sparse + j` always reads fused channel `j`.

    Reference: Feichtenhofer et al., "SlowFast Networks", ICCV 2019; Auto-TSNet
    (ICCV 2021) searches the op per place (paper section 3.2).

    Args:
        fusions: tuple of op names (subset of `TSFusion` ops).
        max_dense_channels: int. Widest dense width.
        alpha: int. Frame-rate ratio dense / sparse.
        conv_kernel: odd int. Temporal kernel of the strided conv. Defaults to 5.
        conv_channel_multiplier: int. Defaults to 2.
        dynamic_shapes: bool or None. None: True on TensorFlow.
        **kwargs: base `keras.layers.Layer` arguments.

    Weights:
        With "time_strided_conv" among the ops: `fusion_kernel`
        `(conv_kernel, max_dense_channels, conv_channel_multiplier * max_dense_channels)`
        and the BN sublayer `bn`.

    Returns:
        `(B, T, H, W, C_s + C_fused)`.
    """

    def __init__(
        self,
        fusions,
        max_dense_channels,
        alpha,
        conv_kernel=FUSION_CONV_KERNEL,
        conv_channel_multiplier=FUSION_CONV_MULTIPLIER,
        dynamic_shapes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        name = type(self).__name__
        fusions = tuple(fusions)
        if not fusions:
            raise ValueError(f"{name}: `fusions` needs at least one op.")
        for op in fusions:
            _checks.check_choice(name, "fusions", op, FUSION_OPS)
        self.fusions = fusions
        self.max_dense_channels = _checks.check_positive_int(
            name, "max_dense_channels", max_dense_channels
        )
        self.alpha = _checks.check_positive_int(name, "alpha", alpha)
        self.conv_kernel = _checks.check_odd_positive_int(name, "conv_kernel", conv_kernel)
        self.conv_channel_multiplier = _checks.check_positive_int(
            name, "conv_channel_multiplier", conv_channel_multiplier
        )
        self.dynamic_shapes = default_dynamic_shapes() if dynamic_shapes is None else dynamic_shapes
        self.max_fused = max(
            TSFusion.fused_channels(op, max_dense_channels, alpha, conv_channel_multiplier)
            for op in fusions
        )
        self.max_conv_channels = conv_channel_multiplier * max_dense_channels
        self.bn = None
        if "time_strided_conv" in fusions:
            self.bn = SlicedBatchNormalization(
                self.max_conv_channels, dynamic_shapes=self.dynamic_shapes,
                dtype=self.dtype_policy, name="bn",
            )

    def build(self, input_shape=None):
        if self.bn is not None:
            self.fusion_kernel = self.add_weight(
                name="fusion_kernel",
                shape=(self.conv_kernel, self.max_dense_channels, self.max_conv_channels),
                initializer="he_normal",
            )
            self.bn.build()
        self.built = True

    def call(
        self,
        inputs,
        fusion_index=None,
        dense_channels=None,
        training=None,
        update_statistics=True,
    ):
        sparse, dense = inputs
        dense_channels = self.max_dense_channels if dense_channels is None else dense_channels
        fusion_index = len(self.fusions) - 1 if fusion_index is None else fusion_index

        def batch_norm(x, width):  # `(x, mean, variance)`
            return self.bn.normalize(x, width, training, update_statistics)

        branches = [self._branch(op, sparse, dense, dense_channels, batch_norm)
                    for op in self.fusions]
        if len(branches) == 1:
            fused, mean, variance = branches[0]()
        else:
            fused, mean, variance = ops.switch(fusion_index, branches)
        if self.bn is not None and training and update_statistics:
            conv = self.fusions.index("time_strided_conv")
            self.bn.update(
                self.conv_channel_multiplier * dense_channels, mean, variance,
                active=ops.equal(fusion_index, conv),
            )
        if self.fusions == ("none",):
            return sparse
        return ops.concatenate([sparse, fused], axis=-1)

    def _branch(self, fusion, sparse, dense, dense_channels, batch_norm):
        """What `ops.switch` runs for `fusion`: `() -> (fused, BN mean, BN variance)`."""
        fuse = {
            "none": self._no_fusion,
            "time_to_channel": self._time_to_channel,
            "time_strided_sample": self._time_strided_sample,
            "time_strided_conv": self._time_strided_conv,
        }[fusion]
        return lambda: fuse(sparse, dense, dense_channels, batch_norm)

    def _no_statistics(self):
        return ops.zeros((self.max_conv_channels,))

    def _to_max_fused(self, fused, width):
        """Masked mode: pad/compact to max_fused channels, zero past `width`."""
        if self.dynamic_shapes:
            return fused
        have = fused.shape[-1]
        if have < self.max_fused:
            fused = ops.pad(fused, ((0, 0),) * 4 + ((0, self.max_fused - have),))
        return fused * channel_mask(width, self.max_fused, fused.dtype)

    def _no_fusion(self, sparse, dense, dense_channels, batch_norm):
        zeros = self._no_statistics()
        if not self.dynamic_shapes:
            return ops.zeros_like(sparse[..., :1]) * ops.zeros((self.max_fused,)), zeros, zeros
        return sparse[..., :0], zeros, zeros

    def _time_strided_sample(self, sparse, dense, dense_channels, batch_norm):
        zeros = self._no_statistics()
        fused = time_strided_sample(dense, self.alpha)
        return self._to_max_fused(fused, dense_channels), zeros, zeros

    def _time_to_channel(self, sparse, dense, dense_channels, batch_norm):
        alpha, zeros = self.alpha, self._no_statistics()
        fused = time_to_channel(dense, ops.shape(sparse)[1], alpha)
        if not self.dynamic_shapes:
            # Channel a * C_max + c -> a * C_f + c (TSFusion's frame-major layout).
            j = ops.arange(self.max_fused)
            source = (j // dense_channels) * self.max_dense_channels + j % dense_channels
            source = ops.clip(source, 0, alpha * self.max_dense_channels - 1)
            fused = ops.take(fused, source, axis=-1)
        return self._to_max_fused(fused, alpha * dense_channels), zeros, zeros

    def _time_strided_conv(self, sparse, dense, dense_channels, batch_norm):
        stacked = time_strided_taps(dense, ops.shape(sparse)[1], self.alpha, self.conv_kernel)
        kernel = ops.convert_to_tensor(self.fusion_kernel)
        width = self.conv_channel_multiplier * dense_channels
        if not self.dynamic_shapes:
            kernel = ops.reshape(kernel, (-1, self.max_conv_channels))
        else:
            kernel = ops.reshape(active_slice(kernel, (kernel.shape[0], dense_channels, width)),
                                 (-1, width))
        fused = pointwise(stacked, kernel)
        fused, mean, variance = batch_norm(fused, width)
        fused = ops.relu(fused)
        return self._to_max_fused(fused, width), mean, variance

    def compute_output_shape(self, input_shape):
        sparse_shape = tuple(input_shape[0])
        if self.fusions == ("none",):
            return sparse_shape
        if self.dynamic_shapes or sparse_shape[-1] is None:
            return sparse_shape[:-1] + (None,)
        return sparse_shape[:-1] + (sparse_shape[-1] + self.max_fused,)

    # --------------------------------------------------- fixed-layer weights
    def _choice_slices(self, choice):
        fusion = choice["fusion"]
        if fusion not in self.fusions:
            raise ValueError(f"{self.name}: op {fusion!r} is not one of {self.fusions}.")
        if fusion != "time_strided_conv":
            return {}
        c = int(choice["dense_channels"])
        if c > self.max_dense_channels:
            raise ValueError(f"{self.name}: {c} dense channels exceed {self.max_dense_channels}.")
        width = self.conv_channel_multiplier * c
        result = {}
        index = (slice(None), slice(0, c), slice(0, width))
        result["fusion_kernel"] = (
            (self.fusion_kernel, index), ops.convert_to_numpy(self.fusion_kernel)[index]
        )
        for weight in ("gamma", "beta", "moving_mean", "moving_variance"):
            variable = getattr(self.bn, weight)
            result[f"bn/{weight}"] = (
                (variable, slice(0, width)), ops.convert_to_numpy(variable)[:width]
            )
        return result

    @classmethod
    def from_config(cls, config):
        return super().from_config(renamed_keys(config, FUSION_NAMES))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "fusions": list(self.fusions),
                "max_dense_channels": self.max_dense_channels,
                "alpha": self.alpha,
                "conv_kernel": self.conv_kernel,
                "conv_channel_multiplier": self.conv_channel_multiplier,
                "dynamic_shapes": self.dynamic_shapes,
            }
        )
        return config
