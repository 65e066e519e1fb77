"""`tsnet_keras.engine.fit_epochs`: one Keras `fit` per run (two when resumed inside an
epoch), epochs numbered as in one run, each epoch's dataset made once when it is reached,
resume equal to an uninterrupted run, an epoch that ends early refused."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tsnet_keras.engine import fit_epochs

STEPS = 4  # batches per epoch
RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 3)).astype("float32")
Y = RNG.normal(size=(64, 2)).astype("float32")


class Log(keras.callbacks.Callback):
    """What a run did, in order: epochs begun / ended, batches, datasets made."""

    def __init__(self, made):
        super().__init__()
        self.made, self.events = made, []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch, list(self.made)))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch", _step(self.model)))

    def of(self, kind):
        return [event[1] for event in self.events if event[0] == kind]


class StopAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if _step(self.model) == self.step:
            raise KeyboardInterrupt(f"killed after step {self.step}")


def _step(model):
    return int(model.optimizer.iterations.numpy())


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def _epoch_data(made, short_epoch=None):
    """`(epoch, skip) -> dataset`: epoch e's own batches (its order depends on e)."""
    def make(epoch, skip):
        made.append(epoch)
        order = np.random.default_rng(epoch).permutation(len(X))[:2 * STEPS]
        batches = STEPS - 1 if epoch == short_epoch else STEPS
        return tf.data.Dataset.from_tensor_slices((X[order], Y[order])).batch(2).take(
            batches).skip(skip)

    return make


def _fit(model, epochs, made, callbacks=(), short_epoch=None):
    fits = []
    real = model.fit

    def counted(*args, **kwargs):
        fits.append((kwargs["initial_epoch"], kwargs["epochs"], kwargs["steps_per_epoch"]))
        return real(*args, **kwargs)

    model.fit = counted
    log = Log(made)
    stopped = fit_epochs(model, _epoch_data(made, short_epoch), epochs=epochs,
                         steps_per_epoch=STEPS, step_fn=_step, callbacks=[log, *callbacks],
                         verbose=0)
    return fits, log, stopped


def test_a_run_is_one_fit_and_makes_each_epochs_data_when_it_is_reached():
    made = []
    fits, log, stopped = _fit(_model(), 6, made)
    assert fits == [(0, 6, STEPS)] and not stopped
    assert made == [0, 1, 2, 3, 4, 5]  # once each, in order
    assert log.of("epoch_begin") == log.of("epoch_end") == [0, 1, 2, 3, 4, 5]
    assert log.of("batch") == list(range(1, 6 * STEPS + 1))
    assert [e[0] for e in log.events].count("train_begin") == 1
    assert log.events[-1] == ("train_end",)
    # Lazily: when epoch e begins, no dataset beyond epoch e + 1 (prefetched) was made.
    for _, epoch, made_then in (e for e in log.events if e[0] == "epoch_begin"):
        assert max(made_then) <= epoch + 1, (epoch, made_then)


@pytest.mark.parametrize("killed_at, fits_after", [
    (6, [(1, 2, 2), (2, 5, STEPS)]),  # inside epoch 1: its rest, then one fit
    (8, [(2, 5, STEPS)]),  # at epoch 1's end: one fit
])
def test_a_resumed_run_equals_an_uninterrupted_one(killed_at, fits_after):
    want = _model()
    _fit(want, 5, [])
    model, made = _model(), []
    with pytest.raises(KeyboardInterrupt):
        _fit(model, 5, [], callbacks=[StopAt(killed_at)])
    fits, log, _ = _fit(model, 5, made)  # the model keeps its state, as a restored checkpoint
    assert fits == fits_after
    first = killed_at // STEPS
    assert log.of("epoch_begin") == log.of("epoch_end") == list(range(first, 5))
    assert log.of("batch") == list(range(killed_at + 1, 5 * STEPS + 1))
    assert [e[0] for e in log.events].count("train_begin") == 1
    assert [e[0] for e in log.events].count("train_end") == 1
    assert made == list(range(first, 5))
    for got, expected in zip(model.weights, want.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_early_stopping_sees_one_run_across_the_rest_of_an_epoch_and_the_others():
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        _fit(model, 5, [], callbacks=[StopAt(2)])
    # Epoch 0 sets `best`; epoch 1 does not beat it by 1e9: stop. Had `on_train_begin`
    # reached it again at the second fit, epoch 1 would be its first epoch (no stop).
    stop = keras.callbacks.EarlyStopping(monitor="loss", min_delta=1e9, patience=1)
    fits, log, stopped = _fit(model, 5, [], callbacks=[stop])
    assert stopped and fits == [(0, 1, 2), (1, 5, STEPS)] and log.of("epoch_end") == [0, 1]


def test_a_stop_in_the_rest_of_an_epoch_ends_the_run_there():
    class StopAtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    model = _model()
    with pytest.raises(KeyboardInterrupt):
        _fit(model, 5, [], callbacks=[StopAt(2)])
    fits, log, stopped = _fit(model, 5, [], callbacks=[StopAtEpochEnd()])
    assert stopped and fits == [(0, 1, 2)] and log.events[-1] == ("train_end",)


def test_an_epoch_that_ends_early_is_refused_naming_it():
    # It would shift every later epoch by one batch in the single stream.
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"ended early: epoch \(from 0\)\] \[2\] \[gave\] \[3\]"):
        _fit(_model(), 4, [], short_epoch=2)


