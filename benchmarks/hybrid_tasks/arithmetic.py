"""Digit arithmetic through a hard argmax: the methods that learn digits from sums alone.

The experiment on :class:`nondiff.problems.hybrid.arithmetic.DigitArithmetic` (the
task and its Eqs. (1) and (2)): :data:`METHODS` train the perception weights on the
same network, data order and step budget (:func:`train_arithmetic`):

- ``"reinforce"``: ``n`` digit pairs sampled from the softmaxes, RLOO score-function
  gradient of Eq. (1) (:func:`nondiff.hybrid.estimators.score_function_surrogate`);
- ``"critic"``: a :class:`nondiff.hybrid.critic.LossCritic` regresses Eq. (1) on the one-hot
  digit pairs and the one-hot sum — first of uniformly random pairs (exploration,
  no images), then of pairs drawn by :meth:`~nondiff.hybrid.critic.LossCritic.explore`
  (class-balanced over the batch's softmaxes, Eq. 4 of :mod:`nondiff.hybrid.critic`:
  sampled from the softmaxes themselves, a collapsed softmax would show the critic one
  digit only); the input-gradient of its
  multilinear extension at the softmax probabilities (Eq. 3 of :mod:`nondiff.hybrid.critic`)
  is the synthetic gradient;
- ``"straight-through"``: one-hot argmax forward, softmax backward, Eq. (2);
- ``"gumbel"``: relaxed Gumbel-softmax samples in Eq. (2), temperature annealed
  1 -> 0.3;
- ``"es"``: OpenAI-ES (:class:`nondiff.optim.OpenAIES`) on the flattened perception weights,
  fitness Eq. (1) of the argmax digits, populations evaluated in one batched call.

:func:`run_benchmark` is the ``arithmetic`` part of ``python -m
nondiff.benchmarks.hybrid_tasks``.

Sources:
    - T. Salimans et al., "Evolution strategies as a scalable alternative to
      reinforcement learning", arXiv:1703.03864, 2017.
    - Y. Bengio, N. Leonard, A. Courville, "Estimating or propagating gradients
      through stochastic neurons for conditional computation", arXiv:1308.3432, 2013.
    - E. Jang, S. Gu, B. Poole, "Categorical reparameterization with Gumbel-softmax",
      ICLR 2017.
"""

from __future__ import annotations

import math
import time
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
from nondiff.problems.hybrid.arithmetic import (
    DigitArithmetic,
    pair_loss,
    perception_net,
    relaxed_pair_loss,
)
from torch import nn
from torch.func import functional_call

__all__ = ["METHODS", "run_benchmark", "summarize", "train_arithmetic"]

METHODS = ("reinforce", "critic", "straight-through", "gumbel", "es")


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
                    draws = critic.explore(probs, samples, generator=g)  # (n, 2k), Eq. (4)
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


def _fmt(mean: float, std: float, scale: float = 100.0) -> str:
    if math.isnan(std):
        return f"{scale * mean:6.1f}"
    return f"{scale * mean:6.1f} ± {scale * std:4.1f}"


def run_benchmark(seeds: int, quick: bool = False) -> list[dict[str, Any]]:
    """The arithmetic part of ``nondiff.benchmarks.hybrid_tasks``: every method x seed,
    then the table (accuracies, time and compute; straight-through as the anchor)."""
    epochs = 4 if quick else 12
    rows = []
    for seed in range(seeds):
        task = DigitArithmetic(seed)
        for method in METHODS:
            rows.append(train_arithmetic(method, seed, epochs=epochs, task=task,
                                         es_popsize=50))
            print(f"  arithmetic seed {seed} {method:16s} sum {rows[-1]['sum_accuracy']:.3f} "
                  f"digit {rows[-1]['digit_accuracy']:.3f} ({rows[-1]['seconds']:.1f} s)",
                  flush=True)
    summary = summarize(rows)
    anchor = summary["straight-through"]["sum_accuracy"]
    print(f"\nDigit arithmetic ({seeds} seeds, {epochs} epochs; % on held-out pairs)")
    print(f"{'method':18s} {'sum acc':>14s} {'digit acc':>14s} {'vs ST':>7s} {'seconds':>8s} "
          f"{'fwd examples':>13s}")
    for method, entry in summary.items():
        ratio = entry["sum_accuracy"] / anchor if anchor > 0 else math.inf
        print(f"{method:18s} {_fmt(entry['sum_accuracy'], entry['sum_accuracy_std']):>14s} "
              f"{_fmt(entry['digit_accuracy'], entry['digit_accuracy_std']):>14s} "
              f"{ratio:6.2f}x {entry['seconds']:8.1f} {entry['forward_examples']:13.3g}")
    best = max(summary, key=lambda m: summary[m]["sum_accuracy"])
    ok = summary[best]["sum_accuracy"] >= 0.9 and best != "straight-through"
    print(f"best: {best} ({100 * summary[best]['sum_accuracy']:.1f} %); target >= 90 % and ahead "
          f"of straight-through: {'met' if ok else 'NOT met'}")
    return rows
