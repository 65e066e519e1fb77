"""X3D / MobileNet-style inverted-bottleneck block for video."""

import numbers

import keras
from keras import ops

from tsnet_keras.layers import _checks
from tsnet_keras.layers.batch_norm import VideoBatchNormalization
from tsnet_keras.layers.depthwise import depthwise_conv3d, subsample_space
from tsnet_keras.layers.pointwise import pointwise
from tsnet_keras.renames import (
    LAYER_WIDTHS,
    SQUEEZE_EXCITE_NAMES,
    renamed_argument,
    renamed_attribute,
    renamed_keys,
)
from tsnet_keras.space.architecture import RESIDUAL_ACTIVATIONS
from tsnet_keras.space.rules import SHORTCUTS, inner_width, squeeze_excite_width, uses_projection


def _batch_norm(layer, name, gamma_initializer="ones"):
    return VideoBatchNormalization(
        momentum=0.9,  # PyTorch's momentum 0.1
        epsilon=1e-5,
        gamma_initializer=gamma_initializer,
        dtype=layer.dtype_policy,
        name=name,
    )


def squeeze_excite(x, reduce_kernel, reduce_bias, expand_kernel, expand_bias, mask=None):
    """`x` scaled by its squeeze-excite gate (the math of `MBConv3D` and `SuperMBConv3D`).

    Mean over frames, height and width -> FC `reduce_kernel` + bias -> ReLU ->
    [`mask`, the super block's zeroing of inactive hidden channels] -> FC
    `expand_kernel` + bias -> sigmoid -> scale `x`.
    """
    squeezed = ops.mean(x, axis=(1, 2, 3), keepdims=True)
    squeezed = ops.relu(pointwise(squeezed, reduce_kernel) + reduce_bias)
    if mask is not None:
        squeezed = mask(squeezed)
    squeezed = pointwise(squeezed, expand_kernel) + expand_bias
    return x * ops.sigmoid(squeezed)


def _check_ratio(name, squeeze_excite):
    """The squeeze-excite ratio, a number in [0, 1] (bools refused)."""
    if (
        isinstance(squeeze_excite, bool)
        or not isinstance(squeeze_excite, numbers.Real)
        or not 0.0 <= squeeze_excite <= 1.0
    ):
        raise ValueError(
            f"{name}: `squeeze_excite` must be a number in [0, 1] "
            f"(0 disables squeeze-excite); got {squeeze_excite!r}."
        )
    return squeeze_excite


