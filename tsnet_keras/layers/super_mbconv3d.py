"""Weight-sharing super MBConv3D: kernels, widths and expansion chosen per call."""

import keras
from keras import ops

from tsnet_keras.layers import _checks
from tsnet_keras.layers._super import (
    ChoiceWeightsMixin,
    active_slice,
    input_row_indices,
    input_rows,
)
from tsnet_keras.layers.depthwise import (
    depthwise_conv3d_taps,
    shared_tap_loop,
    subsample_space,
)
from tsnet_keras.layers.mbconv3d import squeeze_excite
from tsnet_keras.layers.pointwise import pointwise
from tsnet_keras.layers.sliced_batch_norm import (
    SlicedBatchNormalization,
    channel_mask,
    default_dynamic_shapes,
)
from tsnet_keras.renames import (
    LAYER_WIDTHS,
    SQUEEZE_EXCITE_NAMES,
    renamed_argument,
    renamed_attribute,
    renamed_keys,
)
from tsnet_keras.space import rules

# How the depthwise taps outside the smallest kernel choice start: "random" (he_normal like the
# rest of the kernel; the default) or "zeros" (every kernel choice computes what the smallest one
# does until its extra taps have learned). Measured side by side: BENCHMARKS.md section 8,
# "Outer taps at zero"; no difference in what the search finds, so the default stays.
OUTER_TAPS = ("random", "zeros")
DEFAULT_OUTER_TAPS = "random"

# The fixed block's residual kinds (`rules.SHORTCUTS`) but "none": a super block always adds one.
SHORTCUTS = tuple(kind for kind in rules.SHORTCUTS if kind != "none")


def nested_kernel_initializer(kernel_choices, outer_taps=DEFAULT_OUTER_TAPS, base="he_normal"):
    """Initializer of a `(max_t, max_k, max_k, C)` depthwise kernel shared by `kernel_choices`.

    With `outer_taps="zeros"` only the centre `min_t x min_k x min_k` taps are drawn from
    `base`: a larger temporal (or spatial) kernel then starts as the smallest one, so a
    search cannot rank kernels by how much untrained noise their extra taps add. The outer
    taps still get gradients and learn when sampled. (Measured: the known-answer search
    finds the same answer either way; BENCHMARKS.md section 8.)
    """
    base = keras.initializers.get(base)
    if outer_taps == "random":
        return base
    min_t = min(t for t, _ in kernel_choices)
    min_k = min(k for _, k in kernel_choices)

    def initializer(shape, dtype=None):
        t, k = shape[0], shape[1]
        t0, k0 = (t - min_t) // 2, (k - min_k) // 2
        inner = base((min_t, min_k, min_k, shape[3]), dtype=dtype)
        pads = ((t0, t - min_t - t0), (k0, k - min_k - k0), (k0, k - min_k - k0), (0, 0))
        return ops.pad(inner, pads)

    return initializer


def depthwise_conv3d_any_width(inputs, kernel, temporal_kernel, spatial_stride):
    """`depthwise_conv3d` for inputs whose channel count is only known at run time.

    Same arithmetic (sum over temporal taps of per-frame depthwise 2D convs, in
    tap order, zero padding `t // 2` frames) but the channel count is read from
    the tensor, so a width sliced with a tensor-valued size traces once.
    """
    return depthwise_conv3d_taps(inputs, kernel, spatial_stride, temporal_kernel=temporal_kernel)


def _checked_kernel_choices(layer, kernel_choices) -> tuple:
    """`kernel_choices` as a tuple of `(temporal, spatial)` int pairs, both odd and positive."""
    choices = tuple(tuple(int(v) for v in pair) for pair in kernel_choices or ())
    if not choices:
        raise ValueError(f"{layer}: `kernel_choices` needs at least one (t, k) pair.")
    for t, k in choices:
        _checks.check_odd_positive_int(layer, "temporal kernel", t)
        _checks.check_odd_positive_int(layer, "spatial kernel", k)
    return choices


