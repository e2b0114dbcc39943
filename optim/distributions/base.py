"""The interface every search distribution shares, and its argument checks.

Evolution strategies and REINFORCE both ascend ``J(theta) = E_{x ~ p_theta}[u(x)]``
with the score-function ("log-likelihood trick") estimate

    grad J ~= sum_i w_i grad_theta log p_theta(x_i)                      # Eq. (1)

and, for natural evolution strategies, precondition it with the inverse Fisher
matrix. A distribution is a light view over parameter tensors that the optimizer
keeps in its own state dataclass; it never owns or mutates them.

Source:
    - D. Wierstra, T. Schaul, T. Glasmachers, Y. Sun, J. Peters, J. Schmidhuber,
      "Natural Evolution Strategies", JMLR 15:949-980, 2014 (Eq. 1, Fisher).

Example:
    >>> import torch
    >>> from nondiff.optim.distributions.base import SearchDistribution, as_weights
    >>> from nondiff.optim.distributions import Bernoulli
    >>> isinstance(Bernoulli(torch.zeros(3)), SearchDistribution)
    True
    >>> as_weights([1.0, 2.0], torch.zeros(3, dtype=torch.float64), 2).dtype
    torch.float64
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

__all__ = ["SearchDistribution", "as_weights", "check_sample_count"]


class SearchDistribution(ABC):
    """A parametric distribution ``p_theta`` to search with (the shared interface).

    Subclasses hold references to parameter tensors (``parameters()``) and
    implement sampling, the log-density and its gradients. ``weights`` below are
    the per-sample utilities (higher is better), e.g. from :mod:`nondiff.optim.shaping`.
    """

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of a sample."""

    @abstractmethod
    def parameters(self) -> dict[str, torch.Tensor]:
        """The parameter tensors by name (the keys of :meth:`score` / :meth:`grad`)."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator, antithetic: bool = False) -> torch.Tensor:
        """Draw ``n`` samples as an ``(n, dim)`` tensor.

        Args:
            n: number of samples (even when ``antithetic``).
            generator: the caller's seeded generator (same device as the parameters).
            antithetic: mirrored sampling; sample ``i + n/2`` mirrors sample ``i``.
        """

    @abstractmethod
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``(n,)`` log-densities (log-probabilities) of the rows of ``x``."""

    @abstractmethod
    def score(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample ``grad_theta log p(x_i)``, each of shape ``(n, *param.shape)``."""

    def grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """The score-function gradient ``sum_i w_i grad_theta log p(x_i)``; Eq. (1)."""
        return {k: torch.tensordot(weights.to(v.dtype), v, dims=1)
                for k, v in self.score(x).items()}

    @abstractmethod
    def natural_grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`grad` preconditioned by the inverse Fisher information."""


def check_sample_count(n: int, antithetic: bool = False) -> None:
    """Raise a ValueError unless ``n`` is a positive int (even for ``antithetic`` pairs)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if antithetic and n % 2:
        raise ValueError(f"antithetic sampling needs an even number of samples, got n={n}")


def as_weights(weights: torch.Tensor, like: torch.Tensor, n: int) -> torch.Tensor:
    """``weights`` as an ``(n,)`` tensor of ``like``'s dtype and device (else ValueError)."""
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {tuple(w.shape)}")
    return w
