"""The record of one run and the objective wrapper every runner evaluates through.

:class:`Tracker` wraps a :class:`~nondiff.problems.base.Problem` for every runner, ours and the
reference libraries' alike, so that all of them share one budget accounting: it
counts evaluations, never evaluates past the budget (a batch that would cross it is
cut at the budget and the run is stopped by a private exception the runner's
executor catches), turns values into losses (``-f`` for maximized problems) and keeps
the best-so-far precision by exact evaluation count. Precision is the loss gap to
the optimum, ``loss - loss_opt >= 0``, as in COCO's BBOB (Hansen et al. 2021, "COCO:
a platform for comparing continuous optimizers in a black-box setting", Optimization
Methods and Software 36); when the optimum is unknown it is the best loss itself and
``RunRecord.f_opt_known`` is False.

Constrained problems (a ``constraints(x)`` method, ``g <= 0`` feasible, e.g. the
knapsack): the tracker evaluates ``g`` on every point it evaluates, whatever the
runner does with it, and only feasible points count for the best value, the
precision and the trace (an infeasible point is scored like a NaN), so a runner that
cannot take constraints is never ranked by a value it had no right to;
``RunRecord.feasible`` says whether the run evaluated any feasible point
(``Tracker.last_violation`` gives a runner that can take them the violations).

Example:
    >>> import numpy as np
    >>> from nondiff import problems
    >>> from nondiff.benchmarks.baselines.record import RunRecord, Tracker
    >>> onemax = problems.get("onemax", dim=4)
    >>> tracker = Tracker(onemax, budget=3)
    >>> tracker(np.array([[0, 0, 1, 0], [1, 1, 1, 0]])).tolist()  # losses: -f
    [-1.0, -3.0]
    >>> tracker.trace.tolist()  # (evaluations, best precision so far)
    [[1.0, 3.0], [2.0, 1.0]]
    >>> record = tracker.record("random", seed=0, seconds=0.0, stop="budget")
    >>> record.best_f, record.precision, RunRecord.from_dict(record.to_dict()) == record
    (3.0, 1.0, True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from nondiff.optim.shaping import constraint_violation
from nondiff.problems.base import Problem

TARGET = 1e-8
"""Default precision at which a run stops (when the optimum is known)."""


class _Stop(Exception):
    """Raised by :class:`Tracker` when the run is over (budget used or target hit)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _json_float(value: float) -> float | str:
    value = float(value)
    return value if math.isfinite(value) else str(value)  # "inf", "-inf", "nan"


@dataclasses.dataclass
class RunRecord:
    """The outcome of one (problem, optimizer, seed) run.

    Attributes:
        optimizer: runner name, e.g. ``"pycma"`` or ``"ours:cmaes"``.
        problem: the problem's name; ``instance`` its instance (None if it has none).
        dim: search-space dimension (encoded size for discrete problems).
        seed: the run's seed.
        budget: evaluations allowed.
        evaluations: evaluations used (never more than ``budget``).
        precision: best loss - optimal loss (>= 0), loss = f or -f if maximized; the best
            loss itself when ``f_opt_known`` is False; inf before any evaluation.
        best_f: best value found, in the problem's own sense (maximum if maximized).
        seconds: wall time of the run.
        stop: why it ended: ``"budget"``, ``"target"``, or the library's reasons.
        trace: ``(k, 2)`` float array of (evaluations, best precision so far): one row at
            each improvement, at its exact evaluation count, and one at the last evaluation.
        f_opt_known: whether the problem's optimum is known.
        target: precision at which the run stopped early (None: ran the whole budget).
        options: the runner's options (library settings).
        feasible: for a constrained problem, whether ``best_f`` is the value of a feasible
            point (False: the run evaluated none, ``best_f`` is NaN, precision inf);
            None for a problem without constraints.
    """

    optimizer: str
    problem: str
    dim: int
    seed: int
    budget: int
    evaluations: int
    precision: float
    best_f: float
    seconds: float
    stop: str
    trace: np.ndarray
    f_opt_known: bool = True
    instance: int | None = None
    target: float | None = TARGET
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    feasible: bool | None = None

    def evaluations_to(self, target: float) -> float:
        """First evaluation count at which precision <= target (inf if never)."""
        hit = np.nonzero(self.trace[:, 1] <= target)[0]
        return float(self.trace[hit[0], 0]) if hit.size else math.inf

    def precision_at(self, evaluations: float) -> float:
        """Best precision after ``evaluations`` evaluations (inf before the first)."""
        row = np.searchsorted(self.trace[:, 0], evaluations, side="right") - 1
        return float(self.trace[row, 1]) if row >= 0 else math.inf

    def same_outcome(self, other: RunRecord) -> bool:
        """Equal in everything but wall time (what a rerun with the same seed gives)."""
        mine, theirs = self.to_dict(), other.to_dict()
        del mine["seconds"], theirs["seconds"]
        return mine == theirs

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (non-finite floats as the strings "inf"/"-inf"/"nan")."""
        data = dataclasses.asdict(self)
        data["trace"] = [[float(e), _json_float(p)] for e, p in self.trace.tolist()]
        for key in ("precision", "best_f", "seconds"):
            data[key] = _json_float(data[key])
        data["target"] = None if self.target is None else _json_float(self.target)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """The record of :meth:`to_dict` (unknown keys are a ValueError)."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"RunRecord.from_dict got unknown keys {sorted(unknown)}; "
                             f"known: {sorted(names)}")
        values = dict(data)
        values["trace"] = np.asarray(
            [[float(e), float(p)] for e, p in data.get("trace", [])], dtype=np.float64
        ).reshape(-1, 2)
        for key in ("precision", "best_f", "seconds"):
            values[key] = float(values[key])
        if values.get("target") is not None:
            values["target"] = float(values["target"])
        return cls(**values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunRecord):
            return NotImplemented
        mine, theirs = self.to_dict(), other.to_dict()
        return mine == theirs


