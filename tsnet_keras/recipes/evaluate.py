"""Multi-view evaluation and the paper's Table 3 for a searched model and its variants.

`evaluate(model_dir, output_dir, ...)` loads the model `retrain` wrote and
scores the validation videos with `num_views` clips x `num_crops` crops per
video (`video_dataset(mode="test")`, scores averaged per video after a
softmax, `tsnet_keras.data.evaluate_views`), then writes a table in the form of
the paper's Table 3:

| row | architecture | view (model trained at crop c) | weights |
|---|---|---|---|
| S | the retrained one | short side c x 182/160, crop c | the retrained model |
| M | the same | short side c x 256/160, crop c x 224/160 | S's weights (trained at c) |
| S-dagger, M-dagger | without GloRe blocks | as S, M | own training (see below) |
| L | depth x 2 (`auto_tsnet_variant`) | short side c x 356/160, crop c x 312/160 | own training at crop c x 312/160 |
| L-dagger | depth x 2, no GloRe | as L | as L |

The views follow the paper's section 5.2: "10-Center" (`num_crops=1`) resizes
the short side to 182 and takes one centre crop of 160 (the training crop; the
FLOPs are counted at 160); "10-LeftCenterRight" (`num_crops=3`) takes 3 crops
of 182 x 182 along the long side. M and L use X3D-M's and X3D-L's sizes (train
224 / test 256, train 312 / test 356), scaled by c / 160; the paper gives M's
test size (256) and L's (356) but not their 10-Center crops, so those are
X3D's. The paper trains M at its own size; here M reuses S's weights (a fully
convolutional network with global pooling runs at any size), which the
`weights` column says. L is trained at its own crop.

Removing GloRe blocks or doubling the depth changes the weights, so the dagger
and L rows need their own training. By default they are listed with their
params and GFLOPs and "not trained" as accuracy; `train_variants=True` trains
each from scratch with the retrained model's settings (`retrain`, into
`output_dir/variants/<row>`, resumable) and measures them. When the searched
architecture has no GloRe block, the dagger rows are the S / M model itself.

Columns: params (millions, trainable incl. BN affine, as papers report),
GFLOPs per view x views (one view's multiply-adds at the test crop, as in the
paper), total GFLOPs, top-1 and top-5 (%) over the videos.
"""

from __future__ import annotations

import csv
import io
import os
import time
import types

import keras

from tsnet_keras.recipes import baselines
from tsnet_keras.recipes.common import (
    MODEL_FILE,
    check_int,
    check_output_dir,
    check_previous_dir,
    load_trained_model,
    named_space,
    read_json,
    write_architecture,
    write_json,
    write_metrics,
)
from tsnet_keras.recipes.data import (
    RecipeData,
    console_logging,
    logger,
    resolve_data,
    stream_frames,
)
from tsnet_keras.recipes.train import retrain, retrain_arguments
from tsnet_keras.space.architecture import Architecture

# (training crop, test short side) of -S, -M, -L at the paper's training crop 160:
# S from section 5.2; M and L from X3D-M / X3D-L (the paper gives 256 and 356).
PAPER_SIZES = {"S": (160, 182), "M": (224, 256), "L": (312, 356)}
PAPER_TRAIN_CROP = 160
ROWS = ("S\u2020", "S", "M\u2020", "M", "L\u2020", "L")
NOT_TRAINED = "not trained"


def _scaled(train_crop: int, size: int) -> int:
    """`size` of the paper's 160-pixel setting scaled to `train_crop` (even)."""
    return int(2 * round(train_crop * size / PAPER_TRAIN_CROP / 2))


def variant_views(train_crop: int, num_crops: int = 1) -> dict:
    """Row size -> (test short side, crop) for a model trained at `train_crop`.

    10-Center (`num_crops=1`): short side = test size, one centre crop of the
    row's training size. 10-LeftCenterRight (`num_crops=3`): three square crops
    of the test size.
    """
    views = {}
    for size, (train, test) in PAPER_SIZES.items():
        short_side = _scaled(train_crop, test)
        views[size] = (short_side, short_side if num_crops == 3 else _scaled(train_crop, train))
    return views


