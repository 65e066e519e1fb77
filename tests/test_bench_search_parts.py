"""benchmarks/bench_search_parts.py: the parts' Grappler settings, the report, bad options."""

import pytest

from tests.scripts import load_script


def _module():
    return load_script("benchmarks/bench_search_parts.py", "bench_search_parts")


def test_each_part_runs_under_its_own_grappler_setting():
    setting = _module().grappler_setting
    assert setting("fixed", None, ("remapping",)) is True  # as Keras runs a model
    assert setting("step", None, ("remapping",)) is None  # as `fit` runs the search
    assert setting("weights", False, ("remapping",)) is False
    assert setting("step+constant_folding", None, ("remapping",)) == (
        "remapping", "constant_folding")


def test_a_step_with_one_more_optimizer_is_reported_against_the_step_of_each_round(capsys):
    times = {"fixed": [100.0, 200.0, 100.0], "step": [500.0, 1000.0, 600.0],
             "step+constant_folding": [450.0, 1100.0, 540.0]}
    _module().report(times)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-3:] == ["/", "step,", "rounds"]
    step, extra = lines[1 + 1].split(), lines[1 + 2].split()
    assert step[0] == "step" and len(step) == 4  # no column against itself
    # per trained path: median 540 / (4 x 100); rounds 1.125, 1.375, 1.35; / step 0.9, 1.1, 0.9
    assert extra == ["step+constant_folding", "540", "1.350", "1.350", "0.900"]


def test_without_extra_steps_the_report_keeps_its_four_columns(capsys):
    _module().report({"fixed": [100.0], "step": [500.0]})
    header, fixed, step = capsys.readouterr().out.splitlines()
    assert "/ step" not in header and step.split() == ["step", "500", "1.250", "1.250"]


def test_an_unknown_optimizer_is_refused_before_anything_is_built(capsys):
    with pytest.raises(SystemExit):
        _module().main(["--also-optimizers", "constant_folding", "remapper"])
    assert "unknown Grappler optimizers ['remapper']" in capsys.readouterr().err
