"""Accuracy of reference models on the built-in synthetic dataset.

The synthetic classes are appearance x direction x wobble (see
`tsnet_keras.data.synthetic`): one frame shows only the appearance, a sparse
clip (4 frames, stride 16) also shows the direction, and only a clip with a
fine temporal stride sees the wobble (period 16 frames). This script trains,
with identical settings, models that see progressively more of that:

| row | input | what it can see |
|---|---|---|
| single frame | 1 frame | appearance (at most 2 of 8 classes apart) |
| sparse stream | 4 x 16 | + direction |
| single stream, similar MACs | 12 x 5 | everything, one stream |
| two streams (Manual-TSNet-like) | 4 x 16 + 32 x 2 | everything, two streams |
| searched (`--searched DIR`) | the recipes' result | |

All backbones use the `auto_tsnet_mini()` space with middle widths and 3x3x3
kernels; the two-stream model adds the mini dense stream and time-strided-conv
fusion after groups 1 and 3. Each model is trained from scratch (AdamW, peak
rate 2e-3 after one warm-up epoch, then cosine; batch 8, crop 64, no flip) and
evaluated with 10 clips x 1 crop per validation video.

AdamW, not the paper's SGD: in a few hundred CPU steps SGD (peak 0.05) did not
even learn the appearance factor (single frame at chance after 800 steps), AdamW
did within 3 epochs. `--optimizer sgd` runs the SGD setting.

Usage:
    python benchmarks/synthetic_baselines.py --epochs 6 [--searched runs/step3] [--rows ...]

Prints a Markdown table (and writes it with the per-row JSON into `--output`).
"""

import argparse
import dataclasses
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tsnet_keras import build_model, complexity  # noqa: E402
from tsnet_keras.data import evaluate_views  # noqa: E402
from tsnet_keras.recipes.data import resolve_data  # noqa: E402
from tsnet_keras.space import Architecture  # noqa: E402
from tsnet_keras.spaces import auto_tsnet_mini  # noqa: E402

CROP = 64


def middle_architecture(fusion="time_strided_conv", fusion_groups=(1, 3)) -> Architecture:
    space = auto_tsnet_mini()
    values = {}
    for variable in space.variables():
        if variable.name in ("channels", "expansion"):
            values[variable.key] = variable.choices[len(variable.choices) // 2]
        elif variable.name in ("temporal_kernel", "spatial_kernel"):
            values[variable.key] = 3
        elif variable.name == "fusion" and variable.group in fusion_groups:
            values[variable.key] = fusion
    return space.architecture(values)


def sparse_alone(arch: Architecture, frames: int) -> Architecture:
    groups = tuple(dataclasses.replace(g, fusion="none") for g in arch.sparse.groups)
    sparse = dataclasses.replace(arch.sparse, groups=groups, frames=frames)
    return dataclasses.replace(arch, sparse=sparse, dense=None)


def rows(searched_dir=None) -> dict:
    two = middle_architecture()
    table = {
        "single frame": (sparse_alone(two, 1), dict(sparse_frames=1, sparse_stride=16)),
        "sparse stream 4x16": (sparse_alone(two, 4), dict(sparse_frames=4, sparse_stride=16)),
        "single stream 12x5": (sparse_alone(two, 12), dict(sparse_frames=12, sparse_stride=5)),
        "two streams 4x16 + 32x2": (two, dict(sparse_frames=4, sparse_stride=16, dense_frames=32, dense_stride=2)),
    }
    if searched_dir:
        arch = Architecture.load(os.path.join(searched_dir, "architecture.json"))
        streams = dict(sparse_frames=arch.sparse.frames, sparse_stride=16)
        if arch.dense is not None:
            streams.update(dense_frames=arch.dense.frames, dense_stride=2)
        table["searched (recipes)"] = (arch, streams)
    return table


def make_optimizer(name, peak, steps, total):
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total - steps), warmup_target=peak, warmup_steps=steps)
    if name == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=1e-4)
    return keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=5e-5)


def train_and_evaluate(arch, streams, data, epochs, batch_size, seed, optimizer="adamw", learning_rate=None):
    keras.utils.set_random_seed(seed)
    single = "dense_frames" not in streams
    sampling = dict(streams, dense_frames=None) if single else streams
    sizes = data.sizes(CROP)
    steps = data.num_train_videos // batch_size
    total = steps * epochs
    peak = learning_rate or (2e-3 if optimizer == "adamw" else 0.4 * batch_size / 64)
    model = build_model(arch, num_classes=data.num_classes, crop=CROP)
    model.compile(optimizer=make_optimizer(optimizer, peak, steps, total),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

    started = time.time()
    for epoch in range(epochs):
        train = data.dataset("train", "train", crop=CROP, batch_size=batch_size,
                             frames=(sampling["sparse_frames"], sampling.get("dense_frames")),
                             seed=seed * 1000 + epoch, **{k: v for k, v in sampling.items()
                                                          if k not in ("sparse_frames", "dense_frames")})
        model.fit(train, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
    seconds = time.time() - started

    test = data.dataset("val", "test", crop=CROP, batch_size=batch_size,
                        frames=(sampling["sparse_frames"], sampling.get("dense_frames")),
                        num_views=10, num_crops=1, test_short_side=sizes.get("test_short_side", CROP),
                        **{k: v for k, v in sampling.items() if k not in ("sparse_frames", "dense_frames")})
    result = evaluate_views(model, test)
    cost = complexity(arch, num_classes=data.num_classes, crop=CROP)
    return {"params": cost.params, "mmacs": cost.macs / 1e6, "top1": result["top1"], "top5": result["top5"],
            "videos": result["num_videos"], "views": result["num_views"], "train_seconds": round(seconds, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="peak rate (default 2e-3 for AdamW, 0.4 x batch / 64 for SGD)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--searched", default="", help="recipe output dir holding architecture.json")
    parser.add_argument("--rows", nargs="*", default=None, help="row names to run (default all)")
    parser.add_argument("--output", default="runs/synthetic_baselines")
    args = parser.parse_args()

    data = resolve_data()
    os.makedirs(args.output, exist_ok=True)
    results = {}
    print(f"synthetic dataset: {data.num_classes} classes, {data.num_train_videos} train / "
          f"{data.num_val_videos} val videos; crop {CROP}, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.optimizer}")
    print(f"| model | params | MMACs/view | top-1 (10x1) | top-5 | train s |")
    print(f"|---|---|---|---|---|---|")
    print(f"| chance | - | - | {100 / data.num_classes:.1f} | {100 * min(5, data.num_classes) / data.num_classes:.1f} | - |")
    for name, (arch, streams) in rows(args.searched).items():
        if args.rows and name not in args.rows:
            continue
        result = train_and_evaluate(arch, streams, data, args.epochs, args.batch_size, args.seed,
                                    args.optimizer, args.learning_rate)
        results[name] = result
        print(f"| {name} | {result['params']:,} | {result['mmacs']:.1f} | {100 * result['top1']:.1f} | "
              f"{100 * result['top5']:.1f} | {result['train_seconds']:.0f} |", flush=True)
        with open(os.path.join(args.output, "results.json"), "w", encoding="utf-8") as handle:
            json.dump({"epochs": args.epochs, "crop": CROP, "optimizer": args.optimizer, "rows": results},
                      handle, indent=1)
    print(f"failures: {data.failures.summary()}")


if __name__ == "__main__":
    main()
