"""Builders that turn an Architecture into a Keras model (fixed: `TSNet`; searchable:
the weight-sharing `Supernet`), and pretrained-weight loaders."""

from tsnet_keras.models.pytorchvideo import load_pytorchvideo_x3d
from tsnet_keras.models.supernet import Supernet, layer_choices
from tsnet_keras.models.tsnet import TSNet, build_model, make_layer
