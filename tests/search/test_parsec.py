"""The PARSEC step: planted problems, the FLOPs hinge and no drift of untaken weights."""

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tests.search.data import clip_dataset
from tests.search.spaces import search_space
from tsnet_keras.search import MacsModel, ParsecSearch, search_dataset

CLASSES = 5
CROP = 8


def _data(steps=8):
    train = clip_dataset(8 * steps, 8, crop=CROP, seed=0)
    heldout = clip_dataset(16, 8, crop=CROP, seed=1)
    return search_dataset(train.repeat(), heldout)


def _probability(search, key, choice):
    return search.distribution.marginals()[key][choice]


def test_planted_problem_concentrates_on_the_right_choice_and_entropy_falls():
    """Only t = 3 in group 0 scores; every architecture with 16 channels in group 0
    exceeds the MACs target (per-sample hinge)."""
    space = search_space()
    keys = [v.key for v in space.variables()]
    t0 = keys.index("sparse[0].temporal_kernel")

    def planted_score(y_true, logits, indices):
        return ops.cast(ops.equal(indices[t0], 1), "float32")  # choice 1 is t = 3

    target = 35_000  # MACs at crop 8: 24,840 .. 34,568 with 8 channels, >= 35,464 with 16
    search = ParsecSearch(space, CLASSES, crop=CROP, samples_per_replica=4,
                          score=planted_score, temperature=0.05, target_macs=target,
                          macs_penalty=10.0, hinge="per_sample")
    search.compile(learning_rate=0.05, logits_learning_rate=0.05)
    entropy_before = search.distribution.entropy_numpy()
    search.fit(_data(), steps_per_epoch=120, epochs=1, verbose=0)

    assert _probability(search, "sparse[0].temporal_kernel", 3) > 0.9
    assert _probability(search, "sparse[0].channels", 16) < 0.1
    assert search.distribution.entropy_numpy() < entropy_before - 1.0
    best = search.distribution.most_probable()
    assert best.sparse.groups[0].temporal_kernel == 3
    assert best.sparse.groups[0].channels == 8
    assert search.distribution.macs_model.macs_of(best) <= target


def test_flops_hinge_pulls_expected_macs_into_the_target_range():
    space = search_space()
    macs = MacsModel(space, CLASSES, CROP)
    low, high = 31_000, 36_000
    search = ParsecSearch(space, CLASSES, crop=CROP, samples_per_replica=2,
                          score=lambda y, logits, indices: ops.zeros(()),  # no signal
                          target_macs=(low, high), macs_penalty=5.0)
    search.compile(learning_rate=0.05, logits_learning_rate=0.1)
    dist = search.distribution
    for start in ("smallest", "largest"):
        # Start concentrated on the cheapest (most expensive) architectures.
        sign = -3.0 if start == "smallest" else 3.0
        dist.set_logits([sign * (np.arange(n) - (n - 1) / 2) for n in dist.sizes])
        before = dist.expected_macs_numpy()
        assert not low <= before <= high
        search.fit(_data(), steps_per_epoch=60, epochs=1, verbose=0)
        after = dist.expected_macs_numpy()
        assert low * 0.97 <= after <= high * 1.03, (start, before, after)
    assert macs.macs_range()[0] < low < high < macs.macs_range()[1]


def _used_masks(search, indices_batch):
    """Per supernet variable: True where any of the sampled architectures reads it."""
    supernet = search.supernet
    masks = {id(v): np.zeros(v.shape, bool) for v in supernet.variables}
    plain = {layer.name for layer in supernet.plan_layers if not hasattr(layer, "choice_weights")}
    layers = {layer.name: layer for layer in supernet.plan_layers}
    for indices in indices_batch:
        arch = supernet.architecture(indices)
        for name, choice in supernet.choices_of(arch).items():
            layer = layers[name]
            if name in plain:
                for v in layer.variables:
                    masks[id(v)][...] = True
                continue
            for (variable, index), _ in layer._choice_slices(choice).values():
                masks[id(variable)][index] = True
    return masks


