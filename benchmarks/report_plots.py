"""Convergence and runtime-ECDF plots of stored benchmark results (PNG, matplotlib).

Convergence (one PNG per problem): for every optimizer, the median and interquartile
band over seeds of the best-so-far precision f - f_opt against evaluations, both axes
logarithmic. A precision of exactly 0 (the optimum hit, common on discrete problems)
is drawn at :data:`PRECISION_FLOOR`; on a problem whose optimum is unknown the best
loss itself is drawn (on a linear axis if any loss is <= 0) and the axis says so.
Before its first recorded evaluation a run has no value; a band is drawn only where
every run of the optimizer has one, and a run that stopped early keeps its last value.

Runtime ECDF (COCO style; Hansen et al., "COCO: Performance Assessment",
arXiv:1605.03560, 2016): for an optimizer and a set of problems, the fraction of
(problem, seed, target) triples whose target was reached within a budget of
x evaluations per dimension::

    ECDF(x) = #{(p, s, t): runtime_{p,s}(t) / dim_p <= x} / #{(p, s, t)}       (2)

drawn on a log x axis, one line per optimizer, one PNG per suite and dimension and
one over all dimensions of the suite. A cross marks each optimizer's median budget
used per dimension: beyond it the line holds no information. Targets: by default
COCO's 51 precisions 10^2 .. 10^-8 (five per decade), read from
each run's best-so-far trace, since the runner records only a handful of targets per
unit (``DEFAULT_TARGETS`` of :mod:`nondiff.benchmarks.suites`) and a step function with
seven steps says little; ``targets="stored"`` uses the recorded ones instead. The
trace is the runner's best-so-far curve, so a runtime read from it is exact to the
evaluation at which the improvement was recorded. Problems with an unknown optimum
have no targets and are left out of the ECDF; failed units are left out too (the
tables count them).

Example:
    >>> import tempfile
    >>> from nondiff.benchmarks.report_plots import plot_convergence
    >>> unit = {"suite": "s", "problem": "sphere-2d-i1", "dim": 2, "optimizer": "random",
    ...         "seed": 0, "status": "done", "f_opt_known": True, "evaluations": 40,
    ...         "trace": [[10, 4.0], [20, 1.0], [40, 0.25]]}
    >>> [p.name for p in plot_convergence([unit, {**unit, "seed": 1}], tempfile.mkdtemp())]
    ['convergence-s-sphere-2d-i1.png']
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from nondiff.benchmarks.report_stats import (
    hitting_times,
    known_optimum,
    prepare,
    stored_targets,
    summarize,
)

PRECISION_FLOOR = 1e-12
"""Where a precision of 0 is drawn on a log axis (below every target of a suite)."""

COCO_TARGETS: tuple[float, ...] = tuple(float(10.0 ** e) for e in np.linspace(2, -8, 51))
"""COCO's 51 target precisions, 10^2 down to 10^-8 in steps of 10^-0.2."""

Unit = Mapping[str, Any]
_STYLES = ("-", "--", "-.", ":")


def file_label(text: str) -> str:
    """``text`` as a safe file-name fragment."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


def optimizer_styles(names: Iterable[str]) -> dict[str, tuple[Any, str]]:
    """One (colour, line style) per optimizer, stable across every plot of a report."""
    from matplotlib import colormaps

    palette = list(colormaps["tab10"].colors)
    ordered = sorted(set(names))
    return {name: (palette[i % len(palette)], _STYLES[(i // len(palette)) % len(_STYLES)])
            for i, name in enumerate(ordered)}


def _done(units: Iterable[Unit]) -> list[Unit]:
    return [u for u in units if u.get("status", "done") == "done"]


def _trace(unit: Unit, known: bool) -> np.ndarray:
    trace = np.array(unit["trace"], dtype=np.float64).reshape(-1, 2)
    if known:
        trace[:, 1] = np.maximum(trace[:, 1], PRECISION_FLOOR)
    return trace


def _on_grid(trace: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Best-so-far value of a step trace at each grid point (NaN before its start)."""
    index = np.searchsorted(trace[:, 0], grid, side="right") - 1
    values = trace[np.clip(index, 0, None), 1]
    return np.where(index >= 0, values, np.nan)


def _power_label(value: float, _: Any = None) -> str:
    exponent = math.log10(value) if value > 0 else math.nan
    if math.isfinite(exponent) and abs(exponent - round(exponent)) < 1e-9:
        return f"{value:g}" if 0 <= exponent <= 4 else f"1e{round(exponent)}"
    return f"{value:g}"


