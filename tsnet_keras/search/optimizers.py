"""Optimizers for weight-sharing supernets: no drift of untaken branches.

A supernet step trains only the sampled path. Weights outside it (other
kernels' taps, channels past the sampled width, an unused fusion op) get dense
ZERO gradients, and plain SGD with momentum or decoupled weight decay would
still move them. `MaskedSGD` leaves every entry whose gradient is exactly zero
untouched: value, momentum buffer and weight decay.

On TensorFlow the update is restricted to the active box of each variable: the
smallest box (a range per axis) that holds every non-zero gradient entry, i.e.
the sampled widths' rows and columns and the sampled kernel's taps. Only that
box is updated (with the same mask) and written back in place, and so are
its slots, so the arithmetic of a step of a small sampled network costs what
its weights cost, not the widest supernet's. Outside the box every gradient is
zero, so the result is the dense masked update's, bit for bit
(`restrict_to_active=False` keeps the dense one).
Variables under `RESTRICT_MIN_ENTRIES` entries always take the dense update.

The search step hands these optimizers the gradients of the boxes its paths read
(`apply_box_gradients`, `tsnet_keras.search.box_gradients`): no widest-shape gradient
is formed, summed or scanned for its box.
"""

from __future__ import annotations

import functools
import weakref

import keras
from keras import ops


# Smaller variables (batch-norm vectors, biases: about 1% of a supernet's
# entries) take the dense update: the box costs a dozen small ops per variable.
RESTRICT_MIN_ENTRIES = 16384


def _restricted(optimizer, variable) -> bool:
    """Whether `variable` gets the update restricted to its active box."""
    if not getattr(optimizer, "restrict_to_active", False):
        return False
    if keras.backend.backend() != "tensorflow" or len(variable.shape) == 0:
        return False
    entries = 1
    for n in variable.shape:
        entries *= int(n)
    return entries >= RESTRICT_MIN_ENTRIES


def _active_box(gradient):
    """(begin, size): int32 vectors of the smallest box holding every non-zero entry.

    An all-zero gradient gives an empty box (size 0 on some axis).
    """
    import tensorflow as tf

    taken = tf.not_equal(gradient, 0)
    rank = gradient.shape.rank
    begins, ends = [], []
    for axis in range(rank):
        others = [a for a in range(rank) if a != axis]
        line = tf.reduce_any(taken, axis=others) if others else taken
        length = tf.shape(line, out_type=tf.int32)[0]
        positions = tf.range(length, dtype=tf.int32)
        begins.append(tf.reduce_min(tf.where(line, positions, length)))
        ends.append(tf.reduce_max(tf.where(line, positions + 1, 0)))
    begin = tf.stack(begins)
    return begin, tf.maximum(tf.stack(ends) - begin, 0)


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _masked_apply(optimizer, gradient, variable, slots, scalars):
    """Applies `optimizer._masked_rule` to `variable` and its `slots`.

    The rule, (gradient, value, slot values, scalars) -> (new value, new slot values),
    masks with the gradient itself; entries outside the active box have zero gradient,
    so applying it on the box alone changes nothing else. On TensorFlow the update is
    one traced function per optimizer, kind and variable shape, not inlined, and every
    variable of that shape calls it: a supernet's few dozen shapes, not its hundreds of
    variables, are traced and instantiated (BENCHMARKS.md section 3c).
    """
    gradient = ops.cast(gradient, variable.dtype)
    if keras.backend.backend() != "tensorflow":
        new_value, new_slots = optimizer._masked_rule(gradient, variable, slots, scalars)
        for slot, value in zip(slots, new_slots):
            optimizer.assign(slot, value)
        optimizer.assign(variable, new_value)
        return
    handles = [_tf_variable(v).handle for v in (variable, *slots)]
    parts = optimizer._box_parts.get(optimizer._get_variable_index(variable))
    if parts is not None:
        parts = [(ops.cast(g, variable.dtype), begin) for g, begin in parts]
        boxes = _restricted(optimizer, variable) and all(b is not None for _, b in parts)
        _update_function(optimizer, "box" if boxes else "parts")(  # traced once per shape
            parts, tuple(int(n) for n in variable.shape), handles[0], handles[1:],
            tuple(scalars))
        return
    _update_function(optimizer, "restricted" if _restricted(optimizer, variable) else "dense")(
        gradient, handles[0], handles[1:], tuple(scalars))


_FUNCTIONS = weakref.WeakKeyDictionary()  # optimizer -> {kind: traced update}


def not_inlined(python_function, **options):
    """A `tf.function` kept as one function where a traced function calls it, not inlined
    into each call site: traced and instantiated once however often it is called
    (the search's per-sample functions, the masked update; BENCHMARKS.md section 3c)."""
    import tensorflow as tf

    return tf.function(python_function, experimental_attributes={"_noinline": True}, **options)