def test_untaken_weights_stay_bit_identical():
    space = search_space()
    search = ParsecSearch(space, CLASSES, crop=CROP, samples_per_replica=2)
    search.compile(learning_rate=0.1, momentum=0.9, weight_decay=1e-2)
    data = iter(_data())
    step = tf.function(search.train_step)
    trainable = search.supernet.trainable_variables
    momenta = {id(v): m for v, m in zip(trainable, search.optimizer.momentums)}
    # Two steps: after the first, momentum buffers are non-zero, and the second
    # step must not apply them to entries it does not use.
    for _ in range(2):
        samples = np.asarray(search.sample(0))
        masks = _used_masks(search, samples)
        before = {id(v): np.asarray(v).copy() for v in search.supernet.variables}
        momentum_before = {k: np.asarray(m).copy() for k, m in momenta.items()}
        step(next(data))
        moved = 0
        for v in search.supernet.variables:
            unused = ~masks[id(v)]
            after = np.asarray(v)
            np.testing.assert_array_equal(after[unused], before[id(v)][unused], err_msg=v.path)
            if id(v) in momenta:
                np.testing.assert_array_equal(
                    np.asarray(momenta[id(v)])[unused], momentum_before[id(v)][unused],
                    err_msg=v.path,
                )
            moved += int(np.any(after != before[id(v)]))
        assert moved > 10  # the sampled path did train
    # The two steps used different architectures, so both kinds of entry were checked.
    assert int(search.search_step.numpy()) == 2


def test_scoring_leaves_every_moving_statistic_alone_and_training_moves_them():
    """The held-out score uses batch statistics without dropout and moves no BN moving
    statistic (the stem's neither); the gradients' forward moves them."""
    search = ParsecSearch(search_space(), CLASSES, crop=CROP, samples_per_replica=2,
                          score="log_likelihood")
    search.compile(learning_rate=0.1)
    (x, y), (heldout_x, heldout_y) = next(iter(_data()))
    indices = search.sample(0)[0]
    moving = search.supernet.non_trainable_variables

    def state():
        return [np.asarray(v).copy() for v in moving]

    before = state()
    scores = [float(search._sample_score(heldout_x, heldout_y, indices)) for _ in range(2)]
    assert scores[0] == scores[1]  # batch statistics, no dropout: deterministic
    for was, now in zip(before, state()):
        np.testing.assert_array_equal(was, now)
    *_, statistics = search._sample_gradients(x, y, indices, tf.constant(1.0))
    search._apply_statistics(statistics)  # the blocks' updates are deferred to the step
    assert sum(np.any(was != now) for was, now in zip(before, state())) >= 4


def test_one_sample_on_one_replica_is_refused():
    search = ParsecSearch(search_space(), CLASSES, crop=CROP, samples_per_replica=1)
    with pytest.raises(ValueError, match="K >= 2"):
        search.compile()


@pytest.mark.parametrize("target", [10_000, 60_000, (55_000, 70_000), "fast"])
def test_unreachable_or_malformed_target_is_refused_before_training(target):
    space = search_space()  # reachable MACs at crop 8: 24,840 .. 50,056
    with pytest.raises(ValueError, match="target_macs"):
        ParsecSearch(space, CLASSES, crop=CROP, target_macs=target)


def test_masked_adamw_leaves_untaken_weights_and_moments_alone():
    import keras

    from tsnet_keras.search.optimizers import MaskedAdamW

    variable = keras.Variable(np.arange(6, dtype="float32").reshape(2, 3))
    optimizer = MaskedAdamW(0.1, weight_decay=0.01)
    optimizer.build([variable])
    gradient = np.array([[1.0, 0.0, -2.0], [0.0, 0.0, 3.0]], "float32")
    for _ in range(3):
        optimizer.apply_gradients([(gradient, variable)])
    after = np.asarray(variable)
    taken = gradient != 0
    np.testing.assert_array_equal(after[~taken], np.arange(6).reshape(2, 3)[~taken])
    assert np.all(after[taken] != np.arange(6).reshape(2, 3)[taken])
    for moment in (optimizer._momentums[0], optimizer._velocities[0]):
        np.testing.assert_array_equal(np.asarray(moment)[~taken], 0.0)
    # Where every entry is taken it is Keras' AdamW with decoupled decay.
    reference = keras.Variable(np.arange(6, dtype="float32").reshape(2, 3))
    keras_adamw = keras.optimizers.AdamW(0.1, weight_decay=0.01)
    mine = keras.Variable(np.arange(6, dtype="float32").reshape(2, 3))
    masked = MaskedAdamW(0.1, weight_decay=0.01)
    dense = np.array([[1.0, 0.5, -2.0], [0.3, -0.1, 3.0]], "float32")
    for _ in range(3):
        keras_adamw.apply_gradients([(dense, reference)])
        masked.apply_gradients([(dense, mine)])
    np.testing.assert_allclose(np.asarray(mine), np.asarray(reference), rtol=1e-5, atol=1e-6)


