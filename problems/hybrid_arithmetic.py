"""Digit arithmetic through a hard argmax: learn to read digits from their sums alone.

Two 8x8 digit images (scikit-learn's digits, :func:`nondiff.problems.learning.digits`) pass
through one perception network; each gives a hard digit ``argmax``; the model's answer
is the exact integer sum. Only the sum is labeled (the MNIST-addition task of
DeepProbLog, Manhaeve et al. 2018). The downstream loss of a pair with decoded digits
``a, b`` and labeled sum ``s`` is the error of the exact sum,

    L(a, b, s) = 1[a + b != s]                                                  # Eq. (1)

and nothing differentiable connects it to the perception weights. On one-hot vectors
``u, v`` it reads ``1 - sum_a u_a v_{s-a}``, which relaxed one-hots (straight-through,
Gumbel-softmax) differentiate:

    L(u, v, s) = 1 - sum_{a} u_a v_{s - a}                                      # Eq. (2)

:data:`METHODS` train the perception weights on the same network, data order and
step budget:

- ``"reinforce"``: ``n`` digit pairs sampled from the softmaxes, RLOO score-function
  gradient of Eq. (1) (:func:`nondiff.hybrid.estimators.score_function_surrogate`);
- ``"critic"``: a :class:`nondiff.hybrid.critic.LossCritic` regresses Eq. (1) on the one-hot
  digit pairs and the one-hot sum — first of uniformly random pairs (exploration,
  no images), then of pairs sampled from the softmaxes; the input-gradient of its
  multilinear extension at the softmax probabilities (Eq. 3 of :mod:`nondiff.hybrid.critic`)
  is the synthetic gradient;
- ``"straight-through"``: one-hot argmax forward, softmax backward, Eq. (2);
- ``"gumbel"``: relaxed Gumbel-softmax samples in Eq. (2), temperature annealed
  1 -> 0.3;
- ``"es"``: OpenAI-ES (:class:`nondiff.optim.OpenAIES`) on the flattened perception weights,
  fitness Eq. (1) of the argmax digits, populations evaluated in one batched call.

Held-out pairs come from the test split; the sum accuracy and the accuracy of the
digits themselves (labels used only for evaluation) are reported.

Sources:
    - R. Manhaeve et al., "DeepProbLog: neural probabilistic logic programming",
      NeurIPS 2018 (the addition task).
    - T. Salimans et al., "Evolution strategies as a scalable alternative to
      reinforcement learning", arXiv:1703.03864, 2017.

Example:
    >>> from nondiff.problems.hybrid_arithmetic import DigitArithmetic
    >>> task = DigitArithmetic(seed=0)
    >>> xa, xb, s = next(task.batches(4, epoch=0))
    >>> tuple(xa.shape), s.dtype, int(s.max()) <= 18
    ((4, 64), torch.int64, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from nondiff.hybrid.critic import LossCritic
from nondiff.hybrid.estimators import (
    gumbel_softmax,
    sample_categorical,
    score_function_surrogate,
    straight_through_argmax,
)
from nondiff.optim.es import OpenAIES
from nondiff.problems.learning import digits
from torch import nn
from torch.func import functional_call

__all__ = ["METHODS", "DigitArithmetic", "perception_net", "train_arithmetic"]

METHODS = ("reinforce", "critic", "straight-through", "gumbel", "es")


def perception_net(hidden: int = 128) -> nn.Module:
    """The perception network: an MLP from the 64 pixels to 10 digit logits."""
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def pair_loss(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. (1) per pair of integer digits (float 0/1)."""
    return (a + b != s).float()


