"""The compact genetic algorithm (cGA) on bit strings.

The cGA (Harik, Lobo, Goldberg 1999) replaces a population of ``K`` bit strings by
its marginal frequencies ``p`` in [0, 1]^n and simulates a steady-state GA with
tournaments of two: sample two strings, let them compete, and shift every
frequency where they differ by 1/K towards the winner:

    x, y ~ Bernoulli(p)                       (independent entries)        # Eq. (1)
    p <- p + (x_w - x_l) / K                  (w wins against l)           # Eq. (2)
    p <- clip(p, 1/n, 1 - 1/n)                (borders)                    # Eq. (3)

The borders keep every bit value reachable (Droste 2006; Sudholt & Witt 2019), so
a frequency that drifted to the wrong border can come back. With ``K >= c sqrt(n)
log n`` the cGA optimizes OneMax in ``O(K sqrt n)`` evaluations with high
probability (Sudholt & Witt 2019); the default ``K = ceil(sqrt(n) ln n)`` (at least
4) follows that bound. Sampling ``lambda > 2`` strings per generation updates with
the best against the worst of them. Ties are broken by position (the first drawn
of equal fitness wins), so on a plateau the update is a fair random walk, as in
Sudholt & Witt's analysis.

The cGA itself searches Binary leaves; ``registry.create("cga", space)`` (and so
``minimize``, ``HybridTrainer``, ``tune``) reaches integer, categorical and permutation
leaves through a binary code of them (:mod:`nondiff.optim.binary_code`: Gray-coded
integers and choices, random keys for permutations).

Sources:
    - G. R. Harik, F. G. Lobo, D. E. Goldberg, "The compact genetic algorithm",
      IEEE Transactions on Evolutionary Computation 3(4):287-297, 1999.
    - S. Droste, "A rigorous analysis of the compact genetic algorithm for linear
      functions", Natural Computing 5(3), 2006.
    - D. Sudholt, C. Witt, "On the choice of the update strength in
      estimation-of-distribution algorithms and ant colony optimization",
      Algorithmica 81, 2019.

Example:
    >>> from nondiff.optim.compact_ga import CompactGA
    >>> from nondiff.optim.spaces import Binary
    >>> cga = CompactGA(Binary(40), seed=0)
    >>> while cga.best_f > -40 and cga.counters["evaluations"] < 20_000:
    ...     x = cga.ask()
    ...     _ = cga.tell(x, -x.sum(axis=1))  # OneMax
    >>> cga.best_f, cga.counters["evaluations"] < 5000
    (-40.0, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from .base import Array, BaseOptimizer
from .hyperparameters import Hyperparameters, choice, hyperparameter, integer

__all__ = ["CompactGA", "CompactGAConfig", "CompactGAState", "default_virtual_popsize"]

RECOMMENDATIONS = ("best", "mode")


def default_virtual_popsize(n: int) -> int:
    """``K = max(4, ceil(sqrt(n) ln n))`` (Sudholt & Witt 2019: K >= c sqrt(n) log n)."""
    return max(4, math.ceil(math.sqrt(n) * math.log(max(n, 1))))


@dataclass(frozen=True)
class CompactGAConfig(Hyperparameters):
    """Hyperparameters of :class:`CompactGA` (see its arguments)."""

    virtual_popsize: int | None = hyperparameter(None, integer(2, optional=True))
    recommend: str = hyperparameter("best", choice(RECOMMENDATIONS))

    def resolve(self, dim: int, popsize: int) -> CompactGAConfig:
        if self.virtual_popsize is not None:
            return self
        return replace(self, virtual_popsize=default_virtual_popsize(dim))


@dataclass
class CompactGAState:
    p: np.ndarray  # (n,) frequency of a one in each position


class CompactGA(BaseOptimizer):
    """The compact GA, Eqs. (1)-(3), on bit strings (other discrete leaves: a binary code).

    Args:
        x0: a :class:`~nondiff.optim.spaces.Binary` space (or a Product of them; other
            discrete spaces by name, through :class:`~nondiff.optim.binary_code.BinaryCoded`).
        sigma0: unused (common signature).
        popsize: strings sampled per ``ask``, >= 2 (default 2: the original cGA).
        seed: seed of the generator.
        bounds: must be None.
        virtual_popsize: K >= 2, the update strength is 1/K (default
            :func:`default_virtual_popsize`).
        recommend: ``"best"`` (default): ``recommend()`` is the best string told so
            far (the frequency mode before the first tell); ``"mode"``: the
            frequencies rounded to bits (``p > 1/2``), the model's own guess, less
            sensitive to a lucky noisy evaluation.

    ``tell`` accepts any candidates: they are rounded to bits, and the best and the
    worst of them (by fitness, then constraint rank) drive Eq. (2).

    Example:
        >>> from nondiff.optim.compact_ga import CompactGA
        >>> from nondiff.optim.spaces import Binary
        >>> cga = CompactGA(Binary(8), virtual_popsize=10, recommend="mode", seed=0)
        >>> for _ in range(300):
        ...     x = cga.ask()
        ...     _ = cga.tell(x, -x.sum(axis=1))
        >>> cga.recommend().tolist()
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """

    min_popsize = 2  # a winner and a loser
    name = "cga"
    backend: ClassVar[str] = "numpy"
    handles_bounds: ClassVar[bool] = True  # the operators only produce encodings of the space
    supported_spaces: ClassVar[frozenset[str]] = frozenset({"binary"})

    config_space: ClassVar[bool] = True
    Hyperparameters = CompactGAConfig
    hparams: CompactGAConfig

    def _configure(self) -> None:
        self.border = min(1.0 / self.dim, 0.5)  # Eq. (3); n = 1 keeps p = 1/2

    @classmethod
    def default_popsize(cls, dim: int) -> int:
        return 2

    def _init_state(self, x0: np.ndarray) -> CompactGAState:
        return CompactGAState(p=np.full(self.dim, 0.5))

    def _ask(self, n: int) -> np.ndarray:
        return (self._rng.random((n, self.dim)) < self.state.p).astype(np.float64)  # Eq. (1)

    def _tell(self, x: np.ndarray, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        bits = np.clip(np.rint(np.nan_to_num(x, nan=0.0)), 0.0, 1.0)
        order = np.argsort(fitness, kind="stable")
        winner, loser = bits[order[0]], bits[order[-1]]
        p = self.state.p + (winner - loser) / self.hparams.virtual_popsize  # Eq. (2)
        self.state.p = np.clip(p, self.border, 1.0 - self.border)  # Eq. (3)
        at_border = np.isclose(np.minimum(self.state.p, 1.0 - self.state.p), self.border)
        return {"at_border": float(at_border.mean()),
                "mean_p": float(self.state.p.mean())}

    def mode(self) -> np.ndarray:
        """The most likely string under the model: ``p > 1/2`` as 0.0/1.0."""
        return self.format.to_user((self.state.p > 0.5).astype(np.float64))

    def _recommend(self) -> Array:
        if self.hparams.recommend == "best" and self.counters["evaluations"] > 0 and (
                np.isfinite(self._best_f)):
            return self._best_x.copy()
        return (self.state.p > 0.5).astype(np.float64)
