"""One progressive-search step as a recipe: data, held-out split, snapshots, metrics.

`search_step(step, output_dir, previous_dir, ...)` wraps
`tsnet_keras.search.run_search_step` (which writes architecture.json,
distribution.json, model.weights.h5, history.csv/json, logs/ and an atomic
checkpoint, and resumes from it) and adds:

- the data: the training list minus a held-out share per class (the PARSEC
  held-out batches), reshuffled every epoch with `seed + epoch`, so that a
  resumed search replays the same batches; step 1 decodes the sparse stream
  only;
- `distribution_history.json`: the marginal probabilities of every searched
  variable every `snapshot_every` steps, for `plot_distribution_evolution`
  (kept consistent with the checkpoint on resume);
- `metrics.json`: the result's params and GFLOPs, the last epoch's held-out
  score, entropy and expected GFLOPs, the target, timing and decode failures.
"""

from __future__ import annotations

import dataclasses
import os
import time
import types

import keras
import numpy as np

from tsnet_keras.checks import check_choice
from tsnet_keras.recipes.common import (
    ARCHITECTURE_FILE,
    architecture_summary,
    check_int,
    check_number,
    check_output_dir,
    check_previous_dir,
    epoch_data,
    named_space,
    WorkerShare,
    choose_strategy,
    read_json,
    write_json,
    write_metrics,
)
from tsnet_keras.recipes.data import (
    RecipeData,
    logger,
    resolve_data,
    split_heldout,
    stream_frames,
)
from tsnet_keras.recipes.train import peak_rate
from tsnet_keras.renames import renamed_argument
from tsnet_keras.search.estimator import DEFAULTS
from tsnet_keras.search.evidence import LOGITS_OPTIMIZERS
from tsnet_keras.search.progressive import RESULT_FLOOR, load_evidence

SNAPSHOT_FILE = "distribution_history.json"
# The progressive steps, and "one_shot": every variable at once (the paper's Table 9 baseline).
RECIPE_STEPS = (1, 2, 3, "one_shot")
PREVIOUS_STEP_FILES = (ARCHITECTURE_FILE, "distribution.json", "model.weights.h5")


class DistributionSnapshots(keras.callbacks.Callback):
    """Records the searched variables' marginals every `every` steps and at epoch ends.

    Writes `[{"step": n, variable_key: {choice: probability}}, ...]` to `path`
    (atomically, at each snapshot). On a resumed search the snapshots taken
    after the restored step are dropped, so the file matches the checkpoint.
    """

    def __init__(self, path, every: int = 0):
        super().__init__()
        self.path = os.fspath(path)
        self.every = every
        self.snapshots = []

    def _record(self):
        step = int(self.model.search_step.numpy())
        if self.snapshots and self.snapshots[-1]["step"] == step:
            return
        marginals = self.model.distribution.marginals()
        self.snapshots.append({"step": step, **{k: {str(c): p for c, p in m.items()}
                                                for k, m in marginals.items()}})
        write_json(self.path, self.snapshots)

    def on_train_begin(self, logs=None):
        step = int(self.model.search_step.numpy())
        if not self.snapshots and os.path.exists(self.path):
            self.snapshots = [s for s in read_json(self.path) if s["step"] <= step]
        if not self.snapshots:
            self._record()  # the starting (uniform) distribution

    def on_train_batch_end(self, batch, logs=None):
        if self.every and int(self.model.search_step.numpy()) % self.every == 0:
            self._record()

    def on_epoch_end(self, epoch, logs=None):
        self._record()


def load_snapshots(output_dir) -> list:
    """The snapshots `search_step` wrote (empty list if none)."""
    path = os.path.join(output_dir, SNAPSHOT_FILE)
    return read_json(path) if os.path.exists(path) else []


@dataclasses.dataclass
class SearchStepOutcome:
    """What `search_step` returns: the `SearchResult`, the metrics and the target (MACs)."""

    result: object
    metrics: dict
    target_macs: float | None

    @property
    def architecture(self):
        return self.result.architecture

    @property
    def history(self):
        return self.result.history


