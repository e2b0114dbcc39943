"""What a weight step does with a NaN or infinite loss: stop, skip, or (opt-in) nothing.

A single NaN sample, an overflow or a division by zero makes the loss NaN; its backward
pass makes every gradient NaN and one optimizer step later every weight is NaN, after
which training goes on silently producing a useless model. Every weight step of the
hybrid engines (:class:`~nondiff.hybrid.trainer.HybridTrainer`,
:meth:`~nondiff.hybrid.decoupled.Decoupled.fit`, :func:`~nondiff.hybrid.parallel.fit_parallel`)
therefore checks the scalar it is about to differentiate (the loss; below the top of a
decoupled stack, the objective ``(h * synthetic_gradient).sum()``, which is finite only
if the synthetic gradient and the activation are; a synthesizer's regression loss) with
``torch.isfinite`` *before* the backward pass and the optimizer step, and acts on
``on_nonfinite``:

- ``"raise"`` (default): raise :class:`NonFiniteError`, a ``FloatingPointError`` that
  names the step, the epoch, the block (a path such as ``(1, 0)`` in nested stacks) and,
  for the trainer, the structure trained; the weights and optimizer state of that
  block are those from before the step.
- ``"skip"``: leave the weights of that block (or synthesizer) alone for this step and
  count it (``skipped`` metrics, ``Decoupled.skipped_updates``); epoch means leave the
  skipped losses out.
- ``"off"``: no check (the behaviour before the check existed).

Cost: ``bool(torch.isfinite(x))`` copies one flag to the host, one sync per checked
update. Free on the CPU; on CUDA the loss at the top is read with ``.item()`` for the
metrics anyway, so the check adds a sync only for the blocks below the top of a
decoupled stack; ``"off"`` removes it where a pipeline must never wait. The gradients
themselves are not inspected: a finite loss with a non-finite gradient (``sqrt`` at 0)
is not caught here, but its effect is, at the next step's loss.

Example:
    >>> import torch
    >>> from nondiff.hybrid.nonfinite import NonFiniteError, check_finite
    >>> check_finite(torch.tensor(1.5), "raise", "loss", step=3)
    True
    >>> check_finite(torch.tensor(float("nan")), "skip", "loss", step=3)
    False
    >>> try:
    ...     check_finite(torch.tensor(float("nan")), "raise", "loss", step=3)
    ... except NonFiniteError as error:
    ...     error.block = (1,)
    ...     print(error)  # doctest: +ELLIPSIS
    non-finite loss at step 3, block 1; ...
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["ON_NONFINITE", "NonFiniteError", "check_finite", "check_policy", "epoch_mean"]

ON_NONFINITE: tuple[str, ...] = ("raise", "skip", "off")
"""What a weight step does with a non-finite loss (see the module docstring)."""


class NonFiniteError(FloatingPointError):
    """A loss (or synthetic gradient) was NaN or infinite; no weight took the step.

    Attributes:
        what: which value (``"loss"``, ``"synthetic-gradient objective"``, ...).
        step: the global step index (the model's ``step_count`` at that step).
        epoch: the epoch, when the caller knows it (else None).
        block: the path of the block in the stack, e.g. ``(1,)`` or ``(1, 0)`` (empty
            for a model trained as a whole).
        structure: the structure being trained (HybridTrainer), else None.
    """

    def __init__(self, what: str, step: int, epoch: int | None = None,
                 block: tuple[int, ...] = (), structure: Any = None) -> None:
        super().__init__(what, step)
        self.what, self.step, self.epoch = what, step, epoch
        self.block, self.structure = tuple(block), structure

    def fields(self) -> dict[str, Any]:
        """The attributes as a dict (to rebuild the error in another process)."""
        return {"what": self.what, "step": self.step, "epoch": self.epoch,
                "block": self.block, "structure": self.structure}

    def __str__(self) -> str:
        where = [f"step {self.step}"]
        if self.epoch is not None:
            where.append(f"epoch {self.epoch}")
        if self.block:
            where.append("block " + ".".join(map(str, self.block)))
        if self.structure is not None:
            where.append(f"structure {self.structure}")
        return (f"non-finite {self.what} at {', '.join(where)}; the weights were not updated "
                "(on_nonfinite='skip' skips such steps and counts them instead)")


def check_policy(value: Any) -> str:
    """``value`` if it is one of :data:`ON_NONFINITE`, else a ValueError naming it."""
    if value not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {list(ON_NONFINITE)}, got {value!r}")
    return value


def check_finite(value: torch.Tensor, policy: str, what: str, step: int) -> bool:
    """Whether an update from ``value`` may go ahead under ``policy``.

    True when every element of ``value`` is finite (or ``policy`` is ``"off"``); False
    when it is not and ``policy`` is ``"skip"``; raises :class:`NonFiniteError` when it
    is not and ``policy`` is ``"raise"``. One host sync, except under ``"off"``.
    """
    if policy == "off" or bool(torch.isfinite(value.detach()).all()):
        return True
    if policy == "raise":
        raise NonFiniteError(what, step)
    return False


def epoch_mean(losses: list[float], policy: str) -> float:
    """The mean of an epoch's step losses; under ``"skip"`` of the finite ones only
    (NaN if every step was skipped)."""
    if policy == "skip":
        losses = [value for value in losses if math.isfinite(value)]
    return sum(losses) / len(losses) if losses else float("nan")
