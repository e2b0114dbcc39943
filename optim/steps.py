"""First-order steps on a parameter tensor: SGD (momentum), Adam and ClipUp.

The ES of :mod:`nondiff.optim.es` (and REINFORCE later) estimate a gradient of their
search distribution's parameters and hand it to one of these steps. A step is
configuration only (validated in the constructor); its dynamic state is a small
dataclass of tensors and scalars from :meth:`Step.init` that the caller embeds in
its own state dataclass, so :class:`nondiff.optim.base.BaseOptimizer` serializes it.
:meth:`Step.update` mutates that state in place and returns the change to add to
the parameter. Gradients are of a loss to *minimize*, as in ``torch.optim``.

    SGD:    b <- mu b + g (b = g at first);  delta = -lr b              # Eq. (1)
            (nesterov: delta = -lr (g + mu b))
    Adam:   m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  t <- t + 1
            delta = -lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)    # Eq. (2)
    ClipUp: v <- mu v - alpha g / |g|                                    # Eq. (3)
            if |v| > v_max: v <- v_max v / |v|;   delta = v              # Eq. (4)

Sources:
    - B. T. Polyak, "Some methods of speeding up the convergence of iteration
      methods", 1964; torch.optim.SGD's formulation (Eq. 1).
    - D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015
      (Eq. 2, in torch.optim.Adam's arrangement of the bias corrections).
    - N. E. Toklu, P. Liskowski, R. K. Srivastava, "ClipUp: A Simple and Powerful
      Optimizer for Distribution-based Policy Evolution", PPSN 2020 (Eqs. 3-4;
      defaults momentum 0.9 and max_speed = 2 * step size).

Example:
    >>> import torch
    >>> from nondiff.optim.steps import Adam
    >>> step = Adam(lr=0.1)
    >>> x = torch.tensor([1.0, -2.0])
    >>> state = step.init(x)
    >>> for _ in range(200):
    ...     x += step.update(2 * x, state)  # gradient of |x|^2
    >>> bool(x.abs().max() < 0.05)
    True
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from nondiff.optim.checks import check_positive

__all__ = ["SGD", "Adam", "AdamState", "ClipUp", "ClipUpState", "SGDState", "Step", "make_step"]


def _unit_interval(name: str, value: Any, *, closed_low: bool = True) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if ok:
        ok = (0 <= value < 1) if closed_low else (0 < value < 1)
    if not ok:
        interval = "[0, 1)" if closed_low else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


class Step(ABC):
    """A first-order update rule; configuration only (see the module docstring)."""

    def __init__(self, lr: float) -> None:
        self.lr = check_positive("lr", lr)

    @abstractmethod
    def init(self, param: torch.Tensor) -> Any:
        """Fresh state (a dataclass) for a parameter shaped, typed and placed like ``param``."""

    @abstractmethod
    def update(self, grad: torch.Tensor, state: Any, lr: float | None = None) -> torch.Tensor:
        """Advance ``state`` in place and return the change to add to the parameter.

        Args:
            grad: gradient of the loss at the current parameter.
            state: this step's state from :meth:`init` (mutated).
            lr: learning rate for this call (a schedule); defaults to ``self.lr``.
        """

    def config(self) -> dict[str, Any]:
        """The hyperparameters, plain values only."""
        return {"lr": self.lr}


@dataclass
class SGDState:
    momentum_buffer: torch.Tensor
    steps: int = 0


class SGD(Step):
    """Stochastic gradient descent with optional (Nesterov) momentum; Eq. (1).

    Matches ``torch.optim.SGD(lr, momentum, nesterov)`` with zero dampening.

    Args:
        lr: learning rate, > 0.
        momentum: in [0, 1).
        nesterov: Nesterov momentum (needs momentum > 0).

    Example:
        >>> import torch
        >>> from nondiff.optim.steps import SGD
        >>> step = SGD(lr=0.1, momentum=0.5)
        >>> state = step.init(torch.zeros(1))
        >>> step.update(torch.ones(1), state), step.update(torch.ones(1), state)
        (tensor([-0.1000]), tensor([-0.1500]))
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(lr)
        self.momentum = _unit_interval("momentum", momentum)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)

    def init(self, param: torch.Tensor) -> SGDState:
        return SGDState(momentum_buffer=torch.zeros_like(param))

    def update(self, grad: torch.Tensor, state: SGDState, lr: float | None = None) -> torch.Tensor:
        lr = self.lr if lr is None else lr
        buf = state.momentum_buffer
        if self.momentum == 0:
            state.steps += 1
            return grad * -lr
        if state.steps == 0:
            buf.copy_(grad)
        else:
            buf.mul_(self.momentum).add_(grad)  # Eq. (1)
        state.steps += 1
        direction = grad.add(buf, alpha=self.momentum) if self.nesterov else buf
        return direction * -lr

    def config(self) -> dict[str, Any]:
        return {**super().config(), "momentum": self.momentum, "nesterov": self.nesterov}