def search_step(
    step: int,
    output_dir,
    previous_dir="",
    *,
    data: RecipeData | None = None,
    data_root="",
    train_list="",
    val_list="",
    num_classes: int = 0,
    space="auto_tsnet_mini",
    epochs: int = 3,
    steps_per_epoch: int = 8,
    batch_size: int = 8,
    crop: int = 64,
    target_gflops: float = 0.0,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    warmup_epochs: int = 0,
    optimizer: str = "adamw",
    adamw_learning_rate: float = 2e-3,
    base_learning_rate: float = 0.4,
    reference_batch_size: int = 64,
    heldout_batch_size: int = 16,
    samples_per_replica: int = DEFAULTS.samples_per_replica,
    logits_optimizer: str = DEFAULTS.logits_optimizer,
    checkpoint_every: int = 4,
    snapshot_every: int = 2,
    graph_optimization: bool | tuple | None = None,
    strategy=None,
    callbacks=None,
    verbose="auto",
    **search_kwargs,
) -> SearchStepOutcome:
    """Runs (or resumes, or reloads) progressive-search step 1, 2 or 3.

    Args:
        step: 1 (sparse stream), 2 (dense stream and fusion), 3 (attention) or
            "one_shot" (every variable at once, no previous step).
        output_dir: folder of this step's outputs.
        previous_dir: output_dir of the previous step (steps 2 and 3).
        data: a `RecipeData`; default `resolve_data(data_root, train_list, val_list, num_classes)`.
        space: a space name (`tsnet_keras.spaces.get_space`) or a `TwoStreamSpace`.
        epochs, steps_per_epoch, batch_size: search length and global batch
            (`steps_per_epoch` 0: one pass over the search-train videos).
        crop: training crop, also the crop of the FLOPs accounting.
        target_gflops: one-view GFLOPs (multiply-adds) target of the network
            this step searches at `crop` (step 1: the sparse stream alone);
            0 searches without the FLOPs penalty.
        seed: seeds the data order, the held-out split and the architecture draws.
        heldout_fraction: share of each class's training videos held out for
            the architecture updates (0: use the validation list instead).
        optimizer: the supernet weights' optimizer, "adamw" (the default, as in
            `retrain`: it learns the synthetic task in CPU minutes) or "sgd" (the
            paper's), with the warm-up and cosine schedule of `run_search_step`.
        adamw_learning_rate: peak rate of AdamW (2e-3, as in `retrain`).
        base_learning_rate, reference_batch_size: the peak SGD rate is
            base_learning_rate x batch_size / reference_batch_size (the paper's 0.4
            read as the rate of a batch of 64, as in `retrain`). The old name
            `learning_rate` is still accepted.
        heldout_batch_size: held-out clips every sampled architecture is scored
            on per step (the same clips for all of them).
        warmup_epochs, samples_per_replica: see `run_search_step`.
        logits_optimizer: the architecture logits' optimizer, "evidence" (the
            default: a logit moves only when its summed gradients are unlikely to be
            noise, `tsnet_keras.search.evidence`, docs/search.md) or "adam" (the paper's).
        checkpoint_every: steps between checkpoints (epoch ends always).
        snapshot_every: steps between distribution snapshots (0: epoch ends).
        graph_optimization: Let Grappler optimise the traced search step (True:
            all of it, False: none, a tuple of `GRAPPLER_OPTIMIZERS` names: those
            alone; `ParsecSearch`). Default (None): all of it when a GPU is
            visible, its remapper alone on CPUs: there Grappler's first-call
            optimisation of the supernet step (hundreds of switch branches) costs
            about a minute, more than it saves in a short search (measured: step 2
            of `auto_tsnet_mini`, first epoch 161 s with, 96 s without; later
            steps equal), and the remapper alone a few seconds.
        strategy: `tf.distribute.Strategy`; default `choose_strategy()`.
        callbacks: extra Keras callbacks of the search's `fit`.
        **search_kwargs: other `run_search_step` arguments.

    Returns:
        `SearchStepOutcome`.
    """
    run = _checked_options(
        step, output_dir, search_kwargs, epochs=epochs, steps_per_epoch=steps_per_epoch,
        batch_size=batch_size, reference_batch_size=reference_batch_size, optimizer=optimizer,
        adamw_learning_rate=adamw_learning_rate, base_learning_rate=base_learning_rate,
        samples_per_replica=samples_per_replica, crop=crop, seed=seed,
        target_gflops=target_gflops, heldout_fraction=heldout_fraction,
        heldout_batch_size=heldout_batch_size, warmup_epochs=warmup_epochs)
    search_kwargs = {**search_kwargs, "logits_optimizer": check_choice(
        "logits_optimizer", logits_optimizer, LOGITS_OPTIMIZERS)}
    space = named_space(space)
    previous_dir = _previous_step_dir(step, previous_dir)
    if data is None:
        data = resolve_data(data_root, train_list, val_list, num_classes)
    _check_previous_fits(step, space, previous_dir)
    inputs = _search_inputs(step, space, data, run, strategy)
    started = time.time()
    result = _run_search(
        step, space, data, run, inputs, previous_dir, warmup_epochs=warmup_epochs,
        optimizer=optimizer, checkpoint_every=checkpoint_every, snapshot_every=snapshot_every,
        graph_optimization=graph_optimization, callbacks=callbacks, verbose=verbose,
        search_kwargs=search_kwargs)
    metrics = _report_step(step, result, data, run, inputs, previous_dir,
                           seconds=time.time() - started, verbose=verbose)
    return SearchStepOutcome(result, metrics, run.target_macs)


