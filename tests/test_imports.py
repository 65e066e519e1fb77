"""No import circles among the modules of `tsnet_keras`.

The graph is read from the source with `ast`, without importing anything: an edge
A -> B for every `import` / `from ... import` in A that names module B of the
package, at module level or inside a function (a deferred import that closes a
circle is still a circle in the design, it only moves the failure to run time).
`from pkg import name` counts as an edge to `pkg.name` when that is a module, else
to `pkg`. The implicit import of a module's parent package is not an edge.
"""

import ast
import pathlib

import pytest

import tsnet_keras

PACKAGE_DIR = pathlib.Path(tsnet_keras.__file__).parent


def package_modules(package_dir: pathlib.Path = PACKAGE_DIR) -> dict:
    """Dotted module name -> source path, for every `.py` file under `package_dir`."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _absolute_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a (possibly relative) `from ... import` reads from."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imported_modules(module: str, path: pathlib.Path, modules: dict) -> set:
    """The modules of `modules` that `module` (source at `path`) imports anywhere."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute_base(node, module, path.name == "__init__.py")
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in modules:
                    found.add(target)
                elif base in modules:
                    found.add(base)
    found.discard(module)
    return found


def import_graph(modules: dict) -> dict:
    return {module: imported_modules(module, path, modules) for module, path in modules.items()}


def find_cycle(graph: dict) -> list | None:
    """One import circle as [a, b, ..., a], or None (depth-first search, iterative)."""
    state = {}  # module -> "open" while on the current path, "done" after
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = "open"
        while stack:
            target = next(stack[-1], None)
            if target is None:
                state[path.pop()] = "done"
                stack.pop()
            elif state.get(target) == "open":
                return path[path.index(target):] + [target]
            elif target not in state:
                state[target] = "open"
                path.append(target)
                stack.append(iter(sorted(graph[target])))
    return None


def test_no_import_circles():
    graph = import_graph(package_modules())
    assert "tsnet_keras.recipes.train" in graph, "the walk found no recipes modules"
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    "sources, expected",
    [
        ({"a": "import pkg.b\n", "b": "from pkg import a\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
        ({"a": "def f():\n    from pkg.b import g\n", "b": "from . import a\n"},
         ["pkg.a", "pkg.b", "pkg.a"]),
        ({"a": "import pkg.b\n", "b": "import os\n"}, None),
    ],
    ids=["module-level", "deferred-and-relative", "no-circle"],
)
def test_find_cycle_sees_circles(tmp_path, sources, expected):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in sources.items():
        (package / f"{name}.py").write_text(source)
    assert find_cycle(import_graph(package_modules(package))) == expected


def test_recipes_export_the_steps_not_the_helpers():
    from tsnet_keras import recipes

    steps = {"RecipeData", "resolve_data", "search_step", "retrain", "evaluate"}
    assert steps <= set(recipes.__all__)
    assert all(hasattr(recipes, name) for name in recipes.__all__)
    helpers = {"check_int", "check_number", "read_json", "write_metrics", "choose_strategy"}
    assert not helpers & set(dir(recipes)), "helpers belong to their modules"
    from tsnet_keras.recipes.common import check_int, read_json  # noqa: F401  (still importable)


@pytest.mark.parametrize("old, new", [
    ("tsnet_keras.search.supernet", "tsnet_keras.models.supernet"),
    ("tsnet_keras.search.layer_tables", "tsnet_keras.space.layer_tables"),
    ("tsnet_keras.presets", "tsnet_keras.space.presets"),
    ("tsnet_keras.spaces", "tsnet_keras.space.named_spaces"),
    ("tsnet_keras.space.specs", "tsnet_keras.space.search_space"),
])
def test_old_module_paths_are_the_moved_modules(old, new):
    """Modules that moved keep their old import path, as the same module object (so
    monkeypatching either path patches both)."""
    import importlib

    assert importlib.import_module(old) is importlib.import_module(new)
    package, _, name = old.rpartition(".")
    assert getattr(importlib.import_module(package), name) is importlib.import_module(new)
