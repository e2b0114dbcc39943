"""Gradient-based evolution strategies in torch: OpenAI-ES and PGPE.

Both estimate the gradient of the expected utility of a Gaussian search
distribution by the score function (see :mod:`nondiff.optim.distributions`) from ranked
fitness (:mod:`nondiff.optim.shaping`) and follow it with a first-order step
(:mod:`nondiff.optim.steps`). With utilities ``u_i`` (higher is better, summing to 0),
candidates ``x_i = m + sigma * z_i`` and ``n`` samples:

OpenAI-ES (Salimans et al. 2017), isotropic, mirrored samples, Adam on the mean:

    g = (1/n) sum_i u_i z_i                                              # Eq. (1)
        (not divided by sigma, as in the authors' code: Adam is invariant to
        the scale of g up to eps and the weight decay)
    m <- m + Adam(-g + lambda m)   (lambda: L2 weight decay)             # Eq. (2)
    sigma <- max(sigma * sigma_decay, sigma_min); lr likewise            # Eq. (3)

PGPE (Sehnke et al. 2010) with symmetric sampling and ClipUp (Toklu et al. 2020),
with ``eps_i = x_i - m`` and ``s`` the per-coordinate standard deviation:

    grad_m = (1/n) sum_i u_i eps_i                                      # Eq. (4)
    grad_s = (1/n) sum_i u_i (eps_i^2 - s^2) / s                        # Eq. (5)
    m <- m + ClipUp(-grad_m)                                            # Eq. (6)
    s <- s + clamp(eta_s grad_s, -c s, c s)   (c: stdev_max_change)     # Eq. (7)

For a mirrored pair ``(x+, x-)`` Eqs. (4)-(5) equal Sehnke's symmetric estimates
``(u+ - u-)/2 eps`` and ``((u+ + u-)/2 - b)(eps^2 - s^2)/s`` averaged over pairs;
written over all rows they stay correct for any candidates told. The noise is
recomputed from the candidates (as in evotorch) with one pass over a reused
workspace, then two matrix-vector products; no copy of the ``(n, d)`` noise is kept.

Sources:
    - T. Salimans, J. Ho, X. Chen, S. Sidor, I. Sutskever, "Evolution Strategies as
      a Scalable Alternative to Reinforcement Learning", arXiv:1703.03864, 2017.
    - F. Sehnke, C. Osendorfer, T. Rueckstiess, A. Graves, J. Peters, J. Schmidhuber,
      "Parameter-exploring policy gradients", Neural Networks 23(4):551-559, 2010.
    - N. E. Toklu, P. Liskowski, R. K. Srivastava, "ClipUp: A Simple and Powerful
      Optimizer for Distribution-based Policy Evolution", PPSN 2020 (ClipUp,
      stdev_max_change = 0.2, max_speed = 2 * center_lr).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from nondiff.optim.base import Array, BaseOptimizer, default_popsize
from nondiff.optim.checks import check_bool, check_real
from nondiff.optim.distributions import IsotropicGaussian, SeparableGaussian
from nondiff.optim.shaping import check_method
from nondiff.optim.shaping import shape as shape_fitness
from nondiff.optim.steps import Adam, AdamState, ClipUpState, SGDState, make_step

__all__ = ["PGPE", "OpenAIES", "OpenAIESState", "PGPEState"]


# ----- validation helpers (shared with optim.nes and optim.cem) ---------------------
class GaussianES(BaseOptimizer):
    """Shared parts of the torch ES of this package (not registered itself).

    Subclasses keep ``mean`` in their state and implement :meth:`_stdev`. The
    recommendation is the distribution mean: the ES' own estimate of the optimum,
    less noisy than any single sample (the best evaluated point stays available as
    :attr:`best_x`). One ``(n, dim)`` scratch tensor is kept between generations
    (not part of the state) so that :meth:`tell` allocates no population-sized memory.
    """

    backend = "torch"
    min_popsize = 2  # ranks need two samples
    _workspace_buffer: torch.Tensor | None = None

    def _stdev(self) -> torch.Tensor:
        """Per-coordinate standard deviation of the search distribution, ``(dim,)``."""
        raise NotImplementedError

    def _workspace(self, like: torch.Tensor) -> torch.Tensor:
        """A scratch tensor shaped like ``like``, reused across generations (not state)."""
        buf = self._workspace_buffer
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or (
                buf.device != like.device):
            buf = self._workspace_buffer = torch.empty_like(like)
        return buf

    def _utilities(self, fitness: np.ndarray, method: str, like: torch.Tensor) -> torch.Tensor:
        u = shape_fitness(fitness, method)
        return torch.as_tensor(u, dtype=like.dtype, device=like.device)

    def _recommend(self) -> Array:
        return self.state.mean.clone()

    def _stop(self) -> dict[str, Any]:
        mean, stdev = self.state.mean, self._stdev()
        if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(stdev).all())):
            return {"nonfinite_state": True}
        if bool((stdev <= torch.finfo(mean.dtype).eps * mean.abs()).all()):
            return {"noeffectcoord": float(stdev.max())}  # sampling no longer moves x
        return {}


def _even_popsize(dim: int) -> int:
    p = default_popsize(dim)
    return p + p % 2


@dataclass
class OpenAIESState:
    mean: torch.Tensor
    sigma: float
    lr: float
    adam: AdamState


class OpenAIES(GaussianES):
    """OpenAI-ES (Salimans et al. 2017): isotropic Gaussian, centered ranks, Adam.

    Args:
        x0: initial mean ``(dim,)``, numpy or torch.
        sigma0: noise standard deviation (fixed unless ``sigma_decay < 1``).
        popsize: samples per generation; even when ``antithetic`` (default
            ``4 + 3 ln d`` rounded up to even).
        seed: seed of the generator.
        bounds: candidates are clipped into ``(lower, upper)``.
        lr: Adam step size (the paper's 0.01).
        betas: Adam's ``(beta1, beta2)``.
        eps: Adam's epsilon.
        weight_decay: L2 coefficient ``lambda`` on the mean, Eq. (2) (the paper used
            0.005 for networks; 0 here as it moves the optimum of a plain function).
        sigma_decay: multiplies sigma after each generation, in (0, 1]; Eq. (3).
        sigma_min: lower limit of the decayed sigma, >= 0.
        lr_decay: multiplies lr after each generation, in (0, 1].
        lr_min: lower limit of the decayed lr, >= 0.
        antithetic: mirrored sampling (row ``i + n/2`` mirrors row ``i``).
        shaping: a method of :mod:`nondiff.optim.shaping`.

    Example:
        >>> import torch
        >>> from nondiff.optim.es import OpenAIES
        >>> opt = OpenAIES(torch.ones(5), sigma0=0.3, lr=0.1, seed=0,
        ...                sigma_decay=0.98, lr_decay=0.98)
        >>> for _ in range(300):
        ...     x = opt.ask()
        ...     _ = opt.tell(x, (x**2).sum(1))
        >>> bool((opt.recommend() ** 2).sum() < 1e-4)
        True
    """

    name = "openai-es"

    def __init__(
        self,
        x0: Array,
        sigma0: float = 1.0,
        popsize: int | None = None,
        seed: int | None = None,
        bounds: tuple[Any, Any] | None = None,
        *,
        lr: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        sigma_decay: float = 1.0,
        sigma_min: float = 0.0,
        lr_decay: float = 1.0,
        lr_min: float = 0.0,
        antithetic: bool = True,
        shaping: str = "centered_ranks",
    ) -> None:
        self.adam = Adam(lr=lr, betas=betas, eps=eps)
        self.lr = self.adam.lr
        self.weight_decay = check_real("weight_decay", weight_decay, low=0.0)
        self.sigma_decay = check_real("sigma_decay", sigma_decay, low=0.0, high=1.0,
                                      low_open=True)
        self.sigma_min = check_real("sigma_min", sigma_min, low=0.0)
        self.lr_decay = check_real("lr_decay", lr_decay, low=0.0, high=1.0, low_open=True)
        self.lr_min = check_real("lr_min", lr_min, low=0.0)
        self.antithetic = check_bool("antithetic", antithetic)
        self.shaping = check_method(shaping)
        super().__init__(x0, sigma0, popsize, seed, bounds)
        if self.antithetic and self.popsize % 2:
            raise ValueError(f"popsize must be even with antithetic sampling, got {self.popsize}")

    @classmethod
    def default_popsize(cls, dim: int) -> int:
        return _even_popsize(dim)

    def config(self) -> dict[str, Any]:
        return {**super().config(), **self.adam.config(), "weight_decay": self.weight_decay,
                "sigma_decay": self.sigma_decay, "sigma_min": self.sigma_min,
                "lr_decay": self.lr_decay, "lr_min": self.lr_min,
                "antithetic": self.antithetic, "shaping": self.shaping}

    def _init_state(self, x0: torch.Tensor) -> OpenAIESState:
        mean = x0.clone()
        return OpenAIESState(mean=mean, sigma=self.sigma0, lr=self.lr, adam=self.adam.init(mean))

    def _stdev(self) -> torch.Tensor:
        return torch.full_like(self.state.mean, self.state.sigma)

    def _ask(self, n: int) -> torch.Tensor:
        if self.antithetic and n % 2:
            raise ValueError(f"n must be even with antithetic sampling, got n={n}")
        dist = IsotropicGaussian(self.state.mean, self.state.sigma)
        return dist.sample(n, self._rng, antithetic=self.antithetic)

    def _tell(self, x: torch.Tensor, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        st = self.state
        u = self._utilities(fitness, self.shaping, x)
        dist = IsotropicGaussian(st.mean, st.sigma)
        noise_sum, _ = dist.noise_sums(x, u, self._workspace(x), second=False)
        g = noise_sum / x.shape[0]  # Eq. (1)
        loss_grad = g.neg_().add_(st.mean, alpha=self.weight_decay)
        st.mean += self.adam.update(loss_grad, st.adam, lr=st.lr)  # Eq. (2)
        metrics = {"sigma": st.sigma, "lr": st.lr, "grad_norm": float(loss_grad.norm())}
        st.sigma = max(st.sigma * self.sigma_decay, self.sigma_min)  # Eq. (3)
        st.lr = max(st.lr * self.lr_decay, self.lr_min)
        return metrics


@dataclass
class PGPEState:
    mean: torch.Tensor
    stdev: torch.Tensor
    lr: float
    step: ClipUpState | AdamState | SGDState


class PGPE(GaussianES):
    """PGPE (Sehnke et al. 2010) with ClipUp (Toklu et al. 2020); separable Gaussian.

    Args:
        x0: initial center ``(dim,)``, numpy or torch.
        sigma0: initial standard deviation of every coordinate.
        popsize: samples per generation; even when ``symmetric`` (default
            ``4 + 3 ln d`` rounded up to even).
        seed: seed of the generator.
        bounds: candidates are clipped into ``(lower, upper)``.
        center_lr: step size of the center optimizer (ClipUp's ``alpha``: an
            absolute length per generation, so choose it for the problem's scale).
        stdev_lr: learning rate ``eta_s`` of the standard deviation, Eq. (7).
        stdev_max_change: largest relative change of a stdev per generation, ``c``
            in Eq. (7), in (0, 1] (Toklu et al. / evotorch: 0.2); None: unclamped.
        stdev_min: lower limit of every stdev, >= 0.
        optimizer: center step, ``"clipup"`` (default), ``"adam"`` or ``"sgd"``.
        momentum: momentum of ClipUp / SGD (0.9 as in Toklu et al.).
        max_speed: ClipUp's speed limit; default ``2 * center_lr``.
        lr_decay: multiplies center_lr (and ClipUp's max speed) after each
            generation, in (0, 1]; < 1 lets the center converge to high precision.
        symmetric: mirrored sampling (row ``i + n/2`` mirrors row ``i``).
        shaping: a method of :mod:`nondiff.optim.shaping`.

    Example:
        >>> import torch
        >>> from nondiff.optim.es import PGPE
        >>> opt = PGPE(torch.ones(5), sigma0=0.5, center_lr=0.1, lr_decay=0.98, seed=0)
        >>> for _ in range(300):
        ...     x = opt.ask()
        ...     _ = opt.tell(x, (x**2).sum(1))
        >>> bool((opt.recommend() ** 2).sum() < 1e-4)
        True
    """

    name = "pgpe"

    def __init__(
        self,
        x0: Array,
        sigma0: float = 1.0,
        popsize: int | None = None,
        seed: int | None = None,
        bounds: tuple[Any, Any] | None = None,
        *,
        center_lr: float = 0.15,
        stdev_lr: float = 0.1,
        stdev_max_change: float | None = 0.2,
        stdev_min: float = 0.0,
        optimizer: str = "clipup",
        momentum: float = 0.9,
        max_speed: float | None = None,
        lr_decay: float = 1.0,
        symmetric: bool = True,
        shaping: str = "centered_ranks",
    ) -> None:
        optimizer = optimizer.lower() if isinstance(optimizer, str) else optimizer
        check_real("center_lr", center_lr, low=0.0, low_open=True)
        if optimizer == "clipup":
            self.step = make_step("clipup", lr=center_lr, momentum=momentum, max_speed=max_speed)
        elif max_speed is not None:
            raise ValueError(f"max_speed applies to optimizer='clipup' only, not {optimizer!r}")
        elif optimizer == "sgd":
            self.step = make_step("sgd", lr=center_lr, momentum=momentum)
        elif momentum != 0.9:  # the default: set for clipup and sgd only
            raise ValueError(f"momentum applies to optimizer='clipup' or 'sgd', not "
                             f"{optimizer!r}; Adam has betas instead")
        else:
            self.step = make_step(optimizer, lr=center_lr)
        self.optimizer = optimizer
        self.center_lr = self.step.lr
        self.stdev_lr = check_real("stdev_lr", stdev_lr, low=0.0, low_open=True)
        self.stdev_max_change = None if stdev_max_change is None else check_real(
            "stdev_max_change", stdev_max_change, low=0.0, high=1.0, low_open=True)
        self.stdev_min = check_real("stdev_min", stdev_min, low=0.0)
        self.lr_decay = check_real("lr_decay", lr_decay, low=0.0, high=1.0, low_open=True)
        self.symmetric = check_bool("symmetric", symmetric)
        self.shaping = check_method(shaping)
        super().__init__(x0, sigma0, popsize, seed, bounds)
        if self.symmetric and self.popsize % 2:
            raise ValueError(f"popsize must be even with symmetric sampling, got {self.popsize}")

    @classmethod
    def default_popsize(cls, dim: int) -> int:
        return _even_popsize(dim)

    def config(self) -> dict[str, Any]:
        step = {f"center_{k}" if k == "lr" else k: v for k, v in self.step.config().items()}
        return {**super().config(), "optimizer": self.optimizer, **step,
                "stdev_lr": self.stdev_lr, "stdev_max_change": self.stdev_max_change,
                "stdev_min": self.stdev_min, "lr_decay": self.lr_decay,
                "symmetric": self.symmetric, "shaping": self.shaping}

    def _init_state(self, x0: torch.Tensor) -> PGPEState:
        mean = x0.clone()
        stdev = torch.full_like(mean, max(self.sigma0, self.stdev_min))
        return PGPEState(mean=mean, stdev=stdev, lr=self.center_lr, step=self.step.init(mean))

    def _stdev(self) -> torch.Tensor:
        return self.state.stdev

    def _ask(self, n: int) -> torch.Tensor:
        if self.symmetric and n % 2:
            raise ValueError(f"n must be even with symmetric sampling, got n={n}")
        dist = SeparableGaussian(self.state.mean, self.state.stdev)
        return dist.sample(n, self._rng, antithetic=self.symmetric)

    def _tell(self, x: torch.Tensor, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        st = self.state
        n = x.shape[0]
        u = self._utilities(fitness, self.shaping, x)
        u -= u.mean()  # baseline b = mean utility (0 already for ranks)
        dist = SeparableGaussian(st.mean, st.stdev)
        noise_sum, sq_sum = dist.noise_sums(x, u, self._workspace(x))
        grad_mean = noise_sum.mul_(st.stdev).div_(n)  # Eq. (4): sum u (x - m) / n
        grad_stdev = sq_sum.sub_(u.sum()).mul_(st.stdev).div_(n)  # Eq. (5)
        st.mean += self.step.update(grad_mean.neg_(), st.step, lr=st.lr)  # Eq. (6)
        change = grad_stdev.mul_(self.stdev_lr)  # Eq. (7)
        if self.stdev_max_change is not None:
            limit = st.stdev * self.stdev_max_change
            change = torch.minimum(torch.maximum(change, -limit), limit)
        st.stdev.add_(change).clamp_(min=max(self.stdev_min, torch.finfo(x.dtype).tiny))
        metrics = {"sigma": float(st.stdev.mean()), "lr": st.lr}
        st.lr *= self.lr_decay
        return metrics
