"""Small deterministic datasets for the search tests."""

import numpy as np
import tensorflow as tf


def clip_dataset(size, batch, frames=4, crop=8, classes=5, seed=0, dense_frames=None):
    """A deterministic tf.data pipeline of random clips and labels."""
    rng = np.random.default_rng(seed)
    sparse = rng.normal(size=(size, frames, crop, crop, 3)).astype("float32")
    labels = rng.integers(0, classes, size).astype("int32")
    x = sparse
    if dense_frames:
        x = {"sparse": sparse,
             "dense": rng.normal(size=(size, dense_frames, crop, crop, 3)).astype("float32")}
    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(batch)
