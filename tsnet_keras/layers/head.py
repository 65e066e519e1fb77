"""X3D-style heads: a per-stream feature head and the shared classifier."""

import keras
from keras import ops

from tsnet_keras.layers import _checks
from tsnet_keras.renames import LAYER_WIDTHS, renamed_argument, renamed_keys


@keras.saving.register_keras_serializable(package="tsnet_keras")
class StreamHead(keras.layers.Layer):
    """Per-stream head: 1x1x1 conv, BN, ReLU, global average pool (X3D conv_5).

    Data flow::

        (B, T, H, W, C) -> 1x1x1 conv C -> channels, no bias (kernel)
          -> BN (bn) -> ReLU -> mean over T, H, W -> (B, channels)

    Reference: Feichtenhofer, "X3D: Expanding Architectures for Efficient Video
    Recognition", CVPR 2020 (conv_5 and pooling of the head; 192 -> 432 in X3D-S).

    Args:
        channels: int, output features.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Weights:
        `kernel` `(C, channels)` and BN sublayer `bn`.

    Returns:
        Tensor of shape `(batch, channels)`.

    Example:

    >>> head = StreamHead(432)
    >>> print(head(keras.random.normal((2, 13, 5, 5, 192))).shape)
    (2, 432)
    """

    def __init__(self, channels=None, **kwargs):
        channels = renamed_argument(kwargs, "filters", "channels", channels, None,
                                    where=type(self).__name__)
        super().__init__(**kwargs)
        self.channels = _checks.check_positive_int(type(self).__name__, "channels", channels)
        self.bn = keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, dtype=self.dtype_policy, name="bn"
        )

    def build(self, input_shape):
        _checks.check_video_shape(type(self).__name__, input_shape)
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.channels), initializer="he_normal"
        )
        self.bn.build(tuple(input_shape[:-1]) + (self.channels,))

    def call(self, inputs, training=None):
        x = self.bn(ops.matmul(inputs, self.kernel), training=training)
        return ops.mean(ops.relu(x), axis=(1, 2, 3))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.channels)

    # Saved models from before `filters` was renamed `channels` still load.
    filters = property(lambda self: self.channels, doc="Old name of `channels`.")

    @classmethod
    def from_config(cls, config):
        return super().from_config(renamed_keys(config, LAYER_WIDTHS))

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels})
        return config


