"""Super-blocks and the supernet: a fixed choice computes exactly the fixed model."""

import numpy as np
import pytest
import tensorflow as tf

from tests.search.spaces import tiny_single_stream, tiny_two_stream
from tsnet_keras.layers import MBConv3D
from tsnet_keras.layers.super_mbconv3d import SuperMBConv3D
from tsnet_keras.models import build_model
from tsnet_keras.search.supernet import Supernet
from tsnet_keras.space.architecture import FUSION_OPS

CROP = 16
CLASSES = 5


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, size=w.shape).astype("float32"))
        elif w.dtype.startswith("float"):
            w.assign((rng.normal(size=w.shape) * 0.3).astype("float32"))


def _inputs(arch, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    x = {n: rng.normal(size=(batch, s.frames, CROP, CROP, 3)).astype("float32")
         for n, s in arch.streams()}
    return x if arch.dense is not None else x["sparse"]


def _two_stream_architectures(space):
    """One architecture per fusion op (at both places) with GloRe on. The
    "time_strided_sample" one has an identity shortcut right after the concat
    fusion (8 sparse + 8 sampled dense channels = 16 = the next group's width)."""
    archs = []
    for op in FUSION_OPS:
        values = {"sparse[0].fusion": op, "sparse[1].fusion": op, "sparse[1].attention": True,
                  "sparse[2].attention": True, "dense[1].attention": True,
                  "sparse[0].channels": 16, "sparse[1].temporal_kernel": 3,
                  "dense[0].channels": 8, "sparse[2].spatial_kernel": 5}
        if op == "time_strided_sample":
            values.update({"sparse[0].channels": 8, "sparse[1].channels": 16,
                           "sparse[1].expansion": 2.0})
        archs.append(space.architecture(values))
    return archs


def _check_equal(supernet, arch, fixed_space=False):
    model = build_model(arch, num_classes=CLASSES, crop=CROP)
    supernet.copy_to_model(model, arch)
    x = _inputs(arch)
    indices = None if fixed_space else supernet.indices_of(arch)
    for training in (False, True):
        got = np.asarray(supernet(x, indices=indices, training=training, update_statistics=False))
        want = np.asarray(model(x, training=training))
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5)
    return model


@pytest.mark.parametrize("dynamic_shapes", [True, False], ids=["sliced", "masked"])
def test_sparse_only_supernet_equals_fixed_models(dynamic_shapes):
    space = tiny_single_stream()
    supernet = Supernet(space, num_classes=CLASSES, dynamic_shapes=dynamic_shapes)
    _randomize(supernet)
    archs = [space.sample(seed=0), space.extreme(largest=True)]
    archs.append(space.extreme(largest=False))
    for arch in archs:
        _check_equal(supernet, arch)


@pytest.mark.parametrize("dynamic_shapes", [True, False], ids=["sliced", "masked"])
def test_two_stream_supernet_with_fusion_and_attention_equals_fixed_models(dynamic_shapes):
    space = tiny_two_stream()
    supernet = Supernet(space, num_classes=CLASSES, dynamic_shapes=dynamic_shapes)
    _randomize(supernet, seed=1)
    archs = _two_stream_architectures(space)
    after_fusion = supernet.choices_of(archs[2])["sparse_g01_b00"]
    assert after_fusion["in_extra"] == 8 and not after_fusion["projection"]
    for arch in archs:
        _check_equal(supernet, arch)


def test_fully_fixed_supernet_equals_build_model_and_has_static_widths():
    space = tiny_two_stream()
    arch = _two_stream_architectures(space)[3]  # time_strided_conv fusion
    fixed = space.fix(arch, keys=[v.key for v in space.variables()])
    assert fixed.variables() == []
    supernet = Supernet(fixed, num_classes=CLASSES)
    _randomize(supernet, seed=2)
    model = _check_equal(supernet, arch, fixed_space=True)
    # Nothing is wider than the architecture: same number of parameters.
    assert supernet.count_params() == model.count_params()


def test_one_trace_serves_every_architecture():
    space = tiny_single_stream()
    supernet = Supernet(space, num_classes=CLASSES)
    traces = []

    @tf.function
    def forward(x, indices):
        traces.append(1)
        return supernet(x, indices=indices, training=True)

    for seed in range(4):
        arch = space.sample(seed=seed)
        out = forward(_inputs(arch), tf.constant(supernet.indices_of(arch)))
        assert out.shape == (2, CLASSES)
    assert len(traces) == 1