def test_an_epoch_with_other_elements_is_refused():
    def make(epoch, skip):
        x = X[: 2 * STEPS] if epoch == 0 else X[: 2 * STEPS, :2]
        return tf.data.Dataset.from_tensor_slices((x, Y[: 2 * STEPS])).batch(2)

    model = _model()
    with pytest.raises(tf.errors.OpError, match="dataset of epoch 1 has elements"):
        fit_epochs(model, make, epochs=2, steps_per_epoch=STEPS, step_fn=_step, callbacks=[],
                   verbose=0)


def test_the_multi_worker_loop_resumes_as_one_run_too():
    import functools

    from tsnet_keras.engine import distributed_fit_epochs

    loop = functools.partial(distributed_fit_epochs, strategy=tf.distribute.get_strategy())
    want = _model()
    _fit(want, 4, [])
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        loop(model, _epoch_data([]), epochs=4, steps_per_epoch=STEPS, step_fn=_step,
             callbacks=[StopAt(6)], verbose=0)
    made = []
    log = Log(made)
    assert not loop(model, _epoch_data(made), epochs=4, steps_per_epoch=STEPS, step_fn=_step,
                    callbacks=[log], verbose=0)
    assert made == [1, 2, 3]  # each when its epoch begins
    assert log.of("epoch_begin") == log.of("epoch_end") == [1, 2, 3]
    assert [e[0] for e in log.events].count("train_begin") == 1
    assert log.of("batch") == list(range(7, 4 * STEPS + 1))
    for got, expected in zip(model.weights, want.weights):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6, atol=1e-7)


def test_later_epochs_datasets_with_python_functions_outlive_garbage_collection():
    """A later epoch's dataset is made inside a py_function and read as a variant: the
    Python dataset must stay alive while the stream reads it, or its own py_functions
    (the video decoder's) leave the registry ("Could not find callback with key=pyfunc_N")."""
    import gc
    import weakref

    from tsnet_keras.engine import epoch_stream

    made = {}

    def make_dataset(epoch, skip):
        doubled = tf.data.Dataset.range(3).map(
            lambda x: tf.py_function(lambda v: v * 2 + 100 * epoch, [x], tf.int64))
        made[epoch] = weakref.ref(doubled)
        return doubled.skip(skip)

    seen = []
    for batch in epoch_stream(make_dataset, 0, 4, 3):
        seen.append(int(batch))
        if len(seen) % 3 == 2:  # mid-epoch, while the stream reads this epoch's dataset
            gc.collect()  # what a long run does at some point between two batches
        epoch = len(seen) // 3 if len(seen) % 3 else len(seen) // 3 - 1
        assert made[epoch]() is not None, f"epoch {epoch}'s dataset was collected while read"
    assert seen == [100 * epoch + 2 * i for epoch in range(4) for i in range(3)]


def test_the_stream_makes_the_next_epoch_before_this_epochs_last_batch_is_read():
    """The stream reads ahead across epoch ends, so an epoch's first step does not wait
    for its dataset to be made and its first batch decoded (`STREAM_PREFETCH`)."""
    import time

    from tsnet_keras.engine import epoch_stream

    made = []

    def make_dataset(epoch, skip):
        made.append(epoch)
        return tf.data.Dataset.range(3).skip(skip)

    batches = iter(epoch_stream(make_dataset, 0, 3, 3))
    assert [int(next(batches)) for _ in range(2)] == [0, 1]  # epoch 0's last batch not read
    deadline = time.monotonic() + 30
    while 1 not in made and time.monotonic() < deadline:
        time.sleep(0.01)
    assert made == [0, 1], "epoch 1's dataset was not made ahead of its first step"
    assert [int(batch) for batch in batches] == [2, 0, 1, 2, 0, 1, 2]
    assert made == [0, 1, 2]
