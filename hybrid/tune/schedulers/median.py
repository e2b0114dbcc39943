"""Median stopping: stop a trial that is worse than the median of completed ones.

Golovin, Solnik, Moitra, Kochanski, Karro, Sculley, "Google Vizier: A Service for
Black-Box Optimization", KDD 2017, section 3.2.2 (automated early stopping): a trial
is stopped at step ``s`` if its best value so far is strictly worse than the median
of the running averages, up to ``s``, of the completed trials' curves::

    stop  <=>  best_{t <= s} y_t  <  median_{tau completed} mean_{t <= s} y^tau_t     # Eq. (1)

(for ``mode="min"`` the comparison flips). The rule starts once ``min_trials``
trials are complete, and never before ``grace_period`` steps. NaN and inf values
count as the worst.

Example:
    >>> from nondiff.hybrid.tune.schedulers.median import MedianStopping
    >>> from nondiff.hybrid.tune.study import TrialRecord
    >>> done = {i: TrialRecord(i, {}, curve=[(1, 0.5), (2, 0.7)], state="complete")
    ...         for i in range(3)}
    >>> rule = MedianStopping(min_trials=3)
    >>> rule.bind(max_steps=2, mode="max")
    >>> slow = TrialRecord(3, {}, curve=[(1, 0.55)])  # 0.55 beats the average 0.5 at step 1
    >>> rule.on_report(slow, 1, 0.55, {**done, 3: slow})
    'continue'
    >>> slow.curve.append((2, 0.58))  # best 0.58 < median of averages 0.6 at step 2
    >>> rule.on_report(slow, 2, 0.58, {**done, 3: slow})
    'stop'
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..study import TrialRecord, score
from ..trial import CONTINUE, STOP
from .base import Scheduler, check_number

__all__ = ["MedianStopping"]


class MedianStopping(Scheduler):
    """The median stopping rule; see the module docstring.

    Args:
        grace_period: no trial stops before this step.
        min_trials: completed trials needed before any trial stops.
    """

    name = "median"

    def __init__(self, grace_period: int = 1, min_trials: int = 3) -> None:
        self.grace_period = check_number("MedianStopping grace_period", grace_period, low=1,
                                         integer=True)
        self.min_trials = check_number("MedianStopping min_trials", min_trials, low=1,
                                       integer=True)

    def bind(self, max_steps, mode, **context) -> None:
        super().bind(max_steps, mode, **context)
        if self.grace_period > max_steps:
            raise ValueError(f"MedianStopping grace_period={self.grace_period} exceeds "
                             f"max_steps={max_steps}: no trial could ever stop; lower it")

    def on_report(self, trial, step, metric, trials: Mapping[int, TrialRecord]) -> str:
        if step < self.grace_period:
            return CONTINUE
        averages = []
        for other in trials.values():
            if other.state != "complete" or other.number == trial.number:
                continue
            values = [score(v, self.mode) for s, v in other.curve if s <= step]
            if values:
                averages.append(float(np.mean(values)))
        if len(averages) < self.min_trials:
            return CONTINUE
        best = max(score(v, self.mode) for s, v in trial.curve if s <= step)
        return STOP if best < float(np.median(averages)) else CONTINUE  # Eq. (1)

    def __repr__(self) -> str:
        return f"MedianStopping(grace_period={self.grace_period}, min_trials={self.min_trials})"