def test_unknown_weights_optimizer_is_refused():
    search = ParsecSearch(search_space(), CLASSES, crop=CROP)
    with pytest.raises(ValueError, match="weights_optimizer"):
        search.compile(weights_optimizer="lamb")


def test_custom_search_loop_takes_a_dataset_or_a_per_worker_dataset_function():
    """The same steps from a dataset and from `input_context -> dataset` give the same logits."""
    import keras

    from tsnet_keras.search import custom_search_loop

    strategy = tf.distribute.get_strategy()
    contexts, logits = [], []
    for as_function in (False, True):
        keras.utils.set_random_seed(0)
        search = ParsecSearch(search_space(), CLASSES, crop=CROP, samples_per_replica=2,
                              score="log_likelihood")  # no ties: logits move from step 1
        search.compile(learning_rate=0.05, logits_learning_rate=0.05)

        def per_worker(context):
            contexts.append((context.num_input_pipelines, context.input_pipeline_id))
            return _data()

        logs = custom_search_loop(search, strategy, per_worker if as_function else _data(), 3)
        assert int(search.search_step.numpy()) == 3 and np.isfinite(logs["loss"])
        logits.append(search.distribution.logits_numpy())
    assert contexts == [(1, 0)]
    for a, b in zip(*logits):
        np.testing.assert_array_equal(a, b)
    assert max(float(np.abs(v).max()) for v in logits[0]) > 1e-4


def test_evidence_logits_meet_the_flops_target_through_noisy_accuracy():
    """The defaults (evidence logits, lambda = 1): the hinge's own step brings the expected
    MACs from 20% over the target to it, while the held-out accuracy (of random clips) is
    noise that the evidence threshold keeps out of the logits."""
    space = search_space()
    search = ParsecSearch(space, CLASSES, crop=CROP, samples_per_replica=2)
    uniform = search.distribution.expected_macs_numpy()
    target = int(uniform / 1.2)
    search = ParsecSearch(space, CLASSES, crop=CROP, samples_per_replica=2, target_macs=target)
    search.compile(learning_rate=0.05)
    assert search.direct_hinge
    search.fit(_data(), steps_per_epoch=40, epochs=1, verbose=0)
    after = search.distribution.expected_macs_numpy()
    assert after <= target * 1.02, (uniform, target, after)
    assert search.distribution.entropy_numpy() > 0.8 * np.log(space.size())


def test_frozen_logits_keep_the_hinge_step_out_too():
    """Warm-up (`logits_frozen`): neither the evidence step nor the hinge's own step moves
    the logits, however far over the target the distribution is."""
    space = search_space()
    low = MacsModel(space, CLASSES, CROP).macs_range()[0]
    search = ParsecSearch(space, CLASSES, crop=CROP, samples_per_replica=2,
                          target_macs=int(low * 1.01))
    search.compile(learning_rate=0.05)
    search.logits_frozen = True
    search.fit(_data(), steps_per_epoch=3, epochs=1, verbose=0)
    assert all(np.all(logits == 0.0) for logits in search.distribution.logits_numpy())
    search.logits_frozen = False
    search.fit(_data(), steps_per_epoch=1, epochs=1, verbose=0)
    assert max(np.abs(logits).max() for logits in search.distribution.logits_numpy()) > 0.0


