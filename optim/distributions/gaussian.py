"""Gaussian search distributions: sample, log-density, score and natural gradient.

The Gaussians implement the
:class:`~nondiff.optim.distributions.base.SearchDistribution` interface that they
share with the discrete distributions (Bernoulli, Categorical, Plackett-Luce in
:mod:`nondiff.optim.distributions.discrete`; products over mixed spaces in
:mod:`nondiff.optim.distributions.product`): the score-function gradient
``sum_i w_i grad_theta log p_theta(x_i)`` (Eq. 1) and, for natural evolution
strategies, that gradient preconditioned with the inverse Fisher matrix.

Gaussians ``N(m, A A^T)`` are written with standard noise ``z = A^{-1} (x - m)``:

    log p(x) = -|z|^2 / 2 - log|det A| - (d/2) log(2 pi)                 # Eq. (2)
    grad_m log p = A^{-T} z                                             # Eq. (3)
    grad_A log p = A^{-T} (z z^T - I)                                   # Eq. (4)

with ``A = sigma I`` (isotropic), ``A = diag(sigma)`` (separable) or a full
matrix. The natural gradient uses the exponential local coordinates of
Glasmachers et al. (2010): the mean in x-space and ``M`` in
``Sigma = A exp(M) A^T``, so that a step ``M`` moves ``A <- A exp(M / 2)``:

    natural mean gradient:  sum_i w_i (x_i - m) = A sum_i w_i z_i       # Eq. (5)
    natural M gradient:     G_M = sum_i w_i (z_i z_i^T - I)             # Eq. (6)

restricted to the diagonal of G_M for the separable family and to
``trace(G_M) / d`` for the isotropic one.

Sources:
    - D. Wierstra, T. Schaul, T. Glasmachers, Y. Sun, J. Peters, J. Schmidhuber,
      "Natural Evolution Strategies", JMLR 15:949-980, 2014 (Eqs. 1-4, Fisher).
    - T. Glasmachers, T. Schaul, Y. Sun, D. Wierstra, J. Schmidhuber, "Exponential
      Natural Evolution Strategies", GECCO 2010 (Eqs. 5-6, local coordinates).
    - T. Salimans et al., "Evolution Strategies as a Scalable Alternative to
      Reinforcement Learning", arXiv:1703.03864, 2017 (antithetic sampling).

Example:
    >>> import torch
    >>> from nondiff.optim.distributions.gaussian import SeparableGaussian
    >>> dist = SeparableGaussian(torch.zeros(3), torch.ones(3))
    >>> x = dist.sample(4, torch.Generator().manual_seed(0), antithetic=True)
    >>> bool(torch.equal(x[:2], -x[2:])), tuple(dist.log_prob(x).shape)
    (True, (4,))
"""

from __future__ import annotations

import math
import numbers

import torch

from .base import SearchDistribution, as_weights, check_sample_count

__all__ = ["FullGaussian", "IsotropicGaussian", "SeparableGaussian"]

_LOG_2PI = math.log(2 * math.pi)


