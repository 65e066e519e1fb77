"""Figures for architectures, search runs and search spaces (matplotlib, no display needed).

- `draw_architecture`: an `Architecture` drawn like the paper's Figure 3.
- `plot_search_history`: entropy, expected/sampled MACs against the target,
  held-out score and loss of a search run.
- `plot_distribution_evolution`: per-variable choice probabilities over a
  search (a grid of small stacked-area panels).
- `plot_macs_histogram`: the MACs of random architectures of a space.

Every function builds a `matplotlib.figure.Figure` directly (no pyplot state,
safe under the Agg backend and in tests), writes a PNG when `path` is given and
returns the figure. In a notebook, `%matplotlib inline` makes a returned figure
display itself.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from tsnet_keras.accounting import complexity
from tsnet_keras.space.architecture import Architecture

# Temporal kernel -> face colour (light, so the channel count stays readable).
TEMPORAL_KERNEL_COLOURS = {1: "#a6cee3", 3: "#fdbf6f", 5: "#fb9a99", 7: "#b2df8a"}
# Spatial kernel -> hatch pattern ("" = plain).
SPATIAL_KERNEL_HATCHES = {3: "", 5: "////", 7: "xxx"}
FUSION_LABELS = {"time_to_channel": "T2C", "time_strided_sample": "sample", "time_strided_conv": "conv"}
FIXED_BOX_COLOUR = "#e6e6e6"  # stems, heads and the classifier

# Gids of the artists `draw_architecture` adds, so callers and tests can find them.
BOX_GIDS = ("stem", "group", "head", "classifier")
FUSION_GID = "fusion"
ATTENTION_GID = "attention"

_ROW_Y = {"sparse": 1.7, "dense": 0.0}
_BOX_WIDTH = 0.8
_MAX_BOX_HEIGHT = 0.75
_FIXED_BOX_HEIGHT = 0.42


def _save(fig: Figure, path) -> Figure:
    if path is not None:
        directory = os.path.dirname(os.fspath(path))
        if directory:
            os.makedirs(directory, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def _temporal_colour(kernel: int) -> str:
    if kernel in TEMPORAL_KERNEL_COLOURS:
        return TEMPORAL_KERNEL_COLOURS[kernel]
    # Kernels outside the palette still get a distinct, stable colour.
    from matplotlib import colormaps

    return colormaps["Pastel2"](kernel % 8)


def _spatial_hatch(kernel: int) -> str:
    return SPATIAL_KERNEL_HATCHES.get(kernel, "...")


# --------------------------------------------------------------------- architecture
def draw_architecture(arch: Architecture, path=None, ax=None, title: str | None = None) -> Figure:
    """Draws an architecture in the style of the paper's Figure 3.

    One box per block group and stream (sparse row on top, dense row below),
    between a stem box and a head box per stream and a classifier box on the
    right. A group's box height is proportional to its expansion rate, its
    output channels are written inside and its repeats (N) below; the face
    colour encodes the temporal kernel and the hatch the spatial kernel (see
    the legend). A star marks a group followed by a GloRe attention block. An
    arrow from the dense row to the sparse row marks each TS-Fusion block,
    labelled with its op (T2C = time-to-channel, sample = time-strided
    sampling, conv = time-strided conv). Dotted lines separate the stages.

    Args:
        arch: `Architecture`, single- or two-stream.
        path: str or path-like, optional. Where to save a PNG.
        ax: `matplotlib.axes.Axes`, optional. Draw into it instead of a new figure.
        title: str, optional. Axes title.

    Returns:
        The `matplotlib.figure.Figure`. Boxes are the axes' patches with gid in
        `BOX_GIDS`, fusion arrows the patches with gid "fusion", attention stars
        the lines with gid "attention".

    Example:

    >>> fig = draw_architecture(tsnet_keras.presets.manual_tsnet(0.7), path="manual.png")
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"draw_architecture expects an Architecture, got {type(arch).__name__}.")
    num_groups = len(arch.sparse.groups)
    if ax is None:
        height = 4.6 if arch.two_stream else 2.9
        fig = Figure(figsize=(1.0 + 0.85 * (num_groups + 4), height))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    box_tops = _draw_streams(ax, arch)
    _draw_classifier(ax, arch)
    fusion_ops = _draw_fusions(ax, arch, box_tops)
    top = _draw_stages(ax, arch)
    bottom = _row_y(arch, "dense") - _MAX_BOX_HEIGHT / 2 - 0.2
    ax.set_xlim(-1.6, num_groups + 2 + 0.6)
    ax.set_ylim(bottom, top + 0.25)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    _architecture_legend(ax, arch, fusion_ops)
    return _save(fig, path)


