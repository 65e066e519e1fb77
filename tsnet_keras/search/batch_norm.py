"""Precise BN: recompute batch-norm statistics of one architecture before evaluating it.

The moving statistics of a supernet mix every architecture it sampled, and
Keras does not synchronise them across replicas, so an architecture evaluated
with them is misjudged (a frequent complaint about weight-sharing search). This
recomputes them as the plain average of per-batch statistics over a few
training batches, with all weights frozen.
"""

from __future__ import annotations

import keras

from tsnet_keras.checks import check_int
from tsnet_keras.layers.sliced_batch_norm import SlicedBatchNormalization


def _batch_norms(model):
    found, seen = [], set()

    def walk(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, (keras.layers.BatchNormalization, SlicedBatchNormalization)):
            found.append(layer)
        for child in getattr(layer, "_layers", []) or []:
            walk(child)
        for child in getattr(layer, "layers", []) or []:
            walk(child)

    walk(model)
    return found


def recalibrate_batch_norm(model, dataset, num_batches: int, call_kwargs=None) -> int:
    """Sets every BN's moving statistics to the average over `num_batches` batches.

    Args:
        model: a fixed model (`build_model`) or a `Supernet` (pass the
            architecture's `indices` in `call_kwargs`); only the active slice
            of a super-block's statistics changes.
        dataset: iterable of `(x, y)` or `x` batches (training data, train-time
            augmentation).
        num_batches: int > 0.
        call_kwargs: extra arguments of `model(x, training=True, **call_kwargs)`.

    Returns:
        The number of batches used.

    Example:

    >>> model = build_model(arch, num_classes=400)
    >>> supernet.copy_to_model(model, arch)
    >>> recalibrate_batch_norm(model, train_batches, num_batches=200)
    """
    check_int("num_batches", num_batches, plain=True)
    layers = _batch_norms(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    used = 0
    try:
        for batch in dataset:
            if used >= num_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            # Running average: after batch n (from 0), moving = mean of n + 1 batch statistics.
            for layer in layers:
                layer.momentum = used / (used + 1.0)
            model(x, training=True, **(call_kwargs or {}))
            used += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if used == 0:
        raise ValueError("recalibrate_batch_norm: the dataset yielded no batches.")
    return used


__all__ = ["recalibrate_batch_norm"]
