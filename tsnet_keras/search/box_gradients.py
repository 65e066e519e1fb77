"""Gradients of the active boxes of a supernet's widest weights (TensorFlow).

A sampled path reads a box of each widest weight (`layers._super.active_slice`): the
sampled widths' rows and columns, the sampled kernel's taps. Differentiated with respect
to the variable, each box's gradient is padded to the widest shape, and a search step
writes, sums and scans K such copies of the whole supernet (BENCHMARKS.md section 3b).
Here the forward pass reads each box as a watched slice of the variable's value, its
gradient stopped, so the gradient has the box's shape. The boxes one variable's reads
take, and then the K paths' boxes, are placed in their union box and summed; the masked
optimizer updates that box (`MaskedSGD.apply_box_gradients`). Outside the union every
gradient entry is zero, so the update equals the dense masked one bit for bit.

A box gradient is a pair `(gradient, begin)`: `begin` the int32 start of the box in the
variable, None for a gradient of the variable's whole shape (a variable read whole, or
inside a `cond` branch, where the box cannot be watched).
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from tsnet_keras.layers._super import box_reader

_FAR = 2**30  # the start of an empty box in a union: never the least


class BoxReads:
    """The boxes of `variables` that a forward pass under `tape` reads (`box_reads`);
    `boxed[i]` False keeps variable i's reads plain (its gradient whole)."""

    def __init__(self, tape, variables, boxed=None):
        self.tape = tape
        self.graph = tf.compat.v1.get_default_graph()
        self.variables = list(variables)
        boxed = [True] * len(self.variables) if boxed is None else boxed
        self._index = {id(variable): i for i, (variable, box) in
                       enumerate(zip(self.variables, boxed)) if box}
        self.reads = [[] for _ in self.variables]

    def __call__(self, variable, starts, sizes):
        """The watched box, or None (a plain read) for another variable or graph."""
        i = self._index.get(id(variable))
        if i is None or tf.compat.v1.get_default_graph() is not self.graph:
            return None
        sizes = [n - start if isinstance(size, int) and size < 0 else size
                 for n, start, size in zip(variable.shape, starts, sizes)]
        begin, size = (tf.stack([tf.cast(n, tf.int32) for n in v]) for v in (starts, sizes))
        box = tf.slice(tf.stop_gradient(keras.ops.convert_to_tensor(variable)), begin, size)
        self.tape.watch(box)
        self.reads[i].append((box, begin))
        return box

    def gradients(self, target):
        """`(gradient, begin)` of `target` for each variable (gradient None: unconnected)."""
        return self.gradients_and(target, [])[0]

    def gradients_and(self, target, tensors):
        """`gradients(target)`, and the plain gradients of `target` at `tensors` (watched
        by the tape), from one backward pass."""
        boxes = [box for reads in self.reads for box, _ in reads]
        grads = self.tape.gradient(target, self.variables + boxes + list(tensors))
        count = len(self.variables)
        dense, box_grads = grads[:count], iter(grads[count:count + len(boxes)])
        result = []
        for variable, gradient, reads in zip(self.variables, dense, self.reads):
            parts = [(next(box_grads), begin) for _, begin in reads] + [(gradient, None)]
            result.append(sum_boxes(parts, variable.shape))
        return result, grads[count + len(boxes):]


@contextlib.contextmanager
def box_reads(tape, variables, boxed=None):
    """Within the block, the supernet's `active_slice` reads of `variables` (those with
    `boxed[i]`; default all) in this graph are watched boxes; `reads.gradients(loss)`
    after the tape gives their box gradients."""
    with box_reader(BoxReads(tape, variables, boxed)) as reads:
        yield reads


def sum_boxes(parts, shape):
    """The sum of `(gradient, begin)` parts of one variable of `shape` as one pair: in the
    union of their boxes, or whole if a part is whole; `(None, None)` for no parts."""
    return sum_boxes_each([parts], [shape])[0]