def relaxed_pair_loss(u: torch.Tensor, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. (2) per pair of (relaxed) one-hots ``(k, 10)``."""
    partner = s[:, None] - torch.arange(10)[None]  # b = s - a for each a
    valid = (partner >= 0) & (partner <= 9)
    return 1 - (u * v.gather(1, partner.clamp(0, 9)) * valid).sum(1)


class DigitArithmetic:
    """Pairs of digit images labeled with their sum; fixed held-out pairs.

    Args:
        seed: seeds the train/test split and the pairing.
        test_pairs: number of held-out pairs (from test images only).
    """

    def __init__(self, seed: int = 0, test_pairs: int = 2000) -> None:
        self.seed = int(seed)
        self.data = digits(seed=seed)
        g = torch.Generator().manual_seed(self.seed + 7)
        n = len(self.data.y_test)
        self.test_index = torch.randint(0, n, (2, test_pairs), generator=g)

    def batches(self, batch_size: int, epoch: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(xa, xb, sum)`` batches: each training image appears twice per epoch."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        n = len(self.data.y_train)
        first, second = torch.randperm(n, generator=g), torch.randperm(n, generator=g)
        x, y = self.data.x_train, self.data.y_train
        for start in range(0, n, batch_size):
            i, j = first[start:start + batch_size], second[start:start + batch_size]
            yield x[i], x[j], y[i] + y[j]

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The held-out ``(xa, xb, sum)``."""
        i, j = self.test_index
        x, y = self.data.x_test, self.data.y_test
        return x[i], x[j], y[i] + y[j]

    @torch.no_grad()
    def evaluate(self, net: nn.Module) -> dict[str, float]:
        """Sum accuracy on held-out pairs and digit accuracy on the test images."""
        xa, xb, s = self.test_set()
        a, b = net(xa).argmax(1), net(xb).argmax(1)
        digit = (net(self.data.x_test).argmax(1) == self.data.y_test).float().mean()
        return {"sum_accuracy": float(((a + b) == s).float().mean()),
                "digit_accuracy": float(digit)}


def _step_reinforce(net, xa, xb, s, samples: int, g: torch.Generator) -> torch.Tensor:
    logits = net(torch.cat([xa, xb]))
    k = len(s)
    draws = sample_categorical(logits, samples, g)  # (n, 2k)
    losses = pair_loss(draws[:, :k], draws[:, k:], s)  # (n, k)
    return score_function_surrogate(logits, draws, torch.cat([losses, losses], 1)) * 2


def _critic_update(critic: LossCritic, draws: torch.Tensor, s: torch.Tensor) -> float:
    """One regression step of the critic on sampled digit pairs and their Eq. (1)."""
    n, k = draws.shape[0], len(s)
    hot = nn.functional.one_hot(draws, 10).float()
    inputs = torch.cat([hot[:, :k], hot[:, k:]], 2).reshape(n * k, 20)
    context = nn.functional.one_hot(s, 19).float().repeat(n, 1)
    return critic.update(inputs, pair_loss(draws[:, :k], draws[:, k:], s).reshape(-1), context)


def _critic_warmup(critic: LossCritic, steps: int, g: torch.Generator, batch: int = 512) -> int:
    """Exploration before any perception step: the critic learns Eq. (1) of uniformly
    random digit pairs (half with their true sum as context, half with another sum).
    No image is read; returns 0 perception forward passes."""
    for _ in range(steps):
        draws = torch.randint(0, 10, (1, 2 * batch), generator=g)
        other = torch.randint(0, 10, (2, batch), generator=g).sum(0)
        true = draws[0, :batch] + draws[0, batch:]
        s = torch.where(torch.rand(batch, generator=g) < 0.5, true, other)
        _critic_update(critic, draws, s)
    return 0


def train_arithmetic(method: str, seed: int = 0, epochs: int = 30, batch_size: int = 64,
                     lr: float = 3e-3, samples: int = 8, task: DigitArithmetic | None = None,
                     es_popsize: int = 100, es_sigma: float = 0.05, critic_warmup: int = 600
                     ) -> dict[str, Any]:
    """Train the perception network with ``method`` from sums only; evaluate it.

    Args:
        method: one of :data:`METHODS`.
        seed: seeds the network, the data order and the estimators' noise.
        epochs, batch_size: the step budget (every method sees the same batches).
        lr: Adam step size of the perception network (ES: of its own Adam).
        samples: samples per pair for REINFORCE and for the critic's exploration.
        task: reuse a :class:`DigitArithmetic` (default: built from ``seed``).
        es_popsize, es_sigma: OpenAI-ES population and noise scale.
        critic_warmup: critic regression steps on random digit pairs before training.

    Returns:
        ``sum_accuracy``, ``digit_accuracy``, ``seconds`` and ``forward_examples``
        (perception forward passes per example, the compute used).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    task = task or DigitArithmetic(seed)
    torch.manual_seed(seed)
    net = perception_net()
    g = torch.Generator().manual_seed(seed + 1)
    start, forwards = time.perf_counter(), 0
    total_steps = epochs * -(-len(task.data.y_train) // batch_size)
    if method == "es":
        forwards = _train_es(net, task, seed, epochs, batch_size, lr, es_popsize, es_sigma)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        critic = None
        if method == "critic":
            critic = LossCritic(20, context=19, hidden=128, lr=3e-3)
            forwards += _critic_warmup(critic, critic_warmup, g)
        step = 0
        for epoch in range(epochs):
            for xa, xb, s in task.batches(batch_size, epoch):
                k = len(s)
                opt.zero_grad()
                if method == "reinforce":
                    _step_reinforce(net, xa, xb, s, samples, g).backward()
                elif method == "critic":
                    probs = net(torch.cat([xa, xb])).softmax(1)
                    draws = sample_categorical(probs.log(), samples, g)  # (n, 2k)
                    _critic_update(critic, draws, s)
                    context = nn.functional.one_hot(s, 19).float()
                    critic.expected([probs[:k], probs[k:]], context).mean().backward()
                else:
                    logits = net(torch.cat([xa, xb]))
                    if method == "straight-through":
                        hot = straight_through_argmax(logits)
                    else:
                        tau = 1.0 * (0.3 / 1.0) ** (step / max(1, total_steps - 1))
                        hot = gumbel_softmax(logits, tau=tau, generator=g)
                    relaxed_pair_loss(hot[:k], hot[k:], s).mean().backward()
                opt.step()
                forwards += 2 * k
                step += 1
    result = task.evaluate(net)
    result.update(method=method, seed=seed, seconds=time.perf_counter() - start,
                  forward_examples=float(forwards))
    return result


def _train_es(net: nn.Module, task: DigitArithmetic, seed: int, epochs: int,
              batch_size: int, lr: float, popsize: int, sigma: float) -> int:
    """OpenAI-ES on the flat perception weights; returns forward passes per example."""
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    sizes = [p.numel() for p in net.parameters()]
    x0 = torch.nn.utils.parameters_to_vector(net.parameters()).detach()
    es = OpenAIES(x0, sigma0=sigma, popsize=popsize, seed=seed, lr=lr)

    def unflatten(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(flat, sizes, dim=-1)
        return {n: p.reshape(*flat.shape[:-1], *s)
                for n, p, s in zip(names, parts, shapes, strict=True)}

    def logits_of(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(net, params, (x,))

    batched = torch.vmap(logits_of, in_dims=(0, None))
    forwards = 0
    for epoch in range(epochs):
        for xa, xb, s in task.batches(batch_size, epoch):
            candidates = es.ask()
            with torch.no_grad():
                logits = batched(unflatten(candidates.float()), torch.cat([xa, xb]))
            digits_ = logits.argmax(2)  # (pop, 2k)
            k = len(s)
            fitness = pair_loss(digits_[:, :k], digits_[:, k:], s).mean(1)
            es.tell(candidates, fitness)
            forwards += 2 * k * len(candidates)
    torch.nn.utils.vector_to_parameters(es.recommend().float(), net.parameters())
    return forwards


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each method's accuracies over seeds."""
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        entry: dict[str, float] = {"seeds": float(len(mine))}
        for key in ("sum_accuracy", "digit_accuracy", "seconds", "forward_examples"):
            values = np.array([r[key] for r in mine], dtype=np.float64)
            entry[key] = float(values.mean())
            entry[f"{key}_std"] = float(values.std()) if len(values) > 1 else math.nan
        out[method] = entry
    return out
