"""Reports of stored benchmark results: ``nondiff bench report`` and its parts.

One folder per report, as COCO's post-processing writes (Hansen et al., "COCO: A
platform for comparing continuous optimizers in a black-box setting", Optimization
Methods and Software 36(1), 2021): ``index.html`` with the summary tables, plots and
run metadata, the PNG plots, ``summary.md`` (and ``compare.md`` for a comparison).
The parts, re-exported here:

- :mod:`nondiff.benchmarks.report_stats`: :func:`summarize` (per problem and optimizer: final
  precision with quartiles, success rate, evaluations to target, COCO's ERT, time),
  :func:`format_table`, :func:`format_markdown`, :func:`compare`;
- :mod:`nondiff.benchmarks.report_plots`: :func:`plot_convergence`, :func:`plot_ecdf`;
- :mod:`nondiff.benchmarks.report_html`: :func:`write_html`.

This module selects units from a :class:`nondiff.benchmarks.store.ResultStore` (a suite, a
run id, a git commit prefix) and holds the command's options::

    nondiff bench report --db nondiff-results.sqlite --out report/ [--suite quick]
        [--compare-db OTHER.sqlite | --compare-suite S | --compare-commit A B
         | --compare-runs RUN_A RUN_B] [--format text|markdown]

In a comparison, the HTML report and plots show both sides, the optimizers labelled
``name [A]`` and ``name [B]``.

Example:
    >>> import os, tempfile
    >>> from nondiff.benchmarks.store import ResultStore
    >>> from nondiff.benchmarks.report import select_units, summarize
    >>> store = ResultStore(os.path.join(tempfile.mkdtemp(), "r.sqlite"))
    >>> store.add_unit({"suite": "quick", "problem": "sphere-2d-i1", "optimizer": "random",
    ...                 "seed": 0, "status": "done", "precision": 0.5, "evaluations": 20,
    ...                 "trace": [[20, 0.5]], "git_commit": "1a2b3c"})
    True
    >>> [r["precision_median"] for r in summarize(select_units(store, commit="1a2"))]
    [0.5]
    >>> select_units(store, "quik")
    Traceback (most recent call last):
    ...
    ValueError: unknown suite 'quik'; did you mean 'quick'? Known: quick
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from nondiff.benchmarks.report_html import write_html
from nondiff.benchmarks.report_plots import plot_convergence, plot_ecdf
from nondiff.benchmarks.report_stats import (
    Unit,
    compare,
    compare_rows,
    evaluations_to,
    format_markdown,
    format_table,
    summarize,
)

__all__ = [
    "add_arguments", "compare", "compare_rows", "evaluations_to", "format_markdown",
    "format_table", "plot_convergence", "plot_ecdf", "report_after_run", "run_from_args",
    "select_units", "summarize", "write_html",
]  # fmt: skip


# -- selecting units -----------------------------------------------------------------
def _open(path: str | os.PathLike[str]):
    from nondiff.benchmarks.store import ResultStore

    if not Path(path).is_file():
        raise ValueError(f"no results database at {os.fspath(path)!r}; run `nondiff bench run "
                         "--suite quick` first or pass --db PATH of an existing one")
    return ResultStore(path)


def select_units(store, suite: str | None = None, *, run_id: str | None = None,
                 commit: str | None = None) -> list[dict[str, Any]]:
    """Units of ``store``, optionally of one suite, run id or git commit (a prefix).

    Raises:
        ValueError: an empty database, an unknown suite or run id (with the closest
            names), or a commit prefix that matches no or several commits.
    """
    from nondiff.optim.registry import unknown_name_error

    suites = store.suites()
    if not suites:
        raise ValueError(f"{store.path} holds no results yet; run `nondiff bench run --suite "
                         "quick --db ...` to fill it")
    if suite is not None and suite not in suites:
        raise unknown_name_error("suite", suite, suites)
    units = store.units(suite)
    if run_id is not None:
        known = sorted({u["run_id"] for u in units if u.get("run_id")})
        matching = [r for r in known if r.startswith(run_id)]
        if len(matching) != 1:
            raise (unknown_name_error("run id", run_id, known) if not matching else
                   ValueError(f"run id {run_id!r} is ambiguous: {matching}"))
        units = [u for u in units if u.get("run_id") == matching[0]]
    if commit is not None:
        known = sorted({u["git_commit"] for u in units if u.get("git_commit")})
        matching = [commit] if commit in known else [c for c in known if c.startswith(commit)]
        if len(matching) != 1:
            what = "no" if not matching else "several"
            raise ValueError(f"commit {commit!r} matches {what} stored commits "
                             f"{matching or known}; pass a longer or another prefix")
        units = [u for u in units if u.get("git_commit") == matching[0]]
    return units


# -- CLI -----------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nondiff bench report`` (see :func:`run_from_args`)."""
    from nondiff.benchmarks.store import DEFAULT_PATH

    parser.add_argument("--db", default=DEFAULT_PATH, metavar="PATH",
                        help=f"results database (SQLite; default: {DEFAULT_PATH})")
    parser.add_argument("--out", default="nondiff-report", metavar="DIR",
                        help="folder for index.html, the PNG plots and summary.md "
                             "(default: nondiff-report)")
    parser.add_argument("--suite", help="report one suite (default: every suite in --db)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--compare-db", metavar="PATH",
                       help="compare with the same suite(s) in another database")
    group.add_argument("--compare-suite", metavar="SUITE",
                       help="compare --suite with another suite of the same database")
    group.add_argument("--compare-commit", nargs=2, metavar=("A", "B"),
                       help="compare the units of two git commits (prefixes) in --db")
    group.add_argument("--compare-runs", nargs=2, metavar=("RUN_A", "RUN_B"),
                       help="compare the units of two runner invocations (run ids)")
    parser.add_argument("--format", choices=("text", "markdown"), default="text",
                        help="format of the printed table")