def test_bn_statistics_update_only_the_active_slice():
    block = SuperMBConv3D(16, 32, ((1, 3), (3, 3)), max_in_base=8, max_squeeze_excite_channels=8)
    block.build()
    before = {w.path: np.asarray(w) for w in block.non_trainable_weights}
    x = np.random.default_rng(0).normal(size=(2, 4, 8, 8, 8)).astype("float32")
    # 8 -> 12 channels: projection shortcut.
    block(x, channels=12, inner_channels=20, squeeze_excite_channels=8, kernel_index=0, training=True)
    after = {w.path: np.asarray(w) for w in block.non_trainable_weights}
    width = {"expand_bn": 20, "depthwise_bn": 20, "project_bn": 12, "shortcut_bn": 12}
    for path, value in after.items():
        active = width[path.split("/")[-2]]
        assert not np.array_equal(value[:active], before[path][:active]), path
        np.testing.assert_array_equal(value[active:], before[path][active:])
    # 8 -> 8 channels: identity shortcut, its BN statistics stay.
    block(x, channels=8, inner_channels=16, squeeze_excite_channels=8, kernel_index=1, training=True)
    for w in block.non_trainable_weights:
        if "shortcut_bn" in w.path:
            np.testing.assert_array_equal(np.asarray(w), after[w.path])
    again = {w.path: np.asarray(w) for w in block.non_trainable_weights}
    # Scoring mode: batch statistics, no update at all.
    block(x, channels=16, inner_channels=32, kernel_index=1, training=True, update_statistics=False)
    for w in block.non_trainable_weights:
        np.testing.assert_array_equal(np.asarray(w), again[w.path])


def test_super_block_choice_weights_fill_mbconv3d():
    block = SuperMBConv3D(16, 32, ((1, 3), (3, 5)), max_in_base=8, spatial_stride=2,
                          max_squeeze_excite_channels=8, shortcut="projection")
    block.build()
    fixed = MBConv3D(8, 2.0, temporal_kernel=1, spatial_kernel=3, spatial_stride=2,
                     squeeze_excite=1 / 16)
    fixed.build((None, 4, 8, 8, 8))
    choice = {"in_base": 8, "channels": 8, "inner_channels": 16, "squeeze_excite_channels": 8,
              "temporal_kernel": 1, "spatial_kernel": 3, "projection": True}
    weights = block.choice_weights(choice)
    paths = {w.path.split(fixed.name + "/", 1)[1] for w in fixed.weights}
    assert set(weights) == paths
    # The 1x3x3 choice is the centre of the 3x5x5 kernel.
    np.testing.assert_array_equal(
        weights["depthwise_kernel"], np.asarray(block.depthwise_kernel)[1:2, 1:4, 1:4, :16]
    )
    with pytest.raises(ValueError, match="kernel"):
        block.choice_weights(dict(choice, temporal_kernel=5))


@pytest.mark.parametrize("dynamic_shapes", [True, False])
def test_zero_outer_taps_start_every_kernel_choice_as_the_smallest_and_learn(dynamic_shapes):
    choices = ((1, 3), (3, 3), (5, 3), (3, 5), (5, 5))
    block = SuperMBConv3D(8, 16, choices, max_in_base=8, dynamic_shapes=dynamic_shapes,
                          outer_taps="zeros")
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 6, 8, 8, 8)).astype("float32"))

    def output(index):
        return block(x, channels=8, inner_channels=16, kernel_index=index, training=True,
                     update_statistics=False)

    first = np.asarray(output(0))
    assert np.abs(first).max() > 0
    for index in range(1, len(choices)):
        np.testing.assert_allclose(np.asarray(output(index)), first, atol=1e-6)
    kernel = np.asarray(block.depthwise_kernel)
    outer = np.ones(kernel.shape, bool)
    outer[2, 1:4, 1:4] = False  # the centre 1 x 3 x 3 of the 5 x 5 x 5 kernel
    assert not kernel[outer].any() and np.count_nonzero(kernel[~outer]) == kernel[~outer].size
    # The widest choice's outer taps get a gradient, so they learn when it is sampled
    # (the project BN starts at gamma 0, so the loss reads the depthwise output directly).
    with tf.GradientTape() as tape:
        inner = block._depthwise(tf.concat([x, x], -1), 5, 5, None)  # at the 16 inner channels
        loss = tf.reduce_sum(inner * tf.random.stateless_normal(inner.shape, (1, 2)))
    gradient = np.asarray(tape.gradient(loss, block.depthwise_kernel))
    assert np.count_nonzero(gradient[outer]) == gradient[outer].size


