"""TensorBoard logging for ``minimize``, ``HybridTrainer.fit`` and ``Decoupled.fit``.

One callback, :class:`TensorBoard`, serves the three loops; it writes an event file
with torch's :class:`torch.utils.tensorboard.SummaryWriter` (needs the ``tensorboard``
package: ``pip install 'nondiff[log]'``). The step is the loop's own counter
(the optimizer's iteration, the trainer's or the stack's step count), which a resumed
run restores, so a run resumed into the same directory continues its curves.

What it writes, under these tags:

- ``minimize(..., callbacks=[tb])``: every number the optimizer reports after a
  generation as ``optim/<name>`` — ``best_f`` (best so far), ``pop_best_f``,
  ``pop_median_f``, ``evaluations``, ``nonfinite``, and the optimizer's own such as
  ``sigma`` or ``entropy``.
- ``HybridTrainer(..., callbacks=[tb])``: ``train/loss``, ``train/fitness_best``,
  ``train/fitness_mean``, ``train/epoch``; the structure optimizer's numbers as
  ``structure_optimizer/<name>``; the recommended structure as ``structure/<path>``
  (a :class:`~nondiff.hybrid.structure.Choice`'s option index, an ``IntParam`` or
  ``RealParam``'s value) and ``structure/<path>/open_fraction`` (the share of a
  :class:`~nondiff.hybrid.structure.Gates` mask that is open); with a
  :class:`~nondiff.hybrid.decoupled.Decoupled` engine also its ``decoupled/block<i>/...``
  losses. Every ``text_every`` steps the whole recommended structure as the text
  ``structure``.
- ``Decoupled.fit(..., callbacks=[tb])``: ``decoupled/loss``, ``decoupled/epoch`` and
  each block's signal loss, ``decoupled/block<i>/synth_loss`` (the synthetic-gradient
  regression loss) or ``decoupled/block<i>/local_loss`` (the local head's).

At its first call it also writes the configuration (optimizer name and
hyperparameters, trainer or stack settings) as the text ``config``. Values that are
not finite (a warm-up step has no fitness) are left out rather than drawn.

Close the writer at the end — ``with TensorBoard(dir) as tb:`` or ``tb.close()`` —
so that the last points reach the file; then ``tensorboard --logdir dir`` shows them.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from nondiff import TensorBoard, minimize
    >>> from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    >>> tmp = tempfile.TemporaryDirectory()
    >>> log_dir = tmp.name
    >>> with TensorBoard(log_dir) as tb:
    ...     res = minimize(lambda x: float((x**2).sum()), np.ones(4), optimizer="snes",
    ...                    budget=200, seed=0, callbacks=[tb])
    >>> events = EventAccumulator(log_dir).Reload()
    >>> best = [point.value for point in events.Scalars("optim/best_f")]
    >>> len(best) == res.iterations, bool(np.isclose(best[-1], res.f))
    (True, True)
    >>> "optim/sigma" in events.Tags()["scalars"]
    True
    >>> tmp.cleanup()
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from nondiff.hybrid.decoupled import Decoupled
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.optim.base import BaseOptimizer
from nondiff.optim.spaces import Binary, Categorical, Integer, Real

__all__ = ["TensorBoard"]

# Metrics in the optimizer's own sign (it minimizes -f under minimize(maximize=True)).
F_VALUES = ("best_f", "pop_best_f", "pop_median_f")


def _summary_writer_class() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ValueError(
            f"TensorBoard logging needs the tensorboard package ({error}); install it with "
            "pip install 'nondiff[log]' (or pip install tensorboard)"
        ) from error
    return SummaryWriter


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class TensorBoard:
    """A callback that logs a run to TensorBoard (see the module docstring for the tags).

    Args:
        log_dir: directory of the event files (created when the first point is
            written; a resumed run may write into the same one).
        every: log every ``every``-th step (by the loop's step counter).
        text_every: write the recommended structure as text every ``text_every``
            steps of a ``HybridTrainer`` (and at the first logged step).
        flush_secs: how often the writer flushes to disk, in seconds.
        maximize: the run was ``minimize(..., maximize=True)``: report ``best_f``,
            ``pop_best_f`` and ``pop_median_f`` as the values of ``fn`` (the
            optimizer itself sees ``-fn``).

    Raises:
        ValueError: a bad argument, or the ``tensorboard`` package is missing.

    Use as ``callbacks=[tb]`` of :func:`~nondiff.optim.minimize`,
    :class:`~nondiff.hybrid.trainer.HybridTrainer` or
    :meth:`~nondiff.hybrid.decoupled.Decoupled.fit`; it never stops a run.
    """

    def __init__(self, log_dir: str | os.PathLike[str], every: int = 1, *,
                 text_every: int = 100, flush_secs: float = 30.0,
                 maximize: bool = False) -> None:
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise ValueError(f"log_dir must be a directory path, got {log_dir!r}")
        self.every = _positive_int(every, "every")
        self.text_every = _positive_int(text_every, "text_every")
        if isinstance(flush_secs, bool) or not isinstance(flush_secs, (int, float)) \
                or not math.isfinite(flush_secs) or flush_secs <= 0:
            raise ValueError(f"flush_secs must be a positive number of seconds, "
                             f"got {flush_secs!r}")
        if not isinstance(maximize, bool):
            raise ValueError(f"maximize must be True or False, got {maximize!r}")
        self._writer_class = _summary_writer_class()
        self.log_dir = os.fspath(log_dir)
        self.flush_secs, self.maximize = float(flush_secs), maximize
        self.writer: Any = None
        self._configured = False

    # ----- the writer -------------------------------------------------------------
    def _open(self) -> Any:
        if self.writer is None:
            self.writer = self._writer_class(self.log_dir, flush_secs=self.flush_secs)
        return self.writer

    def flush(self) -> None:
        """Write the pending points to disk."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file (a later call opens a new one in ``log_dir``)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> TensorBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- the callback -----------------------------------------------------------
    def __call__(self, metrics: Mapping[str, float], owner: Any) -> bool:
        """Log one step of ``owner`` (an optimizer, a HybridTrainer or a Decoupled stack)."""
        if isinstance(owner, BaseOptimizer):
            step = int(owner.counters["iterations"])
        elif isinstance(owner, (HybridTrainer, Decoupled)):
            step = int(owner.step_count)
        else:
            raise ValueError(
                f"TensorBoard logs minimize (an optimizer), HybridTrainer or Decoupled.fit, "
                f"got a callback call from {type(owner).__name__}; pass it as callbacks=[tb] "
                "of one of those"
            )
        writer = self._open()
        first = not self._configured
        if first:
            writer.add_text("config", _config_text(owner), step)
            self._configured = True
        if step % self.every:
            return False
        if isinstance(owner, BaseOptimizer):
            self._scalars("optim", metrics, step, skip=("iteration",), flip=self.maximize)
        elif isinstance(owner, HybridTrainer):
            self._log_trainer(metrics, owner, step, first)
        else:
            self._scalars("decoupled", metrics, step, skip=("step",))
        return False

    def _scalars(self, prefix: str, metrics: Mapping[str, Any], step: int,
                 skip: tuple[str, ...] = (), flip: bool = False) -> None:
        for key, value in metrics.items():
            if key in skip:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue  # not a number: nothing to draw
            if not math.isfinite(number):
                continue
            if flip and key in F_VALUES:
                number = -number
            self.writer.add_scalar(f"{prefix}/{key}", number, step)

    def _log_trainer(self, metrics: Mapping[str, float], trainer: HybridTrainer, step: int,
                     first: bool) -> None:
        own = {k: v for k, v in metrics.items() if not k.startswith("structure_")}
        self._scalars("train", own, step, skip=("step",))
        searched = {k[len("structure_"):]: v for k, v in metrics.items()
                    if k.startswith("structure_")}
        self._scalars("structure_optimizer", searched, step, skip=("iteration",))
        recommended = trainer.recommended()
        self._scalars("structure", _structure_scalars(trainer, recommended), step)
        if isinstance(trainer.engine, Decoupled):
            self._scalars("decoupled", trainer.engine.block_losses(), step)
        if first or step % self.text_every == 0:
            lines = [f"{path}: {_plain(value)!r}" for path, value in recommended.items()]
            self.writer.add_text("structure", _code_block(lines), step)


def _structure_scalars(trainer: HybridTrainer, value: Mapping[str, Any]) -> dict[str, float]:
    """One number per declaration where one number says it: a Choice's option index,
    the open share of Gates, an IntParam's or RealParam's value."""
    out: dict[str, float] = {}
    for path, space in trainer.space.spaces.items():
        picked = value[path]
        if isinstance(space, Categorical) and space.size == 1:
            out[path] = float(space.choices.index(picked))
        elif isinstance(space, Binary):
            out[f"{path}/open_fraction"] = float(np.mean(np.asarray(picked, dtype=bool)))
        elif isinstance(space, (Integer, Real)) and space.size == 1:
            out[path] = float(picked)
    return out


def _item(key: str, value: Any) -> str:
    text = repr(_plain(value))
    return f"{key}: {text if len(text) <= 200 else text[:197] + '...'}"


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.astype(int).tolist() if value.dtype == bool else value.tolist()
    return value


def _code_block(lines: list[str]) -> str:
    # TensorBoard renders text as Markdown; indented lines keep their layout.
    return "\n".join("    " + line for line in lines)


def _config_text(owner: Any) -> str:
    if isinstance(owner, BaseOptimizer):
        lines = [f"optimizer: {owner.name}"]
        lines += [_item(k, v) for k, v in owner.config().items()]
    elif isinstance(owner, HybridTrainer):
        opt = owner.structure_optimizer
        lines = [f"trainer: HybridTrainer, weight_step={owner.weight_step!r}, "
                 f"warmup_steps={owner.warmup_steps}, seed={owner.seed}",
                 f"engine: {'backprop' if owner.engine is None else 'Decoupled'}",
                 f"space: {owner.space!r}", f"structure optimizer: {opt.name}"]
        lines += [_item(k, v) for k, v in opt.config().items()]
    else:
        lines = [f"Decoupled: signal={owner.signal!r}, blocks={len(owner.blocks)}, "
                 f"staleness={owner.staleness}, seed={owner.seed}"]
    return _code_block(lines)
