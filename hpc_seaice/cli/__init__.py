"""The `hpc-seaice` command (also `python -m hpc_seaice`): the top layer of the package.

:mod:`~hpc_seaice.cli.parser` says what the command line accepts; the command modules
(:mod:`~hpc_seaice.cli.data`, :mod:`~hpc_seaice.cli.run`, :mod:`~hpc_seaice.cli.evaluate`,
:mod:`~hpc_seaice.cli.cluster`) turn parsed options into calls of library functions with typed
parameters. A command imports the library when it runs, so ``--help`` stays fast. Each returns an
exit code; :func:`~hpc_seaice.command.run_command` turns failures into exit codes (a
:class:`~hpc_seaice.errors.UserError`: one line on stderr and exit code 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from hpc_seaice.cli.cluster import run_status, run_submit
from hpc_seaice.cli.data import run_convert, run_stats, run_synth, run_verify
from hpc_seaice.cli.evaluate import run_evaluate
from hpc_seaice.cli.parser import build_parser
from hpc_seaice.cli.run import run_encode, run_sample, run_train
from hpc_seaice.command import run_command

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "data synth": run_synth,
    "data convert": run_convert,
    "data stats": run_stats,
    "data verify": run_verify,
    "train": run_train,
    "encode": run_encode,
    "sample": run_sample,
    "evaluate": run_evaluate,
    "submit": run_submit,
    "status": run_status,
}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the sub-command, return its exit code."""
    args = build_parser().parse_args(argv)
    name = args.command if args.command != "data" else f"data {args.data_command}"
    command = COMMANDS[name]
    return run_command(name, lambda: int(command(args) or 0))


__all__ = ["COMMANDS", "build_parser", "main"]