class _DiagonalGaussian(SearchDistribution):
    """Shared code of the isotropic and separable Gaussians (``A = diag(scale)``)."""

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor | float) -> None:
        if mean.ndim != 1:
            raise ValueError(f"mean must be 1-D, got shape {tuple(mean.shape)}")
        self.mean = mean
        if isinstance(scale, numbers.Real):  # a fill on the device: no host-to-device
            self._scale = torch.full((), float(scale), dtype=mean.dtype,  # copy (a sync)
                                     device=mean.device)
        else:
            self._scale = torch.as_tensor(scale, dtype=mean.dtype, device=mean.device)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def sample(self, n: int, generator: torch.Generator, antithetic: bool = False) -> torch.Tensor:
        check_sample_count(n, antithetic)
        x = torch.empty(n, self.dim, dtype=self.mean.dtype, device=self.mean.device)
        head = x[: n // 2] if antithetic else x
        torch.randn(head.shape, generator=generator, out=head)
        if antithetic:  # x_{i + n/2} = m - A z_i                                  (mirror)
            torch.addcmul(self.mean, head, self._scale, value=-1.0, out=x[n // 2:])
        torch.addcmul(self.mean, head, self._scale, out=head)  # x = m + A z, in place
        return x

    def sample_with_noise(self, n: int, generator: torch.Generator, antithetic: bool = False,
                          noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sample` (the same candidates from the same generator) and its standard
        noise ``z``: ``(n, d)`` rows, or ``(n/2, d)`` with ``antithetic`` (row
        ``i + n/2`` is ``m - A z_i``). ``noise``: an optional buffer for ``z``, reused
        when its shape, dtype and device fit.

        Keeping ``z`` lets :meth:`noise_sums_of` skip recomputing it from the
        candidates: one write and one read of the ``(n, d)`` matrix less per
        generation (memory traffic is what an ES generation costs on a GPU).
        """
        check_sample_count(n, antithetic)
        m = n // 2 if antithetic else n
        mean = self.mean
        if noise is None or noise.shape != (m, self.dim) or noise.dtype != mean.dtype or (
                noise.device != mean.device):
            noise = torch.empty(m, self.dim, dtype=mean.dtype, device=mean.device)
        torch.randn(noise.shape, generator=generator, out=noise)
        x = torch.empty(n, self.dim, dtype=mean.dtype, device=mean.device)
        torch.addcmul(mean, noise, self._scale, out=x[:m])  # x = m + A z
        if antithetic:  # x_{i + n/2} = m - A z_i                                  (mirror)
            torch.addcmul(mean, noise, self._scale, value=-1.0, out=x[m:])
        return x, noise

    @staticmethod
    def noise_sums_of(noise: torch.Tensor, weights: torch.Tensor, antithetic: bool = False,
                      second: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`noise_sums` from the noise of :meth:`sample_with_noise` (not from the
        candidates): ``(sum_i w_i z_i, sum_i w_i z_i^2)``. With ``antithetic`` the
        mirrored rows enter as ``-z``: ``(w_head - w_tail) . z`` and ``(w_head +
        w_tail) . z^2``, half the rows read. ``noise`` is squared in place (consumed).
        """
        n = noise.shape[0] * (2 if antithetic else 1)
        w = as_weights(weights, noise, n)
        if antithetic:
            head, tail = w[: n // 2], w[n // 2:]
            first = (head - tail) @ noise
            return first, ((head + tail) @ noise.square_()) if second else None
        first = w @ noise
        return first, (w @ noise.square_()) if second else None

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The standard noise ``z = (x - m) / scale`` of each row."""
        return (x - self.mean) / self._scale

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = self.noise(x)
        log_det = torch.log(self._scale).sum() * (self.dim if self._scale.ndim == 0 else 1)
        return -0.5 * (z * z).sum(dim=1) - log_det - 0.5 * self.dim * _LOG_2PI  # Eq. (2)

    def noise_sums(
        self,
        x: torch.Tensor,
        weights: torch.Tensor,
        workspace: torch.Tensor | None = None,
        second: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(sum_i w_i z_i, sum_i w_i z_i^2)`` (elementwise square), each ``(dim,)``.

        The two weighted sums every ES update of this family is built from, in one
        pass over the ``(n, dim)`` candidates and two matrix-vector products.

        Args:
            x: ``(n, dim)`` candidates (not modified).
            weights: ``(n,)`` utilities.
            workspace: optional ``(n, dim)`` scratch tensor of ``x``'s dtype that
                may be overwritten (avoids allocating one per call).
            second: compute the second sum (else it is None).
        """
        w = as_weights(weights, x, x.shape[0])
        if workspace is None or workspace.shape != x.shape or workspace.dtype != x.dtype:
            workspace = torch.empty_like(x)
        diff = torch.sub(x, self.mean, out=workspace)
        first = (w @ diff).div_(self._scale)
        if not second:
            return first, None
        return first, (w @ diff.square_()).div_(self._scale * self._scale)

    def _natural(self, first: torch.Tensor, second: torch.Tensor, total: torch.Tensor) -> dict:
        return {"mean": first * self._scale, "log_cov": second - total}  # Eqs. (5), (6)


class IsotropicGaussian(_DiagonalGaussian):
    """``N(mean, sigma^2 I)`` with a scalar ``sigma``.

    Args:
        mean: ``(d,)`` tensor.
        sigma: positive scalar (float or 0-d tensor).

    Example:
        >>> import torch
        >>> from nondiff.optim.distributions.gaussian import IsotropicGaussian
        >>> dist = IsotropicGaussian(torch.zeros(2), 0.5)
        >>> dist.sample(3, torch.Generator().manual_seed(1)).shape
        torch.Size([3, 2])
    """

    def __init__(self, mean: torch.Tensor, sigma: torch.Tensor | float) -> None:
        super().__init__(mean, sigma)
        if self._scale.ndim != 0:
            raise ValueError("sigma of an IsotropicGaussian must be a scalar")

    @property
    def sigma(self) -> torch.Tensor:
        return self._scale

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "sigma": self._scale}

    def score(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.noise(x)  # Eqs. (3), (4) with A = sigma I
        return {"mean": z / self._scale, "sigma": ((z * z).sum(1) - self.dim) / self._scale}

    def natural_grad(
        self, x: torch.Tensor, weights: torch.Tensor, workspace: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"mean": (d,), "log_cov": 0-d}``: Eq. (5) and ``trace(G_M) / d`` of Eq. (6)."""
        first, second = self.noise_sums(x, weights, workspace)
        total = as_weights(weights, x, x.shape[0]).sum()
        out = self._natural(first, second, total)
        out["log_cov"] = out["log_cov"].mean()
        return out


class SeparableGaussian(_DiagonalGaussian):
    """``N(mean, diag(stdev)^2)``: one standard deviation per coordinate.

    Args:
        mean: ``(d,)`` tensor.
        stdev: ``(d,)`` positive tensor (or a scalar, broadcast).

    Example:
        >>> import torch
        >>> from nondiff.optim.distributions.gaussian import SeparableGaussian
        >>> dist = SeparableGaussian(torch.zeros(2), torch.tensor([1.0, 0.1]))
        >>> x = dist.sample(1000, torch.Generator().manual_seed(0))
        >>> [round(v, 1) for v in x.std(0).tolist()]
        [1.0, 0.1]
    """

    def __init__(self, mean: torch.Tensor, stdev: torch.Tensor | float) -> None:
        super().__init__(mean, stdev)
        self._scale = self._scale.expand(self.dim) if self._scale.ndim == 0 else self._scale
        if self._scale.shape != self.mean.shape:
            raise ValueError(
                f"stdev must have the shape of mean {tuple(self.mean.shape)}, "
                f"got {tuple(self._scale.shape)}"
            )

    @property
    def stdev(self) -> torch.Tensor:
        return self._scale

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "stdev": self._scale}

    def score(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.noise(x)  # Eqs. (3), (4) with A = diag(stdev)
        return {"mean": z / self._scale, "stdev": (z * z - 1.0) / self._scale}

    def grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. (1) without the per-sample scores: two matrix-vector products."""
        first, second = self.noise_sums(x, weights)
        total = as_weights(weights, x, x.shape[0]).sum()
        return {"mean": first / self._scale, "stdev": (second - total) / self._scale}

    def natural_grad(
        self, x: torch.Tensor, weights: torch.Tensor, workspace: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"mean": (d,), "log_cov": (d,)}``: Eq. (5) and the diagonal of Eq. (6).

        A step ``eta * log_cov`` moves ``stdev <- stdev * exp(eta * log_cov / 2)``.
        """
        first, second = self.noise_sums(x, weights, workspace)
        return self._natural(first, second, as_weights(weights, x, x.shape[0]).sum())


class FullGaussian(SearchDistribution):
    """``N(mean, A A^T)`` with a full ``(d, d)`` square-root factor ``A``.

    Sampling costs O(n d^2), :meth:`noise` and the gradients O(d^3 + n d^2).

    Args:
        mean: ``(d,)`` tensor.
        scale: ``(d, d)`` invertible tensor ``A`` (not necessarily triangular).

    Example:
        >>> import torch
        >>> from nondiff.optim.distributions.gaussian import FullGaussian
        >>> dist = FullGaussian(torch.zeros(2), torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
        >>> x = dist.sample(6, torch.Generator())
        >>> tuple(dist.natural_grad(x, torch.ones(6))["log_cov"].shape)
        (2, 2)
    """

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor) -> None:
        if mean.ndim != 1:
            raise ValueError(f"mean must be 1-D, got shape {tuple(mean.shape)}")
        if scale.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(
                f"scale must be a ({mean.shape[0]}, {mean.shape[0]}) matrix, "
                f"got shape {tuple(scale.shape)}"
            )
        self.mean, self.scale = mean, scale

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "scale": self.scale}

    def sample(self, n: int, generator: torch.Generator, antithetic: bool = False) -> torch.Tensor:
        check_sample_count(n, antithetic)
        m = n // 2 if antithetic else n
        z = torch.randn(m, self.dim, dtype=self.mean.dtype, device=self.mean.device,
                        generator=generator)
        y = z @ self.scale.T  # rows A z
        if antithetic:
            return torch.cat([self.mean + y, self.mean - y])
        return y.add_(self.mean)

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """``z = A^{-1} (x - m)`` for each row, by one LU solve."""
        return torch.linalg.solve(self.scale, (x - self.mean).T).T

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = self.noise(x)
        log_det = torch.linalg.slogdet(self.scale).logabsdet
        return -0.5 * (z * z).sum(dim=1) - log_det - 0.5 * self.dim * _LOG_2PI  # Eq. (2)

    def score(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample scores; the ``scale`` part is ``(n, d, d)`` (mind the memory)."""
        z = self.noise(x)
        a_inv_t = torch.linalg.inv(self.scale).T
        eye = torch.eye(self.dim, dtype=z.dtype, device=z.device)
        outer = z[:, :, None] * z[:, None, :] - eye  # Eqs. (3), (4)
        return {"mean": z @ a_inv_t.T, "scale": a_inv_t @ outer}

    def grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. (1) without forming per-sample ``(d, d)`` scores."""
        z = self.noise(x)
        w = as_weights(weights, x, x.shape[0])
        a_inv_t = torch.linalg.inv(self.scale).T
        g_m = (z * w[:, None]).T @ z - w.sum() * torch.eye(self.dim, dtype=z.dtype,
                                                            device=z.device)
        return {"mean": a_inv_t @ (w @ z), "scale": a_inv_t @ g_m}

    def natural_grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"mean": (d,), "log_cov": (d, d), "noise_mean": (d,)}``; Eqs. (5), (6).

        ``noise_mean`` is ``sum_i w_i z_i`` (xNES's ``G_delta``). A step
        ``eta * log_cov`` moves ``A <- A expm(eta * log_cov / 2)``.
        """
        z = self.noise(x)
        w = as_weights(weights, x, x.shape[0])
        g_delta = w @ z
        eye = torch.eye(self.dim, dtype=z.dtype, device=z.device)
        g_m = (z * w[:, None]).T @ z - w.sum() * eye  # Eq. (6)
        return {"mean": self.scale @ g_delta, "log_cov": g_m, "noise_mean": g_delta}  # Eq. (5)
