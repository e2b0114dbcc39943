"""Sorting-network design: a sequence of comparators that sorts every input, minimized.

A network on n wires is L comparator slots, encoded as ``Categorical(pairs + ["noop"],
size=L)`` where ``pairs`` are the (i, j), i < j, in lexicographic order: slot value
``t`` is comparator ``pairs[t]`` (min to wire i, max to wire j) or ``"noop"``. By the
0-1 principle a network sorts all inputs iff it sorts the 2^n inputs in {0, 1}^n, so

    fitness = (#inputs of {0,1}^n left unsorted) * (L + 1) + #comparators     # Eq. (1)

which ranks every sorting network (fitness <= L) before every non-sorting one, and
smaller sorting networks first. The whole population is evaluated on all 2^n inputs
at once, as a ``(population, n, 2^n)`` uint8 tensor, with the L comparators applied
in sequence (torch.minimum / torch.maximum); memory is population * 2^n * n bytes.

Sources:
    - D. E. Knuth, "The Art of Computer Programming", Vol. 3, 2nd ed., Section 5.3.4:
      the 0-1 principle and the optimal sizes 1, 3, 5, 9, 12, 16, 19 for n = 2..8,
      with networks of those sizes.
    - W. D. Hillis, "Co-evolving parasites improve simulated evolution as an
      optimization procedure", Physica D 42, 1990 (sorting networks as a search problem).

Example:
    >>> from nondiff.problems.sorting_networks import SortingNetwork
    >>> p = SortingNetwork(4)  # 4 wires, L = 2 * 5 = 10 slots
    >>> row = p.encode_network([(0, 1), (2, 3), (0, 2), (1, 3), (1, 2)])
    >>> p.sorts(row), float(p(row)), p.f_opt, p.dim
    (True, 5.0, 5.0, 10)
    >>> p.sorts(p.encode_network([(0, 1), (2, 3), (0, 2), (1, 3)]))
    False
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import torch
from nondiff.optim.checks import check_int
from nondiff.optim.spaces import Categorical
from nondiff.problems.base import Array
from nondiff.problems.discrete import DiscreteProblem

__all__ = ["KNOWN_NETWORKS", "MAX_WIRES", "OPTIMAL_SIZE", "SortingNetwork"]

MAX_WIRES = 16
"""Largest n accepted: the evaluator materializes all 2^n inputs per candidate."""

OPTIMAL_SIZE: dict[int, int] = {2: 1, 3: 3, 4: 5, 5: 9, 6: 12, 7: 16, 8: 19}
"""Fewest comparators that sort n inputs (Knuth, TAOCP Vol. 3, Section 5.3.4)."""

KNOWN_NETWORKS: dict[int, list[tuple[int, int]]] = {
    2: [(0, 1)],
    3: [(0, 2), (0, 1), (1, 2)],
    4: [(0, 1), (2, 3), (0, 2), (1, 3), (1, 2)],
    5: [(0, 1), (3, 4), (2, 4), (2, 3), (0, 3), (0, 2), (1, 4), (1, 3), (1, 2)],
    6: [(1, 2), (4, 5), (0, 2), (3, 5), (0, 1), (3, 4), (2, 5), (0, 3), (1, 4), (2, 4),
        (1, 3), (2, 3)],
    7: [(1, 2), (3, 4), (5, 6), (0, 2), (3, 5), (4, 6), (0, 1), (4, 5), (2, 6), (0, 4),
        (1, 5), (0, 3), (2, 5), (1, 3), (2, 4), (2, 3)],
    8: [(0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7), (0, 1), (2, 3),
        (4, 5), (6, 7), (2, 4), (3, 5), (1, 4), (3, 6), (1, 2), (3, 4), (5, 6)],
}
"""A network of size OPTIMAL_SIZE[n] for each n (x_opt, checked in the tests)."""


class SortingNetwork(DiscreteProblem):
    """Design a sorting network on ``n`` wires with at most ``L`` comparators, Eq. (1).

    ``dim`` is L (the encoded length), not n. ``f_opt`` = OPTIMAL_SIZE[n] for
    n <= 8 when L is at least that size (``x_opt``: a known network padded with
    noops), else None.

    Args:
        n: number of wires, 2 <= n <= :data:`MAX_WIRES` (the registry's ``dim``).
        L: comparator slots >= 1; default 2 * OPTIMAL_SIZE[n] for n <= 8 and
            n (n - 1) / 2 (enough for bubble sort) beyond.
        instance: recorded only (the problem has no random part).

    Attributes:
        pairs: the comparators (i, j) in the order of the encoding; ``noop`` = len(pairs).
    """

    name, _repr_params = "sorting-network", ("L",)

    def __init__(self, n: int, *, L: int | None = None, instance: int = 0) -> None:
        self.n = check_int("n", n, 2, MAX_WIRES)
        default = 2 * OPTIMAL_SIZE[self.n] if self.n in OPTIMAL_SIZE else self.n * (self.n - 1) // 2
        self.L = default if L is None else check_int("L", L, 1)
        self.pairs: list[tuple[int, int]] = list(combinations(range(self.n), 2))
        self.noop = len(self.pairs)
        super().__init__(Categorical([*self.pairs, "noop"], size=self.L), instance)
        # noop -> comparator (0, 0): min and max of a wire with itself leave it unchanged
        self._low = torch.tensor([i for i, _ in self.pairs] + [0])
        self._high = torch.tensor([j for _, j in self.pairs] + [0])
        codes = torch.arange(2**self.n)[None, :] >> torch.arange(self.n)[:, None]
        self._inputs = (codes & 1).to(torch.uint8)  # (n, 2^n): wire i of every 0/1 input
        best = OPTIMAL_SIZE.get(self.n)
        if best is not None and self.L >= best:
            self.f_opt, self.x_opt = float(best), self.encode_network(KNOWN_NETWORKS[self.n])
        else:
            self.f_opt = self.x_opt = None

    def errors(self, x: Array) -> Array:
        """Number of the 2^n 0/1 inputs each network of the batch leaves unsorted."""
        return self._map(lambda b: self._errors(self._encoded(b).long()).to(b.dtype), x)

    def _errors(self, slots: torch.Tensor) -> torch.Tensor:
        pop, rows = slots.shape[0], torch.arange(slots.shape[0], device=slots.device)
        inputs = self._inputs.to(slots.device)
        wires = inputs.expand(pop, *inputs.shape).clone()  # (pop, n, 2^n)
        ends = self._low.to(slots.device)[slots], self._high.to(slots.device)[slots]
        for t in range(self.L):  # comparators act in sequence; the population in parallel
            low, high = ends[0][:, t], ends[1][:, t]
            a, b = wires[rows, low], wires[rows, high]  # (pop, 2^n) each
            wires[rows, low] = torch.minimum(a, b)
            wires[rows, high] = torch.maximum(a, b)
        return (wires[:, :-1] > wires[:, 1:]).any(1).sum(-1)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        slots = self._encoded(x).long()
        size = (slots != self.noop).sum(-1)
        return (self._errors(slots) * (self.L + 1) + size).to(x.dtype)  # Eq. (1)

    def encode_network(self, comparators: Sequence[tuple[int, int]]) -> np.ndarray:
        """The ``(L,)`` encoding of a comparator list (i < j), padded with noops."""
        comparators = [tuple(int(v) for v in c) for c in comparators]
        for c in comparators:
            if c not in self.pairs:
                raise ValueError(f"comparator {c} is not a pair (i, j), 0 <= i < j < {self.n}")
        if len(comparators) > self.L:
            raise ValueError(f"{len(comparators)} comparators do not fit in L={self.L} slots")
        slots = comparators + ["noop"] * (self.L - len(comparators))
        return self.space.encode(slots[0] if self.L == 1 else slots)

    def decode_network(self, encoded_row: Array) -> list[tuple[int, int]]:
        """The comparators (i, j) of one ``(L,)`` encoding, in order, noops dropped."""
        slots = self.space.decode(encoded_row)
        return [c for c in ([slots] if self.L == 1 else slots) if c != "noop"]

    def sorts(self, encoded_row: Array) -> bool:
        """Whether the network of one ``(L,)`` encoding sorts every input."""
        if isinstance(encoded_row, torch.Tensor):
            encoded_row = encoded_row.detach().cpu().numpy()
        row = np.asarray(encoded_row, dtype=np.float64)
        if row.shape != (self.L,):
            raise ValueError(f"sorts expects one encoding of shape ({self.L},), got {row.shape}")
        return bool(self.errors(row) == 0)
