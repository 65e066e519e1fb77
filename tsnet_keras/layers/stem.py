"""X3D stem: per-frame spatial convolution, then channel-wise temporal convolution."""

import keras
from keras import ops

from tsnet_keras.layers import _checks
from tsnet_keras.layers.batch_norm import VideoBatchNormalization
from tsnet_keras.layers.depthwise import frame_window
from tsnet_keras.renames import LAYER_WIDTHS, renamed_argument, renamed_keys


@keras.saving.register_keras_serializable(package="tsnet_keras")
class VideoStem(keras.layers.Layer):
    """X3D stem: k x k per-frame conv, channel-wise t x 1 x 1 temporal conv, BN, ReLU.

    Data flow::

        (B, T, H, W, C_in)
          -> per-frame conv k x k, stride s, C_in -> channels, no bias
          -> channel-wise temporal conv t x 1 x 1, "same" zero padding, no bias
          -> BatchNormalization -> ReLU
        (B, T, ceil(H / s), ceil(W / s), channels)

    Spatial padding follows Keras' `padding="same"`; for stride 2 and an even
    size the extra row/column goes at the end (PyTorch pads 1 on both sides:
    same output size, a half-pixel shift of the sampling grid).

    Reference: Feichtenhofer, "X3D: Expanding Architectures for Efficient Video
    Recognition", CVPR 2020 (the stem of the X3D reference implementation).

    Args:
        channels: int, output channels (24 in X3D-S).
        temporal_kernel: odd int, temporal size of the channel-wise conv.
            Defaults to 5.
        spatial_kernel: odd int, size of the per-frame conv. Defaults to 3.
        spatial_stride: int, 1 or 2, stride of the per-frame conv. Defaults to 2.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Weights:
        `spatial_conv_kernel` `(spatial_kernel, spatial_kernel, C_in, channels)`,
        `temporal_conv_kernel` `(temporal_kernel, channels)` and the BN sublayer
        `bn` (gamma, beta, moving mean and variance of width `channels`).

    Call arguments:
        inputs: `(B, T, H, W, C_in)`.
        training: bool.
        update_statistics: bool. Defaults to True; False: in training, batch
            statistics only (`VideoBatchNormalization`).

    Returns:
        Tensor of shape `(batch, frames, ceil(height / spatial_stride),
        ceil(width / spatial_stride), channels)`.

    Example:

    >>> stem = VideoStem(24)
    >>> print(stem(keras.random.normal((2, 13, 160, 160, 3))).shape)
    (2, 13, 80, 80, 24)
    """

    def __init__(
        self,
        channels=None,
        temporal_kernel=5,
        spatial_kernel=3,
        spatial_stride=2,
        **kwargs,
    ):
        channels = renamed_argument(kwargs, "filters", "channels", channels, None,
                                    where=type(self).__name__)
        super().__init__(**kwargs)
        name = type(self).__name__
        self.channels = _checks.check_positive_int(name, "channels", channels)
        self.temporal_kernel = _checks.check_odd_positive_int(
            name, "temporal_kernel", temporal_kernel
        )
        self.spatial_kernel = _checks.check_odd_positive_int(name, "spatial_kernel", spatial_kernel)
        self.spatial_stride = _checks.check_stride(name, "spatial_stride", spatial_stride)
        self.bn = VideoBatchNormalization(
            momentum=0.9, epsilon=1e-5, dtype=self.dtype_policy, name="bn"
        )

    def build(self, input_shape):
        _checks.check_video_shape(type(self).__name__, input_shape)
        in_channels = input_shape[-1]
        self.spatial_conv_kernel = self.add_weight(
            name="spatial_conv_kernel",
            shape=(self.spatial_kernel, self.spatial_kernel, in_channels, self.channels),
            initializer="he_normal",
        )
        self.temporal_conv_kernel = self.add_weight(
            name="temporal_conv_kernel",
            shape=(self.temporal_kernel, self.channels),
            initializer="he_normal",
        )
        self.bn.build(self.compute_output_shape(input_shape))

    def call(self, inputs, training=None, update_statistics=True):
        shape = ops.shape(inputs)
        batch, frames = shape[0], shape[1]
        frames_flat = ops.reshape(inputs, (-1, shape[2], shape[3], shape[4]))
        x = ops.conv(
            frames_flat,
            self.spatial_conv_kernel,
            strides=self.spatial_stride,
            padding="same",
            data_format="channels_last",
        )
        x_shape = ops.shape(x)
        x = ops.reshape(x, (batch, frames, x_shape[1], x_shape[2], self.channels))
        pad = self.temporal_kernel // 2
        padded = ops.pad(x, ((0, 0), (pad, pad), (0, 0), (0, 0), (0, 0)))
        # A channel-wise temporal conv is a weighted sum of shifted clips.
        output = None
        window = (batch, frames, x_shape[1], x_shape[2], self.channels)
        kernel = ops.convert_to_tensor(self.temporal_conv_kernel)
        taps = ops.unstack(kernel, self.temporal_kernel, axis=0)
        for tap, tap_kernel in enumerate(taps):
            shifted = x if tap == pad else frame_window(padded, tap, window)
            term = shifted * tap_kernel
            output = term if output is None else output + term
        x = self.bn(output, training=training, update_statistics=update_statistics)
        return ops.relu(x)

    def compute_output_shape(self, input_shape):
        return _checks.strided_video_shape(input_shape, self.spatial_stride, self.channels)

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
                "temporal_kernel": self.temporal_kernel,
                "spatial_kernel": self.spatial_kernel,
                "spatial_stride": self.spatial_stride,
            }
        )
        return config
