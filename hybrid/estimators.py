"""Gradient estimators across a hard categorical op inside a network: the baselines.

A network's logits ``l`` (``(batch, k)``) feed a hard op — argmax, a sample, a
rounding — whose output goes on to a loss. The estimators here make ``loss.backward()``
reach ``l`` anyway:

straight-through (Bengio, Leonard & Courville 2013): the forward pass uses the hard
one-hot, the backward pass the softmax's Jacobian (a biased estimator):

    y = onehot(argmax l) + softmax(l) - stop_gradient(softmax(l))              # Eq. (1)

Gumbel-softmax / Concrete (Jang, Gu & Poole 2017; Maddison, Mnih & Teh 2017): a
reparameterized relaxed sample at temperature ``tau``; ``hard=True`` is its
straight-through version (one-hot forward, relaxed backward):

    g = -log(-log u), u ~ U(0, 1);  y = softmax((l + g) / tau)                  # Eq. (2)

score function (REINFORCE, Williams 1992), unbiased: ``n`` samples ``s_ij`` per example
``i`` and their losses ``f_ij``; the surrogate ``S`` has ``grad_l S`` equal to the
leave-one-out estimate of ``grad_l mean_i E[f_i]`` (Eq. 4 of :mod:`nondiff.optim.reinforce`,
per example):

    S = (1/B) sum_i sum_j (f_ij - mean_j' f_ij') / (n - 1) * log p(s_ij | l_i)  # Eq. (3)

The learned-critic estimator is in :mod:`nondiff.hybrid.critic`.

Sources:
    - Y. Bengio, N. Leonard, A. Courville, "Estimating or propagating gradients
      through stochastic neurons for conditional computation", arXiv:1308.3432, 2013.
    - E. Jang, S. Gu, B. Poole, "Categorical reparameterization with Gumbel-softmax",
      ICLR 2017; C. Maddison, A. Mnih, Y. W. Teh, "The Concrete distribution", ICLR 2017.
    - R. J. Williams, Machine Learning 8:229-256, 1992; W. Kool, H. van Hoof,
      M. Welling, "Buy 4 REINFORCE samples, get a baseline for free!", 2019.

Example:
    >>> import torch
    >>> from nondiff.hybrid.estimators import straight_through_argmax
    >>> logits = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    >>> y = straight_through_argmax(logits)
    >>> y.tolist()
    [[1.0, 0.0, 0.0]]
    >>> (y * torch.tensor([0.0, 1.0, 2.0])).sum().backward()  # the picked value
    >>> bool(logits.grad[0, 0] < 0)  # lowering it: raise the logits of larger values
    True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .devices import draw_on

__all__ = [
    "gumbel_softmax", "sample_categorical", "score_function_surrogate",
    "straight_through_argmax", "straight_through_round",
]  # fmt: skip


def straight_through_argmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The one-hot argmax of ``logits`` with the softmax's gradient, Eq. (1)."""
    soft = logits.softmax(dim)
    hard = F.one_hot(logits.argmax(dim), logits.shape[dim]).to(soft.dtype)
    if dim not in (-1, logits.dim() - 1):
        hard = hard.movedim(-1, dim)
    return hard + soft - soft.detach()


def straight_through_round(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity backward."""
    return x + (x.round() - x).detach()


def gumbel_softmax(logits: torch.Tensor, tau: float = 1.0, hard: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A Gumbel-softmax sample over the last dimension, Eq. (2).

    Args:
        logits: ``(..., k)`` unnormalized log-probabilities.
        tau: temperature > 0 (small: close to one-hot, high-variance gradients).
        hard: return the one-hot of the sample with the relaxed gradient.
        generator: for reproducible noise; a generator on another device than
            ``logits`` (a CPU one for CUDA logits) draws there, the noise is moved.

    Runs on the device of ``logits``.
    """
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive finite temperature, got {tau!r}")
    u = draw_on(logits.device, generator, lambda d: torch.rand(
        logits.shape, generator=generator, dtype=logits.dtype, device=d))
    tiny = torch.finfo(logits.dtype).tiny
    exponential = -torch.log(u.clamp_min(tiny))
    gumbel = -torch.log(exponential.clamp_min(tiny))
    soft = ((logits + gumbel) / tau).softmax(-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return one_hot + soft - soft.detach()


def sample_categorical(logits: torch.Tensor, n: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``(n, batch)`` int64 samples of ``softmax(logits)`` for ``(batch, k)`` logits, on
    the device of ``logits`` (a generator of another device draws there)."""
    probs = logits.detach().softmax(-1)
    return draw_on(logits.device, generator, lambda d: torch.multinomial(
        probs.to(d), n, replacement=True, generator=generator)).T


def score_function_surrogate(logits: torch.Tensor, samples: torch.Tensor,
                             losses: torch.Tensor, baseline: str = "rloo") -> torch.Tensor:
    """A scalar whose gradient w.r.t. ``logits`` is the REINFORCE estimate, Eq. (3).

    Args:
        logits: ``(batch, k)``.
        samples: ``(n, batch)`` class indices drawn from ``softmax(logits)``.
        losses: ``(n, batch)`` loss of each sample (no gradient needed).
        baseline: ``"rloo"`` (leave-one-out; needs n >= 2) or ``"none"``.
    """
    if samples.dim() != 2 or samples.shape[1] != logits.shape[0]:
        raise ValueError(f"samples must be (n, {logits.shape[0]}), got {tuple(samples.shape)}")
    if losses.shape != samples.shape:
        raise ValueError(f"losses must be shaped like samples {tuple(samples.shape)}, "
                         f"got {tuple(losses.shape)}")
    n = samples.shape[0]
    samples = samples.to(logits.device)
    f = losses.detach().to(logits.device, logits.dtype)
    if baseline == "rloo":
        if n < 2:
            raise ValueError(f"baseline='rloo' needs at least 2 samples per example, got {n}")
        w = (f - f.mean(0, keepdim=True)) / (n - 1)
    elif baseline == "none":
        w = f / n
    else:
        raise ValueError(f"baseline must be 'rloo' or 'none', got {baseline!r}")
    log_p = logits.log_softmax(-1)  # (batch, k)
    picked = log_p.gather(1, samples.T.long()).T  # (n, batch)
    return (w * picked).sum(0).mean()