def _log_axis(axis: Any) -> None:
    # plain-text tick labels: mathtext "10^k" labels cost seconds per figure to lay out
    axis.set_major_locator(LogLocator(base=10, numticks=12))
    axis.set_major_formatter(FuncFormatter(_power_label))
    axis.set_minor_formatter(NullFormatter())


def _figure() -> tuple[Figure, Any]:
    figure = Figure(figsize=(7.5, 4.6))
    figure.subplots_adjust(left=0.11, right=0.98, bottom=0.12, top=0.93)
    return figure, figure.add_subplot()


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    return path


def plot_convergence(units: Iterable[Unit], out_dir: str | os.PathLike[str],
                     *, grid_points: int = 200) -> list[Path]:
    """One PNG per (suite, problem): median and quartiles of best-so-far vs evaluations.

    Args:
        units: result rows (see :func:`nondiff.benchmarks.report_stats.summarize`).
        out_dir: folder for ``convergence-<suite>-<problem>.png`` (created).
        grid_points: evaluation counts (log-spaced) at which runs are aggregated.

    Returns:
        Paths of the written files, in the order of the summary table's problems.
    """
    units = prepare(units)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    styles = optimizer_styles(u["optimizer"] for u in units)
    rows = summarize(units)
    paths = []
    problems = list(dict.fromkeys((r["suite"], r["problem"]) for r in rows))
    for suite, problem in problems:
        group = [r for r in rows if (r["suite"], r["problem"]) == (suite, problem)]
        members = _done(u for u in units if (u["suite"], u["problem"]) == (suite, problem))
        known = group[0]["f_opt_known"]
        traces = {r["optimizer"]: [t for u in members if u["optimizer"] == r["optimizer"]
                                   if (t := _trace(u, known)).size] for r in group}
        figure, axes = _figure()
        values = np.concatenate([t[:, 1] for ts in traces.values() for t in ts] or [[1.0]])
        # an unknown optimum: the loss itself, on a log axis only if positive and spread
        log_y = known or bool(np.all(values > 0) and values.max() > 100 * values.min())
        starts = [t[0, 0] for ts in traces.values() for t in ts]
        ends = [t[-1, 0] for ts in traces.values() for t in ts]
        grid = np.unique(np.geomspace(max(min(starts, default=1), 1), max(ends, default=2),
                                      grid_points).round())
        for row in group:
            colour, style = styles[row["optimizer"]]
            label = f"{row['optimizer']} ({row['runs']} runs"
            label += f", {row['failures']} failed)" if row["failures"] else ")"
            runs = traces[row["optimizer"]]
            if not runs:
                axes.plot([], [], color=colour, linestyle=style, label=label + " no data")
                continue
            matrix = np.vstack([_on_grid(t, grid) for t in runs])
            # a run that ended early keeps its last value (it is best-so-far)
            last = np.array([t[-1, 1] for t in runs])[:, None]
            after = grid[None, :] > np.array([t[-1, 0] for t in runs])[:, None]
            matrix = np.where(after, last, matrix)
            defined = ~np.isnan(matrix).any(axis=0)
            if not defined.any():
                continue
            q1, median, q3 = np.percentile(matrix[:, defined], [25, 50, 75], axis=0)
            x = grid[defined]
            axes.plot(x, median, color=colour, linestyle=style, linewidth=1.8, label=label)
            axes.fill_between(x, q1, q3, color=colour, alpha=0.18, linewidth=0)
        if known:
            axes.axhline(group[0]["target"], color="0.4", linestyle=":", linewidth=1)
            axes.set_ylabel(f"best f - f_opt (0 drawn at {PRECISION_FLOOR:g})")
        else:
            axes.set_ylabel("best loss (optimum unknown)")
        axes.set_xscale("log")
        _log_axis(axes.xaxis)
        if log_y:
            axes.set_yscale("log")
            _log_axis(axes.yaxis)
        axes.set_xlabel("evaluations")
        axes.set_title(f"{problem} ({suite}): median and quartiles over seeds", fontsize=10)
        axes.grid(True, which="major", alpha=0.3)
        axes.legend(fontsize=8, loc="best")
        paths.append(_save(figure, out / f"convergence-{file_label(suite)}-"
                                          f"{file_label(problem)}.png"))
    return paths


