"""Random search: uniform samples, the floor every optimizer should beat.

Continuous problems are sampled uniformly in their box (in [-4, 4]^dim when they have
none), problems with a space by ``space.sample``, in batches of ``batch`` (option,
default 100) from ``numpy.random.default_rng(seed)`` (Brooks 1958, "A discussion of
random methods for seeking maxima", Operations Research 6; Bergstra & Bengio 2012,
"Random search for hyper-parameter optimization", JMLR 13).

Example:
    >>> from nondiff import problems
    >>> from nondiff.benchmarks.baselines import run
    >>> record = run("random", problems.get("onemax", dim=8), budget=500, seed=0)
    >>> record.stop, record.best_f, record.evaluations <= 500
    ('target', 8.0, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nondiff.problems.base import Problem

from .record import Tracker

ALGORITHMS = ("random",)


def handles(algorithm: str, problem: Problem) -> bool:
    """Every problem."""
    return True


def describe(algorithm: str) -> str:
    """The problem kinds handled, for error messages."""
    return "every problem"


def body(algorithm: str, tracker: Tracker, seed: int, options: dict[str, Any]) -> None:
    """Sample until the tracker stops the run (budget or target)."""
    batch = options.get("batch", 100)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"random search option batch must be a positive integer, got {batch!r}")
    unknown = set(options) - {"batch"}
    if unknown:
        raise ValueError(f"random search has no options {sorted(unknown)}; it takes 'batch'")
    problem = tracker.problem
    rng = np.random.default_rng(seed)
    if problem.space is None:
        lower, upper = problem.bounds if problem.bounds is not None else (-4.0, 4.0)
    while True:
        n = max(min(batch, tracker.remaining), 1)
        if problem.space is not None:
            tracker(problem.space.sample(rng, n))
        else:
            tracker(rng.uniform(lower, upper, size=(n, problem.dim)))
