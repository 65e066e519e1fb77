"""Optimizers for weight-sharing supernets: no drift of untaken branches.

A supernet step trains only the sampled path. Weights outside it (other
kernels' taps, channels past the sampled width, an unused fusion op) get dense
ZERO gradients, and plain SGD with momentum or decoupled weight decay would
still move them. `MaskedSGD` leaves every entry whose gradient is exactly zero
untouched: value, momentum buffer and weight decay.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tsnet_keras")
class MaskedSGD(keras.optimizers.SGD):
    """SGD with momentum that updates only the entries with a non-zero gradient.

    Where the gradient is zero the variable and its momentum stay bit-identical.
    Weight decay is an L2 term added to the gradient on the sampled path only
    (coupled, as in PyTorch's SGD `weight_decay`), never a decay of unused weights.

    An entry of the sampled path whose gradient happens to be exactly zero (a
    dead ReLU, the zero-initialised last BN of a residual branch) also keeps its
    momentum; with fixed networks SGD would apply the stale momentum. The
    difference is confined to those entries.

    Args:
        learning_rate: float or schedule. Defaults to 0.4 (paper section 5.2, with
            a cosine schedule passed by the caller).
        momentum: float. Defaults to 0.9.
        nesterov: bool. Defaults to False.
        weight_decay: float or None. L2 coefficient on the sampled path.
        **kwargs: other `keras.optimizers.Optimizer` arguments.

    Example:

    >>> schedule = keras.optimizers.schedules.CosineDecay(0.4, decay_steps=10_000)
    >>> optimizer = MaskedSGD(schedule, momentum=0.9, weight_decay=5e-5)
    """

    def __init__(
        self,
        learning_rate=0.4,
        momentum=0.9,
        nesterov=False,
        weight_decay=None,
        name="masked_sgd",
        **kwargs,
    ):
        kwargs.pop("use_ema", None)
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=None,
            name=name,
            **kwargs,
        )
        self.sampled_weight_decay = weight_decay

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        taken = ops.not_equal(gradient, 0)
        if self.sampled_weight_decay:
            decay = ops.cast(self.sampled_weight_decay, variable.dtype)
            gradient = ops.where(taken, gradient + decay * variable, gradient)
        step = ops.multiply(gradient, learning_rate)
        if self.momentum != 0:
            m = self.momentums[self._get_variable_index(variable)]
            momentum = ops.cast(self.momentum, variable.dtype)
            new_m = ops.where(taken, ops.subtract(ops.multiply(m, momentum), step), m)
            self.assign(m, new_m)
            delta = ops.subtract(ops.multiply(new_m, momentum), step) if self.nesterov else new_m
        else:
            delta = ops.negative(step)
        self.assign(variable, ops.where(taken, ops.add(variable, delta), variable))

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.sampled_weight_decay
        return config


@keras.saving.register_keras_serializable(package="tsnet_keras")
class MaskedAdamW(keras.optimizers.Adam):
    """AdamW that updates only the entries with a non-zero gradient (a "lazy" Adam).

    Where the gradient is zero the variable and both moments stay bit-identical,
    as with `MaskedSGD`; bias correction uses the global step (as TensorFlow's
    LazyAdam for sparse updates). Decoupled weight decay acts on the sampled
    path only. For CPU-sized searches, where the paper's SGD rate at a small
    batch leaves the supernet near chance for hundreds of steps.

    Args:
        learning_rate: float or schedule. Defaults to 2e-3.
        beta_1, beta_2, epsilon: Adam's. Defaults 0.9, 0.999, 1e-7.
        weight_decay: float or None. Decoupled decay on the sampled path.
        **kwargs: other `keras.optimizers.Optimizer` arguments.
    """

    def __init__(self, learning_rate=2e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, name="masked_adamw", **kwargs):
        kwargs.pop("use_ema", None)
        kwargs.pop("amsgrad", None)
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, weight_decay=None, name=name, **kwargs)
        self.sampled_weight_decay = weight_decay

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        taken = ops.not_equal(gradient, 0)
        step = ops.cast(self.iterations + 1, variable.dtype)
        beta_1 = ops.cast(self.beta_1, variable.dtype)
        beta_2 = ops.cast(self.beta_2, variable.dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        new_m = ops.where(taken, m + (gradient - m) * (1 - beta_1), m)
        new_v = ops.where(taken, v + (ops.square(gradient) - v) * (1 - beta_2), v)
        self.assign(m, new_m)
        self.assign(v, new_v)
        scale = learning_rate * ops.sqrt(1 - ops.power(beta_2, step)) / (1 - ops.power(beta_1, step))
        update = new_m * scale / (ops.sqrt(new_v) + self.epsilon)
        if self.sampled_weight_decay:
            update = update + learning_rate * ops.cast(self.sampled_weight_decay,
                                                       variable.dtype) * variable
        self.assign(variable, ops.where(taken, variable - update, variable))

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.sampled_weight_decay
        return config


WEIGHTS_OPTIMIZERS = ("sgd", "adamw")


def masked_optimizer(name: str, learning_rate, momentum: float = 0.9, weight_decay=None):
    """The supernet's optimizer by name: "sgd" (`MaskedSGD`, the paper's) or "adamw"."""
    if name == "sgd":
        return MaskedSGD(learning_rate, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return MaskedAdamW(learning_rate, weight_decay=weight_decay)
    raise ValueError(f"`weights_optimizer` must be one of {WEIGHTS_OPTIMIZERS}, got {name!r}.")


__all__ = ["MaskedAdamW", "MaskedSGD", "WEIGHTS_OPTIMIZERS", "masked_optimizer"]