@keras.saving.register_keras_serializable(package="tsnet_keras")
class SuperMBConv3D(ChoiceWeightsMixin, keras.layers.Layer):
    """MBConv3D super-block: one set of widest weights shared by every choice.

    Each call runs ONE choice, given as tensors (so a TensorFlow step traces once
    for the whole search): output channels `channels`, expanded width
    `inner_channels`, squeeze-excite width `squeeze_excite_channels` and the depthwise
    kernel
    `kernel_choices[kernel_index]` = (t, k). Smaller choices use slices of the
    widest weights: the first channels of every kernel and the centre
    t x k x k crop of the `max_t x max_k x max_k` depthwise kernel.

    Data flow (as `MBConv3D`; widths are the active ones)::

        x (B, T, H, W, in_base + in_extra)
          -> expand (rows of expand_kernel, first inner columns) -> BN -> ReLU
          -> depthwise centre crop t x k x k (loop over t taps), stride s -> BN
          -> [SE: FC inner -> squeeze_excite_channels -> ReLU -> FC -> sigmoid -> scale]
          -> swish -> project (first inner rows, first channels columns) -> BN
          -> + shortcut (identity iff stride 1 and C_in == channels, else 1x1x1 + BN)

    Input rows: the input may be a sparse stream followed by fused dense
    channels (TS-Fusion with concat). Row `r < in_base` of `expand_kernel` and
    `shortcut_kernel` reads the stream's channel `r`; row `max_in_base + j` reads
    fused channel `j`. So a row always reads the same kind of feature, whatever
    the widths of the previous group and of the fusion.

    Computed work: with `dynamic_shapes` (TensorFlow, no XLA) tensors carry the
    active widths only, the spatial crop has a tensor-valued size and a loop
    runs the chosen temporal kernel's t taps (`shared_tap_loop`: one
    traced tap for every t, one traced loop for all blocks), so a step costs
    what the sampled block costs.
    Without it (JAX, torch) the block computes at the widest width, masks
    inactive channels to zero and `keras.ops.switch` picks the kernel (same
    results, widest cost). Batch-norm statistics are updated outside all
    branches, on the active slice only.

    Args:
        max_channels: int. Widest output width.
        max_inner_channels: int. Widest expanded width.
        kernel_choices: tuple of (temporal_kernel, spatial_kernel) pairs, odd ints.
        max_in_base: int. Widest width of the input stream.
        max_in_extra: int. Widest fused width appended to the input. Defaults to 0.
        spatial_stride: int, 1 or 2. Defaults to 1.
        max_squeeze_excite_channels: int. Widest squeeze-excite width; 0: no SE.
            Defaults to 0. (Old name `max_se_hidden`, with a DeprecationWarning.)
        shortcut: "auto" (identity iff stride 1 and C_in == channels, decided per
            call), "projection" or "identity" (known for every choice). Defaults
            to "auto".
        activation: activation before the projection. Defaults to "swish".
        dynamic_shapes: bool or None. None: True on TensorFlow.
        outer_taps: "random" (default: the depthwise taps outside the smallest
            kernel choice are drawn like the centre ones) or "zeros" (they start
            at zero, so every kernel choice starts as the smallest).
        **kwargs: base `keras.layers.Layer` arguments.

    Weights:
        As `MBConv3D` at the widest widths: `expand_kernel`
        `(max_in_base + max_in_extra, max_inner)`, `depthwise_kernel`
        `(max_t, max_k, max_k, max_inner)`, `se_*`, `project_kernel`,
        `shortcut_kernel` and the BN sublayers `expand_bn`, `depthwise_bn`,
        `project_bn` (zero gamma), `shortcut_bn`.

    Call arguments:
        inputs: `(B, T, H, W, C_in)` (C_in active channels, or the widest width
            without dynamic shapes).
        in_base, in_extra, channels, inner_channels, squeeze_excite_channels,
            kernel_index: int scalars (tensors or Python ints); None takes the
            widest choice. (`se_hidden`, the old name of `squeeze_excite_channels`,
            still works with a DeprecationWarning.)
        training: bool. update_statistics: bool, update BN moving statistics
            when training (False: batch statistics only, e.g. for scoring).

    Returns:
        `(B, T, ceil(H / s), ceil(W / s), channels)` (widest width, masked, without
        dynamic shapes).

    Example:

    >>> block = SuperMBConv3D(16, 32, ((1, 3), (3, 3), (3, 5)), max_in_base=8)
    >>> y = block(x, channels=8, inner_channels=16, kernel_index=1)
    """

    def __init__(
        self,
        max_channels=None,
        max_inner_channels=None,
        kernel_choices=None,
        max_in_base=None,
        max_in_extra=0,
        spatial_stride=1,
        max_squeeze_excite_channels=0,
        shortcut="auto",
        activation="swish",
        dynamic_shapes=None,
        outer_taps=DEFAULT_OUTER_TAPS,
        **kwargs,
    ):
        max_channels = renamed_argument(kwargs, "max_filters", "max_channels", max_channels, None,
                                        where=type(self).__name__)
        max_squeeze_excite_channels = renamed_argument(
            kwargs, "max_se_hidden", "max_squeeze_excite_channels", max_squeeze_excite_channels, 0,
            where=type(self).__name__)
        super().__init__(**kwargs)
        name = type(self).__name__
        self.max_channels = _checks.check_positive_int(name, "max_channels", max_channels)
        self.max_inner_channels = _checks.check_positive_int(
            name, "max_inner_channels", max_inner_channels
        )
        self.kernel_choices = choices = _checked_kernel_choices(name, kernel_choices)
        self.max_in_base = _checks.check_positive_int(name, "max_in_base", max_in_base)
        self.max_in_extra = _checks.check_int(name, "max_in_extra", max_in_extra, 0, plain=True)
        self.spatial_stride = _checks.check_stride(name, "spatial_stride", spatial_stride)
        self.max_squeeze_excite_channels = int(max_squeeze_excite_channels)
        self.shortcut = _checks.check_choice(name, "shortcut", shortcut, SHORTCUTS)
        if self.shortcut == "identity" and self.spatial_stride != 1:
            raise ValueError(f"{name}: an identity shortcut needs spatial_stride 1.")
        self.outer_taps = _checks.check_choice(name, "outer_taps", outer_taps, OUTER_TAPS)
        self.activation = activation
        self._activation_fn = keras.activations.get(activation)
        self.dynamic_shapes = default_dynamic_shapes() if dynamic_shapes is None else dynamic_shapes
        self.max_temporal_kernel = max(t for t, _ in choices)
        self.max_spatial_kernel = max(k for _, k in choices)
        self.max_in_channels = self.max_in_base + self.max_in_extra
        self._create_batch_norms()

    def _create_batch_norms(self):
        """The BN sublayers at the widest widths (`project_bn` starts at zero gamma)."""

        def bn(bn_name, width, gamma="ones"):
            return SlicedBatchNormalization(
                width, gamma_initializer=gamma, dynamic_shapes=self.dynamic_shapes,
                dtype=self.dtype_policy, name=bn_name,
            )

        self.expand_bn = bn("expand_bn", self.max_inner_channels)
        self.depthwise_bn = bn("depthwise_bn", self.max_inner_channels)
        self.project_bn = bn("project_bn", self.max_channels, gamma="zeros")
        self.shortcut_bn = (
            bn("shortcut_bn", self.max_channels) if self.shortcut != "identity" else None
        )

    def build(self, input_shape=None):
        inner, hidden = self.max_inner_channels, self.max_squeeze_excite_channels
        t, k = self.max_temporal_kernel, self.max_spatial_kernel
        self.expand_kernel = self.add_weight(
            name="expand_kernel", shape=(self.max_in_channels, inner), initializer="he_normal"
        )
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel", shape=(t, k, k, inner),
            initializer=nested_kernel_initializer(self.kernel_choices, self.outer_taps),
        )
        if hidden:
            _checks.add_squeeze_excite_weights(self, inner, hidden)
        self.project_kernel = self.add_weight(
            name="project_kernel", shape=(inner, self.max_channels), initializer="he_normal"
        )
        if self.shortcut != "identity":
            self.shortcut_kernel = self.add_weight(
                name="shortcut_kernel",
                shape=(self.max_in_channels, self.max_channels),
                initializer="he_normal",
            )
        for layer in (self.expand_bn, self.depthwise_bn, self.project_bn, self.shortcut_bn):
            if layer is not None:
                layer.build()
        self.built = True

    # ------------------------------------------------------------- slicing
    def _input_rows(self, kernel, in_base, in_extra, columns):
        """The active box of an input kernel: the rows the active input channels read, the
        first `columns` columns."""
        if not self.dynamic_shapes:
            return ops.convert_to_tensor(kernel)
        return input_rows(kernel, in_base, in_extra, self.max_in_base, self.max_in_extra,
                          columns=columns)

    def _columns(self, kernel, width):
        if not self.dynamic_shapes:
            return ops.convert_to_tensor(kernel)
        return active_slice(kernel, (*kernel.shape[:-1], width))

    def _mask(self, x, width, max_width):
        if self.dynamic_shapes:
            return x
        return x * channel_mask(width, max_width, x.dtype)

    def _compact_input(self, inputs, in_base, in_extra):
        """The input laid out as [stream channels, fused channels] in max_channels columns."""
        if self.dynamic_shapes:
            return inputs
        positions = ops.arange(self.max_channels)
        source = ops.where(
            positions < in_base, positions, self.max_in_base + positions - in_base
        )
        source = ops.clip(source, 0, self.max_in_channels - 1)
        gathered = ops.take(inputs, source, axis=-1)
        return gathered * channel_mask(in_base + in_extra, self.max_channels, inputs.dtype)

    # ---------------------------------------------------------------- call
    def call(
        self,
        inputs,
        in_base=None,
        in_extra=None,
        channels=None,
        inner_channels=None,
        squeeze_excite_channels=None,
        kernel_index=None,
        training=None,
        update_statistics=True,
        **kwargs,
    ):
        squeeze_excite_channels = renamed_argument(
            kwargs, "se_hidden", "squeeze_excite_channels", squeeze_excite_channels, None,
            where=f"{type(self).__name__}.call")
        if kwargs:
            raise TypeError(f"{type(self).__name__}.call: unexpected arguments {sorted(kwargs)}.")
        in_base = self.max_in_base if in_base is None else in_base
        in_extra = (self.max_in_extra if in_extra is None else in_extra) if self.max_in_extra else 0
        channels = self.max_channels if channels is None else channels
        inner = self.max_inner_channels if inner_channels is None else inner_channels
        hidden = (self.max_squeeze_excite_channels if squeeze_excite_channels is None
                  else squeeze_excite_channels)
        kernel_index = len(self.kernel_choices) - 1 if kernel_index is None else kernel_index
        update = bool(training) and update_statistics

        def batch_norm(layer, x, width):
            x, mean, variance = layer.normalize(x, width, training, update_statistics)
            if update:
                layer.update(width, mean, variance)
            return x

        expand = self._input_rows(self.expand_kernel, in_base, in_extra, inner)
        x = pointwise(inputs, expand)
        x = ops.relu(batch_norm(self.expand_bn, x, inner))
        x = self._mask(x, inner, self.max_inner_channels)

        if isinstance(kernel_index, int):  # known when the kernels are fixed
            x = self._depthwise(x, *self.kernel_choices[kernel_index], inner)
        elif self.dynamic_shapes:
            x = self._depthwise_sliced(x, kernel_index, inner)
        else:
            x = self._depthwise_masked(x, kernel_index)
        x = batch_norm(self.depthwise_bn, x, inner)
        if self.max_squeeze_excite_channels:
            x = self._squeeze_excite(x, inner, hidden)
        x = self._mask(self._activation_fn(x), inner, self.max_inner_channels)
        project = (active_slice(self.project_kernel, (inner, channels)) if self.dynamic_shapes
                   else ops.convert_to_tensor(self.project_kernel))
        x = batch_norm(self.project_bn, pointwise(x, project), channels)
        return x + self._shortcut(inputs, in_base, in_extra, channels, training, update)

    def _squeeze_excite(self, x, inner, hidden):
        """`x` scaled by the squeeze-excite gate of the first `inner` / `hidden` channels."""
        reduce_kernel, expand_kernel = self.se_reduce_kernel, self.se_expand_kernel
        if self.dynamic_shapes:
            reduce_kernel = active_slice(reduce_kernel, (inner, hidden))
            expand_kernel = active_slice(expand_kernel, (hidden, inner))
        reduce_kernel, expand_kernel = map(ops.convert_to_tensor, (reduce_kernel, expand_kernel))
        return squeeze_excite(
            x, reduce_kernel, self._columns(self.se_reduce_bias, hidden),
            expand_kernel, self._columns(self.se_expand_bias, inner),
            mask=lambda squeezed: self._mask(squeezed, hidden, self.max_squeeze_excite_channels),
        )

    def _depthwise(self, x, t, k, inner):
        t_offset = (self.max_temporal_kernel - t) // 2
        k_offset = (self.max_spatial_kernel - k) // 2
        crop = ops.convert_to_tensor(self.depthwise_kernel)[
            t_offset : t_offset + t, k_offset : k_offset + k, k_offset : k_offset + k
        ]
        return depthwise_conv3d_any_width(x, self._columns(crop, inner), t, self.spatial_stride)

    def _depthwise_sliced(self, x, kernel_index, inner):
        """The chosen kernel's taps in a loop of t steps; the spatial crop has a tensor size."""
        spatial = sorted({k for _, k in self.kernel_choices})
        if len(spatial) == 1:
            k = spatial[0]
        else:
            k = ops.take(ops.convert_to_tensor([k for _, k in self.kernel_choices], "int32"),
                         kernel_index)
        k_offset = (self.max_spatial_kernel - k) // 2
        kernel = active_slice(self.depthwise_kernel, (self.max_temporal_kernel, k, k, inner),
                              (0, k_offset, k_offset))
        temporal = sorted({t for t, _ in self.kernel_choices})
        if len(temporal) == 1:
            t_offset = (self.max_temporal_kernel - temporal[0]) // 2
            return depthwise_conv3d_any_width(x, kernel[t_offset : t_offset + temporal[0]],
                                              temporal[0], self.spatial_stride)
        t = ops.take(ops.convert_to_tensor([t for t, _ in self.kernel_choices], "int32"),
                     kernel_index)
        return shared_tap_loop(x, kernel, (self.max_temporal_kernel - t) // 2, t,
                               self.spatial_stride)

    def _depthwise_masked(self, x, kernel_index):
        """Switch over every (t, k) choice at the widest width (static shapes)."""

        def branch(t, k):
            return lambda: self._depthwise(x, t, k, None)

        branches = [branch(t, k) for t, k in self.kernel_choices]
        if len(branches) == 1:
            return branches[0]()
        return ops.switch(kernel_index, branches)

    def _shortcut(self, inputs, in_base, in_extra, channels, training, update):
        if self.shortcut == "identity":
            return self._compact_input(inputs, in_base, in_extra)
        bn = self.shortcut_bn
        # Read outside `cond`, so that the search's box gradients reach it
        # (tsnet_keras.search.box_gradients); unused when the identity is taken.
        kernel = self._input_rows(self.shortcut_kernel, in_base, in_extra, channels)

        def projection():
            x = subsample_space(inputs, self.spatial_stride)  # cheap gradient on TF
            return bn.normalize(pointwise(x, kernel), channels, training, update)

        if self.shortcut == "projection":
            y, mean, variance = projection()
            if update:
                bn.update(channels, mean, variance)
            return y

        def identity():
            zeros = ops.zeros((self.max_channels,))
            return self._compact_input(inputs, in_base, in_extra), zeros, zeros

        use_projection = ops.not_equal(in_base + in_extra, channels)
        y, mean, variance = ops.cond(use_projection, projection, identity)
        if update:
            bn.update(channels, mean, variance, active=use_projection)
        return y

    def compute_output_shape(self, input_shape):
        return _checks.strided_video_shape(input_shape, self.spatial_stride, None if self.dynamic_shapes else self.max_channels)

    # --------------------------------------------------- fixed-block weights
    # choice_weights / assign_choice_weights come from ChoiceWeightsMixin.
    def _choice_slices(self, choice):
        """`{path: ((variable, index), value)}` of one choice, in `MBConv3D`'s layout.

        `choice` holds ints `in_base`, `in_extra`, `channels`, `inner_channels`,
        `squeeze_excite_channels` (old key `se_hidden` read too), `temporal_kernel`,
        `spatial_kernel` and bool `projection`
        (`Supernet.choices_of(arch)` gives them per layer).
        """
        import numpy as np

        choice = renamed_keys(choice, SQUEEZE_EXCITE_NAMES)
        rows = input_row_indices(self, choice)
        channels, inner = int(choice["channels"]), int(choice["inner_channels"])
        hidden = int(choice.get("squeeze_excite_channels", 0))
        t, k = int(choice["temporal_kernel"]), int(choice["spatial_kernel"])
        if (t, k) not in self.kernel_choices:
            raise ValueError(f"{self.name}: kernel {(t, k)} is not one of {self.kernel_choices}.")
        if (channels > self.max_channels or inner > self.max_inner_channels
                or hidden > self.max_squeeze_excite_channels):
            raise ValueError(f"{self.name}: choice {choice} exceeds the block's widest weights.")
        t0 = (self.max_temporal_kernel - t) // 2
        k0 = (self.max_spatial_kernel - k) // 2
        result = {}

        def add(path, variable, index):
            value = ops.convert_to_numpy(variable)[index]
            result[path] = ((variable, index), value)

        add("expand_kernel", self.expand_kernel, np.ix_(rows, np.arange(inner)))
        add("depthwise_kernel", self.depthwise_kernel,
            (slice(t0, t0 + t), slice(k0, k0 + k), slice(k0, k0 + k), slice(0, inner)))
        if hidden:
            add("se_reduce_kernel", self.se_reduce_kernel, (slice(0, inner), slice(0, hidden)))
            add("se_reduce_bias", self.se_reduce_bias, slice(0, hidden))
            add("se_expand_kernel", self.se_expand_kernel, (slice(0, hidden), slice(0, inner)))
            add("se_expand_bias", self.se_expand_bias, slice(0, inner))
        add("project_kernel", self.project_kernel, (slice(0, inner), slice(0, channels)))
        bns = [("expand_bn", self.expand_bn, inner), ("depthwise_bn", self.depthwise_bn, inner),
               ("project_bn", self.project_bn, channels)]
        if choice["projection"]:
            if self.shortcut == "identity":
                raise ValueError(f"{self.name}: this block has no projection shortcut.")
            add("shortcut_kernel", self.shortcut_kernel, np.ix_(rows, np.arange(channels)))
            bns.append(("shortcut_bn", self.shortcut_bn, channels))
        for prefix, layer, width in bns:
            for weight in ("gamma", "beta", "moving_mean", "moving_variance"):
                add(f"{prefix}/{weight}", getattr(layer, weight), slice(0, width))
        return result

    # Saved models from before `max_filters` was renamed `max_channels` still load.
    max_filters = property(lambda self: self.max_channels, doc="Old name of `max_channels`.")
    max_se_hidden = renamed_attribute("max_se_hidden", "max_squeeze_excite_channels")

    @classmethod
    def from_config(cls, config):
        config = renamed_keys(renamed_keys(config, LAYER_WIDTHS), SQUEEZE_EXCITE_NAMES)
        return super().from_config(config)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_channels": self.max_channels,
                "max_inner_channels": self.max_inner_channels,
                "kernel_choices": [list(pair) for pair in self.kernel_choices],
                "max_in_base": self.max_in_base,
                "max_in_extra": self.max_in_extra,
                "spatial_stride": self.spatial_stride,
                "max_squeeze_excite_channels": self.max_squeeze_excite_channels,
                "shortcut": self.shortcut,
                "activation": self.activation if isinstance(self.activation, str)
                else keras.activations.serialize(self._activation_fn),
                "dynamic_shapes": self.dynamic_shapes,
                "outer_taps": self.outer_taps,
            }
        )
        return config
