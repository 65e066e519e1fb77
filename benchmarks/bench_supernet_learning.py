"""Does the supernet learn a path as fast as the fixed model of that path?

One architecture of the known-answer space of `bench_search_quality.py` (the
widest choices, t = 3 in the group that alone sees the frames' order) is
trained for `--steps` AdamW steps on the same cached synthetic clips, batch 8:

- `fixed`: `build_model(architecture)`, Keras `fit`;
- `supernet`: the search's supernet on that one path, the whole batch per step;
- `split`: the same, with the batch divided among S = 4 copies of the path, as
  `ParsecSearch(path_batch="split")` trains (batch norm sees 2 clips).

Prints the mean training loss and the held-out top-1 (for the supernet: of the
path with t = 1 / 3 / 5 in that group, batch statistics as the search scores).

Usage:
    python benchmarks/bench_supernet_learning.py --steps 1200 --modes fixed supernet split
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_search_quality as quality  # noqa: E402
from tsnet_keras.models.tsnet import build_model  # noqa: E402
from tsnet_keras.search import ParsecSearch  # noqa: E402
from tsnet_keras.search.optimizers import masked_optimizer  # noqa: E402

KEY = f"sparse[{quality.KNOWN_GROUP}].temporal_kernel"


def one_path_search(clips, temporal_kernel=3):
    """A ParsecSearch of the known-answer space whose alpha picks one path for sure."""
    search = ParsecSearch(quality.known_answer_space(), int(clips["num_classes"]),
                          crop=quality.CROP, seed=0)
    dist = search.distribution
    chosen = [len(v.choices) - 1 for v in dist.search_variables]  # widest, largest
    position = dist.keys.index(KEY)
    chosen[position] = dist.search_variables[position].choices.index(temporal_kernel)
    dist.set_logits([np.where(np.arange(len(v.choices)) == i, 30.0, -30.0)
                     for v, i in zip(dist.search_variables, chosen)])
    return search, np.asarray(chosen, "int32")


def train_fixed(clips, search, chosen, steps, rate):
    model = build_model(search.distribution.architecture(chosen), int(clips["num_classes"]),
                        crop=quality.CROP)
    schedule = keras.optimizers.schedules.CosineDecay(rate, steps)
    model.compile(keras.optimizers.AdamW(schedule, weight_decay=0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    data = training_batches(clips, steps)
    loss = model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0).history["loss"][-1]
    x, y = clips["heldout_x"].astype("float32"), clips["heldout_y"]
    top1 = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)["accuracy"]
    return loss, {"fixed": top1}


def train_supernet(clips, search, chosen, steps, rate, parts):
    net, indices = search.supernet, tf.constant(chosen)
    optimizer = masked_optimizer("adamw", keras.optimizers.schedules.CosineDecay(rate, steps),
                                 0.9, None)
    optimizer.build(net.trainable_variables)

    @tf.function(reduce_retracing=True)
    def step(x, y):
        gradients, losses = None, []
        for part in range(parts):
            with tf.GradientTape() as tape:
                logits = net(x[part::parts], indices=indices, training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                    y[part::parts], logits, from_logits=True))
                share = loss / parts  # inside the tape, or its gradient is None
            grads = tape.gradient(share, net.trainable_variables)
            if all(g is None for g in grads):
                raise RuntimeError("no gradient reached the supernet's weights")
            grads = [tf.zeros_like(v) if g is None else g
                     for g, v in zip(grads, net.trainable_variables)]
            gradients = grads if gradients is None else [a + b for a, b in zip(gradients, grads)]
            losses.append(loss)
        optimizer.apply_gradients(zip(gradients, net.trainable_variables))
        return tf.reduce_mean(losses)

    losses = [float(step(x, y)) for x, y in training_batches(clips, steps).take(steps)]
    return float(np.mean(losses)), quality.heldout_accuracy_by_choice(search, clips, KEY)


def training_batches(clips, steps):
    settings = quality.SearchSettings(steps=steps)
    return quality.search_data(clips, settings, 0).map(lambda train, heldout: train)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--learning-rate", type=float, default=0.002)
    parser.add_argument("--modes", nargs="+", default=["fixed", "supernet", "split"],
                        choices=("fixed", "supernet", "split"))
    args = parser.parse_args(argv)
    clips = quality.synthetic_clips()
    print("| training | mean training loss | held-out top-1 (%) | s |")
    print("|---|---|---|---|")
    for mode in args.modes:
        keras.utils.set_random_seed(0)
        search, chosen = one_path_search(clips)
        started = time.time()
        if mode == "fixed":
            loss, top1 = train_fixed(clips, search, chosen, args.steps, args.learning_rate)
        else:
            parts = 4 if mode == "split" else 1
            loss, top1 = train_supernet(clips, search, chosen, args.steps, args.learning_rate,
                                        parts)
        shown = " / ".join(f"{k}: {100 * v:.1f}" for k, v in top1.items())
        print(f"| {mode} | {loss:.2f} | {shown} | {time.time() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
