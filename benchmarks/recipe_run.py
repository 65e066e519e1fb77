"""Runs a recipe in this process as `tsnet-keras` does, with extra Keras callbacks.

The benchmarks that time a recipe's own run (`bench_checkpoint.py`,
`bench_epoch_start.py`, `bench_retrain_validation.py`) go through the CLI's parser, so
they get exactly its defaults (those of the command's notebook).
"""


def run_recipe(command_line, callbacks):
    """`tsnet-keras COMMAND_LINE` (a list, without the program name) with `callbacks`."""
    from tsnet_keras.cli import COMMANDS, build_parser, run

    values = vars(build_parser(command_line).parse_args(command_line))
    values.pop("threads")
    return run(COMMANDS[values.pop("command")], {**values, "callbacks": callbacks})
