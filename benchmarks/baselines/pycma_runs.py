"""Raw pycma: ``cma.fmin2`` without restarts, and with BIPOP restarts.

``pycma`` is ``cma.fmin2(f, x0, sigma0, options)`` (Hansen & Ostermeier 2001,
"Completely derandomized self-adaptation in evolution strategies", Evolutionary
Computation 9); ``pycma-bipop`` adds ``restarts=9, bipop=True`` (Hansen 2009,
"Benchmarking a BI-population CMA-ES on the BBOB-2009 function testbed", GECCO). Both
start from the shared point and step size, evaluate each generation in one batched
call (``parallel_objective``; the final-mean evaluation of pycma's default
``eval_final_mean`` goes through the same tracker), are seeded with ``seed + 1``
(pycma reads 0 as "draw a seed") and stop at the target precision. Options are pycma
options (e.g. ``{"popsize": 20}``). Continuous problems only.

Example:
    >>> from nondiff import problems
    >>> from nondiff.benchmarks.baselines import run
    >>> record = run("pycma", problems.get("sphere", dim=4), budget=1000, seed=0)
    >>> record.evaluations <= 1000, record.precision < 1e-8
    (True, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nondiff.problems.base import Problem

from .record import Tracker, start

ALGORITHMS = ("pycma", "pycma-bipop")


def handles(algorithm: str, problem: Problem) -> bool:
    """Continuous problems (no space)."""
    return problem.space is None


def describe(algorithm: str) -> str:
    """The problem kinds handled, for error messages."""
    return "continuous problems (no space)"


def body(algorithm: str, tracker: Tracker, seed: int, options: dict[str, Any]) -> str:
    """One ``cma.fmin2`` run on the tracker; pycma's stop reasons of its last run."""
    import cma

    x0, sigma0 = start(tracker.problem, seed)
    opts: dict[str, Any] = {"seed": seed + 1, "verbose": -9, "verb_log": 0, "verb_disp": 0,
                            "maxfevals": tracker.budget}
    if tracker.target is not None:
        opts["ftarget"] = tracker.loss_opt + tracker.target
    opts.update(options)
    restarts = {"restarts": 9, "bipop": True} if algorithm == "pycma-bipop" else {}

    def batch(solutions: list[np.ndarray]) -> list[float]:
        return tracker(np.asarray(solutions)).tolist()

    _, es = cma.fmin2(tracker, x0, sigma0, opts, parallel_objective=batch, **restarts)
    return ",".join(sorted(es.stop(check=False))) or "budget"
