"""`video_dataset` end to end on index videos: sampling, one augmentation per clip,
test views, broken files, formats, Keras fit."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.data.conftest import BROKEN
from tests.data.video_files import frame_index, unnormalize
from tsnet_keras.data import DecodeFailures, video_dataset, write_tfrecords

# 64 x 48 index videos: crop 32 after a short side of 40..56.
SMALL = {"crop_size": 32, "jitter": (40, 56)}


def clips_of(dataset, count):
    """Unnormalised `(sparse, dense)` uint8-level arrays of the first `count` clips."""
    sparse, dense, labels = [], [], []
    for inputs, label, *_ in dataset:
        sparse.append(unnormalize(inputs["sparse"]))
        dense.append(unnormalize(inputs["dense"]))
        labels.append(label.numpy())
        if sum(len(batch) for batch in labels) >= count:
            break
    return np.concatenate(sparse)[:count], np.concatenate(dense)[:count], np.concatenate(labels)[:count]


def test_train_clips_follow_the_sampling_arithmetic(video_dir):
    dataset = video_dataset([(video_dir / "long.mp4", 0)] * 12, mode="train", batch_size=4, seed=0, **SMALL)
    sparse, dense, _ = clips_of(dataset, 12)
    assert sparse.shape == (12, 4, 32, 32, 3) and dense.shape == (12, 32, 32, 32, 3)
    starts = []
    for clip_sparse, clip_dense in zip(sparse, dense):
        dense_index, sparse_index = frame_index(clip_dense), frame_index(clip_sparse)
        np.testing.assert_array_equal(np.diff(dense_index), 2)  # stride 2
        np.testing.assert_array_equal(sparse_index, dense_index[::8])  # sparse i = dense 8 i
        assert 0 <= dense_index[0] <= 100 - 64
        starts.append(dense_index[0])
    assert len(set(starts)) > 1


def test_one_crop_and_flip_for_every_frame_of_both_streams(video_dir):
    dataset = video_dataset([(video_dir / "long.mp4", 0)] * 16, mode="train", batch_size=8, seed=3, **SMALL)
    sparse, dense, _ = clips_of(dataset, 16)
    flips, corners = [], set()
    for clip_sparse, clip_dense in zip(sparse, dense):
        frames = np.concatenate([clip_sparse, clip_dense])[..., 1:]  # green/blue: position ramps
        np.testing.assert_allclose(frames, np.broadcast_to(frames[0], frames.shape), atol=3)
        green_row = frames[0, 0, :, 0]
        flipped = green_row[0] > green_row[-1]
        assert np.all(np.diff(green_row) < 0) if flipped else np.all(np.diff(green_row) > 0)
        assert green_row.max() - green_row.min() < 255  # a crop, not the whole width
        flips.append(flipped)
        corners.add((round(float(green_row.min())), round(float(frames[0, 0, 0, 1]))))
    assert 0 < sum(flips) < len(flips)
    assert len(corners) > 3  # crops move from clip to clip


def test_flip_off_keeps_orientation(video_dir):
    dataset = video_dataset([(video_dir / "long.mp4", 0)] * 8, mode="train", batch_size=8, seed=0, flip=False, **SMALL)
    sparse, _, _ = clips_of(dataset, 8)
    assert np.all(sparse[:, :, 0, -1, 1] > sparse[:, :, 0, 0, 1])


def test_same_seed_same_clips_new_epoch_new_clips(video_dir):
    def first(dataset):
        return clips_of(dataset, 4)[1]

    make = lambda: video_dataset([(video_dir / "long.mp4", 0)] * 4, mode="train", batch_size=4, seed=7, **SMALL)  # noqa: E731
    dataset = make()
    epoch_one, epoch_two = first(dataset), first(dataset)
    np.testing.assert_allclose(epoch_one, first(make()), atol=1e-4)
    assert not np.allclose(epoch_one, epoch_two)


def test_val_is_one_centre_clip_and_centre_crop(video_dir):
    dataset = video_dataset([(video_dir / "long.mp4", 5)], mode="val", batch_size=1, **SMALL)
    (inputs, label), = list(dataset)
    dense = unnormalize(inputs["dense"])[0]
    assert label.numpy().tolist() == [5]
    np.testing.assert_array_equal(frame_index(dense), (100 - 64) // 2 + 2 * np.arange(32))
    green = dense[0, 0, :, 1]
    assert abs((green[0] + green[-1]) / 2 - 127.5) < 4  # centred horizontally


@pytest.mark.parametrize("num_crops", [1, 3])
def test_test_views_count_ids_and_positions(video_dir, num_crops):
    videos = [(video_dir / "long.mp4", 0), (video_dir / "other.mp4", 1), (video_dir / "empty.mp4", 2)]
    dataset = video_dataset(videos, mode="test", batch_size=7, num_views=10, num_crops=num_crops, **SMALL)
    video_ids, view_ids, labels, starts, lefts = [], [], [], [], []
    for inputs, label, ids in dataset:
        video_ids.extend(ids["video_id"].numpy())
        view_ids.extend(ids["view_id"].numpy())
        labels.extend(label.numpy())
        dense = unnormalize(inputs["dense"])
        starts.extend(frame_index(dense)[:, 0])
        lefts.extend(dense[:, 0, 0, 0, 1])
        side = 32 if num_crops == 1 else 40  # 3 crops: crop = short side
        assert inputs["dense"].shape[1:] == (32, side, side, 3)
    views = 10 * num_crops
    assert len(video_ids) == 2 * views  # the empty file is skipped and counted
    assert dataset.failures.failed_files == [str(video_dir / "empty.mp4")]
    assert sorted(zip(video_ids, view_ids)) == [(video, view) for video in (0, 1) for view in range(views)]
    assert labels == [0] * views + [1] * views
    clip_starts = np.array(starts[:views]).reshape(10, num_crops)[:, 0]
    np.testing.assert_array_equal(clip_starts, np.round(np.arange(10) * (100 - 64) / 9))
    if num_crops == 3:
        left_levels = np.array(lefts[:3])  # left, centre, right crop of the first clip
        assert left_levels[0] < 3 and left_levels[0] < left_levels[1] < left_levels[2]


def test_single_stream_yields_a_tensor(video_dir):
    dataset = video_dataset([(video_dir / "long.mp4", 0)] * 2, mode="train", batch_size=2, seed=0,
                            sparse_frames=13, sparse_stride=6, dense_frames=None, **SMALL)
    inputs, label = next(iter(dataset))
    assert isinstance(inputs, tf.Tensor) and inputs.shape == (2, 13, 32, 32, 3)
    indices = frame_index(unnormalize(inputs))
    np.testing.assert_array_equal(np.diff(indices, axis=1), 6)


def test_normalisation_uses_kinetics_statistics(video_dir):
    dataset = video_dataset([(video_dir / "long.mp4", 0)], mode="val", batch_size=1, **SMALL)
    inputs, _ = next(iter(dataset))
    red = inputs["dense"].numpy()[0, :, :, :, 0].mean(axis=(1, 2))
    expected = ((2 * ((100 - 64) // 2 + 2 * np.arange(32)) + 1) / 255 - 0.45) / 0.225
    np.testing.assert_allclose(red, expected, atol=2 / 255 / 0.225)
    assert inputs["dense"].dtype == tf.float32


def test_broken_files_are_replaced_in_training_and_counted(video_dir):
    good = ["long.mp4", "other.mp4", "short.mp4", "fast.mp4", "long.mp4", "other.mp4"]
    names = good + list(BROKEN)
    videos = [(video_dir / name, index) for index, name in enumerate(names)]
    dataset = video_dataset(videos, mode="train", batch_size=5, seed=0, **SMALL)
    labels = np.concatenate([label.numpy() for _, label in dataset])
    assert len(labels) == 10  # a full epoch: every broken video replaced by a readable one
    assert set(labels.tolist()) <= set(range(len(good)))
    failures = dataset.failures
    assert sorted(failures.failed_files) == sorted(str(video_dir / name) for name in BROKEN)
    # two threads may try the same broken file at once: each try is counted
    assert failures.num_failed_files == 4 and failures.num_failed >= 4 and failures.num_attempts >= 10
    assert "0 bytes" in failures.errors[str(video_dir / "empty.mp4")]
    assert "4 of" in failures.summary()


def test_short_video_is_padded_not_failed(video_dir):
    dataset = video_dataset([(video_dir / "short.mp4", 0)], mode="val", batch_size=1, **SMALL)
    (inputs, _), = list(dataset)
    np.testing.assert_array_equal(frame_index(unnormalize(inputs["dense"]))[0], [0, 2] + [2] * 30)
    assert dataset.failures.num_failed == 0


def test_mostly_broken_dataset_stops_naming_files(video_dir):
    videos = [(video_dir / "long.mp4", 0)] + [(video_dir / name, 1) for name in BROKEN]
    dataset = video_dataset(videos, mode="val", batch_size=2, **SMALL)
    with pytest.raises(tf.errors.OpError, match="could not be read") as error:
        list(dataset)
    assert "missing.mp4" in str(error.value) or "empty.mp4" in str(error.value)
    lenient = video_dataset(videos, mode="val", batch_size=2, max_failure_fraction=1.0, **SMALL)
    assert sum(len(label) for _, label in lenient) == 1


def test_shared_failure_record(video_dir):
    failures = DecodeFailures(max_failure_fraction=1.0)
    dataset = video_dataset([(video_dir / "text.mp4", 0), (video_dir / "long.mp4", 1)], mode="val",
                            batch_size=2, failures=failures, **SMALL)
    list(dataset)
    assert dataset.failures is failures and failures.failed_files == [str(video_dir / "text.mp4")]


def test_list_file_of_jpeg_frame_folders(tmp_path, frame_folder):
    (tmp_path / "frames.txt").write_text(f"{frame_folder} 3\n")
    dataset = video_dataset(tmp_path / "frames.txt", mode="val", batch_size=1, sparse_frames=4, sparse_stride=4,
                            dense_frames=8, dense_stride=2, **SMALL)
    (inputs, label), = list(dataset)
    assert label.numpy().tolist() == [3]
    np.testing.assert_array_equal(frame_index(unnormalize(inputs["dense"]))[0], 12 + 2 * np.arange(8))


def test_tfrecord_round_trip(tmp_path, video_dir):
    videos = [(video_dir / "long.mp4", 4), (video_dir / "empty.mp4", 1), (video_dir / "other.mp4", 2)]
    written = write_tfrecords(videos, tmp_path / "shards", num_shards=2, jpeg_quality=98, verbose=False)
    assert written.num_videos == 2 and written.failures.failed_files == [str(video_dir / "empty.mp4")]
    assert [path.endswith(f"-of-00002.tfrecord") for path in written.shards] == [True, True]
    assert not list((tmp_path / "shards").glob("*.tmp"))
    val = video_dataset(written.shards, mode="val", batch_size=2, **SMALL)
    (inputs, labels), = list(val)
    assert sorted(labels.numpy().tolist()) == [2, 4]
    for clip, label in zip(unnormalize(inputs["dense"]), labels.numpy()):
        length = 100 if label == 4 else 90
        # JPEG moves colour levels by a step or two: frame indices within 1
        np.testing.assert_allclose(frame_index(clip), (length - 64) // 2 + 2 * np.arange(32), atol=1)
    train = video_dataset(str(tmp_path / "shards" / "*.tfrecord"), mode="train", batch_size=2, seed=0, **SMALL)
    sparse, dense, _ = clips_of(train, 2)
    for clip_sparse, clip_dense in zip(sparse, dense):
        np.testing.assert_allclose(np.diff(frame_index(clip_dense)), 2, atol=2)
        np.testing.assert_array_equal(clip_sparse, clip_dense[::8])  # the very same frames
    test = video_dataset(tmp_path / "shards", mode="test", batch_size=10, num_views=10, num_crops=3, **SMALL)
    assert sum(len(label) for _, label, _ in test) == 2 * 30


def test_fits_a_keras_model_for_one_step(video_dir):
    import keras

    sparse = keras.Input((4, 32, 32, 3), name="sparse")
    dense = keras.Input((32, 32, 32, 3), name="dense")
    pooled = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling3D()(sparse), keras.layers.GlobalAveragePooling3D()(dense)]
    )
    model = keras.Model({"sparse": sparse, "dense": dense}, keras.layers.Dense(3, name="logits")(pooled))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dataset = video_dataset([(video_dir / "long.mp4", 0), (video_dir / "other.mp4", 2)], mode="train",
                            batch_size=2, seed=0, repeat=True, **SMALL)
    history = model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    "kwargs, field",
    [({"mode": "eval"}, "mode"), ({"num_crops": 2}, "num_crops"), ({"jitter": (20, 30)}, "jitter"),
     ({"format": "avi"}, "format"), ({"batch_size": 0}, "batch_size"), ({"test_short_side": 16}, "test_short_side")],
)
def test_invalid_arguments_name_the_field(video_dir, kwargs, field):
    arguments = {"crop_size": 32, "jitter": (40, 56), **kwargs}
    with pytest.raises(ValueError, match=field):
        video_dataset([(video_dir / "long.mp4", 0)], **arguments)


def test_broken_tfrecord_examples_are_skipped_and_counted(tmp_path):
    from tsnet_keras.data import tfrecord

    frames = np.random.default_rng(0).integers(0, 255, (40, 48, 64, 3), dtype=np.uint8)
    good = tfrecord.video_example("good", 1, frames, 30.0)

    def broken(change):
        example = tf.train.Example.FromString(good)
        change(example.features.feature)
        return example.SerializeToString()

    def cut_jpegs(feature):
        values = [data[: len(data) // 2] for data in feature["frames"].bytes_list.value]
        del feature["frames"].bytes_list.value[:]
        feature["frames"].bytes_list.value.extend(values)

    cases = [
        lambda f: f.__delitem__("label"),
        lambda f: f["fps"].float_list.value.__setitem__(0, 0.0),
        lambda f: f["num_frames"].int64_list.value.__setitem__(0, 0),
        lambda f: f["num_frames"].int64_list.value.__setitem__(0, 99),
        lambda f: f["label"].int64_list.value.__setitem__(0, 7),  # num_classes is 3
        cut_jpegs,
    ]
    first, second = str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")
    with tf.io.TFRecordWriter(first) as writer:
        for record in [good] + [broken(case) for case in cases]:
            writer.write(record)
    with tf.io.TFRecordWriter(second) as writer:
        writer.write(good)
        writer.write(good)
    data = open(second, "rb").read()
    open(second, "wb").write(data[: len(data) - 100])  # the second record cut short
    options = dict(num_classes=3, max_failure_fraction=1.0, crop_size=32, jitter=(40, 48),
                   sparse_frames=2, sparse_stride=4, dense_frames=None)
    val = video_dataset([first, second], mode="val", batch_size=1, **options)
    labels = [int(y[0]) for _, y in val]
    assert labels == [1, 1]  # the good example of each shard
    failed = val.failures.failed_files
    assert failed[0] == second  # counted when the dataset is built
    assert sorted(failed[1:]) == sorted(f"{first}#{index}" for index in range(1, 7))
    assert val.failures.num_attempts == 9 and val.failures.num_failed == 7
    assert "no `label`" in val.failures.errors[f"{first}#1"]
    train = video_dataset([first, second], mode="train", batch_size=2, seed=0, **options)
    (_, y), = list(train)
    assert y.numpy().tolist() == [1, 1]


def test_shards_split_the_list_before_decoding(video_dir, monkeypatch):
    from tsnet_keras.data import dataset as dataset_module

    decoded = []
    read = dataset_module._ClipLoader._read

    def recording_read(self, path, select, short_side):
        decoded.append(os.path.basename(path))
        return read(self, path, select, short_side)

    monkeypatch.setattr(dataset_module._ClipLoader, "_read", recording_read)
    names = ["long.mp4", "other.mp4", "fast.mp4", "indexed.mp4", "short.mp4"]
    videos = [(video_dir / name, index) for index, name in enumerate(names)]
    seen = []
    for index in range(2):
        decoded.clear()
        val = video_dataset(videos, mode="val", batch_size=1, shard=(2, index), **SMALL)
        seen.append(sorted(int(label) for _, label in val.unbatch()))
        assert sorted(decoded) == sorted(names[index::2])  # nothing else opened
    assert seen == [[0, 2, 4], [1, 3]]


@pytest.mark.parametrize("shard", [(2, 2), (0, 0), (2,), "1/2", (2, -1), (True, 0)])
def test_a_bad_shard_is_refused_naming_it(video_dir, shard):
    with pytest.raises(ValueError, match="`shard`"):
        video_dataset([(video_dir / "long.mp4", 0)], shard=shard, **SMALL)


def test_more_shards_than_videos_is_refused(video_dir):
    with pytest.raises(ValueError, match="2 videos cannot fill the 3 parts of `shard`"):
        video_dataset([(video_dir / "long.mp4", 0), (video_dir / "other.mp4", 1)], shard=(3, 0),
                      **SMALL)


def test_tfrecords_are_sharded_by_file_or_by_record(tmp_path, video_dir):
    videos = [(video_dir / "long.mp4", 0), (video_dir / "other.mp4", 1), (video_dir / "fast.mp4", 2)]
    one = write_tfrecords(videos, tmp_path / "one", num_shards=1, verbose=False).shards
    three = write_tfrecords(videos, tmp_path / "three", num_shards=3, verbose=False).shards
    for shards in (one, three):
        labels = [sorted(int(label) for _, label in
                         video_dataset(shards, mode="val", batch_size=1, shard=(2, index),
                                       **SMALL).unbatch()) for index in range(2)]
        assert sorted(labels[0] + labels[1]) == [0, 1, 2] and not set(labels[0]) & set(labels[1])


def test_a_tfrecord_frame_that_does_not_decode_is_skipped_and_counted(tmp_path):
    from tsnet_keras.data import tfrecord

    frames = np.random.default_rng(0).integers(0, 255, (40, 48, 64, 3), dtype=np.uint8)
    good = tfrecord.video_example("good", 1, frames, 30.0)
    other_size = tfrecord.video_example("small", 0, frames[:1, :32, :32], 30.0)

    def replace_frames(change):
        example = tf.train.Example.FromString(good)
        values = list(example.features.feature["frames"].bytes_list.value)
        del example.features.feature["frames"].bytes_list.value[:]
        example.features.feature["frames"].bytes_list.value.extend(change(values))
        return example.SerializeToString()

    garbage = b"\xff\xd8" + bytes(range(256)) * 4 + b"\xff\xd9"  # markers right, no image
    smaller = tf.train.Example.FromString(other_size).features.feature["frames"].bytes_list.value[0]
    broken = [replace_frames(lambda v: [garbage] * len(v)),
              replace_frames(lambda v: v[:20] + [smaller] + v[21:])]  # one frame of another size
    path = str(tmp_path / "a.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in [good, *broken, good]:
            writer.write(record)
    options = dict(max_failure_fraction=1.0, crop_size=32, jitter=(40, 48), sparse_frames=40,
                   sparse_stride=1, dense_frames=None, target_fps=None)
    val = video_dataset([path], mode="val", batch_size=1, **options)
    assert [int(y[0]) for _, y in val] == [1, 1]
    assert sorted(val.failures.failed_files) == [f"{path}#1", f"{path}#2"]
    assert val.failures.num_attempts == 4 and val.failures.num_failed == 2
    assert "does not decode" in val.failures.errors[f"{path}#1"]
    train = video_dataset([path], mode="train", batch_size=2, seed=0, **options)
    (_, y), = list(train)
    assert y.numpy().tolist() == [1, 1]
