"""The two-stream chain on a known answer: progressive vs one-shot vs random vs hand-made.

Goal (c) of the search-quality issue for the whole chain, at CPU scale, on data
where architectures of equal FLOPs really differ by construction:

- The clips (`chain_inputs`): of each decoded sparse clip (4 frames, stride 16,
  crop 32) frames 1 and 2 carry the motion. The dense stream gets them at
  frames 3 and 6 of 12 blank ones; the sparse stream gets their mean, 4 times.
  So the sparse stream sees the object but never the order of the two frames.
- The space (`chain_space`): `auto_tsnet_mini(dense_frames=12)` where only dense
  group 1 mixes frames (t in {1, 3, 5}; every other temporal kernel, the stems'
  included, is 1) and the one fusion place is after group 0, before the frames
  are mixed. Only t = 5 in dense group 1 reaches both frames. With t = 1 or 3,
  and with every fusion op, swapping the two frames permutes the features
  through the network, so the logits cannot tell the direction of motion
  (checked on fixed models in `tests/test_bench_chain_known.py`).
- `search`: the library's `progressive_search` (steps 1, 2, 3; step 2 inherits
  step 1's weights) or `one_shot_search`, on in-memory clips, at a MACs target.
  Resumable: a killed run picks up at its last checkpoint.
- `compare`: the progressive and one-shot results, `--random` uniform draws within
  5% of the progressive result's MACs and a hand-made two-stream model at the
  same MACs, each trained from scratch `--seeds` times and scored on the 160
  validation videos. Resumable per (architecture, seed).

Usage:
    python benchmarks/bench_chain_known.py budget
    python benchmarks/bench_chain_known.py search --mode progressive --output runs/chain_known
    python benchmarks/bench_chain_known.py search --mode one_shot --output runs/chain_known
    python benchmarks/bench_chain_known.py search --mode one_shot --target-macs 0 \
        --warmup-steps 1200 --warmup-sampling largest_kernels --output runs/chain_diag_largest
    python benchmarks/bench_chain_known.py compare --output runs/chain_known
    python benchmarks/bench_chain_known.py plot --curves --runs runs/chain_known/progressive \
        runs/chain_known/one_shot --path docs/images/chain_known_curves.png

On 2026-12-05 neither search found t = 5 (3600 to 9600 steps of step 2, 4600 one-shot):
the supernet's held-out score stayed at the appearance level, where fixed models with
t = 5 learn the motion (BENCHMARKS.md section 8, "(c) for the two-stream chain").
`search --space only_t | t5` and `--control` split the problem: the estimator finds t = 5
once the supernet reads the motion, the supernet does not learn it while t and every
other variable are shared, and `--warmup-sampling largest_kernels` lets a one-shot search
find it (section 8, "the chain's diagnosis"). With that warm-up (1200 steps) both searches
found it at the 9 M target for seed 0, not for seed 1 (section 8, "(c) for the chain at the
9 M target"). Retrained (`compare --random 5`), the one-shot result beat the random draws
by 6.31 std (section 8, "(c) for the chain: searched vs random vs hand-made, retrained").
Step 2's stream dropout (the library's default since 2026-12-06; `--stream-dropout 0` for the
runs before) made the progressive search find it in 4 of 4 seeds, and its retrained result
beat the random draws by 2.65 std (section 8, "stream dropout in progressive step 2").
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
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
import bench_searched_vs_random as versus  # noqa: E402
from tsnet_keras.accounting import complexity  # noqa: E402
from tsnet_keras.search import baselines  # noqa: E402
from tsnet_keras.search.parsec import WARMUP_SAMPLINGS  # noqa: E402
from tsnet_keras.search.progressive import (  # noqa: E402
    load_step_result,
    one_shot_search,
    progressive_search,
)
from tsnet_keras.spaces import auto_tsnet_mini  # noqa: E402

CROP = quality.CROP
DENSE_FRAMES = 12
# Decoded sparse frame -> its dense frame. 3 apart: t = 5 reaches both, t = 3 one at a
# time with the same blanks around it; both at 0 mod alpha (3), so every fusion op
# treats them alike and the fusion conv's windows (3j - 2 .. 3j + 2) hold one at most.
DENSE_LAYOUT = {1: 3, 2: 6}
MIXING_GROUP = 1  # the dense group whose temporal kernel is searched
FUSION_PLACES = (0,)  # before the mixing group: fusion carries unmixed frames only
TARGET_MACS = 9.0  # millions: 70% of the uniform draws near it are blind (`budget`)
KEY = f"dense[{MIXING_GROUP}].temporal_kernel"


# ----------------------------------------------------------------- space, clips
def _unmixed(stream, mixing_group=None):
    """`stream` with temporal kernel 1 everywhere but `mixing_group` (1, 3, 5)."""
    groups = tuple(dataclasses.replace(g, temporal_kernel=(1, 3, 5) if i == mixing_group else (1,))
                   for i, g in enumerate(stream.groups))
    stem = dataclasses.replace(stream.stem, temporal_kernel=1)
    return dataclasses.replace(stream, stem=stem, groups=groups)


def chain_space():
    """The two-stream known-answer space (module docstring)."""
    space = auto_tsnet_mini(sparse_frames=4, dense_frames=DENSE_FRAMES,
                            fusion_places=FUSION_PLACES)
    return dataclasses.replace(space, sparse=_unmixed(space.sparse),
                               dense=_unmixed(space.dense, MIXING_GROUP))


def chain_inputs(x: np.ndarray, order: bool = True) -> dict:
    """Decoded sparse clips `(N, 4, H, W, C)` -> `{"sparse": ..., "dense": ...}`.
    `order=False` (the control task): both dense frames hold the mean too, so no
    architecture can see the direction of motion."""
    first, second = (x[:, frame] for frame in DENSE_LAYOUT)
    mean = ((first.astype("float32") + second.astype("float32")) / 2).astype(x.dtype)
    sparse = np.repeat(mean[:, None], 4, axis=1)
    dense = np.zeros((x.shape[0], DENSE_FRAMES) + x.shape[2:], x.dtype)
    for frame, position in DENSE_LAYOUT.items():
        dense[:, position] = x[:, frame] if order else mean
    return {"sparse": sparse, "dense": dense}


def variant(t, fusion="none", seed=1):
    """Uniform draw `seed` of the space with `t` in the mixing group and `fusion` at place 0
    (seed 1, "none": the draw of the fixed models, t = 5 42.5%, t = 3 26.9%)."""
    arch = baselines.uniform_draw(chain_space(), seed)
    sparse, dense = list(arch.sparse.groups), list(arch.dense.groups)
    sparse[0] = dataclasses.replace(sparse[0], fusion=fusion)
    dense[MIXING_GROUP] = dataclasses.replace(dense[MIXING_GROUP], temporal_kernel=t)
    return dataclasses.replace(arch, sparse=dataclasses.replace(arch.sparse, groups=tuple(sparse)),
                               dense=dataclasses.replace(arch.dense, groups=tuple(dense)))


def diagnosis_space(name):
    """The chain's space ("chain") or a diagnosis variant: "only_t" (every variable fixed
    to `variant(5)`'s value but the mixing group's t) or "t5" (the mixing group's t fixed
    to 5, the 42 other variables searched)."""
    space = chain_space()
    keys = {"chain": [], "only_t": [v.key for v in space.variables() if v.key != KEY],
            "t5": [KEY]}[name]
    return space.fix(variant(5), keys=keys)


def sees_order(arch) -> bool:
    """Whether `arch` can tell the direction of motion on these clips: t = 5 in the group."""
    return arch.dense.groups[MIXING_GROUP].temporal_kernel == 5


def macs(arch, num_classes) -> int:
    return complexity(arch, num_classes, crop=CROP).macs


# ------------------------------------------------------------------------ data
def _as_float32(inputs, labels):
    return {k: tf.cast(v, "float32") for k, v in inputs.items()}, labels


def _dataset(clips: tf.data.Dataset, batch, seed=None, repeat=False):
    """Batches of `clips` (one clip per element, float16), shuffled with `seed`, as float32.

    The clips stay float16 in memory until batched: one copy for every epoch's dataset,
    where a float32 copy per epoch held 8.5-12.7 GB with 12 decoded epochs."""
    data = clips.shuffle(int(clips.cardinality()), seed=seed) if seed is not None else clips
    data = data.batch(batch, drop_remainder=True).map(_as_float32)
    return data.repeat() if repeat else data


class ChainData:
    """The training and held-out clips of `synthetic_clips()`, arranged for the chain."""

    def __init__(self, batch_size=8, heldout_batch=16, train_epochs=3, order=True):
        clips = quality.synthetic_clips(train_epochs=train_epochs)
        self.num_classes = int(clips["num_classes"])
        self.train = tf.data.Dataset.from_tensor_slices(
            (chain_inputs(clips["train_x"], order), clips["train_y"]))
        self.heldout = tf.data.Dataset.from_tensor_slices(
            (chain_inputs(clips["heldout_x"], order), clips["heldout_y"]))
        self.batch_size, self.heldout_batch = batch_size, heldout_batch

    def train_epoch(self, epoch):
        """One epoch's batches, reshuffled per epoch (a resumed search replays them)."""
        return _dataset(self.train, self.batch_size, seed=epoch)

    def heldout_data(self):
        return _dataset(self.heldout, self.heldout_batch, seed=0, repeat=True)


