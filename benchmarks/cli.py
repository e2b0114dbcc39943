"""The ``nondiff`` command.

    nondiff compare [--preset quick|full] [--seeds N]
    nondiff optimize --problem rastrigin --dim 10 --optimizer bipop-cmaes --budget 20000
    nondiff problems list [--kind continuous]
    nondiff optimizers list
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

import optim
import problems
from benchmarks import quality


def _optimize(args: argparse.Namespace) -> int:
    from benchmarks.baselines import start

    problem = problems.get(args.problem, dim=args.dim, instance=args.instance)
    x0, sigma0 = start(problem, args.seed)
    result = optim.minimize(
        problem, x0, optimizer=args.optimizer, budget=args.budget, sigma0=sigma0,
        bounds=problem.bounds, vectorized=True, seed=args.seed, checkpoint=args.checkpoint,
    )
    precision = result.f - (problem.f_opt or 0.0)
    print(f"problem     {problem.name}-{problem.dim}D instance {args.instance}")
    print(f"optimizer   {result.optimizer} (seed {args.seed})")
    print(f"f           {result.f:.10g}   (f - f_opt = {precision:.3g})")
    print(f"evaluations {result.evaluations} in {result.iterations} generations")
    print(f"stopped by  {result.stop}")
    if args.dim <= 10:
        print("x           " + np.array2string(np.asarray(result.x), precision=6))
    return 0


def _compare(args: argparse.Namespace) -> int:
    argv = ["--preset", args.preset] + (["--seeds", str(args.seeds)] if args.seeds else [])
    quality.main(argv)
    return 0


def _list_problems(args: argparse.Namespace) -> int:
    for name in problems.names(args.kind):
        print(name)
    return 0


def _list_optimizers(args: argparse.Namespace) -> int:
    for name in optim.registry.names():
        cls = optim.registry.get(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:<14} {summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nondiff",
        description="Train what gradients cannot reach: optimizers, problems and benchmarks.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compare = commands.add_parser(
        "compare", help="compare our optimizers with raw pycma and evotorch; print a table")
    compare.add_argument("--preset", choices=sorted(quality.PRESETS), default="quick")
    compare.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    compare.set_defaults(handler=_compare)

    optimize = commands.add_parser("optimize", help="one run of one optimizer on one problem")
    optimize.add_argument("--problem", required=True, help="see `nondiff problems list`")
    optimize.add_argument("--dim", type=int, default=10)
    optimize.add_argument("--instance", type=int, default=1,
                          help="0: canonical; >= 1: seeded shifted/rotated instance")
    optimize.add_argument("--optimizer", default="cmaes", help="see `nondiff optimizers list`")
    optimize.add_argument("--budget", type=int, default=10_000, help="evaluations")
    optimize.add_argument("--seed", type=int, default=0)
    optimize.add_argument("--checkpoint", help="state file; an interrupted run resumes from it")
    optimize.set_defaults(handler=_optimize)

    problems_cmd = commands.add_parser("problems", help="problems of the registry")
    problems_sub = problems_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = problems_sub.add_parser("list", help="list problem names")
    listing.add_argument("--kind", choices=problems.KINDS)
    listing.set_defaults(handler=_list_problems)

    optimizers_cmd = commands.add_parser("optimizers", help="optimizers of the registry")
    optimizers_sub = optimizers_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    optimizers_sub.add_parser("list", help="list optimizer names").set_defaults(
        handler=_list_optimizers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:
        print(f"nondiff: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
