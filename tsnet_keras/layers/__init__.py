"""Keras 3 layers of the two-stream video models (channels-last 5D tensors)."""

from tsnet_keras.layers.depthwise import depthwise_conv3d
from tsnet_keras.layers.glore import GloRe3D
from tsnet_keras.layers.head import ClassificationHead, StreamHead
from tsnet_keras.layers.mbconv3d import MBConv3D
from tsnet_keras.layers.stem import VideoStem
from tsnet_keras.layers.ts_fusion import TSFusion

__all__ = [
    "ClassificationHead",
    "GloRe3D",
    "MBConv3D",
    "StreamHead",
    "TSFusion",
    "VideoStem",
    "depthwise_conv3d",
]
