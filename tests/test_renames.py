"""The table of old names: JSON keys, keyword arguments and attributes that still read."""

import warnings

import pytest

from tsnet_keras.renames import renamed_argument, renamed_attribute, renamed_keys, renamed_rows


def test_old_keys_read_under_their_new_names_and_a_new_key_wins():
    assert renamed_keys({"alpha_loss": 1.0, "loss": 2.0}) == {"logits_loss": 1.0, "loss": 2.0}
    assert renamed_keys({"alpha_loss": 1.0, "logits_loss": 3.0}) == {"logits_loss": 3.0}
    assert renamed_rows([{"alpha_learning_rate": 0.1}]) == [{"logits_learning_rate": 0.1}]
    assert renamed_keys({"alpha": 8}) == {"alpha": 8}  # TS-Fusion's frame-rate ratio stays


def test_an_old_argument_warns_and_both_names_are_refused():
    kwargs = {"alpha_learning_rate": 0.5}
    with pytest.warns(DeprecationWarning, match="`alpha_learning_rate` is deprecated.*"
                                                "`logits_learning_rate`"):
        assert renamed_argument(kwargs, "alpha_learning_rate", "logits_learning_rate", 0.025,
                                0.025, where="f") == 0.5
    assert kwargs == {}
    with pytest.raises(TypeError, match="f: pass `logits_learning_rate` only"):
        renamed_argument({"alpha_learning_rate": 0.5}, "alpha_learning_rate",
                         "logits_learning_rate", 0.1, 0.025, where="f")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renamed_argument({}, "alpha_learning_rate", "logits_learning_rate", 0.1, 0.025,
                                where="f") == 0.1


def test_an_old_attribute_reads_and_writes_the_new_one():
    class Holder:
        new = 1
        old = renamed_attribute("old", "new")

    holder = Holder()
    with pytest.warns(DeprecationWarning, match="`old` is deprecated, use `new`"):
        holder.old = 5
    assert holder.new == 5
    with pytest.warns(DeprecationWarning):
        assert holder.old == 5
