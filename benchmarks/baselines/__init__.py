"""One run of one optimizer on one problem, ours or a reference library's, with the
same problem object, start, budget and accounting.

Every runner evaluates through one :class:`~nondiff.benchmarks.baselines.record.Tracker`, which
counts evaluations, never evaluates past the budget and keeps the best-so-far
precision by evaluation count; every runner returns a :class:`RunRecord` and is
deterministic given (problem, budget, seed): libraries get their seed explicitly, and
the global numpy/torch/``random`` generators are seeded for the run and restored after.
Continuous runs start from :func:`start` (uniform in the box, step 0.2 x its width);
as in BBOB the search is unconstrained (the box sets the start; only ``scipy:de`` and
``random`` use it as bounds). Constraints (``problem.constraints``, e.g. the knapsack's)
go to the runners that take them (``ours:*``, ``nevergrad:*``); for every runner only
feasible points count as found (``RunRecord.feasible``). A run stops at the budget, at
``target`` precision (default 1e-8, when the optimum is known) or when the method
itself stops.

Runners (``names()``; which problems each takes: ``handles(name, problem)``):
    ``ours:<name>``              any optimizer of ``nondiff.optim.registry`` through ``minimize``
    ``pycma``, ``pycma-bipop``   ``cma.fmin2`` without restarts / with 9 BIPOP restarts
    ``evotorch:<Alg>``           SNES, XNES, PGPE, CEM, CMAES (continuous); GA (bit strings)
    ``scipy:<method>``           de (differential evolution), nelder-mead, powell
    ``random``                   uniform random search, any problem
    ``nevergrad:<Alg>``          NGOpt, DiscreteOnePlusOne (optional extra ``nevergrad``)

Example:
    >>> from nondiff import problems
    >>> from nondiff.benchmarks.baselines import handles, run, runner
    >>> record = run("pycma", problems.get("sphere", dim=4), budget=1000, seed=0)
    >>> record.evaluations <= 1000, record.precision < 1e-8, record.stop
    (True, True, 'target')
    >>> handles("scipy:de", problems.get("onemax", dim=10))
    False
    >>> runner("ours:cmaes", popsize=8)  # options go to the optimizer
    Runner(name='ours:cmaes', options={'popsize': 8})
"""

from __future__ import annotations

import dataclasses
import importlib.util
from types import ModuleType
from typing import Any

from nondiff.optim import registry
from nondiff.optim.spaces import leaf_kinds
from nondiff.problems.base import Problem

from . import evotorch_runs, nevergrad_runs, ours, pycma_runs, random_search, scipy_runs
from .record import TARGET, RunRecord, Tracker, execute, start

__all__ = [
    "TARGET", "RunRecord", "Runner", "Tracker", "available", "handles", "names", "run",
    "runner", "start",
]  # fmt: skip

# Fixed runner names: (family module, the family's algorithm name, module it requires).
_FIXED: dict[str, tuple[ModuleType, str, str]] = {
    "pycma": (pycma_runs, "pycma", "cma"),
    "pycma-bipop": (pycma_runs, "pycma-bipop", "cma"),
    **{f"evotorch:{a}": (evotorch_runs, a, "evotorch") for a in evotorch_runs.ALGORITHMS},
    **{f"scipy:{a}": (scipy_runs, a, "scipy") for a in scipy_runs.ALGORITHMS},
    "random": (random_search, "random", "numpy"),
    **{f"nevergrad:{a}": (nevergrad_runs, a, "nevergrad") for a in nevergrad_runs.ALGORITHMS},
}
_INSTALL = {"nevergrad": "pip install -e '.[nevergrad]'"}


def names() -> list[str]:
    """Every runner name: ``ours:<name>`` for each registered optimizer, then the baselines."""
    return [f"ours:{name}" for name in ours.algorithms()] + list(_FIXED)


def _canonical(name: str) -> str:
    """The runner name as listed by :func:`names` (matched case-insensitively)."""
    if isinstance(name, str):
        for known in names():
            if known.lower() == name.strip().lower():
                return known
    raise registry.unknown_name_error("runner", name, names())


def _lookup(name: str) -> tuple[ModuleType, str, str]:
    name = _canonical(name)
    if name in _FIXED:
        return _FIXED[name]
    return ours, name[5:], "nondiff.optim"


def available(name: str) -> str | None:
    """None if runner ``name`` can run here, else the reason (a missing library).

    Raises:
        ValueError: unknown runner name (the message suggests the closest ones).
    """
    _, _, module = _lookup(name)
    if importlib.util.find_spec(module) is None:
        install = _INSTALL.get(module, f"pip install {module}")
        return f"{module} is not installed: {install}"
    return None


def _kind(problem: Problem) -> str:
    if problem.space is None:
        return "a continuous problem"
    return f"a problem over a space of {'/'.join(sorted(leaf_kinds(problem.space)))}"


@dataclasses.dataclass(frozen=True)
class Runner:
    """A runner name with its options; call it as ``runner(problem, budget, seed)``.

    Picklable (name and options only), so a process pool or Ray worker can run it.
    """

    name: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def handles(self, problem: Problem) -> bool:
        """Whether this runner can run ``problem`` (its kind, not library availability)."""
        family, algorithm, _ = _lookup(self.name)
        return bool(family.handles(algorithm, problem))

    def __call__(self, problem: Problem, budget: int, seed: int,
                 target: float | None = TARGET) -> RunRecord:
        """One run: ``budget`` evaluations at most, stopping at ``target`` precision.

        Raises:
            ValueError: a problem kind this runner does not handle, or a bad budget/seed.
            ImportError: the runner's library is not installed (see :func:`available`).
        """
        family, algorithm, _ = _lookup(self.name)
        if not family.handles(algorithm, problem):
            raise ValueError(
                f"runner {self.name!r} cannot run problem {problem.name!r} ({_kind(problem)}); "
                f"it handles {family.describe(algorithm)}. Check handles(name, problem) "
                "to skip such pairs.")
        reason = available(self.name)
        if reason is not None:
            raise ImportError(f"runner {self.name!r} is unavailable: {reason}")
        return execute(self.name, problem, budget, seed, target,
                       lambda tracker: family.body(algorithm, tracker, seed, dict(self.options)),
                       self.options)


def runner(name: str, **options: Any) -> Runner:
    """The runner ``name`` (see :func:`names`; case-insensitive) with library options.

    Raises:
        ValueError: unknown name (the message suggests the closest ones).
    """
    return Runner(_canonical(name), dict(options))


def handles(name: str, problem: Problem) -> bool:
    """Whether runner ``name`` can run ``problem`` (so a suite can skip other pairs)."""
    return runner(name).handles(problem)


def run(name: str, problem: Problem | str, budget: int, seed: int, dim: int = 10,
        instance: int = 1, target: float | None = TARGET, **options: Any) -> RunRecord:
    """Run ``name`` on ``problem`` (a Problem, or a registry name with ``dim``/``instance``)."""
    if isinstance(problem, str):
        from nondiff import problems as problem_registry

        problem = problem_registry.get(problem, dim=dim, instance=instance)
    return runner(name, **options)(problem, budget, seed, target=target)
