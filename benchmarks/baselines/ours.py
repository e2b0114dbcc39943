"""Our optimizers (any name of :mod:`nondiff.optim.registry`) through :func:`~nondiff.minimize`.

Continuous problems start from the shared :func:`~nondiff.benchmarks.baselines.record.start`
point and step size; problems with a space are searched through that space (its
encoded batch is evaluated in one call). A problem's ``constraints`` (``g <= 0``
feasible, e.g. the knapsack) go to ``minimize``, which ranks feasible points first
(Deb's rules). Options go to the optimizer's constructor,
except ``sigma0`` and ``bounds``, which go to ``minimize``. Cited methods are those of
the optimizers themselves (see each module of :mod:`nondiff.optim`).

Example:
    >>> from nondiff import problems
    >>> from nondiff.benchmarks.baselines import run
    >>> record = run("ours:cmaes", problems.get("sphere", dim=4), budget=1000, seed=0)
    >>> record.stop, record.evaluations <= 1000
    ('target', True)
"""

from __future__ import annotations

from typing import Any

from nondiff.optim import minimize, registry
from nondiff.optim.spaces import leaf_kinds
from nondiff.problems.base import Problem

from .record import Tracker, start


def algorithms() -> list[str]:
    """The registered optimizer names (each runs as ``ours:<name>``)."""
    return registry.names()


def handles(algorithm: str, problem: Problem) -> bool:
    """Whether the optimizer searches this problem's kind (real vectors or its space;
    optimizers of real vectors search any space through ``nondiff.optim.relaxed``)."""
    supported = registry.supported_kinds(algorithm)
    if problem.space is None:
        return "real" in supported
    return leaf_kinds(problem.space) <= supported


def describe(algorithm: str) -> str:
    """The problem kinds the optimizer handles, for error messages."""
    supported = sorted(registry.supported_kinds(algorithm))
    real = "continuous problems and " if "real" in supported else ""
    return f"{real}spaces whose leaves are {'/'.join(supported)}"


def body(algorithm: str, tracker: Tracker, seed: int, options: dict[str, Any]) -> str:
    """One run of ``minimize`` on the tracker; its stop reasons."""
    problem = tracker.problem
    options = dict(options)
    sigma0, bounds = options.pop("sigma0", None), options.pop("bounds", None)
    if problem.space is None:
        x0, step = start(problem, seed)
        sigma0 = step if sigma0 is None else sigma0
    else:
        x0 = problem.space
    result = minimize(tracker, x0, optimizer=algorithm, budget=tracker.budget, sigma0=sigma0,
                      bounds=bounds, vectorized=True, seed=seed, options=options,
                      progress=False, constraints=getattr(problem, "constraints", None))
    return ",".join(sorted(result.stop))
