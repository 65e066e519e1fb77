"""Does the PARSEC search find the better architecture? Known-answer benchmarks.

Subcommands (each prints a Markdown table and writes JSON into `--output`):

- `planted`: the step-1 space of `auto_tsnet_mini()` is searched on the
  built-in synthetic dataset, and the held-out score of every sampled
  architecture is its real held-out accuracy plus `delta` when it has one
  planted choice (t = 5 in sparse group 2 by default). Reports, per delta and
  seed, the probability of the planted choice against search steps and the
  largest marginal of every other variable minus uniform (drift).
  `--configs` compares estimator settings (the ablation of BENCHMARKS.md).
- `known`: no planting. A space where one choice destroys what the labels
  depend on (see `known_answer_space`); the search must learn to avoid it from
  accuracy alone. `--construction gap` lays the clips out so that two of the
  three temporal kernels are blind (see CONSTRUCTIONS).

Everything runs on cached, pre-decoded clips (decoded once with the recipes'
data path), so a search step costs what the network costs. Crop 32 keeps a
300-step search at a few minutes on two CPU cores.

Usage:
    python benchmarks/bench_search_quality.py planted --deltas 2 5 10 --seeds 10
    python benchmarks/bench_search_quality.py planted --deltas 5 --seeds 4 \\
        --configs default softmax_t1_k2 baseline_k4 ...
    python benchmarks/bench_search_quality.py known --seeds 5
    python benchmarks/bench_search_quality.py known --construction gap --seeds 1 \\
        --steps 3600 --weights-optimizer adamw --learning-rate 2e-3
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tsnet_keras.search import ParsecSearch, search_dataset  # noqa: E402
from tsnet_keras.search.parsec import accuracy_score  # noqa: E402
from tsnet_keras.search.distribution import ArchitectureDistribution  # noqa: E402
from tsnet_keras.search.progressive import RESULT_FLOOR, step_space  # noqa: E402
from tsnet_keras.space.architecture import Architecture  # noqa: E402
from tsnet_keras.spaces import auto_tsnet_mini  # noqa: E402

CROP = 32
PLANTED = ("sparse[2].temporal_kernel", 5)
# Settings compared by `planted --configs`: ParsecSearch keyword overrides plus
# "heldout_batch" (clips every sample is scored on) and "logits_optimizer" (a
# `ParsecSearch.compile` name). "default": the library's.
CONFIGS = {
    "default": {},
    "previous_default": dict(weighting="softmax", temperature=1.0, samples_per_replica=2,
                             heldout_batch=8),
    "softmax_t0.05_k4": dict(weighting="softmax", temperature=0.05),
    "baseline_t0.05_k4": dict(weighting="baseline", temperature=0.05),
    "rank_k2": dict(weighting="rank", samples_per_replica=2),
    "rank_k4_n8": dict(weighting="rank", heldout_batch=8),
    "rank_k4_n32": dict(weighting="rank", heldout_batch=32),
    "rank_k4_importance": dict(weight_update="importance", temperature=0.05),
    "split_batch": dict(path_batch="split"),
    "adam": dict(logits_optimizer="adam"),
    "evidence": dict(logits_optimizer="evidence"),
}


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """What one benchmark search runs with (the search recipe's defaults).

    learning_rate: the paper's 0.4 at batch 64, scaled linearly to batch 8.
    """

    steps: int = 300
    batch_size: int = 8
    heldout_batch: int = 16
    learning_rate: float = 0.4 * 8 / 64
    logits_learning_rate: float = 0.025
    logits_optimizer: str | None = None  # None: the library's default
    warmup_steps: int = 0  # weights only (alpha frozen) before the search steps
    weights_optimizer: str = "sgd"
    record_every: int = 10
    estimator: tuple = ()  # ParsecSearch keyword overrides, as (name, value) pairs


# ----------------------------------------------------------------------- data
def _cache_path(**params) -> str:
    from tsnet_keras.data.synthetic import GENERATOR_VERSION, default_cache_dir

    key = hashlib.sha1(json.dumps({**params, "v": GENERATOR_VERSION}, sort_keys=True).encode())
    return os.path.join(default_cache_dir(), "bench_clips", key.hexdigest()[:12] + ".npz")


def synthetic_clips(crop=CROP, frames=4, stride=16, train_epochs=3, heldout_fraction=0.2,
                    seed=0) -> dict:
    """Decoded sparse clips of the synthetic dataset: train (several epochs) and held-out.

    The held-out videos are split off the training list per class, as the
    recipes do; the validation list stays unused. Cached as float16 .npz.
    """
    path = _cache_path(crop=crop, frames=frames, stride=stride, epochs=train_epochs,
                       heldout=heldout_fraction, seed=seed)
    if os.path.exists(path):
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    from tsnet_keras.recipes.data import resolve_data, split_heldout

    data = resolve_data(verbose=False)
    train, heldout = split_heldout(data.train, heldout_fraction, seed)
    common = dict(crop=crop, frames=(frames, None), sparse_stride=stride)
    arrays = {"num_classes": np.asarray(data.num_classes)}
    xs, ys = [], []
    for epoch in range(train_epochs):
        dataset = data.dataset("train", "train", batch_size=64, seed=seed * 100 + epoch,
                               videos=train, **common)
        for x, y in dataset:
            xs.append(x.numpy().astype("float16"))
            ys.append(y.numpy())
    arrays["train_x"], arrays["train_y"] = np.concatenate(xs), np.concatenate(ys)
    dataset = data.dataset("val", "val", batch_size=64, videos=heldout, **common)
    pairs = [(x.numpy().astype("float16"), y.numpy()) for x, y in dataset]
    arrays["heldout_x"] = np.concatenate([p[0] for p in pairs])
    arrays["heldout_y"] = np.concatenate([p[1] for p in pairs])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path + ".tmp.npz", **arrays)
    os.replace(path + ".tmp.npz", path)
    return arrays


def search_data(clips, settings: SearchSettings, seed: int):
    """`((x, y), (x_heldout, y_heldout))` batches; the training order depends on the seed."""
    order = np.random.default_rng(seed).permutation(len(clips["train_y"]))
    train = tf.data.Dataset.from_tensor_slices(
        (clips["train_x"][order].astype("float32"), clips["train_y"][order]))
    heldout = tf.data.Dataset.from_tensor_slices(
        (clips["heldout_x"].astype("float32"), clips["heldout_y"]))
    train = train.batch(settings.batch_size, drop_remainder=True).repeat()
    heldout = heldout.shuffle(len(clips["heldout_y"]), seed=seed)
    return search_dataset(train, heldout.batch(settings.heldout_batch, drop_remainder=True))


# -------------------------------------------------------------------- planted
def planted_score(space, key, value, delta, stochastic=False):
    """accuracy + delta when the sampled architecture has `value` for variable `key`.

    `stochastic=False`: the bonus is added to the score as it is. With ranks and
    n held-out clips, accuracy moves in steps of 1/n, so a delta below 1/n only
    breaks ties in the planted choice's favour (delta 2 and 5 give the same run).
    `stochastic=True` models a really better architecture instead: each
    misclassified clip counts as correct with probability delta / (1 - accuracy),
    so the expected accuracy rises by delta and ties stay ties half of the time.
    """
    keys = [v.key for v in space.variables()]
    variable = space.variables()[keys.index(key)]
    position, choice = keys.index(key), variable.choices.index(value)

    def score(y_true, logits, indices):
        planted = ops.cast(ops.equal(indices[position], choice), "float32")
        if not stochastic:
            return accuracy_score(y_true, logits) + planted * delta
        correct = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"),
                                     ops.cast(y_true, "int32")), "float32")
        accuracy = ops.mean(correct)
        flip = ops.minimum(delta / ops.maximum(1.0 - accuracy, 1e-6), 1.0)
        lucky = ops.cast(tf.random.uniform(ops.shape(correct)) < flip, "float32")
        return ops.mean(ops.maximum(correct, lucky * planted))

    return score


def drift(marginals: dict, exclude=()) -> float:
    """Largest (marginal - uniform) over the variables not in `exclude`."""
    gaps = [max(m.values()) - 1.0 / len(m) for k, m in marginals.items() if k not in exclude]
    return float(max(gaps, default=0.0))


class _Recorder(keras.callbacks.Callback):
    def __init__(self, every, key, value):
        super().__init__()
        self.every, self.key, self.value = every, key, value
        self.curve = []

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.search_step.numpy())
        if step % self.every == 0:
            marginals = self.model.distribution.marginals()
            self.curve.append({"step": step, "p": marginals[self.key][self.value],
                               "drift": drift(marginals, (self.key,)),
                               "entropy": float(self.model.distribution.entropy_numpy())})


def run_search(space, clips, settings: SearchSettings, seed: int, score="accuracy",
               watch=PLANTED) -> dict:
    """One search; returns the curve of `watch`'s probability and the final marginals."""
    keras.utils.set_random_seed(seed)
    search = ParsecSearch(space, int(clips["num_classes"]), crop=CROP, score=score, seed=seed,
                          **dict(settings.estimator))
    search.compile(weights_optimizer=settings.weights_optimizer,
                   learning_rate=settings.learning_rate,
                   total_steps=settings.warmup_steps + settings.steps,
                   logits_learning_rate=settings.logits_learning_rate,
                   logits_optimizer=settings.logits_optimizer)
    recorder = _Recorder(settings.record_every, *watch)
    started = time.time()
    data = search_data(clips, settings, seed)
    if settings.warmup_steps:
        search.logits_frozen = True
        search.fit(data, epochs=1, steps_per_epoch=settings.warmup_steps, verbose=0)
        search.logits_frozen = False
    search.fit(data, epochs=1, steps_per_epoch=settings.steps, verbose=0, callbacks=[recorder])
    marginals = search.distribution.marginals()
    choice_accuracy = heldout_accuracy_by_choice(search, clips, watch[0])
    print(f"  seed {seed}: P({watch[0]} = {watch[1]}) = {marginals[watch[0]][watch[1]]:.3f}, "
          f"drift {drift(marginals, (watch[0],)):.2f}, {time.time() - started:.0f} s",
          file=sys.stderr, flush=True)
    return {"seed": seed, "curve": recorder.curve, "marginals": marginals,
            "heldout_accuracy_by_choice": choice_accuracy,
            "seconds": round(time.time() - started, 1),
            "most_probable": search.distribution.most_probable().to_dict(),
            "result": search_result(space, int(clips["num_classes"]), marginals,
                                    search.target_macs).to_dict()}


def target_macs_of(settings: dict) -> int | None:
    """The FLOPs target of a search from its JSON-written `SearchSettings` (None: none)."""
    return dict(map(tuple, settings["estimator"])).get("target_macs")


def search_result(space, num_classes, marginals, target_macs=None) -> Architecture:
    """A search's result as the recipes take it, from its final `marginals`: the most
    probable architecture, within RESULT_FLOOR-100% of `target_macs` when it had one."""
    distribution = ArchitectureDistribution(space, num_classes, CROP)
    distribution.set_logits({key: np.log(np.maximum(list(marginals[key].values()), 1e-30))
                             for key in distribution.keys})
    return distribution.most_probable_within(target_macs, floor=RESULT_FLOOR)


def heldout_accuracy_by_choice(search, clips, key) -> dict:
    """Held-out accuracy of the most probable architecture with each choice of `key`.

    Scored like the search scores (batch statistics, no BN update) on every
    held-out clip: does the trained supernet see a difference at all?
    """
    dist = search.distribution
    position = dist.keys.index(key)
    base = np.asarray(search.most_probable_indices())
    x, y = clips["heldout_x"].astype("float32"), clips["heldout_y"]
    result = {}
    for index, choice in enumerate(dist.search_variables[position].choices):
        indices = base.copy()
        indices[position] = index
        correct = 0
        for start in range(0, len(y), 32):
            logits = search.supernet(x[start:start + 32], indices=indices, training=True,
                                     update_statistics=False)
            correct += int(np.sum(np.argmax(np.asarray(logits), -1) == y[start:start + 32]))
        result[str(choice)] = correct / len(y)
    return result


def step_reaching(curve, level=0.9):
    """First recorded step at which the probability reached `level` (None if never)."""
    return next((point["step"] for point in curve if point["p"] >= level), None)


def summarise(runs, key, value) -> dict:
    final = [r["marginals"][key][value] for r in runs]
    drifts = [drift(r["marginals"], (key,)) for r in runs]
    reached = [step_reaching(r["curve"]) for r in runs]
    return {
        "seeds": len(runs),
        "found_0.9": sum(p >= 0.9 for p in final),
        "median_p": float(np.median(final)),
        "min_p": float(np.min(final)),
        "median_step_0.9": (float(np.median([s for s in reached if s is not None]))
                            if any(s is not None for s in reached) else None),
        "max_drift": float(np.max(drifts)),
        "median_drift": float(np.median(drifts)),
        "seconds_per_run": float(np.mean([r["seconds"] for r in runs])),
    }


def planted(args):
    space = step_space(1, auto_tsnet_mini())
    clips = synthetic_clips()
    results = {}
    for config in args.configs:
        estimator = dict(CONFIGS[config])
        heldout_batch = estimator.pop("heldout_batch", args.heldout_batch)
        settings = SearchSettings(steps=args.steps, heldout_batch=heldout_batch,
                                  logits_optimizer=estimator.pop("logits_optimizer", None),
                                  estimator=tuple(sorted(estimator.items())))
        for delta in args.deltas:
            score = planted_score(space, *PLANTED, delta / 100.0, args.stochastic)
            runs = [run_search(space, clips, settings, seed, score) for seed in args.seeds_list]
            results[f"{config} delta={delta}"] = {"config": config, "delta": delta,
                                                  "stochastic": args.stochastic,
                                                  "settings": dataclasses.asdict(settings),
                                                  "summary": summarise(runs, *PLANTED),
                                                  "runs": runs}
            print(_row(config, delta, results[f"{config} delta={delta}"]["summary"]), flush=True)
            _write(args.output, "planted.json", results)
    return results


# ---------------------------------------------------------------- known answer
KNOWN_GROUP = 1
# How `known` lays out the clips, and which temporal kernels of KNOWN_GROUP are blind
# to the frames' order by design (tests/test_bench_search_quality.py checks both):
# - order: the 4 decoded frames as decoded; t = 1 is blind.
# - gap: the 2 middle decoded frames set 3 apart among blank ones, [B, B, f1, B, B, f2, B, B].
#   Every window of 3 frames holds at most one of them, with the same blanks around
#   it wherever it sits, so the network's pooled features are the same for the clip
#   and for f1 and f2 swapped (the motion reversed): t = 1 and t = 3 are blind, and
#   only t = 5 sees both frames. A uniform draw is blind two times in three. The
#   middle pair, not the first: a class's path is centred on the video, so frames
#   0 and 1 of a centred clip sit on the side the object comes from, and their
#   position alone gave the direction away (held-out 45% with t = 1, not 25-30%).
# "layout": decoded frame -> its place among `frames` blank ones (None: as decoded).
CONSTRUCTIONS = {
    "order": {"frames": 4, "layout": None, "blind": (1,), "watch": 1},
    "gap": {"frames": 8, "layout": {1: 2, 2: 5}, "blind": (1, 3), "watch": 5},
}


def arrange(x: np.ndarray, construction: str) -> np.ndarray:
    """Clips `(N, 4, H, W, C)` laid out as `construction` says (see CONSTRUCTIONS)."""
    spec = CONSTRUCTIONS[construction]
    if spec["layout"] is None:
        return x
    out = np.zeros((x.shape[0], spec["frames"]) + x.shape[2:], x.dtype)
    for source, position in spec["layout"].items():
        out[:, position] = x[:, source]
    return out


def known_clips(clips: dict, construction: str) -> dict:
    """`synthetic_clips()` (or validation clips) with every clip array arranged."""
    return {k: arrange(v, construction) if v.ndim == 5 else v for k, v in clips.items()}


def known_answer_space(group=KNOWN_GROUP, construction="order"):
    """Step-1 space of `auto_tsnet_mini()` where only `group` can mix frames.

    The stem's temporal conv and every other group have temporal kernel 1, so
    the network sees the frames' order only through `group`'s temporal kernel:
    with t = 1 it averages per-frame features, which cannot tell the motion's
    direction (start positions are uniform), and the synthetic classes need it
    (appearance alone: 25% at most, appearance + direction: 50%). The other
    variables (spatial kernels, widths, expansions) stay searchable. The right
    answer: t in {3, 5} for `group` ("order"), t = 5 on "gap" clips.
    """
    frames = CONSTRUCTIONS[construction]["frames"]
    space = step_space(1, auto_tsnet_mini(sparse_frames=frames))
    groups = tuple(
        dataclasses.replace(g, temporal_kernel=(1, 3, 5) if index == group else (1,))
        for index, g in enumerate(space.sparse.groups)
    )
    stem = dataclasses.replace(space.sparse.stem, temporal_kernel=1)
    sparse = dataclasses.replace(space.sparse, stem=stem, groups=groups)
    return dataclasses.replace(space, sparse=sparse)


def known_settings(args) -> SearchSettings:
    """The `known` command's search settings from its arguments."""
    estimator = (("path_batch", args.path_batch),) if args.path_batch else ()
    estimator += (("outer_taps", args.outer_taps),)
    if args.target_macs:
        estimator += (("target_macs", round(args.target_macs * 1e6)),)
    return SearchSettings(steps=args.steps, heldout_batch=args.heldout_batch,
                          warmup_steps=args.warmup_steps,
                          learning_rate=args.learning_rate or SearchSettings.learning_rate,
                          weights_optimizer=args.weights_optimizer, estimator=estimator,
                          logits_optimizer=args.logits_optimizer)


def known(args):
    construction = CONSTRUCTIONS[args.construction]
    space = known_answer_space(construction=args.construction)
    clips = known_clips(synthetic_clips(), args.construction)
    key = f"sparse[{KNOWN_GROUP}].temporal_kernel"
    settings = known_settings(args)
    runs = [run_search(space, clips, settings, seed, score=args.score,
                       watch=(key, construction["watch"]))
            for seed in args.seeds_list]
    rows = []
    for run in runs:
        m = run["marginals"][key]
        rows.append({"seed": run["seed"], "p_t1": m[1], "p_t3": m[3], "p_t5": m[5],
                     "p_blind": sum(m[t] for t in construction["blind"]),
                     "most_probable_t": max(m, key=m.get),
                     "drift_others": drift(run["marginals"], (key,))})
        accuracy = run["heldout_accuracy_by_choice"]
        rows[-1]["heldout_accuracy_by_choice"] = accuracy
        print(f"| {run['seed']} | {m[1]:.2f} | {m[3]:.2f} | {m[5]:.2f} | "
              f"{rows[-1]['most_probable_t']} | {rows[-1]['drift_others']:.2f} | "
              f"{' / '.join(f'{100 * accuracy[t]:.0f}' for t in ('1', '3', '5'))} |",
              flush=True)
    _write(args.output, "known.json", {"settings": dataclasses.asdict(settings),
                                       "construction": args.construction,
                                       "score": args.score, "rows": rows,
                                       "runs": runs})
    return rows


def _row(config, delta, summary):
    return (f"| {config} | {delta} | {summary['found_0.9']}/{summary['seeds']} | "
            f"{summary['median_p']:.2f} (min {summary['min_p']:.2f}) | "
            f"{summary['median_step_0.9']} | {summary['max_drift']:.2f} "
            f"(median {summary['median_drift']:.2f}) | {summary['seconds_per_run']:.0f} |")


def _write(output, name, payload):
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, name), "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1)