def test_largest_kernels_warmup_pins_every_kernel_only_while_the_logits_are_frozen():
    """`warmup_sampling="largest_kernels"`: in the warm-up every temporal kernel takes its
    largest choice (index 1 of (1, 3)) in all draws while the channels still vary; after
    it the kernels are drawn from the distribution again."""
    space = search_space()
    search = ParsecSearch(space, CLASSES, crop=CROP, samples_per_replica=4,
                          warmup_sampling="largest_kernels")
    kernels = [i for i, key in enumerate(search.distribution.keys) if "temporal_kernel" in key]
    widths = [i for i, key in enumerate(search.distribution.keys) if "channels" in key]

    def draws(frozen):
        search.logits_frozen = frozen
        found = []
        for step in range(8):
            search.search_step.assign(step)
            found.append(ops.convert_to_numpy(search.sample()))
        return np.concatenate(found)

    warm = draws(True)
    assert np.all(warm[:, kernels] == 1)
    assert len(np.unique(warm[:, widths])) == 2
    assert len(np.unique(draws(False)[:, kernels])) == 2
    search.compile(learning_rate=0.05)
    search.logits_frozen = True
    history = search.fit(_data(), steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_default_warmup_draws_the_kernels_from_the_distribution():
    search = ParsecSearch(search_space(), CLASSES, crop=CROP, samples_per_replica=4)
    search.logits_frozen = True
    kernels = [i for i, key in enumerate(search.distribution.keys) if "temporal_kernel" in key]
    found = []
    for step in range(8):
        search.search_step.assign(step)
        found.append(ops.convert_to_numpy(search.sample()))
    assert len(np.unique(np.concatenate(found)[:, kernels])) == 2


def test_unknown_warmup_sampling_is_refused_naming_it():
    with pytest.raises(ValueError, match="`warmup_sampling`"):
        ParsecSearch(search_space(), CLASSES, crop=CROP, warmup_sampling="smallest")


def test_stream_dropout_is_refused_without_a_dense_stream_or_outside_zero_one():
    from tests.search.spaces import tiny_two_stream

    with pytest.raises(ValueError, match="`stream_dropout`.*without a dense stream"):
        ParsecSearch(search_space(), CLASSES, crop=CROP, stream_dropout=0.5)
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(ValueError, match="`stream_dropout` must be"):
            ParsecSearch(tiny_two_stream(), CLASSES, crop=CROP, stream_dropout=bad)


def test_stream_dropout_masks_are_drawn_per_step_and_path_and_drawn_again_alike():
    """The masks depend on the seed, step and path only (a resumed search draws the same),
    differ between paths and steps, and drop about the rate asked for."""
    from tests.search.spaces import tiny_two_stream

    search = ParsecSearch(tiny_two_stream(), CLASSES, crop=CROP, stream_dropout=0.25)
    y = tf.zeros((4000,), "int32")

    def mask(step, path):
        search.search_step.assign(step)
        keep, _ = search._path_draws(y, path, 0)
        return ops.convert_to_numpy(keep)[:, 0]

    first = mask(3, 0)
    assert set(np.unique(first)) == {0.0, 1.0}
    assert 0.22 < 1 - first.mean() < 0.28
    np.testing.assert_array_equal(mask(3, 0), first)
    assert (mask(3, 1) != first).any() and (mask(4, 0) != first).any()
    assert ParsecSearch(tiny_two_stream(), CLASSES, crop=CROP)._path_draws(y, 0, 0)[0] is None


def test_a_two_stream_search_with_stream_dropout_trains():
    from tests.search.spaces import tiny_two_stream

    search = ParsecSearch(tiny_two_stream(), CLASSES, crop=CROP, samples_per_replica=2,
                          stream_dropout=0.5)
    search.compile(learning_rate=0.05)
    data = search_dataset(clip_dataset(16, 8, crop=CROP, dense_frames=8).repeat(),
                          clip_dataset(8, 8, crop=CROP, seed=1, dense_frames=8))
    history = search.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert search.get_config()["stream_dropout"] == 0.5


@pytest.mark.parametrize("restrict", [True, False])
def test_the_stem_runs_once_for_the_k_paths_and_trains_as_k_stems(monkeypatch, restrict):
    """The supernet's shared layers (the stem: no searchable argument) run once per step
    on the clips and their weights take one backward pass of the K paths' summed
    gradients: after a step every weight is where K separate stems put it (float
    rounding), with box or whole gradients. The stem's BN moving statistics move once
    per step, not K times, towards the same batch statistics."""
    import keras

    from tsnet_keras.models.supernet import Supernet
    from tsnet_keras.search import MaskedSGD

    samples = 3
    batch = next(iter(_data()))

    def one_step(shared):
        if not shared:
            monkeypatch.setattr(Supernet, "shared_layers", property(lambda self: 0))
        keras.utils.set_random_seed(0)
        search = ParsecSearch(search_space(), CLASSES, crop=CROP, samples_per_replica=samples)
        search.compile(MaskedSGD(0.1, restrict_to_active=restrict))
        assert search.supernet.shared_layers == (1 if shared else 0)
        stem = search.supernet.plan_layers[0]
        before = [np.asarray(v).copy() for v in stem.non_trainable_variables]
        tf.function(search.train_step)(batch)
        monkeypatch.undo()
        stats = [(b, np.asarray(v)) for b, v in zip(before, stem.non_trainable_variables)]
        return search, stats

    once, once_stats = one_step(shared=True)
    k_times, k_stats = one_step(shared=False)
    for a, b in zip(once.supernet.trainable_variables, k_times.supernet.trainable_variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6,
                                   err_msg=a.path)
    momentum = once.supernet.plan_layers[0].bn.momentum
    for (start, after_once), (_, after_k) in zip(once_stats, k_stats):
        # m_once = mu m + (1 - mu) b, m_k = mu^K m + (1 - mu^K) b, b the same batch statistic.
        assert not np.allclose(after_once, start)
        np.testing.assert_allclose((after_once - start) / (1 - momentum),
                                   (after_k - start) / (1 - momentum ** samples),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("setting, match", [
    ("on", "must be None, True, False or a tuple"),
    (("remapping", "remapper"), r"unknown Grappler optimizers \['remapper'\]"),
])
def test_a_bad_graph_optimization_is_refused_naming_it(setting, match):
    with pytest.raises(ValueError, match=match):
        ParsecSearch(search_space(), CLASSES, crop=CROP, graph_optimization=setting)


def test_graph_optimization_runs_the_named_optimizers_alone_and_gives_them_back():
    from tsnet_keras.search.parsec import GRAPPLER_OPTIMIZERS, graph_optimization

    with graph_optimization(["remapping", "constant_folding"]):  # a config's list too
        inside = tf.config.optimizer.get_experimental_options()
    after = tf.config.optimizer.get_experimental_options()
    assert inside["disable_meta_optimizer"] is False
    assert {name for name in GRAPPLER_OPTIMIZERS if inside[name]} == {
        "remapping", "constant_folding"}
    assert after["disable_meta_optimizer"] is True  # as the search tests' fixture set it
    assert all(after[name] for name in GRAPPLER_OPTIMIZERS)  # back to their default: on


def test_graph_optimization_gives_back_each_option_it_set():
    from tsnet_keras.search.parsec import graph_optimization

    tf.config.optimizer.set_experimental_options({"constant_folding": False})
    try:
        with graph_optimization(None):
            inside = tf.config.optimizer.get_experimental_options()
        after = tf.config.optimizer.get_experimental_options()
    finally:
        tf.config.optimizer.set_experimental_options({"constant_folding": True})
    if not tf.config.list_logical_devices("GPU"):  # the remapper alone
        assert (inside["remapping"], inside["arithmetic_optimization"]) == (True, False)
    assert inside["disable_meta_optimizer"] is False
    assert after["constant_folding"] is False  # as set before
    assert after["disable_meta_optimizer"] is True  # as the search tests' fixture set it
    assert after["arithmetic_optimization"] is True  # set inside, back to its default: on