def _update_function(optimizer, kind):
    """The optimizer's traced update: "dense", "restricted" to the active box found in a
    widest gradient, or from box gradient parts (`apply_box_gradients`) summed in their
    union "box" or padded to the whole shape ("parts")."""
    functions = _FUNCTIONS.setdefault(optimizer, {})
    if kind not in functions:
        body = {"dense": _dense_update, "restricted": _restricted_update, "box": _box_update,
                "parts": _parts_update}
        functions[kind] = not_inlined(functools.partial(body[kind], optimizer._masked_rule))
    return functions[kind]


def _read(handle, like, shape=None):
    """The variable behind `handle`, with the dtype of `like` and its static shape (or
    `shape`)."""
    import tensorflow as tf

    value = tf.raw_ops.ReadVariableOp(resource=handle, dtype=like.dtype)
    value.set_shape(like.shape if shape is None else shape)
    return value


def _dense_update(rule, gradient, handle, slot_handles, scalars):
    import tensorflow as tf

    new_value, new_slots = rule(gradient, _read(handle, gradient),
                                [_read(h, gradient) for h in slot_handles], scalars)
    for slot, value in zip(slot_handles, new_slots):
        tf.raw_ops.AssignVariableOp(resource=slot, value=value)
    tf.raw_ops.AssignVariableOp(resource=handle, value=new_value)


def _restricted_update(rule, gradient, handle, slot_handles, scalars):
    import tensorflow as tf

    begin, size = _active_box(gradient)
    _apply_rule_on_box(rule, tf.slice(gradient, begin, size), begin, _read(handle, gradient),
                       handle, slot_handles, scalars)


def _box_update(rule, parts, shape, handle, slot_handles, scalars):
    """The update of the union box of the `(gradient, begin)` parts, summed; `shape`: the
    variable's."""
    from tsnet_keras.search.box_gradients import sum_boxes

    gradient, begin = sum_boxes(parts, shape)
    _apply_rule_on_box(rule, gradient, begin, _read(handle, gradient, shape), handle,
                       slot_handles, scalars)


def _parts_update(rule, parts, shape, handle, slot_handles, scalars):
    """The dense update from `(gradient, begin)` parts, each padded to the variable's
    `shape`."""
    from tsnet_keras.search.box_gradients import dense, sum_boxes

    gradient = dense(sum_boxes(parts, shape), shape)
    gradient.set_shape(shape)
    _dense_update(rule, gradient, handle, slot_handles, scalars)


def _apply_rule_on_box(rule, gradient, begin, value, handle, slot_handles, scalars):
    """`rule` on the box at `begin` of the variable (`value`) and its slots, written back
    in place (`_write_box`)."""
    import tensorflow as tf

    size = tf.shape(gradient, out_type=tf.int32)
    state_boxes = [tf.slice(_read(state, gradient, value.shape), begin, size)
                   for state in slot_handles]
    new_value, new_states = rule(gradient, tf.slice(value, begin, size), state_boxes, scalars)
    for state, box in zip(slot_handles, new_states):
        _write_box(state, begin, box)
    _write_box(handle, begin, new_value)


def _write_box(handle, begin, box):
    """Writes `box` at `begin` of the variable behind `handle`, in place.

    The in-place write puts the variable in TensorFlow's copy-on-read mode, where every
    later read copies the whole widest variable; the write then takes it out again.
    Safe: the next in-place write copies the buffer first if a read still holds it
    (TensorFlow's `EnsureSparseVariableAccess`). A functional slice update and a dense
    assign would copy the whole variable at every step instead (BENCHMARKS.md 3c).
    """
    import tensorflow as tf

    end = begin + tf.shape(box, out_type=tf.int32)
    tf.raw_ops.ResourceStridedSliceAssign(ref=handle, begin=begin, end=end,
                                          strides=tf.ones_like(begin), value=box)
    tf.raw_ops.DisableCopyOnRead(resource=handle)


