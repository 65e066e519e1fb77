"""The search space as data: sizes, sampling, validation, JSON, sub-spaces."""

import dataclasses
import json
import math

import pytest

from tsnet_keras import presets
from tsnet_keras.space import (
    Architecture,
    BlockGroup,
    BlockGroupSpace,
    Stem,
    Stream,
    auto_tsnet,
    choice_range,
)
from tsnet_keras.spaces import auto_tsnet as auto_tsnet_alias


def test_choice_range_matches_table_1():
    assert choice_range(32, 48, 8) == (32, 40, 48)
    assert choice_range(248, 344, 24) == (248, 272, 296, 320, 344)
    assert choice_range(1.5, 6.0, 0.75) == (1.5, 2.25, 3.0, 3.75, 4.5, 5.25, 6.0)
    with pytest.raises(ValueError, match="does not end on max"):
        choice_range(32, 50, 8)


def test_auto_tsnet_is_table_1():
    space = auto_tsnet_alias()
    assert space == auto_tsnet()
    sparse, dense = space.sparse, space.dense
    assert (sparse.frames, dense.frames) == (4, 32)
    assert (sparse.stem.channels, dense.stem.channels) == (24, 8)
    assert [g.repeats for g in sparse.groups] == [1, 2, 1, 4, 1, 3, 3, 4, 1, 3, 3]
    assert [g.stride for g in sparse.groups] == [2, 1, 2, 1, 2, 1, 1, 1, 2, 1, 1]
    # Stage depths equal X3D-S's 3 / 5 / 11 / 7.
    depth = {}
    for group in sparse.groups:
        depth[group.stage] = depth.get(group.stage, 0) + group.repeats
    assert depth == {1: 3, 2: 5, 3: 11, 4: 7}
    assert sparse.groups[4].channels == (128, 144, 160, 176)
    assert dense.groups[0].channels == (8,)
    assert dense.groups[10].channels == (32, 40, 48, 56)
    assert all(g.temporal_kernel == (1, 3, 5) and g.spatial_kernel == (3, 5) for g in sparse.groups)


def test_space_sizes_and_documented_differences():
    space = auto_tsnet()
    step1 = 42**11 * 3**2 * 4**2 * 4**4 * 5**3
    assert space.size(step=1) == step1
    assert f"{step1:.2e}" == "3.31e+24"  # paper: 8e24 (see auto_tsnet docstring)
    dense_backbone = 42**11 * 1 * 2 * 3**2 * 3**4 * 4**3
    assert space.size(step=2) == dense_backbone * 4**10  # 10 fusion places x 4 ops
    assert space.size(step=3) == 4096 == 2**6 * 2**6  # paper: 4096
    assert space.size() == space.size(1) * space.size(2) * space.size(3)
    assert len(space.variables(step=1)) == 44
    assert len(space.variables(step=3)) == 12


def test_sample_is_valid_and_seeded():
    space = auto_tsnet()
    a, b = space.sample(seed=1), space.sample(seed=1)
    assert a == b
    assert space.sample(seed=2) != a
    space.validate(a)
    assert space.contains(a)


def test_json_round_trip_for_many_samples(tmp_path):
    space = auto_tsnet()
    for seed in range(50):
        arch = space.sample(seed=seed)
        text = arch.to_json()
        assert Architecture.from_json(text) == arch
        assert json.loads(text)["sparse"]["frames"] == 4
    arch.save(tmp_path / "a.json")
    assert Architecture.load(tmp_path / "a.json") == arch


def test_indices_round_trip():
    space = auto_tsnet()
    arch = space.sample(seed=3)
    assert space.from_indices(space.indices(arch)) == arch


def test_validation_names_group_variable_and_choices():
    space = auto_tsnet()
    arch = space.sample(seed=0)
    bad_group = dataclasses.replace(arch.sparse.groups[3], channels=100)
    bad = dataclasses.replace(
        arch,
        sparse=dataclasses.replace(
            arch.sparse, groups=arch.sparse.groups[:3] + (bad_group,) + arch.sparse.groups[4:]
        ),
    )
    with pytest.raises(ValueError, match=r"sparse block group 3 \(stage 2\): channels=100 .*\(64, 72, 80, 88\)"):
        space.validate(bad)
    with pytest.raises(ValueError, match="sparse stream: frames=13 but the space has 4"):
        space.validate(presets.x3d("S"))
    with pytest.raises(ValueError, match="the space has a dense stream but the architecture has none"):
        space.validate(Architecture(sparse=arch.replace_groups("sparse", fusion="none").sparse))
    with pytest.raises(ValueError, match=r"sparse\[0\].temporal_kernel = 7 is not allowed; choices are \(1, 3, 5\)"):
        space.architecture({"sparse[0].temporal_kernel": 7})
    with pytest.raises(ValueError, match="Unknown variable"):
        space.architecture({"sparse[0].depth": 3})