class Tracker:
    """A problem as a loss function with a hard budget and a best-so-far trace.

    Call it on one point ``(dim,)`` (returns a float) or a batch ``(n, dim)`` (returns
    ``(n,)`` losses), numpy or torch (values come back as numpy). It evaluates at most
    ``budget`` points in total: of a batch that crosses the budget only the rows that
    fit are evaluated, then the run stops; it also stops once precision reaches
    ``target`` (when the optimum is known). Stopping raises an exception that
    :func:`execute` catches; every later call raises again, so a library that swallows
    it still cannot evaluate more.

    Args:
        problem: the problem (its ``evaluations`` counter advances with ours).
        budget: evaluations allowed, >= 1.
        target: stop at this precision; None runs the whole budget.
    """

    def __init__(self, problem: Problem, budget: int, target: float | None = None) -> None:
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
            raise ValueError(f"budget must be a positive number of evaluations, got {budget!r}")
        number = isinstance(target, (int, float, np.integer, np.floating)) and \
            not isinstance(target, bool)
        if target is not None and not (number and target >= 0):
            raise ValueError(f"target must be a precision >= 0 or None, got {target!r}")
        self.problem, self.budget = problem, int(budget)
        self.sign = -1.0 if problem.maximize else 1.0
        f_opt = problem.f_opt
        self.f_opt_known = f_opt is not None
        self.loss_opt = self.sign * float(f_opt) if f_opt is not None else 0.0
        self.target = float(target) if target is not None and self.f_opt_known else None
        self.evaluations = 0
        self.best_loss = math.inf
        self.best_x: np.ndarray | None = None
        self.reason: str | None = None
        self._rows: list[tuple[float, float]] = []
        constraints = getattr(problem, "constraints", None)
        self.constraints = constraints if callable(constraints) else None
        self.last_violation: np.ndarray | None = None  # of the last call's points

    @property
    def remaining(self) -> int:
        """Evaluations left in the budget."""
        return self.budget - self.evaluations

    def precision(self, loss: float) -> float:
        """Precision of a loss: ``max(loss - loss_opt, 0)``, or the loss if f_opt is unknown."""
        if not self.f_opt_known:
            return float(loss)
        return max(float(loss) - self.loss_opt, 0.0)

    def _stop(self, reason: str) -> None:
        self.reason = self.reason or reason
        raise _Stop(self.reason)

    def __call__(self, x: Any) -> Any:
        if self.reason is not None:
            raise _Stop(self.reason)
        if self.remaining <= 0:
            self._stop("budget")
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        batch = np.array(x, dtype=np.float64)  # a writable copy (libraries pass read-only views)
        single = batch.ndim == 1
        batch = batch[None] if single else batch
        part = batch[: self.remaining]
        losses = self.sign * np.asarray(self.problem(part), dtype=np.float64).reshape(-1)
        clean = np.where(np.isnan(losses), math.inf, losses)
        if self.constraints is not None:  # only feasible points count as found
            self.last_violation = constraint_violation(self.constraints(part), len(part))
            clean = np.where(self.last_violation > 0, math.inf, clean)
        running = np.minimum.accumulate(np.concatenate([[self.best_loss], clean]))
        better = np.flatnonzero(clean < running[:-1])  # strict improvements
        for i in better:
            self._rows.append((float(self.evaluations + i + 1), self.precision(clean[i])))
        if better.size:
            self.best_loss = float(clean[better[-1]])
            self.best_x = part[better[-1]].copy()
        self.evaluations += len(part)
        if self.target is not None and self.precision(self.best_loss) <= self.target:
            self._stop("target")
        if len(part) < len(batch):
            self._stop("budget")
        return float(losses[0]) if single else losses

    @property
    def trace(self) -> np.ndarray:
        """``(k, 2)`` (evaluations, best precision so far), ending at the last evaluation."""
        rows = list(self._rows)
        if rows and rows[-1][0] < self.evaluations:
            rows.append((float(self.evaluations), rows[-1][1]))
        return np.asarray(rows, dtype=np.float64).reshape(-1, 2)

    def record(self, optimizer: str, seed: int, seconds: float, stop: str,
               options: dict[str, Any] | None = None) -> RunRecord:
        """The :class:`RunRecord` of the run so far."""
        trace = self.trace
        best = self.best_loss
        return RunRecord(
            optimizer=optimizer, problem=self.problem.name, dim=self.problem.dim,
            seed=int(seed), budget=self.budget, evaluations=self.evaluations,
            precision=float(trace[-1, 1]) if trace.size else math.inf,
            best_f=self.sign * best if math.isfinite(best) else math.nan,
            seconds=float(seconds), stop=stop, trace=trace, f_opt_known=self.f_opt_known,
            instance=getattr(self.problem, "instance", None), target=self.target,
            options=dict(options or {}),
            feasible=None if self.constraints is None else math.isfinite(best),
        )


