"""The loop of a study: start trials on free slots, answer reports, store everything.

The driver is the only process that decides and the only writer of the storage. It
keeps the trial records (configs and curves), asks the scheduler at every report,
creates trials from the optimizer's rows (:mod:`~nondiff.hybrid.tune.proposals`) or
from the scheduler's actions (PBT), tells the optimizer when a population has ended,
and stops starting work once the budget of steps is spent (trials under way are
stopped at their next report, so the budget is exceeded by at most the steps in
flight, one per other running trial). With ``parallel > 1`` the order in which the
running trials report decides which of them the end of the budget cuts and at which
step: a study whose budget ends inside a population is reproducible with
``parallel=1``, one whose budget ends with a whole population in any case.

Every report is stored with the scheduler's decision on it (one row), and the writes
of one event share a transaction: a trial's end with the optimizer's tell and the
deletion of its checkpoint; a scheduler's actions (PBT: resumed members, and each
copy with the checkpoint it copies) all together.

Restart after a crash (the same ``tune(...)`` call on the same storage): the records
are read back, and each trial that was running at the crash ends as the study that
was never killed would have ended it, or runs on:

- its last report reached ``max_steps`` or was answered ``stop`` (ASHA, median
  stopping, the budget): it ends there (``complete``, ``pruned``) with that report
  standing, even when the checkpoint of that step was not written (a finished trial
  needs none);
- its last report was answered ``pause`` (PBT), the checkpoint of that step is stored
  and no scheduler resumed it since: it is ``paused``;
- otherwise it resumes from its last checkpoint (from scratch without one); the
  reports it made after that checkpoint are marked lost (the steps they stood for are
  counted in ``Study.lost``, not in ``compute``) and redone.

Finished trials are never run again. What ``train`` returned is lost for a trial that
ended at restart (its ``result`` stays None).

Checkpoints: a trial's checkpoint is deleted, in the transaction that ends it, as soon
as the scheduler cannot need it
(:meth:`~nondiff.hybrid.tune.schedulers.base.Scheduler.keeps_checkpoint`: by default
once the trial is ``complete``, ``pruned`` or ``failed``; under PBT only running and
paused members keep theirs, the only ones exploit can copy), so the file holds at most
one checkpoint per live trial.

Clones: an optimizer may propose a config it has already seen (``one-plus-lambda`` and
the GA on a grid often do). A proposal whose decoded config equals that of a trial
that already ended ``complete``, or ``pruned`` by the scheduler (not by the budget),
and that trained from scratch (not a PBT copy) is not trained again: its row is told
that trial's fitness (:func:`~nondiff.hybrid.tune.proposals.rank_fitness`, the same
rank the trial itself gets), no trial is created and no budget is spent
(``Study.clones`` counts them). So that an optimizer that keeps proposing seen
configs cannot spin the study forever, after :data:`MAX_CLONES_IN_A_ROW` clones in a
row (no trial created between them) the next clone is trained as a new trial. Each
clone is stored with the population, row and trial it reuses, in the transaction of
its tell, so a resumed study rebuilds the open population and the count in a row and
decides as the study that never stopped. Not under schedulers whose trials depend on
more than their config (:attr:`Scheduler.tells_clones`, False for PBT).

A trial that raises is recorded as failed (its traceback kept) and the study goes on;
after :data:`MAX_FAILURES_IN_A_ROW` failures in a row it stops with a RuntimeError
(a ``train`` that fails for every config would otherwise run forever: a trial that
fails before reporting uses no budget). A trial that raises ``KeyError`` on a string
that is not a name of the space (a misspelt ``config["learning_rate"]``) stops the
study at once with a ValueError naming the key and the space's leaves; the failed
trial is recorded, so the same ``tune(...)`` call resumes once ``train`` is fixed.

Example:
    >>> from nondiff.hybrid.tune.driver import Driver
    >>> Driver.__name__  # driven by nondiff.tune.tune(); see its docstring
    'Driver'
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import numpy as np
from nondiff.optim.base import BaseOptimizer
from nondiff.optim.spaces import Product

from .executors import Executor
from .proposals import TERMINAL, Proposer, rank_fitness
from .schedulers import NEW, WAIT, Exploit, Resume, Scheduler
from .space import describe, leaf_names
from .storage import Storage
from .study import Study, TrialRecord
from .trial import CONTINUE, PAUSE, STOP, Job

__all__ = ["MAX_CLONES_IN_A_ROW", "MAX_FAILURES_IN_A_ROW", "Driver"]

MAX_FAILURES_IN_A_ROW = 10
"""The study stops (RuntimeError) after this many trials failed in a row."""

MAX_CLONES_IN_A_ROW = 20
"""After this many proposals in a row were told an ended trial's fitness, the next
clone is trained (see the module docstring)."""


def _names(space: Product) -> set[str]:
    """Every name of ``space``: keys at any depth and leaf paths (``"sgd.momentum"``)."""
    names = set(leaf_names(space, constants=True))
    for name, part in space.spaces.items():
        names.add(name)
        if isinstance(part, Product):
            names |= _names(part)
    return names


class Driver:
    """Runs one study; see the module docstring."""

    def __init__(self, *, space: Product, optimizer: BaseOptimizer, scheduler: Scheduler,
                 executor_factory: Callable[[], Executor], storage: Storage, budget: int,
                 max_steps: int, mode: str, parallel: int, name: str,
                 to_space: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.space, self.scheduler, self.storage = space, scheduler, storage
        self.executor_factory = executor_factory
        self.budget, self.max_steps, self.mode = budget, max_steps, mode
        self.parallel, self.name = parallel, name
        self.proposer = Proposer(optimizer, storage, to_space)
        self.records: dict[int, TrialRecord] = {}
        self.order: list[tuple[int, int]] = []
        self.queue: collections.deque[int] = collections.deque()  # trials ready to start
        self.slots: dict[int, int] = {}  # slot -> trial number
        self.decisions: dict[int, tuple[str, str | None]] = {}
        self.previous: dict[int, int] = {}  # trial -> last step of its current job
        self.checkpoint_step: dict[int, int] = {}
        self.enqueued = 0  # trials queued so far (their order is stored: a resume keeps it)
        self.compute = 0
        self.lost = 0
        self.executor: Executor | None = None
        self.failures = 0  # trials failed in a row
        self.clones = 0  # proposals told an ended trial's fitness
        self.clones_in_a_row = 0  # ... since the last trial was created
        self.keys: dict[int, bytes] = {}  # trial -> its config as a canonical encoding

    # ----- restore ---------------------------------------------------------------------
    def restore(self) -> None:
        """Read the stored study (if any): records, the lost steps, the optimizer; end
        the trials whose last decision ended them (see the module docstring)."""
        rows = self.storage.trials()
        standing: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
        for report in self.storage.reports():
            standing[report["trial"]].append(report)
        ended: dict[int, tuple[str, str | None]] = {}  # trial -> its last decision
        for row in sorted(rows, key=lambda row: (row["queued"] or 0, row["number"])):
            number = row["number"]
            saved = self.storage.checkpoint(number)
            if saved is not None:
                self.checkpoint_step[number] = saved[0]
            if row["state"] != "running":
                continue
            last = standing[number][-1] if standing[number] else None
            if last is not None and (last["step"] >= self.max_steps or last["decision"] == STOP
                                     or (last["decision"] == PAUSE
                                         and self.checkpoint_step.get(number) == last["step"]
                                         and row["resumed_step"] != last["step"])):
                ended[number] = (last["decision"], last["reason"])
            else:  # in flight at the crash: back to its checkpoint
                self.storage.supersede(number, saved[0] if saved else row["start_step"])
                self.queue.append(number)
        self.lost = self.storage.lost()
        self.enqueued = max((row["queued"] or 0 for row in rows), default=0)
        for row in rows:
            self.records[row["number"]] = TrialRecord(
                number=row["number"], config=self.space.decode(row["encoded"]),
                state=row["state"], error=row["error"], stop_reason=row["stop_reason"],
                parent=row["parent"], start_step=row["start_step"], result=row["result"],
                encoded=row["encoded"])
        for report in self.storage.reports():
            record = self.records[report["trial"]]
            record.curve.append((report["step"], report["metric"]))
            self.compute += report["delta"]
            self.order.append((report["trial"], report["step"]))
        assigned = {row["number"]: (row["batch"], row["row"]) for row in rows
                    if row["batch"] is not None}
        self.proposer.restore(assigned)
        clones = self.storage.clones()
        self.clones = len(clones)
        self.clones_in_a_row = sum(clone["after"] == len(rows) for clone in clones)
        for clone in clones:  # the rows of the open population that were clones
            self.proposer.assign(clone["batch"], clone["row"], clone["trial"])
        with self.storage.transaction():
            for number, (decision, reason) in ended.items():
                record = self.records[number]
                state, fields = self._verdict(record, decision, reason)
                self._end(record, state, **fields)
            for record in self.records.values():  # what a file of schema 1 kept
                self._drop_checkpoint(record)

    # ----- the loop --------------------------------------------------------------------
    def run(self) -> Study:
        try:
            self._fill()
            while self.slots:
                for slot, message in self.executor.wait():
                    self._handle(slot, message)
                self._fill()
            paused = [n for n, t in self.records.items() if t.state == "paused"]
            if self.compute < self.budget and paused:  # nothing runs, nothing can start
                raise RuntimeError(f"the study stalled with trials {paused} paused and "
                                   f"{self.budget - self.compute} steps of budget left: the "
                                   f"scheduler {self.scheduler!r} resumes none of them")
        finally:
            if self.executor is not None:
                self.executor.close()
        with self.storage.transaction():
            for record in self.records.values():  # the budget ended them
                if record.state not in TERMINAL:
                    record.state, record.stop_reason = "pruned", "budget"
                    self.storage.update_trial(record.number, state="pruned",
                                              stop_reason="budget")
                    self._drop_checkpoint(record)
        return self.study()

    def study(self) -> Study:
        return Study(sorted(self.records.values(), key=lambda t: t.number), mode=self.mode,
                     order=self.order, budget=self.budget, lost=self.lost, name=self.name,
                     clones=self.clones)

    def _fill(self) -> None:
        while len(self.slots) < self.parallel and self.compute < self.budget:
            number = self._next_trial()
            if number is None:
                return
            self._start(number)

    def _next_trial(self) -> int | None:
        if self.queue:
            return self.queue.popleft()
        with self.storage.transaction():  # the scheduler's actions: all of them or none
            actions = self.scheduler.next_actions(self.records, self.proposer.take)
            if actions == WAIT:
                return None
            if actions == NEW:
                while (proposal := self.proposer.next()) is not None:
                    batch, row, encoded = proposal
                    original = self._clone_of(encoded)
                    if original is None or self.clones_in_a_row >= MAX_CLONES_IN_A_ROW:
                        return self._create(encoded, batch=batch, row=row)
                    self._tell_clone(batch, row, original)
                return None
            for action in actions:
                if isinstance(action, Resume):
                    record = self.records[action.number]
                    record.state = "running"
                    self.enqueued += 1
                    self.storage.update_trial(action.number, state="running",
                                              resumed_step=record.last_step,
                                              queued=self.enqueued)
                    self.queue.append(action.number)
                elif isinstance(action, Exploit):
                    self.queue.append(self._exploit(action))
        return self.queue.popleft() if self.queue else None

    def _key(self, encoded: Any) -> bytes:
        """The config of an encoded row as bytes: equal iff the decoded configs are."""
        canonical = self.space.encode(self.space.decode([float(v) for v in encoded]))
        return np.asarray(canonical, dtype=np.float64).tobytes()

    def _clone_of(self, encoded: Any) -> int | None:
        """The first trial that ended with the config of ``encoded`` and whose fitness
        a clone may be told (see the module docstring), or None."""
        if not self.scheduler.tells_clones:
            return None
        key = None
        for number, record in sorted(self.records.items()):
            if record.parent is not None or record.start_step != 0 or not (
                    record.state == "complete"
                    or (record.state == "pruned" and record.stop_reason == "scheduler")):
                continue
            if number not in self.keys:
                self.keys[number] = self._key(record.encoded)
            key = self._key(encoded) if key is None else key
            if self.keys[number] == key:
                return number
        return None

    def _tell_clone(self, batch: int, row: int, original: int) -> None:
        """Row ``row`` of population ``batch`` gets trial ``original``'s fitness; stored
        with the tell it may complete (the caller's transaction)."""
        self.storage.add_clone(batch, row, original, after=len(self.records))
        self.proposer.assign(batch, row, original)
        self.clones += 1
        self.clones_in_a_row += 1
        self.proposer.maybe_tell(self.records,
                                 lambda trial: rank_fitness(trial, self.records, self.mode))

    def _create(self, encoded: Any, *, batch: int | None = None, row: int | None = None,
                parent: int | None = None, start_step: int = 0) -> int:
        number = len(self.records)
        self.clones_in_a_row = 0
        encoded = [float(v) for v in np.asarray(encoded, dtype=np.float64)]
        config = self.space.decode(encoded)
        self.enqueued += 1
        self.storage.add_trial(number, encoded, describe(config), batch=batch, row=row,
                               parent=parent, start_step=start_step, queued=self.enqueued)
        self.records[number] = TrialRecord(number, config, parent=parent, start_step=start_step,
                                           encoded=encoded)
        if batch is not None:
            self.proposer.assign(batch, row, number)
        return number

    def _exploit(self, action: Exploit) -> int:
        """PBT: end ``action.number``; a new trial from the donor's checkpoint."""
        saved = self.storage.checkpoint(action.donor)
        if saved is None:
            raise ValueError(f"scheduler PBT: trial {action.donor} has no checkpoint to copy; "
                             "train must call trial.checkpoint(state) after each "
                             "trial.report(step, metric)")
        with self.storage.transaction():  # the copy exists with its checkpoint, or not at all
            self._end(self.records[action.number], "pruned", stop_reason="exploited")
            batch, row = action.proposal if action.proposal is not None else (None, None)
            number = self._create(action.row, batch=batch, row=row, parent=action.donor,
                                  start_step=saved[0])
            self.storage.put_checkpoint(number, saved[0], saved[1])
        self.checkpoint_step[number] = saved[0]
        return number

    def _start(self, number: int) -> None:
        if self.executor is None:
            self.executor = self.executor_factory()
        record = self.records[number]
        saved = self.storage.checkpoint(number)
        if saved is not None:
            start, data = saved
        else:  # no checkpoint: from scratch (a resumed trial's reports were superseded)
            start, data = record.start_step, None
        self.previous[number] = start
        self.decisions[number] = (CONTINUE, None)
        slot = min(set(range(self.parallel)) - set(self.slots))
        self.slots[slot] = number
        self.executor.start(slot, Job(number=number, config=record.config,
                                      max_steps=self.max_steps, start_step=start,
                                      checkpoint=data))

    # ----- messages --------------------------------------------------------------------
    def _handle(self, slot: int, message: tuple[Any, ...]) -> None:
        kind, number = message[0], message[1]
        record = self.records[number]
        if kind == "report":
            _, _, step, metric = message
            delta = step - self.previous[number]
            self.previous[number] = step
            record.curve.append((step, metric))
            self.compute += delta
            self.order.append((number, step))
            # the scheduler sees every report (its records are a function of the curves,
            # which a resumed study rebuilds from all of them), the budget overrides it
            decision = self.scheduler.on_report(record, step, metric, self.records)
            reason = "scheduler" if decision == STOP else None
            if self.compute >= self.budget:
                decision, reason = STOP, "budget"
            self.storage.add_report(number, step, metric, delta=delta, decision=decision,
                                    reason=reason)  # one row: stored together
            self.decisions[number] = (decision, reason)
            self.executor.reply(slot, decision)
        elif kind == "checkpoint":
            self.storage.put_checkpoint(number, message[2], message[3])
            self.checkpoint_step[number] = message[2]
        elif kind == "done":
            del self.slots[slot]
            _, _, result, reports = message
            record.result = result
            if reports == 0:
                error = (f"train never called trial.report(step, metric) in trial {number} "
                         f"(config {describe(record.config)}); call it after every step (e.g. "
                         "epoch) with the validation metric: the schedulers and the optimizer "
                         "learn from these reports")
                self._end(record, "failed", error=error)
                raise ValueError(error)
            decision, reason = self.decisions[number]
            state, fields = self._verdict(record, decision, reason)
            if state == "paused":
                if self.checkpoint_step.get(number) != record.last_step:
                    error = (f"trial {number} paused at step {record.last_step} without a "
                             f"checkpoint of that step; with scheduler PBT, train must call "
                             "trial.checkpoint(state) after each trial.report(step, metric) and "
                             "start from trial.restore() when it is not None")
                    self._end(record, "failed", error=error)
                    raise ValueError(error)
            self._end(record, state, result=result, **fields)
            self.failures = 0
        elif kind in ("error", "died"):
            del self.slots[slot]
            error = message[2]
            self._end(record, "failed", error=error)
            if kind == "error" and message[3] is not None:  # misuse of the trial handle
                raise ValueError(f"{message[3]} (trial {number}; traceback stored with it)")
            if kind == "error" and len(message) > 4 and message[4] is not None:
                self._check_key(message[4], number)
            self.failures += 1
            if self.failures >= MAX_FAILURES_IN_A_ROW:
                raise RuntimeError(
                    f"the last {self.failures} trials all failed, so the study stops (a "
                    f"failing trial may use no budget); the last one, trial {number}, "
                    f"failed with:\n{error}")
            return
        else:  # pragma: no cover (a message this driver does not know)
            raise RuntimeError(f"unknown message {kind!r} from a trial")

    def _check_key(self, key: str, number: int) -> None:
        """A ``KeyError`` on a string that names nothing in the space is a misspelt config
        key: every trial would fail the same way, so the study stops now."""
        if key in _names(self.space):
            return
        raise ValueError(
            f"train raised KeyError({key!r}) in trial {number}, and {key!r} is not a name of "
            f"the space, whose leaves are {leaf_names(self.space, constants=True)}: fix the key "
            "train reads (config[name]) or add the leaf to the space, then run the same "
            "tune(...) call again to resume (the trial is recorded as failed with its "
            "traceback)")

    def _verdict(self, record: TrialRecord, decision: str | None,
                 reason: str | None) -> tuple[str, dict[str, Any]]:
        """How a trial whose last report got ``decision`` ends once ``train`` returned."""
        if record.last_step >= self.max_steps:  # trained to the end, whatever was said
            return "complete", {}
        if decision == PAUSE:
            return "paused", {}
        if decision == STOP:
            return "pruned", {"stop_reason": reason}
        return "complete", {}  # train returned early by itself

    def _end(self, record: TrialRecord, state: str, **fields: Any) -> None:
        """The trial's end, its checkpoint's deletion and the tell it completes: one
        transaction."""
        with self.storage.transaction():
            record.state = state
            for key, value in fields.items():
                setattr(record, key, value)
            self.storage.update_trial(record.number, state=state, **fields)
            self._drop_checkpoint(record)
            self.proposer.maybe_tell(self.records,
                                     lambda trial: rank_fitness(trial, self.records, self.mode))

    def _drop_checkpoint(self, record: TrialRecord) -> None:
        if record.number in self.checkpoint_step and not self.scheduler.keeps_checkpoint(record):
            self.storage.delete_checkpoint(record.number)
            del self.checkpoint_step[record.number]
