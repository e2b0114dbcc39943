"""Discrete benchmark problems on bit strings, torch-vectorized, with seeded instances.

Every problem is a :class:`DiscreteProblem`: it has a typed search space ``space``
(an :mod:`nondiff.optim.spaces` Space, ``dim == space.size``) and evaluates a whole
``(n, dim)`` batch of encodings (bits as 0.0/1.0) in one torch call. Problems whose
natural sense is a maximum set ``maximize=True`` and ``f_opt`` is then the maximum.
Random instances (NK, MaxCut, knapsack) come from
``numpy.random.default_rng(SeedSequence([crc32(name), n, instance]))``, the same in
every process and Python run (unlike ``hash()``). OneMax, LeadingOnes, Jump, Trap and
LABS have no random part: ``instance`` is validated and recorded only. Sorting
networks live in :mod:`nondiff.problems.sorting_networks`.

Sources:
    - S. Droste, T. Jansen, I. Wegener, "On the analysis of the (1+1) evolutionary
      algorithm", Theoretical Computer Science 276, 2002: OneMax, LeadingOnes, Jump_k.
    - K. Deb, D. E. Goldberg, "Analyzing deception in trap functions", Foundations of
      Genetic Algorithms 2, 1993: concatenated deceptive traps.
    - S. Kauffman, E. Weinberger, "The NK model of rugged fitness landscapes ...",
      J. Theoretical Biology 141, 1989; S. Kauffman, "The Origins of Order", 1993.
    - R. M. Karp, "Reducibility among combinatorial problems", 1972 (MaxCut);
      E. N. Gilbert, "Random graphs", 1959, and P. Erdős, A. Rényi, 1959 (G(n, p)).
    - T. Packebusch, S. Mertens, "Low autocorrelation binary sequences", J. Phys. A
      49, 165001, 2016 (LABS; the optimal energies below, re-checked by brute force).
    - H. Kellerer, U. Pferschy, D. Pisinger, "Knapsack Problems", Springer 2004
      (the dynamic program); D. Pisinger, "Where are the hard knapsack problems?",
      Computers & Operations Research 32, 2005 (uncorrelated instances).

Example:
    >>> import numpy as np
    >>> from nondiff.problems.discrete import Knapsack, Trap
    >>> trap = Trap(10, k=5)
    >>> float(trap(np.ones(10))), trap.f_opt, float(trap(np.zeros(10)))
    (10.0, 10.0, 8.0)
    >>> bag = Knapsack(12, instance=1)
    >>> bool(bag(bag.x_opt) == bag.f_opt), bool(bag.constraints(bag.x_opt) <= 0)
    (True, True)
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from nondiff.optim.checks import check_int
from nondiff.optim.spaces import Binary, Space
from nondiff.problems.base import Array, Problem

__all__ = [
    "DISCRETE", "LABS", "LABS_OPTIMAL_ENERGY", "BitStringProblem", "DiscreteProblem", "Jump",
    "Knapsack", "LeadingOnes", "MaxCut", "NKLandscape", "OneMax", "Trap", "instance_rng",
]  # fmt: skip

BRUTE_FORCE_MAX_N = 20
"""NK and MaxCut optima are found by exhaustive search (lazily, cached) up to this n."""
_CHUNK = 1 << 16

LABS_OPTIMAL_ENERGY: dict[int, int] = {
    1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 7, 7: 3, 8: 8, 9: 12, 10: 13, 11: 5, 12: 10,
    13: 6, 14: 19, 15: 15, 16: 24, 17: 32, 18: 25, 19: 29, 20: 26, 21: 26, 22: 39,
    23: 47, 24: 36, 25: 36, 26: 45, 27: 37,
}  # fmt: skip
"""Minimal LABS energy E(n) (Packebusch & Mertens 2016), each value re-checked here by
exhaustive search over all 2^(n-1) sequences with s_0 = +1."""


def instance_rng(name: str, n: int, instance: int) -> np.random.Generator:
    """The generator of instance ``instance`` of problem ``name`` at size ``n``."""
    return np.random.default_rng(np.random.SeedSequence([zlib.crc32(name.encode()), n, instance]))


class DiscreteProblem(Problem):
    """A problem over a typed discrete space, with a lazily computed optimum.

    Subclasses set ``n`` (the problem size), call ``super().__init__(space, instance)``,
    set ``f_opt``/``x_opt`` or ``_solver`` (a callable returning ``(f_opt, x_opt)``, run
    once on first access of either) and implement :meth:`evaluate`, reading the batch
    with :meth:`_encoded`.

    Args:
        space: the search space (all its entries share the same encoded bounds).
        instance: instance number >= 0 (seeds the random parts of the problem).
    """

    _solver: Callable[[], tuple[float | None, np.ndarray | None]] | None = None
    _repr_params: tuple[str, ...] = ()

    def __init__(self, space: Space, instance: int = 0) -> None:
        instance = check_int("instance", instance, 0)
        super().__init__(space.size)
        self.space = space
        self.instance = instance
        self.lower, self.upper = space.bounds()

    @classmethod
    def create(cls, dim: int, instance: int = 0, **kwargs: Any) -> DiscreteProblem:
        """Registry factory: ``dim`` is the problem size n (wires for sorting networks)."""
        return cls(dim, instance=instance, **kwargs)

    def _solve(self) -> None:
        if self._solver is not None:
            solver, self._solver = self._solver, None
            self._f_opt, self._x_opt = solver()

    @property
    def f_opt(self) -> float | None:  # type: ignore[override]
        """The optimal value (the maximum if ``maximize``), or None when unknown."""
        self._solve()
        return self._f_opt

    @f_opt.setter
    def f_opt(self, value: float | None) -> None:
        self._f_opt = value

    @property
    def x_opt(self) -> np.ndarray | None:  # type: ignore[override]
        """An encoding reaching ``f_opt``, or None when unknown."""
        self._solve()
        return self._x_opt

    @x_opt.setter
    def x_opt(self, value: np.ndarray | None) -> None:
        self._x_opt = value

    def _encoded(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` rounded to the nearest encoding; ValueError for entries outside the space."""
        rounded = torch.round(x)
        low, high = float(self.lower[0]), float(self.upper[0])
        bad = ~((rounded >= low) & (rounded <= high))  # also catches NaN
        if bool(bad.any()):
            raise ValueError(f"{self.name} expects encoded entries in [{low:g}, {high:g}] "
                             f"({self.space!r}), got {x[bad][0].item()!r}")
        return rounded

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor], x: Array) -> Array:
        """Apply a batched ``fn`` with the conversions of :meth:`Problem.__call__`."""
        is_numpy = not isinstance(x, torch.Tensor)
        batch = torch.as_tensor(np.asarray(x, dtype=np.float64)) if is_numpy else x
        single = batch.ndim == 1
        batch = batch[None] if single else batch
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(f"{self.name} expects a batch of shape (n, {self.dim}), got "
                             f"shape {tuple(batch.shape)}")
        values = fn(batch if batch.is_floating_point() else batch.to(torch.float64))
        values = values[0] if single else values
        return values.numpy() if is_numpy else values

    def _exhaustive(self, free: int) -> tuple[float, np.ndarray]:
        """Best of the bit strings whose first ``free`` bits vary and the others are 0."""
        best_f, best_x, sign = None, None, 1.0 if self.maximize else -1.0
        shifts = torch.arange(free)
        for start in range(0, 1 << free, _CHUNK):
            ids = torch.arange(start, min(start + _CHUNK, 1 << free))
            bits = torch.zeros(len(ids), self.dim, dtype=torch.float64)
            bits[:, :free] = ((ids[:, None] >> shifts) & 1).to(torch.float64)
            values = self.evaluate(bits) * sign
            i = int(values.argmax())
            if best_f is None or float(values[i]) > best_f:
                best_f, best_x = float(values[i]), bits[i].numpy().copy()
        return sign * best_f, best_x

    def __repr__(self) -> str:
        extra = "".join(f", {p}={getattr(self, p)!r}" for p in self._repr_params)
        return f"{type(self).__name__}({self.n}{extra}, instance={self.instance})"


