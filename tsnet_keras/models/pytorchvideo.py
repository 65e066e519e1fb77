"""Pretrained X3D weights from PyTorchVideo (and PySlowFast) checkpoints.

`load_pytorchvideo_x3d(path, size)` reads a PyTorch X3D `state_dict` and returns
the `TSNet` of `presets.x3d(size)` holding the same weights. Layer by layer:

```
PyTorchVideo name                        PySlowFast name                   TSNet layer.weight
blocks.0.conv.conv_t (1x3x3 spatial)     s1.pathway0_stem.conv_xy          sparse_stem.spatial_conv_kernel
blocks.0.conv.conv_xy (5x1x1 channel)    s1.pathway0_stem.conv             sparse_stem.temporal_conv_kernel
blocks.0.norm                            s1.pathway0_stem.bn               sparse_stem.bn
blocks.{s}.res_blocks.{b}.branch2.conv_a s{s+1}.pathway0_res{b}.branch2.a  sparse_g{s-1}_b{b}.expand_kernel
  ... norm_a / conv_b / norm_b.0            a_bn / b / b_bn                   expand_bn / depthwise_kernel / depthwise_bn
  ... norm_b.1.block.0 / .2 (SE)            se.fc1 / se.fc2                   se_reduce_* / se_expand_*
  ... conv_c / norm_c                       c / c_bn                          project_kernel / project_bn
  ... branch1_conv / branch1_norm           branch1 / branch1_bn              shortcut_kernel / shortcut_bn
blocks.5.pool.pre_conv / pre_norm        head.conv_5 / conv_5_bn           sparse_head.kernel / bn
blocks.5.pool.post_conv                  head.lin_5                        classifier.hidden_kernel
blocks.5.proj                            head.projection                   classifier.logits_kernel / bias
```

Two facts of the reference implementations the conversion relies on:

- PyTorchVideo's first block of stage 1 projects its shortcut without a BN
  (its widths match; only the stride differs). The TSNet block has a BN there;
  it is set to the identity (gamma 1, beta 0, mean 0, variance 1 - epsilon).
- Both references end the head with a softmax (PyTorchVideo in every mode); the
  TSNet returns logits. Compare in probability space, or drop the activation.

Outputs equal the PyTorch model's (to float32 round-off) when every strided
convolution sees an odd height and width, i.e. crops of 32k + 1 (161, 193, ...):
PyTorch pads 1 on both sides of a stride-2 3x3 convolution, Keras' "same" pads
0 / 1 on even sizes, a one-pixel shift of the sampling grid. On even crops (160,
182) the converted model sees its input shifted by up to one pixel per stride-2
layer; `docs/pretrained.md` records how far the outputs move.
"""

from __future__ import annotations

import re

import numpy as np

from tsnet_keras.models.tsnet import TSNet
from tsnet_keras.space.presets import X3D_SIZES, x3d
from tsnet_keras.space.plan import MBConvSpec, layer_plan

TORCH_EXTRA = "pip install 'tsnet_keras[torch]'  (or: pip install torch)"

# PySlowFast X3D name -> PyTorchVideo name; the loader reads PyTorchVideo names.
_SLOWFAST_RENAMES = (
    (r"^s1\.pathway0_stem\.conv_xy\.", "blocks.0.conv.conv_t."),
    (r"^s1\.pathway0_stem\.conv\.", "blocks.0.conv.conv_xy."),
    (r"^s1\.pathway0_stem\.bn\.", "blocks.0.norm."),
    (r"^head\.conv_5\.", "blocks.5.pool.pre_conv."),
    (r"^head\.conv_5_bn\.", "blocks.5.pool.pre_norm."),
    (r"^head\.lin_5\.", "blocks.5.pool.post_conv."),
    (r"^head\.projection\.", "blocks.5.proj."),
)
_SLOWFAST_BLOCK = re.compile(r"^s(\d)\.pathway0_res(\d+)\.(.+)$")
_SLOWFAST_BLOCK_PARTS = {
    "branch1": "branch1_conv",
    "branch1_bn": "branch1_norm",
    "branch2.a": "branch2.conv_a",
    "branch2.a_bn": "branch2.norm_a",
    "branch2.b": "branch2.conv_b",
    "branch2.b_bn": "branch2.norm_b.0",
    "branch2.se.fc1": "branch2.norm_b.1.block.0",
    "branch2.se.fc2": "branch2.norm_b.1.block.2",
    "branch2.c": "branch2.conv_c",
    "branch2.c_bn": "branch2.norm_c",
}