# ---------------------------------------------------------------------- search
class _Curve(keras.callbacks.Callback):
    """Appends P(t) of the mixing group every `every` steps to a JSON-lines file."""

    def __init__(self, path, every=50):
        super().__init__()
        self.path, self.every = path, every

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.search_step.numpy())
        if step % self.every == 0 and KEY in self.model.distribution.keys:
            marginals = self.model.distribution.marginals()[KEY]
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": step, **{str(t): p for t, p in
                                                          marginals.items()}}) + "\n")


def search(args):
    data = ChainData(train_epochs=args.train_epochs, order=not args.control)
    target = round(args.target_macs * 1e6) or None
    space = diagnosis_space(args.space)
    directory = os.path.join(args.output, args.mode)
    os.makedirs(directory, exist_ok=True)
    common = dict(num_classes=data.num_classes, steps_per_epoch=args.steps_per_epoch,
                  crop=CROP, weights_optimizer="adamw", learning_rate=2e-3, seed=args.seed,
                  tensorboard=False, verbose=0, checkpoint_every=args.steps_per_epoch,
                  warmup_sampling=args.warmup_sampling,
                  stream_dropout=(None, args.stream_dropout, None) if args.mode == "progressive"
                  else args.stream_dropout,
                  callbacks=[_Curve(os.path.join(directory, "curve.jsonl"))])
    warmup = args.warmup_steps // args.steps_per_epoch
    started = time.time()
    if args.mode == "progressive":  # targets as the recipes': step 2 only (step 3's cannot bind)
        epochs = tuple(max(1, s // args.steps_per_epoch) for s in args.steps)
        results = progressive_search(space, data.train_epoch, data.heldout_data(),
                                     directory, epochs=epochs,
                                     target_macs=(None, target, None),
                                     warmup_epochs=(0, warmup, 0), **common)
        result, searched = results[-1], results[1]
    else:
        epochs = max(1, sum(args.steps) // args.steps_per_epoch)
        result = one_shot_search(space, data.train_epoch, data.heldout_data(), directory,
                                 epochs=epochs, target_macs=target, warmup_epochs=warmup,
                                 **common)
        searched = result
    marginals = searched.distribution.marginals()
    print(f"{args.mode}: P({KEY}) = {marginals.get(KEY)}; result "
          f"{macs(result.architecture, data.num_classes) / 1e6:.2f} M MACs, "
          f"t = {result.architecture.dense.groups[MIXING_GROUP].temporal_kernel}; "
          f"{time.time() - started:.0f} s", flush=True)


def budget(args):
    """MACs of uniform draws and the blind share near a few targets (to choose one)."""
    space, classes = chain_space(), 8
    draws = [baselines.uniform_draw(space, seed) for seed in range(args.draws)]
    values = np.array([macs(a, classes) for a in draws]) / 1e6
    print(f"uniform draws: MACs {values.min():.1f}-{values.max():.1f} M, median "
          f"{np.median(values):.1f}")
    for target in args.targets:
        near = [a for a in baselines.random_architectures(space, target * 1e6, 200,
                                                          num_classes=classes, crop=CROP, seed=1)]
        print(f"target {target} M: blind share within 5%: "
              f"{1 - np.mean([sees_order(a) for a in near]):.2f}")



# --------------------------------------------------------------------- compare
def hand_made(space, num_classes, target):
    """X3D-like on both streams: k = 3, t = 3 in the mixing group (X3D's kernel, blind
    here by construction), one expansion and one relative width for every group (each
    stream's last group's expansion apart), SlowFast's time-strided conv at the fusion
    place, no attention; the combination closest in MACs to `target`."""
    base = baselines.uniform_draw(space, 0)
    groups = space.sparse.groups + space.dense.groups
    expansions = sorted(set.intersection(*(set(g.expansion) for g in groups)))
    width_steps = min(len(g.channels) for g in groups)
    best = None
    for expansion, last, step in itertools.product(expansions, expansions, range(width_steps)):
        arch = dataclasses.replace(base, **{
            name: _hand_made_stream(getattr(base, name), getattr(space, name), name == "dense",
                                    expansion, last, step / max(width_steps - 1, 1))
            for name in ("sparse", "dense")})
        gap = abs(macs(arch, num_classes) / target - 1)
        if best is None or gap < best[0]:
            best = (gap, arch)
    return best[1]


def _hand_made_stream(stream, choices, dense, expansion, last, width):
    """`stream` with `hand_made`'s choices; `width` in [0, 1] picks each group's channels."""
    groups = []
    for index, (group, options) in enumerate(zip(stream.groups, choices.groups)):
        groups.append(dataclasses.replace(
            group, spatial_kernel=3, attention=False,
            expansion=last if index == len(stream.groups) - 1 else expansion,
            channels=options.channels[round(width * (len(options.channels) - 1))],
            temporal_kernel=3 if dense and index == MIXING_GROUP else group.temporal_kernel,
            fusion="time_strided_conv" if "time_strided_conv" in options.fusion else "none"))
    return dataclasses.replace(stream, groups=tuple(groups))


def _results(output) -> dict:
    return {name: load_step_result(os.path.join(output, directory)).architecture
            for name, directory in (("progressive", "progressive/step3"), ("one-shot", "one_shot"))}


def candidates(output, num_classes, count, baseline_from=None) -> dict:
    """Name -> architecture: the two searches' results, the hand-made one, `count` random,
    the last two at the MACs of `baseline_from`'s progressive result (default: `output`'s)."""
    found = _results(output)
    target = macs(_results(baseline_from or output)["progressive"], num_classes)
    found["hand-made"] = hand_made(chain_space(), num_classes, target)
    for index, arch in enumerate(baselines.random_architectures(
            chain_space(), target, count, num_classes=num_classes, crop=CROP, seed=0)):
        found[f"random {index}"] = arch
    return found


def _load(path) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        results = json.load(handle)
    results.pop("summary", None)
    return results


def compare(args):
    """Retrains every candidate `--seeds` times, seed by seed; resumes from `--output`'s JSON."""
    data = ChainData()
    clips = versus.validation_clips()
    val = ({k: v.astype("float32") for k, v in chain_inputs(clips["x"]).items()}, clips["y"])
    path = os.path.join(args.output, "comparison.json")
    results = _load(path)
    found = candidates(args.output, data.num_classes, args.random, args.baseline_from)
    for seed in range(args.seeds):
        for name in args.names or found:
            entry = entry_of(results, name, found[name], data.num_classes, path,
                             args.stream_dropout)
            if len(entry["top1"]) > seed:
                continue
            started = time.time()
            train = _dataset(data.train, 8, seed=seed, repeat=True)
            entry["top1"].append(versus.fit_and_score(found[name], data.num_classes, train, val,
                                                      seed, args.steps, args.stream_dropout))
            print(f"{name} seed {seed}: {100 * entry['top1'][-1]:.1f}% "
                  f"({time.time() - started:.0f} s)", flush=True)
            versus._write(path, results)
    if args.names:
        return
    summary = summary_of(results)
    print(json.dumps(summary, indent=1))
    versus._write(path, {**results, "summary": summary})


def entry_of(results, name, arch, num_classes, path, stream_dropout=0.0) -> dict:
    """`results[name]`, made if new; refused if it holds another architecture (compared in
    JSON form: a resumed run reads lists where `to_dict` gives tuples) or was retrained
    with another stream dropout (entries without one had none)."""
    architecture = json.loads(json.dumps(arch.to_dict()))
    entry = results.setdefault(name, {"architecture": architecture, "top1": [],
                                      "macs": macs(arch, num_classes),
                                      "sees_order": sees_order(arch),
                                      "stream_dropout": stream_dropout})
    if entry["architecture"] != architecture:
        raise SystemExit(f"{path}: {name}'s architecture differs from this run's")
    if entry.get("stream_dropout", 0.0) != stream_dropout:
        raise SystemExit(f"{path}: {name} was retrained with stream_dropout="
                         f"{entry.get('stream_dropout', 0.0)}, this run asks {stream_dropout}")
    return entry


def summary_of(results) -> dict:
    """Searched vs random (std of the random draws' means), and the blind share."""
    mean = {name: float(np.mean(r["top1"])) for name, r in results.items()}
    randoms = [mean[name] for name in results if name.startswith("random")]
    summary = {"construction": "two-stream gap", "random_mean": float(np.mean(randoms)),
               "random_std": float(np.std(randoms, ddof=1)), "hand_made": mean["hand-made"],
               "random_seeing": sum(r["sees_order"] for n, r in results.items()
                                    if n.startswith("random"))}
    for name in ("progressive", "one-shot"):
        gap = baselines.searched_vs_random(mean[name], randoms)
        summary[name] = mean[name]
        summary[f"{name}_beats_random_by_std"] = gap["beats_mean_by_std"]
    return summary


def read_curve(path) -> list:
    """`curve.jsonl` as a list of records, one per step (a resumed run's repeats: the last)."""
    with open(path, encoding="utf-8") as handle:
        records = {record["step"]: record for record in map(json.loads, handle)}
    return [records[step] for step in sorted(records)]


def plot_curves(args):
    """P(t = 5) and P(t = 1) of the mixing group against search steps, one colour per run
    (`--runs`: search folders holding a `curve.jsonl`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10.5, 3.8))
    for run, colour in zip(args.runs, plt.get_cmap("tab10").colors):
        curve = read_curve(os.path.join(run, "curve.jsonl"))
        for t, style in (("5", "-"), ("1", "--")):
            axis.plot([r["step"] for r in curve], [r[t] for r in curve], style, color=colour,
                      label=f"{run}: P(t = {t})")
    axis.axhline(1 / 3, color="black", lw=0.5)
    axis.set(xlabel="search step", ylabel=f"P({KEY})", ylim=(0, 1),
             title="two streams, known answer (t = 5 sees), " + (
                 f"target {args.target_macs} M MACs" if args.target_macs else "no MACs target"))
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # off the curves
    figure.tight_layout()
    figure.savefig(args.path, dpi=110)
    print(args.path)


def plot(args):
    if args.curves:
        return plot_curves(args)
    t_of = lambda architecture: architecture["dense"]["groups"][MIXING_GROUP]["temporal_kernel"]
    print(versus.plot(os.path.join(args.output, "comparison.json"), args.path, t_of=t_of,
                      title="two streams, known answer: equal FLOPs (within 5%), "
                            "retrained identically"))

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("search", help="progressive or one-shot search (resumable)")
    run.add_argument("--mode", choices=("progressive", "one_shot"), default="progressive")
    run.add_argument("--steps", type=int, nargs=3, default=(600, 3600, 400),
                     help="steps of steps 1, 2, 3 (one-shot: their sum)")
    run.add_argument("--steps-per-epoch", type=int, default=100)
    run.add_argument("--target-macs", type=float, default=TARGET_MACS,
                     help="millions (0: no target)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--train-epochs", type=int, default=3,
                     help="decoded epochs of the training videos (augmented afresh each)")
    run.add_argument("--space", choices=("chain", "only_t", "t5"), default="chain",
                     help="the chain's space or a diagnosis variant (`diagnosis_space`)")
    run.add_argument("--control", action="store_true",
                     help="the control task: no order in the dense frames either")
    run.add_argument("--warmup-steps", type=int, default=0,
                     help="first steps of step 2 (one-shot: of the search) with the logits frozen")
    run.add_argument("--warmup-sampling", choices=WARMUP_SAMPLINGS, default="distribution",
                     help="largest_kernels: every kernel at its largest choice in the warm-up")
    run.add_argument("--stream-dropout", type=float, default=None,
                     help="step 2's (one-shot: the search's); default: the library's "
                          "(STREAM_DROPOUT: 0.5 in step 2, 0 in the one-shot search)")
    run.add_argument("--output", default="runs/chain_known")
    versus_ = commands.add_parser("compare", help="retrain searched, random, hand-made")
    versus_.add_argument("--random", type=int, default=8)
    versus_.add_argument("--seeds", type=int, default=3)
    versus_.add_argument("--steps", type=int, default=3000)
    versus_.add_argument("--output", default="runs/chain_known")
    versus_.add_argument("--baseline-from", default=None,
                         help="a search folder whose progressive result sets the MACs of the "
                              "random and hand-made models (default: --output)")
    versus_.add_argument("--stream-dropout", type=float, default=0.0,
                         help="the retrained models' (`TSNet(stream_dropout)`); default 0")
    versus_.add_argument("--names", nargs="+", default=None,
                         help="retrain only these candidates (e.g. progressive 'random 3'); "
                              "no summary")
    figure = commands.add_parser("plot", help="the comparison's figure")
    figure.add_argument("--output", default="runs/chain_known")
    figure.add_argument("--path", default="docs/images/chain_known_comparison.png")
    figure.add_argument("--curves", action="store_true",
                        help="the searches' P(t) curves instead of the comparison")
    figure.add_argument("--runs", nargs="+", help="with --curves: search folders",
                        default=("runs/chain_known/progressive", "runs/chain_known/one_shot"))
    figure.add_argument("--target-macs", type=float, default=TARGET_MACS, help="for the title")
    cost = commands.add_parser("budget", help="blind share of uniform draws near targets")
    cost.add_argument("--draws", type=int, default=300)
    cost.add_argument("--targets", type=float, nargs="+", default=(7, 8, 9, 10, 11, 12))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    {"search": search, "budget": budget, "compare": compare,
     "plot": plot}[args.command](args)


if __name__ == "__main__":
    main()
