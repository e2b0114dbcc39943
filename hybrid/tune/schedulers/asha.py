"""Asynchronous successive halving (ASHA): prune at geometric rungs, never wait.

Li, Jamieson, Rostamizadeh, Gonina, Ben-Tzur, Hardt, Recht, Talwalkar, "A system for
massively parallel hyperparameter tuning", MLSys 2020 (arXiv:1810.05934).

Rungs lie at ``r_k = min_resource * eta**k`` steps (``k = 0, 1, ...``, below
``max_steps``). When a trial reaches rung ``r`` (its first report at a step >= r) its
value joins the rung's record, and it goes on iff it is in the top ``1/eta`` of the
values recorded at that rung so far, itself included::

    continue  <=>  rank(value among the k values at r) <= ceil(k / eta)      # Eq. (1)

(rank 1 is the best; ties share the better rank). Decisions are asynchronous: a
trial is judged against the trials that reached the rung before it, never waits for
later ones, so the first trial at a rung always goes on and a trial that would have
been pruned later is not called back. With all ``k`` trials recorded, exactly the top
``ceil(k / eta)`` of them pass. NaN and inf values never pass.

Example:
    >>> from nondiff.hybrid.tune.schedulers.asha import ASHA
    >>> asha = ASHA(eta=3, min_resource=1)
    >>> asha.bind(max_steps=20, mode="max")
    >>> asha.rungs
    [1, 3, 9]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

from ..study import TrialRecord, score
from ..trial import CONTINUE, STOP
from .base import Scheduler, check_number

__all__ = ["ASHA"]


class ASHA(Scheduler):
    """Asynchronous successive halving; see the module docstring.

    Args:
        eta: reduction factor > 1: the top ``1/eta`` of a rung goes on, and rungs are
            ``eta`` times apart.
        min_resource: steps of the first rung (>= 1).
        rungs: explicit rung steps (increasing, below ``max_steps``) instead of the
            geometric ones.
    """

    name = "asha"

    def __init__(self, eta: float = 3, min_resource: int = 1,
                 rungs: Sequence[int] | None = None) -> None:
        self.eta = check_number("ASHA eta", eta, low=1.0, low_open=True,
                                fix="the top 1/eta of each rung goes on; 3 is usual")
        self.min_resource = check_number("ASHA min_resource", min_resource, low=1,
                                         integer=True, fix="the steps of the first rung")
        if rungs is not None:
            rungs = [check_number("ASHA rungs entry", r, low=1, integer=True) for r in rungs]
            if not rungs or any(b <= a for a, b in itertools.pairwise(rungs)):
                raise ValueError(f"ASHA rungs must be increasing step counts, got {rungs!r}")
        self._given = None if rungs is None else list(rungs)
        self.rungs: list[int] = []
        self._recorded: dict[int, dict[int, float]] | None = None  # rung -> trial -> value

    def bind(self, max_steps, mode, **context) -> None:
        super().bind(max_steps, mode, **context)
        self._recorded = None
        if self._given is not None:
            if self._given[-1] >= max_steps:
                raise ValueError(f"ASHA rungs={self._given} must lie below max_steps="
                                 f"{max_steps} (a trial at max_steps is complete)")
            self.rungs = list(self._given)
            return
        if self.min_resource >= max_steps:
            raise ValueError(f"ASHA min_resource={self.min_resource} leaves no rung below "
                             f"max_steps={max_steps}; lower min_resource or raise max_steps")
        rungs, k = [], 0
        while True:
            r = round(self.min_resource * self.eta ** k)
            if r >= max_steps:
                break
            if not rungs or r > rungs[-1]:
                rungs.append(r)
            k += 1
        self.rungs = rungs

    def rung_value(self, trial: TrialRecord, rung: int) -> float | None:
        """The trial's value at ``rung``: its first report at a step >= ``rung``."""
        for step, value in trial.curve:
            if step >= rung:
                return value
        return None

    def on_report(self, trial, step, metric, trials: Mapping[int, TrialRecord]) -> str:
        previous = trial.curve[-2][0] if len(trial.curve) > 1 else trial.start_step
        crossed = [r for r in self.rungs if previous < r <= step]
        if not crossed:
            return CONTINUE
        rung = crossed[-1]
        mine = score(metric, self.mode)
        if mine == -math.inf:
            return STOP
        if self._recorded is None:  # built once from the records (a resumed study's too)
            self._recorded = {r: {t.number: score(v, self.mode) for t in trials.values()
                                  if (v := self.rung_value(t, r)) is not None}
                              for r in self.rungs}
        recorded = self._recorded[rung]
        recorded[trial.number] = mine
        pool = list(recorded.values())
        rank = 1 + sum(v > mine for v in pool)
        return CONTINUE if rank <= math.ceil(len(pool) / self.eta) else STOP  # Eq. (1)

    def __repr__(self) -> str:
        rungs = f", rungs={self._given}" if self._given is not None else ""
        return f"ASHA(eta={self.eta:g}, min_resource={self.min_resource}{rungs})"
