"""Tests of tsnet_keras.plotting: what is drawn matches the architecture / history."""

import collections
import csv

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tsnet_keras import auto_tsnet, presets  # noqa: E402
from tsnet_keras.plotting import (  # noqa: E402
    ATTENTION_GID,
    BOX_GIDS,
    FUSION_GID,
    FUSION_LABELS,
    draw_architecture,
    plot_distribution_evolution,
    plot_macs_histogram,
    plot_search_history,
    random_macs,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_MAGIC


def patches(fig, gid):
    return [p for ax in fig.axes for p in ax.patches if p.get_gid() == gid]


def stars(fig):
    return [
        line for ax in fig.axes for line in ax.lines
        if line.get_gid() == ATTENTION_GID and line.get_marker() == "*"
    ]


@pytest.fixture(scope="module")
def space():
    return auto_tsnet()


# ------------------------------------------------------------------ architecture
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_draw_sampled_architecture_counts(space, seed, tmp_path):
    arch = space.sample(seed)
    path = tmp_path / "arch.png"
    fig = draw_architecture(arch, path=path, title=f"seed {seed}")
    assert isinstance(fig, Figure)
    assert_png(path)

    groups = sum(len(stream.groups) for _, stream in arch.streams())
    assert len(patches(fig, "group")) == groups
    assert len(patches(fig, "stem")) == 2
    assert len(patches(fig, "head")) == 2
    assert len(patches(fig, "classifier")) == 1
    all_boxes = [p for p in fig.axes[0].patches if p.get_gid() in BOX_GIDS]
    assert len(all_boxes) == groups + 2 + 2 + 1

    fusions = [g.fusion for g in arch.sparse.groups if g.fusion != "none"]
    assert len(patches(fig, FUSION_GID)) == len(fusions)
    labels = collections.Counter(
        t.get_text() for t in fig.axes[0].texts if t.get_text() in FUSION_LABELS.values()
    )
    assert labels == collections.Counter(FUSION_LABELS[op] for op in fusions)

    attention = sum(g.attention for _, s in arch.streams() for g in s.groups)
    assert len(stars(fig)) == attention


def test_sampled_seeds_cover_fusion_and_attention(space):
    # Guards the counting test above against seeds that draw nothing to count.
    archs = [space.sample(seed) for seed in (0, 1, 2)]
    assert any(g.fusion != "none" for a in archs for g in a.sparse.groups)
    assert any(g.attention for a in archs for _, s in a.streams() for g in s.groups)


def test_box_encodings_follow_the_groups(space):
    arch = space.sample(5)
    fig = draw_architecture(arch)
    boxes = patches(fig, "group")
    groups = [g for _, s in arch.streams() for g in s.groups]  # drawing order
    ratios = [box.get_height() / group.expansion for box, group in zip(boxes, groups)]
    np.testing.assert_allclose(ratios, ratios[0])
    # Same temporal kernel <=> same face colour; same spatial kernel <=> same hatch.
    colour = {}
    hatch = {}
    for box, group in zip(boxes, groups):
        colour.setdefault(group.temporal_kernel, set()).add(tuple(box.get_facecolor()))
        hatch.setdefault(group.spatial_kernel, set()).add(box.get_hatch() or "")
    assert all(len(v) == 1 for v in colour.values())
    assert len({next(iter(v)) for v in colour.values()}) == len(colour)
    assert all(len(v) == 1 for v in hatch.values())
    assert len({next(iter(v)) for v in hatch.values()}) == len(hatch)
    # The channel count is written in each group box.
    texts = [t.get_text() for t in fig.axes[0].texts]
    for group in groups:
        assert str(group.channels) in texts


def test_draw_single_stream_and_into_given_axes(tmp_path):
    arch = presets.x3d("S")
    fig = Figure()
    ax = fig.add_subplot()
    returned = draw_architecture(arch, ax=ax, path=tmp_path / "x3d.png")
    assert returned is fig
    assert_png(tmp_path / "x3d.png")
    assert len(patches(fig, "group")) == 4
    assert len(patches(fig, "stem")) == len(patches(fig, "head")) == 1
    assert patches(fig, FUSION_GID) == []
    assert stars(fig) == []


def test_draw_rejects_non_architecture():
    with pytest.raises(TypeError, match="Architecture"):
        draw_architecture({"sparse": None})


# ----------------------------------------------------------------------- history
def synthetic_history(records=60, rng=None):
    rng = rng or np.random.default_rng(0)
    history = []
    for index in range(records):
        history.append(
            {
                "search_step": 1 if index < records // 2 else 2,
                "epoch": index // 4,
                "global_step": index,
                "loss": 2.0 * np.exp(-index / 30) + 0.05 * rng.random(),
                "score": 0.2 + 0.5 * (1 - np.exp(-index / 20)),
                "entropy": 40.0 * np.exp(-index / 50),
                "expected_macs": 1.4e9 + 2e9 * np.exp(-index / 25),
                "sampled_macs": 1.4e9 + 2e9 * np.exp(-index / 25) + 2e8 * rng.standard_normal(),
                "architecture": '{"sparse": "..."}',  # text columns are skipped
            }
        )
    return history


def test_search_history_from_records_and_csv(tmp_path):
    history = synthetic_history()
    fig = plot_search_history(history, path=tmp_path / "history.png", target_macs=1.4e9)
    assert_png(tmp_path / "history.png")
    assert len(fig.axes) == 4  # entropy, MACs, score, loss
    assert fig.axes[-1].get_xlabel() == "global_step"
    targets = [line for ax in fig.axes for line in ax.lines if line.get_gid() == "target"]
    assert len(targets) == 1
    np.testing.assert_allclose(targets[0].get_ydata(), [1.4, 1.4])  # shown in GMACs
    boundaries = [line for line in fig.axes[0].lines if line.get_gid() == "step_boundary"]
    assert len(boundaries) == 1

    csv_path = tmp_path / "history.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    from_csv = plot_search_history(str(csv_path), path=tmp_path / "csv.png", target_macs=(1.3e9, 1.5e9))
    assert_png(tmp_path / "csv.png")
    assert len(from_csv.axes) == 4
    np.testing.assert_allclose(from_csv.axes[1].lines[0].get_ydata(),
                               np.array([r["expected_macs"] for r in history]) / 1e9)


def test_search_history_plots_only_what_is_present():
    # A partial history with a progressive "step" (1..2) and a restarting epoch.
    history = [{"step": 1 + i // 5, "epoch": i % 5, "loss": 1.0 / (i + 1)} for i in range(10)]
    fig = plot_search_history(history)
    assert len(fig.axes) == 1
    assert fig.axes[0].get_ylabel() == "loss"
    assert fig.axes[0].get_xlabel() == "record"  # neither step nor epoch is a usable x axis
    columns = {"epoch": [0, 1, 2], "expected_macs": [3.0e9, 2.5e9, 2.0e9],
               "target_macs": [2e9, 2e9, 2e9]}
    fig = plot_search_history(columns)
    assert len(fig.axes) == 1
    assert [line.get_gid() for line in fig.axes[0].lines].count("target") == 1


def test_search_history_errors():
    with pytest.raises(ValueError, match="no column to plot"):
        plot_search_history([{"epoch": 1, "name": "a"}])
    with pytest.raises(ValueError, match="empty"):
        plot_search_history([])
    with pytest.raises(TypeError):
        plot_search_history(3)


# ------------------------------------------------------------------ distribution
def synthetic_snapshots(space, count=8, seed=0):
    rng = np.random.default_rng(seed)
    variables = space.variables(step=1) + space.variables(step=3)[:6]  # 50 variables
    logits = {v.key: rng.standard_normal(len(v.choices)) for v in variables}
    snapshots = []
    for index in range(count):
        snapshot = {"step": 10 * index}
        for v in variables:
            logits[v.key] = logits[v.key] + 0.5 * rng.standard_normal(len(v.choices))
            probs = np.exp(logits[v.key])
            snapshot[v.key] = probs / probs.sum()
        snapshots.append(snapshot)
    return variables, snapshots


def test_distribution_evolution_small_multiples(space, tmp_path):
    variables, snapshots = synthetic_snapshots(space)
    assert len(variables) == 50
    fig = plot_distribution_evolution(snapshots, path=tmp_path / "dist.png", choices=space)
    assert_png(tmp_path / "dist.png")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == len(variables)
    for ax, variable in zip(panels, variables):
        assert len(ax.collections) == len(variable.choices)  # one area per choice
        final = snapshots[-1][variable.key]
        best = variable.choices[int(np.argmax(final))]
        assert ax.get_title().startswith(variable.key)
        assert f"\u2192 {best} (" in ax.get_title()
    assert panels[0].get_xlim() == (0.0, 70.0)  # x from the snapshots' "step"

    # The same data as a dict of (snapshots, choices) arrays gives the same panels.
    some = variables[:7]
    arrays = {v.key: np.stack([s[v.key] for s in snapshots]) for v in some}
    fig2 = plot_distribution_evolution(arrays, columns=3, choices=space)
    assert len(fig2.axes) >= 9  # a 3 x 3 grid
    assert [ax.get_title() for ax in fig2.axes if ax.get_visible()] == [
        ax.get_title() for ax in panels[:7]
    ]


def test_distribution_evolution_reads_marginals_with_their_choices():
    # ArchitectureDistribution.marginals() form, then to_dict() form (pairs under "marginals").
    marginals = [
        {"epoch": 0, "loss": 2.0, "sparse[0].fusion": {"none": 0.7, "time_to_channel": 0.3}},
        {"epoch": 5, "sparse[0].fusion": {"none": 0.2, "time_to_channel": 0.8}},
    ]
    saved = [
        {"step": 3, "entropy": 1.0,
         "marginals": {"sparse[0].fusion": [["none", 0.6], ["time_to_channel", 0.4]]}},
        {"step": 4, "entropy": 0.5,
         "marginals": {"sparse[0].fusion": [["none", 0.9], ["time_to_channel", 0.1]]}},
    ]
    for snapshots, title, xlim in [(marginals, "time_to_channel (0.80)", (0, 5)),
                                   (saved, "none (0.90)", (3, 4))]:
        fig = plot_distribution_evolution(snapshots)
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert len(panels) == 1
        assert panels[0].get_title().endswith(title)
        assert panels[0].get_xlim() == xlim


def test_distribution_evolution_marks_the_variables_the_evidence_decided():
    snapshots = [{"a": [0.5, 0.5], "b": [0.5, 0.5]}, {"a": [0.1, 0.9], "b": [0.4, 0.6]}]
    fig = plot_distribution_evolution(snapshots, decided={"a": 1})
    a, b = [ax for ax in fig.axes if ax.get_visible()]
    assert a.title.get_fontweight() == "bold" and a.title.get_color() == "black"
    assert b.title.get_fontweight() == "normal" and b.title.get_color() == "0.5"
    assert "(1 of 2)" in fig.get_suptitle()
    plain = plot_distribution_evolution(snapshots)  # without it: no marks, no line above
    assert plain.get_suptitle() == ""
    assert {ax.title.get_fontweight() for ax in plain.axes if ax.get_visible()} == {"normal"}


def test_distribution_evolution_tolerates_missing_variables_and_rejects_logits():
    snapshots = [{"a": [0.5, 0.5]}, {"a": [0.2, 0.8], "b": [0.1, 0.3, 0.6]}]
    fig = plot_distribution_evolution(snapshots)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2
    with pytest.raises(ValueError, match="softmax"):
        plot_distribution_evolution([{"a": [2.0, -1.0]}])
    with pytest.raises(ValueError, match="choices"):
        plot_distribution_evolution([{"a": [0.5, 0.5]}, {"a": [0.2, 0.3, 0.5]}])
    with pytest.raises(ValueError, match="empty"):
        plot_distribution_evolution([])


# ----------------------------------------------------------------------- space
def test_macs_histogram(space, tmp_path):
    fig = plot_macs_histogram(space, n=40, seed=0, crop=112, path=tmp_path / "macs.png",
                              references={"Manual-TSNet-70%": 1.96e9})
    assert_png(tmp_path / "macs.png")
    bars = [p for p in fig.axes[0].patches if p.get_height() > 0]
    assert sum(p.get_height() for p in bars) == 40


def test_random_macs_is_seeded_and_inside_the_space_extremes(space):
    from tsnet_keras import complexity

    macs = random_macs(space, n=30, seed=3, crop=112)
    np.testing.assert_array_equal(macs, random_macs(space, n=30, seed=3, crop=112))
    assert not np.array_equal(macs, random_macs(space, n=30, seed=4, crop=112))
    low = complexity(space.extreme(largest=False), crop=112).macs
    high = complexity(space.extreme(largest=True), crop=112).macs
    assert low <= macs.min() and macs.max() <= high
    with pytest.raises(ValueError, match="`n`"):
        random_macs(space, n=0)


def test_distribution_legend_names_choice_values(space):
    _, snapshots = synthetic_snapshots(space)
    fig = plot_distribution_evolution(snapshots, choices=space)
    rows = {legend.get_title().get_text(): [t.get_text() for t in legend.get_texts()] for legend in fig.legends}
    assert rows["temporal kernel"] == ["t=1", "t=3", "t=5"]
    assert rows["spatial kernel"] == ["k=3", "k=5"]
    assert rows["expansion"][:2] == ["e=1.5", "e=2.25"]
    # Channel choices differ between groups: each index shows the range of its values.
    smallest = [space.variable(k).choices[0] for k in snapshots[0] if k.endswith(".channels")]
    assert rows["channels"][0] == f"C={min(smallest)}-{max(smallest)}"
    # Without known values the legend falls back to indices.
    unnamed = plot_distribution_evolution([{"a": [0.5, 0.5]}, {"a": [0.2, 0.8]}])
    assert [t.get_text() for t in unnamed.legends[0].get_texts()] == ["choice 0", "choice 1"]


def test_searched_vs_random_marks_the_searched_model_and_each_random_one(tmp_path):
    from tsnet_keras.plotting import plot_searched_vs_random
    from tsnet_keras.search.baselines import searched_vs_random

    summary = {**searched_vs_random(0.62, [0.30, 0.41, 0.45]),
               "rows": [{"top1": value} for value in (0.30, 0.41, 0.45)]}
    fig = plot_searched_vs_random(summary, path=tmp_path / "svr.png")
    ax = fig.axes[0]
    dots = ax.collections[0].get_offsets()[:, 0]
    np.testing.assert_allclose(sorted(dots), [30.0, 41.0, 45.0])
    searched = [line for line in ax.lines if line.get_label().startswith("searched")]
    assert searched and searched[0].get_xdata()[0] == pytest.approx(62.0)
    assert "+3.0 std" in ax.get_title()  # (62 - 38.7) / 7.8
    assert (tmp_path / "svr.png").stat().st_size > 1000
