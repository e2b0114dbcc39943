"""Check tasks outside the acceptance suite: a new user's first tries of structure search.

The suite's tasks (:mod:`nondiff.problems.hybrid.acceptance`) were each written before
or while the methods that solve them were built. These six were written after: five as a
user of issue 17 would write a first task — a few relevant inputs among many, an
activation ``Choice`` that includes the identity
(:class:`~nondiff.problems.hybrid.acceptance.GatedActivationMLP`) — but with budgets and
labels the suite does not have, and one with a real structure parameter, to see the
methods on cases they were not built around:

- ``"xor-16"``: ``1[x_3 x_8 > 0]`` among 16 gated inputs, with the suite's gate cost;
- ``"three-class"``: three classes, ``argmax(x_1, x_4 x_9, |x_6| - 0.8)`` among 14
  inputs (about 37, 34 and 29 % of the rows), no structure cost;
- ``"big-batch"``: ``1[x_0 x_5 > 0]`` among 10 inputs, 3,000 rows in batches of 256
  for 8 epochs (96 steps), no cost;
- ``"circle-slow"``: ``1[x_3^2 + x_11^2 < ln 4]`` among 16 inputs at Adam's default
  learning rate, 1e-3 (the trainer's default weight optimizer), 1,500 rows in batches of
  32 for 20 epochs, no cost;
- ``"parity-3"``: ``1[x_0 x_5 x_9 > 0]`` among 12 inputs, with the gate cost: a
  third-order interaction, which no one or two of its inputs show;
- ``"threshold"``: a hard decision with a real structure parameter: an MLP reads
  ``1[x_0 > t]`` beside ``x_1 .. x_7`` (:class:`ThresholdNet`, ``t`` a
  :class:`~nondiff.hybrid.structure.RealParam` in ``[-2, 2]``), the label is
  ``1[x_1 > 0] xor 1[x_0 > 1]``; recovered when ``t`` lies within 0.1 of 1. Only the
  optimizers of real vectors search it. Written as a check, it then showed that the final
  selection had no move for a real entry; :mod:`nondiff.hybrid.real_moves` was built on
  it.

The acceptance benchmark runs them by name like the suite's tasks (``python -m
nondiff.benchmarks.hybrid_tasks.acceptance xor-16 parity-3``); what they measured is in
its module docstring.

Example:
    >>> from nondiff.problems.hybrid.acceptance_checks import CHECKS, make_check
    >>> task = make_check("three-class", seed=0)
    >>> sorted(CHECKS)[:2], task.data.num_classes, task.recovered(task.known)
    (['big-batch', 'circle-slow'], 3, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from nondiff.hybrid.structure import RealParam
from nondiff.problems.hybrid.acceptance import (
    AcceptanceTask,
    GatedActivationMLP,
    _check_sizes,
    _open_gates,
)
from nondiff.problems.learning import Dataset
from torch import nn

__all__ = ["CHECKS", "ThresholdNet", "big_batch", "circle_slow", "make_check", "parity_3",
           "three_class", "threshold", "xor_16"]


def _gated_task(name: str, seed: int, n_train: int, n_test: int, features: int,
                inputs: tuple[int, ...], label: Callable[[torch.Tensor], torch.Tensor],
                classes: int = 2, hidden: int = 32, cost: bool = False,
                **budget: Any) -> AcceptanceTask:
    """Standard normal inputs, ``label(x)``, a :class:`GatedActivationMLP`; the known
    structure opens ``inputs`` with ReLU (tanh accepted too)."""
    _check_sizes(n_train, n_test)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, features, generator=g)
    y = label(x).long()
    data = Dataset(name, classes, x[:n_train].contiguous(), y[:n_train].contiguous(),
                   x[n_train:].contiguous(), y[n_train:].contiguous(), (features,))
    mask = np.zeros(features, dtype=bool)
    mask[list(inputs)] = True
    return AcceptanceTask(
        name, data, lambda: GatedActivationMLP(features, hidden, classes),
        {"gates": mask, "act": "relu"}, {"gates": [mask], "act": ["relu", "tanh"]},
        structure_cost=_open_gates if cost else None,
        notes=f"open gates {list(inputs)} of {features} and a nonlinear activation",
        **budget)


def xor_16(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """``"xor-16"``: ``1[x_3 x_8 > 0]`` among 16 inputs, with the gate cost."""
    return _gated_task("xor-16", seed, n_train, n_test, 16, (3, 8),
                       lambda x: x[:, 3] * x[:, 8] > 0, cost=True)


def three_class(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """``"three-class"``: ``argmax(x_1, x_4 x_9, |x_6| - 0.8)`` among 14 inputs."""
    return _gated_task("three-class", seed, n_train, n_test, 14, (1, 4, 6, 9),
                       lambda x: torch.stack([x[:, 1], x[:, 4] * x[:, 9],
                                              x[:, 6].abs() - 0.8], 1).argmax(1), classes=3)


def big_batch(seed: int = 0, n_train: int = 3000, n_test: int = 2000) -> AcceptanceTask:
    """``"big-batch"``: ``1[x_0 x_5 > 0]`` among 10 inputs, batches of 256, 8 epochs."""
    return _gated_task("big-batch", seed, n_train, n_test, 10, (0, 5),
                       lambda x: x[:, 0] * x[:, 5] > 0, batch_size=256, epochs=8)


def circle_slow(seed: int = 0, n_train: int = 1500, n_test: int = 2000) -> AcceptanceTask:
    """``"circle-slow"``: ``1[x_3^2 + x_11^2 < ln 4]`` among 16 inputs (balanced: the
    squared radius of two is exponential with mean 2), learning rate 1e-3, batches of
    32, 20 epochs."""
    return _gated_task("circle-slow", seed, n_train, n_test, 16, (3, 11),
                       lambda x: x[:, 3] ** 2 + x[:, 11] ** 2 < math.log(4), hidden=16,
                       lr=1e-3, batch_size=32, epochs=20)


def parity_3(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """``"parity-3"``: ``1[x_0 x_5 x_9 > 0]`` among 12 inputs, with the gate cost."""
    return _gated_task("parity-3", seed, n_train, n_test, 12, (0, 5, 9),
                       lambda x: x[:, 0] * x[:, 5] * x[:, 9] > 0, cost=True)


class ThresholdNet(nn.Module):
    """An MLP (8 -> 16 -> 2, ReLU) that reads the hard feature ``1[x_0 > t]`` in place
    of ``x_0``, ``t`` a structure parameter (``RealParam(-2, 2)``): no gradient reaches
    ``t``."""

    def __init__(self) -> None:
        super().__init__()
        self.t = RealParam(-2.0, 2.0)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hard = (x[:, :1] > self.t.value).to(x.dtype)
        return self.mlp(torch.cat([hard, x[:, 1:]], dim=1))


def threshold(seed: int = 0, n_train: int = 2000, n_test: int = 2000) -> AcceptanceTask:
    """``"threshold"``: ``1[x_1 > 0] xor 1[x_0 > 1]`` through :class:`ThresholdNet`."""
    _check_sizes(n_train, n_test)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 8, generator=g)
    y = ((x[:, 1] > 0) ^ (x[:, 0] > 1.0)).long()
    data = Dataset("threshold", 2, x[:n_train].contiguous(), y[:n_train].contiguous(),
                   x[n_train:].contiguous(), y[n_train:].contiguous(), (8,))
    return AcceptanceTask("threshold", data, ThresholdNet, {"t": 1.0}, {"t": [(0.9, 1.1)]},
                          notes="the threshold t within 0.1 of 1")


CHECKS: dict[str, Callable[..., AcceptanceTask]] = {
    "xor-16": xor_16, "three-class": three_class, "big-batch": big_batch,
    "circle-slow": circle_slow, "parity-3": parity_3, "threshold": threshold,
}
"""The check tasks by name: ``name -> factory(seed, n_train, n_test)``."""


def make_check(name: str, seed: int = 0, **kwargs: Any) -> AcceptanceTask:
    """The check task ``name`` of :data:`CHECKS` with data from ``seed``."""
    if name not in CHECKS:
        raise ValueError(f"unknown check task {name!r}; choose from {sorted(CHECKS)}")
    return CHECKS[name](seed, **kwargs)