def _row_y(arch: Architecture, name: str) -> float:
    """Height of a stream's row (a single stream sits at 0)."""
    return _ROW_Y[name] if arch.two_stream else 0.0


def _add_box(ax, x, y, height, gid, text, facecolor, hatch=""):
    ax.add_patch(
        Rectangle(
            (x - _BOX_WIDTH / 2, y - height / 2), _BOX_WIDTH, height,
            facecolor=facecolor, edgecolor="#404040", hatch=hatch, linewidth=0.8,
            gid=gid, zorder=2,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=7, zorder=4,
            bbox={"boxstyle": "square,pad=0.05", "facecolor": "white", "alpha": 0.7,
                  "linewidth": 0} if hatch else None)


def _draw_streams(ax, arch: Architecture) -> dict:
    """Each stream's row: path, stem, group boxes, head. Returns `{(stream, group): (top, bottom)}`."""
    largest_expansion = max(
        [6.0] + [group.expansion for _, stream in arch.streams() for group in stream.groups]
    )
    height_per_expansion = _MAX_BOX_HEIGHT / largest_expansion
    head_x = len(arch.sparse.groups) + 1
    box_tops = {}
    for name, stream in arch.streams():
        y = _row_y(arch, name)
        # The data path of the stream, drawn behind the boxes.
        ax.plot([0, head_x], [y, y], color="#909090", linewidth=1.0, zorder=1)
        ax.text(-0.6, y, f"{name}\n{stream.frames} frames", ha="right", va="center", fontsize=8)
        _add_box(ax, 0, y, _FIXED_BOX_HEIGHT, "stem", f"stem\n{stream.stem.channels}", FIXED_BOX_COLOUR)
        _add_box(ax, head_x, y, _FIXED_BOX_HEIGHT, "head", f"head\n{stream.head_channels}",
                 FIXED_BOX_COLOUR)
        for index, group in enumerate(stream.groups):
            x = index + 1
            height = height_per_expansion * group.expansion
            _add_box(
                ax, x, y, height, "group", str(group.channels),
                _temporal_colour(group.temporal_kernel), _spatial_hatch(group.spatial_kernel),
            )
            box_tops[name, index] = (y + height / 2, y - height / 2)
            ax.text(x, y - height / 2 - 0.04, f"\u00d7{group.repeats}", ha="center", va="top",
                    fontsize=6, color="#505050")
            if group.attention:
                ax.plot([x - _BOX_WIDTH / 2 + 0.08], [y + height / 2 + 0.07], marker="*",
                        markersize=10, color="#d4a000", markeredgecolor="#6b5000",
                        linestyle="none", gid=ATTENTION_GID, zorder=5)
    return box_tops


def _draw_classifier(ax, arch: Architecture) -> None:
    """The classifier joins the pooled stream heads."""
    head_x = len(arch.sparse.groups) + 1
    classifier_x = head_x + 1
    names = [name for name, _ in arch.streams()]
    classifier_y = float(np.mean([_row_y(arch, n) for n in names]))
    for name in names:
        y = _row_y(arch, name)
        ax.plot([head_x, classifier_x], [y, classifier_y], color="#909090", linewidth=1.0, zorder=1)
    _add_box(ax, classifier_x, classifier_y, _FIXED_BOX_HEIGHT, "classifier", f"FC\n{arch.head_units}",
             FIXED_BOX_COLOUR)


def _draw_fusions(ax, arch: Architecture, box_tops: dict) -> set:
    """An arrow from dense to sparse per TS-Fusion; returns the ops drawn."""
    fusion_ops = set()
    if not arch.two_stream:
        return fusion_ops
    for index, group in enumerate(arch.sparse.groups):
        if group.fusion == "none":
            continue
        fusion_ops.add(group.fusion)
        # The fusion follows the group, so the arrow leaves near the boxes' right edge.
        x = index + 1 + 0.25
        start = box_tops["dense", index][0]
        end = box_tops["sparse", index][1]
        ax.add_patch(
            FancyArrowPatch((x, start), (x, end), arrowstyle="-|>", mutation_scale=9,
                            color="#2c3e50", linewidth=1.1, gid=FUSION_GID, zorder=3)
        )
        ax.text(x, (start + end) / 2, FUSION_LABELS.get(group.fusion, group.fusion),
                ha="center", va="center", fontsize=6, zorder=4,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white",
                      "edgecolor": "#2c3e50", "linewidth": 0.6})
    return fusion_ops


