"""The argument checks of the package, with one message style.

Every check raises with the message

    "{where}: `{name}` must be {what}; got {value!r}."

(`where`, e.g. the layer or record being built, is left out when empty), so an
error always names the bad field and the value it got. A value of the wrong type
raises `ArgumentTypeError`, which is both a `TypeError` and a `ValueError`
(numpy's `AxisError` pattern): callers that catch either keep working. A value of
the right type outside its range raises a `ValueError`. This module imports
nothing of the package: layers, space, data and recipes all use it.
"""

from __future__ import annotations

import math
import numbers


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a `TypeError` and a `ValueError`)."""


def fail(name: str, what: str, value, where: str = "", error=ValueError):
    """Raises `error` with the package's message for field `name`."""
    prefix = f"{where}: " if where else ""
    raise error(f"{prefix}`{name}` must be {what}; got {value!r}.")


def check_int(name: str, value, minimum: int = 1, *, where: str = "", odd: bool = False,
              plain: bool = False) -> int:
    """`value` as an int >= `minimum` (and odd when `odd`), or an error naming `name`.

    `plain=True` accepts Python ints only (not numpy integers), for values kept
    in records that are written to JSON.
    """
    what = f"an {'odd ' if odd else ''}int >= {minimum}"
    integral = int if plain else numbers.Integral
    if isinstance(value, bool) or not isinstance(value, integral):
        fail(name, what, value, where, ArgumentTypeError)
    if value < minimum or (odd and value % 2 != 1):
        fail(name, what, value, where)
    return int(value)


def check_number(name: str, value, minimum: float | None = None, below: float | None = None,
                 *, strict: bool = False, where: str = "", plain: bool = False) -> float:
    """`value` as a finite float within the bounds, or an error naming `name`.

    Bounds: `value >= minimum` (`> minimum` when `strict`) and `value < below`;
    None leaves that side open. `plain=True` accepts Python ints and floats only.
    """
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if strict else '>='} {minimum}")
    if below is not None:
        bounds.append(f"< {below}")
    what = "a number" + (" " + " and ".join(bounds) if bounds else "")
    real = (int, float) if plain else numbers.Real
    if isinstance(value, bool) or not isinstance(value, real):
        fail(name, what, value, where, ArgumentTypeError)
    if not math.isfinite(value):
        fail(name, "a finite" + what[1:], value, where)
    low = minimum is None or (value > minimum if strict else value >= minimum)
    if not (low and (below is None or value < below)):
        fail(name, what, value, where)
    return float(value)


def check_stream_dropout(value, two_streams: bool, *, where: str = "") -> float:
    """`stream_dropout` (the share of clips whose sparse-stream features are dropped) as a
    float in [0, 1); above 0 only where there is a dense stream to learn alone."""
    rate = check_number("stream_dropout", value, 0, below=1, where=where)
    if rate and not two_streams:
        fail("stream_dropout", "0 without a dense stream (it drops the sparse stream's "
             "features for the dense stream to learn alone)", value, where)
    return rate


def check_choice(name: str, value, allowed, *, where: str = ""):
    """`value` when it is one of `allowed`, or an error naming `name` and the choices."""
    if value not in allowed:
        fail(name, "one of " + ", ".join(repr(choice) for choice in allowed), value, where)
    return value


def check_bool(name: str, value, *, where: str = "") -> bool:
    """`value` when it is True or False (not 0 / 1, not a string)."""
    if not isinstance(value, bool):
        fail(name, "True or False", value, where, ArgumentTypeError)
    return value


def check_stride(name: str, value, *, where: str = "") -> int:
    """A spatial stride: 1 or 2 (what the layers build)."""
    if isinstance(value, bool) or value not in (1, 2):
        fail(name, "1 or 2", value, where)
    return int(value)


__all__ = [
    "ArgumentTypeError",
    "check_bool",
    "check_choice",
    "check_int",
    "check_number",
    "check_stride",
    "fail",
]
