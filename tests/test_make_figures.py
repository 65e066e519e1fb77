"""scripts/make_figures.py turns a recipe run's output folders into the README figures."""

import json

from tests.scripts import load_script
from tsnet_keras.spaces import get_space


def load_make_figures():
    return load_script("scripts/make_figures.py")


TABLE = """| Model | Params (M) | Top-1 (%) |
|---|---|---|
| Auto-TSNet-S | 0.32 | 25.6 |
| Auto-TSNet-M | 0.32 | 21.2 |
"""


def fake_run(root):
    """Folders with the files the recipes write, two search steps, a retrain and an evaluation."""
    space = get_space("auto_tsnet_mini")
    variables = space.variables(step=1)[:4]
    folders = {}
    for number in (1, 2):
        folder = root / f"step{number}"
        folder.mkdir()
        snapshots = [{"step": s, **{v.key: {str(c): 1 / len(v.choices) for c in v.choices} for v in variables}}
                     for s in (0, 4)]
        (folder / "distribution_history.json").write_text(json.dumps(snapshots))
        history = [{"epoch": e, "step": 2 * e, "loss": 2.0 / e, "heldout_score": 0.1 * e, "entropy": 9 - e,
                    "expected_macs": 3e7, "sampled_macs": 2.9e7} for e in (1, 2)]
        (folder / "history.json").write_text(json.dumps(history))
        (folder / "metrics.json").write_text(json.dumps({"recipe": f"search_step{number}", "epochs": 2}))
        space.sample(number).save(folder / "architecture.json")
        folders[f"step{number}"] = folder
    retrain = root / "retrain"
    retrain.mkdir()
    (retrain / "history.json").write_text(json.dumps([{"epoch": e, "loss": 2.0 / e, "accuracy": 0.2 * e}
                                                      for e in (1, 2, 3)]))
    (retrain / "metrics.json").write_text(json.dumps({"recipe": "retrain", "epochs": 3}))
    evaluate = root / "evaluate"
    evaluate.mkdir()
    (evaluate / "table.md").write_text(TABLE)
    (evaluate / "metrics.json").write_text(json.dumps({"recipe": "evaluate", "table": TABLE, "top1": 0.256}))
    return folders, retrain, evaluate


def test_figures_from_run_folders(tmp_path):
    folders, retrain, evaluate = fake_run(tmp_path)
    out = tmp_path / "images"
    script = load_make_figures()
    assert script.main(["--search", str(folders["step1"]), str(folders["step2"]), "--retrain", str(retrain),
                        "--evaluate", str(evaluate), "--out", str(out)]) == 0
    for name in ("architecture", "search_history", "distribution_step1", "distribution_step2",
                 "training_history", "results_table"):
        assert (out / f"{name}.png").stat().st_size > 5000, name
    assert (out / "results_table.md").read_text() == TABLE
    record = json.loads((out / "run.json").read_text())
    assert record["step2"]["recipe"] == "search_step2" and "table" not in record["evaluate"]


def test_markdown_rows_drop_the_separator():
    assert load_make_figures().markdown_rows(TABLE) == [
        ["Model", "Params (M)", "Top-1 (%)"], ["Auto-TSNet-S", "0.32", "25.6"], ["Auto-TSNet-M", "0.32", "21.2"]]