def load_pytorchvideo_x3d(
    path, size: str = "S", num_classes: int | None = None, crop: int | None = None
) -> TSNet:
    """The TSNet of X3D-`size` with the weights of a PyTorch X3D checkpoint.

    Args:
        path: str or path-like to a `torch.save` file (PyTorchVideo hub
            `state_dict`, or a PySlowFast checkpoint `{"model_state": ...}`), or
            an already loaded mapping of names to tensors / arrays.
        size: "XS", "S", "M" or "L"; must match the checkpoint's depth.
        num_classes: int or None. None (or the checkpoint's class count) loads
            the classifier too; another count builds a new, freshly initialised
            final linear layer and loads everything else (fine-tuning).
        crop: int or None. Input height and width of the model; None accepts
            any size. Crops of 32k + 1 reproduce PyTorch exactly (module docs).

    Returns:
        `TSNet` (logits; the references end with a softmax).

    Raises:
        ImportError: reading a file needs torch (the `torch` extra).
        ValueError: unknown, missing or mis-shaped weights, naming the key.

    Example:

    >>> model = load_pytorchvideo_x3d("X3D_XS.pyth", size="XS", num_classes=10)
    """
    if size not in X3D_SIZES:
        raise ValueError(f"load_pytorchvideo_x3d: `size` must be one of {tuple(X3D_SIZES)}, got {size!r}.")
    weights = pytorchvideo_names(read_state_dict(path))
    checkpoint_classes = _array(weights, "blocks.5.proj.weight").shape[0]
    _check_depth(weights, size)
    if num_classes is None:
        num_classes = checkpoint_classes
    model = TSNet(x3d(size), num_classes=num_classes, crop=crop, name=f"x3d_{size.lower()}")
    load_into(model, weights, load_logits=num_classes == checkpoint_classes)
    return model


def read_state_dict(path) -> dict:
    """Name -> float array of a checkpoint file (or of a mapping), `module.` stripped."""
    if isinstance(path, dict):
        state = path
    else:
        try:
            import torch
        except ImportError as error:
            raise ImportError(
                f"Reading the PyTorch checkpoint {str(path)!r} needs torch: {TORCH_EXTRA}."
            ) from error
        state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model_state", "state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    arrays = {}
    for name, value in state.items():
        name = name[len("module.") :] if name.startswith("module.") else name
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        arrays[name] = np.asarray(value)
    return arrays


def pytorchvideo_names(weights: dict) -> dict:
    """Renames PySlowFast X3D keys to PyTorchVideo's; PyTorchVideo keys pass through."""
    renamed = {}
    for name, value in weights.items():
        renamed[_pytorchvideo_name(name)] = value
    return renamed


def _pytorchvideo_name(name: str) -> str:
    for pattern, replacement in _SLOWFAST_RENAMES:
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name)
    match = _SLOWFAST_BLOCK.match(name)
    if not match:
        return name
    stage, block, rest = match.groups()
    part, _, leaf = rest.rpartition(".")
    if part not in _SLOWFAST_BLOCK_PARTS:
        raise ValueError(f"load_pytorchvideo_x3d: unknown PySlowFast weight {name!r}.")
    return f"blocks.{int(stage) - 1}.res_blocks.{block}.{_SLOWFAST_BLOCK_PARTS[part]}.{leaf}"


def _check_depth(weights: dict, size: str) -> None:
    expected = [group.repeats for group in x3d(size).sparse.groups]
    found = [
        len({n.split(".")[3] for n in weights if n.startswith(f"blocks.{stage}.res_blocks.")})
        for stage in range(1, 5)
    ]
    if found != expected:
        matching = [s for s in X3D_SIZES if [g.repeats for g in x3d(s).sparse.groups] == found]
        hint = f"; it fits size {' / '.join(matching)}" if matching else ""
        raise ValueError(
            f"load_pytorchvideo_x3d: the checkpoint has {found} blocks per stage but X3D-{size} "
            f"has {expected}{hint}."
        )


