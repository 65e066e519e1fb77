"""Builders that turn an Architecture into a Keras model."""

from tsnet_keras.models.tsnet import TSNet, build_model, make_layer
