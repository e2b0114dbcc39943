"""Solution quality at equal budgets: our optimizers next to raw pycma and evotorch.

Every (problem, dim, runner, seed) starts from the same point with the same step
size and budget (see :mod:`benchmarks.baselines`). The table gives, per runner,
the median final precision f - f_opt, the number of seeds that reached 1e-8, the
median evaluations to reach it and the median wall time. The quick preset is the
README's main job (``nondiff compare``); the full preset covers the issue's
10-D and 40-D comparison:

    python -m benchmarks.quality --preset full

Example:
    >>> from benchmarks.quality import compare
    >>> rows = compare(["sphere"], [4], ["pycma", "ours:cmaes"], seeds=[0], budget=800)
    >>> sorted(r["runner"] for r in rows)
    ['ours:cmaes', 'pycma']
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

import problems
from benchmarks.baselines import RunRecord, run

TARGET = 1e-8

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "problems": ["sphere", "ellipsoid", "rosenbrock", "rastrigin"],
        "dims": [10],
        "runners": ["ours:cmaes", "ours:bipop-cmaes", "ours:snes", "ours:xnes", "ours:pgpe",
                    "ours:cem", "pycma", "evotorch:SNES", "evotorch:XNES", "evotorch:PGPE"],
        "seeds": [0, 1, 2],
        "budget_per_dim": 500,
    },
    "full": {
        "problems": ["rosenbrock", "rastrigin", "ellipsoid"],
        "dims": [10, 40],
        "runners": ["ours:cmaes", "ours:sep-cmaes", "ours:ipop-cmaes", "ours:bipop-cmaes",
                    "ours:openai-es", "ours:snes", "ours:xnes", "ours:pgpe", "ours:cem",
                    "pycma", "pycma-bipop", "evotorch:SNES", "evotorch:XNES",
                    "evotorch:PGPE", "evotorch:CEM"],
        "seeds": [0, 1, 2, 3, 4],
        "budget_per_dim": 2000,
    },
}


def summarize(records: Sequence[RunRecord]) -> dict[str, Any]:
    """Median precision, successes, median evaluations to target, median time."""
    precision = [r.precision for r in records]
    to_target = [r.evaluations_to(TARGET) for r in records]
    hits = [e for e in to_target if math.isfinite(e)]
    return {
        "median_precision": float(np.median(precision)),
        "successes": len(hits),
        "runs": len(records),
        "median_evals_to_target": float(np.median(hits)) if hits else math.inf,
        "median_seconds": float(np.median([r.seconds for r in records])),
    }


def compare(problem_names: Iterable[str], dims: Iterable[int], runners: Iterable[str],
            seeds: Sequence[int], budget: int | None = None, budget_per_dim: int = 500,
            instance: int = 1, progress: bool = False) -> list[dict[str, Any]]:
    """Run every combination and return one summary row per (problem, dim, runner)."""
    rows = []
    jobs = [(p, d, r) for p in problem_names for d in dims for r in runners]
    for i, (name, dim, runner_name) in enumerate(jobs, 1):
        records = []
        for seed in seeds:
            problem = problems.get(name, dim=dim, instance=instance)
            records.append(run(runner_name, problem, budget or budget_per_dim * dim, seed))
        rows.append({"problem": name, "dim": dim, "runner": runner_name,
                     "budget": budget or budget_per_dim * dim, **summarize(records)})
        if progress:
            print(f"[{i}/{len(jobs)}] {name}-{dim}D {runner_name}", flush=True)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table, grouped by problem and dimension, best precision first."""
    header = f"{'problem':<12}{'dim':>4}  {'optimizer':<18}{'median f-fopt':>14}" \
             f"{'hit 1e-8':>10}{'evals to 1e-8':>15}{'time [s]':>10}"
    lines = [header, "-" * len(header)]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["problem"], row["dim"]), []).append(row)
    for (name, dim), group in groups.items():
        group = sorted(group, key=lambda r: (-r["successes"], r["median_evals_to_target"],
                                             r["median_precision"]))
        for row in group:
            evals = row["median_evals_to_target"]
            lines.append(
                f"{name:<12}{dim:>4}  {row['runner']:<18}{row['median_precision']:>14.3g}"
                f"{row['successes']:>6}/{row['runs']:<3}"
                f"{'-' if math.isinf(evals) else f'{evals:.0f}':>15}"
                f"{row['median_seconds']:>10.2f}"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     prog="python -m benchmarks.quality")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--seeds", type=int, help="number of seeds (default: the preset's)")
    parser.add_argument("--problems", nargs="+", help="a subset of the preset's problems")
    parser.add_argument("--dims", type=int, nargs="+", help="a subset of the preset's dims")
    args = parser.parse_args(argv)
    preset = dict(PRESETS[args.preset])
    preset["problems"] = args.problems or preset["problems"]
    preset["dims"] = args.dims or preset["dims"]
    seeds = list(range(args.seeds)) if args.seeds else preset["seeds"]
    began = time.perf_counter()
    rows = compare(preset["problems"], preset["dims"], preset["runners"], seeds,
                   budget_per_dim=preset["budget_per_dim"], progress=True)
    print()
    print(f"Equal budgets ({preset['budget_per_dim']} x dim evaluations), {len(seeds)} seeds, "
          "shifted and rotated instance 1; success = f - f_opt <= 1e-8")
    print(format_table(rows))
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
