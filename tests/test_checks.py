"""The one validation module: one message style, errors that name the field."""

import numpy as np
import pytest

from tsnet_keras import checks
from tsnet_keras.checks import (
    ArgumentTypeError,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_stride,
)
from tsnet_keras.layers import GloRe3D, MBConv3D
from tsnet_keras.recipes.common import check_int as recipe_check_int
from tsnet_keras.space import BlockGroup, Stem


def test_message_names_where_the_field_the_rule_and_the_value():
    with pytest.raises(ValueError, match=r"^Stem: `channels` must be an int >= 1; got 0\.$"):
        check_int("channels", 0, where="Stem")
    with pytest.raises(ValueError, match=r"^`epochs` must be an odd int >= 3; got 4\.$"):
        check_int("epochs", 4, 3, odd=True)
    with pytest.raises(ValueError, match=r"`rate` must be a number >= 0 and < 1; got 1\.0\."):
        check_number("rate", 1.0, 0, below=1)
    with pytest.raises(ValueError, match=r"`rate` must be a finite number > 0; got nan\."):
        check_number("rate", float("nan"), 0, strict=True)
    with pytest.raises(ValueError, match=r"`op` must be one of 'a', 'b'; got 'c'\."):
        check_choice("op", "c", ("a", "b"))
    with pytest.raises(ValueError, match=r"`stride` must be 1 or 2; got 3\."):
        check_stride("stride", 3)


@pytest.mark.parametrize("call", [
    lambda: check_int("n", "3"),
    lambda: check_int("n", True),
    lambda: check_int("n", np.int64(3), plain=True),
    lambda: check_number("x", "0.5"),
    lambda: check_number("x", np.float32(0.5), plain=True),
    lambda: check_bool("flag", 1),
])
def test_a_wrong_type_is_both_a_type_error_and_a_value_error(call):
    with pytest.raises(ArgumentTypeError) as info:
        call()
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_values_come_back_converted():
    assert check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_number("x", 2) == 2.0 and type(check_number("x", 2)) is float
    assert check_bool("flag", False) is False


def test_layers_space_and_recipes_share_the_style():
    messages = []
    for call in (
        lambda: MBConv3D(channels=0, expansion=2.0),
        lambda: GloRe3D(normalize="yes"),
        lambda: Stem(channels=0),
        lambda: BlockGroup(stage=1, repeats=1, stride=1, channels=8, expansion=2.0, fusion="add"),
        lambda: recipe_check_int("epochs", 0),
    ):
        with pytest.raises(ValueError) as info:
            call()
        messages.append(str(info.value))
    for message in messages:
        assert " must be " in message and "; got " in message, message
    assert messages[0].startswith("MBConv3D: `channels`")
    assert messages[3].startswith("BlockGroup: `fusion` must be one of 'none'")
    assert checks.__all__  # the module is the single home of these checks


@pytest.mark.parametrize("kwargs, message", [
    (dict(videos_per_class=0), r"make_synthetic_dataset: `videos_per_class` must be an int >= 1; got 0"),
    (dict(val_videos_per_class=-1), r"`val_videos_per_class` must be an int >= 0; got -1"),
    (dict(num_frames="72"), r"`num_frames` must be an int >= 1; got '72'"),
])
def test_data_checks_use_the_style_and_write_nothing(tmp_path, kwargs, message):
    from tsnet_keras.data.synthetic import make_synthetic_dataset

    with pytest.raises(ValueError, match=message):
        make_synthetic_dataset(tmp_path / "synthetic", verbose=False, **kwargs)
    assert not list(tmp_path.iterdir())


def test_recipe_paths_and_estimator_choices_use_the_style():
    from tsnet_keras.recipes import resolve_data
    from tsnet_keras.search.estimator import advantages

    with pytest.raises(ArgumentTypeError, match=r"^`train_list` must be a path \(str\); got 3\.$"):
        resolve_data(train_list=3, val_list="v.txt")
    with pytest.raises(ValueError, match=r"`weighting` must be one of 'softmax', 'baseline', 'rank'; got 'x'"):
        advantages(np.zeros(4, "float32"), "x", 1.0)
