"""The PyTorch X3D of the conversion tests: PyTorchVideo's own `create_x3d` when it
imports, else a plain module with PyTorchVideo's exact state_dict names and forward
pass (stem, X3D bottleneck blocks with ReLU after the residual add, ProjectedPool
head), adapted from benchmarks/torch_x3d_reference.py.

`test_pytorchvideo.py::test_replica_matches_pytorchvideo` checks the two agree
(names, shapes and outputs) wherever pytorchvideo is installed.
"""

import math

import torch
from torch import nn

from tsnet_keras.presets import X3D_SIZES


def pytorchvideo_create_x3d():
    """PyTorchVideo's builder, or None (it needs torchvision at import time)."""
    try:
        from pytorchvideo.models.x3d import create_x3d
    except ImportError:
        return None
    return create_x3d


def round_width(width, multiplier=1.0, divisor=8):
    width *= multiplier
    new = max(divisor, int(width + divisor / 2) // divisor * divisor)
    if new < 0.9 * width:
        new += divisor
    return int(new)


class Conv2plus1d(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv_t = nn.Conv3d(3, channels, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv_xy = nn.Conv3d(channels, channels, (5, 1, 1), padding=(2, 0, 0), groups=channels, bias=False)

    def forward(self, x):
        return self.conv_xy(self.conv_t(x))


class Stem(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = Conv2plus1d(channels)
        self.norm = nn.BatchNorm3d(channels)

    def forward(self, x):
        return torch.relu(self.norm(self.conv(x)))


class SqueezeExcitation(nn.Module):
    def __init__(self, channels):
        super().__init__()
        hidden = round_width(channels, 0.0625)
        self.block = nn.Sequential(
            nn.Conv3d(channels, hidden, 1), nn.ReLU(), nn.Conv3d(hidden, channels, 1), nn.Sigmoid()
        )

    def forward(self, x):
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


class Bottleneck(nn.Module):
    def __init__(self, cin, inner, cout, stride, se):
        super().__init__()
        self.conv_a = nn.Conv3d(cin, inner, 1, bias=False)
        self.norm_a = nn.BatchNorm3d(inner)
        self.conv_b = nn.Conv3d(inner, inner, 3, stride=(1, stride, stride), padding=1, groups=inner, bias=False)
        self.norm_b = nn.Sequential(nn.BatchNorm3d(inner), SqueezeExcitation(inner) if se else nn.Identity())
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(cout)

    def forward(self, x):
        x = torch.relu(self.norm_a(self.conv_a(x)))
        x = nn.functional.silu(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    def __init__(self, cin, inner, cout, stride, se):
        super().__init__()
        self.branch1_conv = None
        self.branch1_norm = None
        if stride != 1 or cin != cout:
            self.branch1_conv = nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False)
            if cin != cout:  # PyTorchVideo: no BN when only the stride changes
                self.branch1_norm = nn.BatchNorm3d(cout)
        self.branch2 = Bottleneck(cin, inner, cout, stride, se)

    def forward(self, x):
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
            if self.branch1_norm is not None:
                shortcut = self.branch1_norm(shortcut)
        return torch.relu(shortcut + self.branch2(x))


class Stage(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.res_blocks = nn.ModuleList(blocks)

    def forward(self, x):
        for block in self.res_blocks:
            x = block(x)
        return x


class ProjectedPool(nn.Module):
    def __init__(self, cin, head, hidden):
        super().__init__()
        self.pre_conv = nn.Conv3d(cin, head, 1, bias=False)
        self.pre_norm = nn.BatchNorm3d(head)
        self.post_conv = nn.Conv3d(head, hidden, 1, bias=False)

    def forward(self, x):
        x = torch.relu(self.pre_norm(self.pre_conv(x))).mean(dim=(2, 3, 4), keepdim=True)
        return torch.relu(self.post_conv(x))


class Head(nn.Module):
    def __init__(self, cin, num_classes):
        super().__init__()
        self.pool = ProjectedPool(cin, int(math.ceil(cin * 2.25)), 2048)
        self.dropout = nn.Dropout(0.5)
        self.proj = nn.Linear(2048, num_classes)

    def forward(self, x):  # logits: PyTorchVideo's softmax left out
        return self.proj(self.dropout(self.pool(x).flatten(1)))


class ReplicaX3D(nn.Module):
    def __init__(self, depth, num_classes):
        super().__init__()
        blocks, cin = [Stem(24)], 24
        for width, repeats in zip((24, 48, 96, 192), (1, 2, 5, 3)):
            stage = []
            for index in range(int(math.ceil(depth * repeats))):
                stage.append(ResBlock(cin, int(width * 2.25), width, 2 if index == 0 else 1, index % 2 == 0))
                cin = width
            blocks.append(Stage(stage))
        blocks.append(Head(cin, num_classes))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


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
