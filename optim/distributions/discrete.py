"""Search distributions over discrete spaces: bits, choices and permutations.

Each class is a light view over parameter tensors the optimizer keeps in its own
state (the :class:`~nondiff.optim.distributions.base.SearchDistribution` interface) and adds
``entropy()``, ``entropy_grad(x)`` and ``mode()``. Mixed spaces combine them (and a
Gaussian for reals) in :mod:`nondiff.optim.distributions.product`. With
``sigma(l) = 1/(1+e^-l)``:

Bernoulli, logits ``l`` (d,):
    log p(x) = sum_j x_j l_j - softplus(l_j);   grad_l log p = x - sigma(l)      # Eq. (1)
    H = sum_j sigma(l_j) softplus(-l_j) + sigma(-l_j) softplus(l_j);
    grad_l H = -l sigma(l) sigma(-l)                                            # Eq. (2)
Categorical, logits ``l`` (d, k), entries beyond an entry's cardinality masked to -inf:
    log p(x) = sum_j log softmax(l_j)[x_j];  grad_l log p = onehot(x) - softmax(l) # Eq. (3)
    grad_{l_jc} H = -p_jc (log p_jc + H_j)                                      # Eq. (4)
Plackett-Luce over permutations ``pi`` of n items (``pi_t`` = item at position t),
log-scores ``s`` (n,), suffix log-normalizers ``L_t = logsumexp_{u>=t} s_{pi_u}``:
    log p(pi) = sum_t s_{pi_t} - L_t                                            # Eq. (5)
    grad_{s_{pi_t}} log p = 1 - sum_{u<=t} exp(s_{pi_t} - L_u)                  # Eq. (6)
    sampling: pi = argsort(s + Gumbel noise, descending)  (Gumbel-top-k)        # Eq. (7)
    grad_s H = -E[log p(pi) grad_s log p(pi)]                                   # Eq. (8)

Entropy: exact and closed-form except for Plackett-Luce, which is exact by
enumerating all ``n!`` permutations for ``n <= EXACT_ENTROPY_MAX_N`` (8) and else a
Monte-Carlo estimate ``-mean log p(pi_i)`` from the generator passed to
:meth:`PlackettLuce.entropy` (ValueError without one). Its gradient, Eq. (8), runs
every generation when an optimizer has an entropy bonus, so it enumerates only up
to ``EXACT_ENTROPY_GRAD_MAX_N`` (6) items (720 permutations) and otherwise uses the
samples given, with a leave-one-out baseline (unbiased).

Sources:
    - R. J. Williams, "Simple statistical gradient-following algorithms for
      connectionist reinforcement learning", Machine Learning 8:229-256, 1992
      (Bernoulli units, Eq. 1).
    - R. L. Plackett, "The analysis of permutations", Applied Statistics 24, 1975;
      R. D. Luce, "Individual Choice Behavior", 1959 (Eqs. 5-6).
    - W. Kool, H. van Hoof, M. Welling, "Stochastic beams and where to find them:
      the Gumbel-top-k trick", ICML 2019 (Eq. 7).
    - D. Wierstra et al., "Natural Evolution Strategies", JMLR 15, 2014 (Fisher
      estimated from samples, used for Plackett-Luce's natural gradient).

Example:
    >>> import torch
    >>> from nondiff.optim.distributions.discrete import Bernoulli, PlackettLuce
    >>> gen = torch.Generator().manual_seed(0)
    >>> bits = Bernoulli(torch.zeros(4)).sample(3, gen)
    >>> orders = PlackettLuce(torch.zeros(5)).sample(3, gen)
    >>> tuple(bits.shape), sorted(orders[0].tolist())
    ((3, 4), [0.0, 1.0, 2.0, 3.0, 4.0])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F

from .base import SearchDistribution, as_weights, check_sample_count

__all__ = [
    "EXACT_ENTROPY_GRAD_MAX_N",
    "EXACT_ENTROPY_MAX_N",
    "Bernoulli",
    "Categorical",
    "PlackettLuce",
]

EXACT_ENTROPY_MAX_N = 8
EXACT_ENTROPY_GRAD_MAX_N = 6


def _no_antithetic(name: str, n: int, antithetic: bool) -> None:
    check_sample_count(n)
    if antithetic:
        raise ValueError(f"antithetic sampling is not defined for {name}")


class Bernoulli(SearchDistribution):
    """Independent bits, ``p(x_j = 1) = sigmoid(logits_j)``; Eqs. (1)-(2).

    Example:
        >>> import torch
        >>> from nondiff.optim.distributions.discrete import Bernoulli
        >>> dist = Bernoulli(torch.tensor([0.0, 20.0]))
        >>> dist.sample(3, torch.Generator().manual_seed(0))[:, 1].tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, logits: torch.Tensor) -> None:
        if logits.ndim != 1:
            raise ValueError(f"logits must be 1-D (d,), got shape {tuple(logits.shape)}")
        self.logits = logits

    @property
    def dim(self) -> int:
        return self.logits.shape[0]

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"logits": self.logits}

    def sample(self, n: int, generator: torch.Generator, antithetic: bool = False) -> torch.Tensor:
        _no_antithetic("Bernoulli", n, antithetic)
        u = torch.rand(n, self.dim, generator=generator, dtype=self.logits.dtype,
                       device=self.logits.device)
        return (u < torch.sigmoid(self.logits)).to(self.logits.dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.logits - F.softplus(self.logits)).sum(1)  # Eq. (1)

    def score(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": x - torch.sigmoid(self.logits)}  # Eq. (1)

    def grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        w = as_weights(weights, self.logits, x.shape[0])
        return {"logits": w @ x.to(w.dtype) - w.sum() * torch.sigmoid(self.logits)}

    def natural_grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`grad` over the Fisher ``p (1 - p)`` (floored at the dtype's eps)."""
        p = torch.sigmoid(self.logits)
        fisher = (p * (1 - p)).clamp_min(torch.finfo(p.dtype).eps)
        return {"logits": self.grad(x, weights)["logits"] / fisher}

    def entropy(self) -> torch.Tensor:
        l = self.logits  # noqa: E741
        return (torch.sigmoid(l) * F.softplus(-l) + torch.sigmoid(-l) * F.softplus(l)).sum()

    def entropy_grad(self, x: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        l = self.logits  # noqa: E741
        return {"logits": -l * torch.sigmoid(l) * torch.sigmoid(-l)}  # Eq. (2)

    def mode(self) -> torch.Tensor:
        return (self.logits > 0).to(self.logits.dtype)


class Categorical(SearchDistribution):
    """Independent entries ``x_j`` in ``0 .. k_j - 1`` with ``softmax(logits_j)``; Eqs. (3)-(4).

    Args:
        logits: ``(d, k)`` tensor, ``k`` the largest cardinality.
        cardinalities: optional ``(d,)`` ints ``k_j <= k``; logits ``c >= k_j`` are
            masked to -inf (so their probability, score and gradient are 0).

    Example:
        >>> import torch
        >>> from nondiff.optim.distributions.discrete import Categorical
        >>> dist = Categorical(torch.zeros(2, 3), cardinalities=[3, 2])
        >>> round(float(dist.log_prob(torch.tensor([[2.0, 1.0]])).exp()), 4)  # 1/3 * 1/2
        0.1667
    """

    def __init__(self, logits: torch.Tensor,
                 cardinalities: torch.Tensor | Sequence[int] | None = None) -> None:
        if logits.ndim != 2 or logits.shape[1] < 1:
            raise ValueError(f"logits must be 2-D (d, k), got shape {tuple(logits.shape)}")
        self.logits = logits
        d, k = logits.shape
        card = torch.full((d,), k) if cardinalities is None else torch.as_tensor(cardinalities)
        if card.shape != (d,) or bool((card < 1).any()) or bool((card > k).any()):
            raise ValueError(f"cardinalities must be {d} integers in [1, {k}], got {cardinalities}")
        self.cardinalities = card.to(device=logits.device, dtype=torch.long)
        self.mask = torch.arange(k, device=logits.device) < self.cardinalities[:, None]

    @property
    def dim(self) -> int:
        return self.logits.shape[0]

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"logits": self.logits}

    def log_softmax(self) -> torch.Tensor:
        """``(d, k)`` log-probabilities, -inf at masked entries."""
        masked = self.logits.masked_fill(~self.mask, -math.inf)
        # not torch.log_softmax: its CPU kernel starts threads even for tiny inputs
        return masked - masked.logsumexp(1, keepdim=True)

    def probs(self) -> torch.Tensor:
        return self.log_softmax().exp()

    def sample(self, n: int, generator: torch.Generator, antithetic: bool = False) -> torch.Tensor:
        _no_antithetic("Categorical", n, antithetic)
        cdf = self.probs().cumsum(1)  # inverse-CDF sampling, one uniform per entry
        u = torch.rand(n, self.dim, 1, generator=generator, dtype=cdf.dtype, device=cdf.device)
        index = (cdf <= u * cdf[:, -1:]).sum(2)
        return torch.minimum(index, self.cardinalities - 1).to(self.logits.dtype)

    def _index(self, x: torch.Tensor) -> torch.Tensor:
        return x.round().long().clamp_(min=0).minimum(self.cardinalities - 1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        lsm = self.log_softmax().expand(x.shape[0], -1, -1)
        return lsm.gather(2, self._index(x)[..., None])[..., 0].sum(1)  # Eq. (3)

    def _counts(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``sum_i w_i onehot(x_i)``, ``(d, k)``."""
        index = self._index(x)
        counts = torch.zeros(self.logits.shape, dtype=w.dtype, device=w.device)
        return counts.scatter_add_(1, index.T, w[None, :].expand(self.dim, -1))

    def score(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        onehot = F.one_hot(self._index(x), self.logits.shape[1]).to(self.logits.dtype)
        return {"logits": onehot - self.probs()}  # Eq. (3)

    def grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        w = as_weights(weights, self.logits, x.shape[0])
        return {"logits": self._counts(x, w) - w.sum() * self.probs()}

    def natural_grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """``grad / p`` (0 where masked): a solution of ``F v = grad`` for the singular
        Fisher ``diag(p) - p p^T``, as the weighted scores sum to 0 over classes."""
        p = self.probs()
        g = self.grad(x, weights)["logits"]
        return {"logits": torch.where(p > 0, g / p.clamp_min(torch.finfo(p.dtype).tiny), 0.0)}

    def _plogp(self) -> tuple[torch.Tensor, torch.Tensor]:
        lsm = self.log_softmax()
        p = lsm.exp()
        return p, torch.where(p > 0, lsm, 0.0)

    def entropy(self) -> torch.Tensor:
        p, lsm = self._plogp()
        return -(p * lsm).sum()

    def entropy_grad(self, x: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        p, lsm = self._plogp()
        h = -(p * lsm).sum(1, keepdim=True)
        return {"logits": -p * (lsm + h)}  # Eq. (4)

    def mode(self) -> torch.Tensor:
        masked = self.logits.masked_fill(~self.mask, -math.inf)
        return masked.argmax(1).to(self.logits.dtype)


@lru_cache(maxsize=16)
def _all_permutations(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long)


class PlackettLuce(SearchDistribution):
    """Permutations of ``n`` items, item ``i`` drawn next with ``softmax(scores)`` over
    the items left; a sample is an ordering (entry ``t`` = the item at position ``t``).

    Sampling (Gumbel-top-k), log_prob and score are exact and vectorized over the
    population, Eqs. (5)-(7); for the entropy see the module docstring.

    Example:
        >>> import torch
        >>> from nondiff.optim.distributions.discrete import PlackettLuce
        >>> dist = PlackettLuce(torch.tensor([3.0, 2.0, 1.0, 0.0]))
        >>> dist.mode().tolist(), round(float(dist.log_prob(dist.mode()[None]).exp()), 3)
        ([0.0, 1.0, 2.0, 3.0], 0.313)
    """

    def __init__(self, scores: torch.Tensor) -> None:
        if scores.ndim != 1:
            raise ValueError(f"scores must be 1-D (n,), got shape {tuple(scores.shape)}")
        self.scores = scores

    @property
    def dim(self) -> int:
        return self.scores.shape[0]

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"scores": self.scores}

    def sample(self, n: int, generator: torch.Generator, antithetic: bool = False) -> torch.Tensor:
        _no_antithetic("PlackettLuce", n, antithetic)
        s = self.scores
        u = torch.rand(n, self.dim, generator=generator, dtype=s.dtype, device=s.device)
        gumbel = -torch.log(-torch.log(u.clamp_(min=torch.finfo(s.dtype).tiny)))
        return torch.argsort(s + gumbel, dim=1, descending=True).to(s.dtype)  # Eq. (7)

    def _suffix(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        order = x.round().long() if x.is_floating_point() else x
        s_pi = self.scores[order]
        suffix = torch.logcumsumexp(s_pi.flip(1), dim=1).flip(1)  # L_t
        return order, s_pi, suffix

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        _, s_pi, suffix = self._suffix(x)
        return (s_pi - suffix).sum(1)  # Eq. (5)

    def score(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        order, s_pi, suffix = self._suffix(x)
        by_position = 1 - torch.exp(s_pi + torch.logcumsumexp(-suffix, dim=1))  # Eq. (6)
        return {"scores": torch.empty_like(by_position).scatter_(1, order, by_position)}

    def natural_grad(self, x: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`grad` times the pseudo-inverse of the Fisher estimated from the
        samples, ``F ~ mean_i s_i s_i^T`` (no closed form for Plackett-Luce)."""
        s = self.score(x)["scores"]
        g = as_weights(weights, s, x.shape[0]) @ s
        fisher = s.T @ s / x.shape[0]
        return {"scores": torch.linalg.pinv(fisher, hermitian=True) @ g}

    def _enumerate(self) -> tuple[torch.Tensor, torch.Tensor]:
        perms = _all_permutations(self.dim).to(self.scores.device)
        return perms, self.log_prob(perms)

    def entropy(self, generator: torch.Generator | None = None,
                samples: int = 4096) -> torch.Tensor:
        """Exact for ``n <= EXACT_ENTROPY_MAX_N``; else the Monte-Carlo estimate
        ``-mean log p`` over ``samples`` draws from ``generator`` (required)."""
        if self.dim <= EXACT_ENTROPY_MAX_N:
            _, lp = self._enumerate()
            return -(lp.exp() * lp).sum()
        if generator is None:
            raise ValueError(
                f"the Plackett-Luce entropy over n={self.dim} > {EXACT_ENTROPY_MAX_N} items is "
                "a Monte-Carlo estimate; pass a generator")
        return -self.log_prob(self.sample(samples, generator)).mean()

    def entropy_grad(self, x: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Eq. (8): exact by enumeration for ``n <= EXACT_ENTROPY_GRAD_MAX_N``; else
        from the samples ``x`` (at least 2) with a leave-one-out baseline (unbiased)."""
        if self.dim <= EXACT_ENTROPY_GRAD_MAX_N:
            x, lp = self._enumerate()
            w = lp.exp() * lp
        else:
            if x is None or x.shape[0] < 2:
                raise ValueError("Plackett-Luce's entropy gradient for large n needs 2+ samples")
            lp = self.log_prob(x)
            w = (lp - lp.mean()) / (x.shape[0] - 1)
        return {"scores": -(w @ self.score(x)["scores"])}

    def mode(self) -> torch.Tensor:
        return torch.argsort(self.scores, descending=True, stable=True).to(self.scores.dtype)