def _both_sides(units_a: list[Unit], units_b: list[Unit], label_a: str, label_b: str
                ) -> list[dict[str, Any]]:
    """Both result sets in one report: optimizers labelled ``name [A]``, ``name [B]``;
    two single suites of different names are shown as one, ``A-suite vs B-suite``."""
    suites_a, suites_b = {u["suite"] for u in units_a}, {u["suite"] for u in units_b}
    joint = None
    if len(suites_a) == len(suites_b) == 1 and suites_a != suites_b:
        joint = f"{next(iter(suites_a))} vs {next(iter(suites_b))}"
    return [{**u, "optimizer": f"{u['optimizer']} [{label}]", "suite": joint or u["suite"]}
            for units, label in ((units_a, label_a), (units_b, label_b)) for u in units]


def run_from_args(args: argparse.Namespace) -> int:
    """``nondiff bench report``: print the table (or comparison), write plots + HTML."""
    comparison = None
    with _open(args.db) as store:
        units = select_units(store, args.suite)
        runs = store.runs(args.suite)
        pair = None
        if getattr(args, "compare_db", None):
            with _open(args.compare_db) as other:
                pair = (units, select_units(other, args.suite),
                        Path(args.db).name, Path(args.compare_db).name)
                runs += other.runs(args.suite)
        elif getattr(args, "compare_suite", None):
            if not args.suite:
                raise ValueError(f"--compare-suite {args.compare_suite} needs --suite: the "
                                 "suite to compare it with")
            pair = (units, select_units(store, args.compare_suite), args.suite,
                    args.compare_suite)
            runs += store.runs(args.compare_suite)
        elif getattr(args, "compare_commit", None):
            a, b = args.compare_commit
            pair = (select_units(store, args.suite, commit=a),
                    select_units(store, args.suite, commit=b), a[:10], b[:10])
        elif getattr(args, "compare_runs", None):
            a, b = args.compare_runs
            pair = (select_units(store, args.suite, run_id=a),
                    select_units(store, args.suite, run_id=b), a, b)
    out = Path(args.out)
    if pair is not None:
        units_a, units_b, label_a, label_b = pair
        if label_a == label_b:
            label_a, label_b = f"A:{label_a}", f"B:{label_b}"
        text = compare(units_a, units_b, label_a, label_b,
                       fmt="markdown" if args.format == "markdown" else "text")
        comparison = (label_a, label_b, compare_rows(units_a, units_b))
        units = _both_sides(units_a, units_b, label_a, label_b)
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(compare(units_a, units_b, label_a, label_b) + "\n")
    else:
        rows = summarize(units)
        text = format_markdown(rows) if args.format == "markdown" else format_table(rows)
    suites = args.suite or ", ".join(sorted({u["suite"] for u in units}))
    title = f"nondiff benchmark report: {suites}"
    index = write_html(units, out, runs=runs, title=title, comparison=comparison)
    print(text)
    print(f"\nreport: {index}")
    return 0


def report_after_run(store, suite: str, out_dir: str | os.PathLike[str]) -> str:
    """The end of ``nondiff bench run``: write the plots and HTML report of ``suite``
    into ``out_dir`` and return the terminal table (with the report's path)."""
    units = store.units(suite)
    if not units:
        return f"suite {suite!r}: no results stored"
    index = write_html(units, out_dir, runs=store.runs(suite),
                       title=f"nondiff benchmark report: {suite}")
    return f"{format_table(summarize(units))}\n\nreport: {index}"
