"""Named search spaces (`tsnet_keras.spaces.auto_tsnet()`)."""

from tsnet_keras.space.auto_tsnet import auto_tsnet

__all__ = ["auto_tsnet"]