def load_into(model: TSNet, weights: dict, load_logits: bool = True) -> None:
    """Assigns PyTorchVideo-named X3D weights to an X3D `TSNet`, checking every name."""
    used = set()

    def take(name, transform=None):
        used.add(name)
        value = _array(weights, name)
        return value if transform is None else transform(value)

    _load_stem(model.get_layer("sparse_stem"), take)
    for spec in layer_plan(model.arch, model.num_classes):
        if isinstance(spec, MBConvSpec):  # X3D is single-stream: the sparse blocks
            prefix = f"blocks.{spec.group + 1}.res_blocks.{spec.block}"
            _load_block(model.get_layer(spec.name), prefix, take, weights)
    head = model.get_layer("sparse_head")
    _assign(head.kernel, take("blocks.5.pool.pre_conv.weight", _pointwise), "blocks.5.pool.pre_conv.weight")
    _load_batch_norm(head.bn, "blocks.5.pool.pre_norm", take)
    classifier = model.get_layer("classifier")
    _assign(classifier.hidden_kernel, take("blocks.5.pool.post_conv.weight", _pointwise), "blocks.5.pool.post_conv.weight")
    if load_logits:
        _assign(classifier.logits_kernel, take("blocks.5.proj.weight", np.transpose), "blocks.5.proj.weight")
        _assign(classifier.logits_bias, take("blocks.5.proj.bias"), "blocks.5.proj.bias")
    else:
        used.update({"blocks.5.proj.weight", "blocks.5.proj.bias"})
    unused = sorted(n for n in set(weights) - used if not n.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(
            f"load_pytorchvideo_x3d: {len(unused)} checkpoint weight(s) have no place in X3D: "
            f"{unused[:8]}{' ...' if len(unused) > 8 else ''}."
        )


def _load_stem(stem, take) -> None:
    # (out, in, 1, k, k) -> (k, k, in, out); (out, 1, t, 1, 1) -> (t, out)
    _assign(
        stem.spatial_conv_kernel,
        take("blocks.0.conv.conv_t.weight", lambda w: w[:, :, 0].transpose(2, 3, 1, 0)),
        "blocks.0.conv.conv_t.weight",
    )
    _assign(
        stem.temporal_conv_kernel,
        take("blocks.0.conv.conv_xy.weight", lambda w: w[:, 0, :, 0, 0].T),
        "blocks.0.conv.conv_xy.weight",
    )
    _load_batch_norm(stem.bn, "blocks.0.norm", take)


def _load_block(layer, prefix: str, take, weights: dict) -> None:
    branch = f"{prefix}.branch2"
    pairs = [
        (layer.expand_kernel, f"{branch}.conv_a.weight", _pointwise),
        (layer.depthwise_kernel, f"{branch}.conv_b.weight", lambda w: w[:, 0].transpose(1, 2, 3, 0)),
        (layer.project_kernel, f"{branch}.conv_c.weight", _pointwise),
    ]
    if layer.squeeze_excite_channels:
        se = f"{branch}.norm_b.1.block"
        pairs += [
            (layer.se_reduce_kernel, f"{se}.0.weight", _pointwise),
            (layer.se_reduce_bias, f"{se}.0.bias", None),
            (layer.se_expand_kernel, f"{se}.2.weight", _pointwise),
            (layer.se_expand_bias, f"{se}.2.bias", None),
        ]
    if layer.use_projection:
        pairs.append((layer.shortcut_kernel, f"{prefix}.branch1_conv.weight", _pointwise))
    for variable, name, transform in pairs:
        _assign(variable, take(name, transform), name)
    _load_batch_norm(layer.expand_bn, f"{branch}.norm_a", take)
    _load_batch_norm(layer.depthwise_bn, f"{branch}.norm_b.0", take)
    _load_batch_norm(layer.project_bn, f"{branch}.norm_c", take)
    if layer.use_projection:
        if f"{prefix}.branch1_norm.weight" in weights:
            _load_batch_norm(layer.shortcut_bn, f"{prefix}.branch1_norm", take)
        else:  # PyTorchVideo: no BN on a projection that only strides
            _identity_batch_norm(layer.shortcut_bn)


def _pointwise(weight):
    """(out, in[, 1, 1, 1]) -> (in, out)."""
    return weight.reshape(weight.shape[0], weight.shape[1]).T


def _load_batch_norm(bn, prefix: str, take) -> None:
    for variable, leaf in (
        (bn.gamma, "weight"),
        (bn.beta, "bias"),
        (bn.moving_mean, "running_mean"),
        (bn.moving_variance, "running_var"),
    ):
        _assign(variable, take(f"{prefix}.{leaf}"), f"{prefix}.{leaf}")


def _identity_batch_norm(bn) -> None:
    channels = bn.gamma.shape[0]
    bn.gamma.assign(np.ones(channels, "float32"))
    bn.beta.assign(np.zeros(channels, "float32"))
    bn.moving_mean.assign(np.zeros(channels, "float32"))
    bn.moving_variance.assign(np.full(channels, 1.0 - bn.epsilon, "float32"))


def _array(weights: dict, name: str) -> np.ndarray:
    if name not in weights:
        raise ValueError(f"load_pytorchvideo_x3d: the checkpoint has no weight {name!r}.")
    return weights[name]


def _assign(variable, value, name: str) -> None:
    if tuple(variable.shape) != tuple(value.shape):
        raise ValueError(
            f"load_pytorchvideo_x3d: weight {name!r} has shape {tuple(value.shape)} after "
            f"conversion but the Keras variable {variable.path!r} has {tuple(variable.shape)}."
        )
    variable.assign(value.astype("float32"))


__all__ = ["load_pytorchvideo_x3d", "load_into", "pytorchvideo_names", "read_state_dict"]
