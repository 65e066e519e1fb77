"""benchmarks/bench_box_write.py: the timed function writes the box and nothing else."""

import numpy as np
import pytest

from tests.scripts import load_script


def _module():
    return load_script("benchmarks/bench_box_write.py", "bench_box_write")


def test_the_written_box_lands_at_the_origin_and_the_rest_is_untouched():
    import tensorflow as tf

    module = _module()
    tf.random.set_seed(0)
    run, variables = module.write_function(tf, (6, 5), (2, 3), count=2, write=True)
    before = [np.array(v.numpy()) for v in variables]
    run()
    for old, variable in zip(before, variables):
        new = variable.numpy()
        assert not np.array_equal(new[:2, :3], old[:2, :3])
        new[:2, :3] = old[:2, :3]
        np.testing.assert_array_equal(new, old)


def test_bad_options_are_refused(capsys):
    with pytest.raises(SystemExit):
        _module().main(["--count", "0"])
    assert "--count and --repeats must be at least 1" in capsys.readouterr().err
