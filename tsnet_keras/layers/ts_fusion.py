"""Two-stream fusion: bring the dense stream to the sparse stream's frame rate."""

import keras
from keras import ops

from tsnet_keras.layers import _checks
from tsnet_keras.layers.pointwise import pointwise
from tsnet_keras.renames import FUSION_NAMES, renamed_argument, renamed_attribute, renamed_keys
from tsnet_keras.space.rules import (
    FUSION_CONV_KERNEL,
    FUSION_CONV_MULTIPLIER,
    FUSION_MERGES,
    FUSION_OPS,
    fused_width,
)


# The fusion math, shared with `SuperTSFusion` (which adds only slicing and masking).
def time_strided_sample(dense, alpha):
    """Dense frames `0, alpha, 2 * alpha, ...`: `(B, alpha * T, ...)` -> `(B, T, ...)`."""
    return dense[:, ::alpha]


def time_to_channel(dense, frames, alpha):
    """Each group of `alpha` dense frames moved to channels, frame-major.

    `(B, alpha * T, H, W, C)` -> `(B, T, H, W, alpha * C)`: channel `a * C + c` of
    output frame `t` is channel `c` of dense frame `alpha * t + a`.
    """
    shape = ops.shape(dense)
    height, width = shape[2], shape[3]
    channels = dense.shape[-1] if dense.shape[-1] is not None else shape[4]
    grouped = ops.reshape(dense, (-1, frames, alpha, height, width, channels))
    grouped = ops.transpose(grouped, (0, 1, 3, 4, 2, 5))
    return ops.reshape(grouped, (-1, frames, height, width, alpha * channels))


def time_strided_taps(dense, frames, alpha, kernel_size):
    """The inputs of the time-strided conv: `kernel_size` strided slices on channels.

    The dense stream is zero-padded by `kernel_size // 2` frames; tap `k` of output
    frame `t` is padded frame `alpha * t + k`, so one matmul with the kernel reshaped
    to `(kernel_size * C, C_out)` is the temporal conv of stride `alpha`.
    `(B, alpha * T, H, W, C)` -> `(B, T, H, W, kernel_size * C)`.
    """
    pad = kernel_size // 2
    padded = ops.pad(dense, ((0, 0), (pad, pad), (0, 0), (0, 0), (0, 0)))
    taps = [padded[:, tap : tap + alpha * frames : alpha] for tap in range(kernel_size)]
    return ops.concatenate(taps, axis=-1)