def test_random_outer_taps_are_the_default_and_bad_values_are_refused():
    block = SuperMBConv3D(8, 16, ((1, 3), (5, 5)), max_in_base=8)
    block.build()
    assert np.count_nonzero(np.asarray(block.depthwise_kernel)) == 5 * 5 * 5 * 16
    with pytest.raises(ValueError, match="outer_taps"):
        SuperMBConv3D(8, 16, ((1, 3),), max_in_base=8, outer_taps="ones")
    supernet = Supernet(tiny_single_stream(), num_classes=CLASSES, outer_taps="zeros")
    assert supernet.get_config()["outer_taps"] == "zeros"
    assert Supernet.from_config(supernet.get_config()).outer_taps == "zeros"


def test_layer_configs_hold_every_argument_and_round_trip():
    import keras

    from tsnet_keras.layers.sliced_batch_norm import SlicedBatchNormalization
    from tsnet_keras.layers.super_attention import SuperAttention
    from tsnet_keras.layers.super_stream_head import SuperStreamHead
    from tsnet_keras.layers.super_ts_fusion import SuperTSFusion
    from tsnet_keras.search import ArchitectureDistribution, MaskedSGD

    cases = [
        (SuperMBConv3D, {"max_channels": 16, "max_inner_channels": 32,
                             "kernel_choices": [[1, 3], [3, 5]], "max_in_base": 8, "max_in_extra": 4,
                             "spatial_stride": 2, "max_squeeze_excite_channels": 8,
                             "shortcut": "projection", "activation": "swish",
                             "dynamic_shapes": True, "outer_taps": "zeros"}),
        (SuperAttention, {"max_channels": 16, "normalize": False, "dynamic_shapes": False}),
        (SuperTSFusion, {"fusions": ["none", "time_strided_conv"], "max_dense_channels": 8,
                             "alpha": 2, "conv_kernel": 5, "conv_channel_multiplier": 2,
                             "dynamic_shapes": True}),
        (SuperStreamHead, {"channels": 16, "max_in_base": 8, "max_in_extra": 4, "dynamic_shapes": True}),
        (SlicedBatchNormalization, {"channels": 8, "momentum": 0.8, "epsilon": 1e-3,
                                        "dynamic_shapes": False}),
    ]
    for cls, arguments in cases:
        layer = cls(**arguments)
        config = layer.get_config()
        for key, value in arguments.items():
            assert config[key] == value, (cls.__name__, key)
        assert cls.from_config(config).get_config() == config
    space = tiny_two_stream()
    dist = ArchitectureDistribution(space, num_classes=7, crop=[16, 16])
    restored = ArchitectureDistribution.from_config(dist.get_config())
    assert restored.space == space and restored.crop == (16, 16) and restored.num_classes == 7
    supernet = Supernet(tiny_single_stream(), num_classes=CLASSES, dynamic_shapes=False)
    config = supernet.get_config()
    assert config["num_classes"] == CLASSES and config["dynamic_shapes"] is False
    assert config["outer_taps"] == "random"
    assert Supernet.from_config(config).space == tiny_single_stream()
    optimizer = MaskedSGD(0.1, momentum=0.8, weight_decay=1e-4)
    config = optimizer.get_config()
    assert (config["momentum"], config["weight_decay"]) == (0.8, 1e-4)
    assert keras.optimizers.deserialize(keras.optimizers.serialize(optimizer)).get_config() == config


