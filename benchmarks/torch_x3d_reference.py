"""A plain PyTorch X3D (eager `nn.Conv3d`, grouped depthwise convs), written from
the structure in ../shared/reference/anchors.md, as the side-by-side reference
of `bench_x3d.py`. It has exactly the reference X3D-S parameter count
(3,794,322), so both benchmarks time the same network.

Not part of the package: torch is only needed to run the comparison.
"""

import math

import torch
from torch import nn

from tsnet_keras.models.torch_x3d import round_width


class SqueezeExcite(nn.Module):
    def __init__(self, channels, ratio=0.0625):
        super().__init__()
        hidden = round_width(channels, ratio)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.fc2 = nn.Conv3d(hidden, channels, 1)

    def forward(self, x):
        s = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class Block(nn.Module):
    def __init__(self, cin, inner, cout, stride, se):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv3d(cin, inner, 1, bias=False), nn.BatchNorm3d(inner), nn.ReLU())
        self.depthwise = nn.Sequential(
            nn.Conv3d(inner, inner, 3, stride=(1, stride, stride), padding=1, groups=inner, bias=False),
            nn.BatchNorm3d(inner))
        self.se = SqueezeExcite(inner) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv3d(inner, cout, 1, bias=False), nn.BatchNorm3d(cout))
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False), nn.BatchNorm3d(cout))

    def forward(self, x):
        y = self.project(nn.functional.silu(self.se(self.depthwise(self.expand(x)))))
        return y + (x if self.shortcut is None else self.shortcut(x))


class X3D(nn.Module):
    def __init__(self, num_classes=400, width=1.0, depth=2.2, expansion=2.25, head=2.25):
        super().__init__()
        stem = round_width(24, width)
        self.stem = nn.Sequential(
            nn.Conv3d(3, stem, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
            nn.Conv3d(stem, stem, (5, 1, 1), padding=(2, 0, 0), groups=stem, bias=False),
            nn.BatchNorm3d(stem), nn.ReLU())
        blocks, cin = [], stem
        for base, repeats in zip((24, 48, 96, 192), (1, 2, 5, 3)):
            cout = round_width(base, width)
            inner = int(cout * expansion)
            for index in range(int(math.ceil(depth * repeats))):
                blocks.append(Block(cin, inner, cout, 2 if index == 0 else 1, se=index % 2 == 0))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        head_width = int(math.ceil(cin * head))
        self.head_conv = nn.Sequential(nn.Conv3d(cin, head_width, 1, bias=False), nn.BatchNorm3d(head_width), nn.ReLU())
        self.hidden = nn.Conv3d(head_width, 2048, 1, bias=False)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(2048, num_classes)

    def forward(self, x):  # x: (B, 3, T, H, W)
        x = self.head_conv(self.blocks(self.stem(x)))
        x = torch.relu(self.hidden(x.mean(dim=(2, 3, 4), keepdim=True))).flatten(1)
        return self.classifier(self.dropout(x))


if __name__ == "__main__":
    model = X3D()
    print(sum(p.numel() for p in model.parameters()))