def sum_boxes_each(parts_each, shapes):
    """`sum_boxes(parts_each[i], shapes[i])` for every variable i. The boxes' index
    arithmetic (union, placements) runs once for all the variables of one rank that sum
    two or more boxes, a few ops in all instead of some thirty a variable: the search
    sums its paths' gradients this way at every path (BENCHMARKS.md 1e, session 14)."""
    parts_each = [[part for part in parts if part[0] is not None] for parts in parts_each]
    results = [None] * len(parts_each)
    by_rank = {}
    for i, parts in enumerate(parts_each):
        if len(parts) <= 1:
            results[i] = parts[0] if parts else (None, None)
        elif any(begin is None for _, begin in parts):
            results[i] = tf.add_n([dense(part, shapes[i]) for part in parts]), None
        else:
            by_rank.setdefault((len(shapes[i]), len(parts)), []).append(i)
    for chosen in by_rank.values():
        summed = _sum_in_unions([parts_each[i] for i in chosen], [shapes[i] for i in chosen])
        for i, pair in zip(chosen, summed):
            results[i] = pair
    return results


def _sum_in_unions(parts_each, shapes):
    """`(sum, begin)` of each variable's boxed parts in their union box; every variable
    has the same rank and number of parts."""
    count, (rank,) = len(parts_each[0]), {len(shape) for shape in shapes}
    gradients = [gradient for parts in parts_each for gradient, _ in parts]
    begins = tf.reshape(tf.stack([begin for parts in parts_each for _, begin in parts]),
                        (len(parts_each), count, rank))
    sizes = tf.reshape(tf.stack([tf.shape(g, out_type=tf.int32) for g in gradients]),
                       (len(parts_each), count, rank))
    empty = tf.reduce_any(tf.equal(sizes, 0), axis=2, keepdims=True)  # spans nothing
    end = tf.reduce_max(tf.where(empty, 0, begins + sizes), axis=1)
    begin = tf.minimum(tf.reduce_min(tf.where(empty, _FAR, begins), axis=1), end)
    placed = _placed(gradients, begins, sizes, begin[:, None], (end - begin)[:, None])
    result = []
    for i, (parts, union) in enumerate(zip(parts_each, tf.unstack(begin))):
        summed = tf.add_n(placed[i * count:(i + 1) * count])
        summed.set_shape(_whole_axes([gradient for gradient, _ in parts], shapes[i]))
        result.append((summed, union))
    return result


def _whole_axes(gradients, shape):
    """The static shape of the gradients' union box: an axis every part spans whole (by
    its static size) is whole; the others are unknown. (So a running sum keeps the static
    shape of the parts, and a function it passes through traces once.)"""
    return [int(n) if all(g.shape[axis] == int(n) for g in gradients) else None
            for axis, n in enumerate(shape)]


def dense(pair, shape):
    """A pair's gradient at the variable's whole `shape`."""
    gradient, begin = pair
    if begin is None or gradient is None:
        return gradient
    if not isinstance(shape, tf.Tensor):
        shape = tf.constant([int(n) for n in shape], tf.int32)
    size = tf.shape(gradient, out_type=tf.int32)
    return _placed([gradient], begin[None, None], size[None, None], tf.zeros_like(shape),
                   shape)[0]


def _placed(gradients, begins, sizes, outer_begin, outer_size):
    """`gradients` (their boxes at `begins`, of `sizes`: `(..., rank)` int32, one row a
    gradient in order) each zero-padded to the outer box (`outer_begin`, `outer_size`,
    broadcast against them) that holds it; an empty box gives zeros."""
    sizes = tf.minimum(sizes, outer_size)
    empty = tf.reduce_any(tf.equal(sizes, 0), axis=-1, keepdims=True)
    before = tf.where(empty, 0, begins - outer_begin)
    rank = begins.shape[-1]
    paddings = tf.unstack(tf.reshape(tf.stack([before, outer_size - sizes - before], axis=-1),
                                     (-1, rank, 2)))
    sizes = tf.unstack(tf.reshape(sizes, (-1, rank)))
    # The slice shrinks an empty box's other axes to the outer box; others stay whole.
    origin = tf.zeros((rank,), tf.int32)
    return [tf.pad(tf.slice(gradient, origin, size), padding)
            for gradient, size, padding in zip(gradients, sizes, paddings)]


__all__ = ["BoxReads", "box_reads", "dense", "sum_boxes", "sum_boxes_each"]