def _draw_stages(ax, arch: Architecture) -> float:
    """Stage separators and labels, from the sparse stream's layout; returns the labels' y."""
    num_groups = len(arch.sparse.groups)
    top = _row_y(arch, "sparse") + _MAX_BOX_HEIGHT / 2 + 0.2
    stages = [group.stage for group in arch.sparse.groups]
    start = 0
    for index in range(1, num_groups + 1):
        if index == num_groups or stages[index] != stages[start]:
            ax.text((start + index + 1) / 2, top, f"stage {stages[start]}", ha="center",
                    va="bottom", fontsize=8, color="#303030")
            if index < num_groups:
                ax.axvline(index + 0.5, color="#b0b0b0", linestyle=":", linewidth=0.8, zorder=0)
            start = index
    return top


def _architecture_legend(ax, arch: Architecture, fusion_ops: set) -> None:
    temporal = sorted({g.temporal_kernel for _, s in arch.streams() for g in s.groups})
    spatial = sorted({g.spatial_kernel for _, s in arch.streams() for g in s.groups})
    handles = [Patch(facecolor=_temporal_colour(t), edgecolor="#404040", label=f"t = {t}")
               for t in temporal]
    handles += [Patch(facecolor="white", edgecolor="#404040", hatch=_spatial_hatch(k),
                      label=f"k = {k}") for k in spatial]
    if any(g.attention for _, s in arch.streams() for g in s.groups):
        handles.append(Line2D([], [], marker="*", markersize=10, color="#d4a000",
                              markeredgecolor="#6b5000", linestyle="none", label="GloRe"))
    if fusion_ops:
        handles.append(Line2D([], [], color="#2c3e50", marker="^", markersize=5,
                              label="TS-Fusion (T2C / sample / conv)"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles),
              fontsize=7, frameon=False, title="box height = expansion, number = channels, "
              "\u00d7N = repeats, colour = temporal kernel t, hatch = spatial kernel k",
              title_fontsize=7)


# -------------------------------------------------------------------------- history
_X_CANDIDATES = ("global_step", "iteration", "step", "epoch")
_PHASE_COLUMNS = ("search_step", "progressive_step", "phase")
_SCORE_NAMES = ("score", "val_score", "heldout_score", "reward", "accuracy", "val_accuracy",
                "top1", "val_top1")


def _to_float(value) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # not numeric


def _history_columns(history) -> dict:
    """Numeric columns of a history: column name -> float array (NaN where missing)."""
    if isinstance(history, (str, os.PathLike)):
        with open(history, newline="", encoding="utf-8") as handle:
            records = list(csv.DictReader(handle))
    elif hasattr(history, "to_dict") and not isinstance(history, Mapping):
        records = history.to_dict(orient="records")  # a pandas DataFrame
    elif isinstance(history, Mapping):
        lengths = {len(v) for v in history.values()}
        if len(lengths) > 1:
            raise ValueError(f"history columns have different lengths {sorted(lengths)}.")
        count = lengths.pop() if lengths else 0
        records = [{k: v[i] for k, v in history.items()} for i in range(count)]
    elif isinstance(history, Sequence):
        records = list(history)
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise TypeError(f"history[{index}] must be a dict, got {type(record).__name__}.")
    else:
        raise TypeError(
            "history must be a CSV path, a list of dicts or a dict of columns, "
            f"got {type(history).__name__}."
        )
    if not records:
        raise ValueError("history is empty.")
    names = []
    for record in records:
        names += [key for key in record if key not in names]
    columns = {}
    for name in names:
        values = [_to_float(record.get(name)) for record in records]
        if any(value is None for value in values):
            continue  # text columns (e.g. an architecture) are not plotted
        column = np.asarray(values, dtype=float)
        if np.isfinite(column).any():
            columns[name] = column
    return columns


def _x_axis(columns: dict):
    """(name, values): the non-decreasing step-like column with the most distinct values.

    A column with repeats and at most 3 values is a progressive-search step
    (1, 2, 3), not an x axis.
    """
    best = None
    for name in _X_CANDIDATES:
        values = columns.get(name)
        if values is None or not np.isfinite(values).all() or np.any(np.diff(values) < 0):
            continue
        distinct = len(np.unique(values))
        if distinct <= 3 and distinct < len(values):
            continue
        if best is None or distinct > best[0]:
            best = (distinct, name)
    if best is None:
        return "record", np.arange(len(next(iter(columns.values()))), dtype=float)
    return best[1], columns[best[1]]