def variant_crops(train_crop: int, num_crops: int = 1) -> dict:
    """Row size -> the crop its views are scored (and its FLOPs counted) at."""
    return {size: crop for size, (_, crop) in variant_views(train_crop, num_crops).items()}


def variant_architectures(arch: Architecture) -> dict:
    """Row name -> architecture: S, M = `arch`; L = depth x 2; dagger = without attention."""
    from tsnet_keras.space.presets import auto_tsnet_variant

    large, _ = auto_tsnet_variant(arch, "L")
    return {
        "S\u2020": arch.without_attention(), "S": arch,
        "M\u2020": arch.without_attention(), "M": arch,
        "L\u2020": large.without_attention(), "L": large,
    }


def _any_crop_model(trained: keras.Model, arch: Architecture, num_classes: int):
    """`trained`'s weights in a model that accepts any spatial size."""
    from tsnet_keras.models import build_model

    model = build_model(arch, num_classes=num_classes, crop=None)
    model.set_weights(trained.get_weights())
    return model


def _percent(value):
    return None if value is None else 100.0 * value


def format_table(rows: list, title: str = "") -> str:
    """Rows of `evaluate` as a Markdown table in the form of the paper's Table 3."""
    header = ("| Model | Params (M) | GFLOPs \u00d7 views | Total GFLOPs | Top-1 (%) | Top-5 (%) "
              "| test crop | weights |")
    lines = ([f"**{title}**", ""] if title else []) + [header, "|---" * 8 + "|"]
    for row in rows:
        if row["top1"] is None:
            top1 = top5 = row["status"]
        else:
            top1, top5 = f"{_percent(row['top1']):.1f}", f"{_percent(row['top5']):.1f}"
        lines.append(
            f"| {row['model']} | {row['params'] / 1e6:.2f} | {row['gflops_per_view']:.3f} "
            f"\u00d7 {row['views']} | {row['total_gflops']:.2f} | {top1} | {top5} | "
            f"{row['crop']}\u00b2 | {row['weights']} |"
        )
    return "\n".join(lines)


def _write_csv(path, rows):
    fields = ("model", "params", "gflops_per_view", "views", "total_gflops", "top1", "top5",
              "crop", "weights", "status", "num_videos", "num_views")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(buffer.getvalue())


