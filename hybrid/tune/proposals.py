"""The optimizer behind a study: configs by ask, fitness of finished trials by tell.

The optimizer asks a whole population (its ``popsize``) at once; each row becomes
one trial when a worker is free, so a population may run on fewer workers than rows
and its trials may finish in any order. The population is told once every one of
its trials has ended (or paused: a PBT member waiting at the end of a round, ranked
where PBT itself ranks it), with the rows in ask order; no new population is asked
before that (workers wait instead), so every optimizer sees the ask/tell sequence it
was built for. The optimizer's state is stored before each ask and after each tell
(sealed bytes, :mod:`nondiff.optim.checkpoint`): a resumed study re-asks the open
population from the stored state, which gives the same rows bit for bit.

How pruned trials inform the optimizer (:func:`rank_fitness`): a trial's fitness is

    fitness = s + q,   q = (#trials whose value at step s is worse) / (#trials with a value at s)

to maximize (the optimizer minimizes ``-fitness``), where ``s`` is the last step the
trial reached and its value there is compared only with other trials' values at that
same step. So a trial stopped at a rung ranks below every trial the scheduler let go
further (the scheduler's own verdict at that rung), and among trials stopped at the
same step the ranking is by their values at that step: values at different steps
are never compared. Comparing raw last values would score pruned trials by early,
lower metrics, and scoring every trial at the highest step all share (the first
rung) would reward configs that learn fast early (a high learning rate) over those
that end best; both bias the search towards configs that look good cheaply. Failed
trials and trials whose last value is NaN/inf get NaN (ranked worst by the
optimizer). The fitness depends only on ranks, as CMA-ES, the ES family with rank
shaping and the GA's selection do.

Example:
    >>> from nondiff.hybrid.tune.proposals import rank_fitness
    >>> from nondiff.hybrid.tune.study import TrialRecord
    >>> trials = {0: TrialRecord(0, {}, [(1, 0.3), (3, 0.6)], "complete"),
    ...           1: TrialRecord(1, {}, [(1, 0.5)], "pruned"),
    ...           2: TrialRecord(2, {}, [(1, 0.1)], "pruned")}
    >>> [round(rank_fitness(trials[n], trials, "max"), 3) for n in range(3)]
    [3.0, 1.667, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from nondiff.optim.base import BaseOptimizer

from .storage import Storage, pack_state, unpack_state
from .study import TrialRecord, score

__all__ = ["Proposer", "rank_fitness"]

TERMINAL = ("complete", "pruned", "failed")
TOLD = (*TERMINAL, "paused")  # states in which a trial's row can be told


def rank_fitness(trial: TrialRecord, trials: Mapping[int, TrialRecord], mode: str) -> float:
    """The fitness (to maximize) of a finished trial; see the module docstring."""
    if trial.state == "failed" or not trial.curve:
        return math.nan
    step, value = trial.curve[-1]
    if not math.isfinite(value):
        return math.nan
    mine = score(value, mode)
    pool = [score(v, mode) for t in trials.values() if (v := t.value_at(step)) is not None]
    return step + sum(v < mine for v in pool) / len(pool)


class Proposer:
    """Rows from the optimizer's populations, told back when their trials have ended.

    Args:
        optimizer: the optimizer, built on the study's space (or its grid version).
        storage: where its states go.
        to_space: maps an asked row to the study space's encoding (a
            :meth:`~nondiff.hybrid.tune.space.Grid.to_space`); default: the row itself.
    """

    def __init__(self, optimizer: BaseOptimizer, storage: Storage,
                 to_space: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.optimizer, self.storage = optimizer, storage
        self.to_space = to_space if to_space is not None else np.copy
        self.batch: int | None = None  # the open (asked, untold) population
        self.next_id = 0
        self.x: np.ndarray | None = None
        self.rows: dict[int, int] = {}  # row -> trial number, of the open population

    def restore(self, assigned: Mapping[int, tuple[int, int]]) -> None:
        """Load the stored state; re-ask the open population. ``assigned``: trial number
        -> (batch, row) for the trials already made from rows."""
        batches = self.storage.batches()
        if not batches:
            return
        last = batches[-1]
        where = f"optimizer state of population {last['id']} in {self.storage.path!r}"
        self.next_id = last["id"] + 1
        if last["state_after"] is not None:
            self.optimizer.load_state_dict(unpack_state(last["state_after"], where))
            return
        self.optimizer.load_state_dict(unpack_state(last["state_before"], where))
        self.x = np.asarray(self.optimizer.ask())
        if len(self.x) != last["size"]:
            raise ValueError(f"{where}: the optimizer re-asked {len(self.x)} rows, the study "
                             f"had {last['size']}; resume with the same optimizer settings")
        self.batch = last["id"]
        self.rows = {row: n for n, (b, row) in assigned.items() if b == self.batch}

    def next(self) -> tuple[int, int, np.ndarray] | None:
        """``(batch, row, encoded)`` of the next unused row (asking a new population when
        the last one was told), or None while the open one waits for its tell."""
        if self.batch is None:
            state = pack_state(self.optimizer.state_dict())
            self.x = np.asarray(self.optimizer.ask())
            self.batch, self.rows = self.next_id, {}
            self.next_id += 1
            self.storage.add_batch(self.batch, len(self.x), state)
        free = [row for row in range(len(self.x)) if row not in self.rows]
        if not free:
            return None
        return self.batch, free[0], self.to_space(self.x[free[0]])

    def take(self) -> tuple[int, int, np.ndarray] | None:
        """Like :meth:`next`, and the row is reserved until :meth:`assign` names its trial."""
        proposal = self.next()
        if proposal is not None:
            self.rows[proposal[1]] = -1
        return proposal

    def assign(self, batch: int, row: int, number: int) -> None:
        """Row ``row`` of population ``batch`` is trial ``number`` now."""
        if batch == self.batch:
            self.rows[row] = number

    def maybe_tell(self, trials: Mapping[int, TrialRecord],
                   fitness: Callable[[TrialRecord], float]) -> dict[str, Any] | None:
        """Tell the open population once all its rows are trials that have ended or
        paused."""
        if self.batch is None or len(self.rows) < len(self.x):
            return None
        if any(n < 0 or trials[n].state not in TOLD for n in self.rows.values()):
            return None
        values = np.array([fitness(trials[self.rows[row]]) for row in range(len(self.x))])
        metrics = self.optimizer.tell(self.x, -values)  # the optimizer minimizes
        self.storage.tell_batch(self.batch, pack_state(self.optimizer.state_dict()))
        self.batch, self.x, self.rows = None, None, {}
        return metrics
