"""Clip augmentation in TensorFlow graph ops: one random draw per clip.

Keras' preprocessing layers (RandomCrop, RandomFlip, ...) take images; given a
clip they draw independent parameters for every frame, which tears a clip apart.
Here one transformation is drawn per clip, from a per-clip seed with stateless
ops (reproducible, and different in every epoch because the seed is), and
applied to every frame of both streams:

    short side s ~ U{jitter[0], ..., jitter[1]}   (done in the decoder)
    crop (top, left) uniform over the resized frame, crop_size x crop_size
    horizontal flip with probability 1/2 (off for Something-Something-V2)

then pixels become float32 in [0, 1], normalised with the Kinetics mean and
standard deviation of PySlowFast.
"""

from __future__ import annotations

import tensorflow as tf

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


def _seed(clip_seed, salt: int):
    return tf.stack([tf.cast(clip_seed, tf.int64), tf.constant(salt, tf.int64)])


def random_short_side(clip_seed, jitter) -> tf.Tensor:
    """Short-side length for a clip, uniform over the integers in `jitter` (inclusive)."""
    low, high = int(jitter[0]), int(jitter[1])
    return tf.random.stateless_uniform([], _seed(clip_seed, 1), minval=low, maxval=high + 1, dtype=tf.int32)


def resize_short_side(frames: tf.Tensor, short_side) -> tf.Tensor:
    """Resizes uint8 frames `(T, H, W, 3)` so the short side is `short_side`.

    Frames that already have that short side (the video decoder resizes) pass
    through untouched.
    """
    shape = tf.shape(frames)
    height, width = shape[1], shape[2]
    short_side = tf.cast(short_side, tf.int32)

    def resize():
        scale = tf.cast(short_side, tf.float32) / tf.cast(tf.minimum(height, width), tf.float32)
        new_height = tf.maximum(short_side, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
        new_width = tf.maximum(short_side, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
        new_height = tf.where(height <= width, short_side, new_height)
        new_width = tf.where(height <= width, new_width, short_side)
        resized = tf.image.resize(frames, tf.stack([new_height, new_width]), method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    return tf.cond(tf.equal(tf.minimum(height, width), short_side), lambda: frames, resize)


def random_crop_and_flip(frames: tf.Tensor, crop_size: int, clip_seed, flip: bool):
    """One random crop (and flip) of a clip, the same for every frame.

    Args:
        frames: `(T, H, W, C)` tensor with `H, W >= crop_size`.
        crop_size: int. Side of the square crop.
        clip_seed: int64 scalar tensor, the clip's seed.
        flip: bool. Whether to flip horizontally with probability 1/2.

    Returns:
        `(cropped, (top, left, flipped))`: `(T, crop_size, crop_size, C)` and the
        drawn parameters.
    """
    shape = tf.shape(frames)
    top = tf.random.stateless_uniform([], _seed(clip_seed, 2), minval=0, maxval=shape[1] - crop_size + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], _seed(clip_seed, 3), minval=0, maxval=shape[2] - crop_size + 1, dtype=tf.int32)
    cropped = frames[:, top : top + crop_size, left : left + crop_size, :]
    flipped = tf.constant(False)
    if flip:
        flipped = tf.random.stateless_uniform([], _seed(clip_seed, 4)) < 0.5
        cropped = tf.cond(flipped, lambda: tf.reverse(cropped, axis=[2]), lambda: cropped)
    return cropped, (top, left, flipped)


def crop_offsets(height, width, crop_size: int, crop_index, num_crops: int):
    """Top-left corner of test crop `crop_index` of `num_crops` (1: centre; 3: left/centre/right).

    With 3 crops the crops are spread along the longer axis (top/centre/bottom
    for portrait frames), as in PySlowFast's `uniform_crop`.
    """
    centre_top = (height - crop_size) // 2
    centre_left = (width - crop_size) // 2
    if num_crops == 1:
        return centre_top, centre_left
    # index 0, 1, 2 -> start, centre, end of the longer axis
    along = lambda length: tf.gather(tf.stack([0, (length - crop_size) // 2, length - crop_size]), crop_index)  # noqa: E731
    landscape = width >= height
    top = tf.where(landscape, centre_top, along(height))
    left = tf.where(landscape, along(width), centre_left)
    return top, left


def normalize(frames: tf.Tensor, mean=KINETICS_MEAN, std=KINETICS_STD) -> tf.Tensor:
    """uint8 frames -> float32 `(x / 255 - mean) / std`, channel-wise.

    Computed as one multiply-add, `x * scale + offset`. Broadcasting a `(3,)`
    vector over the channel axis is 2-5x slower than scalar ops on TF's CPU
    kernels (it was most of the pipeline's overhead), so equal statistics for
    all channels (the Kinetics default) use scalars and unequal ones `bias_add`.
    """
    mean, std = [float(value) for value in mean], [float(value) for value in std]
    scale = [1.0 / (255.0 * value) for value in std]
    offset = [-m / s for m, s in zip(mean, std)]
    frames = tf.cast(frames, tf.float32)
    if len(set(scale)) == 1 and len(set(offset)) == 1:
        return frames * scale[0] + offset[0]
    return tf.nn.bias_add(frames * tf.constant(scale, tf.float32), tf.constant(offset, tf.float32))
