"""Search distributions over mixed spaces: one independent distribution per leaf.

:class:`ProductDistribution` puts a distribution on every leaf of a
:class:`~nondiff.optim.spaces.Space` (a leaf or a ``Product``) and samples its encoding:
Real leaves get a diagonal Gaussian with learnable mean and log-std
(:class:`LogStdGaussian`), Categorical and Integer leaves a
:class:`~nondiff.optim.distributions.discrete.Categorical`, Binary a
:class:`~nondiff.optim.distributions.discrete.Bernoulli`, Permutation a
:class:`~nondiff.optim.distributions.discrete.PlackettLuce`. Log-probabilities,
entropies and scores add up over the independent leaves, and the Fisher matrix is
block-diagonal, so natural gradients compose leaf by leaf.

Gaussian with log-std ``r`` (``sigma = e^r``) and ``z = (x - m) / sigma``, censored
at finite bounds (a sample clipped to a bound carries the tail mass beyond it, so
log-probabilities and scores of clipped samples stay exact):

    interior: log p = -z^2/2 - r - log(2 pi)/2;  grad_m = z/sigma, grad_r = z^2 - 1  # Eq. (1)
    at low, a = (low - m)/sigma: log p = log Phi(a);  grad_m = -M(a)/sigma,
    grad_r = -a M(a);  at high, b = (m - high)/sigma: log p = log Phi(b);
    grad_m = M(b)/sigma, grad_r = -b M(b);  with M = phi/Phi (inverse Mills)    # Eq. (2)

Its entropy ``sum_j r_j + (1 + log 2 pi)/2`` is that of the unclipped Gaussian.

Sources:
    - R. J. Williams, "Simple statistical gradient-following algorithms for
      connectionist reinforcement learning", Machine Learning 8:229-256, 1992
      (Gaussian units with learnable mean and standard deviation, Eq. 1).
    - J. Tobin, "Estimation of relationships for limited dependent variables",
      Econometrica 26(1):24-36, 1958 (the censored normal likelihood, Eq. 2).

Example:
    >>> import torch
    >>> from nondiff.optim.distributions.product import distribution_for
    >>> from nondiff.optim.spaces import Binary, Categorical, Product, Real
    >>> space = Product(lr=Real(-3.0, 3.0), op=Categorical(["a", "b", "c"]), mask=Binary(4))
    >>> dist = distribution_for(space, sigma0=0.5)
    >>> x = dist.sample(5, torch.Generator().manual_seed(0))
    >>> x.shape, sorted(space.decode(x[0]))
    (torch.Size([5, 6]), ['lr', 'mask', 'op'])
    >>> sorted(dist.parameters())
    ['lr.log_std', 'lr.mean', 'mask.logits', 'op.logits']
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np
import torch

from ..spaces import Space
from .base import SearchDistribution, check_sample_count
from .discrete import Bernoulli, Categorical, PlackettLuce

__all__ = ["LogStdGaussian", "ProductDistribution", "distribution_for"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class LogStdGaussian(SearchDistribution):
    """``N(mean, diag(exp(log_std))^2)``, censored at the optional bounds; Eqs. (1)-(2).

    Samples are clipped into ``[low, high]``; a sample on a bound gets the tail
    mass beyond it, so log_prob and score stay exact for the clipped variable.

    Example:
        >>> import torch
        >>> from nondiff.optim.distributions.product import LogStdGaussian
        >>> dist = LogStdGaussian(torch.zeros(2), torch.zeros(2), low=torch.tensor([0.0, -9]))
        >>> round(float(dist.log_prob(torch.tensor([[0.0, 0.0]]))), 4)  # log(1/2) + log phi(0)
        -1.6121
    """

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor,
                 low: torch.Tensor | None = None, high: torch.Tensor | None = None) -> None:
        if mean.ndim != 1 or log_std.shape != mean.shape:
            raise ValueError(f"mean and log_std must be 1-D of one shape, got "
                             f"{tuple(mean.shape)} and {tuple(log_std.shape)}")
        self.mean, self.log_std = mean, log_std
        inf = torch.full_like(mean, math.inf)
        self.low = -inf if low is None else torch.as_tensor(low).to(mean)
        self.high = inf if high is None else torch.as_tensor(high).to(mean)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "log_std": self.log_std}

    def sample(self, n: int, generator: torch.Generator, antithetic: bool = False) -> torch.Tensor:
        check_sample_count(n, antithetic)
        m = n // 2 if antithetic else n
        z = torch.randn(m, self.dim, generator=generator, dtype=self.mean.dtype,
                        device=self.mean.device)
        z = torch.cat([z, -z]) if antithetic else z
        x = self.mean + z * self.log_std.exp()
        return torch.maximum(torch.minimum(x, self.high), self.low)

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        std = self.log_std.exp()
        at_low, at_high = x <= self.low, x >= self.high
        z = (x - self.mean) / std
        a = torch.where(at_low, (self.low - self.mean) / std, 0.0)  # finite where unused
        b = torch.where(at_high, (self.mean - self.high) / std, 0.0)
        return std, at_low, at_high, z, a, b

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        _, at_low, at_high, z, a, b = self._parts(x)
        inner = -0.5 * z * z - self.log_std - _HALF_LOG_2PI  # Eq. (1)
        out = torch.where(at_low, torch.special.log_ndtr(a), inner)
        return torch.where(at_high, torch.special.log_ndtr(b), out).sum(1)  # Eq. (2)

    def score(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        std, at_low, at_high, z, a, b = self._parts(x)

        def mills(t: torch.Tensor) -> torch.Tensor:
            return torch.exp(-0.5 * t * t - _HALF_LOG_2PI - torch.special.log_ndtr(t))

        g_mean = torch.where(at_low, -mills(a) / std, z / std)  # Eqs. (1)-(2)
        g_mean = torch.where(at_high, mills(b) / std, g_mean)
        g_log = torch.where(at_low, -a * mills(a), z * z - 1)
        g_log = torch.where(at_high, -b * mills(b), g_log)
        return {"mean": g_mean, "log_std": g_log}

    def natural_grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fisher of the uncensored Gaussian: ``1/sigma^2`` (mean), ``2`` (log-std)."""
        g = self.grad(x, weights)
        return {"mean": g["mean"] * (2 * self.log_std).exp(), "log_std": g["log_std"] / 2}

    def entropy(self) -> torch.Tensor:
        """Entropy of the uncensored Gaussian (the censoring at finite bounds is
        ignored here: an entropy bonus then acts on the Gaussian's spread)."""
        return (self.log_std + 0.5 + _HALF_LOG_2PI).sum()

    def entropy_grad(self, x: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"mean": torch.zeros_like(self.mean), "log_std": torch.ones_like(self.log_std)}

    def mode(self) -> torch.Tensor:
        return torch.maximum(torch.minimum(self.mean, self.high), self.low)


