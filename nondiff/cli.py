"""The ``nondiff`` command; each package contributes its own subcommands.

    nondiff --version
    nondiff optimizers list                      (nondiff.optim.cli)
    nondiff problems list [--kind continuous]    (nondiff.problems.cli)
    nondiff replay --policy best.pt              (nondiff.problems.cli)
    nondiff bench list|run|report                (nondiff.benchmarks.cli)
    nondiff optimize --problem rastrigin --optimizer bipop-cmaes --budget 20000

Every command takes ``--help``; misspelled names get the closest known ones.

Example:
    >>> from nondiff.cli import build_parser
    >>> build_parser().parse_args(["optimizers", "list"]).command
    'optimizers'
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nondiff import __version__

COMMAND_MODULES = ("nondiff.optim.cli", "nondiff.problems.cli", "nondiff.benchmarks.cli")
"""Modules with an ``add_commands(subparsers)`` function, in help order."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nondiff`` with every package's subcommands."""
    parser = argparse.ArgumentParser(
        prog="nondiff",
        description="Train what gradients cannot reach: optimizers, problems and benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"nondiff {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nondiff`` with ``argv`` (default: the process's arguments); the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:
        print(f"nondiff: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resumable = getattr(args, "handler", None).__name__ == "_bench_run" or getattr(
            args, "checkpoint", None)
        print("nondiff: interrupted" + ("; what finished is stored, run the same command "
                                         "again to resume" if resumable else ""),
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
