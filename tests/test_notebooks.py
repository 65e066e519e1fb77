"""Notebooks are committed stripped, with one commented `parameters` cell, and run with papermill.

Every notebook in `notebooks/` runs on tiny parameters (`NOTEBOOK_TEST_PARAMETERS`;
one without an entry runs on its defaults, which must stay laptop-fast). The
recipes in `recipes/` run as chains (`RECIPE_CHAINS`), each reading the previous
one's output folder, on `RECIPE_TEST_PARAMETERS`.
"""

import ast
import io
import subprocess
import sys
import tokenize

import nbformat
import pytest

from tests.scripts import ROOT, load_script

FOLDERS = ("notebooks", "recipes")


def notebooks_in(folder):
    return sorted(
        p for p in (ROOT / folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
    )


ALL_NOTEBOOKS = [p for folder in FOLDERS for p in notebooks_in(folder)]

# Notebook file stem -> parameters that keep its run under ~60 s on a 2-core CPU.
NOTEBOOK_TEST_PARAMETERS = {
    "quickstart": {"crop": 64, "num_classes": 10},
    "layers_on_other_backends": {"backend": "torch", "crop": 16, "num_clips": 8, "epochs": 1},
    "search_space_tour": {"num_samples": 20},
    "finetune_x3d": {"crop": 32, "epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "val_steps": 1},
}
# Further runs, marked slow: (file stem, parameters).
SLOW_NOTEBOOK_RUNS = [
    ("layers_on_other_backends", {"backend": "jax", "crop": 16, "num_clips": 8, "epochs": 1}),
    ("layers_on_other_backends", {"backend": "tensorflow", "crop": 16, "num_clips": 8, "epochs": 1}),
    ("quickstart", {"preset": "X3D-S"}),
]
# Recipe file stem -> tiny parameters (crop 32, batch 4, a few steps). `output_dir`,
# `previous_dir` and `figure_dir` are set by the chain test.
RECIPE_TEST_PARAMETERS = {
    "step1_sparse": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "crop": 32,
                     "target_gflops": 0.01, "checkpoint_every": 1},
    "step2_dense_fusion": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "crop": 32,
                           "target_gflops": 0.0},
    "step3_attention": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "crop": 32},
    "retrain": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 4, "crop": 32, "val_steps": 2},
    "evaluate": {"num_views": 2, "batch_size": 16, "random_baselines": 1},
}
# Recipes run in order in one folder, each reading the previous one's output_dir: the
# five recipes in about 5 minutes on 2 CPU cores (most of it tracing the supernets).
RECIPE_CHAINS = [
    pytest.param(("step1_sparse", "step2_dense_fusion", "step3_attention", "retrain", "evaluate"),
                 id="step1-step2-step3-retrain-evaluate"),
]
# What each recipe's metrics.json must hold as finite numbers (dotted paths).
RECIPE_METRICS = {
    "step1_sparse": ("heldout_score", "loss", "entropy", "entropy_left", "expected_gflops",
                     "architecture.gflops"),
    "step2_dense_fusion": ("heldout_score", "loss", "entropy", "expected_gflops", "architecture.gflops"),
    "step3_attention": ("heldout_score", "loss", "entropy", "expected_gflops", "architecture.gflops"),
    "retrain": ("loss", "accuracy", "val_loss", "val_top1_one_clip", "architecture.params"),
    "evaluate": ("top1", "top5", "random_baselines.random_mean", "random_baselines.searched"),
}


def relative(path):
    return path.relative_to(ROOT).as_posix()


# ----------------------------------------------------------------- committed form
def parameter_cells(nb):
    return [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=relative)
def test_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], (
            f"{relative(path)} cell {index} has outputs; run `python scripts/strip_notebooks.py`."
        )
        assert cell.execution_count is None, (
            f"{relative(path)} cell {index} has an execution count; run "
            "`python scripts/strip_notebooks.py`."
        )


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=relative)
def test_notebook_has_one_commented_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    cells = parameter_cells(nb)
    assert len(cells) == 1, f"{relative(path)} has {len(cells)} cells tagged `parameters`."
    source = cells[0].source
    comment_lines = {
        token.start[0]
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    statements = ast.parse(source).body
    assert statements, f"{relative(path)}: the parameters cell is empty."
    for node in statements:
        line = source.splitlines()[node.lineno - 1]
        assert isinstance(node, (ast.Assign, ast.AnnAssign)), (
            f"{relative(path)}: the parameters cell holds only assignments, got {line!r}."
        )
        ast.literal_eval(node.value)  # a literal, so papermill can override it
        lines = set(range(node.lineno, node.end_lineno + 1))
        assert comment_lines & lines, f"{relative(path)}: parameter {line!r} has no comment."


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=relative)
def test_notebook_starts_with_title_and_papermill_command(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# "), (
        f"{relative(path)} must start with a markdown title."
    )
    assert f"papermill {relative(path)}" in first.source, (
        f"{relative(path)}: the first cell must show how to run it with papermill."
    )


def load_strip_script():
    return load_script("scripts/strip_notebooks.py")


