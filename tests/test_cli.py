"""The `tsnet-keras` command line: options from the recipe functions, words from the notebooks."""

import functools
import inspect
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tsnet_keras import cli, recipes
from tsnet_keras.data.synthetic import make_synthetic_dataset

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_lists(tmp_path_factory):
    generated = make_synthetic_dataset(tmp_path_factory.mktemp("cli_data"), num_classes=4, videos_per_class=2,
                                       val_videos_per_class=1, width=48, height=48, num_frames=40,
                                       workers=1, verbose=False)
    return generated.root, generated.train_list, generated.val_list


@pytest.mark.slow  # about 100 s on two loaded CPU cores (supernet trace)
def test_search_step_1_writes_architecture_and_metrics(tiny_lists, tmp_path, capsys):
    out = tmp_path / "step1"
    code = cli.main([
        "search", "--step", "1", "--output-dir", str(out), "--data-root", tiny_lists[0],
        "--train-list", tiny_lists[1], "--val-list", tiny_lists[2], "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2",
        "--crop", "32", "--target-gflops", "0", "--heldout-fraction", "0.5", "--checkpoint-every", "1",
        "--samples-per-replica", "2",
    ])
    assert code == 0
    architecture = recipes.load_architecture(str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["recipe"], metrics["epochs"], metrics["batch_size"], metrics["seed"]) == ("search_step1", 1, 2, 0)
    assert architecture.sparse.frames == 4 and architecture.dense is None
    assert "outputs in" in capsys.readouterr().out


def recorder(function, calls):
    @functools.wraps(function)
    def record(*args, **kwargs):
        calls.append((args, kwargs))

    return record


def test_options_reach_the_recipe_function(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(recipes, "search_step", recorder(recipes.search_step, calls))
    assert cli.main(["search", "--step", "one-shot", "--output-dir", str(tmp_path), "--epochs", "5",
                     "--graph-optimization", "--target-gflops", "1.5"]) == 0
    (args, kwargs), = calls
    step1 = cli.notebook_parameters(ROOT / "recipes" / "step1_sparse.ipynb")
    assert args == ("one_shot", str(tmp_path), step1["previous_dir"][0])
    assert (kwargs["epochs"], kwargs["graph_optimization"], kwargs["target_gflops"]) == (5, True, 1.5)
    assert kwargs["crop"] == step1["crop"][0] and kwargs["space"] == step1["space"][0]
    assert kwargs["base_learning_rate"] == inspect.signature(recipes.search_step).parameters["base_learning_rate"].default

    monkeypatch.setattr(recipes, "load_architecture", lambda path: f"arch of {path}")
    monkeypatch.setattr(recipes, "retrain", recorder(recipes.retrain, calls))
    assert cli.main(["retrain", "--previous-dir", "runs/x", "--output-dir", str(tmp_path),
                     "--no-validate", "--mixed-precision"]) == 0
    args, kwargs = calls[-1]
    assert args == ("arch of runs/x", str(tmp_path))
    assert kwargs["validate"] is False and kwargs["mixed_precision"] is True


def test_parameter_errors_come_back_as_messages(tmp_path, capsys):
    code = cli.main(["search", "--step", "2", "--output-dir", str(tmp_path / "s2"),
                     "--previous-dir", str(tmp_path / "missing")])
    assert code == 2
    assert "previous_dir" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_options_are_the_recipe_function_parameters(name):
    command = cli.COMMANDS[name]
    parameters = set(inspect.signature(command.function).parameters)
    expected = {dict(command.positional).get(p, p) for p in parameters} - set(cli.NOT_OPTIONS) - {"step"}
    expected -= {p for p, v in inspect.signature(command.function).parameters.items() if v.kind is v.VAR_KEYWORD}
    assert {option.name for option in cli.command_options(command)} == expected


def test_help_uses_the_notebook_words_and_defaults(capsys):
    for step, notebook in ((1, "step1_sparse.ipynb"), (2, "step2_dense_fusion.ipynb")):
        shown = cli.notebook_parameters(ROOT / "recipes" / notebook)
        with pytest.raises(SystemExit):
            cli.main(["search", "--step", str(step), "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for name in ("target_gflops", "epochs", "train_list"):
            default, comment = shown[name]
            assert " ".join(comment.split()) in text
            assert f"(default: {default!r})" in text
    with pytest.raises(SystemExit):
        cli.main(["retrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    comment = cli.notebook_parameters(ROOT / "recipes" / "retrain.ipynb")["base_learning_rate"][1]
    assert " ".join(comment.split()) in text


def test_recipes_copies_the_notebooks(tmp_path, capsys):
    assert cli.main(["recipes", str(tmp_path / "mine")]) == 0
    copied = sorted(p.name for p in (tmp_path / "mine").glob("*.ipynb"))
    assert copied == sorted(p.name for p in (ROOT / "recipes").glob("*.ipynb"))
    assert (tmp_path / "mine" / "retrain.ipynb").read_bytes() == (ROOT / "recipes" / "retrain.ipynb").read_bytes()
    with pytest.raises(FileExistsError):
        cli.copy_recipes(tmp_path / "mine")


def test_pyproject_lists_every_package_and_the_script():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "tsnet_keras").rglob("__init__.py")
    }
    assert listed == found | {"tsnet_keras.recipes.notebooks"}
    assert config["tool"]["setuptools"]["package-dir"]["tsnet_keras.recipes.notebooks"] == "recipes"
    module, function = config["project"]["scripts"]["tsnet-keras"].split(":")
    assert module == "tsnet_keras.cli" and callable(getattr(cli, function))


@pytest.mark.slow
def test_wheel_ships_the_notebooks_and_the_console_script(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("tsnet_keras-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "tsnet-keras = tsnet_keras.cli:main" in archive.read(entry_points).decode()
    shipped = sorted(os.path.basename(n) for n in names if n.startswith("tsnet_keras/recipes/notebooks/"))
    assert shipped == sorted(p.name for p in (ROOT / "recipes").glob("*.ipynb"))


def test_threads_set_tensorflows_pools_before_the_command_runs(tmp_path):
    script = (
        "import functools, sys\n"
        "from tsnet_keras import cli, recipes\n"
        "recipes.search_step = functools.wraps(recipes.search_step)(lambda *a, **k: None)\n"
        "assert cli.main(['--threads', '1', '3', 'search', '--output-dir', sys.argv[1]]) == 0\n"
        "import tensorflow as tf\n"
        "t = tf.config.threading\n"
        "print('pools', t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pools 1 3" in done.stdout


def test_threads_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--threads", "0", "2", "search", "--output-dir", str(tmp_path)])
    assert "--threads" in capsys.readouterr().err