class BitStringProblem(DiscreteProblem):
    """A problem over ``Binary(n)``; ``n`` is the number of bits (= ``dim``)."""

    def __init__(self, n: int, instance: int = 0) -> None:
        self.n = check_int("n", n, 1)
        super().__init__(Binary(self.n), instance)


class OneMax(BitStringProblem):
    """f(x) = |x| = sum_i x_i, maximized; f_opt = n at 1^n."""

    name, maximize = "onemax", True

    def __init__(self, n: int, *, instance: int = 0) -> None:
        super().__init__(n, instance)
        self.f_opt, self.x_opt = float(self.n), np.ones(self.n)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        return self._encoded(x).sum(-1)


class LeadingOnes(BitStringProblem):
    """f(x) = sum_i prod_{j <= i} x_j, the length of the leading run of ones, maximized."""

    name, maximize = "leadingones", True

    def __init__(self, n: int, *, instance: int = 0) -> None:
        super().__init__(n, instance)
        self.f_opt, self.x_opt = float(self.n), np.ones(self.n)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumprod(self._encoded(x), dim=-1).sum(-1)


class Jump(BitStringProblem):
    """Jump_k, maximized: a OneMax slope with a gap of width k before the optimum 1^n.

    Args:
        n: number of bits.
        k: gap width, 1 <= k <= n (default 3). f_opt = n + k.
    """

    name, maximize, _repr_params = "jump", True, ("k",)

    def __init__(self, n: int, *, k: int = 3, instance: int = 0) -> None:
        super().__init__(n, instance)
        self.k = check_int("k", k, 1, self.n)
        self.f_opt, self.x_opt = float(self.n + self.k), np.ones(self.n)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        ones = self._encoded(x).sum(-1)
        n, k = self.n, self.k
        # Eq. (Droste et al. 2002): k + |x| if |x| <= n - k or |x| = n, else n - |x|
        return torch.where((ones <= n - k) | (ones == n), k + ones, n - ones)


