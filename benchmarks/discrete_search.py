"""Evaluations to the optimum of our discrete search against evotorch and nevergrad.

Ours: ``one-plus-lambda`` (lambda = 1), ``ga`` and ``cga`` with default settings.
Anchors: evotorch 0.6.1's elitist ``GeneticAlgorithm`` on a 0/1 int64 problem with
its ``OnePointCrossOver`` (tournament size 4, as in its documentation) and a
standard bit-flip mutation (each bit w.p. 1/n) written as an operator function,
at population sizes 20 and 50, parents not re-evaluated; nevergrad's
``DiscreteOnePlusOne`` when ``import nevergrad`` works (a note otherwise).

Every run gets the same budget per problem; a run succeeds when it evaluates an
optimal point within it (its evaluations to the optimum count up to that exact
row). Problems (maximized ones are given as losses -value): OneMax-100,
LeadingOnes-100, Jump-30 (k = 3), Trap-30 (k = 5, deceptive: best value found
matters more) and LABS-20 (minimal energy 26). The table shows the success rate,
the median evaluations to the optimum over all runs (failures count as infinite,
so ">B" when half or more failed) and the median best value found (problem's own
sense). The last lines compare the best of ours with the best anchor on OneMax
and LeadingOnes (target: ratio <= 1).

    python -m benchmarks.discrete_search [--seeds 5] [--quick] [--problems onemax,...]
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

import problems
from optim.compact_ga import CompactGA
from optim.ga import GeneticAlgorithm, OnePlusLambdaEA

PROBLEMS: dict[str, tuple[str, dict, int]] = {  # label: (registry name, kwargs, budget)
    "onemax-100": ("onemax", {"dim": 100}, 20_000),
    "leadingones-100": ("leadingones", {"dim": 100}, 50_000),
    "jump-30-3": ("jump", {"dim": 30, "k": 3}, 50_000),
    "trap-30-5": ("trap", {"dim": 30, "k": 5}, 50_000),
    "labs-20": ("labs", {"dim": 20}, 50_000),
}
OURS = {"one-plus-lambda": OnePlusLambdaEA, "ga": GeneticAlgorithm, "cga": CompactGA}


class Budget(Exception):
    """Raised by the tracker when the run has its answer (optimum or budget)."""


class Tracker:
    """Wraps a problem: counts evaluations, records the first optimal row, and the
    best value within the budget. Returns losses (negated values if maximized)."""

    def __init__(self, problem: problems.Problem, budget: int) -> None:
        self.problem, self.budget = problem, budget
        self.sign = -1.0 if problem.maximize else 1.0
        self.target = self.sign * float(problem.f_opt)
        self.evaluations, self.hit, self.best = 0, None, math.inf

    def __call__(self, x: np.ndarray) -> np.ndarray:
        loss = self.sign * np.asarray(self.problem(np.asarray(x, dtype=np.float64)))
        room = self.budget - self.evaluations
        counted = loss[:room]
        if counted.size:
            self.best = min(self.best, float(counted.min()))
            optimal = np.flatnonzero(counted <= self.target)
            if optimal.size and self.hit is None:
                self.hit = self.evaluations + int(optimal[0]) + 1
        self.evaluations += len(loss)
        return loss

    @property
    def done(self) -> bool:
        return self.hit is not None or self.evaluations >= self.budget


def run_ours(name: str) -> Callable[[Tracker, int], None]:
    def run(tracker: Tracker, seed: int) -> None:
        opt = OURS[name](tracker.problem.space, seed=seed)
        while not tracker.done:
            x = opt.ask()
            opt.tell(x, tracker(x))

    return run


def run_evotorch_ga(popsize: int) -> Callable[[Tracker, int], None]:
    def run(tracker: Tracker, seed: int) -> None:
        from evotorch import Problem
        from evotorch.algorithms import GeneticAlgorithm as EvoGA
        from evotorch.operators import OnePointCrossOver

        logging.getLogger("evotorch").setLevel(logging.WARNING)
        n = tracker.problem.dim

        def fitness(values: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(tracker(values.cpu().numpy()))

        problem = Problem("min", fitness, solution_length=n, initial_bounds=(0, 1),
                          bounds=(0, 1), dtype=torch.int64, vectorized=True, seed=seed)

        def bit_flip(values: torch.Tensor) -> torch.Tensor:  # standard bit mutation, 1/n
            flip = torch.rand(values.shape, generator=problem.generator) < 1.0 / n
            return torch.where(flip, 1 - values, values)

        searcher = EvoGA(problem, popsize=popsize, re_evaluate=False, operators=[
            OnePointCrossOver(problem, tournament_size=4), bit_flip])
        while not tracker.done:
            searcher.step()

    return run


def run_nevergrad(tracker: Tracker, seed: int) -> None:
    import nevergrad as ng

    space = ng.p.Choice([0, 1], repetitions=tracker.problem.dim)
    space.random_state = np.random.RandomState(seed)
    opt = ng.optimizers.DiscreteOnePlusOne(parametrization=space, budget=tracker.budget)
    while not tracker.done:
        candidate = opt.ask()
        loss = tracker(np.asarray(candidate.value, dtype=np.float64)[None])
        opt.tell(candidate, float(loss[0]))


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


def benchmark(label: str, runner: Callable[[Tracker, int], None], seeds: int,
              budget_scale: float) -> Runs:
    name, kwargs, budget = PROBLEMS[label]
    problem = problems.get(name, **kwargs)
    hits, best, start = [], [], time.perf_counter()
    for seed in range(seeds):
        tracker = Tracker(problem, int(budget * budget_scale))
        runner(tracker, seed)
        hits.append(math.inf if tracker.hit is None else float(tracker.hit))
        best.append(tracker.sign * tracker.best)
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

    runners: dict[str, Callable[[Tracker, int], None]] = {n: run_ours(n) for n in OURS}
    anchors = ["evotorch-ga-20", "evotorch-ga-50"]
    runners["evotorch-ga-20"] = run_evotorch_ga(20)
    runners["evotorch-ga-50"] = run_evotorch_ga(50)
    try:
        import nevergrad  # noqa: F401
    except ImportError:
        print("note: nevergrad is not installed; DiscreteOnePlusOne skipped")
    else:
        runners["ng-DiscreteOnePlusOne"] = run_nevergrad
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
        for name, runner in runners.items():
            runs = results[label, name] = benchmark(label, runner, args.seeds, scale)
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
