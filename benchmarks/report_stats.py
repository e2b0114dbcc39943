"""Statistics and tables of stored benchmark results: summaries and comparisons.

A *unit* is one row of :class:`nondiff.benchmarks.store.ResultStore` (one problem, optimizer
and seed). Units are summarized per (suite, problem, optimizer) in the fixed-target
view of COCO (Hansen, Auger, Brockhoff, Tušar, Tušar, "COCO: Performance Assessment",
arXiv:1605.03560, 2016): the *runtime* of a run to a target precision is the number
of evaluations until best f - f_opt <= target, and runs are aggregated by the
expected (average) runtime of Auger & Hansen (CEC 2005), also COCO's aRT::

    ERT(target) = (sum over runs of evaluations, to the target if reached,
                   else all evaluations of the run) / (number of runs that reached it)   (1)

which is infinite when no run succeeded. Tables also give the median and quartiles of
the final precision, the success rate, the median runtime of the successful runs and
the median wall time. Statistics are over completed (``done``) units; units that
raised (``failed``) are counted in their own column and listed with their traceback
in the HTML report. Problems whose optimum is unknown (``f_opt_known`` False) store
the best loss itself as ``precision``: they have no success rate or ERT and rank by
median final loss. Within a problem, optimizers rank by success rate, then ERT, then
median final precision, then median time.

Example:
    >>> from nondiff.benchmarks.report_stats import format_markdown, summarize
    >>> unit = {"suite": "s", "problem": "sphere-2d-i1", "problem_name": "sphere", "dim": 2,
    ...         "optimizer": "random", "seed": 0, "status": "done", "evaluations": 40,
    ...         "precision": 0.5, "seconds": 0.01, "f_opt_known": True,
    ...         "trace": [[20, 2.0], [40, 0.5]], "targets": {"1.0": 40}}
    >>> rows = summarize([unit, {**unit, "seed": 1, "trace": [[20, 3.0], [40, 2.0]],
    ...                          "precision": 2.0, "targets": {"1.0": None}}])
    >>> rows[0]["target"], rows[0]["success_rate"], rows[0]["ert"]  # (40 + 40) / 1
    (1.0, 0.5, 80.0)
    >>> print(format_markdown(rows).splitlines()[2])
    | sphere-2d-i1 | **random** | 2 | 0 | 1.25 | [0.875, 1.62] | 1/2 | 40 | 80 | 10 ms |
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_TARGET = 1e-8
"""The success target when neither the caller nor the units name one."""

Unit = Mapping[str, Any]

# -- per-unit quantities -------------------------------------------------------------
def known_optimum(unit: Unit) -> bool:
    """Whether the unit's precision is f - f_opt (True unless stored as False)."""
    return unit.get("f_opt_known") is not False


def stored_targets(units: Iterable[Unit]) -> list[float]:
    """The target precisions recorded in the units, finest last."""
    found = {float(key) for unit in units for key in (unit.get("targets") or {})}
    return sorted(found, reverse=True)


def compact_trace(trace: Any) -> np.ndarray:
    """A best-so-far trace as a float64 ``(k, 2)`` array of its improvements only (and
    its last point): the same step function, smaller (a runner may record every
    evaluation)."""
    if isinstance(trace, np.ndarray):
        array = trace.astype(np.float64, copy=False).reshape(-1, 2)
    else:
        rows = list(trace or ())
        flat = np.fromiter(itertools.chain.from_iterable(rows), np.float64, 2 * len(rows))
        array = flat.reshape(-1, 2)
    if len(array) <= 2:
        return array
    best = np.minimum.accumulate(array[:, 1])
    keep = np.ones(len(array), dtype=bool)
    keep[1:-1] = best[1:-1] < best[:-2]
    return np.column_stack([array[keep, 0], best[keep]])


def prepare(units: Iterable[Unit]) -> list[dict[str, Any]]:
    """Shallow copies of ``units`` with compact array traces (:func:`compact_trace`),
    so that every table and plot of a report converts each trace once."""
    return [{**u, "trace": compact_trace(u.get("trace"))} for u in units]


def evaluations_to(unit: Unit, target: float) -> float:
    """Evaluations until the unit's precision reached ``target`` (``inf`` if never).

    The runner's recorded hit is used when it recorded this target, else the first
    trace point at or below it (the trace is best-so-far, so monotone).
    """
    return float(hitting_times(unit, [target])[0])