def runtimes(units: Iterable[Unit], targets: Sequence[float] | str | None = None
             ) -> dict[str, tuple[np.ndarray, int, float]]:
    """Per optimizer: runtimes per dimension of every (problem, seed, target) triple
    of the known-optimum, completed units (``inf`` when not reached), the number of
    failed units, and the median evaluations per dimension used.

    Args:
        targets: precisions; None for :data:`COCO_TARGETS`, ``"stored"`` for the
            targets the runner recorded.
    """
    units = prepare(units)
    done = [u for u in _done(units) if known_optimum(u)]
    if targets is None:
        targets = COCO_TARGETS
    elif targets == "stored":
        targets = stored_targets(done)
    elif isinstance(targets, str):
        raise ValueError(f"targets must be None, 'stored' or precisions, got {targets!r}")
    out = {}
    for name in dict.fromkeys(u["optimizer"] for u in units):
        mine = [u for u in done if u["optimizer"] == name]
        times = [hitting_times(u, targets) / (u.get("dim") or 1) for u in mine]
        used = [float(u.get("evaluations") or 0) / (u.get("dim") or 1) for u in mine]
        failed = sum(1 for u in units if u["optimizer"] == name and u.get("status") == "failed")
        out[name] = (np.concatenate(times) if times else np.zeros(0), failed,
                     float(np.median(used)) if used else math.nan)
    return out


def plot_ecdf(units: Iterable[Unit], out_dir: str | os.PathLike[str],
              targets: Sequence[float] | str | None = None) -> list[Path]:
    """COCO-style runtime ECDFs (Eq. 2): one PNG per suite and dimension, and one per
    suite over all its dimensions (when it has several).

    Args:
        units: result rows.
        out_dir: folder for ``ecdf-<suite>-<dim>d.png`` and ``ecdf-<suite>-all.png``.
        targets: see :func:`runtimes` (default: COCO's 51 targets, from the traces).

    Returns:
        Paths of the written files (none for a suite without a known optimum).
    """
    units = prepare(units)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    styles = optimizer_styles(u["optimizer"] for u in units)
    paths = []
    for suite in dict.fromkeys(u["suite"] for u in units):
        mine = [u for u in units if u["suite"] == suite]
        dims = sorted({u.get("dim") or 1 for u in mine if known_optimum(u)})
        groups = [(f"{d}d", f"{d}-D", [u for u in mine if (u.get("dim") or 1) == d])
                  for d in dims]
        if len(dims) > 1:
            groups.append(("all", "all dimensions", mine))
        for tag, title, group in groups:
            data = runtimes(group, targets)
            if not any(times.size for times, _, _ in data.values()):
                continue
            figure, axes = _figure()
            finite = np.concatenate([t[np.isfinite(t)] for t, _, _ in data.values()])
            right = max([m for _, _, m in data.values() if math.isfinite(m)]
                        + [float(finite.max()) if finite.size else 1.0])
            left = min(float(finite.min()) if finite.size else 1.0, 1.0) / 2
            problems = len({u["problem"] for u in group if known_optimum(u)})
            for name, (times, failed, used) in data.items():
                colour, style = styles[name]
                notes = [f"{failed} failed"] if failed else []
                own = len({u["problem"] for u in group
                           if u["optimizer"] == name and known_optimum(u)})
                if own != problems:  # the fraction is over its own problems only
                    notes.insert(0, f"{own} of {problems} problems")
                label = name + (f" ({', '.join(notes)})" if notes else "")
                if not times.size:
                    axes.plot([], [], color=colour, linestyle=style, label=label + " no data")
                    continue
                reached = np.sort(times[np.isfinite(times)])
                fraction = np.arange(1, reached.size + 1) / times.size  # Eq. (2)
                x = np.concatenate([[left], reached, [right]])
                y = np.concatenate([[0.0], fraction, [fraction[-1] if reached.size else 0.0]])
                axes.step(x, y, where="post", color=colour, linestyle=style, linewidth=1.8,
                          label=label)
                if math.isfinite(used):
                    axes.plot([used], [np.mean(times <= used)], marker="x", markersize=9,
                              color=colour, markeredgewidth=2)
            axes.set_xscale("log")
            _log_axis(axes.xaxis)
            axes.set_ylim(-0.02, 1.02)
            axes.set_xlim(left, right * 1.05)
            axes.set_xlabel("evaluations / dimension")
            axes.set_ylabel("fraction of (problem, seed, target) reached")
            count = ("stored" if isinstance(targets, str)
                     else len(COCO_TARGETS if targets is None else targets))
            axes.set_title(f"{suite}, {title}: {problems} problem{'s' * (problems != 1)}, "
                           f"{count} targets "
                           "(x: median budget used)", fontsize=10)
            axes.grid(True, which="major", alpha=0.3)
            axes.legend(fontsize=8, loc="upper left")
            paths.append(_save(figure, out / f"ecdf-{file_label(suite)}-{tag}.png"))
    return paths