def plot_search_history(history, path=None, target_macs=None) -> Figure:
    """Plots a search run: entropy, MACs against the target, held-out score, loss.

    Tolerant of what the history holds: each panel is drawn only when one of
    its columns is present, and non-numeric columns are ignored.

    - entropy: every column whose name contains "entropy";
    - MACs: "expected_macs" (line), "sampled_macs" (dots), other "*macs*" /
      "*flops*" columns, with the target as a horizontal line (or band);
    - held-out score: "score", "val_score", "reward", "accuracy", ...;
    - loss: every column whose name contains "loss".

    The x axis is the non-decreasing column among "global_step", "iteration",
    "step", "epoch" with the most distinct values (else the record index); a
    column with repeats and at most 3 values is never the x axis. A
    column "search_step" / "progressive_step" / "phase" (or a "step" column with
    at most 3 values that is not the x axis) marks the progressive-search steps
    with dashed vertical lines. MACs above 1e6 are shown in GMACs.

    Args:
        history: a CSV path, a list of dicts (one per record), a dict of columns
            or a pandas DataFrame.
        path: str or path-like, optional. Where to save a PNG.
        target_macs: number or (low, high), optional. Target MACs (line) or
            target range (band); defaults to a "target_macs" column if present.

    Returns:
        The `matplotlib.figure.Figure`, one axes per panel drawn.

    Raises:
        ValueError: if the history is empty or has none of the columns above.
    """
    columns = _history_columns(history)
    x_name, x = _x_axis(columns)
    phase = _phase_column(columns, x_name)
    taken = {x_name, phase, "target_macs"} if phase else {x_name, "target_macs"}
    panels = _history_panels(columns, taken)
    if not panels:
        raise ValueError(
            "history has no column to plot; expected one of: *entropy*, expected_macs, "
            f"sampled_macs, *macs*, {', '.join(_SCORE_NAMES)}, *loss*; got {sorted(columns)}."
        )
    fig = Figure(figsize=(7.5, 2.0 * len(panels) + 0.4))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (kind, label, names) in zip(axes, panels):
        _draw_history_panel(ax, kind, label, names, columns, x, phase, target_macs)
    axes[-1].set_xlabel(x_name, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _phase_column(columns: dict, x_name: str):
    """The column that marks progressive-search steps, or None."""
    phase = next((name for name in _PHASE_COLUMNS if name in columns), None)
    if phase is None and x_name != "step" and "step" in columns:
        if len(np.unique(columns["step"][np.isfinite(columns["step"])])) <= 3:
            phase = "step"
    return phase


def _history_panels(columns: dict, taken: set) -> list:
    """`(kind, y label, column names)` per panel that has a column not in `taken`."""

    def matching(rule):
        return [name for name in columns if name not in taken and rule(name)]

    panels = [
        ("entropy", "entropy (nats)", matching(lambda n: "entropy" in n.lower())),
        ("macs", "MACs", matching(lambda n: "macs" in n.lower() or "flops" in n.lower())),
        ("score", "held-out score", matching(lambda n: n.lower() in _SCORE_NAMES)),
        ("loss", "loss", matching(lambda n: "loss" in n.lower())),
    ]
    return [panel for panel in panels if panel[2]]


def _draw_history_panel(ax, kind, label, names, columns, x, phase, target_macs) -> None:
    target_column = columns.get("target_macs")
    scale, unit = 1.0, ""
    if kind == "macs":
        scale, unit = _macs_scale(columns, names, target_column, target_macs)
    for name in names:
        y = columns[name] / scale
        keep = np.isfinite(y)
        if name.lower().startswith("sampled"):
            ax.plot(x[keep], y[keep], linestyle="none", marker=".", markersize=3, alpha=0.5,
                    label=name)
        else:
            ax.plot(x[keep], y[keep], linewidth=1.3, label=name)
    if kind == "macs":
        _draw_macs_target(ax, x, scale, target_column, target_macs)
    if phase:
        steps = columns[phase]
        for index in np.flatnonzero(np.diff(steps) != 0) + 1:
            ax.axvline((x[index - 1] + x[index]) / 2, color="#808080", linestyle="--",
                       linewidth=0.8, gid="step_boundary")
    ax.set_ylabel(label + unit, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def _macs_scale(columns, names, target_column, target_macs):
    """`(divisor, unit suffix)`: GMACs when any MACs value (or target) exceeds 1e6."""
    values = [columns[n] for n in names]
    if target_column is not None:
        values.append(target_column)
    if target_macs is not None:
        values.append(np.atleast_1d(np.asarray(target_macs, dtype=float)))
    if np.nanmax(np.abs(np.concatenate(values))) > 1e6:
        return 1e9, " (G)"
    return 1.0, ""


def _draw_macs_target(ax, x, scale, target_column, target_macs) -> None:
    """The target as a line or band (from `target_macs`), else the "target_macs" column."""
    if target_macs is not None:
        target = np.asarray(target_macs, dtype=float) / scale
        if target.ndim == 0:
            ax.axhline(float(target), color="black", linestyle="--", linewidth=1.0,
                       label="target", gid="target")
        elif target.shape == (2,):
            ax.axhspan(float(target.min()), float(target.max()), color="black",
                       alpha=0.12, label="target range", gid="target")
        else:
            raise ValueError(
                f"`target_macs` must be a number or (low, high), got {target_macs!r}."
            )
    elif target_column is not None:
        keep = np.isfinite(target_column)
        ax.plot(x[keep], target_column[keep] / scale, color="black", linestyle="--",
                linewidth=1.0, label="target", gid="target")


# --------------------------------------------------------------------- distribution
_STEP_KEYS = ("step", "epoch")


def _choice_probabilities(value):
    """(choice labels or None, probabilities) of one variable in one snapshot.

    Accepts a probability vector, a `{choice: probability}` dict
    (`ArchitectureDistribution.marginals()`) or `[[choice, probability], ...]`
    pairs (its `to_dict()["marginals"]`).
    """
    if isinstance(value, Mapping):
        return tuple(value), np.asarray(list(value.values()), dtype=float)
    if (isinstance(value, Sequence) and value and isinstance(value[0], Sequence)
            and not isinstance(value[0], str) and all(len(pair) == 2 for pair in value)):
        return tuple(pair[0] for pair in value), np.asarray([pair[1] for pair in value], dtype=float)
    return None, np.atleast_1d(np.asarray(value, dtype=float))


def _snapshot_table(snapshots, steps):
    """(keys, {key: (T, K) array with NaN rows where missing}, x values, {key: labels})."""
    scalar_steps, labels = [], {}
    if isinstance(snapshots, Mapping):
        series, count = _columns_of_arrays(snapshots)
    elif isinstance(snapshots, Sequence) and not isinstance(snapshots, str):
        series, count, scalar_steps, labels = _columns_of_snapshots(snapshots)
    else:
        raise TypeError(
            "snapshots must be a list of {variable: probabilities} dicts or a dict of "
            f"(snapshots, choices) arrays, got {type(snapshots).__name__}."
        )
    if not series or count == 0:
        raise ValueError("snapshots are empty.")
    _check_probabilities(series)
    return list(series), series, _snapshot_steps(steps, scalar_steps, count), labels


def _columns_of_arrays(snapshots) -> tuple:
    """`({key: (T, K) array}, T)` of a dict of `(snapshots, choices)` arrays."""
    series = {}
    for key, value in snapshots.items():
        array = np.asarray(value, dtype=float)
        if array.ndim != 2:
            raise ValueError(
                f"snapshots[{key!r}] must be a (snapshots, choices) array, got shape "
                f"{array.shape}."
            )
        series[key] = array
    lengths = {len(a) for a in series.values()}
    if len(lengths) > 1:
        raise ValueError(f"snapshot arrays have different lengths {sorted(lengths)}.")
    return series, lengths.pop() if lengths else 0


def _snapshot_row(index, snapshot) -> tuple:
    """`(x marker or None, {key: (choice names or None, probabilities)})` of one snapshot."""
    if not isinstance(snapshot, Mapping):
        raise TypeError(
            f"snapshots[{index}] must be a dict of probabilities, got "
            f"{type(snapshot).__name__}."
        )
    marker = next((snapshot[k] for k in _STEP_KEYS if np.ndim(snapshot.get(k)) == 0
                   and snapshot.get(k) is not None), None)
    # A saved distribution (`ArchitectureDistribution.to_dict()`) keeps them here.
    marginals = snapshot.get("marginals", snapshot)
    # Scalars (step, epoch, entropy, ...) are not variables.
    return marker, {
        key: _choice_probabilities(value) for key, value in marginals.items()
        if isinstance(value, Mapping) or np.ndim(value) > 0
    }


def _columns_of_snapshots(snapshots) -> tuple:
    """`({key: (T, K) array, NaN where missing}, T, x markers, {key: choice names})` of a
    list of `{variable: probabilities}` snapshots."""
    scalar_steps, labels, rows = [], {}, []
    for index, snapshot in enumerate(snapshots):
        marker, row = _snapshot_row(index, snapshot)
        if marker is not None:
            scalar_steps.append(float(marker))
        rows.append(row)
    widths = {}
    for index, row in enumerate(rows):
        for key, (names, probabilities) in row.items():
            if widths.setdefault(key, len(probabilities)) != len(probabilities):
                raise ValueError(
                    f"variable {key!r} has {widths[key]} choices in one snapshot and "
                    f"{len(probabilities)} in snapshot {index}."
                )
            if names is not None:
                labels.setdefault(key, names)
    count = len(snapshots)
    series = {key: np.full((count, width), np.nan) for key, width in widths.items()}
    for index, row in enumerate(rows):
        for key, (_, probabilities) in row.items():
            series[key][index] = probabilities
    return series, count, scalar_steps, labels


def _check_probabilities(series) -> None:
    for key, array in series.items():
        rows = array[np.isfinite(array).all(axis=1)]
        if (rows < 0).any() or (len(rows) and np.abs(rows.sum(axis=1) - 1).max() > 1e-2):
            raise ValueError(
                f"snapshots of {key!r} are not probabilities (non-negative, summing to 1); "
                "apply a softmax to logits first."
            )


def _snapshot_steps(steps, scalar_steps, count):
    """The x value of each snapshot: `steps`, else their step markers, else 0, 1, ..."""
    if steps is not None:
        x = np.asarray(steps, dtype=float)
        if x.shape != (count,):
            raise ValueError(f"`steps` must have one value per snapshot ({count}), got {x.shape}.")
        return x
    if len(scalar_steps) == count:
        return np.asarray(scalar_steps)
    return np.arange(count, dtype=float)


def _choice_values(choices, key, labels):
    if choices is None:
        return labels.get(key)
    if hasattr(choices, "variable"):
        try:
            return tuple(choices.variable(key).choices)
        except KeyError:
            return labels.get(key)
    return tuple(choices[key]) if key in choices else labels.get(key)


def plot_distribution_evolution(snapshots, path=None, steps=None, choices=None,
                                columns: int | None = None, decided=None) -> Figure:
    """Per-variable choice probabilities over a search, as a grid of small panels.

    Each panel is a stacked area of one variable's choice probabilities over
    the snapshots; choice i has the same colour in every panel (dark = first,
    i.e. smallest, choice). The panel title names the variable and the most
    probable choice in the last snapshot with its probability. A variable that
    is missing from some snapshots (progressive search) leaves a gap there.

    Args:
        snapshots: a list of `{variable_key: probabilities}` dicts or a dict
            `{variable_key: array of shape (snapshots, choices)}`. In the list
            form a scalar "step" or "epoch" entry is the snapshot's x value,
            and probabilities may also be `{choice: probability}` dicts
            (`ArchitectureDistribution.marginals()`); whole
            `ArchitectureDistribution.to_dict()` snapshots are read through
            their "marginals".
        path: str or path-like, optional. Where to save a PNG.
        steps: sequence of numbers, optional. x value of each snapshot.
        choices: a `TwoStreamSpace` or a dict `{variable_key: choices}`,
            optional. Names the most probable choice in the titles (by
            default the choices of `{choice: probability}` snapshots, else
            the choice index).
        columns: int, optional. Panels per row; defaults to about sqrt(2 n).
        decided: the variable keys the held-out evidence decided, optional
            (a search step's `metrics["decided_variables"]` or any collection of
            keys). Their titles are bold; every other title is grey: its most
            probable choice is a lean (docs/search.md, "What the search decided").

    Returns:
        The `matplotlib.figure.Figure`; its first n axes are the panels, in the
        order variables first appear, each with one filled area per choice.

    Raises:
        ValueError: on empty snapshots, inconsistent choice counts, or values
            that are not probabilities.
    """
    keys, series, x, labels = _snapshot_table(snapshots, steps)
    count = len(keys)
    if columns is None:
        columns = max(1, min(count, math.ceil(math.sqrt(2 * count))))
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"`columns` must be a positive int, got {columns!r}.")
    rows = math.ceil(count / columns)
    most_choices = max(array.shape[1] for array in series.values())
    from matplotlib import colormaps

    palette = colormaps["viridis"](np.linspace(0.05, 0.95, most_choices))
    fig = Figure(figsize=(1.75 * columns + 0.5, 1.25 * rows + 1.1))
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True).ravel()
    for ax, key in zip(axes, keys):
        _evolution_panel(ax, x, key, series[key], palette, choices, labels)
        if decided is not None:
            _mark_evidence(ax, key in decided)
    for ax in axes[count:]:
        ax.set_visible(False)
    legend_rows = _choice_legend(keys, series, choices, labels)
    _add_choice_legends(fig, legend_rows, palette)
    # Fixed margins in inches: tight_layout over ~50 axes takes seconds.
    width, height = fig.get_size_inches()
    top = 0.35
    if decided is not None:
        top += 0.2
        fig.suptitle(f"bold: decided by the held-out evidence ({len(decided)} of {count}); "
                     "grey: leans", fontsize=7, x=0.4 / width, y=1 - 0.08 / height,
                     ha="left", va="top")
    fig.subplots_adjust(left=0.4 / width, right=1 - 0.1 / width, top=1 - top / height,
                        bottom=(0.45 + 0.42 * len(legend_rows)) / height, wspace=0.12, hspace=0.5)
    return _save(fig, path)


