"""Strips outputs and execution counts from notebooks, in place, before committing.

Usage (from the repository root):

    python scripts/strip_notebooks.py                 # notebooks/ and recipes/
    python scripts/strip_notebooks.py path/to/a.ipynb other_dir/
    python scripts/strip_notebooks.py --check         # exit 1 if any is not stripped

Removes every code cell's outputs and execution count, and the run-time
metadata papermill and Jupyter add (cell "execution", "papermill", "collapsed",
"scrolled"; notebook "papermill", "widgets"). Cell tags (the `parameters` tag)
and the kernelspec are kept.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import nbformat

DEFAULT_FOLDERS = ("notebooks", "recipes")
CELL_METADATA = ("execution", "papermill", "collapsed", "scrolled", "ExecuteTime")
NOTEBOOK_METADATA = ("papermill", "widgets")


def strip(nb) -> bool:
    """Strips `nb` in place; returns True if anything changed."""
    changed = False
    for key in NOTEBOOK_METADATA:
        changed |= nb.metadata.pop(key, None) is not None
    for cell in nb.cells:
        for key in CELL_METADATA:
            changed |= cell.metadata.pop(key, None) is not None
        if cell.cell_type == "code":
            if cell.get("outputs"):
                cell.outputs = []
                changed = True
            if cell.get("execution_count") is not None:
                cell.execution_count = None
                changed = True
    return changed


def notebook_paths(arguments, root: pathlib.Path) -> list:
    targets = [pathlib.Path(a) for a in arguments] or [root / f for f in DEFAULT_FOLDERS]
    paths = []
    for target in targets:
        if target.is_dir():
            paths += sorted(
                p for p in target.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
            )
        elif target.suffix == ".ipynb" and target.exists():
            paths.append(target)
        elif not target.exists() and arguments:
            raise SystemExit(f"strip_notebooks: {target} does not exist.")
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="notebooks or folders (default: notebooks/ recipes/)")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 if any needs stripping")
    args = parser.parse_args(argv)
    root = pathlib.Path(__file__).resolve().parent.parent
    dirty = []
    for path in notebook_paths(args.paths, root):
        nb = nbformat.read(path, as_version=4)
        if strip(nb):
            dirty.append(path)
            if not args.check:
                nbformat.write(nb, path)
    verb = "needs stripping" if args.check else "stripped"
    for path in dirty:
        print(f"{verb}: {path}")
    return 1 if (args.check and dirty) else 0


if __name__ == "__main__":
    sys.exit(main())
