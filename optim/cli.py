"""The ``nondiff optimizers`` command: what the registry holds.

    nondiff optimizers list

Example:
    >>> import argparse
    >>> from nondiff.optim import cli
    >>> commands = argparse.ArgumentParser(prog="nondiff").add_subparsers(dest="command")
    >>> cli.add_commands(commands)
    >>> args = commands.choices["optimizers"].parse_args(["list"])
    >>> args.handler.__name__
    'list_optimizers'
"""

from __future__ import annotations

import argparse
from typing import Any

from . import registry


def list_optimizers(args: argparse.Namespace) -> int:
    """Print each registered optimizer with the first line of its docstring."""
    for name in registry.names():
        cls = registry.get(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:<16} {summary}")
    return 0


def add_commands(commands: Any) -> None:
    """Add ``optimizers`` to the subparsers of the ``nondiff`` command."""
    optimizers = commands.add_parser("optimizers", help="optimizers of the registry")
    actions = optimizers.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list optimizer names").set_defaults(handler=list_optimizers)
