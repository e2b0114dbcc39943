"""Evaluations to the optimum of our discrete search against evotorch and nevergrad.

Ours: ``one-plus-lambda`` (lambda = 1), ``ga`` and ``cga`` with default settings.
Anchors: evotorch 0.6.1's elitist ``GeneticAlgorithm`` on a 0/1 int64 problem with
its ``OnePointCrossOver`` (tournament size 4, as in its documentation) and a
standard bit-flip mutation (each bit w.p. 1/n) written as an operator function,
at population sizes 20 and 50, parents not re-evaluated; nevergrad's
``DiscreteOnePlusOne`` when the optional extra is installed (a note otherwise). All
run through :mod:`nondiff.benchmarks.baselines` (the shared tracker and budget accounting).

Every run gets the same budget per problem; a run succeeds when it evaluates an
optimal point within it (its evaluations to the optimum count up to that exact
row). Problems (maximized ones are given as losses -value): OneMax-100,
LeadingOnes-100, Jump-30 (k = 3), Trap-30 (k = 5, deceptive: best value found
matters more) and LABS-20 (minimal energy 26). The table shows the success rate,
the median evaluations to the optimum over all runs (failures count as infinite,
so ">B" when half or more failed) and the median best value found (problem's own
sense). The last lines compare the best of ours with the best anchor on OneMax
and LeadingOnes (target: ratio <= 1).

    python -m nondiff.benchmarks.discrete_search [--seeds 5] [--quick] [--problems onemax,...]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nondiff.benchmarks.baselines import Runner, available, runner

from nondiff import problems

PROBLEMS: dict[str, tuple[str, dict, int]] = {  # label: (registry name, kwargs, budget)
    "onemax-100": ("onemax", {"dim": 100}, 20_000),
    "leadingones-100": ("leadingones", {"dim": 100}, 50_000),
    "jump-30-3": ("jump", {"dim": 30, "k": 3}, 50_000),
    "trap-30-5": ("trap", {"dim": 30, "k": 5}, 50_000),
    "labs-20": ("labs", {"dim": 20}, 50_000),
}
OURS = {"one-plus-lambda": runner("ours:one-plus-lambda"), "ga": runner("ours:ga"),
        "cga": runner("ours:cga")}


@dataclass
class Runs:
    hits: list[float]  # evaluations to the optimum, inf when missed
    best: list[float]  # best value found, in the problem's own sense
    seconds: float

    @property
    def success(self) -> float:
        return float(np.mean(np.isfinite(self.hits)))

    @property
    def median(self) -> float:
        return float(np.median(self.hits))


def benchmark(label: str, run: Runner, seeds: int, budget_scale: float) -> Runs:
    """``seeds`` runs of ``run`` on problem ``label``, each stopped at the optimum."""
    name, kwargs, budget = PROBLEMS[label]
    problem = problems.get(name, **kwargs)
    hits, best, start = [], [], time.perf_counter()
    for seed in range(seeds):
        record = run(problem, int(budget * budget_scale), seed, target=0.0)
        hits.append(record.evaluations_to(0.0))
        best.append(record.best_f)
    return Runs(hits, best, time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="budgets / 5")
    parser.add_argument("--problems", default=",".join(PROBLEMS),
                        help=f"comma-separated, from {', '.join(PROBLEMS)}")
    args = parser.parse_args(argv)
    labels = [p for p in args.problems.split(",") if p]
    unknown = set(labels) - set(PROBLEMS)
    if unknown:
        parser.error(f"unknown problems {sorted(unknown)}; choose from {list(PROBLEMS)}")
    scale = 0.2 if args.quick else 1.0

    runners: dict[str, Runner] = dict(OURS)
    anchors = ["evotorch-ga-20", "evotorch-ga-50"]
    runners["evotorch-ga-20"] = runner("evotorch:GA", popsize=20)
    runners["evotorch-ga-50"] = runner("evotorch:GA", popsize=50)
    missing = available("nevergrad:DiscreteOnePlusOne")
    if missing is not None:
        print(f"note: DiscreteOnePlusOne skipped ({missing})")
    else:
        runners["ng-DiscreteOnePlusOne"] = runner("nevergrad:DiscreteOnePlusOne")
        anchors.append("ng-DiscreteOnePlusOne")

    print(f"{args.seeds} seeds per cell; median evaluations to the optimum (failures "
          "count as infinite)")
    header = (f"{'problem':<16} {'optimizer':<22} {'budget':>7} {'success':>8} "
              f"{'median evals':>13} {'median best':>12} {'s/run':>7}")
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, str], Runs] = {}
    for label in labels:
        budget = int(PROBLEMS[label][2] * scale)
        for name, run in runners.items():
            runs = results[label, name] = benchmark(label, run, args.seeds, scale)
            median = f">{budget}" if math.isinf(runs.median) else f"{runs.median:.0f}"
            print(f"{label:<16} {name:<22} {budget:>7} {runs.success:>8.0%} {median:>13} "
                  f"{np.median(runs.best):>12g} {runs.seconds / args.seeds:>7.2f}",
                  flush=True)
        print()
    for label in [p for p in ("onemax-100", "leadingones-100") if p in labels]:
        anchor = min(anchors, key=lambda n: results[label, n].median)
        base = results[label, anchor].median
        print(f"{label}: ours / best anchor ({anchor}, median {base:g}); target <= 1")
        for name in OURS:
            mine = results[label, name].median
            ratio = mine / base if math.isfinite(base) else (0.0 if math.isfinite(mine)
                                                              else math.nan)
            note = "" if math.isfinite(base) else " (the anchor missed the budget)"
            print(f"    {name:<16} {ratio:.2f}{note}")


if __name__ == "__main__":
    main()
