"""One block of a decoupled stack with the training signal at its output.

A :class:`Stage` is the unit that :class:`~nondiff.hybrid.decoupled.Decoupled` runs in order
in one process and that :mod:`nondiff.hybrid.parallel` runs one per worker process: the block
and its optimizer, and below the top either a synthetic-gradient module (with the
activations that wait for their targets from above, Eq. (2) of Jaderberg et al. 2017)
or a local auxiliary head (Belilovsky et al. 2020). :class:`LossTop` is the true loss
at the top of the outermost stack.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.stage import LossTop, Stage
    >>> stage = Stage(nn.Linear(3, 2), None, "backprop", 2)
    >>> stage.optimizer = torch.optim.SGD(stage.block.parameters(), 0.1)
    >>> top = LossTop(nn.functional.cross_entropy)
    >>> h, grad = stage.run(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), top, 0, True)
    >>> h.shape, grad.shape, top.value > 0
    (torch.Size([4, 2]), torch.Size([4, 3]), True)
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import torch
from nondiff.hybrid.devices import placed_device, to_device
from nondiff.hybrid.nonfinite import check_finite, check_policy
from nondiff.hybrid.synthetic import SyntheticGradient
from torch import nn

__all__ = ["LossTop", "Stage"]


class LossTop:
    """The true loss at the output of the outermost stack."""

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.loss, self.value = loss, float("nan")

    def objective(self, h: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        value = self.loss(h, y)
        self.value = value.item()
        return value

    def after(self) -> None:
        pass


class Stage:
    """One block of a stack with the signal at its output (internal, shared with workers).

    Holds the block, its optimizer and, for a block below the top, its synthesizer
    (with the activations waiting for their targets) or its auxiliary head.
    """

    def __init__(
        self, block: nn.Module, optimizer: torch.optim.Optimizer | None, signal: str,
        num_classes: int, synthesizer: SyntheticGradient | None = None,
        synth_optimizer: torch.optim.Optimizer | None = None, head: nn.Module | None = None,
        head_optimizer: torch.optim.Optimizer | None = None, on_nonfinite: str = "raise",
    ) -> None:
        self.block, self.optimizer, self.signal = block, optimizer, signal
        self.on_nonfinite = check_policy(on_nonfinite)
        self.skipped = 0  # updates (of the block or the synthesizer) left out: non-finite
        self.num_classes = num_classes
        self.synthesizer, self.synth_optimizer = synthesizer, synth_optimizer
        self.head, self.head_optimizer = head, head_optimizer
        self.memory: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self.targets: collections.deque[tuple[int, torch.Tensor]] = collections.deque()
        # The signal losses of the latest step, detached (read only when someone logs them).
        self.synth_loss: torch.Tensor | None = None
        self.local_loss: torch.Tensor | None = None

    @property
    def device(self) -> torch.device | None:
        """Where this stage computes: the device of its block's tensors (else of its
        synthesizer or head; ``None`` when none holds a tensor, as for ``nn.ReLU``)."""
        for module in (self.block, self.synthesizer, self.head):
            where = None if module is None else placed_device(module)
            if where is not None:
                return where
        return None

    def _queue_device(self) -> torch.device | None:
        """Where the synthesizer's queued activations and targets live."""
        where = None if self.synthesizer is None else placed_device(self.synthesizer)
        return where or self.device

    @property
    def wants_target(self) -> bool:
        """Whether the block above must send back the gradient at this block's output."""
        return self.synthesizer is not None

    def context(self, y: torch.Tensor) -> torch.Tensor | None:
        if self.signal != "synthetic-conditioned":
            return None
        return nn.functional.one_hot(y, self.num_classes).float()

    # -- the signal at this block's output, when the block is not the top one ---------
    def objective(self, h: torch.Tensor, y: torch.Tensor, step: int) -> torch.Tensor:
        if self.synthesizer is not None:
            hd, ctx = h.detach(), self.context(y)
            with torch.no_grad():
                grad = self.synthesizer(hd, ctx) / len(h)  # per-example → batch-mean loss
            self.memory[step] = (hd, ctx)
            return (h * grad).sum()  # backward of this gives grad as dL/dh
        assert self.head is not None
        self.head_optimizer.zero_grad()
        local = nn.functional.cross_entropy(self.head(h), y)  # DGL local loss
        self.local_loss = local.detach()
        return local

    def after(self) -> None:
        if self.head_optimizer is not None:
            self.head_optimizer.step()

    def push_target(self, step: int, target: torch.Tensor) -> None:
        """Queue the per-example gradient that arrived for the activation of ``step``
        (moved to the synthesizer's device: the block above may sit on another one)."""
        where = self._queue_device()
        self.targets.append((step, target if where is None else to_device(target, where)))

    def absorb(self, upto: int) -> int:
        """Train the synthesizer on every queued target of a step <= ``upto``."""
        done = 0
        while self.targets and self.targets[0][0] <= upto:
            step, target = self.targets[0]
            h, ctx = self.memory[step]
            regression = self.synthesizer.regression_loss(h, target, ctx)  # Eq. (2)
            finite = check_finite(regression, self.on_nonfinite,
                                  "synthesizer regression loss (its target from above)", step)
            self.targets.popleft()
            del self.memory[step]
            if not finite:
                self.skipped += 1
                continue
            self.synth_optimizer.zero_grad()
            regression.backward()
            self.synth_loss = regression.detach()
            self.synth_optimizer.step()
            done += 1
        return done

    def run(
        self, x: torch.Tensor, y: torch.Tensor, top: Any, step: int, input_grad: bool,
        on_output: Callable[[torch.Tensor], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forward, signal, backward, update; returns the output and the input gradient."""
        if hasattr(self.block, "_run"):  # a nested Decoupled stack
            h, grad = self.block._run(x, y, top, input_grad, on_output)
            return h, grad
        where = self.device  # the block below may sit on another device
        if where is not None:
            x, y = to_device((x, y), where)
        x = x.detach().requires_grad_(input_grad)
        h = self.block(x)
        if on_output is not None:
            on_output(h.detach())
        objective = top.objective(h, y, step)
        what = "loss" if isinstance(top, LossTop) else \
            "synthetic-gradient objective" if self.synthesizer is not None else "local loss"
        if not check_finite(objective, self.on_nonfinite, what, step):
            self.skipped += 1  # no update; the block below gets a NaN target, skipped too
            return h.detach(), (torch.full_like(x, float("nan")) if input_grad else None)
        self.optimizer.zero_grad()
        objective.backward()
        self.optimizer.step()
        top.after()
        return h.detach(), (x.grad if input_grad else None)

    def state(self) -> dict[str, Any]:
        """Queues of the synthesizer (activations and targets in flight) as plain data."""
        steps = sorted(self.memory)
        return {
            "memory_steps": steps,
            "memory_h": [self.memory[s][0] for s in steps],
            "memory_context": [self.memory[s][1] for s in steps],
            "target_steps": [s for s, _ in self.targets],
            "targets": [t for _, t in self.targets],
            "skipped": self.skipped,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`, its tensors moved to the synthesizer's device."""
        where = self._queue_device()
        state = state if where is None else to_device(dict(state), where)
        self.memory = {s: (h, c) for s, h, c in zip(
            state["memory_steps"], state["memory_h"], state["memory_context"], strict=True)}
        self.targets = collections.deque(zip(state["target_steps"], state["targets"],
                                             strict=True))
        self.skipped = int(state.get("skipped", 0))
