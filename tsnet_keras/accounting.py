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

from tsnet_keras.space.architecture import Architecture
from tsnet_keras.space.plan import LayerSpec, layer_plan
from tsnet_keras.space.rules import DEFAULT_CROP, FUSION_CONV_KERNEL, same_output_size


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
    """

    name: str
    kind: str
    params: int
    bn_channels: int
    macs: int
    output_shape: tuple


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
            key = layer.name.split("_")[0]
            totals[key] = totals.get(key, 0) + layer.macs
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


def _output_size(height: int, width: int, stride: int) -> tuple:
    return same_output_size(height, stride), same_output_size(width, stride)


def layer_cost(spec: LayerSpec, frames: int, height: int, width: int):
    """(params incl. BN affine, BN channels, MACs, output (T, H, W, C))."""
    cin, cout, opts = spec.in_channels, spec.out_channels, spec.options
    if spec.kind == "stem":
        k, t = opts["spatial_kernel"], opts["temporal_kernel"]
        h, w = _output_size(height, width, spec.spatial_stride)
        positions = frames * h * w
        params = k * k * cin * cout + t * cout
        macs = positions * (k * k * cin * cout + t * cout)
        return params + 2 * cout, cout, macs, (frames, h, w, cout)
    if spec.kind == "mbconv":
        inner, t, k = opts["inner_channels"], opts["temporal_kernel"], opts["spatial_kernel"]
        hidden = opts["se_hidden"]
        h, w = _output_size(height, width, spec.spatial_stride)
        in_positions, out_positions = frames * height * width, frames * h * w
        params = cin * inner + t * k * k * inner + inner * cout
        macs = in_positions * cin * inner + out_positions * (t * k * k * inner + inner * cout)
        bn = 2 * inner + cout
        if hidden:
            params += inner * hidden + hidden + hidden * inner + inner
            macs += 2 * inner * hidden
        if opts["projection"]:
            params += cin * cout
            macs += out_positions * cin * cout
            bn += cout
        return params + 2 * bn, bn, macs, (frames, h, w, cout)
    if spec.kind == "glore":
        state, nodes = opts["state_channels"], opts["num_nodes"]
        positions = frames * height * width
        params = (
            cin * state + state + cin * nodes + nodes  # state and projection convs
            + nodes * nodes + nodes + state * state  # graph convolution
            + state * cin  # extend conv
        )
        macs = (
            positions * cin * (state + nodes)
            + 2 * positions * state * nodes  # project to nodes and back
            + state * nodes * (nodes + state)
            + positions * state * cin
        )
        return params + 2 * cin, cin, macs, (frames, height, width, cin)
    if spec.kind == "fusion":
        out = (frames, height, width, cout)
        if opts["operation"] != "time_strided_conv":
            return 0, 0, 0, out
        dense, fused = opts["dense_channels"], opts["fused_channels"]
        params = FUSION_CONV_KERNEL * dense * fused
        return params + 2 * fused, fused, frames * height * width * params, out
    if spec.kind == "stream_head":
        params = cin * cout
        return params + 2 * cout, cout, frames * height * width * params, (1, 1, 1, cout)
    if spec.kind == "classifier":
        hidden = opts["hidden_units"]
        params = cin * hidden + hidden * cout + cout
        return params, 0, cin * hidden + hidden * cout, (cout,)
    raise ValueError(f"Unknown layer kind {spec.kind!r}.")


def _crop_size(crop) -> tuple:
    """`(height, width)` ints from an int, an integral float or a pair; errors name `crop`."""
    pair = (crop, crop) if isinstance(crop, numbers.Number) else crop
    try:
        pair = tuple(pair)
    except TypeError:
        raise ValueError(f"`crop` must be an int or (height, width), got {crop!r}.") from None
    if len(pair) != 2:
        raise ValueError(f"`crop` must be an int or (height, width), got {crop!r}.")
    sizes = []
    for value in pair:
        integral = (isinstance(value, numbers.Real) and not isinstance(value, bool)
                    and math.isfinite(value) and float(value) == int(value))
        if not integral or value < 1:
            raise ValueError(f"`crop` must be positive whole pixels (an int or (height, width)), "
                             f"got {crop!r}.")
        sizes.append(int(value))
    return tuple(sizes)


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
        if spec.kind in ("fusion", "classifier"):
            stream = "sparse"
        else:
            stream = spec.stream
        h, w = size[stream]
        params, bn, macs, out = layer_cost(spec, frames[stream], h, w)
        if spec.kind in ("stem", "mbconv"):
            size[stream] = out[1:3]
        layers.append(LayerCost(spec.name, spec.kind, params, bn, macs, out))
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
