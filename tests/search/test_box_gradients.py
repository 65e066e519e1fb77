"""Box gradients: the gradients of the boxes a path reads equal the widest-shape ones."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.search.spaces import tiny_single_stream, tiny_two_stream
from tsnet_keras.layers._super import active_slice
from tsnet_keras.search import ParsecSearch, optimizers, parsec
from tsnet_keras.search.box_gradients import box_reads, dense, sum_boxes, sum_boxes_each
from tsnet_keras.search.optimizers import MaskedAdamW, MaskedSGD


def _reads(kernel, x):
    """A loss of two row blocks of `kernel` (one may be empty) and a centred tap box."""
    rows = tf.concat([active_slice(kernel, (x["base"], 4)),
                      active_slice(kernel, (x["extra"], 4), (6,))], axis=0)
    taps = active_slice(kernel, (3, 2), (1, 1))
    return tf.reduce_sum(tf.sin(rows) * x["weight"][: tf.shape(rows)[0]]) + tf.reduce_sum(taps ** 2)


# (rows, extra rows) read -> the union box (begin, size): row blocks [0, base) and
# [6, 6 + extra) of the first 4 columns, taps [1, 4) x [1, 3); empty reads span nothing.
@pytest.mark.parametrize("base, extra, box", [
    (3, 2, ([0, 0], (8, 4))), (5, 0, ([0, 0], (5, 4))), (0, 0, ([1, 1], (3, 2))),
])
@pytest.mark.parametrize("function", [False, True], ids=["eager", "tf.function"])
def test_box_gradient_padded_equals_the_variable_gradient(base, extra, box, function):
    rng = np.random.default_rng(0)
    kernel = keras.Variable(rng.normal(size=(9, 5)).astype("float32"))
    x = {"base": tf.constant(base), "extra": tf.constant(extra),
         "weight": tf.constant(rng.normal(size=(9, 1)).astype("float32"))}

    def both():
        with tf.GradientTape() as tape:
            loss = _reads(kernel, x)
        reference = tape.gradient(loss, kernel.value)
        with tf.GradientTape() as tape, box_reads(tape, [kernel]) as reads:
            loss = _reads(kernel, x)
        assert len(reads.reads[0]) == 3  # every read was served as a watched box
        pair = reads.gradients(loss)[0]
        return reference, pair

    reference, (gradient, begin) = (tf.function(both) if function else both)()
    assert (np.asarray(begin).tolist(), tuple(gradient.shape)) == box
    np.testing.assert_array_equal(dense((gradient, begin), kernel.shape), reference)


def test_a_read_inside_a_cond_branch_keeps_the_dense_gradient():
    kernel = keras.Variable(np.arange(12, dtype="float32").reshape(4, 3))

    @tf.function
    def gradients():
        with tf.GradientTape() as tape, box_reads(tape, [kernel]) as reads:
            outside = active_slice(kernel, (2, 3))
            inside = tf.cond(tf.constant(True), lambda: active_slice(kernel, (3, 2)),
                             lambda: tf.zeros((3, 2)))
            loss = tf.reduce_sum(outside * 2.0) + tf.reduce_sum(inside * 3.0)
        return reads.gradients(loss)[0]

    gradient, begin = gradients()
    assert begin is None  # the branch's read is a plain read: the whole shape
    expected = np.zeros((4, 3), "float32")
    expected[:2] += 2.0
    expected[:3, :2] += 3.0
    np.testing.assert_array_equal(gradient, expected)


def test_sum_of_boxes_places_each_in_the_union():
    shape = (6, 5)
    a = (tf.ones((2, 3)), tf.constant([1, 2]))
    b = (2.0 * tf.ones((3, 1)), tf.constant([2, 0]))
    empty = (tf.zeros((0, 5)), tf.constant([5, 0]))
    total, begin = sum_boxes([a, empty, b], shape)
    assert np.asarray(begin).tolist() == [1, 0]
    expected = np.zeros(shape, "float32")
    expected[1:3, 2:5] += 1.0
    expected[2:5, 0:1] += 2.0
    np.testing.assert_array_equal(dense((total, begin), shape), expected)
    np.testing.assert_array_equal(dense(sum_boxes([empty], shape), shape), np.zeros(shape))
    whole = (tf.ones(shape), None)
    np.testing.assert_array_equal(sum_boxes([a, whole], shape)[0], expected * (expected == 1) + 1)
    assert sum_boxes([], shape) == (None, None)


def _numpy_sum(parts, shape):
    """The parts' sum at the whole `shape`, placed by NumPy."""
    total = np.zeros(shape, "float32")
    for gradient, begin in parts:
        if gradient is None:
            continue
        gradient = np.asarray(gradient)
        if begin is None:
            total += gradient
        elif gradient.size:
            box = tuple(slice(b, b + n) for b, n in zip(np.asarray(begin), gradient.shape))
            total[box] += gradient
    return total


