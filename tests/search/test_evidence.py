"""EvidenceOptimizer: the architecture logits move on evidence, not on noise."""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.search.spaces import search_space
from tsnet_keras.search import ParsecSearch
from tsnet_keras.search import checkpoint as checkpoint_module
from tsnet_keras.search.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from tsnet_keras.search.distribution import ArchitectureDistribution
from tsnet_keras.search.evidence import EvidenceOptimizer, evidence_report, logits_optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(gradients, start, **options):
    variable = keras.Variable(np.asarray(start, "float32"))
    optimizer = EvidenceOptimizer(**options)
    optimizer.build([variable])
    for gradient in gradients:
        optimizer.apply_gradients([(np.asarray(gradient, "float32"), variable)])
    return variable.numpy()


def test_logits_follow_the_z_score_of_the_summed_gradients():
    """start - scale x (sign(z) x max(|z| - threshold, 0) + leak x z), z = sum g / sqrt(sum g^2)."""
    rng = np.random.default_rng(0)
    gradients = rng.normal(size=(60, 6)) + np.array([0.0, 0.0, 0.5, -0.5, 1.0, 0.2])
    start = rng.normal(size=6)
    z = gradients.sum(0) / np.sqrt((gradients**2).sum(0))
    expected = start - 2.0 * (np.sign(z) * np.maximum(np.abs(z) - 2.5, 0.0) + 0.02 * z)
    got = _run(gradients, start, scale=2.0, threshold=2.5, leak=0.02)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.abs(got[:2] - start[:2]) < 0.1)  # noise: the leak only
    assert got[4] < start[4] - 4  # a consistent gradient: far beyond it


def test_noise_leaves_logits_where_they_started_at_any_length():
    """Zero-mean gradients of any size: 3 of 1,000 logits may cross z = 3 by chance;
    below it the leak moves a logit by at most 0.01 x 1.5 x 3."""
    rng = np.random.default_rng(1)
    for steps in (30, 300, 3000):
        gradients = rng.normal(size=(steps, 1000)) * rng.uniform(0.01, 10, size=1000)
        logits = _run(gradients, np.zeros(1000))
        assert np.count_nonzero(np.abs(logits) > 0.045) <= 8, steps
        assert np.count_nonzero(logits) > 900  # the leak orders them


def test_zero_gradients_change_nothing():
    """The search's warm-up feeds zeros: logits and state stay as they are."""
    variable = keras.Variable(np.zeros(3, "float32"))
    optimizer = EvidenceOptimizer(threshold=1.0)
    optimizer.build([variable])
    for _ in range(10):
        optimizer.apply_gradients([(np.array([1.0, -1.0, 0.0], "float32"), variable)])
    before = [np.array(v) for v in optimizer.variables[2:]] + [variable.numpy()]
    for _ in range(5):
        optimizer.apply_gradients([(np.zeros(3, "float32"), variable)])
    after = [np.array(v) for v in optimizer.variables[2:]] + [variable.numpy()]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_config_round_trip_and_bad_arguments_are_refused():
    optimizer = EvidenceOptimizer(scale=0.7, threshold=2.0)
    config = optimizer.get_config()
    assert (config["scale"], config["threshold"]) == (pytest.approx(0.7), 2.0)
    clone = EvidenceOptimizer.from_config(config)
    assert (float(clone.learning_rate), clone.threshold) == (pytest.approx(0.7), 2.0)
    with pytest.raises(ValueError, match="threshold"):
        EvidenceOptimizer(threshold=-1.0)
    with pytest.raises(ValueError, match="leak"):
        EvidenceOptimizer(leak=-0.1)
    with pytest.raises(ValueError, match="logits_optimizer"):
        logits_optimizer("sgd")
    assert isinstance(logits_optimizer("evidence"), EvidenceOptimizer)
    assert isinstance(logits_optimizer("adam", 0.1), keras.optimizers.Adam)