def evaluate(
    model_dir,
    output_dir,
    *,
    data: RecipeData | None = None,
    data_root="",
    train_list="",
    val_list="",
    num_classes: int = 0,
    num_views: int = 10,
    num_crops: int = 1,
    batch_size: int = 8,
    rows=ROWS,
    train_variants: bool = False,
    variant_settings: dict | None = None,
    random_baselines: int = 0,
    space="auto_tsnet_mini",
    name: str = "Auto-TSNet",
    verbose: bool = True,
) -> dict:
    """Multi-view accuracy of a retrained model and the Table-3 rows of its variants.

    Args:
        model_dir: output_dir of `retrain` (holds `model.keras` and `metrics.json`).
        output_dir: folder of `metrics.json`, `table.md`, `table.csv`, `architecture.json`.
        data: a `RecipeData`; default `resolve_data(data_root, train_list, val_list, num_classes)`.
            The validation list is evaluated.
        num_views: int. Clips per video (paper: 10).
        num_crops: 1 (centre) or 3 (left, centre, right; the paper's Table 3).
        batch_size: int. Views per batch.
        rows: which of `ROWS` to report (default all six).
        train_variants: bool. Train the rows that need their own weights (dagger
            when the model has GloRe blocks, L) with the retrained model's settings.
        variant_settings: dict of `retrain` arguments that override those
            settings (e.g. `{"epochs": 10}`).
        random_baselines: int. Random architectures of `space` at the model's FLOPs
            (within 5%) to train identically and score like the S row; 0: none.
            The outcome is `metrics["random_baselines"]` (searched vs random, in
            standard deviations) and a section of `table.md`
            (`tsnet_keras.recipes.baselines`).
        space: the space the model was searched in (a name of `tsnet_keras.spaces`
            or a `TwoStreamSpace`); used by `random_baselines` only.
        name: str. Model family name in the table.
        verbose: log progress and the table (`tsnet_keras.recipes` logger, shown on stdout
            unless logging is configured).

    Returns:
        The metrics dict (also in `metrics.json`); `metrics["table"]` is the Markdown table.
    """
    run = _checked_options(model_dir, output_dir, num_views=num_views, num_crops=num_crops,
                           batch_size=batch_size, rows=rows, train_variants=train_variants)
    trained = load_trained_model(os.path.join(run.model_dir, MODEL_FILE))
    arch = Architecture.from_dict(trained.architecture)
    train_crop = trained.crop
    if data is None:
        data = resolve_data(data_root, train_list, val_list, num_classes)
    _check_same_classes(trained, data, run.model_dir)
    settings = _retrain_settings(run.model_dir)
    drawn = _draw_random_baselines(random_baselines, space, arch, rows, data, train_crop)
    sides = variant_views(train_crop, num_crops)
    crops = {size: crop for size, (_, crop) in sides.items()}
    weights = _VariantWeights(trained, arch, settings, data=data, output_dir=run.output_dir,
                              train_variants=train_variants,
                              variant_settings=variant_settings, verbose=verbose)
    _start_output(run.output_dir, arch, verbose)

    started = time.time()
    results = _measure_rows(rows, weights, data=data, crops=crops, sides=sides, name=name,
                            num_views=run.num_views, num_crops=num_crops,
                            batch_size=run.batch_size, verbose=verbose)
    compared = _compare_with_random(drawn, results, settings=settings, data=data,
                                    output_dir=run.output_dir, train_crop=train_crop,
                                    view=dict(crop=crops["S"], side=sides["S"][0],
                                              batch_size=run.batch_size, num_views=run.num_views,
                                              num_crops=num_crops), verbose=verbose)
    return _report(run.output_dir, results, model_dir=run.model_dir, name=name, data=data,
                   num_views=run.num_views, num_crops=num_crops, train_crop=train_crop,
                   crops=crops, sides=sides, started=started, verbose=verbose,
                   random_baselines=compared)


def _checked_options(model_dir, output_dir, *, num_views, num_crops, batch_size, rows,
                     train_variants) -> types.SimpleNamespace:
    """`evaluate`'s folders and numbers checked before any model is loaded (a ValueError
    naming the bad one)."""
    run = types.SimpleNamespace(
        output_dir=check_output_dir(output_dir),
        model_dir=check_previous_dir(model_dir, (MODEL_FILE,), "the retrain recipe"),
        num_views=check_int("num_views", num_views),
    )
    if num_crops not in (1, 3):
        raise ValueError(f"`num_crops` must be 1 or 3, got {num_crops!r}.")
    run.batch_size = check_int("batch_size", batch_size)
    unknown = [row for row in rows if row not in ROWS]
    if unknown or not rows:
        raise ValueError(f"`rows` must be a non-empty subset of {ROWS}, got {list(rows)!r}.")
    if not isinstance(train_variants, bool):
        raise ValueError(f"`train_variants` must be True or False, got {train_variants!r}.")
    return run


def _check_same_classes(trained, data, model_dir) -> None:
    if data.num_classes != trained.num_classes:
        raise ValueError(
            f"the model in `previous_dir` {model_dir!r} has {trained.num_classes} classes but the "
            f"data (`train_list` / `val_list`) have {data.num_classes}."
        )


def _start_output(output_dir, arch, verbose) -> None:
    """Creates `output_dir` with the model's `architecture.json`; shows the logs when verbose."""
    os.makedirs(output_dir, exist_ok=True)
    write_architecture(output_dir, arch)
    if verbose:
        console_logging()  # the progress lines and the table on a notebook's output