def _search_inputs(step, space, data, run, strategy) -> types.SimpleNamespace:
    """This worker's share of the search: the strategy, the `WorkerShare`, the searched
    frames, the held-out batch and the datasets (`train_data(epoch)`, `val_data`)."""
    frames = _searched_frames(step, space)
    search_train, heldout = _search_split(data, run.heldout_fraction, run.seed, run.batch_size)
    strategy = strategy or choose_strategy()
    share = WorkerShare(strategy, run.output_dir)
    heldout_batch = _heldout_batch(heldout, run.heldout_batch_size, share.workers)
    try:
        train_data, val_data, steps_per_epoch = _search_data(
            data, share, search_train, heldout, crop=run.crop, frames=frames, seed=run.seed,
            batch_size=run.batch_size, heldout_batch=heldout_batch,
            steps_per_epoch=run.steps_per_epoch)
    except BaseException:
        share.finish()
        raise
    return types.SimpleNamespace(strategy=strategy, share=share, heldout_batch=heldout_batch,
                                 train_data=train_data, val_data=val_data,
                                 steps_per_epoch=steps_per_epoch)


def _run_search(step, space, data, run, inputs, previous_dir, *, warmup_epochs, optimizer,
                checkpoint_every, snapshot_every, graph_optimization, callbacks, verbose,
                search_kwargs):
    """Runs (or resumes) `run_search_step` with the distribution snapshots; its result."""
    from tsnet_keras.search import run_search_step

    snapshots = DistributionSnapshots(os.path.join(inputs.share.write_dir, SNAPSHOT_FILE),
                                      snapshot_every)
    return run_search_step(
        step, space, inputs.train_data, inputs.val_data, run.output_dir, previous_dir,
        num_classes=data.num_classes, epochs=run.epochs, steps_per_epoch=inputs.steps_per_epoch,
        crop=run.crop, target_macs=run.target_macs, seed=run.seed, warmup_epochs=warmup_epochs,
        weights_optimizer=optimizer, learning_rate=run.peak,
        samples_per_replica=run.samples_per_replica,
        checkpoint_every=checkpoint_every, strategy=inputs.strategy,
        callbacks=[snapshots, *(callbacks or [])], verbose=verbose,
        graph_optimization=graph_optimization,
        extra_config={"batch_size": run.batch_size, "heldout_fraction": run.heldout_fraction,
                      "heldout_batch_size": inputs.heldout_batch},
        **search_kwargs,
    )


def _report_step(step, result, data, run, inputs, previous_dir, *, seconds, verbose) -> dict:
    """Writes the step's `metrics.json`, ends this worker's share and warns when the
    distribution is unsettled or over the target; the metrics."""
    evidence = load_evidence(result.output_dir)
    metrics = _step_metrics(
        step, result, data, crop=run.crop, target_gflops=run.target_gflops, epochs=run.epochs,
        steps_per_epoch=inputs.steps_per_epoch, batch_size=run.batch_size, seed=run.seed,
        previous_dir=previous_dir, seconds=seconds, evidence=evidence,
    )
    write_metrics(inputs.share.write_dir, metrics)
    inputs.share.finish()
    _warn_if_unsettled(metrics["entropy_left"], verbose)
    _report_evidence(evidence, verbose)
    _report_target(metrics, verbose)
    return metrics


