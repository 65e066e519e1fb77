"""How far a converted X3D moves from the PyTorch model on even crops (padding grid shift).

    python benchmarks/pytorchvideo_padding.py [--size XS] [--crops 64 65 160 161 182 183]

PyTorch pads a stride-2 3x3 convolution by 1 on both sides; Keras' "same" pads 0 / 1
on an even size. On crops of 32k + 1 every stride-2 layer sees an odd size and the
two agree; elsewhere the sampling grid moves by a pixel. Prints, per crop, the max
absolute logit difference relative to the logits' max and the top-1 agreement, on a
randomly initialised X3D (BN statistics randomised, tests/models/pytorchvideo_x3d.py)
and random clips. Needs torch; uses PyTorchVideo's create_x3d when it imports.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tests.models.pytorchvideo_x3d import reference_x3d  # noqa: E402
from tsnet_keras.models import load_pytorchvideo_x3d  # noqa: E402
from tsnet_keras.presets import X3D_SIZES  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="XS")
    parser.add_argument("--crops", type=int, nargs="+", default=[64, 65, 160, 161, 182, 183])
    parser.add_argument("--clips", type=int, default=8)
    args = parser.parse_args()
    print(f"X3D-{args.size}, {args.clips} random clips, 400 classes")
    print("| crop | max abs diff / max abs logit | top-1 agreement |")
    print("|---|---|---|")
    for crop in args.crops:
        torch.manual_seed(0)
        reference = reference_x3d(args.size, crop, num_classes=400)
        model = load_pytorchvideo_x3d(reference.state_dict(), size=args.size)
        x = torch.randn(args.clips, 3, X3D_SIZES[args.size]["frames"], crop, crop)
        with torch.no_grad():
            expected = reference(x).numpy()
        actual = np.asarray(model(x.permute(0, 2, 3, 4, 1).numpy(), training=False))
        relative = np.abs(actual - expected).max() / np.abs(expected).max()
        agree = np.mean(actual.argmax(1) == expected.argmax(1))
        print(f"| {crop} | {relative:.2e} | {agree:.2f} |")


if __name__ == "__main__":
    main()