def _evolution_panel(ax, x, key, array, palette, choices, labels) -> None:
    """One variable's stacked choice probabilities, titled with its last most probable choice
    (named by `_choice_values`, else its index)."""
    ax.stackplot(x, array.T, colors=palette[: array.shape[1]], linewidth=0)
    last = np.flatnonzero(np.isfinite(array).all(axis=1))
    label = key
    if len(last):
        final = array[last[-1]]
        best = int(np.argmax(final))
        values = _choice_values(choices, key, labels)
        name = values[best] if values and best < len(values) else f"#{best}"
        label = f"{key}\n\u2192 {name} ({final[best]:.2f})"
    ax.set_title(label, fontsize=6, pad=2)
    ax.set_ylim(0, 1)
    ax.set_xlim(x.min(), x.max() if x.max() > x.min() else x.min() + 1)
    ax.set_yticks([0, 0.5, 1])
    ax.xaxis.set_major_locator(MaxNLocator(3, integer=True))
    ax.tick_params(labelsize=5, length=2, pad=1)


def _mark_evidence(ax, decided: bool) -> None:
    """A decided variable's panel title in bold, an undecided one's in grey."""
    ax.title.set_fontweight("bold" if decided else "normal")
    ax.title.set_color("black" if decided else "0.5")


def _add_choice_legends(fig, legend_rows, palette) -> None:
    """One legend row per `(title, choice names)`, stacked at the bottom left."""
    for row, (title, names) in enumerate(legend_rows):
        handles = [Patch(facecolor=palette[i], label=name) for i, name in enumerate(names)]
        fig.legend(handles=handles, loc="lower left", ncol=len(handles), fontsize=6, frameon=False,
                   title=title, title_fontsize=6, alignment="left",
                   bbox_to_anchor=(0.01, (0.05 + 0.42 * (len(legend_rows) - 1 - row)) / fig.get_size_inches()[1]))