class Trap(BitStringProblem):
    """n/k concatenated deceptive traps of order k, maximized; f_opt = n at 1^n.

    Args:
        n: number of bits, a multiple of k.
        k: block length, 1 <= k <= n (default 5, "trap-5").
    """

    name, maximize, _repr_params = "trap", True, ("k",)

    def __init__(self, n: int, *, k: int = 5, instance: int = 0) -> None:
        super().__init__(n, instance)
        self.k = check_int("k", k, 1, self.n)
        if self.n % self.k:
            raise ValueError(f"trap needs n to be a multiple of k={self.k}, got n={self.n}")
        self.f_opt, self.x_opt = float(self.n), np.ones(self.n)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        u = self._encoded(x).reshape(x.shape[0], self.n // self.k, self.k).sum(-1)
        # Eq. (Deb & Goldberg 1993, a = z = k-1, b = k): k if u = k, else k - 1 - u
        return torch.where(u == self.k, float(self.k), self.k - 1.0 - u).sum(-1)


class NKLandscape(BitStringProblem):
    """Kauffman's NK landscape with random neighbourhoods, maximized.

    f(x) = (1/n) sum_i f_i(x_i, x_{i_1}, ..., x_{i_k}): bit i interacts with k other
    bits chosen uniformly at random, and f_i is a table of 2^(k+1) values uniform in
    [0, 1). ``f_opt``/``x_opt`` by exhaustive search when n <= 20, else None.

    Args:
        n: number of bits.
        k: epistasis, 0 <= k <= n - 1 (default 2).
    """

    name, maximize, _repr_params = "nk", True, ("k",)

    def __init__(self, n: int, *, k: int = 2, instance: int = 0) -> None:
        super().__init__(n, instance)
        self.k = check_int("k", k, 0, self.n - 1)
        rng = instance_rng(self.name, self.n, self.instance)
        others = [rng.choice(np.delete(np.arange(self.n), i), self.k, replace=False)
                  for i in range(self.n)]
        neighbours = np.concatenate([np.arange(self.n)[:, None],
                                     np.asarray(others, dtype=np.int64).reshape(self.n, self.k)], 1)
        self.neighbours = torch.from_numpy(neighbours)  # (n, k+1), bit i first
        self.tables = torch.from_numpy(rng.random((self.n, 2 ** (self.k + 1))))
        self._powers = 2 ** torch.arange(self.k + 1)
        self.f_opt = self.x_opt = None
        if self.n <= BRUTE_FORCE_MAX_N:
            self._solver = lambda: self._exhaustive(self.n)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        genes = self._encoded(x).long()[:, self.neighbours.to(x.device)]  # (pop, n, k+1)
        rows = (genes * self._powers.to(x.device)).sum(-1)  # table row of each f_i
        values = self.tables.to(x.device, x.dtype)[torch.arange(self.n, device=x.device), rows]
        return values.mean(-1)  # Eq. (Kauffman 1993): f = (1/n) sum_i f_i


class MaxCut(BitStringProblem):
    """Maximum cut of a seeded random graph G(n, p); bit i is the side of vertex i.

    cut(x) = sum_{i < j} w_ij [x_i != x_j] = sum_{i, j} w_ij x_i (1 - x_j), maximized.
    ``f_opt``/``x_opt`` by exhaustive search (x_{n-1} = 0 by symmetry) when n <= 20.

    Args:
        n: number of vertices.
        p: edge probability in [0, 1] (default 0.5).
        weighted: integer weights uniform in 1..10 instead of 1 (same edges).

    Attributes:
        weights: the symmetric ``(n, n)`` float64 weight matrix (0 = no edge).
    """

    name, maximize, _repr_params = "maxcut", True, ("p", "weighted")

    def __init__(self, n: int, *, p: float = 0.5, weighted: bool = False,
                 instance: int = 0) -> None:
        super().__init__(n, instance)
        real = isinstance(p, (int, float, np.floating)) and not isinstance(p, bool)
        if not real or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        if not isinstance(weighted, bool):
            raise ValueError(f"weighted must be a bool, got {weighted!r}")
        self.p, self.weighted = float(p), weighted
        rng = instance_rng(self.name, self.n, self.instance)
        edges = np.triu(rng.random((self.n, self.n)) < self.p, 1)
        draws = rng.integers(1, 11, size=(self.n, self.n))  # drawn always: same graph
        upper = np.where(edges, draws if weighted else 1, 0).astype(np.float64)
        self.weights = torch.from_numpy(upper + upper.T)
        self.f_opt = self.x_opt = None
        if self.n <= BRUTE_FORCE_MAX_N:
            self._solver = lambda: self._exhaustive(self.n - 1)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        side = self._encoded(x)
        return ((side @ self.weights.to(x.device, x.dtype)) * (1.0 - side)).sum(-1)  # Eq. cut(S)


class LABS(BitStringProblem):
    """Low-autocorrelation binary sequences, minimized: bits -> s = 2x - 1 in {-1, +1}^n,

    C_k(s) = sum_{i=0}^{n-1-k} s_i s_{i+k},   E(s) = sum_{k=1}^{n-1} C_k^2.

    ``f_opt`` is the known minimal energy for n <= 27 (:data:`LABS_OPTIMAL_ENERGY`),
    else None; the merit factor is n^2 / (2 E). ``x_opt`` is None.
    """

    name = "labs"

    def __init__(self, n: int, *, instance: int = 0) -> None:
        super().__init__(n, instance)
        energy = LABS_OPTIMAL_ENERGY.get(self.n)
        self.f_opt = None if energy is None else float(energy)
        self.x_opt = None

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        s = 2.0 * self._encoded(x) - 1.0
        energy = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for k in range(1, self.n):
            c_k = (s[:, :-k] * s[:, k:]).sum(-1)  # Eq. (1) of Packebusch & Mertens
            energy = energy + c_k.square()  # Eq. (2): E = sum_k C_k^2
        return energy


class Knapsack(BitStringProblem):
    """0/1 knapsack, value maximized, weight constrained (Pisinger's uncorrelated class).

    Weights and values are integers uniform in 1..100; capacity = floor(total weight
    / 2). :meth:`evaluate` returns the total value (no penalty); :meth:`constraints`
    returns g = weight - capacity (feasible iff g <= 0). ``f_opt`` is exact, by the
    dynamic program over capacities (lazily); ``x_opt`` by backtracking when
    n * (capacity + 1) <= 5e7, else None.

    Attributes:
        weights, values: ``(n,)`` float64 tensors; capacity: int.
    """

    name, maximize = "knapsack", True

    def __init__(self, n: int, *, instance: int = 0) -> None:
        super().__init__(n, instance)
        rng = instance_rng(self.name, self.n, self.instance)
        weights, values = rng.integers(1, 101, size=(2, self.n))
        self.capacity = int(weights.sum() // 2)
        self.weights = torch.from_numpy(weights.astype(np.float64))
        self.values = torch.from_numpy(values.astype(np.float64))
        self.f_opt = self.x_opt = None
        self._solver = self._dynamic_program

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        return self._encoded(x) @ self.values.to(x.device, x.dtype)

    def constraints(self, x: Array) -> Array:
        """g(x) = sum_i w_i x_i - capacity, ``(n,)`` for a batch; feasible iff g <= 0."""
        return self._map(
            lambda b: self._encoded(b) @ self.weights.to(b.device, b.dtype) - self.capacity, x)

    def _dynamic_program(self) -> tuple[float, np.ndarray | None]:
        weights, values = self.weights.long().tolist(), self.values.long().tolist()
        cap = self.capacity
        keep = np.zeros((self.n, cap + 1), dtype=bool) if self.n * (cap + 1) <= 5e7 else None
        best = np.zeros(cap + 1, dtype=np.int64)  # best[c]: max value within weight c
        for i, (w, v) in enumerate(zip(weights, values, strict=True)):
            if w > cap:
                continue
            take = np.zeros(cap + 1, dtype=bool)
            take[w:] = best[:-w] + v > best[w:]  # Eq.: best[c] = max(best[c], best[c-w]+v)
            best = np.where(take, np.concatenate([best[:w], best[:-w] + v]), best)
            if keep is not None:
                keep[i] = take
        if keep is None:
            return float(best[cap]), None
        x, c = np.zeros(self.n), cap
        for i in reversed(range(self.n)):
            if keep[i, c]:
                x[i], c = 1.0, c - weights[i]
        return float(best[cap]), x


DISCRETE: dict[str, type[DiscreteProblem]] = {
    cls.name: cls for cls in (OneMax, LeadingOnes, Jump, Trap, NKLandscape, MaxCut, LABS, Knapsack)
}
"""Registry name -> class of the bit-string problems (sorting networks: their own module)."""
