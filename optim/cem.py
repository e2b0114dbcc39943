"""The cross-entropy method (CEM) for continuous minimization, in torch.

Each generation samples ``n`` candidates from a separable Gaussian ``N(m, diag(s)^2)``,
keeps the elite set ``E`` of the ``k = ceil(rho n)`` lowest fitness values, and
refits the distribution to the elites by maximum likelihood, smoothed:

    m_E = (1/k) sum_{x in E} x                                          # Eq. (1)
    s_E^2 = 1/(k-1) sum_{x in E} (x - m_E)^2 + Z_t                      # Eq. (2)
    m <- alpha m_E + (1 - alpha) m                                      # Eq. (3)
    s <- alpha s_E + (1 - alpha) s                                      # Eq. (4)
    Z_{t+1} = Z_t * noise_decay                                         # Eq. (5)

``Z_t`` is the optional extra noise (a variance added to every coordinate) of
Szita and Lorincz (2006), which keeps the elite fit from collapsing prematurely.

Sources:
    - R. Y. Rubinstein, "The cross-entropy method for combinatorial and continuous
      optimization", Methodology and Computing in Applied Probability 1:127-190, 1999.
    - P.-T. de Boer, D. P. Kroese, S. Mannor, R. Y. Rubinstein, "A tutorial on the
      cross-entropy method", Annals of Operations Research 134:19-67, 2005
      (elite fraction rho, smoothing alpha).
    - I. Szita, A. Lorincz, "Learning Tetris using the noisy cross-entropy method",
      Neural Computation 18(12):2936-2941, 2006 (the extra noise Z_t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from nondiff.optim.base import default_popsize
from nondiff.optim.distributions import SeparableGaussian
from nondiff.optim.es import NONNEGATIVE, GaussianES
from nondiff.optim.hyperparameters import Hyperparameters, hyperparameter, real

__all__ = ["CEM", "CEMConfig", "CEMState", "elite_moments"]

FRACTION = real(low=0.0, high=1.0, low_open=True)  # in (0, 1]


@dataclass(frozen=True)
class CEMConfig(Hyperparameters):
    """Hyperparameters of :class:`CEM` (see its arguments)."""

    elite_frac: float = hyperparameter(0.2, FRACTION)
    smoothing: float = hyperparameter(0.7, FRACTION)
    extra_noise: float = hyperparameter(0.0, NONNEGATIVE)
    noise_decay: float = hyperparameter(1.0, real(low=0.0, high=1.0))
    stdev_min: float = hyperparameter(0.0, NONNEGATIVE)


@dataclass
class CEMState:
    mean: torch.Tensor
    stdev: torch.Tensor
    extra_noise: float


def elite_moments(elites: torch.Tensor, fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased variance of the ``(k, d)`` elite rows, Eqs. (1)-(2) (0 for
    ``k = 1``); ``elites`` may be overwritten.

    ``fused``: one ``var_mean`` reduction, a single read of the elites (for GPUs,
    where memory traffic is the cost); else mean, then squared deviations in
    place and their sum (on CPUs torch reduces columns faster so: ``var_mean``
    over dim 0 measured about 3x slower there).
    """
    k = elites.shape[0]
    if fused:
        var, mean = torch.var_mean(elites, dim=0, correction=1 if k > 1 else 0)
        return mean, var
    mean = elites.mean(dim=0)
    return mean, elites.sub_(mean).square_().sum(dim=0).div_(max(k - 1, 1))


class CEM(GaussianES):
    """Cross-entropy method with a separable Gaussian, smoothing and optional noise.

    Args:
        x0: initial mean ``(dim,)``, numpy or torch.
        sigma0: initial standard deviation of every coordinate.
        popsize: samples per generation; default ``10 d`` clamped to [20, 200]
            (the elite fit needs many samples per dimension: with fewer, CEM tends
            to shrink its stdev before reaching the optimum, e.g. on a 10-D sphere).
        seed: seed of the generator.
        bounds: candidates are clipped into ``(lower, upper)``.
        elite_frac: ``rho`` in (0, 1]; the ``ceil(rho * n)`` best samples are elites
            (at least 2 when ``n >= 2``, so a spread can be estimated).
        smoothing: ``alpha`` in (0, 1] of Eqs. (3)-(4); 1 means no smoothing.
        extra_noise: initial ``Z_0`` >= 0, a variance added to the elite fit, Eq. (2).
        noise_decay: multiplies ``Z_t`` after each generation, in [0, 1], Eq. (5).
        stdev_min: lower limit of every standard deviation, >= 0.

    Example:
        >>> import torch
        >>> from nondiff.optim.cem import CEM
        >>> opt = CEM(torch.ones(5), sigma0=1.0, seed=0)
        >>> for _ in range(200):
        ...     x = opt.ask()
        ...     _ = opt.tell(x, (x**2).sum(1))
        >>> bool((opt.recommend() ** 2).sum() < 1e-6)
        True
    """

    name = "cem"
    Hyperparameters = CEMConfig
    hparams: CEMConfig

    @classmethod
    def default_popsize(cls, dim: int) -> int:
        return max(default_popsize(dim), 20, min(10 * dim, 200))

    def num_elites(self, n: int) -> int:
        """Elites kept from ``n`` samples: ``ceil(rho n)``, at least ``min(2, n)``."""
        return min(n, max(min(2, n), math.ceil(self.hparams.elite_frac * n - 1e-9)))

    def _init_state(self, x0: torch.Tensor) -> CEMState:
        stdev = torch.full_like(x0, max(self.sigma0, self.hparams.stdev_min))
        return CEMState(mean=x0.clone(), stdev=stdev, extra_noise=self.hparams.extra_noise)

    def _stdev(self) -> torch.Tensor:
        return self.state.stdev

    def _ask(self, n: int) -> torch.Tensor:
        return SeparableGaussian(self.state.mean, self.state.stdev).sample(n, self._rng)

    def _tell(self, x: torch.Tensor, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        st, hp = self.state, self.hparams
        k = self.num_elites(x.shape[0])
        # the elite set, its rows in memory order (a sequential gather: measured 4-8x
        # faster on the CPU than in fitness order), into the reused workspace
        rows = np.sort(np.argsort(fitness, kind="stable")[:k])  # on the host: fitness is
        elites = torch.index_select(x, 0, torch.as_tensor(rows, device=x.device),  # there
                                    out=self._scratch(k, x))
        elite_mean, elite_var = elite_moments(elites, fused=x.device.type != "cpu")
        elite_var.add_(st.extra_noise)  # Eq. (2)
        a = hp.smoothing
        st.mean.mul_(1 - a).add_(elite_mean, alpha=a)  # Eq. (3)
        st.stdev.mul_(1 - a).add_(elite_var.sqrt_(), alpha=a).clamp_(min=hp.stdev_min)  # (4)
        st.extra_noise *= hp.noise_decay  # Eq. (5)
        return {"sigma": float(st.stdev.mean()), "elites": float(k)}
