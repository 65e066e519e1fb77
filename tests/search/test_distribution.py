"""The distribution over architectures and its exact expected MACs.

Everything is checked against brute-force enumeration of a small space and
against `complexity(arch)` / `layer_plan(arch)` of the full Auto-TSNet space.
"""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from tests.search.spaces import brute_force_space, tiny_single_stream, tiny_two_stream
from tsnet_keras.accounting import complexity
from tsnet_keras.search import ArchitectureDistribution, MacsModel, layer_tables
from tsnet_keras.search.distribution import space_from_dict, space_to_dict
from tsnet_keras.space import auto_tsnet
from tsnet_keras.space.plan import layer_plan

CROP = 16
CLASSES = 5


def _all_architectures(space):
    variables = space.variables()
    for combo in itertools.product(*(range(len(v.choices)) for v in variables)):
        yield combo, space.from_indices({v.key: i for v, i in zip(variables, combo)})


def _random_distribution(space, seed=0, scale=1.5):
    dist = ArchitectureDistribution(space, num_classes=CLASSES, crop=CROP)
    rng = np.random.default_rng(seed)
    dist.set_logits([rng.normal(size=n) * scale for n in dist.sizes])
    return dist


@pytest.fixture(scope="module")
def enumerated():
    space = brute_force_space()
    rows = [(combo, complexity(arch, CLASSES, CROP).macs) for combo, arch in _all_architectures(space)]
    return space, rows


def test_layer_tables_reproduce_layer_plan_on_the_full_space():
    space = auto_tsnet()
    tables = {t.name: t for t in layer_tables(space, 400, 160)}
    macs = MacsModel(space, 400, 160, tables=list(tables.values()))
    for seed in range(10):
        arch = space.sample(seed=seed)
        values = space.values(arch)
        plan = layer_plan(arch, 400)
        for spec in plan:
            assert tables[spec.name].specs[tables[spec.name].index(values)] == spec
        absent = set(tables) - {spec.name for spec in plan}
        for name in absent:  # GloRe off or fusion "none"
            assert tables[name].specs[tables[name].index(values)] is None
        assert macs.macs_of(arch) == complexity(arch, 400, 160).macs


def test_expected_macs_equals_brute_force_enumeration(enumerated):
    space, rows = enumerated
    dist = _random_distribution(space, seed=1)
    probs = dist.probabilities_numpy()
    brute = sum(macs * math.prod(p[i] for p, i in zip(probs, combo)) for combo, macs in rows)
    assert dist.expected_macs_numpy() == pytest.approx(brute, rel=1e-12)
    assert float(dist.expected_macs()) == pytest.approx(brute, rel=1e-5)
    # Per-architecture look-up agrees with the accounting for every architecture.
    for combo, macs in rows:
        assert dist.macs_model.macs(combo) == macs


def test_expected_macs_gradient_equals_brute_force(enumerated):
    space, rows = enumerated
    dist = _random_distribution(space, seed=2)
    with tf.GradientTape() as tape:
        value = dist.expected_macs()
    grads = tape.gradient(value, dist.trainable_variables)
    probs = dist.probabilities_numpy()
    # d E / d logits_v = sum_A MACs(A) p(A) (onehot(A_v) - p_v)
    expected = [np.zeros(n) for n in dist.sizes]
    for combo, macs in rows:
        weight = macs * math.prod(p[i] for p, i in zip(probs, combo))
        for v, i in enumerate(combo):
            onehot = np.zeros(dist.sizes[v])
            onehot[i] = 1.0
            expected[v] += weight * (onehot - probs[v])
    scale = max(abs(e).max() for e in expected)
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5 * scale)


def test_macs_range_is_exact(enumerated):
    space, rows = enumerated
    model = MacsModel(space, CLASSES, CROP)
    all_macs = [m for _, m in rows]
    assert model.macs_range() == (min(all_macs), max(all_macs))
    # The space's extremes bracket it (space.extreme is a heuristic, the range is exact).
    low = complexity(space.extreme(largest=False), CLASSES, CROP).macs
    assert min(all_macs) <= low


def test_log_prob_and_entropy(enumerated):
    space, rows = enumerated
    dist = _random_distribution(space, seed=3)
    combos = np.array([combo for combo, _ in rows], dtype="int32")
    log_p = np.asarray(dist.log_prob(combos))
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-5)
    entropy = -(np.exp(log_p) * log_p).sum()
    assert float(dist.entropy()) == pytest.approx(entropy, rel=1e-4)
    assert dist.entropy_numpy() == pytest.approx(entropy, rel=1e-4)
    uniform = ArchitectureDistribution(space, num_classes=CLASSES, crop=CROP)
    assert float(uniform.entropy()) == pytest.approx(math.log(space.size()), rel=1e-6)


def test_gumbel_sampling_matches_probabilities():
    dist = _random_distribution(tiny_single_stream(), seed=4)
    noise = tf.random.stateless_uniform((20000, dist.num_variables, dist.max_choices), seed=[1, 2])
    samples = np.asarray(dist.sample_indices(noise))
    for v, p in enumerate(dist.probabilities_numpy()):
        freq = np.bincount(samples[:, v], minlength=len(p)) / len(samples)
        np.testing.assert_allclose(freq, p, atol=0.02)
    # Sampled MACs (tensor look-up) equal the per-architecture MACs.
    exact = [complexity(dist.architecture(row), CLASSES, CROP).macs for row in samples[:20]]
    for row, macs in zip(samples[:20], exact):
        assert float(dist.sampled_macs(row)) == pytest.approx(macs, rel=1e-6)
    # Many samples at once (a step's K): one value per row, in order.
    together = np.asarray(dist.sampled_macs(samples[:20].reshape(4, 5, -1)))
    assert together.shape == (4, 5)
    np.testing.assert_allclose(together.reshape(-1), exact, rtol=1e-6)