def test_sums_of_many_variables_at_once_equal_each_sum_and_share_their_index_ops():
    rng = np.random.default_rng(3)
    box = lambda begin, size: (tf.constant(rng.normal(size=size).astype("float32")),  # noqa: E731
                               tf.constant(begin, tf.int32))
    shapes = [(9, 6), (4, 3, 3, 5), (9, 6), (7,), (5, 5), (6, 4)]
    parts_each = [
        [box([1, 2], (2, 3)), box([2, 0], (3, 1))],
        [box([1, 0, 0, 2], (3, 3, 3, 2)), box([0, 1, 1, 0], (4, 1, 1, 5))],
        [box([0, 0], (0, 6)), box([3, 3], (2, 2)), box([8, 5], (1, 1))],  # an empty box, 3 parts
        [box([2], (3,))],  # one part: itself
        [box([0, 0], (2, 2)), (tf.constant(rng.normal(size=(5, 5)).astype("float32")), None)],
        [(None, None), box([1, 1], (2, 2))],  # a missing gradient
    ]
    results = tf.function(lambda parts: sum_boxes_each(parts, shapes), autograph=False)(parts_each)
    for parts, shape, pair in zip(parts_each, shapes, results):
        np.testing.assert_array_equal(dense(pair, shape), _numpy_sum(parts, shape))
        np.testing.assert_array_equal(dense(sum_boxes(parts, shape), shape),
                                      _numpy_sum(parts, shape))

    def count(kind, copies):
        pairs = [[box([1, 2], (2, 3)), box([2, 0], (3, 1))] for _ in range(copies)]
        graph = tf.function(lambda p: sum_boxes_each(p, [(9, 6)] * copies),
                            autograph=False).get_concrete_function(
            pairs).graph
        return sum(op.type == kind for op in graph.get_operations())

    assert count("Any", 2) == count("Any", 12)  # the union and placements: once per rank
    assert count("Pad", 12) == 24  # one a part


@pytest.mark.parametrize("make", [
    lambda: MaskedSGD(0.1, momentum=0.9, weight_decay=1e-2),
    lambda: MaskedAdamW(0.05, weight_decay=1e-2),
], ids=["sgd", "adamw"])
def test_apply_box_gradients_equals_apply_gradients_of_the_summed_ones(make):
    shapes = ((130, 130), (40, 600), (7,))  # restricted, one part whole, few entries (dense)
    rng = np.random.default_rng(1)
    start = [rng.normal(size=shape).astype("float32") for shape in shapes]
    normal = lambda *shape: tf.constant(rng.normal(size=shape).astype("float32"))
    steps = [[[(normal(20 + step, 30), tf.constant([step, 5])), (normal(4, 50), tf.constant([30, 0])),
               (normal(0, 130), tf.constant([0, 0]))],  # two paths' boxes and an empty one
              [(normal(40, 600), None), (normal(3, 3), tf.constant([1, 1]))],
              [(normal(3), tf.constant([step])), (None, None)]] for step in range(3)]
    results = []
    for boxed in (True, False):
        variables = [keras.Variable(value) for value in start]
        optimizer = make()
        for parts in steps:
            if boxed:
                tf.function(lambda parts: optimizer.apply_box_gradients(parts, variables))(parts)
            else:
                optimizer.apply_gradients([(sum(dense(p, v.shape) for p in each if p[0] is not None), v)
                                           for each, v in zip(parts, variables)])
        results.append([np.asarray(v) for v in variables + list(optimizer.variables)])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    assert np.array_equal(results[0][0][34:, :5], start[0][34:, :5])  # no box covered these
    assert not np.array_equal(results[0][0][2:22, 5:35], start[0][2:22, 5:35])


def test_box_gradients_are_refused_where_whole_gradients_are_needed():
    assert MaskedSGD(0.1).accepts_box_gradients()
    for optimizer in (MaskedSGD(0.1, restrict_to_active=False), MaskedSGD(0.1, clipnorm=1.0),
                      MaskedAdamW(gradient_accumulation_steps=2)):
        assert not optimizer.accepts_box_gradients()
        with pytest.raises(ValueError, match="box gradients"):
            optimizer.apply_box_gradients([], [])


@pytest.mark.parametrize("space", [tiny_single_stream, tiny_two_stream],
                         ids=["one-stream", "two-stream"])
