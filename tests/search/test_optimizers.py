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


def _reads_share_the_buffer(variable) -> bool:
    """Whether two reads of `variable` alias its buffer: False in TensorFlow's
    copy-on-read mode, where each read copies the whole variable."""
    first, second = (tf.convert_to_tensor(variable) for _ in range(2))
    return np.shares_memory(first._numpy_internal(), second._numpy_internal())


@pytest.mark.parametrize("make", [
    lambda: MaskedSGD(0.1, momentum=0.9), lambda: MaskedAdamW(0.05)], ids=["sgd", "adamw"])
def test_restricted_update_leaves_no_variable_in_copy_on_read_mode(make, monkeypatch):
    monkeypatch.setattr(optimizers, "RESTRICT_MIN_ENTRIES", 0)
    optimizer = make()
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.normal(size=shape).astype("float32")) for shape in SHAPES]
    optimizer.build(variables)
    in_place = tf.Variable(tf.zeros((4, 4)))  # the check itself: an in-place write switches
    in_place[:2].assign(tf.ones((2, 4)))
    assert not _reads_share_the_buffer(in_place)
    gradients = _sparse_gradients(rng, 1)[: len(SHAPES)]
    tf.function(lambda g: optimizer.apply_gradients(zip(g, variables)))(
        [tf.constant(g) for g in gradients])
    slots = [v for v in optimizer.variables if tuple(v.shape) in SHAPES]
    assert len(slots) == len(variables) * (2 if isinstance(optimizer, MaskedAdamW) else 1)
    for variable in variables + slots:
        assert _reads_share_the_buffer(variable), variable.path


def _search(restrict):
    keras.utils.set_random_seed(0)
    search = ParsecSearch(search_space(), 5, crop=8, samples_per_replica=2,
                          score="log_likelihood")
    search.compile(weights_optimizer=MaskedSGD(0.05, momentum=0.9, weight_decay=1e-3,
                                               restrict_to_active=restrict),
                   logits_learning_rate=0.05)
    train = clip_dataset(8 * 3, 8, crop=8, seed=0)
    heldout = clip_dataset(16, 8, crop=8, seed=1)
    search.fit(search_dataset(train.repeat(), heldout), steps_per_epoch=3, epochs=1, verbose=0,
               shuffle=False)
    return search


@pytest.mark.slow  # two whole searches (40 s on 2 busy cores); the update itself is checked above
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


MIRRORED = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tsnet_keras.search.optimizers import MaskedSGD

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
results = {}
for restrict in (True, False):
    with strategy.scope():
        variable = keras.Variable(np.arange(130 * 130, dtype="float32").reshape(130, 130) / 1e4)
        optimizer = MaskedSGD(0.1, momentum=0.9, weight_decay=1e-2, restrict_to_active=restrict)
        optimizer.build([variable])

    @tf.function
    def step(gradient):
        def replica_fn(gradient):
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            local = gradient * tf.cast(replica + 1, gradient.dtype)  # replicas differ
            optimizer.apply_gradients([(local, variable)])
        strategy.run(replica_fn, args=(gradient,))

    for k in range(3):
        gradient = np.zeros((130, 130), "float32")
        gradient[k:60 - k, 10 + k:40] = 1.0 + k
        step(tf.constant(gradient))
    values = [np.asarray(v) for v in strategy.experimental_local_results(variable.value)]
    momenta = [np.asarray(v) for v in
               strategy.experimental_local_results(optimizer.momentums[0].value)]
    assert np.array_equal(values[0], values[1]) and np.array_equal(momenta[0], momenta[1])
    results[restrict] = (values[0], momenta[0])
assert np.array_equal(results[True][0], results[False][0])
assert np.array_equal(results[True][1], results[False][1])
start = np.arange(130 * 130, dtype="float32").reshape(130, 130) / 1e4
print(json.dumps({"moved": int(np.sum(results[True][0] != start))}))
"""


def test_restricted_update_under_mirrored_strategy_equals_the_dense_one():
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    output = subprocess.run([sys.executable, "-c", MIRRORED], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert output.returncode == 0, output.stderr[-3000:]
    moved = json.loads(output.stdout.strip().splitlines()[-1])["moved"]
    assert moved == 60 * 30  # the union of the three boxes, nothing else


@pytest.mark.parametrize("nesterov", [False, True])
def test_masked_sgd_with_every_entry_taken_is_keras_sgd(nesterov):
    start = np.linspace(-1, 1, 130 * 130, dtype="float32").reshape(130, 130)
    gradients = [np.random.default_rng(k).normal(size=start.shape).astype("float32")
                 for k in range(3)]
    values = []
    for optimizer in (MaskedSGD(0.1, momentum=0.9, nesterov=nesterov),
                      keras.optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov)):
        variable = keras.Variable(start)
        for gradient in gradients:
            optimizer.apply_gradients([(gradient, variable)])
        values.append(np.asarray(variable))
    np.testing.assert_allclose(values[0], values[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("restrict", [True, False])
def test_update_is_traced_once_per_variable_shape(restrict):
    """Six variables of two shapes: two traces of the update, each called three times."""
    shapes = ((130, 130), (64, 300)) * 3
    variables = [keras.Variable(np.ones(shape, "float32")) for shape in shapes]
    optimizer = MaskedSGD(0.1, momentum=0.9, restrict_to_active=restrict)
    optimizer.build(variables)
    step = tf.function(lambda: optimizer.apply_gradients(
        [(tf.ones(v.shape) * 2.0, v) for v in variables]))
    step()
    update = optimizers._update_function(optimizer, "restricted" if restrict else "dense")
    assert update.experimental_get_tracing_count() == 2
    for variable in variables:  # -0.1 * 2 from 1: every variable got its update
        np.testing.assert_allclose(np.asarray(variable), 0.8, rtol=1e-6)
