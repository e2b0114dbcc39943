"""The scheduler protocol: a decision at every report, and what to run next.

A scheduler sees every report as it arrives (:meth:`Scheduler.on_report`, with the
trial's curve already holding it) and answers ``continue``, ``stop`` (prune) or
``pause`` (return now, to be resumed from the checkpoint later). Schedulers that
manage a population (PBT) also say what a free worker should run
(:meth:`Scheduler.next_actions`): resume a paused trial, replace one by a copy of a
better one (:class:`Exploit`), wait, or start a new trial from the optimizer.

Every decision is a function of the trial records (configs and curves), never of
hidden state, so a study rebuilt from its SQLite file after a crash decides as the
one that ran.

Example:
    >>> from nondiff.hybrid.tune.schedulers.base import FIFO
    >>> scheduler = FIFO()
    >>> scheduler.bind(max_steps=10, mode="max")
    >>> scheduler.on_report(None, 3, 0.5, {})
    'continue'
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..study import TrialRecord
from ..trial import CONTINUE

__all__ = ["FIFO", "NEW", "WAIT", "Exploit", "Resume", "Scheduler", "check_number"]

NEW = "new"
"""next_actions: start a new trial with the optimizer's next config."""
WAIT = "wait"
"""next_actions: nothing to start until a running trial reports back."""


@dataclasses.dataclass(frozen=True)
class Resume:
    """Run the paused trial ``number`` on from its checkpoint."""

    number: int


@dataclasses.dataclass(frozen=True)
class Exploit:
    """End trial ``number`` and start a new trial from the checkpoint of ``donor`` with
    the encoded config ``row`` (``proposal``: the optimizer's (batch, row) it took)."""

    number: int
    donor: int
    row: np.ndarray
    proposal: tuple[int, int] | None = None


def check_number(name: str, value: Any, *, low: float, integer: bool = False,
                 high: float = math.inf, low_open: bool = False, fix: str = "") -> Any:
    """``value`` once it is a (integer) number in the range; a ValueError naming it."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if ok and integer:
        ok = isinstance(value, numbers.Integral)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        kind = "an integer" if integer else "a number"
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be {kind} in {bracket}{low}, {high}], got {value!r}"
                         + (f"; {fix}" if fix else ""))
    return int(value) if integer else float(value)


class Scheduler:
    """Base class; see the module docstring. Subclasses implement :meth:`on_report`."""

    name = "fifo"
    tells_clones = True
    """Whether a proposal equal to an ended trial's config may be told that trial's
    fitness instead of being trained (:mod:`~nondiff.hybrid.tune.driver`): False where a
    trial's outcome depends on more than its config (PBT: its population's exploits)."""

    def bind(self, max_steps: int, mode: str, *, space: Any = None, seed: int = 0,
             popsize: int = 1) -> None:
        """Fix what derives from the study (its steps, mode, space, seed); raise a
        ValueError, before any work, for settings that do not fit it."""
        self.max_steps, self.mode, self.seed = max_steps, mode, seed

    def on_report(self, trial: TrialRecord, step: int, metric: float,
                  trials: Mapping[int, TrialRecord]) -> str:
        """``continue``, ``stop`` or ``pause`` after ``trial`` reported ``metric`` at
        ``step`` (already the last entry of its curve); ``trials`` by number."""
        return CONTINUE

    def next_actions(self, trials: Mapping[int, TrialRecord], propose: Any) -> Any:
        """What to run next: :data:`NEW`, :data:`WAIT`, or a list of :class:`Resume` /
        :class:`Exploit`. ``propose()`` returns the optimizer's next ``(batch, row,
        encoded)`` or None."""
        return NEW

    def keeps_checkpoint(self, trial: TrialRecord) -> bool:
        """Whether the study keeps ``trial``'s last checkpoint (the driver deletes it
        otherwise, when the trial changes state). By default only a trial that may run
        on keeps it (``running``, ``paused``): ASHA, median stopping and FIFO never read
        an ended trial's checkpoint, and PBT copies only paused members. A scheduler
        whose :class:`Exploit` copies ended trials must keep theirs."""
        return trial.state in ("running", "paused")

    def settings(self) -> str:
        """What must not change when a study resumes (compared with the stored one)."""
        return repr(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FIFO(Scheduler):
    """No early stopping: every trial runs until ``train`` returns (``scheduler=None``)."""
