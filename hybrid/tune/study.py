"""What a study returns: every trial with its curve, the best config, metric vs compute.

A :class:`TrialRecord` holds one trial: its config, its curve of ``(step, metric)``
reports, how it ended (``complete``, ``pruned``, ``failed``; ``running`` or ``paused``
while the study is under way), the traceback of a failure and the steps it trained
(``compute``). :class:`Study` gathers them in report order: ``compute`` is the total
number of steps trained, :meth:`Study.best_curve` the best metric so far against it,
:meth:`Study.plot` draws both with matplotlib, :meth:`Study.summary` prints a table.

The best metric is the best value any trial reported (in the study's ``mode``); NaN
and inf reports never count as best. The best config is the config of that trial.

Example:
    >>> from nondiff.hybrid.tune.study import Study, TrialRecord
    >>> a = TrialRecord(0, {"lr": 0.1}, curve=[(1, 0.5), (2, 0.7)], state="complete")
    >>> b = TrialRecord(1, {"lr": 1.0}, curve=[(1, 0.2)], state="pruned")
    >>> study = Study([a, b], mode="max", order=[(0, 1), (1, 1), (0, 2)])
    >>> study.best_config, study.best_metric, study.compute
    ({'lr': 0.1}, 0.7, 3)
    >>> study.best_curve()
    [(1, 0.5), (2, 0.5), (3, 0.7)]
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

from .space import describe

__all__ = ["STATES", "Study", "TrialRecord", "score"]

STATES = ("running", "paused", "complete", "pruned", "failed")


def score(metric: float, mode: str) -> float:
    """``metric`` as a number to maximize: negated for ``mode="min"``, -inf if not finite."""
    if not math.isfinite(metric):
        return -math.inf
    return metric if mode == "max" else -metric


@dataclasses.dataclass
class TrialRecord:
    """One trial of a study.

    Attributes:
        number: 0, 1, ... in the order trials were created.
        config: the decoded configuration ``train`` got.
        curve: ``(step, metric)`` for every report that stands (steps redone after a
            crash replace the lost ones).
        state: ``complete``, ``pruned``, ``failed`` (``running``/``paused`` meanwhile).
        error: the traceback when ``failed``.
        compute: steps this trial trained (counted once, lost steps excluded).
        stop_reason: why a pruned trial stopped: ``scheduler``, ``budget``,
            ``exploited`` (PBT replaced it by a copy of a better trial).
        parent: for a PBT copy, the trial whose weights and config it started from.
        start_step: the step it started at (a PBT copy starts at its parent's).
        result: what ``train`` returned, if a number.
        encoded: the config as the optimizer's encoded row.
    """

    number: int
    config: dict[str, Any]
    curve: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    state: str = "running"
    error: str | None = None
    stop_reason: str | None = None
    parent: int | None = None
    start_step: int = 0
    result: float | None = None
    encoded: list[float] | None = dataclasses.field(default=None, repr=False)

    @property
    def compute(self) -> int:
        """Steps this trial trained: its last step less the step it started at."""
        return self.last_step - self.start_step

    @property
    def last_step(self) -> int:
        return self.curve[-1][0] if self.curve else self.start_step

    def value_at(self, step: int) -> float | None:
        """The metric reported at ``step`` (None if none)."""
        for s, value in self.curve:
            if s == step:
                return value
        return None


class Study:
    """The outcome of :func:`~nondiff.hybrid.tune.api.tune` (or a snapshot of it).

    Args:
        trials: the trial records.
        mode: ``"max"`` or ``"min"``.
        order: ``(trial number, step)`` of every standing report in arrival order.
        budget: the study's budget in steps (shown by :meth:`summary`).
        lost: steps trained but redone after a crash (not in ``compute``).
        clones: proposals whose config an ended trial already had, told that trial's
            fitness without training (:mod:`~nondiff.hybrid.tune.driver`).
    """

    def __init__(self, trials: Sequence[TrialRecord], mode: str = "max",
                 order: Sequence[tuple[int, int]] = (), budget: int | None = None,
                 lost: int = 0, name: str = "default", clones: int = 0) -> None:
        self.trials = list(trials)
        self.mode, self.budget, self.lost, self.name = mode, budget, lost, name
        self.clones = clones
        self._by_number = {t.number: t for t in self.trials}
        self._order = list(order)

    @property
    def compute(self) -> int:
        """Total steps trained by all trials (without steps lost to a crash)."""
        return sum(t.compute for t in self.trials)

    def _best(self) -> tuple[TrialRecord, float] | None:
        best: tuple[TrialRecord, float] | None = None
        for trial in self.trials:
            for _, value in trial.curve:
                if math.isfinite(value) and (best is None or score(value, self.mode)
                                             > score(best[1], self.mode)):
                    best = (trial, value)
        return best

    @property
    def best_trial(self) -> TrialRecord | None:
        """The trial that reported the best metric (None before any finite report)."""
        best = self._best()
        return None if best is None else best[0]

    @property
    def best_config(self) -> dict[str, Any] | None:
        best = self._best()
        return None if best is None else best[0].config

    @property
    def best_metric(self) -> float:
        """The best metric reported (NaN before any finite report)."""
        best = self._best()
        return math.nan if best is None else best[1]

    def best_curve(self) -> list[tuple[int, float]]:
        """``(compute, best metric so far)`` after every report, in arrival order."""
        out: list[tuple[int, float]] = []
        previous: dict[int, int] = {}
        compute, best = 0, math.nan
        for number, step in self._order:
            trial = self._by_number[number]
            compute += step - previous.get(number, trial.start_step)
            previous[number] = step
            value = trial.value_at(step)
            if value is not None and math.isfinite(value) and (
                    math.isnan(best) or score(value, self.mode) > score(best, self.mode)):
                best = value
            out.append((compute, best))
        return out

    def plot(self, path: str | os.PathLike[str]) -> None:
        """Save a plot of every report and the best metric so far against compute."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        compute, previous = 0, {}
        points: dict[str, list[tuple[int, float]]] = {}
        for number, step in self._order:
            trial = self._by_number[number]
            compute += step - previous.get(number, trial.start_step)
            previous[number] = step
            value = trial.value_at(step)
            if value is not None and math.isfinite(value):
                points.setdefault(trial.state, []).append((compute, value))
        for state, xy in sorted(points.items()):
            xs, ys = zip(*xy, strict=True)
            ax.scatter(xs, ys, s=8, alpha=0.5, label=f"reports ({state} trials)")
        curve = [(c, v) for c, v in self.best_curve() if math.isfinite(v)]
        if curve:
            xs, ys = zip(*curve, strict=True)
            ax.step(xs, ys, where="post", color="black", label="best so far")
        ax.set_xlabel("compute (training steps, all trials)")
        ax.set_ylabel(f"metric ({self.mode})")
        ax.set_title(f"study {self.name!r}: {len(self.trials)} trials")
        ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)

    def summary(self, top: int = 5) -> str:
        """A text table: counts by state, compute, and the best ``top`` trials."""
        counts = {state: sum(t.state == state for t in self.trials) for state in STATES}
        budget = f" of budget {self.budget}" if self.budget is not None else ""
        lines = [
            f"study {self.name!r}: {len(self.trials)} trials ("
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ")",
            f"compute: {self.compute} steps{budget}" + (f", {self.lost} lost to a crash and "
                                                        "redone" if self.lost else ""),
            f"best metric: {self.best_metric:.6g} ({self.mode})"
            + (f", trial {self.best_trial.number}" if self.best_trial is not None else ""),
        ]
        if self.clones:
            lines.append(f"{self.clones} proposals repeated the config of an ended trial and "
                         "were told its fitness without training")
        ranked = sorted((t for t in self.trials if any(math.isfinite(v) for _, v in t.curve)),
                        key=lambda t: -max(score(v, self.mode) for _, v in t.curve))
        if ranked:
            lines.append(f"{'trial':>5} {'state':>8} {'steps':>5} {'best':>10}  config")
            for t in ranked[:top]:
                best = max((v for _, v in t.curve), key=lambda v: score(v, self.mode))
                lines.append(f"{t.number:>5} {t.state:>8} {t.last_step:>5} {best:>10.5g}  "
                             f"{describe(t.config)}")
        nonfinite = [t.number for t in self.trials
                     if any(not math.isfinite(v) for _, v in t.curve)]
        if nonfinite:
            lines.append(f"trials that reported NaN or inf (ranked worst): {nonfinite}")
        failed = [t.number for t in self.trials if t.state == "failed"]
        if failed:
            lines.append(f"failed trials (tracebacks in study.trials[i].error): {failed}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Study(trials={len(self.trials)}, compute={self.compute}, "
                f"best_metric={self.best_metric:.6g})")