class BoxGradientsMixin:
    """`apply_box_gradients` of the masked optimizers."""

    _box_parts = {}  # variable index -> its (gradient, begin) parts, during the call only

    def accepts_box_gradients(self) -> bool:
        """Whether `apply_box_gradients` can serve: TensorFlow, the update restricted, and
        nothing that needs whole gradients (clipping, accumulation, loss scaling)."""
        return (keras.backend.backend() == "tensorflow" and self.restrict_to_active
                and not (self.clipnorm or self.clipvalue or self.global_clipnorm
                         or self.gradient_accumulation_steps)
                and self.loss_scale_factor is None)

    def restricts(self, variable) -> bool:
        """Whether the update of `variable` is restricted to a box (so a box gradient
        serves it); the others take whole gradients (`RESTRICT_MIN_ENTRIES`)."""
        return _restricted(self, variable)

    def apply_box_gradients(self, gradients, variables):
        """One step from the paths' box gradients (`tsnet_keras.search.box_gradients`).

        `gradients[i]` lists `(gradient, begin)` parts of variable `i` (one per path).
        Each variable's update sums its parts in their union box and, where the update
        is restricted (large variables), updates that box alone; elsewhere it pads them
        to the whole shape. The parts are summed inside the update, traced once per
        variable shape. The result is `apply_gradients` of the summed whole gradients.
        """
        if not self.accepts_box_gradients():
            raise ValueError(f"{self.name}: box gradients need `restrict_to_active` on "
                             "TensorFlow and no clipping, accumulation or loss scaling.")
        variables = list(variables)
        if not self.built:
            self.build(variables)
        parts = [[part for part in each if part[0] is not None] for each in gradients]
        self._box_parts = {self._get_variable_index(v): p for v, p in zip(variables, parts) if p}
        try:  # Keras' step (iterations, learning rate, strategy); the parts are read per variable
            self.apply([p[0][0] if p else None for p in parts], variables)
        finally:
            self._box_parts = {}


@keras.saving.register_keras_serializable(package="tsnet_keras")
class MaskedSGD(BoxGradientsMixin, keras.optimizers.SGD):
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
        restrict_to_active: bool. On TensorFlow, update only the box of each
            variable that holds its non-zero gradient entries (same result as
            the dense masked update, a fraction of its cost for small paths).
            Defaults to True.
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
        restrict_to_active=True,
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
        self.restrict_to_active = bool(restrict_to_active)

    def update_step(self, gradient, variable, learning_rate):
        slots = [self.momentums[self._get_variable_index(variable)]] if self.momentum != 0 else []
        _masked_apply(self, gradient, variable, slots, [ops.cast(learning_rate, variable.dtype)])

    def _masked_rule(self, gradient, value, slot_values, scalars):
        (learning_rate,) = scalars
        taken = ops.not_equal(gradient, 0)
        if self.sampled_weight_decay:
            decay = ops.cast(self.sampled_weight_decay, value.dtype)
            gradient = ops.where(taken, gradient + decay * value, gradient)
        step = ops.multiply(gradient, learning_rate)
        if not slot_values:
            return ops.where(taken, ops.subtract(value, step), value), []
        m = slot_values[0]
        momentum = ops.cast(self.momentum, value.dtype)
        new_m = ops.where(taken, ops.subtract(ops.multiply(m, momentum), step), m)
        delta = ops.subtract(ops.multiply(new_m, momentum), step) if self.nesterov else new_m
        return ops.where(taken, ops.add(value, delta), value), [new_m]

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.sampled_weight_decay
        config["restrict_to_active"] = self.restrict_to_active
        return config


@keras.saving.register_keras_serializable(package="tsnet_keras")
class MaskedAdamW(BoxGradientsMixin, keras.optimizers.Adam):
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
        restrict_to_active: bool. As `MaskedSGD`'s. Defaults to True.
        **kwargs: other `keras.optimizers.Optimizer` arguments.
    """

    def __init__(self, learning_rate=2e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, restrict_to_active=True, name="masked_adamw", **kwargs):
        kwargs.pop("use_ema", None)
        kwargs.pop("amsgrad", None)
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, weight_decay=None, name=name, **kwargs)
        self.sampled_weight_decay = weight_decay
        self.restrict_to_active = bool(restrict_to_active)

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        scalars = [ops.cast(learning_rate, variable.dtype),
                   ops.cast(self.iterations + 1, variable.dtype)]
        _masked_apply(self, gradient, variable,
                      [self._momentums[index], self._velocities[index]], scalars)

    def _masked_rule(self, gradient, value, slot_values, scalars):
        learning_rate, step = scalars
        beta_1 = ops.cast(self.beta_1, value.dtype)
        beta_2 = ops.cast(self.beta_2, value.dtype)
        scale = learning_rate * ops.sqrt(1 - ops.power(beta_2, step)) / (1 - ops.power(beta_1, step))
        taken = ops.not_equal(gradient, 0)
        m, v = slot_values
        new_m = ops.where(taken, m + (gradient - m) * (1 - beta_1), m)
        new_v = ops.where(taken, v + (ops.square(gradient) - v) * (1 - beta_2), v)
        update = new_m * scale / (ops.sqrt(new_v) + self.epsilon)
        if self.sampled_weight_decay:
            update = update + learning_rate * ops.cast(self.sampled_weight_decay,
                                                       value.dtype) * value
        return ops.where(taken, value - update, value), [new_m, new_v]

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.sampled_weight_decay
        config["restrict_to_active"] = self.restrict_to_active
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
