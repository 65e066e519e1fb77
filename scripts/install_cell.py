"""The install cell every notebook starts with (right after its title), kept in one place.

    python scripts/install_cell.py           # writes INSTALL_CELL into every notebook
    python scripts/install_cell.py --check   # exit 1 when a notebook's cell differs

The cell installs tsnet_keras and its dependencies when either is missing: in a
fresh Colab runtime from the pip spec at its top (or from a clone it finds), in a
checkout from that checkout (`pip install -e`), so the dependencies are installed
in both cases. Where everything is installed it changes nothing.
"""

import argparse
import pathlib
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDERS = ("notebooks", "recipes")
MARKER = "# Install tsnet_keras"

INSTALL_CELL = '''\
# Install tsnet_keras and its dependencies (Colab, a fresh Python or a checkout). Nothing happens
# when both are installed. TSNET_KERAS_PIP: what pip installs, e.g. "git+https://<host>/<owner>/tsnet_keras.git"
# or "tsnet_keras==0.1.0"; "" installs the checkout this notebook runs in (after `!git clone` and `%cd`).
TSNET_KERAS_PIP = ""

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from importlib import metadata


def missing_requirements(name="tsnet_keras"):
    """`name` and those of its requirements (extras aside) that have no installed distribution."""
    try:
        requires = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return [name]
    if importlib.util.find_spec(name) is None:  # installed once, its folder since moved
        return [name]
    missing = []
    for requirement in requires:
        if "extra ==" not in requirement:
            try:
                metadata.version(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
            except metadata.PackageNotFoundError:
                missing.append(requirement)
    return missing


def checkout():
    for folder in (os.getcwd(), os.path.dirname(os.getcwd())):
        if os.path.isfile(os.path.join(folder, "pyproject.toml")) and os.path.isdir(os.path.join(folder, "tsnet_keras")):
            return folder
    return None


missing = missing_requirements()
if missing:
    spec = TSNET_KERAS_PIP or os.environ.get("TSNET_KERAS_SOURCE", "")
    command = [spec] if spec else ["-e", checkout()] if checkout() else None
    if command is None:
        raise RuntimeError("tsnet_keras is not installed: set TSNET_KERAS_PIP above to a pip spec "
                           "(git+<repository URL>), or `!git clone` the repository and `%cd` into it.")
    print(f"installing {' '.join(command)} (missing: {', '.join(missing)})")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *command], check=True)
    importlib.invalidate_caches()
'''


def notebooks():
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts)


def install_cell_index(nb) -> int | None:
    """Index of the notebook's install cell (a code cell starting with MARKER or the old
    Colab cell), or None."""
    for index, cell in enumerate(nb.cells[:3]):
        if cell.cell_type == "code" and (
            cell.source.startswith(MARKER) or cell.source.startswith("# Colab (or any Python")
        ):
            return index
    return None


def sync(path, check: bool) -> bool:
    """Puts INSTALL_CELL right after the title of `path`; returns True when it changed."""
    nb = nbformat.read(path, as_version=4)
    index = install_cell_index(nb)
    if index is not None and nb.cells[index].source == INSTALL_CELL and index == 1:
        return False
    if check:
        return True
    cell = nbformat.v4.new_code_cell(INSTALL_CELL)
    cell.pop("id", None)
    if index is None:
        nb.cells.insert(1, cell)
    else:
        nb.cells[index].source = INSTALL_CELL
    nbformat.write(nb, path)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report notebooks that differ")
    args = parser.parse_args(argv)
    changed = [path for path in notebooks() if sync(path, args.check)]
    for path in changed:
        print(("differs: " if args.check else "updated: ") + str(path.relative_to(ROOT)))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
