"""Decode attempts for the first step of a search epoch against the step it starts at.

Usage:
    python benchmarks/bench_heldout_decode.py [--starts 0 50 200 800] [--batch 4]

Writes a small synthetic dataset (8 classes x 3 held-out-sized videos, 64 x 48
pixels) into a temporary folder, then, for each start step, builds the held-out
data of an epoch starting there exactly as `run_search_step` does and takes one
batch (the first step's held-out batch), counting the videos decoded
(`RecipeData.failures.num_attempts`):

- "dataset": the held-out `video_dataset` passed as a plain dataset (its length
  is unknown, so it is repeated and skipped batch by batch: the old behaviour,
  still what a plain decoding dataset costs);
- "by position": `RecipeData.heldout_batches(cache_mb=0)`: the list is rotated to
  the start batch before anything is decoded, each epoch decodes its batches;
- "in memory": `RecipeData.heldout_batches` (the recipes' default): the first call
  decodes one cycle and keeps it; every later epoch and resume decodes nothing.
  The starts run one after another in one process, as a search's epochs do.
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def attempts_for_first_batch(data, heldout_at, start):
    before = data.failures.num_attempts
    for _ in heldout_at(start).take(1):
        pass
    return data.failures.num_attempts - before


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, nargs="+", default=[0, 50, 200, 800])
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()

    from tsnet_keras.data.synthetic import make_synthetic_dataset
    from tsnet_keras.recipes.data import resolve_data
    from tsnet_keras.search.progressive import heldout_positions

    with tempfile.TemporaryDirectory() as folder:
        synthetic = make_synthetic_dataset(os.path.join(folder, "data"), num_classes=8,
                                           videos_per_class=1, val_videos_per_class=3, width=64,
                                           height=48, num_frames=72, workers=1, verbose=False)
        data = resolve_data(synthetic_root=synthetic.root, verbose=False)
        videos = data.val  # 24 videos: 6 held-out batches of 4 per cycle
        options = dict(crop=32, batch_size=args.batch, frames=(4, None), seed=0)
        plain = data.dataset("val", "val", videos=videos, drop_remainder=True, **options)
        ways = {"dataset": heldout_positions(plain),
                "by position": heldout_positions(data.heldout_batches(videos, cache_mb=0,
                                                                      **options)),
                "in memory": heldout_positions(data.heldout_batches(videos, **options))}
        print(f"{len(videos)} held-out videos, batch {args.batch}")
        print("| first step of the epoch | " + " | ".join(ways) + " |")
        print("|---" * (len(ways) + 1) + "|")
        for start in args.starts:
            counts = [attempts_for_first_batch(data, way, start) for way in ways.values()]
            print(f"| {start} | " + " | ".join(map(str, counts)) + " |")


if __name__ == "__main__":
    main()
