"""The PyTorch X3D of the conversion tests: PyTorchVideo's own `create_x3d` when it
imports, else `tsnet_keras.models.torch_x3d` (PyTorchVideo's exact state_dict names
and forward pass: stem, X3D bottleneck blocks with ReLU after the residual add,
ProjectedPool head; adapted from benchmarks/torch_x3d_reference.py).

`test_pytorchvideo.py::test_replica_matches_pytorchvideo` checks the two agree
(names, shapes and outputs) wherever pytorchvideo is installed.
"""

import torch
from torch import nn

from tsnet_keras.models.torch_x3d import ReplicaX3D
from tsnet_keras.presets import X3D_SIZES


def pytorchvideo_create_x3d():
    """PyTorchVideo's builder, or None (it needs torchvision at import time)."""
    try:
        from pytorchvideo.models.x3d import create_x3d
    except ImportError:
        return None
    return create_x3d


def reference_x3d(size, crop, num_classes, replica=False):
    """An eval-mode X3D-`size` for (B, 3, frames, crop, crop) inputs; logits out.

    Randomises every BN (gamma, beta, statistics) so that no residual branch is
    zero, and scales the classifier so the logits are O(1).
    """
    depth = X3D_SIZES[size]["depth"]
    create_x3d = None if replica else pytorchvideo_create_x3d()
    if create_x3d is None:
        model = ReplicaX3D(depth, num_classes)
    else:
        model = create_x3d(
            input_clip_length=X3D_SIZES[size]["frames"],
            input_crop_size=crop,
            depth_factor=depth,
            model_num_class=num_classes,
        )
        model.blocks[5].activation = None  # PyTorchVideo ends with a softmax in every mode
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
        model.blocks[5].proj.weight.normal_(0, 0.1)
    return model.eval()
