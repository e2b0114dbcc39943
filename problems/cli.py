"""The ``nondiff problems`` and ``nondiff replay`` commands.

    nondiff problems list [--kind continuous]
    nondiff replay --policy best.pt [--episodes 10] [--render out.gif]

Example:
    >>> import argparse
    >>> from nondiff.problems import cli
    >>> commands = argparse.ArgumentParser(prog="nondiff").add_subparsers(dest="command")
    >>> cli.add_commands(commands)
    >>> commands.choices["problems"].parse_args(["list", "--kind", "discrete"]).kind
    'discrete'
"""

from __future__ import annotations

import argparse
from typing import Any

from nondiff.problems import replay

from nondiff import problems


def list_problems(args: argparse.Namespace) -> int:
    """Print the registered problem names (of one kind with ``--kind``)."""
    for name in problems.names(args.kind):
        print(name)
    return 0


def add_commands(commands: Any) -> None:
    """Add ``problems`` and ``replay`` to the subparsers of the ``nondiff`` command."""
    problems_cmd = commands.add_parser("problems", help="problems of the registry")
    actions = problems_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list problem names")
    listing.add_argument("--kind", choices=problems.KINDS)
    listing.set_defaults(handler=list_problems)
    replay.add_parser(commands)