def test_strip_script_removes_outputs_and_keeps_tags(tmp_path):
    strip_notebooks = load_strip_script()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1  # a parameter", execution_count=3)
    params.metadata["tags"] = ["parameters"]
    params.metadata["papermill"] = {"duration": 0.1}
    params.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), params]
    nb.metadata["papermill"] = {"parameters": {}}
    path = tmp_path / "a.ipynb"
    nbformat.write(nb, path)

    assert strip_notebooks.main(["--check", str(path)]) == 1
    assert strip_notebooks.main([str(path)]) == 0
    assert strip_notebooks.main(["--check", str(path)]) == 0
    stripped = nbformat.read(path, as_version=4)
    cell = stripped.cells[1]
    assert cell.outputs == [] and cell.execution_count is None
    assert cell.metadata == {"tags": ["parameters"]}
    assert "papermill" not in stripped.metadata
    assert cell.source == "x = 1  # a parameter"


# --------------------------------------------------------------------- execution
def execution_cases():
    cases = []
    for path in notebooks_in("notebooks"):
        parameters = NOTEBOOK_TEST_PARAMETERS.get(path.stem, {})
        cases.append(pytest.param(path, parameters, id=relative(path)))
    for stem, parameters in SLOW_NOTEBOOK_RUNS:
        path = ROOT / "notebooks" / f"{stem}.ipynb"
        if path.exists():
            label = ",".join(f"{k}={v}" for k, v in parameters.items())
            cases.append(
                pytest.param(path, parameters, id=f"{relative(path)}[{label}]",
                             marks=pytest.mark.slow)
            )
    return cases


@pytest.fixture(scope="session")
def python3_kernel():
    """Papermill needs a registered `python3` kernel; register this interpreter's if missing."""
    from jupyter_client.kernelspec import find_kernel_specs

    if "python3" not in find_kernel_specs():
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--user", "--name", "python3"],
            check=True, capture_output=True,
        )
    return "python3"


def declared_parameters(path):
    source = parameter_cells(nbformat.read(path, as_version=4))[0].source
    return {
        target.id
        for node in ast.parse(source).body
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }


@pytest.mark.parametrize("path, parameters", execution_cases())
def test_notebook_executes(path, parameters, tmp_path, python3_kernel):
    import papermill

    declared = declared_parameters(path)
    unknown = set(parameters) - declared
    assert not unknown, f"{relative(path)} has no parameter(s) {sorted(unknown)}."
    parameters = dict(parameters)
    figure_dir = tmp_path / "figures"
    if "figure_dir" in declared:
        parameters["figure_dir"] = str(figure_dir)
    output = tmp_path / path.name
    papermill.execute_notebook(
        str(path), str(output), parameters=parameters, kernel_name=python3_kernel,
        cwd=str(ROOT), progress_bar=False, execution_timeout=600,
    )
    executed = nbformat.read(output, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    if "figure_dir" in declared:
        pngs = list(figure_dir.glob("*.png"))
        assert pngs and all(p.stat().st_size > 1000 for p in pngs)


# ------------------------------------------------------------------------ recipes
def test_every_recipe_is_in_a_chain():
    stems = {path.stem for path in notebooks_in("recipes")}
    chained = {stem for chain in RECIPE_CHAINS for stem in chain.values[0]}
    assert stems == chained == set(RECIPE_TEST_PARAMETERS)


def metric(metrics, dotted):
    for key in dotted.split("."):
        metrics = metrics[key]
    return metrics


@pytest.mark.parametrize("chain", RECIPE_CHAINS)
def test_recipe_chain_executes(chain, tmp_path, python3_kernel):
    """Runs the recipes in order, each on the previous one's output_dir, and checks the outputs."""
    import json
    import math

    import papermill

    previous = ""
    for stem in chain:
        path = ROOT / "recipes" / f"{stem}.ipynb"
        output_dir = tmp_path / stem
        parameters = dict(RECIPE_TEST_PARAMETERS[stem], output_dir=str(output_dir),
                          previous_dir=previous, figure_dir=str(tmp_path / "figures" / stem))
        unknown = set(parameters) - declared_parameters(path)
        assert not unknown, f"{relative(path)} has no parameter(s) {sorted(unknown)}."
        papermill.execute_notebook(
            str(path), str(tmp_path / path.name), parameters=parameters,
            kernel_name=python3_kernel, cwd=str(ROOT), progress_bar=False, execution_timeout=600,
        )
        with open(output_dir / "metrics.json") as handle:
            metrics = json.load(handle)
        for name in RECIPE_METRICS[stem]:
            value = metric(metrics, name)
            assert isinstance(value, (int, float)) and math.isfinite(value), (stem, name, value)
        assert (output_dir / "architecture.json").exists(), stem
        pngs = list((tmp_path / "figures" / stem).glob("*.png"))
        assert pngs and all(p.stat().st_size > 1000 for p in pngs), stem
        previous = str(output_dir)
    assert (tmp_path / "evaluate" / "table.md").read_text().count("Auto-TSNet-") == 6
