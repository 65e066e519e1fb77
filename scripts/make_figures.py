"""The README's figures (docs/images/) from the output folders of a real recipe run.

```bash
python scripts/make_figures.py --search runs/step1 runs/step2 runs/step3 \
    --retrain runs/retrain --evaluate runs/evaluate --out docs/images
```

The folders are those of the recipe chain (`papermill recipes/...` or `tsnet-keras
search --step 1 ...`, see docs/recipes.md). It writes, with `tsnet_keras.plotting`:

- `architecture.png`: the searched architecture (last search step), paper Figure 3 style;
- `distribution_step{1,2,3}.png`: choice probabilities over each search step;
- `search_history.png`: entropy, MACs, held-out score and loss over the three steps;
- `training_history.png`: the retrain run;
- `results_table.png` and `results_table.md`: the evaluation's Table-3-style results;
- `run.json`: which folders the figures came from and their settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from matplotlib.figure import Figure

from tsnet_keras import recipes
from tsnet_keras.plotting import draw_architecture, plot_distribution_evolution, plot_search_history
from tsnet_keras.recipes.common import read_json


def search_figures(folders, out) -> list:
    """Architecture, per-step distributions and the joined history of the search steps."""
    written = []
    rows = []
    for number, folder in enumerate(folders, start=1):
        path = os.path.join(out, f"distribution_step{number}.png")
        plot_distribution_evolution(recipes.load_snapshots(folder), path=path)
        written.append(path)
        history = read_json(os.path.join(folder, "history.json"))
        offset = rows[-1]["global_step"] if rows else 0
        for row in history:
            rows.append({**row, "search_step": number, "global_step": offset + float(row.get("step") or 0)})
    path = os.path.join(out, "search_history.png")
    plot_search_history([{k: v for k, v in row.items() if k != "step"} for row in rows], path=path)
    written.append(path)
    arch = recipes.load_architecture(folders[-1])
    path = os.path.join(out, "architecture.png")
    draw_architecture(arch, path=path, title=f"searched architecture ({os.path.basename(folders[-1].rstrip('/'))})")
    written.append(path)
    return written


def training_figure(folder, out) -> list:
    path = os.path.join(out, "training_history.png")
    plot_search_history(recipes.load_history(folder), path=path)
    return [path]


def markdown_rows(table: str) -> list:
    """The cells of a Markdown table, header first, separator row dropped."""
    lines = [line.strip() for line in table.strip().splitlines() if line.strip().startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [row for row in cells if not all(set(cell) <= set("-: ") for cell in row)]


def results_figure(folder, out) -> list:
    """The evaluation table as a PNG (and its Markdown next to it)."""
    with open(os.path.join(folder, "table.md"), encoding="utf-8") as handle:
        table = handle.read()
    rows = markdown_rows(table)
    if len(rows) < 2:
        raise ValueError(f"{folder}/table.md holds no table rows.")
    figure = Figure(figsize=(1.15 * len(rows[0]), 0.32 * len(rows) + 0.4))
    ax = figure.add_axes((0, 0, 1, 1))
    ax.axis("off")
    drawn = ax.table(cellText=rows[1:], colLabels=rows[0], loc="center", cellLoc="center")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(7)
    drawn.scale(1, 1.3)
    png = os.path.join(out, "results_table.png")
    figure.savefig(png, dpi=150, bbox_inches="tight")
    markdown = os.path.join(out, "results_table.md")
    with open(markdown, "w", encoding="utf-8") as handle:
        handle.write(table.strip() + "\n")
    return [png, markdown]


def run_record(args) -> dict:
    """Folders and settings the figures came from (the metrics.json of each)."""
    record = {}
    for name, folder in [(f"step{i}", f) for i, f in enumerate(args.search, 1)] + [
        ("retrain", args.retrain), ("evaluate", args.evaluate)
    ]:
        if folder:
            metrics = read_json(os.path.join(folder, "metrics.json"))
            record[name] = {k: v for k, v in metrics.items() if k not in ("data", "table", "rows")}
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", nargs="+", default=[], metavar="DIR",
                        help="output folders of search steps 1, 2, 3, in order")
    parser.add_argument("--retrain", default="", metavar="DIR", help="output folder of the retrain recipe")
    parser.add_argument("--evaluate", default="", metavar="DIR", help="output folder of the evaluate recipe")
    parser.add_argument("--out", default="docs/images", metavar="DIR", help="folder of the figures")
    args = parser.parse_args(argv)
    if not (args.search or args.retrain or args.evaluate):
        parser.error("give at least one of --search, --retrain, --evaluate")
    os.makedirs(args.out, exist_ok=True)
    written = []
    if args.search:
        written += search_figures(args.search, args.out)
    if args.retrain:
        written += training_figure(args.retrain, args.out)
    if args.evaluate:
        written += results_figure(args.evaluate, args.out)
    record = os.path.join(args.out, "run.json")
    folders = [os.path.abspath(f) for f in [*args.search, args.retrain, args.evaluate] if f]
    root = os.path.dirname(os.path.commonpath(folders)) + os.sep
    text = json.dumps(run_record(args), indent=1, default=str)
    with open(record, "w", encoding="utf-8") as handle:
        handle.write(text.replace(root, ""))  # run folders relative to their parent: no machine paths
    for path in written + [record]:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
