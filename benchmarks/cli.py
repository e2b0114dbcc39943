"""The ``nondiff bench`` and ``nondiff optimize`` commands (``nondiff.cli`` gathers them).

    nondiff bench list [--runners]
    nondiff bench run --suite quick [--db nondiff-results.sqlite] [--ray | --address A]
    nondiff bench report --db nondiff-results.sqlite --out report/
    nondiff optimize --problem rastrigin --dim 10 --optimizer bipop-cmaes --budget 20000
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from nondiff.benchmarks import report, suites
from nondiff.benchmarks.store import DEFAULT_PATH, ResultStore

from nondiff import optim, problems


def _optimize(args: argparse.Namespace) -> int:
    from nondiff.benchmarks.baselines import start

    optim.registry.get(args.optimizer)  # a misspelled name fails before any work
    problem = problems.get(args.problem, dim=args.dim, instance=args.instance)
    if problem.space is not None:
        start_point, options = problem.space, {}
    else:
        start_point, sigma0 = start(problem, args.seed)
        options = {"sigma0": sigma0, "bounds": problem.bounds}
    constraints = getattr(problem, "constraints", None)  # g <= 0 feasible (e.g. knapsack)
    result = optim.minimize(
        problem, start_point, optimizer=args.optimizer, budget=args.budget,
        vectorized=problem.space is None, seed=args.seed, checkpoint=args.checkpoint,
        maximize=problem.maximize, constraints=constraints, **options,
    )
    print(f"problem     {problem.name}-{problem.dim}D instance {args.instance}")
    print(f"optimizer   {result.optimizer} (seed {args.seed})")
    if problem.f_opt is None:
        print(f"f           {result.f:.10g}")
    else:
        print(f"f           {result.f:.10g}   (f_opt = {problem.f_opt:.10g})")
    print(f"evaluations {result.evaluations} in {result.iterations} generations")
    print(f"stopped by  {result.stop}")
    if constraints is not None:
        print(f"feasible    {result.feasible} (violation {result.violation:.4g})")
    if problem.dim <= 10 or (problem.space is not None and problem.dim <= 100):
        print("x           " + np.array2string(np.asarray(result.x), precision=6))
    return 0


def _bench_list(args: argparse.Namespace) -> int:
    if args.runners:
        from nondiff.benchmarks import baselines

        for name in baselines.names():
            reason = baselines.available(name)
            print(f"{name:<30} {'' if reason is None else '(unavailable: ' + reason + ')'}")
        return 0
    for name in suites.names():
        suite = suites.get(name)
        units = len(suite.problems) * len(suite.optimizers) * len(suite.seeds)
        print(f"{name:<12} {len(suite.problems):>3} problems x {len(suite.optimizers):>2} "
              f"optimizers x {len(suite.seeds)} seeds (<= {units} units)  {suite.description}")
    return 0


def _group_skipped(lines: Sequence[str]) -> list[str]:
    """'opt on problem: reason' lines, grouped by optimizer and reason."""
    groups: dict[tuple[str, str], int] = {}
    for line in lines:
        head, reason = line.split(": ", 1)
        optimizer = head.split(" on ")[0]
        reason = "not for these problems" if " does not handle " in reason else reason
        groups[optimizer, reason] = groups.get((optimizer, reason), 0) + 1
    return [f"{opt} x{n} ({reason})" for (opt, reason), n in groups.items()]


def _bench_run(args: argparse.Namespace) -> int:
    from nondiff.benchmarks.runner import run_suite

    suite = suites.get(args.suite)
    if args.seeds is not None:
        suite = suite.with_seeds(range(args.seeds))
    if args.problems or args.optimizers:
        suite = suite.select(args.problems, args.optimizers)
    executor = "ray" if args.ray or args.address else args.executor
    summary = run_suite(suite, args.db, executor=executor, workers=args.workers,
                        address=args.address, retry_failed=args.retry_failed,
                        progress=None if args.progress else False, argv=sys.argv[1:])
    print(f"suite {summary.suite}: {summary.done} units run, {summary.skipped} already in "
          f"{args.db}, {summary.failed} failed, {summary.seconds:.0f} s (run {summary.run_id})")
    if summary.not_applicable:
        print(f"  {len(summary.not_applicable)} (optimizer, problem) pairs left out: "
              + "; ".join(_group_skipped(summary.not_applicable)))
    if not args.no_report:
        out = args.out or os.path.join("nondiff-report", suite.name)
        with ResultStore(args.db) as store:
            print(report.report_after_run(store, suite.name, out))
        print(f"plots and HTML report in {out}/ (open {os.path.join(out, 'index.html')})")
    return 1 if summary.failed else 0


def _add_bench(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="benchmark suites: list, run, report",
                                description="Compare optimizers on the same problems, seeds "
                                "and budgets; results go to SQLite, reports to a folder.")
    actions = bench.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the built-in suites (or the runner names)")
    listing.add_argument("--runners", action="store_true",
                         help="list runner names (ours:<optimizer>, pycma, scipy:de, ...)")
    listing.set_defaults(handler=_bench_list)

    run = actions.add_parser("run", help="run a suite (resumes: stored units are skipped)",
                             description="Run every (problem, optimizer, seed) unit of a suite "
                             "not yet in the database, then print the table and write plots.")
    run.add_argument("--suite", default="quick",
                     help=f"a built-in suite ({', '.join(suites.names())}) or a .py/.toml file")
    run.add_argument("--db", default=DEFAULT_PATH,
                     help="SQLite results file (default: %(default)s)")
    run.add_argument("--out", help="report folder (default: nondiff-report/<suite>)")
    run.add_argument("--executor", choices=("process", "serial"), default="process",
                     help="local process pool (default) or this process")
    run.add_argument("--ray", action="store_true", help="run units on a local Ray instance")
    run.add_argument("--address", help="run on an existing Ray cluster ('auto' or host:port)")
    run.add_argument("--workers", type=int, help="processes / Ray CPUs (default: all cores)")
    run.add_argument("--seeds", type=int, help="use seeds 0..N-1 instead of the suite's")
    run.add_argument("--problems", nargs="+", metavar="LABEL", help="only these problems")
    run.add_argument("--optimizers", nargs="+", metavar="LABEL", help="only these optimizers")
    run.add_argument("--retry-failed", action="store_true", help="run failed units again")
    run.add_argument("--no-report", action="store_true", help="skip the table and plots")
    run.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress bar")
    run.set_defaults(handler=_bench_run)

    rep = actions.add_parser("report", help="tables, plots and an HTML report from a database")
    report.add_arguments(rep)
    rep.set_defaults(handler=report.run_from_args)


def add_commands(commands: Any) -> None:
    """Add ``bench`` and ``optimize`` to the subparsers of the ``nondiff`` command."""
    _add_bench(commands)
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