def hitting_times(unit: Unit, targets: Sequence[float]) -> np.ndarray:
    """:func:`evaluations_to` for many targets at once (one binary search per target
    in the trace, which may hold one point per evaluation)."""
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    trace = compact_trace(unit.get("trace"))
    out = np.full(targets.shape, np.inf)
    if trace.size:
        best = np.minimum.accumulate(trace[:, 1])  # kept: a trace of up to 2 points
        # first index with best <= t: -best is non-decreasing
        index = np.searchsorted(-best, -targets, side="left")
        reached = index < len(best)
        out[reached] = trace[index[reached], 0]
    for key, hit in (unit.get("targets") or {}).items():
        same = np.isclose(targets, float(key), rtol=1e-9, atol=0.0)
        out[same] = np.inf if hit is None else float(hit)
    return out


def _quartiles(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    q1, q2, q3 = np.percentile(np.asarray(values, dtype=np.float64), [25, 50, 75])
    return float(q1), float(q2), float(q3)


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if values else None


# -- summary -------------------------------------------------------------------------
def _group(units: Iterable[Unit], key: Sequence[str]) -> dict[tuple, list[Unit]]:
    groups: dict[tuple, list[Unit]] = {}
    for unit in units:
        groups.setdefault(tuple(unit.get(k) for k in key), []).append(unit)
    return groups


def _problem_order(row: Mapping[str, Any]) -> tuple:
    return (str(row["suite"]), row.get("dim") or 0, str(row.get("problem_name") or ""),
            str(row["problem"]))


def rank_key(row: Mapping[str, Any]) -> tuple:
    """Sort key of a summary row within its problem: best first (module docstring)."""
    if not row["runs"]:
        return (1, 0.0, math.inf, math.inf, math.inf, row["optimizer"])
    def value(key: str) -> float:
        return math.inf if row[key] is None else row[key]

    return (0, -(row["success_rate"] or 0.0), value("ert"), value("precision_median"),
            value("seconds_median"), row["optimizer"])


def summarize(units: Iterable[Unit], targets: Sequence[float] | None = None
              ) -> list[dict[str, Any]]:
    """One row per (suite, problem, optimizer), grouped by problem, best first.

    Args:
        units: rows of ``ResultStore.units()`` (or dicts with the same keys).
        targets: target precisions; success is measured at the finest (smallest).
            Default: the targets recorded in each problem's units, else 1e-8.

    Returns:
        Dicts with ``suite, problem, problem_name, dim, optimizer, budget, runs`` (done),
        ``failures``, ``f_opt_known``, ``precision_q1/median/q3``, ``target``,
        ``successes``, ``success_rate``, ``evals_median`` (of successful runs),
        ``ert`` (Eq. 1; ``inf`` without success), ``evaluations_median``,
        ``seconds_median`` and ``rank`` (1 = best of its problem). Statistics that
        do not apply (no completed run, unknown optimum) are None.

    Raises:
        ValueError: a target that is not a positive number.
    """
    units = prepare(units)
    if targets is not None:
        targets = [float(t) for t in targets]
        if not targets or any(not (t > 0 and math.isfinite(t)) for t in targets):
            raise ValueError(f"targets must be positive precisions, got {targets}")
    rows = []
    problems = _group(units, ("suite", "problem"))
    for (suite, problem), members in problems.items():
        finest = min(targets or stored_targets(members) or [DEFAULT_TARGET])
        known = all(known_optimum(u) for u in members if u.get("status", "done") == "done")
        for (optimizer,), group in _group(members, ("optimizer",)).items():
            rows.append(_summary_row(suite, problem, optimizer, group, finest, known))
    rows.sort(key=lambda r: (_problem_order(r), rank_key(r)))
    rank, previous = 0, None
    for row in rows:
        rank = 1 if (row["suite"], row["problem"]) != previous else rank + 1
        row["rank"], previous = rank, (row["suite"], row["problem"])
    return rows


def _summary_row(suite: str, problem: str, optimizer: str, group: list[Unit],
                 target: float, known: bool) -> dict[str, Any]:
    done = [u for u in group if u.get("status", "done") == "done"]
    first = group[0]
    q1, median, q3 = _quartiles([float(u["precision"]) for u in done
                                 if u.get("precision") is not None])
    row: dict[str, Any] = {
        "suite": suite, "problem": problem, "problem_name": first.get("problem_name"),
        "dim": first.get("dim"), "optimizer": optimizer, "budget": first.get("budget"),
        "runs": len(done), "failures": len(group) - len(done), "f_opt_known": known,
        "precision_q1": q1, "precision_median": median, "precision_q3": q3,
        "target": target, "successes": None, "success_rate": None, "evals_median": None,
        "ert": None, "evaluations_median": _median([u["evaluations"] for u in done
                                                    if u.get("evaluations") is not None]),
        "seconds_median": _median([u["seconds"] for u in done
                                   if u.get("seconds") is not None]),
    }
    if known and done:
        hits = [evaluations_to(u, target) for u in done]
        reached = [h for h in hits if math.isfinite(h)]
        spent = sum(h if math.isfinite(h) else float(u.get("evaluations") or 0)
                    for u, h in zip(done, hits, strict=True))
        row.update(successes=len(reached), success_rate=len(reached) / len(done),
                   evals_median=_median(reached),
                   ert=spent / len(reached) if reached else math.inf)  # Eq. (1)
    return row


# -- formatting ----------------------------------------------------------------------
def format_number(value: float | None, digits: int = 3) -> str:
    """A table cell: ``-`` for None, ``inf``, else ``digits`` significant digits."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def format_count(value: float | None) -> str:
    """A table cell for an evaluation count (thousands separated)."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:,.0f}" if value < 1e7 else f"{value:.3g}"


def format_seconds(value: float | None) -> str:
    """A table cell for a wall time (ms below a second)."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s" if value < 100 else f"{value:,.0f} s"


def display_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """Display strings of a summary row (shared by the text, Markdown and HTML tables)."""
    failed_only = row["runs"] == 0
    known = row["f_opt_known"]
    success = "-" if row["successes"] is None else f"{row['successes']}/{row['runs']}"
    return {
        "optimizer": row["optimizer"],
        "runs": str(row["runs"]), "failed": str(row["failures"]),
        "precision": "all failed" if failed_only else format_number(row["precision_median"]),
        "iqr": "" if failed_only else
        f"[{format_number(row['precision_q1'])}, {format_number(row['precision_q3'])}]",
        "success": success if known else "n/a",
        "evals": format_count(row["evals_median"]), "ert": format_count(row["ert"]),
        "time": format_seconds(row["seconds_median"]),
    }


COLUMNS = (("optimizer", "optimizer"), ("runs", "runs"), ("failed", "failed"),
           ("precision", "median precision"), ("iqr", "[q1, q3]"), ("success", "success"),
           ("evals", "evals to target"), ("ert", "ERT"), ("time", "median time"))
"""(key of :func:`display_cells`, column title) of the summary tables."""


def problem_title(row: Mapping[str, Any], several_suites: bool = False) -> str:
    """A problem's heading: label, budget, target, and what the precision means."""
    where = f"{row['suite']} / " if several_suites else ""
    measure = (f"target {row['target']:.0e}, precision = f - f_opt" if row["f_opt_known"]
               else "optimum unknown: precision = best loss, no success rate")
    budget = f"budget {row['budget']:,}, " if row.get("budget") else ""
    return f"{where}{row['problem']}  ({budget}{measure})"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """An aligned plain-text table of :func:`summarize` rows, one block per problem."""
    if not rows:
        return "no results"
    several = len({r["suite"] for r in rows}) > 1
    cells = [display_cells(r) for r in rows]
    widths = {key: max(len(title), *(len(c[key]) for c in cells)) for key, title in COLUMNS}
    left = {"optimizer", "iqr", "success"}

    def line(values: Mapping[str, str]) -> str:
        parts = [values[k].ljust(widths[k]) if k in left else values[k].rjust(widths[k])
                 for k, _ in COLUMNS]
        return "  " + "  ".join(parts).rstrip()

    out, previous = [], None
    for row, cell in zip(rows, cells, strict=True):
        if (row["suite"], row["problem"]) != previous:
            out += ([""] if previous else []) + [problem_title(row, several),
                                                 line(dict(COLUMNS))]
            previous = (row["suite"], row["problem"])
        out.append(line(cell))
    return "\n".join(out)


def format_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub Markdown table of :func:`summarize` rows (every optimizer, also those
    that only failed); the best optimizer of each problem in bold."""
    several = len({r["suite"] for r in rows}) > 1
    titles = ["problem", *(title for _, title in COLUMNS)]
    lines = ["| " + " | ".join(titles) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * 2 + ["---:", "---", "---:"] + ["---:"] * 3)
             + "|"]
    for row in rows:
        cell = display_cells(row)
        if row.get("rank") == 1 and row["runs"]:
            cell["optimizer"] = f"**{cell['optimizer']}**"
        problem = f"{row['suite']}/{row['problem']}" if several else row["problem"]
        values = [problem, *(cell[k] for k, _ in COLUMNS)]
        lines.append("| " + " | ".join(v.replace("|", "\\|") for v in values) + " |")
    return "\n".join(lines)


# -- comparisons ---------------------------------------------------------------------
def _ratio(b: float | None, a: float | None, floor: float = 0.0) -> float | None:
    if a is None or b is None:
        return None
    a, b = max(a, floor), max(b, floor)
    if a < 0 or b < 0:  # losses of an unknown optimum may be negative: no ratio
        return None
    if a == b:
        return 1.0
    if a == 0 or math.isinf(a):
        return math.inf if b > a else 0.0
    return b / a


def compare_rows(units_a: Iterable[Unit], units_b: Iterable[Unit],
                 targets: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """Summary rows of two result sets joined on (problem, optimizer), with ratios B/A.

    Each row has ``problem, optimizer, a, b`` (the :func:`summarize` rows or None) and
    ``precision_ratio`` (medians, both floored at the target: precisions below it
    count as equal), ``ert_ratio`` (below 1: B needs fewer evaluations).
    The suite is part of the key only when one side holds several suites.
    """
    rows_a, rows_b = summarize(units_a, targets), summarize(units_b, targets)
    with_suite = max(len({r["suite"] for r in rows_a}), len({r["suite"] for r in rows_b})) > 1

    def key(row: Mapping[str, Any]) -> tuple:
        return ((row["suite"],) if with_suite else ()) + (row["problem"], row["optimizer"])

    by_a, by_b = {key(r): r for r in rows_a}, {key(r): r for r in rows_b}
    order = list(by_a) + [k for k in by_b if k not in by_a]
    out = []
    for k in order:
        a, b = by_a.get(k), by_b.get(k)
        either = a or b
        floor = either["target"] if either["f_opt_known"] else -math.inf
        out.append({
            "problem": "/".join(map(str, k[:-1])), "optimizer": k[-1], "a": a, "b": b,
            "precision_ratio": _ratio(b and b["precision_median"],
                                      a and a["precision_median"], floor),
            "ert_ratio": _ratio(b and b["ert"], a and a["ert"]),
        })
    return out


def format_success(row: Mapping[str, Any] | None) -> str:
    if row is None:
        return "absent"
    return display_cells(row)["success"] if row["runs"] else "all failed"


def comparison_cells(rows: Sequence[Mapping[str, Any]], label_a: str, label_b: str
                     ) -> tuple[list[str], list[list[str]], str]:
    """Column titles, display cells and the explanatory note of :func:`compare_rows`."""
    titles = ["problem", "optimizer", f"precision {label_a}", f"precision {label_b}",
              "ratio", f"success {label_a}", f"success {label_b}", f"ERT {label_a}",
              f"ERT {label_b}", "ratio"]
    table = []
    for row in rows:
        a, b = row["a"], row["b"]
        table.append([
            row["problem"], row["optimizer"],
            format_number(a and a["precision_median"]),
            format_number(b and b["precision_median"]), format_number(row["precision_ratio"]),
            format_success(a), format_success(b), format_count(a and a["ert"]),
            format_count(b and b["ert"]), format_number(row["ert_ratio"]),
        ])
    note = (f"ratio = {label_b} / {label_a}: below 1 means {label_b} is better "
            "(precisions below the success target count as equal)")
    return titles, table, note


def compare(units_a: Iterable[Unit], units_b: Iterable[Unit], label_a: str = "A",
            label_b: str = "B", *, fmt: str = "markdown",
            targets: Sequence[float] | None = None) -> str:
    """A side-by-side table of two result sets (two databases, suites, runs or
    commits): median precision, success and ERT of each, and the ratios B/A.

    Args:
        fmt: ``"markdown"`` (GitHub table) or ``"text"`` (aligned, for a terminal).
    """
    if fmt not in ("markdown", "text"):
        raise ValueError(f"fmt must be 'markdown' or 'text', got {fmt!r}")
    titles, table, note = comparison_cells(compare_rows(units_a, units_b, targets),
                                           label_a, label_b)
    if fmt == "markdown":
        lines = ["| " + " | ".join(titles) + " |",
                 "|---|---|" + "---:|" * 3 + "---|---|" + "---:|" * 3]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in table]
        return "\n".join([*lines, "", note])
    widths = [max(len(t), *(len(r[i]) for r in table)) if table else len(t)
              for i, t in enumerate(titles)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in [titles, *table]]
    return "\n".join([*lines, "", note])
