"""The searchable network over a `TwoStreamSpace`: one super-block per layer of the plan.

```
indices (V,) ─ look-up in the layer tables ─> per-layer widths, kernels, ops
sparse clip ─ stem ─ SuperMBConv3D ... ─ [SuperAttention] ─ (SuperTSFusion) ─ ... ─ SuperStreamHead ─┐
                                                                  ↑                              classifier
dense clip ── stem ─ SuperMBConv3D ... ─ [SuperAttention] ────────┴─────────── ... ─ SuperStreamHead ─┘
```

The supernet has the layers of the space's "maximal" plan (every GloRe and
fusion place that some architecture uses), named as `layer_plan` names them.
`call(inputs, indices)` runs the architecture whose searchable variables take
the choice `indices[v]` (in `space.variables()` order): every per-layer setting
is a look-up of `layer_tables` with tensor indices, so a TensorFlow step traces
once for all architectures. With every variable fixed, the supernet computes
exactly what `build_model(arch)` computes given the same weights
(`copy_to_model`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tsnet_keras.layers.head import sparse_dropped
from tsnet_keras.layers.sliced_batch_norm import default_dynamic_shapes
from tsnet_keras.layers.super_attention import SuperAttention
from tsnet_keras.layers.super_mbconv3d import DEFAULT_OUTER_TAPS, SuperMBConv3D
from tsnet_keras.layers.super_stream_head import SuperStreamHead
from tsnet_keras.layers.super_ts_fusion import SuperTSFusion
from tsnet_keras.space.architecture import Architecture
from tsnet_keras.space.layer_tables import layer_tables
from tsnet_keras.space.plan import (
    LOGITS,
    ClassifierSpec,
    FusionSpec,
    GloReSpec,
    MBConvSpec,
    StemSpec,
    StreamHeadSpec,
)
from tsnet_keras.space.rules import FUSION_OPS
from tsnet_keras.space.search_space import space_from_dict, space_to_dict


@keras.saving.register_keras_serializable(package="tsnet_keras")
class Supernet(keras.Model):
    """Weight-sharing network over every architecture of a `TwoStreamSpace`.

    Args:
        space: `TwoStreamSpace` (or its `space_to_dict` form). Fixed variables
            (one choice) cost nothing at run time.
        num_classes: int. Defaults to 400.
        dynamic_shapes: bool or None. None: True on TensorFlow (compute only the
            sampled widths); False masks at the widest widths (JAX, torch).
        outer_taps: "random" (default) or "zeros": how the depthwise taps outside
            the smallest kernel choice start (`SuperMBConv3D`).
        **kwargs: `keras.Model` arguments.

    Call arguments:
        inputs: two-stream: dict `{"sparse": (B, T_s, H, W, 3), "dense": (B, T_d, H, W, 3)}`;
            single-stream: a tensor or a dict with "sparse".
        indices: int tensor (V,): the choice index of every searchable variable
            (`space.variables()` order); may be omitted when V = 0.
        training: bool.
        update_statistics: bool. Update BN moving statistics when training.
            Defaults to True. With `training=True, update_statistics=False` (scoring a sampled architecture) BN normalises
            with batch statistics and leaves the moving ones alone (the stem's too),
            and dropout is off.
        sparse_keep: None or `(B, 1)` float 0/1: multiplies each clip's pooled
            sparse-stream features before the classifier (stream dropout, see
            `ParsecSearch`'s `stream_dropout`). Two-stream supernets only.
        dropout_draws: None or `(B, hidden_units)` uniform draws in [0, 1): the
            classifier's dropout mask (`ClassificationHead`), drawn by a caller that
            seeds it per call; None: the head's own `Dropout`.
        start: int. Defaults to 0. With `start` > 0, `inputs` are the features after
            the first `start` plan layers (`shared_features`): K architectures on the
            same clips run their `shared_layers` (the stems) once (`ParsecSearch`).

    Returns:
        Logits `(B, num_classes)`.

    Example:

    >>> supernet = Supernet(space, num_classes=10)
    >>> logits = supernet(clips, indices=dist.sample_indices(noise), training=True)
    >>> model = build_model(arch, 10, crop=112)
    >>> supernet.copy_to_model(model, arch)   # the sampled network, standalone
    """

    def __init__(self, space, num_classes: int = 400, dynamic_shapes=None,
                 outer_taps=DEFAULT_OUTER_TAPS, **kwargs):
        super().__init__(**kwargs)
        self.space = space_from_dict(space)
        self.num_classes = num_classes
        self.dynamic_shapes = default_dynamic_shapes() if dynamic_shapes is None else dynamic_shapes
        self.outer_taps = outer_taps
        if self.space.dense is not None and self.space.fusion_merge != "concat":
            raise ValueError(
                "Supernet supports fusion_merge='concat' only (a sum merge constrains the "
                f"widths jointly); got {self.space.fusion_merge!r}."
            )
        self.keys = tuple(v.key for v in self.space.variables())
        self.tables = layer_tables(self.space, num_classes)
        self._blocks = [_block_of(table) for table in self.tables]
        self._lookups = [_make_lookup(table, block, self.keys)
                         for table, block in zip(self.tables, self._blocks)]
        self.plan_layers = [block.make(table, self.dynamic_shapes, outer_taps=outer_taps)
                            for table, block in zip(self.tables, self._blocks)]
        self._build_all()

    # ------------------------------------------------------------ building
    def _build_all(self):
        # Every weight exists before the first step (tf.distribute needs it).
        pooled = []
        for table, layer, block in zip(self.tables, self.plan_layers, self._blocks):
            block.build(layer, table, pooled)
        self.built = True

    # ---------------------------------------------------------------- call
    def layer_arguments(self, index, indices):
        """Per-call arguments of plan layer `index` for the choice `indices`."""
        return self._layer_arguments(index, self._index_values(indices))

    def _index_values(self, indices):
        """`indices` as a list of int32 scalars, split once per call (one op, not one per use)."""
        if not self.keys:
            return []
        return ops.unstack(ops.cast(indices, "int32"), len(self.keys))

    def _layer_arguments(self, index, index_values):
        lookup = self._lookups[index]
        if lookup is None:
            return {}
        if not lookup["searchable"]:
            return {n: int(v) for n, v in zip(lookup["names"], lookup["packed"][0])}
        flat = None
        for position, stride in lookup["searchable"]:
            term = index_values[position] * stride if stride != 1 else index_values[position]
            flat = term if flat is None else flat + term
        row = ops.take(ops.convert_to_tensor(lookup["packed"]), flat, axis=0)
        return dict(zip(lookup["names"], ops.unstack(row, len(lookup["names"]))))

    def call(self, inputs, indices=None, training=None, update_statistics=True, sparse_keep=None,
             start=0, dropout_draws=None):
        features = dict(inputs) if start else self._stream_features(inputs)
        if indices is None:
            if self.keys:
                raise ValueError(f"`indices` is required: {len(self.keys)} searchable variables.")
            indices = ops.zeros((0,), "int32")
        common = {"training": training, "update_statistics": update_statistics}
        self._run(features, range(start, len(self.plan_layers)), self._index_values(indices),
                  common, sparse_keep, dropout_draws)
        return features[LOGITS]

    @property
    def classifier(self):
        """The classifier layer (`ClassificationHead`)."""
        return next(layer for table, layer in zip(self.tables, self.plan_layers)
                    if isinstance(table.template, ClassifierSpec))

    def _stream_features(self, inputs) -> dict:
        if isinstance(inputs, dict):
            return {name: inputs[name] for name, _ in self.space.streams()}
        if self.space.dense is not None:
            raise ValueError("A two-stream supernet takes a dict {'sparse': ..., 'dense': ...}.")
        return {"sparse": inputs}

    @property
    def shared_layers(self) -> int:
        """How many leading plan layers every architecture runs alike (no searchable
        argument; the stems): paths on the same clips can share their outputs."""
        count = 0
        for table, lookup in zip(self.tables, self._lookups):
            if isinstance(table.template, ClassifierSpec) or (lookup and lookup["searchable"]):
                break
            count += 1
        return count

    def shared_features(self, inputs, training=None, update_statistics=True):
        """`(features, outputs)`: the features after the `shared_layers` (to pass to `call`
        with `start=shared_layers`) and the names those layers wrote."""
        features = self._stream_features(inputs)
        before = dict(features)
        common = {"training": training, "update_statistics": update_statistics}
        self._run(features, range(self.shared_layers), [], common)
        return features, tuple(k for k, v in features.items() if before.get(k) is not v)

    def _run(self, features, layer_indices, index_values, common, sparse_keep=None,
             dropout_draws=None):
        """Runs plan layers `layer_indices` on `features` (updated in place)."""
        for index in layer_indices:
            table, layer = self.tables[index], self.plan_layers[index]
            spec = table.template
            layer_inputs = spec.inputs(features)
            arguments = self._layer_arguments(index, index_values)
            if isinstance(spec, ClassifierSpec):
                if sparse_keep is not None:
                    layer_inputs = sparse_dropped(layer_inputs, sparse_keep)
                arguments = dict(arguments, dropout_draws=dropout_draws)
            output = self._blocks[index].call(layer, layer_inputs, arguments, common)
            spec.store(features, output)

    # ------------------------------------------------------ architectures
    def indices_of(self, arch: Architecture) -> np.ndarray:
        """The index vector (`keys` order) of an architecture of the space."""
        values = self.space.indices(arch)
        return np.array([values[k] for k in self.keys], dtype="int32")

    def architecture(self, indices) -> Architecture:
        indices = np.asarray(ops.convert_to_numpy(indices)).reshape(-1)
        return self.space.from_indices({k: int(i) for k, i in zip(self.keys, indices)})

    def choices_of(self, arch: Architecture) -> dict:
        """Layer name -> the fixed layer's settings under `arch` (absent layers omitted)."""
        return layer_choices(self.space, arch, self.tables)

    # ------------------------------------------------------------ weights
    def fixed_weights(self, arch: Architecture) -> dict:
        """`{layer name: {weight path: array}}` of `build_model(arch)`'s layers, sliced from here."""
        layers = {layer.name: layer for layer in self.plan_layers}
        result = {}
        for name, choice in self.choices_of(arch).items():
            layer = layers[name]
            if hasattr(layer, "choice_weights"):
                result[name] = layer.choice_weights(choice)
            else:
                result[name] = _plain_weights(layer)
        return result

    def copy_to_model(self, model, arch: Architecture | None = None) -> None:
        """Assigns the sliced weights of `arch` to a fixed model (e.g. `build_model(arch)`).

        Every weight of the model is written; a missing or misshaped one raises.
        """
        arch = arch if arch is not None else getattr(model, "arch", None)
        if arch is None:
            raise ValueError("copy_to_model: pass `arch` (the model has no `arch`).")
        weights = self.fixed_weights(arch)
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in weights:
                raise ValueError(f"copy_to_model: the supernet has no layer {layer.name!r}.")
            source = weights[layer.name]
            for variable in layer.weights:
                path = _relative_path(variable, layer)
                if path not in source:
                    raise ValueError(f"copy_to_model: no weight {layer.name}/{path} in the supernet.")
                if tuple(source[path].shape) != tuple(variable.shape):
                    raise ValueError(
                        f"copy_to_model: {layer.name}/{path} has shape {tuple(variable.shape)} "
                        f"in the model but {source[path].shape} in the supernet."
                    )
                variable.assign(source[path])

    def load_fixed_weights(self, weights: dict, choices: dict, strict: bool = False) -> list:
        """Writes fixed-layout weights (e.g. another supernet's `fixed_weights`) into the slices.

        Args:
            weights: `{layer name: {path: array}}`.
            choices: `{layer name: choice}`: the settings the arrays were taken at
                (the source's `choices_of(arch)`); they must fit this supernet's
                widest weights.
            strict: if True every layer of `weights` must exist here.

        Returns:
            Names of the layers written. Plain layers (stems, classifier) copy
            each weight's leading block when this supernet's weight is larger
            (e.g. the classifier rows of the sparse features after step 1).
        """
        layers = {layer.name: layer for layer in self.plan_layers}
        written = []
        for name, source in weights.items():
            if name not in layers:
                if strict:
                    raise ValueError(f"load_fixed_weights: no layer {name!r} in this supernet.")
                continue
            layer = layers[name]
            if hasattr(layer, "assign_choice_weights"):
                layer.assign_choice_weights(choices[name], source, strict=False)
            else:
                for variable in layer.weights:
                    path = _relative_path(variable, layer)
                    if path in source:
                        _assign_leading(variable, source[path], f"{name}/{path}")
            written.append(name)
        return written

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "space": space_to_dict(self.space),
            "num_classes": self.num_classes,
            "dynamic_shapes": self.dynamic_shapes,
            "outer_taps": self.outer_taps,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def layer_choices(space, arch: Architecture, tables=None) -> dict:
    """Layer name -> the settings of that layer in `build_model(arch)` (super-block choice form).

    Absent layers (GloRe off, fusion "none") are omitted. `tables` defaults to
    `layer_tables(space)`.
    """
    tables = layer_tables(space, 1) if tables is None else tables
    values = space.values(arch)
    result = {}
    for table in tables:
        where = table.index(values)
        spec = table.specs[where]
        if spec is None:
            continue
        fields = {n: int(a[where]) for n, a in table.fields.items()}
        result[table.name] = _block_of(table).choice(fields, spec)
    return result


# ------------------------------------------------------------------ super-blocks
class _SuperBlock:
    """How the supernet makes, builds, runs and reads back the layers of one spec type.

    `call_fields`: the per-call integer arguments looked up in the layer's table.
    """

    call_fields = ()

    def lookup_fields(self, table) -> dict:
        """The table's integer fields plus any derived ones `call_fields` names."""
        return dict(table.fields)

    def make(self, table, dynamic_shapes, **options):
        """The layer: the plain layer of the spec (constant layers)."""
        return table.present_spec().make_layer()

    def build(self, layer, table, pooled: list) -> None:
        layer.build()

    def call(self, layer, inputs, args: dict, common: dict):
        return layer(inputs, **common)

    def choice(self, fields: dict, spec) -> dict:
        """The settings of the layer under one architecture (super-block choice form)."""
        return {}


class _Stem(_SuperBlock):
    def build(self, layer, table, pooled):
        layer.build((None, table.input_size[0], None, None, 3))

    def call(self, layer, inputs, args, common):
        return layer(inputs, training=common["training"],
                     update_statistics=common["update_statistics"])


class _MBConv(_SuperBlock):
    call_fields = ("in_base", "in_extra", "channels", "inner_channels", "squeeze_excite_channels",
                   "kernel_index")

    def lookup_fields(self, table):
        fields = dict(table.fields)
        pairs = _kernel_choices(table)
        kernel = np.vectorize(lambda t, k: pairs.index((int(t), int(k))))(
            fields["temporal_kernel"], fields["spatial_kernel"]
        )
        fields["kernel_index"] = kernel.astype(np.int64)
        return fields

    def make(self, table, dynamic_shapes, **options):
        projection = table.fields["projection"]
        shortcut = (
            "projection" if projection.all() else "identity" if not projection.any() else "auto"
        )
        return SuperMBConv3D(
            max_channels=table.maximum("channels"),
            max_inner_channels=table.maximum("inner_channels"),
            kernel_choices=_kernel_choices(table),
            max_in_base=table.maximum("in_base"),
            max_in_extra=table.maximum("in_extra"),
            spatial_stride=table.present_spec().spatial_stride,
            max_squeeze_excite_channels=table.maximum("squeeze_excite_channels"),
            shortcut=shortcut,
            dynamic_shapes=dynamic_shapes,
            outer_taps=options["outer_taps"],
            name=table.name,
        )

    def call(self, layer, inputs, args, common):
        return layer(
            inputs, in_base=args["in_base"], in_extra=args["in_extra"],
            channels=args["channels"], inner_channels=args["inner_channels"],
            squeeze_excite_channels=args["squeeze_excite_channels"],
            kernel_index=args["kernel_index"], **common,
        )

    def choice(self, fields, spec):
        return {
            "in_base": fields["in_base"], "in_extra": fields["in_extra"],
            "channels": fields["channels"], "inner_channels": fields["inner_channels"],
            "squeeze_excite_channels": fields["squeeze_excite_channels"],
            "temporal_kernel": fields["temporal_kernel"], "spatial_kernel": fields["spatial_kernel"],
            "projection": bool(fields["projection"]),
        }


class _GloRe(_SuperBlock):
    call_fields = ("channels", "attention")

    def make(self, table, dynamic_shapes, **options):
        return SuperAttention(table.maximum("channels"), dynamic_shapes=dynamic_shapes,
                              name=table.name)

    def call(self, layer, inputs, args, common):
        attention = args["attention"]
        attention = bool(attention) if isinstance(attention, int) else ops.cast(attention, "bool")
        return layer(inputs, channels=args["channels"], attention=attention, **common)

    def choice(self, fields, spec):
        return {"channels": fields["channels"]}


class _Fusion(_SuperBlock):
    call_fields = ("fusion_index", "dense_channels")

    def lookup_fields(self, table):
        fields = dict(table.fields)
        fusions = table.choices[0]
        fields["fusion_index"] = np.vectorize(
            lambda op: fusions.index(FUSION_OPS[int(op)])
        )(fields["fusion"]).astype(np.int64)
        return fields

    def make(self, table, dynamic_shapes, **options):
        return SuperTSFusion(
            fusions=table.choices[0],
            max_dense_channels=table.maximum("dense_channels"),
            alpha=table.present_spec().alpha,
            dynamic_shapes=dynamic_shapes,
            name=table.name,
        )

    def call(self, layer, inputs, args, common):
        return layer(inputs, fusion_index=args["fusion_index"],
                     dense_channels=args["dense_channels"], **common)

    def choice(self, fields, spec):
        return {"fusion": spec.fusion, "dense_channels": fields["dense_channels"]}


class _StreamHead(_SuperBlock):
    call_fields = ("in_base", "in_extra")

    def make(self, table, dynamic_shapes, **options):
        return SuperStreamHead(
            table.present_spec().channels,
            max_in_base=table.maximum("in_base"),
            max_in_extra=table.maximum("in_extra"),
            dynamic_shapes=dynamic_shapes,
            name=table.name,
        )

    def build(self, layer, table, pooled):
        layer.build()
        pooled.append((None, layer.channels))

    def call(self, layer, inputs, args, common):
        return layer(inputs, in_base=args["in_base"], in_extra=args["in_extra"], **common)

    def choice(self, fields, spec):
        return {"in_base": fields["in_base"], "in_extra": fields["in_extra"]}


class _Classifier(_SuperBlock):
    def build(self, layer, table, pooled):
        layer.build(pooled if len(pooled) > 1 else pooled[0])

    def call(self, layer, inputs, args, common):
        # Scoring (update_statistics=False) uses batch statistics but no dropout.
        training = bool(common["training"]) and common["update_statistics"]
        return layer(inputs if len(inputs) > 1 else inputs[0], training=training,
                     dropout_draws=args.get("dropout_draws"))


_BLOCKS = {
    StemSpec: _Stem(),
    MBConvSpec: _MBConv(),
    GloReSpec: _GloRe(),
    FusionSpec: _Fusion(),
    StreamHeadSpec: _StreamHead(),
    ClassifierSpec: _Classifier(),
}


def _block_of(table) -> _SuperBlock:
    return _BLOCKS[type(table.template)]


def _make_lookup(table, block: _SuperBlock, keys: tuple):
    """Packed int table (flat choice index -> call fields) and flat strides, or None."""
    if not block.call_fields:
        return None
    fields = block.lookup_fields(table)
    names = block.call_fields
    packed = np.stack([fields[n].reshape(-1) for n in names], axis=-1).astype("int32")
    shape = table.shape
    strides = [int(np.prod(shape[a + 1:])) for a in range(len(shape))]
    positions = [keys.index(k) if k in keys else None for k in table.keys]
    searchable = [(p, s) for p, s in zip(positions, strides) if p is not None]
    return {"names": names, "packed": packed, "searchable": searchable}


def _kernel_choices(table):
    pairs = {
        (int(t), int(k))
        for t, k in zip(table.fields["temporal_kernel"].reshape(-1),
                        table.fields["spatial_kernel"].reshape(-1))
    }
    return tuple(sorted(pairs))


def _relative_path(variable, layer):
    path = variable.path
    marker = layer.name + "/"
    return path[path.index(marker) + len(marker):] if marker in path else variable.name


def _plain_weights(layer):
    return {_relative_path(v, layer): np.asarray(ops.convert_to_numpy(v)) for v in layer.weights}


def _assign_leading(variable, value, where):
    value = np.asarray(value)
    shape = tuple(variable.shape)
    if value.ndim != len(shape) or any(s > t for s, t in zip(value.shape, shape)):
        raise ValueError(
            f"{where}: a weight of shape {value.shape} does not fit into {shape}."
        )
    full = np.asarray(ops.convert_to_numpy(variable)).copy()
    full[tuple(slice(0, s) for s in value.shape)] = value
    variable.assign(full)


__all__ = ["Supernet", "layer_choices"]