def _checked_options(step, output_dir, search_kwargs, *, epochs, steps_per_epoch, batch_size,
                     reference_batch_size, optimizer, adamw_learning_rate, base_learning_rate,
                     samples_per_replica, crop, seed, target_gflops, heldout_fraction,
                     heldout_batch_size, warmup_epochs) -> types.SimpleNamespace:
    """`search_step`'s numbers checked before any data is read (a ValueError naming the
    bad one), with the weights' peak learning rate (`recipes.train.peak_rate`)."""
    if step not in RECIPE_STEPS:
        raise ValueError(f"`step` must be one of {RECIPE_STEPS}, got {step!r}.")
    run = types.SimpleNamespace(
        output_dir=check_output_dir(output_dir),
        epochs=check_int("epochs", epochs),
        steps_per_epoch=check_int("steps_per_epoch", steps_per_epoch or 0, minimum=0),
        batch_size=check_int("batch_size", batch_size, minimum=2),
        samples_per_replica=check_int("samples_per_replica", samples_per_replica),
        crop=check_int("crop", crop, minimum=16),
        seed=check_int("seed", seed, minimum=0),
        target_gflops=check_number("target_gflops", target_gflops),
        heldout_fraction=check_number("heldout_fraction", heldout_fraction, below=1.0),
        heldout_batch_size=check_int("heldout_batch_size", heldout_batch_size, minimum=2),
    )
    base_learning_rate = renamed_argument(search_kwargs, "learning_rate", "base_learning_rate",
                                          base_learning_rate, 0.4, where="search_step")
    run.peak = peak_rate(optimizer, adamw_learning_rate, base_learning_rate, run.batch_size,
                         check_int("reference_batch_size", reference_batch_size))
    check_int("warmup_epochs", warmup_epochs, minimum=0)
    if warmup_epochs >= run.epochs:
        raise ValueError(f"`warmup_epochs` ({warmup_epochs}) must be < `epochs` ({run.epochs}).")
    run.target_macs = run.target_gflops * 1e9 if run.target_gflops else None
    return run


# A step that ends with more of the uniform entropy than this has hardly learned: its most
# probable architecture is the argmax of small leans (docs/search.md, "Is the search long
# enough?").
UNSETTLED_ENTROPY = 0.9


def entropy_left(distribution) -> float | None:
    """Entropy of `distribution` as a share of the uniform one's (1: nothing learned)."""
    uniform = sum(float(np.log(size)) for size in distribution.sizes if size > 1)
    return distribution.entropy_numpy() / uniform if uniform else None


def _warn_if_unsettled(left, verbose) -> None:
    if verbose and left is not None and left > UNSETTLED_ENTROPY:
        logger.warning(
            "the distribution kept %.0f%% of its uniform entropy: the search has hardly "
            "learned, and its most probable architecture follows small leans (on video, "
            "towards what the supernet learned first: appearance, temporal kernel 1). Search "
            "longer, and compare with random architectures (evaluate recipe, "
            "random_baselines=5); see docs/search.md.", 100 * left)


def _report_evidence(evidence, verbose) -> None:
    """Names the variables the held-out scores decided; the others' choices are leans."""
    if not verbose or evidence is None:
        return
    decided, undecided = evidence["decided"], evidence["undecided"]
    lines = "".join(
        f"\n  {key} = {entry['choice']} (largest |z| {max(map(abs, entry['z'].values())):.1f})"
        for key, entry in decided.items())
    logger.info(
        "the held-out scores decided %d of %d variables (a logit's |z| above %g)%s\nthe other "
        "%d moved only by the leak (and the FLOPs hinge, under a target): their choices are leans, "
        "not findings (evidence.json; docs/search.md).", len(decided),
        len(decided) + len(undecided), evidence["threshold"], ":" + lines if lines else "",
        len(undecided))


# The step's architecture may exceed the FLOPs target by this share before the recipe says
# so (the hinge penalises the expected FLOPs; the result is the most probable architecture
# within the target, which a space whose MACs do not fall with every choice may not reach).
OVER_TARGET = 0.05


def _report_target(metrics, verbose) -> None:
    """Says when the step's architecture is over the target, or was moved under it."""
    gflops, argmax, target = (metrics["architecture"]["gflops"], metrics["most_probable_gflops"],
                              metrics["target_gflops"])
    if not verbose or not target:
        return
    if gflops > target * (1 + OVER_TARGET):
        logger.warning(
            "the step's architecture takes %.4g GFLOPs per view, %.0f%% above target_gflops "
            "(%.4g). Check its FLOPs before retraining.", gflops, 100 * (gflops / target - 1),
            target)
    elif argmax and (argmax > target or argmax < gflops <= target):
        logger.info(
            "the most probable architecture took %.4g GFLOPs (target_gflops %.4g); the step's "
            "architecture is the most probable one within the target, using at least %.0f%% of "
            "it where one near the argmax does (%.4g GFLOPs).",
            argmax, target, 100 * RESULT_FLOOR, gflops)


def _previous_step_dir(step, previous_dir):
    """The checked output folder of the previous step (steps 2 and 3), else None."""
    if step in (2, 3):
        return check_previous_dir(previous_dir, PREVIOUS_STEP_FILES, f"step {step - 1}")
    if previous_dir:
        raise ValueError(f"`previous_dir` must be empty for step {step!r} (it starts the search), "
                         f"got {previous_dir!r}.")
    return None