class ProductDistribution(SearchDistribution):
    """Independent leaf distributions over the leaves of a space; samples are its encoding.

    Real leaves get a :class:`LogStdGaussian` (censored at the encoded bounds),
    Categorical and Integer leaves a :class:`Categorical` (encoding = offset +
    index), Binary a :class:`Bernoulli`, Permutation a :class:`PlackettLuce`.
    Parameters are named ``"<leaf>.<param>"`` (just ``"<param>"`` for a bare leaf),
    e.g. ``"op.logits"``; log-probabilities, entropies and scores add up over leaves.
    An Integer leaf has one logit per value: meant for small ranges (for wide ones,
    search a Real and round).

    Args:
        space: a leaf space or a :class:`~nondiff.optim.spaces.Product`.
        params: the parameter tensors by name (see :func:`distribution_for`).
        bounds: optional ``(low, high)`` encoded bounds of size ``space.size``
            overriding the space's (used for the Gaussian of Real leaves).
    """

    def __init__(self, space: Space, params: Mapping[str, torch.Tensor],
                 bounds: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.space, self.params = space, dict(params)
        wanted = {_key(name, k) for name, leaf, _ in space.leaves() for k in _PARAMS[leaf.kind]}
        if set(self.params) != wanted:
            raise ValueError(f"params for {space!r} must be named {sorted(wanted)}, "
                             f"got {sorted(self.params)}")
        low, high = space.bounds() if bounds is None else bounds
        self.leaves: list[tuple[str, SearchDistribution, slice, float]] = []
        for name, leaf, sl in space.leaves():
            p = {k: self.params[_key(name, k)] for k in _PARAMS[leaf.kind]}
            if leaf.kind == "real":
                dist: SearchDistribution = LogStdGaussian(
                    p["mean"], p["log_std"], torch.as_tensor(low[sl]), torch.as_tensor(high[sl]))
            elif leaf.kind in ("categorical", "integer"):
                dist = Categorical(p["logits"])
            elif leaf.kind == "binary":
                dist = Bernoulli(p["logits"])
            else:
                dist = PlackettLuce(p["scores"])
            self.leaves.append((name, dist, sl, float(getattr(leaf, "offset", 0))))

    @property
    def dim(self) -> int:
        return self.space.size

    def parameters(self) -> dict[str, torch.Tensor]:
        return dict(self.params)

    def _parts(self, x: torch.Tensor):  # (name, leaf distribution, leaf's own coordinates)
        for name, dist, sl, offset in self.leaves:
            yield name, dist, x[:, sl] - offset if offset else x[:, sl]

    def _merge(self, per_leaf) -> dict[str, torch.Tensor]:
        return {_key(name, k): v for name, grads in per_leaf for k, v in grads.items()}

    def sample(self, n: int, generator: torch.Generator, antithetic: bool = False) -> torch.Tensor:
        return torch.cat([d.sample(n, generator, antithetic) + off for _, d, _, off in self.leaves],
                         dim=1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return sum(d.log_prob(xs) for _, d, xs in self._parts(x))

    def score(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._merge((name, d.score(xs)) for name, d, xs in self._parts(x))

    def grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._merge((name, d.grad(xs, weights)) for name, d, xs in self._parts(x))

    def natural_grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """Exact composition: the Fisher of a product is block-diagonal."""
        return self._merge((name, d.natural_grad(xs, weights)) for name, d, xs in self._parts(x))

    def entropy(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return sum(d.entropy(generator) if isinstance(d, PlackettLuce) else d.entropy()
                   for _, d, _, _ in self.leaves)

    def entropy_grad(self, x: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        parts = self._parts(x) if x is not None else ((n, d, None) for n, d, _, _ in self.leaves)
        return self._merge((name, d.entropy_grad(xs)) for name, d, xs in parts)

    def mode(self) -> torch.Tensor:
        return torch.cat([d.mode() + off for _, d, _, off in self.leaves])

    def mode_log_probs(self) -> dict[str, float]:
        """log p(mode) of each discrete leaf (0 when it has collapsed to one value)."""
        return {name: float(d.log_prob(d.mode()[None])) for name, d, _, _ in self.leaves
                if not isinstance(d, LogStdGaussian)}

    def gaussians(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and standard deviations of all Real coordinates (empty if none)."""
        parts = [(d.mean, d.log_std.exp()) for _, d, _, _ in self.leaves
                 if isinstance(d, LogStdGaussian)]
        if not parts:
            return torch.zeros(0), torch.zeros(0)
        return torch.cat([m for m, _ in parts]), torch.cat([s for _, s in parts])


_PARAMS = {"real": ("mean", "log_std"), "categorical": ("logits",), "integer": ("logits",),
           "binary": ("logits",), "permutation": ("scores",)}


def _key(leaf: str, param: str) -> str:
    return f"{leaf}.{param}" if leaf else param


def distribution_for(
    space: Space, *, mean: np.ndarray | torch.Tensor | None = None, sigma0: float = 1.0,
    bounds: tuple[np.ndarray, np.ndarray] | None = None, dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> ProductDistribution:
    """A :class:`ProductDistribution` over ``space`` with fresh parameters.

    Discrete leaves start uniform (zero logits / scores); Real leaves start at
    ``mean`` (an encoded ``(space.size,)`` vector, default ``space.initial()``;
    only its Real coordinates are used) with standard deviation ``sigma0``.
    """
    if isinstance(sigma0, bool) or not isinstance(sigma0, numbers.Real) or not (
            math.isfinite(sigma0) and sigma0 > 0):
        raise ValueError(f"sigma0 must be a positive finite number, got {sigma0!r}")
    if mean is None:
        with np.errstate(invalid="ignore"):  # Space.initial() adds -inf + inf for unbounded reals
            mean = space.initial()
    center = torch.as_tensor(mean, dtype=dtype, device=device)
    params: dict[str, torch.Tensor] = {}
    for name, leaf, sl in space.leaves():
        kw = {"dtype": dtype, "device": device}
        if leaf.kind == "real":
            params[_key(name, "mean")] = center[sl].clone()
            params[_key(name, "log_std")] = torch.full((leaf.size,), math.log(sigma0), **kw)
        elif leaf.kind in ("categorical", "integer"):
            params[_key(name, "logits")] = torch.zeros(leaf.size, leaf.cardinality, **kw)
        elif leaf.kind == "binary":
            params[_key(name, "logits")] = torch.zeros(leaf.size, **kw)
        elif leaf.kind == "permutation":
            params[_key(name, "scores")] = torch.zeros(leaf.size, **kw)
        else:
            raise ValueError(f"no search distribution for leaf kind {leaf.kind!r}")
    return ProductDistribution(space, params, bounds)
