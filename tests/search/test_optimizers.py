"""Masked optimizers: the update restricted to the active box equals the dense one."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.search.data import clip_dataset
from tests.search.spaces import search_space
from tsnet_keras.search import ParsecSearch, search_dataset
from tsnet_keras.search import optimizers
from tsnet_keras.search.optimizers import MaskedAdamW, MaskedSGD, _active_box

SHAPES = ((5, 7, 3, 6), (9, 4), (6,), (130, 130))
UNTOUCHED = (200, 100)  # no path took it: an all-zero gradient


def _sparse_gradients(rng, step):
    """Gradients that are zero outside a box that moves with `step`, with holes inside.

    The last one is all zero (a variable no sampled path touched).
    """
    gradients = []
    for shape in SHAPES:
        box = tuple(slice(step % 2, max(step % 2 + 1, n - 1 - step)) for n in shape)
        gradient = np.zeros(shape, "float32")
        gradient[box] = rng.normal(size=gradient[box].shape)
        gradient[box] *= rng.random(gradient[box].shape) > 0.3  # dead entries in the box
        gradients.append(gradient)
    gradients.append(np.zeros(UNTOUCHED, "float32"))
    return gradients


def _run(optimizer, steps=4, function=False):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=shape).astype("float32"))
                 for shape in SHAPES + (UNTOUCHED,)]
    optimizer.build(variables)
    def apply(gradients):
        optimizer.apply_gradients(list(zip(gradients, variables)))

    if function:
        apply = tf.function(apply)
    for step in range(steps):
        apply([tf.constant(g) for g in _sparse_gradients(rng, step)])
    slots = [np.asarray(v) for v in optimizer.variables[1:]]  # iterations excluded
    return [np.asarray(v) for v in variables], slots


def test_active_box_is_the_smallest_box_of_the_non_zero_entries():
    gradient = np.zeros((6, 5, 4), "float32")
    gradient[1, 2, 3] = 1.0
    gradient[3, 1, 0] = -2.0
    begin, size = _active_box(tf.constant(gradient))
    assert begin.numpy().tolist() == [1, 1, 0]
    assert size.numpy().tolist() == [3, 2, 4]
    _, size = _active_box(tf.zeros((3, 2)))
    assert 0 in size.numpy().tolist()


@pytest.mark.parametrize("min_entries", [0, None], ids=["all-restricted", "large-restricted"])
@pytest.mark.parametrize("function", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("make", [
    lambda restrict: MaskedSGD(0.1, momentum=0.9, weight_decay=1e-2, restrict_to_active=restrict),
    lambda restrict: MaskedSGD(0.1, momentum=0.8, nesterov=True, restrict_to_active=restrict),
    lambda restrict: MaskedSGD(0.1, momentum=0.0, weight_decay=1e-2,
                               restrict_to_active=restrict),
    lambda restrict: MaskedAdamW(0.05, weight_decay=1e-2, restrict_to_active=restrict),
], ids=["sgd-decay", "sgd-nesterov", "sgd-no-momentum", "adamw"])
def test_restricted_update_equals_the_dense_masked_update_bit_for_bit(
        make, function, min_entries, monkeypatch):
    if min_entries is not None:
        monkeypatch.setattr(optimizers, "RESTRICT_MIN_ENTRIES", min_entries)
    assert optimizers._restricted(make(True), keras.Variable(np.zeros((130, 130))))
    restricted_values, restricted_slots = _run(make(True), function=function)
    dense_values, dense_slots = _run(make(False), function=function)
    for a, b in zip(restricted_values + restricted_slots, dense_values + dense_slots):
        np.testing.assert_array_equal(a, b)
    # The updates did something, and left the never-touched variable alone.
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=shape).astype("float32") for shape in SHAPES + (UNTOUCHED,)]
    for value, start in zip(restricted_values[:-1], initial):
        assert np.mean(value != start) > 0.1
    np.testing.assert_array_equal(restricted_values[-1], initial[-1])


def _search(restrict):
    keras.utils.set_random_seed(0)
    search = ParsecSearch(search_space(), 5, crop=8, samples_per_replica=2,
                          score="log_likelihood")
    search.compile(weights_optimizer=MaskedSGD(0.05, momentum=0.9, weight_decay=1e-3,
                                               restrict_to_active=restrict),
                   alpha_learning_rate=0.05)
    train = clip_dataset(8 * 3, 8, crop=8, seed=0)
    heldout = clip_dataset(16, 8, crop=8, seed=1)
    search.fit(search_dataset(train.repeat(), heldout), steps_per_epoch=3, epochs=1, verbose=0,
               shuffle=False)
    return search


def test_search_with_the_restricted_update_equals_the_dense_one_on_a_small_space(monkeypatch):
    monkeypatch.setattr(optimizers, "RESTRICT_MIN_ENTRIES", 0)  # the tiny space's weights too
    restricted, dense = _search(True), _search(False)
    assert int(restricted.search_step.numpy()) == 3
    moved = 0
    for a, b in zip(restricted.supernet.weights + restricted.optimizer.variables,
                    dense.supernet.weights + dense.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    for a, b in zip(restricted.distribution.logits_numpy(), dense.distribution.logits_numpy()):
        np.testing.assert_array_equal(a, b)
    initial = _initial_weights()
    for value, start in zip(restricted.supernet.trainable_weights, initial):
        moved += int(np.sum(np.asarray(value) != start))
    assert moved > 100


def _initial_weights():
    keras.utils.set_random_seed(0)
    search = ParsecSearch(search_space(), 5, crop=8, samples_per_replica=2,
                          score="log_likelihood")
    return [np.asarray(v) for v in search.supernet.trainable_weights]


def test_restrict_to_active_is_in_the_config():
    optimizer = MaskedSGD(0.1, restrict_to_active=False)
    config = keras.optimizers.serialize(optimizer)
    assert keras.optimizers.deserialize(config).restrict_to_active is False
    assert MaskedAdamW().get_config()["restrict_to_active"] is True
