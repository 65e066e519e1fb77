"""Two sampled paths in flight: the same search as one at a time, paths that write nothing."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.search.data import clip_dataset
from tests.search.spaces import search_space, tiny_two_stream
from tsnet_keras.search import ParsecSearch, search_dataset

CLASSES, CROP = 5, 8
WRITES = {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
          "ResourceStridedSliceAssign", "ResourceScatterUpdate", "RngReadAndSkip",
          "RngSkip", "StatefulUniform", "StatefulUniformFullInt"}


def _with_dropout(space):
    """`space` with the classifier's dropout on (the test spaces have it off)."""
    return dataclasses.replace(space, dropout_rate=0.5)


def _search(space, paths_in_flight, **options):
    keras.utils.set_random_seed(0)
    search = ParsecSearch(space, CLASSES, crop=CROP, samples_per_replica=4,
                          paths_in_flight=paths_in_flight, **options)
    search.compile(learning_rate=0.1, logits_learning_rate=0.05)
    return search


def _fit(search, frames=4, dense_frames=None, steps=6):
    train = clip_dataset(8 * steps, 8, frames=frames, crop=CROP, seed=0,
                         dense_frames=dense_frames)
    heldout = clip_dataset(8, 8, frames=frames, crop=CROP, seed=1, dense_frames=dense_frames)
    search.fit(search_dataset(train, heldout), epochs=1, steps_per_epoch=steps, verbose=0)
    return [(v.path.split("/", 1)[-1], np.asarray(v)) for v in search.variables]


@pytest.mark.parametrize("two_stream", [False, True])
def test_two_paths_in_flight_give_the_same_search_as_one(two_stream):
    """Same seed, K = 4 architectures a step (their widths differ, so the per-path
    calls meet new shapes), six steps: every weight, moving statistic, logit and
    optimizer slot ends the same. With both paths through one function instance (two
    calls of it at once) this test crashed its process in one run of two (oneDNN
    corrupts the heap); the second path runs a second instance."""
    space, options, frames = _with_dropout(search_space()), {}, {}
    if two_stream:
        space, options = _with_dropout(tiny_two_stream()), {"stream_dropout": 0.5}
        frames = {"frames": 2, "dense_frames": 4}
    one = _fit(_search(space, 1, **options), **frames)
    two = _fit(_search(space, 2, **options), **frames)
    assert [path for path, _ in one] == [path for path, _ in two]
    for (path, value), (_, other) in zip(one, two):
        np.testing.assert_allclose(other, value, rtol=1e-5, atol=1e-6, err_msg=path)
    moving = [value for path, value in one if "moving_mean" in path]
    assert moving and any(np.any(value != 0) for value in moving)  # the statistics moved


def test_the_per_path_function_writes_no_variable():
    """The step's per-path function (after the shared stems) holds no op that writes a
    variable or a seed, so two of them can run at once: batch-norm updates come back as
    outputs and the classifier's dropout draws come in as inputs."""
    search = _search(_with_dropout(search_space()), 2)
    x, y = next(iter(clip_dataset(8, 8, crop=CROP)))
    features, start, shared = search._shared_features(x)
    indices = search.sample(0)[0]
    keep, draws = search._path_draws(y, 0, 0)
    assert keep is None and draws is not None
    function = search._sample_box_gradients.get_concrete_function(
        features, y, indices, tf.constant(0.25), start, shared, keep, draws)
    graph = function.graph.as_graph_def()
    ops = {node.op for node in graph.node}
    for library_function in graph.library.function:
        ops |= {node.op for node in library_function.node_def}
    assert "Conv3D" in ops or "MatMul" in ops or "BatchMatMulV2" in ops
    assert not ops & WRITES, sorted(ops & WRITES)


def test_the_step_calls_one_trace_through_two_instances():
    """With two paths in flight the step traces the per-path function once and calls it
    through two instances (executor types "" and "DEFAULT"), path s after path s - 2."""
    search = _search(search_space(), 2)
    (x, y), (hx, hy) = next(iter(search_dataset(clip_dataset(8, 8, crop=CROP),
                                                clip_dataset(8, 8, crop=CROP, seed=1))))
    graph = tf.function(search.train_step).get_concrete_function(((x, y), (hx, hy))).graph
    calls = [op for op in graph.get_operations()
             if op.type == "StatefulPartitionedCall"
             and "sample_box_gradients" in op.get_attr("f").name]
    assert sorted(op.get_attr("executor_type").decode() for op in calls) == [
        "", "", "DEFAULT", "DEFAULT"]
    assert search._sample_box_gradients.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("paths_in_flight", [1, 2])
def test_the_tap_loops_are_one_nested_function_unless_paths_run_at_once(paths_in_flight):
    """One path at a time: the blocks' tap loops are calls of traced functions (start-up).
    Two: each loop is traced in place, so no nested function instance can serve two paths
    at once (oneDNN's gradients corrupt the heap then; BENCHMARKS.md 1e, session 13)."""
    search = _search(search_space(), paths_in_flight)
    x, y = next(iter(clip_dataset(8, 8, crop=CROP)))
    features, start, shared = search._shared_features(x)
    function = search._sample_box_gradients.get_concrete_function(
        features, y, search.sample(0)[0], tf.constant(0.25), start, shared, None, None)
    ops = function.graph.get_operations()
    in_place = [op for op in ops if op.type in ("While", "StatelessWhile")]
    nested = [op.get_attr("f").name for op in ops
              if op.type in ("PartitionedCall", "StatefulPartitionedCall")
              and "_loop_" in op.get_attr("f").name]
    if paths_in_flight == 1:
        assert len(nested) >= 2 and not in_place  # forward and backward calls
    else:
        assert len(in_place) >= 2 and not nested


@pytest.mark.parametrize("bad", [0, 3, 2.0, True, None, "2"])
def test_paths_in_flight_is_one_or_two(bad):
    with pytest.raises(ValueError, match="`paths_in_flight` must be one of"):
        ParsecSearch(search_space(), CLASSES, crop=CROP, paths_in_flight=bad)
