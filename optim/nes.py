"""Natural evolution strategies in torch: SNES (separable) and XNES (full covariance).

Both follow the natural gradient of the expected utility in the exponential
local coordinates of :mod:`nondiff.optim.distributions.gaussian` (Eqs. 5-6 there), with NES
utilities ``u_k`` (:func:`nondiff.optim.shaping.nes_utilities`) and standard noise ``z_k``
of the candidates.

SNES (Schaul, Glasmachers, Schmidhuber 2011), ``x_k = mu + sigma * z_k`` with a
``(d,)`` vector sigma:

    grad_mu = sum_k u_k z_k;   grad_sigma = sum_k u_k (z_k^2 - 1)           # Eq. (1)
    mu <- mu + eta_mu * sigma * grad_mu                                    # Eq. (2)
    sigma <- sigma * exp(eta_sigma / 2 * grad_sigma)                       # Eq. (3)
    defaults: eta_mu = 1, eta_sigma = (3 + ln d) / (5 sqrt d), n = 4 + 3 ln d

XNES (Glasmachers, Schaul, Sun, Wierstra, Schmidhuber 2010), ``x_k = mu + sigma B z_k``
with ``det B = 1``:

    G_delta = sum_k u_k z_k;   G_M = sum_k u_k (z_k z_k^T - I)              # Eq. (4)
    G_sigma = tr(G_M) / d;     G_B = G_M - G_sigma I                        # Eq. (5)
    mu <- mu + eta_mu * sigma * B G_delta                                  # Eq. (6)
    sigma <- sigma * exp(eta_sigma / 2 * G_sigma)                          # Eq. (7)
    B <- B expm(eta_B / 2 * G_B)                                           # Eq. (8)
    defaults: eta_mu = 1, eta_sigma = eta_B = 3 (3 + ln d) / (5 d sqrt d)

XNES costs O(n d^2) to sample, O(d^3 + n d^2) to recover the noise (one LU solve)
and O(d^3) for the matrix exponential per generation, and O(d^2) memory: use it up
to a few hundred dimensions; SNES is O(n d) and fits d = 10^5 and more.

Sources:
    - T. Schaul, T. Glasmachers, J. Schmidhuber, "High dimensions and heavy tails
      for natural evolution strategies", GECCO 2011 (SNES).
    - T. Glasmachers, T. Schaul, Y. Sun, D. Wierstra, J. Schmidhuber, "Exponential
      natural evolution strategies", GECCO 2010 (xNES).
    - D. Wierstra et al., "Natural Evolution Strategies", JMLR 15, 2014 (utilities).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
from nondiff.optim.distributions import FullGaussian, SeparableGaussian
from nondiff.optim.es import POSITIVE, GaussianES
from nondiff.optim.hyperparameters import (
    Hyperparameters,
    boolean,
    hyperparameter,
    real,
    shaping_method,
)

__all__ = ["SNES", "XNES", "SNESConfig", "SNESState", "XNESConfig", "XNESState"]

_LOG_MAX = math.log(sys.float_info.max)  # math.exp overflows above it
RATE = real(low=0.0, low_open=True, optional=True)  # None: the paper's default for dim


@dataclass(frozen=True)
class SNESConfig(Hyperparameters):
    """Hyperparameters of :class:`SNES` (see its arguments)."""

    mirrored = "antithetic"

    eta_mu: float = hyperparameter(1.0, POSITIVE)
    eta_sigma: float | None = hyperparameter(None, RATE)
    shaping: str = hyperparameter("nes_utilities", shaping_method())
    antithetic: bool = hyperparameter(False, boolean())

    def resolve(self, dim: int, popsize: int) -> SNESConfig:
        if self.eta_sigma is not None:
            return self
        return replace(self, eta_sigma=(3 + math.log(dim)) / (5 * math.sqrt(dim)))


@dataclass(frozen=True)
class XNESConfig(Hyperparameters):
    """Hyperparameters of :class:`XNES` (see its arguments)."""

    eta_mu: float = hyperparameter(1.0, POSITIVE)
    eta_sigma: float | None = hyperparameter(None, RATE)
    eta_b: float | None = hyperparameter(None, RATE)
    shaping: str = hyperparameter("nes_utilities", shaping_method())

    def resolve(self, dim: int, popsize: int) -> XNESConfig:
        default = 3 * (3 + math.log(dim)) / (5 * dim * math.sqrt(dim))
        return replace(self, eta_sigma=default if self.eta_sigma is None else self.eta_sigma,
                       eta_b=default if self.eta_b is None else self.eta_b)


@dataclass
class SNESState:
    mean: torch.Tensor
    stdev: torch.Tensor


class SNES(GaussianES):
    """Separable natural evolution strategy (Schaul et al. 2011); O(n d) per generation.

    Args:
        x0: initial mean ``(dim,)``, numpy or torch.
        sigma0: initial standard deviation of every coordinate.
        popsize: samples per generation (default ``4 + 3 ln d``).
        seed: seed of the generator.
        bounds: candidates are clipped into ``(lower, upper)``.
        eta_mu: mean learning rate (paper: 1).
        eta_sigma: stdev learning rate (default ``(3 + ln d) / (5 sqrt d)``).
        shaping: a method of :mod:`nondiff.optim.shaping` (default the NES utilities).
        antithetic: mirrored sampling (then popsize must be even; the default
            ``4 + 3 ln d`` is rounded up to even).

    Example:
        >>> import numpy as np
        >>> from nondiff.optim.nes import SNES
        >>> opt = SNES(np.ones(5), sigma0=1.0, seed=0)
        >>> for _ in range(300):
        ...     x = opt.ask()
        ...     _ = opt.tell(x, (x**2).sum(axis=1))
        >>> bool((opt.recommend() ** 2).sum() < 1e-6)
        True
    """

    name = "snes"
    relaxed_width: ClassVar[float] = 1.5  # see nondiff.optim.relaxed (its "Width")
    Hyperparameters = SNESConfig
    hparams: SNESConfig

    def _init_state(self, x0: torch.Tensor) -> SNESState:
        return SNESState(mean=x0.clone(), stdev=torch.full_like(x0, self.sigma0))

    def _stdev(self) -> torch.Tensor:
        return self.state.stdev

    def _ask(self, n: int) -> torch.Tensor:
        dist = SeparableGaussian(self.state.mean, self.state.stdev)
        return self._sample(dist, n, antithetic=self.hparams.antithetic)

    def _tell(self, x: torch.Tensor, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        st, hp = self.state, self.hparams
        u = self._utilities(fitness, hp.shaping, x)
        dist = SeparableGaussian(st.mean, st.stdev)
        grad_mu, grad_sigma = self._noise_sums(dist, x, u)
        grad_sigma.sub_(u.sum())  # Eq. (1)
        stdev = st.stdev * grad_sigma.mul_(hp.eta_sigma / 2).exp_()  # Eq. (3)
        # Only a non-finite result is refused: a stdev that shrinks to 0 is a run that
        # converged to the float type's precision (a restart wrapper's stop test ends it).
        mean_stdev = float(stdev.mean())  # the one read tell makes for its report
        if not math.isfinite(mean_stdev):  # checked before anything changes
            raise ValueError(
                f"{self.name}: the told candidates lie so far from the search distribution "
                f"that the step size update leaves the floats (mean stdev "
                f"{float(st.stdev.mean()):.3g} -> {mean_stdev:.3g}); tell "
                "the samples of ask() (the array it returned or a copy), not points moved "
                "away from them (e.g. clipped or edited by hand)")
        st.mean.addcmul_(st.stdev, grad_mu, value=hp.eta_mu)  # Eq. (2)
        st.stdev.copy_(stdev)
        return {"sigma": mean_stdev}


@dataclass
class XNESState:
    mean: torch.Tensor
    sigma: float
    b: torch.Tensor  # (d, d), det 1


class XNES(GaussianES):
    """Exponential natural evolution strategy (Glasmachers et al. 2010), full covariance.

    Cost per generation O(n d^2 + d^3), memory O(d^2): for up to a few hundred
    dimensions (see the module docstring); the covariance adapts to rotated,
    ill-conditioned problems where :class:`SNES` cannot.

    Args:
        x0: initial mean ``(dim,)``, numpy or torch.
        sigma0: initial step size sigma (``B = I``).
        popsize: samples per generation (default ``4 + 3 ln d``).
        seed: seed of the generator.
        bounds: candidates are clipped into ``(lower, upper)``.
        eta_mu: mean learning rate (paper: 1).
        eta_sigma: step-size learning rate (default ``3 (3 + ln d) / (5 d sqrt d)``).
        eta_b: shape learning rate (default as ``eta_sigma``).
        shaping: a method of :mod:`nondiff.optim.shaping` (default the NES utilities).

    Example:
        >>> import torch
        >>> from nondiff.optim.nes import XNES
        >>> opt = XNES(torch.ones(4, dtype=torch.float64), sigma0=1.0, seed=0)
        >>> for _ in range(300):
        ...     x = opt.ask()
        ...     _ = opt.tell(x, (x**2).sum(1))
        >>> bool((opt.recommend() ** 2).sum() < 1e-8)
        True
    """

    name = "xnes"
    relaxed_width: ClassVar[float] = 2.0  # see nondiff.optim.relaxed (its "Width")
    Hyperparameters = XNESConfig
    hparams: XNESConfig

    def _init_state(self, x0: torch.Tensor) -> XNESState:
        eye = torch.eye(self.dim, dtype=x0.dtype, device=x0.device)
        return XNESState(mean=x0.clone(), sigma=self.sigma0, b=eye)

    def _dist(self) -> FullGaussian:
        return FullGaussian(self.state.mean, self.state.b * self.state.sigma)

    def _stdev(self) -> torch.Tensor:
        b = self.state.b
        return (b * b).sum(1).sqrt() * self.state.sigma  # sqrt(diag(sigma^2 B B^T))

    def _ask(self, n: int) -> torch.Tensor:
        return self._dist().sample(n, self._rng)

    def _tell(self, x: torch.Tensor, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        st, hp = self.state, self.hparams
        u = self._utilities(fitness, hp.shaping, x)
        grads = self._dist().natural_grad(x, u)  # Eq. (4)
        g_m = grads["log_cov"]
        g_sigma = float(torch.diagonal(g_m).sum()) / self.dim  # Eq. (5)
        step = hp.eta_sigma / 2 * g_sigma  # Eq. (7) in log space
        sigma = st.sigma * math.exp(step) if step < _LOG_MAX else math.inf
        if not (math.isfinite(sigma) and sigma > 0):  # checked before anything changes
            raise ValueError(
                f"{self.name}: the told candidates lie so far from the search distribution "
                f"that the step size update exp({step:.3g}) leaves the floats (sigma "
                f"{st.sigma:.3g} -> {sigma:.3g}); tell the samples of ask() (the array it "
                "returned or a copy), not points moved away from them (e.g. clipped or "
                "edited by hand)")
        g_b = g_m - g_sigma * torch.eye(self.dim, dtype=x.dtype, device=x.device)
        st.mean += hp.eta_mu * grads["mean"]  # Eq. (6): sigma B G_delta
        st.sigma = sigma  # Eq. (7)
        st.b = st.b @ torch.linalg.matrix_exp(hp.eta_b / 2 * g_b)  # Eq. (8)
        return {"sigma": float(self._stdev().mean())}
