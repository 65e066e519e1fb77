"""Analytic parameter and FLOPs (multiply-add) accounting, without building a model.

Convention (anchors.md; X3D, SlowFast and fvcore count the same way): one
"FLOP" is one fused multiply-add (MAC) of a convolution, a fully connected
layer or a matrix product (GloRe's projections), for ONE view (one clip, one
crop). Batch norm, activations, pooling, padding copies and residual additions
are not counted. "GFLOPs x views" in the paper multiplies the one-view figure
by the number of test views.

Parameters:

- `params`: trainable parameters including BN gamma/beta (the figure papers
  and PyTorch report; X3D-S: 3,794,322);
- `params_conv_fc`: convolutions and fully connected layers only (3,762,858);
- `params_keras`: what `keras.Model.count_params()` reports, which also counts
  BN moving mean and variance (non-trainable).

Every count follows `layer_plan`, the same plan the model builder instantiates.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from tsnet_keras.checks import fail
from tsnet_keras.space.architecture import Architecture
from tsnet_keras.space.plan import Cost, LayerSpec, layer_plan
from tsnet_keras.space.rules import DEFAULT_CROP


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer of the plan.

    Args:
        name: layer name (as in the built model).
        kind: layer kind ("stem", "mbconv", ...).
        params: trainable parameters including BN gamma/beta.
        bn_channels: channels normalised by batch norms inside the layer.
        macs: multiply-adds for one view.
        output_shape: (frames, height, width, channels) after the layer.
        part: the stream the cost belongs to ("sparse", "dense"), or "fusion" /
            "classifier" (`LayerSpec.part`).
    """

    name: str
    kind: str
    params: int
    bn_channels: int
    macs: int
    output_shape: tuple
    part: str = ""


@dataclass(frozen=True)
class Complexity:
    """Params and MACs of an architecture, with a per-layer breakdown.

    Attributes:
        params: trainable params incl. BN gamma/beta.
        params_conv_fc: params of convolutions and FC layers only.
        params_keras: `count_params()` of the built model (adds BN moving stats).
        macs: multiply-adds of one view.
        layers: tuple of `LayerCost`.
    """

    params: int
    params_conv_fc: int
    params_keras: int
    macs: int
    layers: tuple

    @property
    def gflops(self) -> float:
        """One-view GMACs (the paper's "GFLOPs")."""
        return self.macs / 1e9

    def by_stream(self) -> dict:
        """MACs per stream ("sparse", "dense") plus "fusion" and "classifier"."""
        totals = {}
        for layer in self.layers:
            totals[layer.part] = totals.get(layer.part, 0) + layer.macs
        return totals

    def table(self) -> str:
        """Per-layer breakdown as text."""
        lines = [f"{'layer':<22}{'params':>12}{'MMACs':>12}  output (T, H, W, C)"]
        for layer in self.layers:
            lines.append(
                f"{layer.name:<22}{layer.params:>12,}{layer.macs / 1e6:>12.2f}  {layer.output_shape}"
            )
        lines.append(f"{'total':<22}{self.params:>12,}{self.macs / 1e6:>12.2f}")
        return "\n".join(lines)


def layer_cost(spec: LayerSpec, frames: int, height: int, width: int) -> Cost:
    """(params incl. BN affine, BN channels, MACs, output (T, H, W, C)): `spec.cost(...)`."""
    return spec.cost(frames, height, width)


def _whole_pixels(value) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and float(value) == int(value) and value >= 1)


def _crop_size(crop) -> tuple:
    """`(height, width)` ints from an int, an integral float or a pair; errors name `crop`."""
    pair = (crop, crop) if isinstance(crop, numbers.Number) else crop
    try:
        pair = tuple(pair)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(_whole_pixels(value) for value in pair):
        fail("crop", "positive whole pixels: an int or (height, width)", crop)
    return tuple(int(value) for value in pair)


def complexity(
    arch: Architecture,
    num_classes: int = 400,
    crop: int | tuple = DEFAULT_CROP,
) -> Complexity:
    """Params and one-view MACs of `arch`, computed from its layer plan.

    Args:
        arch: `Architecture`.
        num_classes: int. Classifier outputs. Defaults to 400 (Kinetics-400).
        crop: int or (height, width). Input crop. Defaults to 160 (training
            crop of X3D-S and Auto-TSNet); use the test crop (182 for -S, 256 for
            -M, 356 for -L) for the "GFLOPs x views" tables.

    Returns:
        `Complexity`.

    Example:

    >>> c = complexity(tsnet_keras.presets.x3d("S"), crop=160)
    >>> c.params, round(c.gflops, 3)
    (3794322, 1.963)
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"complexity expects an Architecture, got {type(arch).__name__}.")
    height, width = _crop_size(crop)
    frames = {name: stream.frames for name, stream in arch.streams()}
    size = {name: (height, width) for name in frames}
    layers = []
    for spec in layer_plan(arch, num_classes):
        stream = spec.input_stream
        cost = spec.cost(frames[stream], *size[stream])
        size[stream] = spec.output_size(*size[stream])
        layers.append(LayerCost(spec.name, spec.kind, *cost, part=spec.part))
    params = sum(layer.params for layer in layers)
    bn = sum(layer.bn_channels for layer in layers)
    return Complexity(
        params=params,
        params_conv_fc=params - 2 * bn,
        params_keras=params + 2 * bn,
        macs=sum(layer.macs for layer in layers),
        layers=tuple(layers),
    )


def views_gflops(arch: Architecture, crop: int, clips: int = 10, crops: int = 3, **kwargs) -> str:
    """The paper's "GFLOPs x views" string, e.g. "2.7 x 30"."""
    one = complexity(arch, crop=crop, **kwargs).gflops
    return f"{one:.1f} x {clips * crops}"


__all__ = ["Complexity", "LayerCost", "complexity", "layer_cost", "views_gflops"]
