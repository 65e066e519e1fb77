"""Graph-based Global Reasoning unit (GloRe) for video feature maps."""

import keras
from keras import ops

from tsnet_keras.layers import _checks
from tsnet_keras.layers.pointwise import pointwise
from tsnet_keras.space.rules import glore_widths


# The weights of a GloRe unit, in the order `global_reasoning` takes them.
GLORE_KERNELS = ("state_kernel", "state_bias", "proj_kernel", "proj_bias", "node_kernel",
                 "node_bias", "state_update_kernel", "extend_kernel")


def global_reasoning(positions, kernels, normalize, masks=None):
    """GloRe's reasoning over flattened positions, before the residual BN (`GloRe3D` math).

    Shared by `GloRe3D` and `SuperAttention`, which adds only slicing and masking.

    Args:
        positions: `(B, L, C)` tensor.
        kernels: the eight weights named in `GLORE_KERNELS`, in that order.
        normalize: bool. Divide the graph projection by L.
        masks: None or a dict of functions applied to the intermediate tensor
            of that name: "x_state", "x_proj", "graph", "graph_t", "extended"
            (the super unit zeroes its inactive channels with them).

    Returns:
        `(B, L, C)` tensor.
    """
    state_kernel, state_bias, proj_kernel, proj_bias, node_kernel, node_bias, \
        state_update_kernel, extend_kernel = kernels

    def keep(name, x):
        return masks[name](x) if masks and name in masks else x

    x_state = keep("x_state", pointwise(positions, state_kernel) + state_bias)  # (B, L, S)
    x_proj = keep("x_proj", pointwise(positions, proj_kernel) + proj_bias)  # (B, L, N)
    graph = ops.matmul(ops.transpose(x_state, (0, 2, 1)), x_proj)  # (B, S, N)
    if normalize:
        graph = graph / ops.cast(ops.shape(positions)[1], graph.dtype)
    graph = ops.relu(pointwise(graph, node_kernel) + node_bias + graph)
    graph = keep("graph", graph)
    # State-wise conv, kept transposed: (B, N, S) feeds the reverse projection.
    graph_t = keep("graph_t", pointwise(ops.transpose(graph, (0, 2, 1)), state_update_kernel))
    reverse = ops.matmul(x_proj, graph_t)  # (B, L, S)
    return keep("extended", pointwise(reverse, extend_kernel))  # (B, L, C)


@keras.saving.register_keras_serializable(package="tsnet_keras")
class GloRe3D(keras.layers.Layer):
    """Global reasoning over a graph of latent nodes, added residually.

    Data flow (L = T * H * W positions, S state channels, N nodes)::

        x (B, T, H, W, C) -> flatten positions (B, L, C)
          X_state = x @ state_kernel + state_bias          (B, L, S)
          X_proj  = x @ proj_kernel + proj_bias            (B, L, N)
          V  = X_state^T X_proj  [/ L if normalize]        (B, S, N)
          V' = ReLU(V @ node_kernel + node_bias + V)       node-wise graph conv
          V' = state_update_kernel^T V'                    state-wise, no bias
          Y  = X_proj V'^T                                 (B, L, S)
          out = x + BN(Y @ extend_kernel)                  (B, T, H, W, C)

    `bn` starts with gamma = 0, so a new unit is exactly the identity. With
    `normalize=True`, V is an average instead of a sum over positions, so its
    scale does not grow with the clip size (frames x crop^2) and a unit trained
    on one input size behaves the same at another (e.g. train 160^2, test 182^2).

    Reference: Chen et al., "Graph-Based Global Reasoning Networks", CVPR 2019.

    Args:
        state_channels: int or None, S. Defaults to `C // 2`.
        num_nodes: int or None, N. Defaults to `C // 4`.
        normalize: bool, divide V by L. Defaults to True.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Weights:
        `state_kernel` `(C, S)`, `state_bias` `(S,)`, `proj_kernel` `(C, N)`,
        `proj_bias` `(N,)`, `node_kernel` `(N, N)`, `node_bias` `(N,)`,
        `state_update_kernel` `(S, S)`, `extend_kernel` `(S, C)` and the BN
        sublayer `bn` of width C. Trainable parameters (C = 512: 411,136;
        C = 1024: 1,641,472) are `2CS + CN + S + 2N + N^2 + S^2 + 2C`.

    Returns:
        Tensor of the input's shape `(batch, frames, height, width, channels)`.

    Example:

    >>> unit = GloRe3D()
    >>> print(unit(keras.random.normal((2, 4, 7, 7, 64))).shape)
    (2, 4, 7, 7, 64)
    """

    def __init__(self, state_channels=None, num_nodes=None, normalize=True, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        if state_channels is not None:
            _checks.check_positive_int(name, "state_channels", state_channels)
        if num_nodes is not None:
            _checks.check_positive_int(name, "num_nodes", num_nodes)
        self.state_channels = state_channels
        self.num_nodes = num_nodes
        self.normalize = _checks.check_bool(name, "normalize", normalize)
        self.bn = keras.layers.BatchNormalization(
            momentum=0.9,
            epsilon=1e-5,
            gamma_initializer="zeros",
            dtype=self.dtype_policy,
            name="bn",
        )

    @staticmethod
    def resolved_widths(channels, state_channels=None, num_nodes=None):
        """`(S, N)` for `channels` inputs: the given values, else `rules.glore_widths`."""
        default_states, default_nodes = glore_widths(channels)
        states = default_states if state_channels is None else state_channels
        nodes = default_nodes if num_nodes is None else num_nodes
        return states, nodes

    def build(self, input_shape):
        name = type(self).__name__
        _checks.check_video_shape(name, input_shape)
        channels = input_shape[-1]
        states, nodes = self.resolved_widths(channels, self.state_channels, self.num_nodes)
        if states < 1 or nodes < 1:
            raise ValueError(
                f"{name}: inputs with {channels} channels give state_channels={states} "
                f"and num_nodes={nodes}; both must be >= 1 (pass them explicitly or "
                "use at least 4 channels)."
            )
        self.states, self.nodes = states, nodes

        def kernel(weight_name, shape):
            return self.add_weight(name=weight_name, shape=shape, initializer="he_normal")

        def bias(weight_name, width):
            return self.add_weight(name=weight_name, shape=(width,), initializer="zeros")

        self.state_kernel = kernel("state_kernel", (channels, states))
        self.state_bias = bias("state_bias", states)
        self.proj_kernel = kernel("proj_kernel", (channels, nodes))
        self.proj_bias = bias("proj_bias", nodes)
        self.node_kernel = kernel("node_kernel", (nodes, nodes))
        self.node_bias = bias("node_bias", nodes)
        self.state_update_kernel = kernel("state_update_kernel", (states, states))
        self.extend_kernel = kernel("extend_kernel", (states, channels))
        self.bn.build(input_shape)

    def call(self, inputs, training=None):
        shape = ops.shape(inputs)
        positions = ops.reshape(inputs, (shape[0], -1, shape[4]))  # (B, L, C)
        kernels = tuple(getattr(self, name) for name in GLORE_KERNELS)
        extended = ops.reshape(global_reasoning(positions, kernels, self.normalize), shape)
        return inputs + self.bn(extended, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "state_channels": self.state_channels,
                "num_nodes": self.num_nodes,
                "normalize": self.normalize,
            }
        )
        return config
