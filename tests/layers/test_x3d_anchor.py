"""The layers compose to X3D-S with exactly the anchor's parameter count."""

import keras
import numpy as np
import pytest

from tsnet_keras.layers import ClassificationHead, MBConv3D, StreamHead, VideoStem


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="weight shapes do not depend on the backend; JAX compiles one initializer "
    "per weight shape, about 20 s for X3D-S",
)
def test_x3d_s_parameter_count():
    # anchors.md: X3D-S, 400 classes, 3,794,322 params incl. BN gamma/beta.
    # (Keras count_params() would add the BN moving mean/variance on top.)
    shape = (None, 13, 160, 160, 3)
    layers = [VideoStem(24)]
    for channels, depth in zip((24, 48, 96, 192), (3, 5, 11, 7), strict=True):
        for index in range(depth):
            layers.append(
                MBConv3D(
                    channels,
                    2.25,
                    spatial_stride=2 if index == 0 else 1,
                    squeeze_excite=1 / 16 if index % 2 == 0 else 0.0,
                )
            )
    layers.append(StreamHead(432))
    trainable = 0
    for layer in layers:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
        trainable += sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    head = ClassificationHead(400)
    head.build(shape)
    trainable += sum(int(np.prod(w.shape)) for w in head.trainable_weights)
    assert shape == (None, 432)
    assert trainable == 3_794_322