# ----------------------------------------------------------------------- figure
def plot_known(json_paths, path):
    """P(the watched choice) against search steps, one line per run of each `known.json`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.6))
    for json_path in json_paths:
        with open(json_path, encoding="utf-8") as handle:
            result = json.load(handle)
        settings, construction = result["settings"], result.get("construction", "order")
        watch = CONSTRUCTIONS[construction]["watch"]
        target = target_macs_of(settings)
        budget = f", target {target / 1e6:g} M MACs" if target else ""
        for run in result["runs"]:
            steps = [point["step"] for point in run["curve"]]
            axis.plot(steps, [point["p"] for point in run["curve"]],
                      label=f"{construction}, {settings['steps']} steps, "
                            f"{settings['weights_optimizer']}{budget}, seed {run['seed']}: "
                            f"P(t = {watch})")
    axis.axhline(1 / 3, color="grey", linestyle=":", linewidth=1)
    axis.set(xlabel="search step", ylabel="probability", ylim=(0, 1.02),
             title=f"known answer: sparse group {KNOWN_GROUP}'s temporal kernel")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def plot_planted(json_paths, path, config="default"):
    """P(planted choice) and the others' drift against search steps, one panel per delta
    (the runs of `config`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {}
    for json_path in json_paths:
        with open(json_path, encoding="utf-8") as handle:
            for entry in json.load(handle).values():
                if entry["config"] == config:
                    kind = (entry["delta"], bool(entry.get("stochastic")))
                    results.setdefault(kind, []).extend(entry["runs"])
    deltas = sorted(results)
    figure, axes = plt.subplots(1, len(deltas), figsize=(4.2 * len(deltas), 3.4), squeeze=False)
    for axis, delta in zip(axes[0], deltas):
        for run in results[delta]:
            steps = [point["step"] for point in run["curve"]]
            axis.plot(steps, [point["p"] for point in run["curve"]], color="tab:blue", lw=1)
            axis.plot(steps, [point["drift"] for point in run["curve"]], color="tab:orange",
                      lw=1, alpha=0.7)
        axis.axhline(0.9, color="grey", ls="--", lw=0.8)
        axis.axhline(0.15, color="tab:orange", ls=":", lw=0.8)  # the drift goal
        size, real = delta
        axis.set(title=f"{'real ' if real else ''}+{size:g} points for t=5 in group 2 "
                       f"({len(results[delta])} seeds)",
                 xlabel="search step", ylim=(0, 1))
    axes[0][0].set_ylabel("blue: P(t=5)   orange: others' drift")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    plant = sub.add_parser("planted", help="planted advantage on real held-out accuracy")
    plant.add_argument("--deltas", type=float, nargs="+", default=[2, 5, 10],
                       help="advantage in accuracy points")
    plant.add_argument("--configs", nargs="+", default=["default"], choices=sorted(CONFIGS))
    plant.add_argument("--stochastic", action="store_true",
                       help="plant a real advantage (clips flipped to correct), not a bonus")
    know = sub.add_parser("known", help="a choice that destroys the labels' information")
    know.add_argument("--construction", default="order", choices=sorted(CONSTRUCTIONS),
                      help="order: t = 1 is blind to the motion; gap: t = 1 and 3 are "
                           "(two frames 3 apart among blank ones; see CONSTRUCTIONS)")
    know.add_argument("--warmup-steps", type=int, default=0,
                      help="weights-only steps before the search (alpha frozen)")
    know.add_argument("--learning-rate", type=float, default=0.0,
                      help="supernet peak rate (0: the recipes' SGD 0.4 x 8 / 64)")
    know.add_argument("--weights-optimizer", default="sgd", choices=("sgd", "adamw"))
    know.add_argument("--outer-taps", default="random", choices=("random", "zeros"),
                      help="the supernet's depthwise taps outside the smallest kernel: random "
                           "(the library default) or zeros (every kernel starts as the smallest)")
    know.add_argument("--logits-optimizer", default=None, choices=("adam", "evidence"),
                      help="the architecture logits' optimizer (default: the library's)")
    know.add_argument("--score", default="accuracy", choices=("accuracy", "log_likelihood"),
                      help="the held-out score of a sampled architecture")
    know.add_argument("--target-macs", type=float, default=None,
                      help="the FLOPs hinge's upper target, millions of MACs at crop 32 "
                           "(default: none)")
    know.add_argument("--path-batch", default=None, choices=("full", "split"),
                      help="clips each sampled path trains on (default: the library's)")
    for command in (plant, know):
        command.add_argument("--seeds", type=int, default=10)
        command.add_argument("--first-seed", type=int, default=0)
        command.add_argument("--steps", type=int, default=300)
        command.add_argument("--heldout-batch", type=int, default=SearchSettings.heldout_batch)
        command.add_argument("--output", default="runs/bench_search_quality")
    figure = sub.add_parser("plot", help="figure of planted.json files")
    figure.add_argument("json", nargs="+")
    figure.add_argument("--config", default="default", choices=sorted(CONFIGS),
                        help="whose runs to draw")
    figure.add_argument("--path", default="docs/images/search_quality_planted.png")
    curves = sub.add_parser("plot-known", help="figure of known.json files")
    curves.add_argument("json", nargs="+")
    curves.add_argument("--path", default="docs/images/search_quality_known_gap.png")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "plot":
        print(plot_planted(args.json, args.path, args.config))
        return
    if args.command == "plot-known":
        print(plot_known(args.json, args.path))
        return
    args.seeds_list = list(range(args.first_seed, args.first_seed + args.seeds))
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    if args.command == "planted":
        print("| config | delta (points) | P >= 0.9 at the end | final P (median, min) | "
              "median step reaching 0.9 | max drift of the others | s per run |")
        print("|---|---|---|---|---|---|---|")
    else:
        print("| seed | P(t=1) | P(t=3) | P(t=5) | most probable t | max drift of the others "
              "| held-out top-1 (%) with t = 1 / 3 / 5 |")
        print("|---|---|---|---|---|---|---|")
    {"planted": planted, "known": known}[args.command](args)


if __name__ == "__main__":
    main()
