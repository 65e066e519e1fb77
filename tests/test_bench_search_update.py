"""benchmarks/bench_search_update.py: the derived ratios, the gradient sink, bad options."""

import pytest

from tests.scripts import load_script


def _module():
    return load_script("benchmarks/bench_search_update.py", "bench_search_update")


def test_each_ratio_is_the_median_of_its_per_round_values():
    module = _module()
    # Per round: fixed, fixed without update, weights 4 (+ bare), weights 2 (+ bare), in ms.
    rounds = [(100, 90, 500, 460, 260, 220),
              (120, 100, 560, 500, 300, 260),
              (110, 99, 520, 476, 270, 234)]
    times = {name: [round_[i] for round_ in rounds] for i, name in enumerate(module.PARTS)}
    result = module.derived(times)
    assert result["update share, fixed step"] == pytest.approx(0.1)  # 0.1, 1/6, 0.1
    # 0.08, 3/28, 11/130
    assert result["update share, weights part (K = 4)"] == pytest.approx(11 / 130)
    # (460 - 220) / 2 / 90 = 4/3, 120 / 100 = 1.2, 121 / 99
    assert result["one more path / fixed, no update"] == pytest.approx(121 / 99)
    assert result["weights 4 a path / fixed"] == pytest.approx(520 / 440)


def test_the_sink_takes_every_gradients_first_entry_and_skips_missing_ones():
    import tensorflow as tf

    sink = tf.Variable(0.0)
    gradients = [tf.constant([[2.0, 5.0], [7.0, 1.0]]), None, tf.constant([3.0, 4.0])]
    _module().sink_gradients(tf, gradients, sink)
    assert float(sink.numpy()) == 5.0


def test_no_rounds_is_refused_before_anything_is_built(capsys):
    with pytest.raises(SystemExit):
        _module().main(["--repeats", "0"])
    assert "--repeats must be at least 1" in capsys.readouterr().err
