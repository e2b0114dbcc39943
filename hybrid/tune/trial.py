"""The handle a training run talks to: report, should_stop, checkpoint, restore.

``train(config, trial)`` is the user's own loop. Each call of :meth:`Trial.report`
goes to the study, whose scheduler answers at once; :meth:`Trial.should_stop` returns
that answer (no second round trip). :meth:`Trial.checkpoint` sends the bytes of
``torch.save(state)`` to the study, which stores them (SQLite) before anything else
happens to the trial; :meth:`Trial.restore` returns the state the trial starts from:
its own last checkpoint when it resumes (after a pause or a crash) or, after a PBT
exploit step, the checkpoint of the trial it copies. Order inside one step::

    trial.report(step, metric)      # the scheduler decides
    trial.checkpoint(state)         # saved as the state at ``step``
    if trial.should_stop():
        return

The trial talks through a channel (a pipe to a worker process, queues to a thread or
a Ray actor); :func:`run_job` runs one ``train`` call on any of them and sends back
``done`` or ``error`` with the traceback. Misuse of the handle (steps that do not
increase, a report after ``should_stop()`` said stop, a non-number metric) raises
:class:`TrialUsageError`, which ends the whole study with its message rather than
failing every trial the same way.

Example:
    >>> from nondiff.hybrid.tune.trial import Job, Trial, run_job
    >>> class Echo:  # a channel that answers every report with "continue"
    ...     sent = []
    ...     def send(self, message): self.sent.append(message)
    ...     def request(self, message): self.sent.append(message); return "continue"
    >>> def train(config, trial):
    ...     for step in range(1, 3):
    ...         trial.report(step, config["lr"] * step)
    >>> channel = Echo()
    >>> run_job(train, Job(number=0, config={"lr": 0.5}, max_steps=2), channel)
    >>> [m[0] for m in channel.sent]
    ['report', 'report', 'done']
"""

from __future__ import annotations

import dataclasses
import io
import math
import numbers
import traceback
from collections.abc import Callable
from typing import Any, Protocol

import torch

__all__ = ["CONTINUE", "DECISIONS", "PAUSE", "STOP", "Channel", "Job", "Trial",
           "TrialUsageError", "run_job"]

CONTINUE, STOP, PAUSE = "continue", "stop", "pause"
DECISIONS = (CONTINUE, STOP, PAUSE)


class TrialUsageError(ValueError):
    """``train`` used its trial handle wrongly; the study stops with this message."""


class Channel(Protocol):
    """How a trial reaches the study: ``send`` one way, ``request`` waits for the answer."""

    def send(self, message: tuple[Any, ...]) -> None: ...

    def request(self, message: tuple[Any, ...]) -> Any: ...


@dataclasses.dataclass
class Job:
    """One ``train`` call: a trial from ``start_step`` (0, or its checkpoint's step)."""

    number: int
    config: dict[str, Any]
    max_steps: int
    start_step: int = 0
    checkpoint: bytes | None = None