# How a choice value of each variable kind reads in a legend (t=3, k=5, ...).
CHOICE_PREFIXES = {"temporal_kernel": "t=", "spatial_kernel": "k=", "expansion": "e=",
                   "channels": "C=", "fusion": "", "attention": "GloRe "}


def _variable_kind(key: str) -> str:
    """`sparse[3].temporal_kernel` -> `temporal_kernel` (also `a/b/c` keys)."""
    return key.replace("/", ".").rsplit(".", 1)[-1]


def _choice_legend(keys, series, choices, labels) -> list:
    """[(title, label per choice index)], one row per variable kind, naming the values.

    A kind whose variables share their choices gets one label per value (t=1, t=3,
    t=5); one whose choices differ between variables (channels) gets the range of
    each choice index's values (C=32-248). Without known values: "choice i".
    """
    kinds = {}
    for key in keys:
        values = _choice_values(choices, key, labels)
        kinds.setdefault(_variable_kind(key), []).append(
            tuple(values) if values else tuple(range(series[key].shape[1])))
    if all(not _choice_values(choices, key, labels) for key in keys):
        width = max(array.shape[1] for array in series.values())
        return [("choice index (in the space's order; dark = first)", [f"choice {i}" for i in range(width)])]
    rows = []
    for kind, value_sets in kinds.items():
        prefix = CHOICE_PREFIXES.get(kind, f"{kind}=")
        width = max(len(values) for values in value_sets)
        names = []
        for index in range(width):
            column = [values[index] for values in value_sets if index < len(values)]
            numbers = [_as_number(value) for value in column]
            if None not in numbers and len(set(numbers)) > 1:
                low, high = min(numbers), max(numbers)
                names.append(f"{prefix}{_format_choice(low)}-{_format_choice(high)}")
            else:
                texts = list(dict.fromkeys(_format_choice(value) for value in column))
                names.append(prefix + "/".join(texts))
        rows.append((kind.replace("_", " "), names))
    return rows