def test_most_probable_marginals_and_json_round_trip(tmp_path):
    space = tiny_two_stream()
    dist = _random_distribution(space, seed=5)
    best = dist.most_probable()
    for v in space.variables():
        marginal = dist.marginals()[v.key]
        assert space.values(best)[v.key] == max(marginal, key=marginal.get)
    path = tmp_path / "distribution.json"
    dist.save(path)
    loaded = ArchitectureDistribution.load(path)
    assert loaded.space == space
    for a, b in zip(loaded.logits_numpy(), dist.logits_numpy()):
        np.testing.assert_allclose(a, b, rtol=1e-7)
    assert loaded.most_probable() == best
    assert space_from_dict(space_to_dict(auto_tsnet())) == auto_tsnet()
    with pytest.raises(ValueError, match="format"):
        ArchitectureDistribution.from_dict({"logits": {}})
    with pytest.raises(ValueError, match="unknown variable"):
        dist.set_logits({"sparse[9].channels": [0.0]})


def _log_p(dist):
    return [l - np.log(np.sum(np.exp(l))) for l in dist.logits_numpy()]


def _choice_vector(dist, arch):
    values = dist.space.indices(arch)
    return [values[key] for key in dist.keys]


def test_most_probable_within_meets_the_target_and_is_usually_the_exact_optimum(enumerated):
    space, rows = enumerated
    macs = np.array([m for _, m in rows])
    found = cases = 0
    for seed in range(10):
        dist = _random_distribution(space, seed=seed, scale=1.0)
        log_p = _log_p(dist)
        score = np.array([sum(row[i] for row, i in zip(log_p, combo)) for combo, _ in rows])
        for share in (0.2, 0.4, 0.6):
            target = macs.min() + share * (macs.max() - macs.min())
            choices = _choice_vector(dist, dist.most_probable_within(target))
            assert dist.macs_model.macs(choices) <= target
            for v, row in enumerate(log_p):  # no single change to a likelier choice fits
                for c in np.flatnonzero(row > row[choices[v]]):
                    trial = choices[:v] + [int(c)] + choices[v + 1:]
                    assert dist.macs_model.macs(trial) > target
            got = sum(row[i] for row, i in zip(log_p, choices))
            found += math.isclose(got, score[macs <= target].max(), abs_tol=1e-9)
            cases += 1
    assert found >= 0.75 * cases  # measured: 26 of 30 (greedy, not exhaustive)


def test_most_probable_within_keeps_a_fitting_argmax_and_decided_variables():
    space = tiny_two_stream()
    dist = _random_distribution(space, seed=3)
    argmax_macs = dist.macs_model.macs_of(dist.most_probable())
    assert dist.most_probable_within(None) == dist.most_probable()
    assert dist.most_probable_within(argmax_macs) == dist.most_probable()
    smallest, largest = dist.macs_model.macs_range()
    assert dist.macs_model.macs_of(dist.most_probable_within((argmax_macs * 1.01, largest))) \
        >= argmax_macs * 1.01  # a lower bound raises the MACs
    decided = dist.keys.index("sparse[2].channels")
    logits = [np.linspace(0.0, 0.1, n) for n in dist.sizes]  # leaning to the last choice,
    logits[decided][-1] = 8.0  # decided on the widest one
    dist.set_logits(logits)
    smallest_but_decided = [0] * len(dist.keys)
    smallest_but_decided[decided] = dist.sizes[decided] - 1
    target = 1.05 * dist.macs_model.macs(smallest_but_decided)
    assert dist.macs_model.macs_of(dist.most_probable()) > target
    chosen = dist.most_probable_within(target)
    assert dist.macs_model.macs_of(chosen) <= target
    assert space.values(chosen)["sparse[2].channels"] == 24


def test_most_probable_within_a_floor_uses_the_budget_when_it_can(enumerated):
    """An argmax far under the target is raised into [floor x target, target] (moves that
    would jump past the target are taken last, so the greedy does not swing around the
    range); the result stays under the target, and an unreachable floor changes nothing."""
    space, rows = enumerated
    macs = np.array([m for _, m in rows])
    raised = possible = 0
    for seed in range(10):
        dist = _random_distribution(space, seed=seed, scale=1.0)
        argmax_macs = dist.macs_model.macs_of(dist.most_probable())
        target = min(1.5 * argmax_macs, 0.98 * macs.max())
        chosen = dist.macs_model.macs_of(dist.most_probable_within(target, floor=0.9))
        assert chosen <= target
        if np.any((macs >= 0.9 * target) & (macs <= target)):
            possible += 1
            raised += chosen >= 0.9 * target
    assert raised == possible == 10, (raised, possible)  # 8 of 10 when moves could overshoot
    dist = _random_distribution(space, seed=0, scale=1.0)
    target = macs.min() * 1.001  # only the smallest architecture fits; 0.9 of it none
    assert dist.most_probable_within(target, floor=0.9) == dist.most_probable_within(target)