def _check_previous_fits(step, space, previous_dir) -> None:
    """Fails before any training when the previous step does not fit this space."""
    from tsnet_keras.search.progressive import step_space

    if previous_dir is not None:
        from tsnet_keras.space.architecture import Architecture

        step_space(step, space, Architecture.load(os.path.join(previous_dir, ARCHITECTURE_FILE)))


def _searched_frames(step, space) -> tuple:
    frames = stream_frames(space)
    if step == 1:
        frames = (frames[0], None)  # the sparse stream is searched alone
    return frames


def _search_split(data, heldout_fraction, seed, batch_size) -> tuple:
    """`(search-train list, held-out list)`: a share of the training list, else the validation list."""
    if heldout_fraction > 0 and data.format != "tfrecord":
        search_train, heldout = split_heldout(data.train, heldout_fraction, seed)
    else:
        search_train, heldout = data.train, data.val
    if hasattr(search_train, "records") and len(search_train) < batch_size:
        raise ValueError(f"`batch_size` ({batch_size}) exceeds the {len(search_train)} search-"
                         "training videos.")
    return search_train, heldout


def _heldout_batch(heldout, heldout_batch_size, workers) -> int:
    if not hasattr(heldout, "records"):
        return heldout_batch_size
    # At least two batches per cycle: a broken video (skipped) cannot empty it.
    heldout_batch = min(heldout_batch_size, max(2, len(heldout) // 2))
    return max(heldout_batch - heldout_batch % workers, workers)


def _step_metrics(step, result, data, *, crop, target_gflops, epochs, steps_per_epoch,
                  batch_size, seed, previous_dir, seconds, evidence=None) -> dict:
    """The step's `metrics.json` (`decided_variables`: the choices `evidence` favours)."""
    last = result.history[-1] if result.history else {}
    return {
        "recipe": f"search_step{step}",
        "step": step,
        "architecture": architecture_summary(result.architecture, data.num_classes, crop),
        "target_gflops": target_gflops or None,
        "heldout_score": last.get("heldout_score"),
        "loss": last.get("loss"),
        "entropy": last.get("entropy"),
        "entropy_left": entropy_left(result.distribution),
        "decided_variables": (None if evidence is None else
                              {key: entry["choice"] for key, entry in evidence["decided"].items()}),
        "expected_gflops": last.get("expected_macs", 0) / 1e9 if last else None,
        "most_probable_gflops": last.get("most_probable_macs", 0) / 1e9 if last else None,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "seed": seed,
        "previous_dir": previous_dir,
        "seconds_this_run": seconds,
        "search_seconds": sum(row.get("seconds", 0.0) for row in result.history),
        "data": data.describe(),
    }


def _search_data(data, share, search_train, heldout, *, crop, frames, seed, batch_size,
                 heldout_batch, steps_per_epoch):
    """`(train_data(epoch), val_data, steps_per_epoch)` of this worker.

    Several workers: each reads its shard of both lists (before decoding) in
    batches of its part of the global batches, and runs as many steps as the others.
    """
    from tsnet_keras.data.lists import VideoList

    worker_batch = share.batch(batch_size)
    worker_heldout = share.batch(heldout_batch, "heldout_batch_size")
    options = {"shard": share.shard} if share.shard else {}

    def one_pass(epoch):
        return data.dataset("train", "train", crop=crop, batch_size=worker_batch, frames=frames,
                            seed=seed * 1000 + epoch, videos=search_train, **options)

    if hasattr(heldout, "records"):
        # Positioned by rotating the list: resuming decodes no skipped batch.
        if share.shard:
            heldout = VideoList(heldout.records[share.index::share.workers], heldout.classes)
        val_data = data.heldout_batches(heldout, crop=crop, batch_size=worker_heldout,
                                        frames=frames, seed=seed)
    else:  # TFRecord shards: a dataset, skipped batch by batch
        val_data = data.dataset("val", "val", crop=crop, batch_size=worker_heldout, frames=frames,
                                seed=seed, videos=heldout, drop_remainder=True, **options)
    train_data, batches = epoch_data(one_pass, steps_per_epoch)
    if not steps_per_epoch:
        steps_per_epoch = batches
        if share.shard and hasattr(search_train, "records"):
            steps_per_epoch = share.batches(len(search_train), batch_size)
        if steps_per_epoch < 1:
            raise ValueError("`steps_per_epoch` must be given (> 0): the training set's length "
                             "is unknown or smaller than one batch.")
    return train_data, val_data, steps_per_epoch


__all__ = ["DistributionSnapshots", "SNAPSHOT_FILE", "SearchStepOutcome", "load_snapshots",
           "search_step"]