class Trial:
    """What ``train(config, trial)`` gets; see the module docstring.

    Attributes:
        number: the trial's number in the study (0, 1, ...).
        config: the configuration to train (a dict, as the space names it).
        max_steps: the steps of a full trial; report steps run 1 .. max_steps.
        step: the last step reported (the checkpoint's step when resumed, else 0).
    """

    def __init__(self, job: Job, channel: Channel) -> None:
        self.number, self.config, self.max_steps = job.number, job.config, job.max_steps
        self.step = job.start_step
        self._checkpoint = job.checkpoint
        self._channel = channel
        self._decision = CONTINUE
        self.reports = 0
        self._checked_state = False

    def report(self, step: int, metric: float) -> None:
        """Record ``metric`` (e.g. validation accuracy) after ``step`` steps of training.

        Args:
            step: steps trained so far (e.g. epochs), an int that increases from call to
                call, at most ``max_steps``; after a restore, continue from ``trial.step``.
            metric: a number (a 0-d tensor is fine); NaN and inf count as the worst value.

        Raises:
            TrialUsageError: a step that does not increase or exceeds ``max_steps``, a
                metric that is not a number, or a report after ``should_stop()`` was True.
        """
        if self._decision != CONTINUE:
            raise TrialUsageError(
                f"trial {self.number}: train reported step {step!r} after trial.should_stop() "
                f"became True ({self._decision}); return from train when it does")
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TrialUsageError(f"trial.report(step, metric): step must be an int (steps "
                                  f"trained so far), got {type(step).__name__} {step!r}")
        step = int(step)
        if not self.step < step <= self.max_steps:
            if self.reports:
                hint = f"the last report was at step {self.step}; report each step once"
            elif self.step:
                hint = f"continue counting from trial.step={self.step} after trial.restore()"
            else:
                hint = "count steps from 1"
            raise TrialUsageError(
                f"trial.report(step={step}, ...): steps must increase and lie in "
                f"({self.step}, max_steps={self.max_steps}]; {hint}")
        value = _as_metric(metric)
        self._decision = self._channel.request(("report", self.number, step, value))
        self.step = step
        self.reports += 1

    def should_stop(self) -> bool:
        """True when the study wants ``train`` to return now (pruned, paused for PBT,
        or the budget is spent)."""
        return self._decision != CONTINUE

    def checkpoint(self, state: Any) -> None:
        """Save ``state`` (tensors, numbers, dicts: e.g. ``{"model": model.state_dict(),
        "opt": opt.state_dict()}``) as the state after ``trial.step`` steps.

        Raises:
            TrialUsageError: before the first report, or a state that
                ``torch.load(weights_only=True)`` cannot read back.
        """
        if self.step == 0:
            raise TrialUsageError("trial.checkpoint(state) before the first trial.report: a "
                                  "checkpoint is the state at the last reported step; report "
                                  "first")
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        if not self._checked_state:  # once per trial: it reads back without code
            try:
                torch.load(io.BytesIO(data), weights_only=True)
            except Exception as error:
                raise TrialUsageError(
                    f"trial.checkpoint: the state cannot be read back with "
                    f"torch.load(weights_only=True) ({type(error).__name__}: {error}); keep "
                    "to tensors, numbers, strings, lists and dicts (torch.as_tensor(array) "
                    "for numpy arrays)") from error
            self._checked_state = True
        self._checkpoint = data
        self._channel.send(("checkpoint", self.number, self.step, data))

    def restore(self) -> Any:
        """The state to start from (tensors on the CPU), or None for a fresh start.

        After a PBT exploit step the state is the donor's checkpoint, but ``self.config``
        is the donor's config after explore, which may differ in any mutable leaf,
        categorical ones included (the optimizer ``"sgd"`` in the checkpoint,
        ``"adam"`` now): store the config's choices with the state and load the
        optimizer state only when they match (else build a fresh optimizer on the
        restored weights), or restrict explore with ``PBT(mutable=[...])`` (see
        :mod:`~nondiff.hybrid.tune.schedulers.pbt`).
        """
        if self._checkpoint is None:
            return None
        return torch.load(io.BytesIO(self._checkpoint), map_location="cpu", weights_only=True)

    def __repr__(self) -> str:
        return f"Trial(number={self.number}, step={self.step}, config={self.config!r})"


def _as_metric(metric: Any) -> float:
    if isinstance(metric, torch.Tensor):
        if metric.numel() != 1:
            raise TrialUsageError(f"trial.report: metric must be one number, got a tensor of "
                                  f"shape {tuple(metric.shape)}")
        metric = metric.detach().cpu().item()
    if isinstance(metric, bool) or not isinstance(metric, numbers.Real):
        raise TrialUsageError(f"trial.report: metric must be a number, got "
                              f"{type(metric).__name__} {metric!r:.60}")
    value = float(metric)
    return value if math.isfinite(value) else math.nan


def run_job(train: Callable[[dict[str, Any], Trial], Any], job: Job, channel: Channel) -> None:
    """Run ``train`` on ``job`` and send ``("done", number, result, reports)`` or
    ``("error", number, traceback, usage_message, missing_key)`` through ``channel``
    (``missing_key``: the string key of a ``KeyError`` that ended ``train``, else None;
    the driver stops the study when it is not a name of the space, a misspelt key)."""
    trial = Trial(job, channel)
    try:
        result = train(job.config, trial)
        if result is not None:
            if isinstance(result, torch.Tensor) and result.numel() == 1:
                result = result.item()
            if isinstance(result, bool) or not isinstance(result, numbers.Real):
                raise TrialUsageError(f"train returned {type(result).__name__} {result!r:.60}; "
                                      "return None or a number (kept as the trial's result)")
            result = float(result)
    except BaseException as error:  # SystemExit in train too: a thread would end silently
        usage = str(error) if isinstance(error, TrialUsageError) else None
        key = error.args[0] if (isinstance(error, KeyError) and len(error.args) == 1
                                and isinstance(error.args[0], str)) else None
        channel.send(("error", job.number, traceback.format_exc(), usage, key))
        return
    channel.send(("done", job.number, result, trial.reports))