@dataclass
class AdamState:
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    steps: int = 0


class Adam(Step):
    """Adam; Eq. (2). Matches ``torch.optim.Adam`` (no weight decay, no amsgrad).

    Args:
        lr: learning rate, > 0.
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: added to the denominator, > 0.

    Example:
        >>> import torch
        >>> from nondiff.optim.steps import Adam
        >>> step = Adam(lr=0.5)
        >>> step.update(torch.tensor([3.0]), step.init(torch.zeros(1)))
        tensor([-0.5000])
    """

    def __init__(
        self, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        super().__init__(lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.betas = (_unit_interval("betas[0]", beta1), _unit_interval("betas[1]", beta2))
        self.eps = check_positive("eps", eps)

    def init(self, param: torch.Tensor) -> AdamState:
        return AdamState(exp_avg=torch.zeros_like(param), exp_avg_sq=torch.zeros_like(param))

    def update(self, grad: torch.Tensor, state: AdamState, lr: float | None = None) -> torch.Tensor:
        lr = self.lr if lr is None else lr
        beta1, beta2 = self.betas
        state.steps += 1
        state.exp_avg.lerp_(grad, 1 - beta1)  # Eq. (2)
        state.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias1 = 1 - beta1 ** state.steps
        bias2_sqrt = math.sqrt(1 - beta2 ** state.steps)
        denom = (state.exp_avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
        return (state.exp_avg / denom).mul_(-lr / bias1)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "betas": self.betas, "eps": self.eps}


@dataclass
class ClipUpState:
    velocity: torch.Tensor
    steps: int = 0


class ClipUp(Step):
    """ClipUp: normalized gradient with momentum and a speed limit; Eqs. (3)-(4).

    The norm of every returned change is at most ``max_speed`` (scaled with ``lr``
    when a per-call ``lr`` is given, so the ratio ``max_speed / lr`` is kept).

    Args:
        lr: step size ``alpha`` (absolute: the length added per call), > 0.
        momentum: in [0, 1); Toklu et al. use 0.9.
        max_speed: ``v_max`` > 0; default ``2 * lr`` (Toklu et al.: ``alpha = v_max / 2``).

    Example:
        >>> import torch
        >>> from nondiff.optim.steps import ClipUp
        >>> step = ClipUp(lr=0.1)
        >>> state = step.init(torch.zeros(2))
        >>> for _ in range(50):
        ...     delta = step.update(torch.tensor([3.0, 4.0]), state)
        >>> round(float(delta.norm()), 6)
        0.2
    """

    def __init__(self, lr: float = 0.15, momentum: float = 0.9,
                 max_speed: float | None = None) -> None:
        super().__init__(lr)
        self.momentum = _unit_interval("momentum", momentum)
        self.max_speed = (2 * self.lr if max_speed is None
                          else check_positive("max_speed", max_speed))

    def init(self, param: torch.Tensor) -> ClipUpState:
        return ClipUpState(velocity=torch.zeros_like(param))

    def update(
        self, grad: torch.Tensor, state: ClipUpState, lr: float | None = None
    ) -> torch.Tensor:
        lr = self.lr if lr is None else lr
        max_speed = self.max_speed * (lr / self.lr)
        v = state.velocity
        # on the device, no value read back: the two tests are masks, not branches
        norm = torch.linalg.vector_norm(grad)
        usable = (norm > 0) & torch.isfinite(norm)  # else the gradient adds nothing
        v.mul_(self.momentum)
        v.add_(torch.where(usable, grad, 0.0).mul_(torch.where(usable, -lr / norm, 0.0)))  # (3)
        speed = torch.linalg.vector_norm(v)
        v.mul_(torch.where(speed > max_speed, max_speed / speed, 1.0))  # Eq. (4)
        state.steps += 1
        return v.clone()

    def config(self) -> dict[str, Any]:
        return {**super().config(), "momentum": self.momentum, "max_speed": self.max_speed}


_STEPS: dict[str, type[Step]] = {"sgd": SGD, "adam": Adam, "clipup": ClipUp}


def make_step(name: str, **kwargs: Any) -> Step:
    """Build a step by name (``"sgd"``, ``"adam"``, ``"clipup"``) with its hyperparameters."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _STEPS:
        raise ValueError(f"unknown step {name!r}; known: {', '.join(sorted(_STEPS))}")
    return _STEPS[key](**kwargs)