def _draw_random_baselines(count, space, arch, rows, data, train_crop) -> list:
    """The random architectures to compare with (checked before anything is trained)."""
    count = check_int("random_baselines", count, minimum=0)
    if not count:
        return []
    if "S" not in rows:
        raise ValueError("`random_baselines` compares with the S row: keep \"S\" in `rows`.")
    return baselines.draw_baselines(arch, named_space(space), count,
                                    num_classes=data.num_classes, crop=train_crop)


def _compare_with_random(drawn, results, *, settings, data, output_dir, train_crop, view,
                         verbose):
    """Trains and scores the random architectures like the S row (None when there are none)."""
    if not drawn:
        return None

    def measure(model, candidate):
        return _measure_views(model, candidate, data, top_k=(1, min(5, data.num_classes)),
                              verbose=verbose, **view)

    searched = next(r["top1"] for r in results if r["row"] == "S")
    return baselines.random_baselines(drawn, searched_top1=searched, settings=settings, data=data,
                                      output_dir=output_dir, crop=train_crop, measure=measure,
                                      verbose=verbose)


def _retrain_settings(model_dir) -> dict:
    """The settings `retrain` recorded in `model_dir/metrics.json` (empty if none)."""
    settings = {}
    metrics_path = os.path.join(model_dir, "metrics.json")
    if os.path.exists(metrics_path):
        settings = read_json(metrics_path).get("settings", {})
    return settings


class _VariantWeights:
    """Which trained weights each row uses; trains a missing variant when asked.

    S and M share them, and so do S-dagger and M-dagger; without GloRe blocks in
    the model a dagger row is its plain row.
    """

    def __init__(self, trained, arch, settings, *, data, output_dir, train_variants,
                 variant_settings, verbose):
        self.train_crop = trained.crop
        self.architectures = variant_architectures(arch)
        self.has_attention = arch != arch.without_attention()
        self.settings = settings
        self.data = data
        self.output_dir = output_dir
        self.train_variants = train_variants
        self.variant_settings = variant_settings
        self.verbose = verbose
        self.models = {"S": trained}
        self.descriptions = {"S": "retrained"}

    def key(self, row) -> str:
        base = "L" if row.startswith("L") else "S"
        return base + ("\u2020" if row.endswith("\u2020") and self.has_attention else "")

    def for_row(self, row):
        """(trained model or None, description of its weights) for `row`."""
        key = self.key(row)
        if key not in self.models:
            if not self.train_variants:
                return None, NOT_TRAINED
            self._train(key)
        if row.startswith("M"):
            return self.models[key], f"{key} weights (trained at {self.train_crop}\u00b2)"
        return self.models[key], self.descriptions[key] if key == row else f"= {key} (no GloRe)"

    def _train(self, key) -> None:
        if self.verbose:
            logger.info("training the %s variant from scratch (train_variants=True)", key)
        kwargs = retrain_arguments(self.settings)
        kwargs.update(self.variant_settings or {})
        folder = os.path.join(self.output_dir, "variants", key.replace("\u2020", "_dagger"))
        crop = _scaled(self.train_crop, PAPER_SIZES[key[0]][0])
        self.models[key] = retrain(self.architectures[key], folder, data=self.data, crop=crop,
                                   verbose=2 if self.verbose else 0, **kwargs).model
        self.descriptions[key] = f"trained here at {crop}\u00b2"


