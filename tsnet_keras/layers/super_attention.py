"""Super attention block: a GloRe unit that is on or off, at the sampled width."""

import keras
from keras import ops

from tsnet_keras.layers import _checks
from tsnet_keras.layers._super import ChoiceWeightsMixin
from tsnet_keras.layers.glore import GLORE_KERNELS, global_reasoning
from tsnet_keras.layers.sliced_batch_norm import (
    SlicedBatchNormalization,
    channel_mask,
    default_dynamic_shapes,
)
from tsnet_keras.space.rules import glore_widths


@keras.saving.register_keras_serializable(package="tsnet_keras")
class SuperAttention(ChoiceWeightsMixin, keras.layers.Layer):
    """GloRe3D on/off at a searched width, sharing one set of widest weights.

    `attention` (a boolean tensor) chooses between the identity and a GloRe unit
    (`GloRe3D` math) over the first `channels` input channels with
    `channels // 2` states and `channels // 4` nodes, read from the first
    rows/columns of the widest kernels. With `keras.ops.cond` only the taken
    branch runs (TensorFlow without XLA); the BN statistics are returned from
    the branch and updated outside it, on the active slice only.

    Reference: Chen et al., "Graph-Based Global Reasoning Networks", CVPR 2019;
    Auto-TSNet (ICCV 2021) searches where to place them (paper section 3.3).

    Args:
        max_channels: int. Widest input width (>= 4).
        normalize: bool. Divide the graph projection by the number of positions
            (as `GloRe3D`). Defaults to True.
        dynamic_shapes: bool or None. None: True on TensorFlow.
        **kwargs: base `keras.layers.Layer` arguments.

    Weights:
        As `GloRe3D` with C = max_channels, S = C // 2, N = C // 4, and the BN
        sublayer `bn` (zero gamma).

    Call arguments:
        inputs: `(B, T, H, W, channels)` (widest width without dynamic shapes).
        channels: int scalar; None: `max_channels`.
        attention: bool scalar; None: True.
        training, update_statistics: as `SuperMBConv3D`.

    Returns:
        Tensor of the input's shape.
    """

    def __init__(self, max_channels, normalize=True, dynamic_shapes=None, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        self.max_channels = _checks.check_int(name, "max_channels", max_channels, 4)
        self.normalize = bool(normalize)
        self.dynamic_shapes = default_dynamic_shapes() if dynamic_shapes is None else dynamic_shapes
        self.max_states, self.max_nodes = glore_widths(max_channels)
        self.bn = SlicedBatchNormalization(
            max_channels, gamma_initializer="zeros", dynamic_shapes=self.dynamic_shapes,
            dtype=self.dtype_policy, name="bn",
        )

    def build(self, input_shape=None):
        c, s, n = self.max_channels, self.max_states, self.max_nodes

        def kernel(weight_name, shape):
            return self.add_weight(name=weight_name, shape=shape, initializer="he_normal")

        def bias(weight_name, width):
            return self.add_weight(name=weight_name, shape=(width,), initializer="zeros")

        self.state_kernel = kernel("state_kernel", (c, s))
        self.state_bias = bias("state_bias", s)
        self.proj_kernel = kernel("proj_kernel", (c, n))
        self.proj_bias = bias("proj_bias", n)
        self.node_kernel = kernel("node_kernel", (n, n))
        self.node_bias = bias("node_bias", n)
        self.state_update_kernel = kernel("state_update_kernel", (s, s))
        self.extend_kernel = kernel("extend_kernel", (s, c))
        self.bn.build()
        self.built = True

    def _slice(self, weight, *sizes):
        weight = ops.convert_to_tensor(weight)
        if not self.dynamic_shapes:
            return weight
        return weight[tuple(slice(0, size) for size in sizes)]

    def _kernels(self, channels):
        """The eight GloRe weights (`GLORE_KERNELS`) at width `channels` (sliced with dynamic
        shapes, else the widest ones, masked by `_masks`)."""
        states, nodes = glore_widths(channels)
        sizes = {"state_kernel": (channels, states), "state_bias": (states,),
                 "proj_kernel": (channels, nodes), "proj_bias": (nodes,),
                 "node_kernel": (nodes, nodes), "node_bias": (nodes,),
                 "state_update_kernel": (states, states), "extend_kernel": (states, channels)}
        return tuple(self._slice(getattr(self, name), *sizes[name]) for name in GLORE_KERNELS)

    def _masks(self, channels):
        """Without dynamic shapes: zero the channels, states and nodes past the active ones."""
        if self.dynamic_shapes:
            return None
        states, nodes = glore_widths(channels)

        def mask(width, max_width, axis=-1):
            def apply(x):
                m = channel_mask(width, max_width, x.dtype)
                return x * (ops.expand_dims(m, -1) if axis == -2 else m)
            return apply

        states_mask, nodes_mask = mask(states, self.max_states), mask(nodes, self.max_nodes)
        rows_mask = mask(states, self.max_states, axis=-2)
        return {
            "x_state": states_mask,
            "x_proj": nodes_mask,
            "graph": lambda graph: rows_mask(nodes_mask(graph)),
            "graph_t": states_mask,
            "extended": mask(channels, self.max_channels),
        }

    def call(self, inputs, channels=None, attention=None, training=None, update_statistics=True):
        channels = self.max_channels if channels is None else channels

        def glore():
            shape = ops.shape(inputs)
            positions = ops.reshape(inputs, (shape[0], -1, shape[4]))
            extended = global_reasoning(positions, self._kernels(channels), self.normalize,
                                        self._masks(channels))
            extended = ops.reshape(extended, shape)
            normalized, mean, variance = self.bn.normalize(extended, channels, training,
                                                           update_statistics)
            return inputs + normalized, mean, variance

        if attention is None or attention is True:
            outputs, mean, variance = glore()
            active = True
        elif attention is False:
            return inputs
        else:
            active = ops.cast(attention, "bool")

            def identity():
                zeros = ops.zeros((self.max_channels,))
                return inputs, zeros, zeros

            outputs, mean, variance = ops.cond(active, glore, identity)
        if training and update_statistics:
            self.bn.update(channels, mean, variance, active=active)
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # --------------------------------------------------- fixed-unit weights
    def _choice_slices(self, choice):
        c = int(choice["channels"])
        if c > self.max_channels:
            raise ValueError(f"{self.name}: {c} channels exceed the widest {self.max_channels}.")
        s, n = glore_widths(c)
        shapes = {
            "state_kernel": (c, s), "state_bias": (s,), "proj_kernel": (c, n), "proj_bias": (n,),
            "node_kernel": (n, n), "node_bias": (n,), "state_update_kernel": (s, s),
            "extend_kernel": (s, c), "bn/gamma": (c,), "bn/beta": (c,),
            "bn/moving_mean": (c,), "bn/moving_variance": (c,),
        }
        result = {}
        for path, shape in shapes.items():
            variable = getattr(self.bn, path[3:]) if path.startswith("bn/") else getattr(self, path)
            index = tuple(slice(0, size) for size in shape)
            result[path] = ((variable, index), ops.convert_to_numpy(variable)[index])
        return result

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_channels": self.max_channels,
                "normalize": self.normalize,
                "dynamic_shapes": self.dynamic_shapes,
            }
        )
        return config
