"""tsnet_keras: search and train two-stream video recognition models with Keras 3.

Implements "Searching for Two-Stream Models in Multivariate Space for Video
Recognition" (Auto-TSNet, ICCV 2021). Data flows one way:
`space` (what can be chosen) -> `models` (Keras networks) -> `search` /
training -> evaluation -> report.
"""

__version__ = "0.1.0"

from tsnet_keras import presets, spaces  # noqa: E402
from tsnet_keras.accounting import Complexity, complexity  # noqa: E402
from tsnet_keras.space import Architecture, auto_tsnet  # noqa: E402


def build_model(*args, **kwargs):
    """Builds the Keras model of an architecture; see `tsnet_keras.models.build_model`."""
    from tsnet_keras.models import build_model as _build_model

    return _build_model(*args, **kwargs)


__all__ = [
    "Architecture",
    "Complexity",
    "auto_tsnet",
    "build_model",
    "complexity",
    "presets",
    "spaces",
]