def test_parsec_checkpoint_restores_the_evidence_state(tmp_path):
    search = ParsecSearch(search_space(), 5, crop=8)
    search.compile(logits_optimizer="evidence")
    assert isinstance(search.logits_optimizer, EvidenceOptimizer)
    state = checkpoint_module._groups(search)["logits_optimizer"]
    rng = np.random.default_rng(0)
    for variable in state:
        if variable.dtype.startswith("float"):
            variable.assign(rng.normal(size=variable.shape).astype(variable.dtype))
    saved = [np.array(v) for v in state]
    save_checkpoint(search, tmp_path / CHECKPOINT_FILE, {"step": 3})
    fresh = ParsecSearch(search_space(), 5, crop=8)
    fresh.compile(logits_optimizer="evidence")
    load_checkpoint(fresh, tmp_path / CHECKPOINT_FILE)
    restored = checkpoint_module._groups(fresh)["logits_optimizer"]
    assert len(restored) == len(saved) > 3
    for before, after in zip(saved, restored):
        np.testing.assert_array_equal(before, np.array(after))


_ON_BACKEND = """
import numpy as np, keras
from tsnet_keras.search.evidence import EvidenceOptimizer
rng = np.random.default_rng(0)
gradients = rng.normal(size=(40, 5)).astype("float32") + np.float32([0, 0.3, -1, 1, 0])
variable = keras.Variable(np.zeros(5, "float32"))
optimizer = EvidenceOptimizer()
optimizer.build([variable])
for gradient in gradients:
    optimizer.apply_gradients([(gradient, variable)])
z = gradients.sum(0) / np.sqrt((gradients ** 2).sum(0))
expected = -1.5 * (np.sign(z) * np.maximum(np.abs(z) - 3.0, 0.0) + 0.01 * z)
np.testing.assert_allclose(keras.ops.convert_to_numpy(variable.value), expected, atol=1e-5)
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_rule_holds_on_the_other_backends(backend):
    """keras.ops only: the same logits on JAX and torch as the NumPy formula."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-c", _ON_BACKEND], env=env, cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def _distribution_with_evidence(steps, advantage, seed=0):
    """A distribution over the tests' space and an evidence optimizer fed `steps` gradients:
    noise on every logit, and `advantage` more on choice 1 of the first variable (a
    negative gradient raises a logit)."""
    distribution = ArchitectureDistribution(search_space(), num_classes=5, crop=8)
    optimizer = EvidenceOptimizer()
    optimizer.build(distribution.trainable_variables)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        gradients = [rng.normal(size=n).astype("float32") for n in distribution.sizes]
        gradients[0][1] -= advantage
        optimizer.apply_gradients(zip(gradients, distribution.trainable_variables))
    return distribution, optimizer


def test_evidence_report_names_the_decided_variable_and_its_choice():
    distribution, optimizer = _distribution_with_evidence(200, advantage=1.0)
    report = evidence_report(distribution, optimizer)
    first = distribution.search_variables[0]
    assert list(report["decided"]) == [first.key]
    entry = report["decided"][first.key]
    assert entry["choice"] == first.choices[1] and entry["kept"] == [first.choices[1]]
    assert entry["z"][str(first.choices[1])] < -3.0  # z = sum g / sqrt(sum g^2), about -10
    assert report["undecided"] == list(distribution.keys[1:])
    np.testing.assert_allclose(optimizer.z_scores(distribution.logits)[0][1],
                               entry["z"][str(first.choices[1])], atol=0.01)


def test_evidence_report_decides_nothing_on_noise_or_without_evidence_logits():
    distribution, optimizer = _distribution_with_evidence(200, advantage=0.0)
    report = evidence_report(distribution, optimizer)
    assert len(report["decided"]) <= 1  # about 0.3% of the logits pass z = 3 by chance
    adam = keras.optimizers.Adam()
    adam.build(distribution.trainable_variables)
    assert evidence_report(distribution, adam) is None
    assert evidence_report(distribution, EvidenceOptimizer()) is None  # not built


def test_evidence_that_only_rules_a_choice_out_keeps_the_others():
    distribution, optimizer = _distribution_with_evidence(200, advantage=-1.0)  # choice 1 hurts
    entry = evidence_report(distribution, optimizer)["decided"][distribution.keys[0]]
    assert entry["z"][str(distribution.search_variables[0].choices[1])] > 3.0
    assert entry["kept"] == [distribution.search_variables[0].choices[0]]