def test_recalibrate_batch_norm_averages_batch_statistics():
    import keras

    from tsnet_keras.search import recalibrate_batch_norm

    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=i, size=(4, 3)).astype("float32") for i in range(3)]
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    assert recalibrate_batch_norm(model, iter(batches), num_batches=3) == 3
    bn = model.layers[0]
    np.testing.assert_allclose(np.asarray(bn.moving_mean),
                               np.mean([b.mean(0) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.moving_variance),
                               np.mean([b.var(0) for b in batches], 0), rtol=1e-4)
    assert bn.momentum == 0.99  # restored

    # A supernet: only the sampled architecture's slices change.
    space = tiny_single_stream()
    supernet = Supernet(space, num_classes=CLASSES)
    arch = space.extreme(largest=False)
    before = {v.path: np.asarray(v).copy() for v in supernet.non_trainable_variables}
    clips = [_inputs(arch, seed=s) for s in range(2)]
    recalibrate_batch_norm(supernet, clips, 2, call_kwargs={"indices": supernet.indices_of(arch)})
    block = supernet.get_layer("sparse_g00_b00")
    inner = supernet.choices_of(arch)["sparse_g00_b00"]["inner_channels"]
    mean = np.asarray(block.expand_bn.moving_mean)
    assert not np.array_equal(mean[:inner], before[block.expand_bn.moving_mean.path][:inner])
    np.testing.assert_array_equal(mean[inner:], before[block.expand_bn.moving_mean.path][inner:])


@pytest.mark.parametrize("dynamic_shapes", [False, True])
def test_super_block_with_squeeze_excite_computes_the_fixed_block(dynamic_shapes):
    """The search spaces of the supernet tests have no SE: this checks the shared SE math
    (`layers.mbconv3d.squeeze_excite`) of a narrower choice against `MBConv3D`."""
    fixed = MBConv3D(8, 2.0, temporal_kernel=3, spatial_kernel=3, squeeze_excite=0.25)
    fixed.build((None, 4, 8, 8, 8))
    _randomize(fixed, seed=3)
    block = SuperMBConv3D(16, 32, ((3, 3),), max_in_base=8, max_squeeze_excite_channels=16,
                          shortcut="identity", dynamic_shapes=dynamic_shapes)
    block.build()
    _randomize(block, seed=4)
    choice = {"in_base": 8, "channels": 8, "inner_channels": 16,
              "squeeze_excite_channels": fixed.squeeze_excite_channels, "temporal_kernel": 3,
              "spatial_kernel": 3, "projection": False}
    assert choice["squeeze_excite_channels"] == 8  # of 16: the SE width is sliced too
    paths = {w.path.split(fixed.name + "/", 1)[1]: np.asarray(w) for w in fixed.weights}
    block.assign_choice_weights(choice, paths)
    x = np.random.default_rng(5).normal(size=(2, 4, 8, 8, 8)).astype("float32")
    want = np.asarray(fixed(x, training=False))
    got = np.asarray(block(x, channels=8, inner_channels=16, squeeze_excite_channels=8,
                           kernel_index=0, training=False))
    np.testing.assert_allclose(got[..., :8], want, atol=1e-5, rtol=1e-5)


def test_sparse_keep_zero_leaves_the_logits_to_the_dense_stream():
    """Stream dropout's mask: ones change nothing; a zero makes that clip's logits blind to
    its sparse clip (the dense stream alone decides), the other clip's stay as they were."""
    space = tiny_two_stream()
    supernet = Supernet(space, CLASSES)
    _randomize(supernet)
    indices = supernet.indices_of(space.sample(seed=1))
    clips = _inputs(space.sample(seed=1))
    other = dict(clips, sparse=clips["sparse"] + 1.0)

    def logits(x, keep=None):
        return supernet(x, indices=indices, sparse_keep=keep, training=False).numpy()

    np.testing.assert_allclose(logits(clips, np.ones((2, 1), "float32")), logits(clips), atol=1e-6)
    keep = np.array([[0.0], [1.0]], "float32")
    np.testing.assert_allclose(logits(clips, keep)[0], logits(other, keep)[0], atol=1e-6)
    assert np.abs(logits(clips, keep)[1] - logits(other, keep)[1]).max() > 1e-3
    np.testing.assert_allclose(logits(clips, keep)[1], logits(clips)[1], atol=1e-6)


@pytest.mark.parametrize("space_fn", [tiny_single_stream, tiny_two_stream])
def test_shared_features_then_start_compute_the_same_logits(space_fn):
    """The leading layers with no searchable argument (the stems) run once, then any
    architecture continues from their features (`start`): the logits of a plain call."""
    space = space_fn()
    supernet = Supernet(space, CLASSES)
    _randomize(supernet)
    names = [table.name for table in supernet.tables[:supernet.shared_layers]]
    assert names and all(name.endswith("_stem") for name in names)
    clips = _inputs(space.sample(seed=1))
    features, written = supernet.shared_features(clips, training=False)
    assert written and set(written) <= {"sparse", "dense"}
    for seed in (1, 2):
        indices = supernet.indices_of(space.sample(seed=seed))
        np.testing.assert_allclose(
            supernet(features, indices=indices, training=False, start=supernet.shared_layers),
            supernet(clips, indices=indices, training=False), rtol=1e-5, atol=1e-6)
