"""Function lengths of the package, the style guide's "a function fits on a screen".

For every function and method under `tsnet_keras/` it counts the lines of the
body after the docstring (first to last statement, blank and comment lines
inside included) and the total lines (signature and docstring included), and
prints those whose body is longer than the limit, longest first, then both
lengths of the public entry points that have long signatures.

Run:
    python benchmarks/function_lengths.py          # bodies over 40 lines
    python benchmarks/function_lengths.py --limit 30
"""

from __future__ import annotations

import argparse
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tsnet_keras"
# Entry points whose total length is mostly their documented arguments.
ENTRY_POINTS = {
    "data/dataset.py": "video_dataset",
    "search/progressive.py": "run_search_step",
    "recipes/search.py": "search_step",
    "recipes/train.py": "retrain",
    "recipes/evaluate.py": "evaluate",
}


def body_lines(function: ast.FunctionDef) -> int:
    """Lines from the first statement after the docstring to the last one."""
    body = function.body
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def function_lengths(package=PACKAGE) -> list:
    """`(body lines, total lines, file, line, qualified name)` of every function."""
    rows = []
    for path in sorted(pathlib.Path(package).rglob("*.py")):
        relative = path.relative_to(package).as_posix()

        def visit(node, prefix):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = prefix + child.name
                    total = child.end_lineno - child.lineno + 1
                    rows.append((body_lines(child), total, relative, child.lineno, name))
                    visit(child, name + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, prefix + child.name + ".")

        visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=40, help="longest body not listed")
    limit = parser.parse_args().limit
    rows = function_lengths()
    long = sorted((row for row in rows if row[0] > limit), reverse=True)
    print(f"{len(long)} of {len(rows)} function bodies longer than {limit} lines")
    for body, total, path, line, name in long:
        print(f"{body:5d} {total:6d}  {path}:{line} {name}")
    print("\nentry points (body, total lines):")
    for body, total, path, line, name in rows:
        if ENTRY_POINTS.get(path) == name:
            print(f"{body:5d} {total:6d}  {path}:{line} {name}")


if __name__ == "__main__":
    main()
