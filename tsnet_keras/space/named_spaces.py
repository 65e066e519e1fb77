"""Named search spaces.

- `auto_tsnet()`: the paper's space (Tables 1 and 2).
- `auto_tsnet_mini()`: the same variables on a small network, for CPUs and the
  built-in synthetic dataset (the recipes' default).
"""

from tsnet_keras.space.auto_tsnet import auto_tsnet, auto_tsnet_mini

SPACES = {"auto_tsnet": auto_tsnet, "auto_tsnet_mini": auto_tsnet_mini}


def get_space(name: str, **kwargs):
    """Returns the named space (`"auto_tsnet"` or `"auto_tsnet_mini"`)."""
    if name not in SPACES:
        raise ValueError(f"Unknown search space {name!r}; choose one of {sorted(SPACES)}.")
    return SPACES[name](**kwargs)


__all__ = ["auto_tsnet", "auto_tsnet_mini", "get_space", "SPACES"]