def _as_number(value):
    if isinstance(value, (bool, np.bool_)) or value in ("True", "False"):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _format_choice(value) -> str:
    if isinstance(value, str):
        try:
            value = float(value) if value not in ("True", "False") else value == "True"
        except ValueError:
            return value
    if isinstance(value, (bool, np.bool_)):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------- space
def random_macs(space, n: int = 200, seed=0, crop: int = 160, num_classes: int = 400) -> np.ndarray:
    """One-view MACs of `n` architectures drawn uniformly from `space`.

    Args:
        space: a `TwoStreamSpace` (anything with `sample(seed)`).
        n: int. Number of architectures.
        seed: int, None or `numpy.random.Generator`.
        crop: int. Input crop for the accounting.
        num_classes: int. Classifier outputs.

    Returns:
        int64 array of shape (n,).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive int, got {n!r}.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return np.array(
        [complexity(space.sample(rng), num_classes=num_classes, crop=crop).macs for _ in range(n)],
        dtype=np.int64,
    )


def plot_macs_histogram(space, n: int = 200, seed=0, crop: int = 160, path=None,
                        num_classes: int = 400, references: Mapping | None = None) -> Figure:
    """Histogram of the one-view GMACs of random architectures of a space.

    Dashed lines mark the smallest and largest architectures of the space
    (`space.extreme`), and solid lines any `references`.

    Args:
        space: a `TwoStreamSpace`.
        n: int. Number of random architectures. Defaults to 200.
        seed: int, None or `numpy.random.Generator`. Defaults to 0.
        crop: int. Input crop for the accounting. Defaults to 160.
        path: str or path-like, optional. Where to save a PNG.
        num_classes: int. Defaults to 400.
        references: dict, optional. Name -> `Architecture` or MACs (int), e.g.
            `{"X3D-S": presets.x3d("S")}`.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    macs = random_macs(space, n=n, seed=seed, crop=crop, num_classes=num_classes) / 1e9
    fig = Figure(figsize=(6.5, 3.4))
    ax = fig.add_subplot()
    ax.hist(macs, bins=max(10, min(40, n // 5)), color="#7fb8da", edgecolor="#2b6a99",
            linewidth=0.6)
    lines = {}
    if hasattr(space, "extreme"):
        lines["smallest in space"] = (space.extreme(largest=False), "#808080", "--")
        lines["largest in space"] = (space.extreme(largest=True), "#808080", ":")
    colours = iter(["#c0392b", "#27ae60", "#8e44ad", "#d35400", "#2c3e50"] * 4)
    for name, value in (references or {}).items():
        lines[name] = (value, next(colours), "-")
    for name, (value, colour, style) in lines.items():
        if isinstance(value, Architecture):
            value = complexity(value, num_classes=num_classes, crop=crop).macs
        ax.axvline(value / 1e9, color=colour, linestyle=style, linewidth=1.2,
                   label=f"{name}: {value / 1e9:.2f}")
    low, median, high = np.percentile(macs, [5, 50, 95])
    ax.set_title(
        f"{n} random architectures at {crop}$^2$: median {median:.2f} GMACs, "
        f"90% in [{low:.2f}, {high:.2f}]", fontsize=9,
    )
    ax.set_xlabel("GMACs per view (one clip, one crop)", fontsize=8)
    ax.set_ylabel("architectures", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------- searched vs random
def plot_searched_vs_random(summary: Mapping, path=None, title: str | None = None) -> Figure:
    """Top-1 of the random architectures at equal FLOPs (dots), their mean +- std, the searched one.

    Args:
        summary: the evaluate recipe's `metrics["random_baselines"]` (or any dict
            with `searched`, `random_mean`, `random_std` and `rows` of `top1`).
        path: PNG path to save, or None.
        title: str or None (a default naming the gap in standard deviations).
    """
    top1 = 100 * np.asarray([row["top1"] for row in summary["rows"]], dtype="float64")
    searched, mean = 100 * summary["searched"], 100 * summary["random_mean"]
    std = 100 * summary["random_std"]
    fig = Figure(figsize=(5.2, 2.6))
    ax = fig.subplots()
    rows = (np.arange(len(top1)) % 3 - 1) * 0.2  # equal scores stay visible
    ax.scatter(top1, rows, color="#808080", s=30, zorder=3, clip_on=False,
               label=f"{len(top1)} random at equal FLOPs")
    if np.isfinite(std):
        ax.axvspan(mean - std, mean + std, color="#808080", alpha=0.2, label="random mean +- 1 std")
    ax.axvline(mean, color="#808080", linestyle="--", linewidth=1)
    ax.axvline(searched, color="#27ae60", linewidth=2, label=f"searched: {searched:.1f}%")
    gap = summary.get("beats_mean_by_std", float("nan"))
    ax.set_title(title or (f"searched vs random: {gap:+.1f} std above the random mean"
                           if np.isfinite(gap) else "searched vs random"), fontsize=9)
    ax.set_xlabel("multi-view top-1 (%)", fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(max(0.0, min(top1.min(), searched) - 10), min(101.0, max(top1.max(), searched) + 10))
    ax.set_ylim(-1.0, 1.0)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


__all__ = [
    "draw_architecture",
    "plot_distribution_evolution",
    "plot_macs_histogram",
    "plot_search_history",
    "plot_searched_vs_random",
    "random_macs",
]
