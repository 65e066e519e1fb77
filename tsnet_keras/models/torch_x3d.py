"""X3D in plain PyTorch with PyTorchVideo's exact state_dict names and forward pass.

Torch is optional for tsnet_keras: import this module only where torch is
installed (`pip install 'tsnet_keras[torch]'`). It is the PyTorch side of
`load_pytorchvideo_x3d` without PyTorchVideo itself (which needs torchvision):
the conversion tests compare against it, and the fine-tuning tutorial writes a
randomly initialised checkpoint with it when no pretrained file is given.
`tests/models/test_pytorchvideo.py::test_replica_matches_pytorchvideo` checks it
against PyTorchVideo's `create_x3d` (names, shapes, outputs) where that imports.

Example:

>>> model = pytorchvideo_layout_x3d("XS", num_classes=400)
>>> torch.save(model.state_dict(), "x3d_xs.pyth")
"""

import math

import torch
from torch import nn

from tsnet_keras.space.presets import X3D_SIZES


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
    """X3D with PyTorchVideo's module names; `depth` is the depth factor (2.2 for XS/S/M)."""

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


def pytorchvideo_layout_x3d(size: str = "XS", num_classes: int = 400) -> nn.Module:
    """A randomly initialised X3D-`size` (eval mode) whose `state_dict` has PyTorchVideo's names.

    Its forward pass returns logits (PyTorchVideo's head adds a softmax).
    """
    if size not in X3D_SIZES:
        raise ValueError(f"pytorchvideo_layout_x3d: `size` must be one of {tuple(X3D_SIZES)}, got {size!r}.")
    return ReplicaX3D(X3D_SIZES[size]["depth"], num_classes).eval()


__all__ = ["pytorchvideo_layout_x3d"]
