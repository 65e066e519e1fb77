"""Every dataset the toolkit hands to Keras has tf.data autotuning off.

With it on, deleting an iterator (the end of every `fit`, `evaluate`, `predict`)
can wait for the autotuning thread's sleep: `tsnet_keras.data.options`.
"""

import numpy as np
import tensorflow as tf

from tsnet_keras.data import video_dataset
from tsnet_keras.data.options import without_autotune
from tsnet_keras.engine import epoch_stream
from tsnet_keras.search import search_dataset


def _autotuned(dataset) -> bool:
    enabled = dataset.options().autotune.enabled
    return enabled is None or bool(enabled)  # None: tf.data's default, on


def _numbers(n):
    return tf.data.Dataset.from_tensor_slices(np.arange(n))


def test_without_autotune_turns_it_off_and_keeps_the_elements():
    dataset = _numbers(6).map(lambda x: x * 2, num_parallel_calls=tf.data.AUTOTUNE)
    assert _autotuned(dataset)
    plain = without_autotune(dataset)
    assert not _autotuned(plain)
    assert [int(x) for x in plain] == [0, 2, 4, 6, 8, 10]


def test_video_dataset_search_dataset_and_the_epoch_stream_have_it_off(video_dir):
    videos = video_dataset([(video_dir / "long.mp4", 0)] * 4, mode="train", batch_size=2,
                           seed=0, crop_size=32, jitter=(40, 56))
    assert not _autotuned(videos)
    assert videos.failures is not None  # the attributes survive
    assert not _autotuned(search_dataset(_numbers(4), _numbers(2)))
    stream = epoch_stream(lambda epoch, skip: _numbers(3).skip(skip), 0, 2, 3)
    assert not _autotuned(stream)
