"""Normalisation and clip augmentation against NumPy references."""

import numpy as np
import pytest
import tensorflow as tf

from tsnet_keras.data import augment


@pytest.mark.parametrize(
    "mean, std", [(augment.KINETICS_MEAN, augment.KINETICS_STD), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
)
def test_normalize_matches_numpy(mean, std):
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 3, 5, 4, 3), dtype=np.uint8)
    expected = (frames / 255.0 - np.array(mean)) / np.array(std)
    result = augment.normalize(tf.constant(frames), mean, std)
    assert result.dtype == tf.float32
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-5)


def test_crop_and_flip_is_one_draw_for_all_frames():
    frames = np.random.default_rng(1).integers(0, 256, size=(6, 20, 30, 3), dtype=np.uint8)
    for seed in range(8):
        cropped, (top, left, flipped) = augment.random_crop_and_flip(tf.constant(frames), 16, tf.constant(seed, tf.int64), True)
        top, left = int(top), int(left)
        expected = frames[:, top : top + 16, left : left + 16]
        if bool(flipped):
            expected = expected[:, :, ::-1]
        np.testing.assert_array_equal(cropped.numpy(), expected)