@pytest.mark.parametrize("min_entries", [0, 200], ids=["all-boxed", "small-whole"])
def test_a_paths_box_gradients_equal_its_widest_gradients(space, min_entries, monkeypatch):
    monkeypatch.setattr(optimizers, "RESTRICT_MIN_ENTRIES", min_entries)
    keras.utils.set_random_seed(3)
    search = ParsecSearch(space(), 5, crop=8, samples_per_replica=2)
    search.compile(weights_optimizer=MaskedSGD(0.1))
    rng = np.random.default_rng(0)
    x = _clips(search, rng)
    y = tf.constant(rng.integers(0, 5, 4).astype("int32"))
    weights = search.supernet.trainable_variables
    restricted = sum(search.optimizer.restricts(weight) for weight in weights)
    assert 0 < restricted <= len(weights)
    boxed = 0
    for indices in search.sample(0):
        _, widest, _, _ = search._sample_gradients(x, y, indices, tf.constant(0.5))
        _, pairs, _, _ = search._sample_box_gradients(x, y, indices, tf.constant(0.5))
        for gradient, pair, variable in zip(widest, pairs, weights):
            np.testing.assert_allclose(dense(pair, variable.shape), gradient, rtol=1e-6,
                                       atol=1e-7, err_msg=variable.path)
            boxed += pair[1] is not None
            assert pair[1] is None or search.optimizer.restricts(variable)  # small ones whole
        twice = sum_boxes([pairs[-1], pairs[-1]], weights[-1].shape)
        np.testing.assert_allclose(dense(twice, weights[-1].shape), 2 * widest[-1], rtol=1e-6)
    assert boxed > restricted  # most restricted weights took box gradients (cond branches: whole)


def _clips(search, rng):
    sparse = search.space.sparse.frames
    clip = lambda frames: tf.constant(rng.normal(size=(4, frames, 8, 8, 3)).astype("float32"))
    if search.space.dense is None:
        return clip(sparse)
    return {"sparse": clip(sparse), "dense": clip(search.space.dense.frames)}


def test_the_search_step_takes_box_gradients_only_where_it_can():
    search = ParsecSearch(tiny_single_stream(), 5, crop=8, samples_per_replica=2)
    search.compile(weights_optimizer=MaskedSGD(0.1))
    assert search._box_gradients(1) and not search._box_gradients(2)
    search.compile(weights_optimizer=MaskedSGD(0.1, restrict_to_active=False))
    assert not search._box_gradients(1)


def test_a_sum_of_boxes_keeps_the_axes_every_part_spans_whole():
    shape = (6, 4)
    rows = lambda n, begin: (tf.ones((n, 4)), tf.constant([begin, 0]))  # noqa: E731

    seen = []

    @tf.function(input_signature=[tf.TensorSpec((None, 4)), tf.TensorSpec((None, None))])
    def static_shapes(spans_columns, partial):
        for part in (spans_columns, partial):
            seen.append(sum_boxes([(part, tf.constant([0, 0])), rows(2, 3)], shape)[0].shape)
        return tf.constant(0)

    static_shapes.get_concrete_function()
    assert [s.as_list() for s in seen] == [[None, 4], [None, None]]
    total, begin = sum_boxes([rows(2, 0), rows(1, 4)], shape)  # rows 0-1 and 4, zeros between
    assert total.shape == (5, 4) and np.asarray(begin).tolist() == [0, 0]
    np.testing.assert_array_equal(total[:, 0], [1, 1, 0, 0, 1])


def test_the_search_step_sums_its_paths_in_boxes_as_with_whole_gradients(monkeypatch):
    """K = 3 paths summed as they finish (box gradients, one traced sum) move the weights
    as the whole gradients summed at the end do."""
    monkeypatch.setattr(optimizers, "RESTRICT_MIN_ENTRIES", 0)  # every weight boxed
    results, traces = [], []
    for boxes in (True, False):
        keras.utils.set_random_seed(5)
        search = ParsecSearch(tiny_single_stream(), 5, crop=8, samples_per_replica=3)
        search.compile(weights_optimizer=MaskedSGD(0.1, momentum=0.9))
        monkeypatch.setattr(search, "_box_gradients", lambda replicas, boxes=boxes: boxes)
        x = _clips(search, np.random.default_rng(1))
        y = tf.constant(np.random.default_rng(0).integers(0, 5, 4).astype("int32"))
        step = tf.function(search.train_step)
        for _ in range(2):
            before = parsec._add_box_paths.experimental_get_tracing_count()
            step(((x, y), (x, y)))
            traces.append(parsec._add_box_paths.experimental_get_tracing_count() - before)
        results.append([np.asarray(w) for w in search.supernet.trainable_variables])
    # At most one trace for the K - 1 sums (none if an earlier test traced the same shapes).
    assert traces[0] <= 1 and traces[1:] == [0, 0, 0]
    for boxed, whole in zip(*results):
        np.testing.assert_allclose(boxed, whole, rtol=1e-5, atol=1e-6)
