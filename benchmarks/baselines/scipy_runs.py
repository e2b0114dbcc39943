"""scipy.optimize: differential evolution, Nelder-Mead and Powell.

``scipy:de`` is ``differential_evolution`` (Storn & Price 1997, "Differential
evolution -- a simple and efficient heuristic for global optimization over continuous
spaces", J. Global Optimization 11) with scipy's defaults (best1bin, popsize 15 x dim,
polish), the problem's box as bounds, the shared start point as ``x0`` (it replaces
the first member of the Latin-hypercube population), one batched call per generation
(``vectorized=True``, hence ``updating="deferred"``) and ``rng=default_rng(seed)``.
``scipy:nelder-mead`` (Nelder & Mead 1965, "A simplex method for function
minimization", Computer Journal 7; adaptive parameters of Gao & Han 2012,
Computational Optimization and Applications 51) starts from the simplex x0, x0 +
sigma0 e_i; ``scipy:powell`` (Powell 1964, "An efficient method for finding the
minimum of a function of several variables without calculating derivatives",
Computer Journal 7) from x0 with directions sigma0 e_i. Both use tight tolerances, so
they end by the budget, the target or true convergence. Options override these
keyword arguments (``differential_evolution``'s, or ``minimize``'s ``options``).
Continuous problems only (DE: with a finite box).

Example:
    >>> from nondiff import problems
    >>> from nondiff.benchmarks.baselines import run
    >>> record = run("scipy:nelder-mead", problems.get("sphere", dim=2), budget=400, seed=0)
    >>> record.stop, record.evaluations <= 400
    ('target', True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nondiff.problems.base import Problem

from .record import Tracker, start

ALGORITHMS = ("de", "nelder-mead", "powell")


def handles(algorithm: str, problem: Problem) -> bool:
    """Continuous problems; DE needs a finite box."""
    if problem.space is not None:
        return False
    if algorithm == "de":
        return problem.bounds is not None and bool(np.all(np.isfinite(problem.bounds)))
    return True


def describe(algorithm: str) -> str:
    """The problem kinds handled, for error messages."""
    box = " with a finite box" if algorithm == "de" else ""
    return f"continuous problems (no space){box}"


def _differential_evolution(tracker: Tracker, seed: int, options: dict[str, Any]) -> str:
    from scipy.optimize import differential_evolution

    problem = tracker.problem
    x0, _ = start(problem, seed)
    lower, upper = problem.bounds

    def batch(x: np.ndarray) -> Any:  # (dim, S) per generation; (dim,) when polishing
        x = np.asarray(x)
        return tracker(x) if x.ndim == 1 else tracker(x.T)

    kwargs: dict[str, Any] = {"vectorized": True, "updating": "deferred", "x0": x0,
                              "maxiter": tracker.budget, "rng": np.random.default_rng(seed)}
    kwargs.update(options)
    result = differential_evolution(batch, list(zip(lower, upper, strict=True)), **kwargs)
    return "converged" if result.success else "maxiter"


def _local(method: str, tracker: Tracker, seed: int, options: dict[str, Any]) -> str:
    from scipy.optimize import minimize

    x0, sigma0 = start(tracker.problem, seed)
    directions = sigma0 * np.eye(len(x0))
    if method == "Nelder-Mead":
        settings = {"initial_simplex": np.vstack([x0, x0 + directions]), "adaptive": True,
                    "xatol": 1e-12, "fatol": 1e-14}
    else:
        settings = {"direc": directions, "xtol": 1e-12, "ftol": 1e-14}
    settings.update({"maxfev": tracker.budget, "maxiter": tracker.budget, **options})
    result = minimize(tracker, x0, method=method, options=settings)
    return "converged" if result.success else "maxfev"


def body(algorithm: str, tracker: Tracker, seed: int, options: dict[str, Any]) -> str:
    """One scipy run on the tracker; "converged" when scipy reports success."""
    if algorithm == "de":
        return _differential_evolution(tracker, seed, options)
    return _local({"nelder-mead": "Nelder-Mead", "powell": "Powell"}[algorithm],
                  tracker, seed, options)
