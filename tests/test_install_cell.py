"""Every notebook starts with the same install cell; it is a no-op where everything is
installed and installs the package and its dependencies into a clean virtual environment."""

import os
import shutil
import subprocess
import sys
import venv

import nbformat
import pytest

from tests.scripts import load_script
from tests.test_notebooks import ALL_NOTEBOOKS, ROOT, relative


def load_install_cell_script():
    return load_script("scripts/install_cell.py")


INSTALL = load_install_cell_script()


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=relative)
def test_install_cell_follows_the_title(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[1].cell_type == "code" and nb.cells[1].source == INSTALL.INSTALL_CELL, (
        f"{relative(path)}: run `python scripts/install_cell.py`."
    )


def test_install_cell_changes_nothing_where_everything_is_installed(tmp_path):
    result = subprocess.run([sys.executable, "-c", INSTALL.INSTALL_CELL], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    assert "installing" not in result.stdout
    namespace = {}
    exec(INSTALL.INSTALL_CELL, namespace)
    assert namespace["missing_requirements"]() == []
    assert namespace["missing_requirements"]("no-such-distribution-0") == ["no-such-distribution-0"]


def test_install_cell_without_a_spec_or_checkout_says_what_to_do(tmp_path):
    code = INSTALL.INSTALL_CELL.replace('missing_requirements()\n', 'missing_requirements("no-such-distribution-0")\n', 1)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "TSNET_KERAS_SOURCE": ""})
    assert result.returncode != 0 and "TSNET_KERAS_PIP" in result.stderr


@pytest.mark.slow  # downloads TensorFlow and the other dependencies: minutes
def test_install_cell_installs_into_a_clean_virtual_environment(tmp_path):
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, checkout / name)
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = str(environment / "bin" / "python")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    first = subprocess.run([python, "-c", INSTALL.INSTALL_CELL], cwd=checkout / "recipes", env=clean,
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "installing -e" in first.stdout
    check = "import av, keras, papermill, tensorflow, tsnet_keras; print(tsnet_keras.__file__)"
    imported = subprocess.run([python, "-c", check], cwd=tmp_path, env=clean, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert str(checkout) in imported.stdout
    again = subprocess.run([python, "-c", INSTALL.INSTALL_CELL], cwd=checkout, env=clean,
                           capture_output=True, text=True, check=True)
    assert "installing" not in again.stdout
