"""NumPy references and helpers shared by the layer tests (backend-agnostic)."""

import math

import keras
import numpy as np

EPSILON = 1e-5  # the layers' BatchNormalization epsilon


def to_numpy(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def randomize_weights(layer, rng, scale=0.5):
    """Give every variable (BN gamma/beta/moving stats, biases) a non-trivial value."""
    for variable in layer.weights:
        shape = tuple(variable.shape)
        if variable.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif variable.path.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        else:
            value = rng.normal(0.0, scale, shape)
        variable.assign(value.astype("float32"))


def weight(layer, name):
    """NumPy value of the layer's own weight `name` (e.g. "expand_kernel")."""
    return to_numpy(getattr(layer, name))


def batch_norm(x, bn):
    """Inference-mode batch normalisation with the layer's moving statistics."""
    gamma, beta = to_numpy(bn.gamma), to_numpy(bn.beta)
    mean, variance = to_numpy(bn.moving_mean), to_numpy(bn.moving_variance)
    return (x - mean) / np.sqrt(variance + EPSILON) * gamma + beta


def relu(x):
    return np.maximum(x, 0.0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def same_padding(size, kernel, stride):
    """Keras/TF "same": (before, after) with any odd extra at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def depthwise_conv3d(x, kernel, stride):
    """Explicit loops over output positions; x (B,T,H,W,C), kernel (t,k,k,C)."""
    batch, frames, height, width, channels = x.shape
    taps, size, _, _ = kernel.shape
    pad_h, pad_w = same_padding(height, size, stride), same_padding(width, size, stride)
    padded = np.pad(x, ((0, 0), (taps // 2, taps // 2), pad_h, pad_w, (0, 0)))
    out_h, out_w = math.ceil(height / stride), math.ceil(width / stride)
    out = np.zeros((batch, frames, out_h, out_w, channels), dtype=np.float64)
    for t in range(frames):
        for i in range(out_h):
            for j in range(out_w):
                window = padded[
                    :, t : t + taps, i * stride : i * stride + size, j * stride : j * stride + size
                ]
                out[:, t, i, j] = np.sum(window * kernel, axis=(1, 2, 3))
    return out


def spatial_conv(x, kernel, stride):
    """Per-frame dense 2D conv with "same" padding; x (B,T,H,W,C), kernel (k,k,C,F)."""
    batch, frames, height, width, _ = x.shape
    size = kernel.shape[0]
    pad_h, pad_w = same_padding(height, size, stride), same_padding(width, size, stride)
    padded = np.pad(x, ((0, 0), (0, 0), pad_h, pad_w, (0, 0)))
    out_h, out_w = math.ceil(height / stride), math.ceil(width / stride)
    out = np.zeros((batch, frames, out_h, out_w, kernel.shape[-1]), dtype=np.float64)
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, :, i * stride : i * stride + size, j * stride : j * stride + size]
            out[:, :, i, j] = np.einsum("btyxc,yxcf->btf", window, kernel)
    return out