def test_bad_specs_are_refused_before_building():
    with pytest.raises(ValueError, match="temporal_kernel"):
        BlockGroup(stage=1, repeats=1, stride=1, channels=8, expansion=2.0, temporal_kernel=4)
    with pytest.raises(ValueError, match="fusion"):
        BlockGroup(stage=1, repeats=1, stride=1, channels=8, expansion=2.0, fusion="add")
    with pytest.raises(ValueError, match="expansion"):
        BlockGroup(stage=1, repeats=1, stride=1, channels=8, expansion=0)
    with pytest.raises(TypeError, match="channels"):
        BlockGroup(stage=1, repeats=1, stride=1, channels=8.5, expansion=2.0)
    with pytest.raises(ValueError, match="fusion choice 'add'"):
        BlockGroupSpace(stage=1, repeats=1, stride=1, channels=(8,), fusion=("none", "add"))
    with pytest.raises(ValueError, match="duplicate"):
        BlockGroupSpace(stage=1, repeats=1, stride=1, channels=(8, 8))
    with pytest.raises(ValueError, match="spatial_kernel"):
        BlockGroupSpace(stage=1, repeats=1, stride=1, channels=(8,), spatial_kernel=(3, 4))
    group = BlockGroup(stage=1, repeats=1, stride=2, channels=8, expansion=2.0, fusion="time_strided_conv")
    stream = Stream(frames=4, stem=Stem(8), groups=(group,), head_channels=16)
    with pytest.raises(ValueError, match="no dense stream"):
        Architecture(sparse=stream)
    dense = Stream(frames=30, stem=Stem(8), groups=(dataclasses.replace(group, fusion="none"),), head_channels=16)
    with pytest.raises(ValueError, match="multiple of sparse frames"):
        Architecture(sparse=stream, dense=dense)
    with pytest.raises(ValueError, match="unknown field"):
        Architecture.from_dict({**presets.x3d("S").to_dict(), "depth": 3})
    with pytest.raises(ValueError, match="not valid JSON"):
        Architecture.from_json("{")


def test_progressive_sub_spaces():
    space = auto_tsnet()
    step1_result = space.sample(seed=5)
    step2 = space.only(2, fixed=step1_result)
    assert step2.size() == space.size(step=2)
    assert step2.size(step=1) == 1 and step2.size(step=3) == 1
    chosen = step2.values(step2.architecture({}), step=1)
    assert chosen == space.values(step1_result, step=1)
    fixed = space.fix(step1_result, step=1)
    assert fixed.size(step=1) == 1 and fixed.size(step=2) == space.size(step=2)
    single = space.single_stream()
    assert single.dense is None and single.size() == space.size(step=1) * 2**6


def test_variants():
    arch = auto_tsnet().sample(seed=4)
    plain = arch.without_attention()
    assert not any(g.attention for _, s in plain.streams() for g in s.groups)
    deep = arch.scale_depth(2)
    assert deep.sparse.depth == 2 * arch.sparse.depth and deep.dense.depth == 2 * arch.dense.depth
    text = arch.table()
    assert "GloRe" in text or "GloRe" not in str(plain)
    assert len(text.splitlines()) == 2 + 2 * (11 + 2) + 1


def test_mini_space_has_the_same_variables_on_a_small_network():
    from tsnet_keras.accounting import complexity
    from tsnet_keras.spaces import auto_tsnet_mini, get_space

    mini, full = get_space("auto_tsnet_mini"), auto_tsnet()
    assert mini == auto_tsnet_mini()
    names = lambda space, step: {v.name for v in space.variables(step=step)}  # noqa: E731
    for step in (1, 2, 3):
        assert names(mini, step) == names(full, step)
    assert len(mini.variables(step=1)) == 6 * 4  # 6 groups x (t, k, channels, expansion)
    assert mini.size(step=3) == 2**6  # 3 attention places per stream
    # 6 groups x 42 kernel/expansion pairs; dense widths 1, 2, 2, 2, 2, 3; 5 fusion places x 4 ops
    assert mini.size(step=2) == 42**6 * (1 * 2 * 2 * 2 * 2 * 3) * 4**5
    arch = mini.sample(seed=3)
    mini.validate(arch)
    assert not full.contains(arch)
    macs = [complexity(mini.sample(seed=s), num_classes=8, crop=64).macs for s in range(20)]
    assert 30e6 < min(macs) and max(macs) < 250e6
    with pytest.raises(ValueError, match="auto_tsnet_mini"):
        get_space("auto_tsnet_tiny")


def test_architecture_validation_names_the_field_and_the_group():
    import math as _math

    from tsnet_keras.presets import x3d

    base = x3d("S").to_dict()

    def refused(error, pattern, change):
        data = json.loads(json.dumps(base))
        change(data)
        with pytest.raises(error, match=pattern):
            Architecture.from_dict(data)

    def set_group(field, value, index=2):
        return lambda data: data["sparse"]["groups"][index].__setitem__(field, value)

    refused(ValueError, r"sparse.groups\[2\]: .*`expansion` must be a finite number", set_group("expansion", _math.nan))
    refused(ValueError, r"sparse.groups\[2\]: .*`expansion` must be a finite number", set_group("expansion", _math.inf))
    refused(ValueError, r"sparse.groups\[1\]: .*inner width .* = 0", set_group("expansion", 0.01, 1))
    refused(TypeError, r"sparse.groups\[2\]: .*`squeeze_excite` must be a number", set_group("squeeze_excite", "x"))
    refused(ValueError, r"sparse.groups\[2\]: .*`stride` must be 1 or 2", set_group("stride", 3))
    refused(TypeError, r"sparse.groups\[0\]: .*`channels` must be an int", set_group("channels", "8", 0))
    refused(TypeError, r"`dropout_rate` must be a number", lambda d: d.__setitem__("dropout_rate", "0.5"))
    refused(TypeError, r"sparse.stem: expected a dict, got NoneType", lambda d: d["sparse"].__setitem__("stem", None))
    refused(TypeError, r"sparse.stem: expected a dict, got str", lambda d: d["sparse"].__setitem__("stem", "x3d"))
    refused(TypeError, r"sparse.groups: expected a list", lambda d: d["sparse"].__setitem__("groups", None))
    refused(TypeError, r"sparse.groups: expected a list", lambda d: d["sparse"].__setitem__("groups", "abc"))
    refused(ValueError, r"sparse.stem: .*`spatial_stride` must be 1 or 2",
            lambda d: d["sparse"]["stem"].__setitem__("spatial_stride", 3))