@contextlib.contextmanager
def isolated_rngs(seed: int) -> Iterator[None]:
    """Seed the global numpy, torch and ``random`` generators from ``seed`` for the
    duration (for libraries that draw from them) and restore their states after."""
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed % 2**32)  # noqa: NPY002  (libraries that draw from the global one)
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)  # noqa: NPY002
            random.setstate(python_state)


def start(problem: Problem, seed: int) -> tuple[np.ndarray, float]:
    """Start point and step size shared by every optimizer for this seed.

    Uniform in the problem's box (in [-4, 4]^dim when unbounded) with step 0.2 x the
    mean box width; for a problem with a space, a uniform sample of the space.
    """
    rng = np.random.default_rng(seed)
    if problem.space is not None:
        lower, upper = problem.space.bounds()
        width = (upper - lower)[np.isfinite(upper - lower)]
        return problem.space.sample(rng, 1)[0], float(0.2 * width.mean()) if width.size else 1.0
    if problem.bounds is None:
        return rng.uniform(-4, 4, problem.dim), 2.0
    lower, upper = problem.bounds
    return rng.uniform(lower, upper), float(0.2 * np.mean(upper - lower))


def execute(optimizer: str, problem: Problem, budget: int, seed: int, target: float | None,
            body: Callable[[Tracker], str | None],
            options: dict[str, Any] | None = None) -> RunRecord:
    """Run ``body(tracker)`` under isolated, seeded global RNGs; the record of the run.

    ``body`` returns its stop reason (None: "budget"); the tracker's own stop (budget
    or target) takes precedence, whether the library let it through or swallowed it.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    tracker = Tracker(problem, budget, target)
    began = time.perf_counter()
    with isolated_rngs(int(seed)):
        try:
            stop = body(tracker) or "budget"
        except _Stop as signal:
            stop = signal.reason
    seconds = time.perf_counter() - began
    if tracker.reason is not None:
        stop = tracker.reason
    return tracker.record(optimizer, seed, seconds, stop, options)
