"""evotorch's own algorithms, each run by its own ``SearchAlgorithm.step()`` loop.

Continuous: SNES and XNES (Wierstra et al. 2014, "Natural evolution strategies",
JMLR 15; Schaul et al. 2011, "High dimensions and heavy tails for natural evolution
strategies", GECCO), PGPE (Sehnke et al. 2010, "Parameter-exploring policy
gradients", Neural Networks 23; ClipUp: Toklu et al. 2020, PPSN), CEM (Rubinstein
1999, "The cross-entropy method for combinatorial and continuous optimization") and
evotorch's own CMAES (Hansen & Ostermeier 2001), from the shared start point and step
size. Bit strings: ``GA``, evotorch's elitist ``GeneticAlgorithm`` with its
``OnePointCrossOver`` (tournament size 4) and a standard bit-flip mutation (each bit
with probability 1/n; Droste, Jansen & Wegener 2002), population 50, parents not
re-evaluated. Every problem is seeded with ``seed``; options override the settings of
:data:`SETTINGS` (e.g. ``{"popsize": 20}``).

Example:
    >>> from nondiff import problems
    >>> from nondiff.benchmarks.baselines import run
    >>> record = run("evotorch:GA", problems.get("onemax", dim=20), budget=3000, seed=0)
    >>> record.stop, record.best_f, record.evaluations <= 3000
    ('target', 20.0, True)
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from nondiff.optim.base import default_popsize
from nondiff.optim.spaces import leaf_kinds
from nondiff.problems.base import Problem

from .record import Tracker, start

# Settings of the evotorch algorithms we compare with. SNES, XNES and CMAES run with
# evotorch's defaults (SNES/XNES at popsize 4 + floor(3 ln d), as ours). PGPE and CEM have
# required hyperparameters; these are the values of evotorch's examples (center lr 0.5
# with ClipUp, parenthood ratio 0.5), chosen by us, not defaults of the library -- our
# PGPE and CEM run with their own defaults (center_lr 0.15, elite_frac 0.2), so the
# comparison is of each library's recommended settings.
SETTINGS: dict[str, dict[str, Any]] = {
    "SNES": {},
    "XNES": {},
    "PGPE": {"center_learning_rate": 0.5, "stdev_learning_rate": 0.1, "optimizer": "clipup"},
    "CEM": {"parenthood_ratio": 0.5},
    "CMAES": {},
    "GA": {"popsize": 50, "tournament_size": 4},
}
ALGORITHMS = tuple(SETTINGS)


def handles(algorithm: str, problem: Problem) -> bool:
    """GA: bit strings; the others: continuous problems (no space)."""
    if algorithm == "GA":
        return problem.space is not None and leaf_kinds(problem.space) == {"binary"}
    return problem.space is None


def describe(algorithm: str) -> str:
    """The problem kinds handled, for error messages."""
    return "bit strings (a Binary space)" if algorithm == "GA" else \
        "continuous problems (no space)"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """evotorch's INFO logs off; its own deprecation notes hidden for the run."""
    import evotorch  # noqa: F401  (configures its loggers on import)

    for name in ("evotorch", "evotorch.core", "evotorch.optimizers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        warnings.filterwarnings("ignore", message="__array_wrap__ must accept context")
        yield


def _continuous(algorithm: str, tracker: Tracker, seed: int, options: dict[str, Any]) -> str:
    import evotorch
    from evotorch import algorithms

    problem = tracker.problem
    x0, sigma0 = start(problem, seed)
    lower, upper = problem.bounds if problem.bounds is not None else (x0 - sigma0, x0 + sigma0)
    evo_problem = evotorch.Problem(
        "min", lambda x: torch.from_numpy(tracker(x)), solution_length=problem.dim,
        vectorized=True, initial_bounds=(torch.as_tensor(lower), torch.as_tensor(upper)),
        dtype=torch.float64, seed=seed,
    )
    settings = dict(SETTINGS[algorithm])
    popsize = default_popsize(problem.dim)
    if algorithm in ("PGPE", "CEM"):
        settings["popsize"] = 2 * (popsize // 2)
    elif algorithm in ("SNES", "XNES"):
        settings["popsize"] = popsize
    settings.update(options)
    searcher = getattr(algorithms, algorithm)(
        evo_problem, stdev_init=sigma0, center_init=torch.as_tensor(x0), **settings)
    while True:
        try:
            searcher.step()
        except Exception as error:  # e.g. a covariance that lost positive-definiteness
            if tracker.reason is not None:
                raise
            return f"error:{type(error).__name__}"


def _genetic(tracker: Tracker, seed: int, options: dict[str, Any]) -> None:
    from evotorch import Problem as EvoProblem
    from evotorch.algorithms import GeneticAlgorithm
    from evotorch.operators import OnePointCrossOver

    settings = {**SETTINGS["GA"], **options}
    n = tracker.problem.dim
    evo_problem = EvoProblem(
        "min", lambda values: torch.from_numpy(tracker(values)), solution_length=n,
        initial_bounds=(0, 1), bounds=(0, 1), dtype=torch.int64, vectorized=True, seed=seed)

    def bit_flip(values: torch.Tensor) -> torch.Tensor:  # standard bit mutation, rate 1/n
        flip = torch.rand(values.shape, generator=evo_problem.generator) < 1.0 / n
        return torch.where(flip, 1 - values, values)

    searcher = GeneticAlgorithm(
        evo_problem, popsize=settings["popsize"], re_evaluate=False,
        operators=[OnePointCrossOver(evo_problem, tournament_size=settings["tournament_size"]),
                   bit_flip])
    while True:
        searcher.step()


def body(algorithm: str, tracker: Tracker, seed: int, options: dict[str, Any]) -> str | None:
    """One evotorch run on the tracker; an error of the algorithm ends it as ``error:<type>``."""
    if algorithm == "GA":
        unknown = set(options) - set(SETTINGS["GA"])
        if unknown:
            raise ValueError(f"evotorch:GA has no options {sorted(unknown)}; "
                             f"it takes {sorted(SETTINGS['GA'])}")
    with _quiet():
        if algorithm == "GA":
            return _genetic(tracker, seed, options)
        return _continuous(algorithm, tracker, seed, options)


