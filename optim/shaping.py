"""Fitness shaping: turn raw fitness (to minimize) into utilities (to maximize).

Score-function optimizers (evolution strategies, REINFORCE) weight each sample's
score by a utility. Using ranks instead of raw values makes them invariant to
monotone transformations of the objective and robust to outliers.

Sources:
    - T. Salimans, J. Ho, X. Chen, S. Sidor, I. Sutskever, "Evolution Strategies as
      a Scalable Alternative to Reinforcement Learning", arXiv:1703.03864, 2017:
      centered ranks.
    - D. Wierstra, T. Schaul, T. Glasmachers, Y. Sun, J. Peters, J. Schmidhuber,
      "Natural Evolution Strategies", JMLR 15:949-980, 2014, Section 3.1:
      the log-rank utilities.

With ``r_i`` the rank of sample ``i`` (0 for the lowest fitness, the best) among
``n`` samples:

    centered_ranks:  u_i = 1/2 - r_i / (n - 1)                          # Eq. (1)
    nes_utilities:   u_i = max(0, ln(n/2 + 1) - ln(r_i + 1))
                           / sum_j max(0, ln(n/2 + 1) - ln j) - 1/n      # Eq. (2)
    normalized:      u_i = (mean(f) - f_i) / std(f)                      # Eq. (3)
    baseline:        u_i = mean(f) - f_i                                 # Eq. (4)

All four sum to zero and give a higher utility to a lower fitness. Equal fitness
values (ties) receive equal utilities: the mean of the utilities their ranks
would get, so the result does not depend on the order of the samples and ranks
still sum to zero. Inputs and outputs are 1-D float64 numpy arrays (population
sized, so numpy is cheap); the caller converts to its own tensors.

Example:
    >>> import numpy as np
    >>> from nondiff.optim.shaping import shape
    >>> shape(np.array([3.0, 1.0, 2.0]), "centered_ranks")
    array([-0.5,  0.5,  0. ])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .checks import as_float64

__all__ = [
    "METHODS",
    "baseline",
    "centered_ranks",
    "check_method",
    "nes_utilities",
    "normalized",
    "shape",
]


def _as_fitness(fitness: Any) -> np.ndarray:
    f = as_float64(fitness, "fitness")
    if f.ndim != 1 or f.size == 0:
        raise ValueError(f"fitness must be a non-empty 1-D array, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("fitness contains NaN or inf; replace them before shaping")
    return f


def _by_rank(f: np.ndarray, per_rank: np.ndarray) -> np.ndarray:
    """Give sample i the value ``per_rank[rank_i]`` (rank 0: lowest fitness);
    tied samples share the mean of the values of their ranks."""
    order = np.argsort(f, kind="stable")
    sorted_f = f[order]
    group = np.concatenate(([0], np.cumsum(sorted_f[1:] != sorted_f[:-1])))
    starts = np.flatnonzero(np.diff(group, prepend=-1))
    means = np.bincount(group, weights=per_rank) / np.bincount(group)
    # keep each mean inside its group's range: exact for equal values, monotone
    # across groups despite rounding (per_rank is non-increasing)
    means = np.clip(means, np.minimum.reduceat(per_rank, starts),
                    np.maximum.reduceat(per_rank, starts))
    out = np.empty_like(f)
    out[order] = means[group]
    return out


def centered_ranks(fitness: Any) -> np.ndarray:
    """Ranks mapped linearly onto [-0.5, 0.5], best (lowest) fitness 0.5; Eq. (1).

    Args:
        fitness: ``(n,)`` finite values to minimize.

    Returns:
        ``(n,)`` float64 utilities summing to zero (all zero when ``n == 1``).
    """
    f = _as_fitness(fitness)
    n = f.size
    if n == 1:
        return np.zeros(1)
    per_rank = 0.5 - np.arange(n, dtype=np.float64) / (n - 1)  # Eq. (1)
    return _by_rank(f, per_rank)


def nes_utilities(fitness: Any) -> np.ndarray:
    """The NES log-rank utilities of Wierstra et al. (2014); Eq. (2).

    Only the better half gets a positive weight before the ``-1/n`` shift, which
    makes the utilities sum to zero.

    Args:
        fitness: ``(n,)`` finite values to minimize.

    Returns:
        ``(n,)`` float64 utilities summing to zero.
    """
    f = _as_fitness(fitness)
    n = f.size
    raw = np.maximum(0.0, math.log(n / 2 + 1) - np.log(np.arange(1, n + 1)))
    per_rank = raw / raw.sum() - 1.0 / n  # Eq. (2)
    return _by_rank(f, per_rank)


def normalized(fitness: Any) -> np.ndarray:
    """Z-scores with the sign flipped, ``(mean - f) / std``; Eq. (3).

    Returns zeros when all values are equal.
    """
    f = _as_fitness(fitness)
    centered = f.mean() - f
    std = float(centered.std())
    if std == 0.0 or not math.isfinite(std):
        return np.zeros_like(f)
    return centered / std  # Eq. (3)


def baseline(fitness: Any) -> np.ndarray:
    """Raw fitness minus its mean, sign flipped (a mean baseline); Eq. (4)."""
    f = _as_fitness(fitness)
    return f.mean() - f  # Eq. (4)


METHODS: dict[str, Callable[[Any], np.ndarray]] = {
    "centered_ranks": centered_ranks,
    "nes_utilities": nes_utilities,
    "normalized": normalized,
    "baseline": baseline,
}
"""Shaping methods by name; aliases: ``"centered"``, ``"nes"``, ``"zscore"``, ``"raw"``."""

_ALIASES = {"centered": "centered_ranks", "nes": "nes_utilities", "zscore": "normalized",
            "raw": "baseline"}


def check_method(method: str) -> str:
    """Return the canonical name of a shaping method, or raise ValueError."""
    name = _ALIASES.get(method, method) if isinstance(method, str) else method
    if name not in METHODS:
        known = ", ".join(sorted([*METHODS, *_ALIASES]))
        raise ValueError(f"unknown fitness shaping method {method!r}; known: {known}")
    return name


def shape(fitness: Any, method: str = "centered_ranks") -> np.ndarray:
    """Utilities of ``fitness`` (to minimize) by the named ``method``.

    Args:
        fitness: ``(n,)`` finite values, lower is better.
        method: one of :data:`METHODS` or an alias.

    Returns:
        ``(n,)`` float64 utilities, higher for lower fitness, summing to zero.

    Raises:
        ValueError: unknown method, wrong shape, or non-finite fitness.
    """
    return METHODS[check_method(method)](fitness)


def rank_safe_fitness(f: np.ndarray) -> np.ndarray:
    """Replace NaN/±inf by finite values that rank after every finite one.

    Order among the finite values is unchanged; the non-finite ones tie for last
    (one spread above the worst finite value, or all zero if none is finite).
    """
    finite = np.isfinite(f)
    if finite.all():
        return f
    if not finite.any():
        return np.zeros_like(f)
    worst = float(f[finite].max())
    spread = float(worst - f[finite].min())
    return np.where(finite, f, worst + max(spread, abs(worst), 1.0))


def constraint_violation(constraints: Any, n: int) -> np.ndarray:
    """Total violation ``sum_j max(0, g_j)`` per candidate of ``(n,)`` or ``(n, m)``
    constraint values (feasible when every ``g_j <= 0``); NaN counts as violated."""
    g = as_float64(constraints, "constraints")
    if g.ndim == 1:
        g = g[:, None]
    if g.ndim != 2 or g.shape[0] != n:
        raise ValueError(
            f"constraints must have shape ({n},) or ({n}, m), one row per candidate with "
            f"g <= 0 feasible, got {g.shape}"
        )
    g = np.where(np.isnan(g), np.inf, g)
    return np.maximum(g, 0.0).sum(axis=1)


def feasibility_first(f: np.ndarray, violation: np.ndarray) -> np.ndarray:
    """Ranks (0 = best) under Deb's feasibility rules (Deb 2000, "An efficient
    constraint handling method for genetic algorithms", CMAME 186:311-338):
    feasible before infeasible, feasible ones by fitness, infeasible ones by
    violation. Returned as float64 "fitness" to minimize."""
    order = np.lexsort((f, violation))  # violation first (0 for feasible), then fitness
    ranks = np.empty(len(f), dtype=np.float64)
    ranks[order] = np.arange(len(f), dtype=np.float64)
    return ranks
