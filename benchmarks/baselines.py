"""One run of one optimizer on one problem, ours or a reference library's, with the
same start, budget and accounting.

Every runner returns a :class:`RunRecord`: best-so-far precision (f - f_opt) by
evaluation count, evaluations used, wall time and the reason it stopped. The
start point is drawn uniformly in the problem's domain from the seed, the initial
step size is 0.2 x the domain width, and no run starts a generation that would
exceed the budget. As in BBOB, the search is unconstrained: the domain only sets
the start (the functions are defined everywhere), so no runner clips or
transforms at a boundary.

Runners:
    ``ours:<name>``        any optimizer of ``optim.registry`` through ``minimize``
    ``pycma``              raw ``cma.CMAEvolutionStrategy`` ask/tell
    ``pycma-bipop``        ``cma.fmin2(..., restarts=9, bipop=True)``
    ``evotorch:<Alg>``     evotorch's own ``SearchAlgorithm.step()`` loop
                           (SNES, XNES, PGPE, CEM)

Example:
    >>> import problems
    >>> from benchmarks.baselines import run
    >>> record = run("pycma", problems.get("sphere", dim=4), budget=600, seed=0)
    >>> record.evaluations <= 600, record.precision < 1e-6
    (True, True)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import problems as problem_registry
from optim import minimize, registry
from problems.base import Problem

# Settings of the evotorch algorithms we compare with. SNES and XNES run with evotorch's
# defaults. PGPE and CEM have required hyperparameters; these are the values of evotorch's
# examples (center lr 0.5 with ClipUp, parenthood ratio 0.5), chosen by us, not defaults
# of the library -- our PGPE and CEM run with their own defaults (center_lr 0.15,
# elite_frac 0.2), so the comparison is of each library's recommended settings.
EVOTORCH_SETTINGS: dict[str, dict[str, Any]] = {
    "SNES": {},
    "XNES": {},
    "PGPE": {"center_learning_rate": 0.5, "stdev_learning_rate": 0.1, "optimizer": "clipup"},
    "CEM": {"parenthood_ratio": 0.5},
}


@dataclasses.dataclass
class RunRecord:
    """The outcome of one (problem, optimizer, seed) run."""

    optimizer: str
    problem: str
    dim: int
    seed: int
    budget: int
    evaluations: int
    precision: float  # best f - f_opt
    seconds: float
    stop: str
    trace: np.ndarray  # (k, 2): evaluations, best precision so far

    def evaluations_to(self, target: float) -> float:
        """First evaluation count at which precision <= target (inf if never)."""
        hit = np.nonzero(self.trace[:, 1] <= target)[0]
        return float(self.trace[hit[0], 0]) if hit.size else math.inf


def start(problem: Problem, seed: int) -> tuple[np.ndarray, float]:
    """Start point and step size shared by every optimizer for this seed."""
    rng = np.random.default_rng(seed)
    if problem.bounds is None:
        return rng.uniform(-4, 4, problem.dim), 2.0
    lower, upper = problem.bounds
    return rng.uniform(lower, upper), float(0.2 * np.mean(upper - lower))


def _precision(problem: Problem, f: float) -> float:
    return max(float(f) - float(problem.f_opt or 0.0), 0.0)


def _record(name: str, problem: Problem, seed: int, budget: int, seconds: float,
            trace: list[tuple[float, float]], stop: str) -> RunRecord:
    array = np.asarray(trace, dtype=np.float64).reshape(-1, 2)
    if array.size:
        array[:, 1] = np.minimum.accumulate([_precision(problem, f) for f in array[:, 1]])
    return RunRecord(
        optimizer=name, problem=problem.name, dim=problem.dim, seed=seed, budget=budget,
        evaluations=int(array[-1, 0]) if array.size else 0,
        precision=float(array[-1, 1]) if array.size else math.inf,
        seconds=seconds, stop=stop, trace=array,
    )


def run_ours(name: str, problem: Problem, budget: int, seed: int, **options: Any) -> RunRecord:
    x0, sigma0 = start(problem, seed)
    began = time.perf_counter()
    result = minimize(problem, x0, optimizer=name, budget=budget, sigma0=sigma0,
                      vectorized=True, seed=seed,
                      target=(problem.f_opt or 0.0) + 1e-9, options=options, progress=False)
    seconds = time.perf_counter() - began
    stop = ",".join(sorted(result.stop))
    return _record(f"ours:{name}", problem, seed, budget, seconds,
                   [tuple(row) for row in result.history], stop)


def run_pycma(problem: Problem, budget: int, seed: int) -> RunRecord:
    import cma

    x0, sigma0 = start(problem, seed)
    opts = {"seed": seed + 1, "verbose": -9, "verb_log": 0, "maxfevals": budget,
            "ftarget": (problem.f_opt or 0.0) + 1e-9}
    began = time.perf_counter()
    es = cma.CMAEvolutionStrategy(x0, sigma0, opts)
    trace: list[tuple[float, float]] = []
    best = math.inf
    while not es.stop() and es.countevals + es.popsize <= budget:
        x = es.ask()
        f = problem(np.asarray(x))
        es.tell(x, f.tolist())
        best = min(best, float(np.min(f)))
        trace.append((es.countevals, best))
    seconds = time.perf_counter() - began
    stop = ",".join(sorted(es.stop())) or "budget"
    return _record("pycma", problem, seed, budget, seconds, trace, stop)


def run_pycma_bipop(problem: Problem, budget: int, seed: int) -> RunRecord:
    import cma

    x0, sigma0 = start(problem, seed)
    trace: list[tuple[float, float]] = []
    best = [math.inf]

    def objective(x: np.ndarray) -> float:
        value = float(problem(np.asarray(x)))
        best[0] = min(best[0], value)
        trace.append((len(trace) + 1, best[0]))
        return value

    opts = {"seed": seed + 1, "verbose": -9, "verb_log": 0, "maxfevals": budget,
            "ftarget": (problem.f_opt or 0.0) + 1e-9}
    began = time.perf_counter()
    _, es = cma.fmin2(objective, x0, sigma0, opts, restarts=9, bipop=True)
    seconds = time.perf_counter() - began
    trace = [row for row in trace if row[0] <= budget]
    stop = ",".join(sorted(es.stop())) if es is not None else "budget"
    return _record("pycma-bipop", problem, seed, budget, seconds, trace, stop)


def run_evotorch(algorithm: str, problem: Problem, budget: int, seed: int) -> RunRecord:
    import evotorch
    from evotorch import algorithms

    logging.getLogger("evotorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="To copy construct from a tensor")
    x0, sigma0 = start(problem, seed)
    lower, upper = problem.bounds if problem.bounds is not None else (x0 - sigma0, x0 + sigma0)
    evo_problem = evotorch.Problem(
        "min", lambda x: problem(x), solution_length=problem.dim, vectorized=True,
        initial_bounds=(torch.as_tensor(lower), torch.as_tensor(upper)),
        dtype=torch.float64, seed=seed,
    )
    popsize = registry.get("snes").default_popsize(problem.dim)
    settings = dict(EVOTORCH_SETTINGS[algorithm])
    if algorithm in ("PGPE", "CEM"):
        settings["popsize"] = 2 * (popsize // 2)
    elif algorithm in ("SNES", "XNES"):
        settings["popsize"] = popsize
    began = time.perf_counter()
    searcher = getattr(algorithms, algorithm)(
        evo_problem, stdev_init=sigma0, center_init=torch.as_tensor(x0), **settings
    )
    trace: list[tuple[float, float]] = []
    best, evaluations, stop = math.inf, 0, "budget"
    target = (problem.f_opt or 0.0) + 1e-9
    while evaluations + settings["popsize"] <= budget:
        try:
            searcher.step()
        except Exception as error:  # e.g. a covariance that lost positive-definiteness
            stop = f"error:{type(error).__name__}"
            break
        evaluations += len(searcher.population)
        best = min(best, float(searcher.population.evals[:, 0].min()))
        trace.append((evaluations, best))
        if best <= target:
            stop = "target"
            break
    seconds = time.perf_counter() - began
    return _record(f"evotorch:{algorithm}", problem, seed, budget, seconds, trace, stop)


def runner(name: str) -> Callable[[Problem, int, int], RunRecord]:
    """The run function of a runner name (see the module docstring)."""
    if name.startswith("ours:"):
        optimizer = name.split(":", 1)[1]
        registry.get(optimizer)  # fail early on a misspelled name
        return lambda problem, budget, seed: run_ours(optimizer, problem, budget, seed)
    if name == "pycma":
        return run_pycma
    if name == "pycma-bipop":
        return run_pycma_bipop
    if name.startswith("evotorch:"):
        algorithm = name.split(":", 1)[1]
        if algorithm not in EVOTORCH_SETTINGS:
            raise registry.unknown_name_error("evotorch algorithm", algorithm,
                                              sorted(EVOTORCH_SETTINGS))
        return lambda problem, budget, seed: run_evotorch(algorithm, problem, budget, seed)
    known = ["pycma", "pycma-bipop"] + [f"ours:{n}" for n in registry.names()] + [
        f"evotorch:{a}" for a in EVOTORCH_SETTINGS]
    raise registry.unknown_name_error("runner", name, known)


def run(name: str, problem: Problem | str, budget: int, seed: int, dim: int = 10,
        instance: int = 1) -> RunRecord:
    """Run ``name`` on ``problem`` (a Problem, or a registry name with ``dim``/``instance``)."""
    if isinstance(problem, str):
        problem = problem_registry.get(problem, dim=dim, instance=instance)
    return runner(name)(problem, budget, seed)