@keras.saving.register_keras_serializable(package="tsnet_keras")
class MBConv3D(keras.layers.Layer):
    """Inverted-bottleneck 3D block of X3D: expand, depthwise, SE, project, add.

    Data flow::

        x (B, T, H, W, C_in)
          -> 1x1x1 expand C_in -> inner   (expand_kernel)  -> expand_bn -> ReLU
          -> depthwise t x k x k, spatial stride s (depthwise_kernel) -> depthwise_bn
          -> [squeeze-excite: mean over T, H, W -> FC inner -> hidden (+bias)
              -> ReLU -> FC hidden -> inner (+bias) -> sigmoid -> scale]
          -> activation (swish)
          -> 1x1x1 project inner -> channels (project_kernel) -> project_bn
             (gamma initialised to zero, so a new block starts as its shortcut)
          -> + shortcut(x) -> [residual_activation]
        (B, T, ceil(H / s), ceil(W / s), channels)

    `inner = MBConv3D.inner_channels(channels, expansion)`: the expansion is
    relative to the OUTPUT width, as in X3D (24 * 2.25 = 54). The SE hidden width
    is `MBConv3D.squeeze_excite_channels(inner, squeeze_excite)` (X3D's
    round-to-8: 8 / 8 / 16 / 32 for inner 54 / 108 / 216 / 432 at ratio 1/16); a
    block's own is its attribute `squeeze_excite_channels` (the instance attribute
    hides the static method of the same name and value).

    Shortcut: with `shortcut="auto"` the identity when `spatial_stride == 1` and
    `C_in == channels`, otherwise a projection: spatial subsampling
    `x[:, :, ::s, ::s]`, 1x1x1 conv C_in -> channels (`shortcut_kernel`) and
    `shortcut_bn`. `"projection"` always projects; `"identity"` always adds the
    input (it needs `spatial_stride == 1` and `C_in == channels`); `"none"` adds
    no residual. The names are `rules.SHORTCUTS`, shared with `SuperMBConv3D`.
    No convolution has a bias. `residual_activation="relu"` adds the ReLU after
    the residual add of X3D as published (PySlowFast, PyTorchVideo); the default
    `"none"` adds no activation there.

    Reference: Feichtenhofer, "X3D: Expanding Architectures for Efficient Video
    Recognition", CVPR 2020; Sandler et al., "MobileNetV2", CVPR 2018; Hu et al.,
    "Squeeze-and-Excitation Networks", CVPR 2018.

    Args:
        channels: int, output channels.
        expansion: float > 0, inner width as a multiple of `channels`.
        temporal_kernel: odd int, temporal size of the depthwise conv. Default 3.
        spatial_kernel: odd int, spatial size of the depthwise conv. Default 3.
        spatial_stride: int, 1 or 2, spatial stride of the depthwise conv and the
            shortcut. Default 1.
        squeeze_excite: float in [0, 1], the SE ratio: SE width relative to
            `inner`; 0 disables SE (X3D uses 1/16 on every other block). Default 0.
            (Its old name `squeeze_excite_ratio` still works, with a
            DeprecationWarning.)
        activation: activation before the projection, a name or a callable.
            Default `"swish"`.
        shortcut: `"auto"`, `"projection"`, `"identity"` or `"none"`. Default
            `"auto"`.
        residual_activation: `"none"` or `"relu"`, applied after the residual
            add. Default `"none"`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Weights:
        `expand_kernel` `(C_in, inner)`, `depthwise_kernel`
        `(temporal_kernel, spatial_kernel, spatial_kernel, inner)`,
        `project_kernel` `(inner, channels)`; with SE `se_reduce_kernel`
        `(inner, hidden)`, `se_reduce_bias` `(hidden,)`, `se_expand_kernel`
        `(hidden, inner)`, `se_expand_bias` `(inner,)`; with a projection
        shortcut `shortcut_kernel` `(C_in, channels)`. BN sublayers `expand_bn`,
        `depthwise_bn`, `project_bn` and, with a projection, `shortcut_bn`.

    Returns:
        Tensor of shape `(batch, frames, ceil(height / spatial_stride),
        ceil(width / spatial_stride), channels)`.

    Example:

    >>> block = MBConv3D(48, expansion=2.25, spatial_stride=2,
    ...                  squeeze_excite=1 / 16)
    >>> print(block(keras.random.normal((2, 13, 40, 40, 24))).shape)
    (2, 13, 20, 20, 48)
    """

    def __init__(
        self,
        channels=None,
        expansion=None,
        temporal_kernel=3,
        spatial_kernel=3,
        spatial_stride=1,
        squeeze_excite=0.0,
        activation="swish",
        shortcut="auto",
        residual_activation="none",
        **kwargs,
    ):
        channels = renamed_argument(kwargs, "filters", "channels", channels, None,
                                    where=type(self).__name__)
        squeeze_excite = renamed_argument(kwargs, "squeeze_excite_ratio", "squeeze_excite",
                                          squeeze_excite, 0.0, where=type(self).__name__)
        super().__init__(**kwargs)
        name = type(self).__name__
        self.channels = _checks.check_positive_int(name, "channels", channels)
        self.expansion = _checks.check_number(name, "expansion", expansion, 0, strict=True)
        self.temporal_kernel = _checks.check_odd_positive_int(
            name, "temporal_kernel", temporal_kernel
        )
        self.spatial_kernel = _checks.check_odd_positive_int(name, "spatial_kernel", spatial_kernel)
        self.spatial_stride = _checks.check_stride(name, "spatial_stride", spatial_stride)
        self.squeeze_excite = _check_ratio(name, squeeze_excite)
        try:
            self._activation_fn = keras.activations.get(activation)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"{name}: `activation` must be a Keras activation name or a "
                f"callable; got {activation!r}."
            ) from error
        self.activation = activation
        self.shortcut = _checks.check_choice(name, "shortcut", shortcut, SHORTCUTS)
        if self.shortcut == "identity" and self.spatial_stride != 1:
            raise ValueError(f"{name}: `shortcut`='identity' needs `spatial_stride` 1; got "
                             f"{self.spatial_stride}.")
        self.residual_activation = _checks.check_choice(
            name, "residual_activation", residual_activation, RESIDUAL_ACTIVATIONS
        )

        self.inner = self.inner_channels(self.channels, self.expansion)
        self.squeeze_excite_channels = self.squeeze_excite_channels(
            self.inner, self.squeeze_excite
        )
        self.expand_bn = _batch_norm(self, "expand_bn")
        self.depthwise_bn = _batch_norm(self, "depthwise_bn")
        self.project_bn = _batch_norm(self, "project_bn", gamma_initializer="zeros")
        self.shortcut_bn = None  # created in build when the shortcut projects
        self.use_projection = None

    @staticmethod
    def inner_channels(channels, expansion):
        """Expanded width: `int(round(channels * expansion))` (`rules.inner_width`)."""
        return inner_width(channels, expansion)

    @staticmethod
    def squeeze_excite_channels(inner, ratio):
        """SE hidden width (X3D's `round_width(inner, ratio)`); 0 when ratio is 0.

        On an instance, `squeeze_excite_channels` is the block's own width (an int).
        """
        return squeeze_excite_width(inner, ratio)

    @staticmethod
    def uses_projection(shortcut, in_channels, channels, spatial_stride):
        """Whether the block's shortcut is a 1x1x1 projection (+BN) (`rules.uses_projection`)."""
        return uses_projection(shortcut, in_channels, channels, spatial_stride)

    def build(self, input_shape):
        _checks.check_video_shape(type(self).__name__, input_shape)
        in_channels = input_shape[-1]
        if self.shortcut == "identity" and in_channels != self.channels:
            raise ValueError(
                f"{type(self).__name__}: `shortcut`='identity' needs as many input channels "
                f"as `channels` ({self.channels}); got {in_channels}. Use shortcut='auto'."
            )
        inner, hidden = self.inner, self.squeeze_excite_channels
        self.expand_kernel = self.add_weight(
            name="expand_kernel", shape=(in_channels, inner), initializer="he_normal"
        )
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel",
            shape=(self.temporal_kernel, self.spatial_kernel, self.spatial_kernel, inner),
            initializer="he_normal",
        )
        if hidden:
            _checks.add_squeeze_excite_weights(self, inner, hidden)
        self.project_kernel = self.add_weight(
            name="project_kernel", shape=(inner, self.channels), initializer="he_normal"
        )
        inner_shape = tuple(input_shape[:-1]) + (inner,)
        output_shape = self.compute_output_shape(input_shape)
        self.expand_bn.build(inner_shape)
        self.depthwise_bn.build(output_shape[:-1] + (inner,))
        self.project_bn.build(output_shape)
        self.use_projection = self.uses_projection(
            self.shortcut, in_channels, self.channels, self.spatial_stride
        )
        if self.use_projection:
            self.shortcut_kernel = self.add_weight(
                name="shortcut_kernel",
                shape=(in_channels, self.channels),
                initializer="he_normal",
            )
            self.shortcut_bn = _batch_norm(self, "shortcut_bn")
            self.shortcut_bn.build(output_shape)

    def call(self, inputs, training=None):
        x = self._residual(inputs, training)
        return ops.relu(x) if self.residual_activation == "relu" else x

    def _residual(self, inputs, training):
        x = pointwise(inputs, self.expand_kernel)
        x = ops.relu(self.expand_bn(x, training=training))
        x = depthwise_conv3d(x, self.depthwise_kernel, self.spatial_stride)
        x = self.depthwise_bn(x, training=training)
        if self.squeeze_excite_channels:
            x = squeeze_excite(x, self.se_reduce_kernel, self.se_reduce_bias,
                               self.se_expand_kernel, self.se_expand_bias)
        x = self._activation_fn(x)
        x = pointwise(x, self.project_kernel)
        x = self.project_bn(x, training=training)
        if self.shortcut == "none":
            return x
        if not self.use_projection:
            return x + inputs
        shortcut = subsample_space(inputs, self.spatial_stride)
        shortcut = pointwise(shortcut, self.shortcut_kernel)
        return x + self.shortcut_bn(shortcut, training=training)

    def compute_output_shape(self, input_shape):
        return _checks.strided_video_shape(input_shape, self.spatial_stride, self.channels)

    # Saved models from before `filters` was renamed `channels` still load.
    filters = property(lambda self: self.channels, doc="Old name of `channels`.")
    squeeze_excite_ratio = renamed_attribute("squeeze_excite_ratio", "squeeze_excite")
    squeeze_excite_hidden = renamed_attribute("squeeze_excite_hidden", "squeeze_excite_channels")

    @classmethod
    def from_config(cls, config):
        config = renamed_keys(renamed_keys(config, LAYER_WIDTHS), SQUEEZE_EXCITE_NAMES)
        return super().from_config(config)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "expansion": self.expansion,
                "temporal_kernel": self.temporal_kernel,
                "spatial_kernel": self.spatial_kernel,
                "spatial_stride": self.spatial_stride,
                "squeeze_excite": self.squeeze_excite,
                "activation": (
                    self.activation
                    if self.activation is None or isinstance(self.activation, str)
                    else keras.activations.serialize(self._activation_fn)
                ),
                "shortcut": self.shortcut,
                "residual_activation": self.residual_activation,
            }
        )
        return config
