"""The `tsnet-keras` command line: the recipes without notebooks.

```bash
tsnet-keras search --step 1 --output-dir runs/step1
tsnet-keras search --step 2 --previous-dir runs/step1 --output-dir runs/step2
tsnet-keras search --step 3 --previous-dir runs/step2 --output-dir runs/step3
tsnet-keras retrain --previous-dir runs/step3 --output-dir runs/retrain
tsnet-keras evaluate --previous-dir runs/retrain --output-dir runs/evaluate
tsnet-keras recipes my_recipes/      # copies the recipe notebooks out of the package
tsnet-keras --threads 1 2 search --step 1 --output-dir runs/step1   # TensorFlow's thread pools
```

Nothing here is written twice. The options of a command are the parameters of its
recipe function (`recipes.search_step`, `recipes.retrain`, `recipes.evaluate`),
read from the function's signature; their defaults and `--help` texts are the
recipe notebook's `parameters` cell (its values and its one-line comments), so a
command run equals a papermill run of that notebook with the same `-p` values.
A parameter the notebook does not show takes the function's default and the
description in its docstring. The notebooks ship in the wheel
(`tsnet_keras/recipes/notebooks/`) and stay in `recipes/` in a checkout.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import json
import os
import re
import shutil
import sys
import tokenize
from pathlib import Path

# Parameters a command line cannot carry: Python objects and notebook-only output options.
NOT_OPTIONS = ("data", "strategy", "callbacks", "verbose", "rows", "variant_settings")
SEARCH_STEPS = {"1": 1, "2": 2, "3": 3, "one-shot": "one_shot"}
STEP_NOTEBOOKS = {
    1: "step1_sparse.ipynb",
    2: "step2_dense_fusion.ipynb",
    3: "step3_attention.ipynb",
    "one_shot": "step1_sparse.ipynb",
}


@dataclasses.dataclass(frozen=True)
class Command:
    """One recipe command: its function, its notebook and how its leading arguments are made.

    Args:
        name: the sub-command.
        function_name: attribute of `tsnet_keras.recipes`.
        notebook: file name in the recipe notebooks folder.
        positional: the function's leading parameters -> the option that fills each
            (`arch` and `model_dir` come from `--previous-dir`, as in the notebooks).
        verbose: the `verbose` value the notebook passes.
    """

    name: str
    function_name: str
    notebook: str
    positional: tuple
    verbose: object

    @property
    def function(self):
        from tsnet_keras import recipes

        return getattr(recipes, self.function_name)


COMMANDS = {
    "search": Command(
        "search", "search_step", STEP_NOTEBOOKS[1],
        (("step", "step"), ("output_dir", "output_dir"), ("previous_dir", "previous_dir")), 2,
    ),
    "retrain": Command(
        "retrain", "retrain", "retrain.ipynb", (("arch", "previous_dir"), ("output_dir", "output_dir")), 2
    ),
    "evaluate": Command(
        "evaluate", "evaluate", "evaluate.ipynb",
        (("model_dir", "previous_dir"), ("output_dir", "output_dir")), True,
    ),
}


# ------------------------------------------------------------------ one source
def notebooks_dir() -> Path:
    """The recipe notebooks: inside the installed package, else `recipes/` of the checkout."""
    package = Path(__file__).resolve().parent
    for folder in (package / "recipes" / "notebooks", package.parent / "recipes"):
        if any(folder.glob("*.ipynb")):
            return folder
    raise FileNotFoundError(
        f"no recipe notebooks in {package / 'recipes' / 'notebooks'} or {package.parent / 'recipes'}; "
        "reinstall tsnet_keras."
    )


def notebook_parameters(path) -> dict:
    """name -> (default, comment) of a notebook's cell tagged `parameters`."""
    with open(path, encoding="utf-8") as handle:
        cells = json.load(handle)["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise ValueError(f"{path}: expected one cell tagged `parameters`, found {len(tagged)}.")
    source = "".join(tagged[0]["source"])
    comments = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    parameters = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = ast.literal_eval(node.value)
            parameters[node.targets[0].id] = (value, comments.get(node.lineno, ""))
    return parameters


def docstring_arguments(function) -> dict:
    """name -> description from the `Args:` section of a Google-style docstring."""
    lines = inspect.getdoc(function).splitlines()
    descriptions, names = {}, []
    inside = False
    for line in lines:
        if line.strip() in ("Args:", "Arguments:"):
            inside = True
            continue
        if inside and line and not line.startswith(" "):
            break
        match = re.match(r"^    (\w[\w, *]*):\s*(.*)$", line) if inside else None
        if match:
            names = [n.strip().lstrip("*") for n in match.group(1).split(",")]
            for name in names:
                descriptions[name] = match.group(2)
        elif inside and line.startswith("        ") and names:
            for name in names:
                descriptions[name] += " " + line.strip()
    return descriptions


@dataclasses.dataclass(frozen=True)
class Option:
    """One command-line option: a recipe parameter with its default and help."""

    name: str
    kind: type
    default: object
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def command_options(command: Command, notebook: str | None = None) -> list:
    """The options of `command`, from its function's signature and its notebook."""
    function = command.function
    shown = notebook_parameters(notebooks_dir() / (notebook or command.notebook))
    documented = docstring_arguments(function)
    leading = dict(command.positional)
    options = []
    for name, parameter in inspect.signature(function).parameters.items():
        if name in NOT_OPTIONS or name == "step" or parameter.kind is parameter.VAR_KEYWORD:
            continue
        name = leading.get(name, name)
        default = parameter.default if parameter.default is not parameter.empty else None
        value, comment = shown.get(name, (default, ""))
        kind = _kind(parameter, default, value)
        text = comment or documented.get(parameter.name, "") or f"see tsnet_keras.recipes.{command.function_name}"
        options.append(Option(name, kind, value, text))
    return options


def _kind(parameter, default, value) -> type:
    for candidate in (default, value):
        if candidate is not None and candidate != "":
            return type(candidate)
    annotation = str(parameter.annotation)
    return bool if "bool" in annotation else int if "int" in annotation else str


# ----------------------------------------------------------------- parsing
def _add_options(parser, options) -> None:
    for option in options:
        help_text = option.help.replace("%", "%%")
        if option.kind is bool:
            parser.add_argument(
                option.flag, dest=option.name, action=argparse.BooleanOptionalAction,
                default=option.default, help=f"{help_text} (default: {option.default})",
            )
        else:
            parser.add_argument(
                option.flag, dest=option.name, type=option.kind, default=option.default,
                metavar=option.name.upper(), help=f"{help_text} (default: {option.default!r})",
            )


def _step(argv) -> object:
    """The `--step` value of a search command line (1 when absent or invalid)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--step", default="1")
    known, _ = pre.parse_known_args(argv)
    return SEARCH_STEPS.get(known.step, 1)


def build_parser(argv=()) -> argparse.ArgumentParser:
    """The `tsnet-keras` parser; the search options take the defaults of `--step`'s notebook."""
    parser = argparse.ArgumentParser(
        prog="tsnet-keras", description="Auto-TSNet recipes: search, retrain, evaluate (docs/recipes.md)."
    )
    parser.add_argument(
        "--threads", type=_positive_int, nargs=2, metavar=("INTRA", "INTER"),
        help="TensorFlow's intra-op and inter-op thread pools (default: TensorFlow's, one "
        "thread per core each); on a 2-core CPU `--threads 1 2` made a search step about a "
        "sixth faster at crop 64 and fixed training at crop 160 1.2-1.5x slower "
        "(BENCHMARKS.md 1e)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    step = _step(list(argv))
    for command in COMMANDS.values():
        notebook = STEP_NOTEBOOKS[step] if command.name == "search" else command.notebook
        function = command.function
        sub = commands.add_parser(
            command.name,
            help=inspect.getdoc(function).splitlines()[0],
            description=f"tsnet_keras.recipes.{command.function_name}, as recipes/{notebook} runs it. "
            + inspect.getdoc(function).splitlines()[0],
        )
        if command.name == "search":
            sub.add_argument(
                "--step", choices=tuple(SEARCH_STEPS), default="1",
                help="1 (sparse stream), 2 (dense stream and fusion), 3 (attention) or one-shot "
                "(every variable at once, the paper's Table 9 baseline); the defaults below are "
                "those of that step's notebook",
            )
        _add_options(sub, command_options(command, notebook))
    recipes_parser = commands.add_parser("recipes", help="copy the recipe notebooks into DIR")
    recipes_parser.add_argument("directory", metavar="DIR", help="folder to copy the notebooks into")
    recipes_parser.add_argument("--force", action="store_true", help="overwrite notebooks already in DIR")
    return parser


def _positive_int(text) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


# ----------------------------------------------------------------- running
def set_threads(threads) -> None:
    """Sets TensorFlow's (intra-op, inter-op) thread pools; None leaves TensorFlow's.
    Only before TensorFlow's first op: the pools are fixed once its runtime starts."""
    if threads is None:
        return
    import tensorflow as tf

    intra, inter = threads
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)


def run(command: Command, values: dict):
    """Calls the recipe function of `command` with parsed option `values`."""
    from tsnet_keras import recipes

    values = dict(values)
    arguments = []
    for parameter, option in command.positional:
        value = values.pop(option) if parameter != "step" else SEARCH_STEPS[values.pop("step")]
        if parameter == "arch":
            value = recipes.load_architecture(value)
        arguments.append(value)
    return command.function(*arguments, verbose=command.verbose, **values)


def copy_recipes(directory, force: bool = False) -> list:
    """Copies the recipe notebooks into `directory`; returns the written paths."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(notebooks_dir().glob("*.ipynb")):
        destination = target / source.name
        if destination.exists() and not force:
            raise FileExistsError(f"{destination} exists; pass --force to overwrite it.")
        shutil.copyfile(source, destination)
        written.append(str(destination))
    return written


def main(argv=None) -> int:
    """Entry point of the `tsnet-keras` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    arguments = vars(build_parser(argv).parse_args(argv))
    name = arguments.pop("command")
    set_threads(arguments.pop("threads"))
    if name == "recipes":
        for path in copy_recipes(arguments["directory"], arguments["force"]):
            print(path)
        return 0
    try:
        run(COMMANDS[name], arguments)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"tsnet-keras {name}: {error}", file=sys.stderr)
        return 2
    print(f"tsnet-keras {name}: outputs in {os.path.abspath(arguments['output_dir'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