@keras.saving.register_keras_serializable(package="tsnet_keras")
class ClassificationHead(keras.layers.Layer):
    """Classifier on pooled features: FC, ReLU, dropout, FC to logits (X3D head).

    Data flow::

        (B, F) or [(B, F_1), (B, F_2), ...] -> concatenate -> (B, F)
          -> dense F -> hidden_units, no bias (hidden_kernel) -> ReLU -> Dropout
          -> dense hidden_units -> num_classes (logits_kernel, logits_bias)

    The first dense layer is X3D's 1x1x1 conv 432 -> 2048 after pooling (no bias,
    no BN). The logits kernel starts from N(0, 0.01^2) and a zero bias, as in X3D.

    Stream dropout (two-stream inputs, training only): each clip's first features, the
    sparse stream's, are zeroed with probability `stream_dropout` before the
    concatenation, so the other stream must classify that clip alone. Without it a
    sparse stream that learns the appearance first can starve the dense stream of
    gradient (modality competition: Wang, Tran and Feiszli, "What Makes Training
    Multi-modal Classification Networks Hard?", CVPR 2020).

    Reference: Feichtenhofer, "X3D: Expanding Architectures for Efficient Video
    Recognition", CVPR 2020.

    Args:
        num_classes: int, number of logits.
        hidden_units: int, width of the hidden layer. Defaults to 2048.
        dropout_rate: float in [0, 1), dropout before the logits. Defaults to 0.5.
        stream_dropout: float in [0, 1), the share of clips whose sparse-stream
            features are zeroed in training; needs two inputs when above 0.
            Defaults to 0.0.
        seed: int or None, seed of the stream-dropout draws. Defaults to None.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Weights:
        `hidden_kernel` `(F, hidden_units)`, `logits_kernel`
        `(hidden_units, num_classes)`, `logits_bias` `(num_classes,)`.

    Returns:
        Logits of shape `(batch, num_classes)`.

    Example:

    >>> head = ClassificationHead(400)
    >>> print(head([keras.random.normal((2, 432)), keras.random.normal((2, 64))]).shape)
    (2, 400)
    """

    def __init__(self, num_classes, hidden_units=2048, dropout_rate=0.5, stream_dropout=0.0,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        self.num_classes = _checks.check_positive_int(name, "num_classes", num_classes)
        self.hidden_units = _checks.check_positive_int(name, "hidden_units", hidden_units)
        self.dropout_rate = _checks.check_number(name, "dropout_rate", dropout_rate, 0, below=1)
        self.stream_dropout = _checks.check_number(name, "stream_dropout", stream_dropout, 0,
                                                   below=1)
        self.seed = seed
        self.dropout = keras.layers.Dropout(dropout_rate, dtype=self.dtype_policy, name="dropout")
        self.seed_generator = keras.random.SeedGenerator(seed) if stream_dropout else None

    @staticmethod
    def _shapes(input_shape):
        if input_shape and isinstance(input_shape[0], (list, tuple)):
            return [tuple(shape) for shape in input_shape]
        return [tuple(input_shape)]

    def build(self, input_shape):
        name = type(self).__name__
        shapes = self._shapes(input_shape)
        for shape in shapes:
            if len(shape) != 2 or shape[-1] is None:
                raise ValueError(
                    f"{name} expects pooled features of shape (batch, features) with "
                    f"a known feature size; got {shape}."
                )
        if self.stream_dropout and len(shapes) < 2:
            raise ValueError(f"{name}: stream_dropout={self.stream_dropout} needs the features "
                             f"of two streams; got one input {shapes[0]}.")
        features = sum(shape[-1] for shape in shapes)
        self.hidden_kernel = self.add_weight(
            name="hidden_kernel", shape=(features, self.hidden_units), initializer="he_normal"
        )
        self.logits_kernel = self.add_weight(
            name="logits_kernel",
            shape=(self.hidden_units, self.num_classes),
            initializer=keras.initializers.RandomNormal(stddev=0.01),
        )
        self.logits_bias = self.add_weight(
            name="logits_bias", shape=(self.num_classes,), initializer="zeros"
        )
        self.dropout.build((shapes[0][0], self.hidden_units))

    def call(self, inputs, training=None, dropout_draws=None):
        """`dropout_draws`: None (Keras' `Dropout`, seeded by the layer) or uniform draws
        in [0, 1) of shape `(B, hidden_units)` that pick the dropped units (a caller that
        seeds them per call, statelessly: the layer then writes no seed state)."""
        if isinstance(inputs, (list, tuple)):
            if training and self.stream_dropout:
                inputs = sparse_dropped(inputs, self._keep(inputs[0]))
            inputs = inputs[0] if len(inputs) == 1 else ops.concatenate(list(inputs), -1)
        x = ops.relu(ops.matmul(inputs, self.hidden_kernel))
        if training and dropout_draws is not None and self.dropout_rate:
            kept = ops.cast(dropout_draws >= self.dropout_rate, x.dtype)
            x = x * kept / ops.cast(1.0 - self.dropout_rate, x.dtype)
        else:
            x = self.dropout(x, training=training)
        return ops.matmul(x, self.logits_kernel) + self.logits_bias

    def _keep(self, sparse):
        """`(B, 1)` 1.0 for the clips that keep their sparse features, 0.0 for the dropped."""
        draws = keras.random.uniform((ops.shape(sparse)[0], 1), seed=self.seed_generator)
        return keep_mask(draws, self.stream_dropout)

    def compute_output_shape(self, input_shape):
        return (self._shapes(input_shape)[0][0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "hidden_units": self.hidden_units,
                "dropout_rate": self.dropout_rate,
                "stream_dropout": self.stream_dropout,
                "seed": self.seed,
            }
        )
        return config


def keep_mask(draws, rate):
    """Stream dropout's per-clip mask from uniform `draws` in [0, 1): 1.0 keeps the clip's
    sparse features (probability 1 - `rate`), 0.0 drops them."""
    return ops.cast(draws >= rate, "float32")


def sparse_dropped(pooled, keep) -> list:
    """The classifier's pooled features (sparse stream first) with the sparse ones times `keep`.

    Args:
        pooled: list of `(B, F_i)` tensors, the sparse stream's first.
        keep: `(B, 1)` 0/1 floats, one per clip.
    """
    if len(pooled) < 2:
        raise ValueError("stream dropout needs the pooled features of two streams.")
    return [pooled[0] * ops.cast(keep, pooled[0].dtype), *pooled[1:]]
