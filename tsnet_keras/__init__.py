"""tsnet_keras: search and train two-stream video recognition models with Keras 3.

Implements "Searching for Two-Stream Models in Multivariate Space for Video
Recognition" (Auto-TSNet, ICCV 2021). Data flows one way:
`space` (what can be chosen) -> `models` (Keras networks) -> `search` /
training -> evaluation -> report.
"""

__version__ = "0.1.0"

import os  # noqa: E402

from tsnet_keras import presets, spaces  # noqa: E402
from tsnet_keras.accounting import Complexity, complexity  # noqa: E402
from tsnet_keras.checks import check_stream_dropout  # noqa: E402
from tsnet_keras.space import Architecture, auto_tsnet  # noqa: E402
from tsnet_keras.space.rules import DEFAULT_CROP  # noqa: E402


# Suffixes of PyTorch checkpoint files (PyTorchVideo hub `.pyth`, PySlowFast `.pyth`).
TORCH_CHECKPOINT_SUFFIXES = (".pyth", ".pth", ".pt", ".ckpt")


def build_model(
    arch: "Architecture | str",
    num_classes: int | None = None,
    crop: int | None = DEFAULT_CROP,
    weights: "str | os.PathLike | None" = None,
    name: str | None = None,
    stream_dropout: float = 0.0,
):
    """The Keras model of an architecture or of a preset name, optionally with weights.

    Args:
        arch: `Architecture`, or a preset name from `tsnet_keras.presets.names()`
            ("x3d_s", "manual_tsnet_70", "auto_tsnet_s", ...).
        num_classes: int or None. None: 400, or the class count of a PyTorch
            checkpoint in `weights`. A count other than the checkpoint's builds a
            new classifier and loads everything else (fine-tuning).
        crop: int or None. Input height and width; None accepts any size.
        weights: path or None. A Keras `.weights.h5` file (from `model.save_weights`
            or the recipes' `model.weights.h5`), or, for the `x3d_*` presets, a
            PyTorchVideo / PySlowFast checkpoint (`.pyth`, `.pth`, `.pt`, `.ckpt`;
            needs torch).
        name: str or None. Model name; defaults to the preset name.
        stream_dropout: float in [0, 1). Two-stream architectures: the share of
            training clips whose sparse-stream features the classifier drops
            (`tsnet_keras.models.TSNet`). Defaults to 0.0.

    Returns:
        `tsnet_keras.models.TSNet` (a `keras.Model` returning logits).

    Example:

    >>> model = build_model("x3d_xs", num_classes=10, weights="X3D_XS.pyth")
    """
    from tsnet_keras.models import build_model as build_architecture
    from tsnet_keras.models import load_pytorchvideo_x3d

    preset = arch if isinstance(arch, str) else None
    if preset is not None:
        arch = presets.get(preset)
        name = name or preset
    path = None if weights is None else os.fspath(weights)
    if path is not None and path.lower().endswith(TORCH_CHECKPOINT_SUFFIXES):
        if preset is None or not preset.startswith("x3d_"):
            raise ValueError(
                f"build_model: `weights` {path!r} is a PyTorch checkpoint; those load into the "
                f"x3d_* presets only (got {preset or 'an Architecture'!r})."
            )
        check_stream_dropout(stream_dropout, False, where="build_model")  # X3D: one stream
        size = preset[len("x3d_") :].upper()
        return load_pytorchvideo_x3d(path, size=size, num_classes=num_classes, crop=crop)
    model = build_architecture(arch, num_classes=400 if num_classes is None else num_classes,
                               crop=crop, name=name, stream_dropout=stream_dropout)
    if path is not None:
        if not path.endswith(".weights.h5"):
            raise ValueError(
                f"build_model: `weights` must be a Keras `.weights.h5` file or a PyTorch X3D "
                f"checkpoint {TORCH_CHECKPOINT_SUFFIXES}; got {path!r} (load a whole `.keras` "
                "model with keras.saving.load_model)."
            )
        model.load_weights(path)
    return model


__all__ = [
    "Architecture",
    "Complexity",
    "auto_tsnet",
    "build_model",
    "complexity",
    "presets",
    "spaces",
]