@keras.saving.register_keras_serializable(package="tsnet_keras")
class TSFusion(keras.layers.Layer):
    """Fuses a dense (fast) stream into a sparse (slow) stream, SlowFast style.

    Inputs `[sparse, dense]`: sparse `(B, T, H, W, C_s)`, dense
    `(B, alpha * T, H, W, C_f)`; `alpha` is inferred in `build` and must be an
    integer. The fusion maps the dense stream to `(B, T, H, W, C_fused)`:

    - `"none"`: no fusion; the sparse tensor is returned unchanged.
    - `"time_to_channel"`: the alpha frames of each group move to channels,
      `C_fused = alpha * C_f`. Channel `a * C_f + c` of output frame `t` is
      channel `c` of dense frame `alpha * t + a` (frame-major).
    - `"time_strided_sample"`: dense frames `0, alpha, 2 * alpha, ...` (dense
      frame `alpha * t` aligns with sparse frame `t`), `C_fused = C_f`.
    - `"time_strided_conv"`: temporal conv, kernel `conv_kernel` (5) x 1 x 1,
      stride alpha, zero padding `conv_kernel // 2`, no bias,
      `C_fused = conv_channel_multiplier * C_f`, then BN `bn` and ReLU. Output
      frame `t` sees dense frames `alpha * t - 2 ... alpha * t + 2`. Computed as
      one matmul over the channel-concatenated strided slices (no Conv3D).

    `merge="concat"` returns `concat([sparse, fused], channels)` (SlowFast's
    default), `C_s + C_fused` channels; `merge="sum"` returns `sparse + fused`
    and needs `C_fused == C_s`.

    Reference: Feichtenhofer et al., "SlowFast Networks for Video Recognition",
    ICCV 2019 (lateral connections); Auto-TSNet (ICCV 2021) searches over them.

    Args:
        fusion: one of `"none"`, `"time_to_channel"`,
            `"time_strided_sample"`, `"time_strided_conv"`.
        merge: `"concat"` or `"sum"`. Defaults to `"concat"`.
        conv_kernel: odd int, temporal kernel of `"time_strided_conv"`.
            Defaults to 5.
        conv_channel_multiplier: int, output width of `"time_strided_conv"` as a
            multiple of `C_f`. Defaults to 2.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Weights:
        Only for `"time_strided_conv"`: `fusion_kernel`
        `(conv_kernel, C_f, conv_channel_multiplier * C_f)` and BN sublayer `bn`.

    Returns:
        Tensor of shape `(batch, frames, height, width, C_s + C_fused)` for
        `"concat"`, `(batch, frames, height, width, C_s)` for `"sum"` and
        `"none"`.

    Example:

    >>> fusion = TSFusion("time_strided_conv")
    >>> sparse = keras.random.normal((2, 4, 56, 56, 64))
    >>> dense = keras.random.normal((2, 32, 56, 56, 8))
    >>> print(fusion([sparse, dense]).shape)
    (2, 4, 56, 56, 80)
    """

    def __init__(
        self,
        fusion=None,
        merge="concat",
        conv_kernel=FUSION_CONV_KERNEL,
        conv_channel_multiplier=FUSION_CONV_MULTIPLIER,
        **kwargs,
    ):
        fusion = renamed_argument(kwargs, "operation", "fusion", fusion, None,
                                  where=type(self).__name__)
        super().__init__(**kwargs)
        name = type(self).__name__
        self.fusion = _checks.check_choice(name, "fusion", fusion, FUSION_OPS)
        self.merge = _checks.check_choice(name, "merge", merge, FUSION_MERGES)
        # Odd so that padding conv_kernel // 2 keeps exactly T output frames.
        self.conv_kernel = _checks.check_odd_positive_int(name, "conv_kernel", conv_kernel)
        self.conv_channel_multiplier = _checks.check_positive_int(
            name, "conv_channel_multiplier", conv_channel_multiplier
        )
        self.alpha = None  # frame-rate ratio dense / sparse, set in build
        self.bn = None
        if self.fusion == "time_strided_conv":
            self.bn = keras.layers.BatchNormalization(
                momentum=0.9, epsilon=1e-5, dtype=self.dtype_policy, name="bn"
            )

    @staticmethod
    def fused_channels(
        fusion, dense_channels, alpha, conv_channel_multiplier=FUSION_CONV_MULTIPLIER
    ):
        """Width `fusion` brings from the dense stream (`rules.fused_width`; 0 for "none")."""
        _checks.check_choice("TSFusion", "fusion", fusion, FUSION_OPS)
        return fused_width(fusion, dense_channels, alpha, conv_channel_multiplier)

    def _split_shapes(self, input_shape):
        name = type(self).__name__
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"{name} takes a list [sparse, dense] of two tensors.")
        sparse_shape, dense_shape = input_shape
        if not isinstance(sparse_shape, (list, tuple)) or not isinstance(
            dense_shape, (list, tuple)
        ):
            raise ValueError(f"{name} takes a list [sparse, dense] of two tensors.")
        return tuple(sparse_shape), tuple(dense_shape)

    def build(self, input_shape):
        name = type(self).__name__
        sparse_shape, dense_shape = self._split_shapes(input_shape)
        _checks.check_video_shape(f"{name} (sparse input)", sparse_shape)
        _checks.check_video_shape(f"{name} (dense input)", dense_shape)
        for axis, axis_name in ((2, "height"), (3, "width")):
            if None not in (sparse_shape[axis], dense_shape[axis]) and (
                sparse_shape[axis] != dense_shape[axis]
            ):
                raise ValueError(
                    f"{name}: sparse and dense streams must have the same {axis_name}; "
                    f"got {sparse_shape[axis]} and {dense_shape[axis]}."
                )
        sparse_frames, dense_frames = sparse_shape[1], dense_shape[1]
        if sparse_frames is None or dense_frames is None:
            raise ValueError(
                f"{name} needs static frame counts to infer alpha; got sparse "
                f"{sparse_shape} and dense {dense_shape}."
            )
        if dense_frames % sparse_frames != 0:
            raise ValueError(
                f"{name}: dense frames ({dense_frames}) must be an integer multiple "
                f"alpha of sparse frames ({sparse_frames})."
            )
        self.alpha = dense_frames // sparse_frames
        dense_channels = dense_shape[-1]
        fused = self.fused_channels(
            self.fusion, dense_channels, self.alpha, self.conv_channel_multiplier
        )
        if self.merge == "sum" and self.fusion != "none" and fused != sparse_shape[-1]:
            raise ValueError(
                f"{name}: merge='sum' needs the fused width ({fused} for fusion "
                f"{self.fusion!r}) to equal the sparse channels ({sparse_shape[-1]})."
            )
        if self.fusion == "time_strided_conv":
            self.fusion_kernel = self.add_weight(
                name="fusion_kernel",
                shape=(self.conv_kernel, dense_channels, fused),
                initializer="he_normal",
            )
            self.bn.build(sparse_shape[:-1] + (fused,))

    def _fuse(self, sparse, dense, training):
        frames = ops.shape(sparse)[1]
        if self.fusion == "time_strided_sample":
            return time_strided_sample(dense, self.alpha)
        if self.fusion == "time_to_channel":
            return time_to_channel(dense, frames, self.alpha)
        stacked = time_strided_taps(dense, frames, self.alpha, self.conv_kernel)
        kernel_shape = self.fusion_kernel.shape
        kernel = ops.reshape(
            self.fusion_kernel, (kernel_shape[0] * kernel_shape[1], kernel_shape[2])
        )
        fused = self.bn(pointwise(stacked, kernel), training=training)
        return ops.relu(fused)

    def call(self, inputs, training=None):
        sparse, dense = inputs
        if self.fusion == "none":
            return sparse
        fused = self._fuse(sparse, dense, training)
        if self.merge == "sum":
            return sparse + fused
        return ops.concatenate([sparse, fused], axis=-1)

    def compute_output_shape(self, input_shape):
        sparse_shape, dense_shape = self._split_shapes(input_shape)
        if self.fusion == "none" or self.merge == "sum":
            return sparse_shape
        alpha = self.alpha
        if alpha is None and None not in (sparse_shape[1], dense_shape[1]):
            alpha = dense_shape[1] // sparse_shape[1]
        fused = self.fused_channels(
            self.fusion, dense_shape[-1], alpha, self.conv_channel_multiplier
        )
        return sparse_shape[:-1] + (sparse_shape[-1] + fused,)

    # Saved models from before `operation` was renamed `fusion` still load.
    operation = renamed_attribute("operation", "fusion")

    @classmethod
    def from_config(cls, config):
        return super().from_config(renamed_keys(config, FUSION_NAMES))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "fusion": self.fusion,
                "merge": self.merge,
                "conv_kernel": self.conv_kernel,
                "conv_channel_multiplier": self.conv_channel_multiplier,
            }
        )
        return config