def _measure_rows(rows, weights, *, data, crops, sides, name, num_views, num_crops, batch_size,
                  verbose) -> list:
    """One table entry per row: its cost, and its accuracy when it has weights."""
    from tsnet_keras.accounting import complexity

    views = num_views * num_crops
    top_k = (1, min(5, data.num_classes))
    measured = {}  # (weights key, crop) -> scores: S-dagger = S without GloRe is not run twice
    results = []
    for row in rows:
        row_arch, crop = weights.architectures[row], crops[row.rstrip("\u2020")]
        cost = complexity(row_arch, num_classes=data.num_classes, crop=crop)
        model, described = weights.for_row(row)
        entry = {
            "model": f"{name}-{row}", "row": row, "params": cost.params,
            "gflops_per_view": cost.gflops, "views": views, "total_gflops": cost.gflops * views,
            "crop": crop, "weights": described if model is not None else "-", "status": described,
            "top1": None, "top5": None, "num_videos": None, "num_views": None,
        }
        if model is not None:
            key = (weights.key(row), crop)
            if key not in measured:
                measured[key] = _measure_views(
                    model, row_arch, data, crop=crop, side=sides[row.rstrip("\u2020")][0],
                    batch_size=batch_size, num_views=num_views, num_crops=num_crops,
                    top_k=top_k, verbose=verbose)
            entry.update(measured[key], status="measured")
            if verbose:
                logger.info("%s: top-1 %.1f%%, top-5 %.1f%% over %d videos x %d views at %d\u00b2 "
                            "(%.0f s)", entry["model"], 100 * entry["top1"], 100 * entry["top5"],
                            entry["num_videos"], views, crop, entry["seconds"])
        results.append(entry)
    return results


def _measure_views(model, row_arch, data, *, crop, side, batch_size, num_views, num_crops, top_k,
                   verbose) -> dict:
    """Multi-view accuracy of `model` on the validation list at `crop`."""
    from tsnet_keras.data.views import evaluate_views

    row_started = time.time()
    any_crop = _any_crop_model(model, Architecture.from_dict(model.architecture),
                               data.num_classes)
    test = data.dataset("val", "test", crop=crop, batch_size=batch_size,
                        frames=stream_frames(row_arch), num_views=num_views,
                        num_crops=num_crops, test_short_side=side)
    scores = evaluate_views(any_crop, test, top_k=top_k, verbose=verbose)
    return {"top1": scores["top1"], "top5": scores[f"top{top_k[1]}"],
            "num_videos": scores["num_videos"], "num_views": scores["num_views"],
            "seconds": time.time() - row_started}


def _report(output_dir, results, *, model_dir, name, data, num_views, num_crops, train_crop,
            crops, sides, started, verbose, random_baselines=None) -> dict:
    """Writes the table (Markdown, CSV), `metrics.json` and `rows.json`; the metrics."""
    protocol = f"{num_views} clips \u00d7 {num_crops} crop{'s' if num_crops > 1 else ''}"
    where = "the synthetic dataset" if data.synthetic else "the validation list"
    table = format_table(results, f"{name} on {where} ({protocol}, trained at {train_crop}\u00b2)")
    if random_baselines:
        table += "\n" + baselines.markdown(random_baselines)
    with open(os.path.join(output_dir, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(table + "\n")
    _write_csv(os.path.join(output_dir, "table.csv"), results)
    main = next((r for r in results if r["row"] == "S" and r["top1"] is not None),
                next((r for r in results if r["top1"] is not None), None))
    metrics = {
        "recipe": "evaluate",
        "model_dir": model_dir,
        "protocol": {"num_views": num_views, "num_crops": num_crops, "train_crop": train_crop,
                     "test_crops": crops,
                     "test_short_sides": {size: side for size, (side, _) in sides.items()}},
        "top1": main["top1"] if main else None,
        "top5": main["top5"] if main else None,
        "rows": results,
        "table": table,
        "random_baselines": random_baselines,
        "seconds": time.time() - started,
        "data": data.describe(),
    }
    write_metrics(output_dir, metrics)
    write_json(os.path.join(output_dir, "rows.json"), results)
    if verbose:
        logger.info("%s", table)
    return metrics


__all__ = [
    "NOT_TRAINED",
    "ROWS",
    "PAPER_SIZES",
    "evaluate",
    "format_table",
    "load_trained_model",
    "variant_architectures",
    "variant_crops",
    "variant_views",
]
