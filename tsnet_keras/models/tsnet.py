"""Builders that turn an `Architecture` into a Keras model."""

from __future__ import annotations

import dataclasses

import keras

from tsnet_keras.checks import check_stream_dropout, fail
from tsnet_keras.space.architecture import Architecture
from tsnet_keras.space.plan import LOGITS, ClassifierSpec, LayerSpec, layer_plan
from tsnet_keras.space.rules import DEFAULT_CROP


def make_layer(spec: LayerSpec) -> keras.layers.Layer:
    """The Keras layer for one entry of the layer plan: `spec.make_layer()`."""
    return spec.make_layer()


@keras.saving.register_keras_serializable(package="tsnet_keras")
class TSNet(keras.Model):
    """A single- or two-stream video classifier built from an `Architecture`.

    The model is a functional graph that follows `layer_plan(architecture)`:

    ```
    sparse (B, T_s, H, W, 3) ─ stem ─ groups ─ ... ─ head conv ─ pool ─┐
                                         ↑ TS-Fusion                   concat ─ FC ─ logits
    dense  (B, T_d, H, W, 3) ─ stem ─ groups ─ ... ─ head conv ─ pool ─┘
    ```

    Args:
        architecture: `Architecture` or its `to_dict()` form. Stored as a plain
            dict in the config, so `model.save` / `keras.saving.load_model`
            restores any searched network.
        num_classes: int. Defaults to 400.
        crop: int or None. Input height and width; None accepts any size.
        stream_dropout: float in [0, 1). Two-stream only: in training, each clip's
            pooled sparse-stream features are zeroed with this probability before
            the classifier (`ClassificationHead`), so the dense stream learns to
            classify alone. Defaults to 0.0.

    Inputs:
        Two-stream: a dict `{"sparse": (B, T_s, H, W, 3), "dense": (B, T_d, H, W, 3)}`.
        Single-stream: one tensor `(B, T_s, H, W, 3)`.

    Returns:
        Logits `(B, num_classes)`.

    Example:

    >>> model = TSNet(tsnet_keras.presets.x3d("XS"), num_classes=10, crop=112)
    >>> model(np.zeros((1, 4, 112, 112, 3))).shape
    TensorShape([1, 10])
    """

    def __init__(self, architecture, num_classes: int = 400, crop: int | None = DEFAULT_CROP,
                 stream_dropout: float = 0.0, **kwargs):
        arch = Architecture.from_dict(architecture)
        if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < 1):
            fail("crop", "a positive int or None", crop)
        plan = _with_stream_dropout(layer_plan(arch, num_classes), arch, stream_dropout)

        inputs = {
            name: keras.Input((stream.frames, crop, crop, 3), name=name)
            for name, stream in arch.streams()
        }
        features = dict(inputs)
        for spec in plan:
            spec.store(features, spec.make_layer()(spec.inputs(features)))
        logits = features[LOGITS]
        model_inputs = inputs if arch.dense is not None else inputs["sparse"]
        super().__init__(inputs=model_inputs, outputs=logits, **kwargs)
        self.architecture = arch.to_dict()
        self.num_classes = num_classes
        self.crop = crop
        self.stream_dropout = stream_dropout

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "crop": self.crop,
            "stream_dropout": self.stream_dropout,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def arch(self) -> Architecture:
        """The model's `Architecture`."""
        return Architecture.from_dict(self.architecture)


def _with_stream_dropout(plan: list, arch: Architecture, rate) -> list:
    """`plan` with the classifier's `stream_dropout` at `rate`; refused for one stream."""
    rate = check_stream_dropout(rate, arch.dense is not None, where="TSNet")
    return [dataclasses.replace(spec, stream_dropout=rate) if isinstance(spec, ClassifierSpec)
            else spec for spec in plan]


def build_model(
    arch: Architecture,
    num_classes: int = 400,
    crop: int | None = DEFAULT_CROP,
    name: str | None = None,
    stream_dropout: float = 0.0,
) -> TSNet:
    """Builds the Keras model of `arch`.

    Args:
        arch: `Architecture` (e.g. from `tsnet_keras.presets` or a search).
        num_classes: int. Defaults to 400.
        crop: int or None. Input spatial size; None for any size.
        name: optional model name.
        stream_dropout: float in [0, 1), see `TSNet`. Defaults to 0.0.

    Returns:
        `TSNet` (a `keras.Model`).
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"build_model expects an Architecture, got {type(arch).__name__}.")
    return TSNet(arch, num_classes=num_classes, crop=crop, stream_dropout=stream_dropout,
                 name=name)


__all__ = ["TSNet", "build_model", "make_layer"]
