"""Variation and selection operators on encoded discrete spaces (batched numpy).

Shared by :mod:`nondiff.optim.ga` (the (1+lambda) EA and the GA). A :class:`Layout` reads a
:class:`~nondiff.optim.spaces.Space` once: its *flat* entries (Binary, Integer, Categorical:
an integer in ``offset .. offset + cardinality - 1``) and its Permutation leaves.
Every operator works on a whole ``(k, dim)`` float64 batch of encodings at once;
the only Python loops are over permutation leaves and over the few rounds of swaps.

Operators:
    - :func:`mutate`: standard bit mutation generalized leaf by leaf. A flat entry
      changes w.p. ``chi / n`` (``n = dim``) to a uniformly drawn *other* value (a
      bit flips); a permutation leaf of ``m`` entries is hit w.p. ``min(1, chi m / n)``
      and then gets ``1 + Poisson(1)`` random transpositions (one more if they
      cancelled out). When nothing changed
      in a row, one uniformly chosen entry is changed (the "shift" strategy of
      Carvalho Pinto & Doerr 2018: ``l ~ Bin(n, p)``, ``l <- max(l, 1)``), so no
      offspring is a copy of its parent and no evaluation is wasted. (The
      "resampling" strategy, ``l ~ Bin(n, p)`` conditioned on ``l >= 1``, differs
      only in the probability of flipping exactly one bit: ``(1-p)^(n-1)`` more here.)
      With ``shift=False`` (a GA for a noisy objective) such a row stays a copy.
    - :func:`crossover`: uniform or one-point on the flat entries, order crossover
      OX1 (Davis 1985) on each permutation leaf.
    - :func:`order_crossover`: OX1. The child copies the parent-1 segment
      ``[lo, hi)`` in place and fills the other positions, starting at ``hi`` and
      wrapping around, with the remaining elements in the order they appear in
      parent 2 read from ``hi`` (cyclically): the relative order of parent 2 is kept.
    - :func:`tournament`: tournament selection of size ``k`` on ranks.
    - :func:`repair`: project arbitrary told rows onto the space.

Sources:
    - E. Carvalho Pinto, C. Doerr, "Towards a more practice-aware runtime analysis of
      evolutionary algorithms", arXiv, 2018 (the "shift" mutation).
    - L. Davis, "Applying adaptive algorithms to epistatic domains", IJCAI 1985 (OX1).
    - D. E. Goldberg, K. Deb, "A comparative analysis of selection schemes used in
      genetic algorithms", FOGA 1991 (tournament selection).

Example:
    >>> import numpy as np
    >>> from nondiff.optim.ga_operators import Layout, mutate
    >>> from nondiff.optim.spaces import Binary, Permutation, Product
    >>> layout = Layout.of(Product(bits=Binary(6), order=Permutation(4)))
    >>> rng = np.random.default_rng(0)
    >>> parent = np.array([[0, 0, 0, 0, 0, 0, 3, 2, 1, 0]], dtype=float)
    >>> child = mutate(np.repeat(parent, 5, axis=0), layout, rng)
    >>> bool((child != parent).any(axis=1).all())  # every child differs
    True
    >>> sorted(child[0, 6:].tolist())  # still a permutation
    [0.0, 1.0, 2.0, 3.0]
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .spaces import Space

__all__ = ["Layout", "crossover", "mutate", "order_crossover", "rank_keys", "repair",
           "tournament"]

CROSSOVERS = ("uniform", "one-point")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a space's discrete entries are (built once by :meth:`of`).

    Attributes:
        dim: encoded length.
        flat: column indices of Binary/Integer/Categorical entries.
        offset, cardinality: per flat column, the smallest value and the count.
        perms: ``(start, stop)`` of each Permutation leaf.
        cols, card, low: the flat columns that can change (cardinality >= 2), with
            their cardinality and offset.
        swappable: indices into ``perms`` of the leaves with >= 2 entries;
            ``perm_sizes`` their sizes; ``perm_ends`` the cumulative sizes.
        units: entries that mutation can change.
    """

    dim: int
    flat: np.ndarray
    offset: np.ndarray
    cardinality: np.ndarray
    perms: tuple[tuple[int, int], ...]
    cols: np.ndarray
    card: np.ndarray
    low: np.ndarray
    swappable: np.ndarray
    perm_sizes: np.ndarray
    perm_ends: np.ndarray
    units: int

    @classmethod
    def of(cls, space: Space) -> Layout:
        flat, offset, card, perms = [], [], [], []
        for _, leaf, part in space.leaves():
            if leaf.kind == "permutation":
                perms.append((part.start, part.stop))
                continue
            if leaf.kind not in ("binary", "integer", "categorical"):
                raise ValueError(f"no discrete operators for a {leaf.kind} leaf ({leaf!r})")
            lower, upper = leaf.bounds()
            flat.extend(range(part.start, part.stop))
            offset.extend(lower.tolist())
            card.extend((upper - lower + 1).astype(np.int64).tolist())
        flat_a, off_a = np.asarray(flat, dtype=np.int64), np.asarray(offset, dtype=np.float64)
        card_a = np.asarray(card, dtype=np.int64)
        mutable = card_a >= 2
        sizes = np.asarray([b - a for a, b in perms], dtype=np.int64)
        swappable = np.flatnonzero(sizes >= 2)
        perm_sizes = sizes[swappable]
        return cls(space.size, flat_a, off_a, card_a, tuple(perms), flat_a[mutable],
                   card_a[mutable], off_a[mutable], swappable, perm_sizes,
                   np.cumsum(perm_sizes), int(mutable.sum() + perm_sizes.sum()))


def repair(x: np.ndarray, layout: Layout) -> np.ndarray:
    """The nearest valid encodings: flat entries rounded and clipped into range;
    permutation blocks replaced by their ranks (the identity on valid permutations)."""
    x = np.array(x, dtype=np.float64, copy=True)
    cols = layout.flat
    if cols.size:
        low, high = layout.offset, layout.offset + layout.cardinality - 1
        flat = np.where(np.isfinite(x[:, cols]), x[:, cols], low)
        x[:, cols] = np.clip(np.rint(flat), low, high)
    for a, b in layout.perms:
        block = np.nan_to_num(x[:, a:b], nan=np.inf)
        order = np.argsort(block, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(b - a)[None, :].repeat(len(x), 0), axis=1)
        x[:, a:b] = ranks
    return x


def _swaps(block: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> None:
    """Apply ``1 + Poisson(1)`` random transpositions to ``block[rows]`` in place,
    and one more to the rows they left unchanged."""
    m, before = block.shape[1], block[rows].copy()
    count = 1 + rng.poisson(1.0, size=rows.size)
    for r in range(int(count.max(initial=0)) + 1):
        if r == count.max(initial=0):  # swaps that cancelled out: one more
            active = rows[(block[rows] == before).all(axis=1)]
        else:
            active = rows[count > r]
        i = rng.integers(0, m, size=active.size)
        j = (i + rng.integers(1, m, size=active.size)) % m  # j != i
        block[active, i], block[active, j] = block[active, j], block[active, i]


def mutate(x: np.ndarray, layout: Layout, rng: np.random.Generator,
           rate: float = 1.0, shift: bool = True) -> np.ndarray:
    """Mutated copies of the rows of ``x`` (see the module docstring); ``rate`` is
    ``chi`` in the per-entry probability ``chi / n``; ``shift=False`` leaves a row that
    no entry mutated in as it is (plain standard bit mutation: a copy)."""
    x = np.array(x, dtype=np.float64, copy=True)
    k, n, cols, card = x.shape[0], layout.dim, layout.cols, layout.card
    if layout.units == 0 or k == 0:
        return x
    flips = rng.random((k, cols.size)) < rate / n
    hits = rng.random((k, layout.swappable.size)) < np.minimum(1.0, rate * layout.perm_sizes / n)
    idle = np.flatnonzero(~(flips.any(1) | hits.any(1)))
    if shift and idle.size:  # the "shift": change one uniformly chosen entry
        u = rng.integers(0, layout.units, size=idle.size)
        on_flat = u < cols.size
        flips[idle[on_flat], u[on_flat]] = True
        leaf = np.searchsorted(layout.perm_ends, u[~on_flat] - cols.size, side="right")
        hits[idle[~on_flat], leaf] = True
    ri, ci = np.nonzero(flips)
    if ri.size:  # another value, uniformly: v -> low + (v - low + U{1..c-1}) mod c
        low, step = layout.low[ci], rng.integers(1, card[ci])
        x[ri, cols[ci]] = low + (x[ri, cols[ci]] - low + step) % card[ci]
    for h, leaf in enumerate(layout.swappable):
        rows = np.flatnonzero(hits[:, h])
        if rows.size:
            a, b = layout.perms[leaf]
            _swaps(x[:, a:b], rows, rng)  # a view: swapped in place
    return x


def order_crossover(p1: np.ndarray, p2: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray) -> np.ndarray:
    """OX1 (Davis 1985) of permutation rows ``p1``, ``p2`` (``(k, m)`` integers) with
    the parent-1 segments ``[lo, hi)`` (``(k,)`` each, ``0 <= lo < hi <= m``)."""
    p1, p2 = np.asarray(p1, dtype=np.int64), np.asarray(p2, dtype=np.int64)
    k, m = p1.shape
    lo, hi = np.asarray(lo, dtype=np.int64)[:, None], np.asarray(hi, dtype=np.int64)[:, None]
    pos = np.arange(m)[None, :]
    inseg = (pos >= lo) & (pos < hi)
    child = np.where(inseg, p1, -1)
    taken = np.zeros((k, m), dtype=bool)
    np.put_along_axis(taken, p1, inseg, axis=1)  # taken[i, p1[i, j]] = inseg[i, j]
    rot = (hi + pos) % m  # positions read cyclically from hi
    donor = np.take_along_axis(p2, rot, axis=1)
    keep = ~np.take_along_axis(taken, donor, axis=1)
    free = ~np.take_along_axis(inseg, rot, axis=1)
    src = np.take_along_axis(donor, np.argsort(~keep, axis=1, kind="stable"), axis=1)
    dst = np.take_along_axis(rot, np.argsort(~free, axis=1, kind="stable"), axis=1)
    fill = pos < (m - (hi - lo))
    rows = np.broadcast_to(np.arange(k)[:, None], (k, m))
    child[rows[fill], dst[fill]] = src[fill]
    return child


def crossover(a: np.ndarray, b: np.ndarray, layout: Layout, rng: np.random.Generator,
              kind: str = "uniform") -> tuple[np.ndarray, np.ndarray]:
    """Two children of each parent pair (rows of ``a`` and ``b``): complementary
    uniform or one-point crossover on the flat entries, OX1 on each permutation."""
    c1, c2 = np.array(a, dtype=np.float64, copy=True), np.array(b, dtype=np.float64, copy=True)
    k, cols = a.shape[0], layout.flat
    if cols.size:
        if kind == "uniform":
            take = rng.random((k, cols.size)) < 0.5
        else:  # one-point: cut c in 1 .. len-1 (a plain copy when there is one entry)
            cut = rng.integers(1, max(cols.size, 2), size=k)
            take = np.arange(cols.size)[None, :] < cut[:, None]
        c1[:, cols] = np.where(take, a[:, cols], b[:, cols])
        c2[:, cols] = np.where(take, b[:, cols], a[:, cols])
    for start, stop in layout.perms:
        m = stop - start
        i, j = rng.integers(0, m, size=(2, k))
        lo, hi = np.minimum(i, j), np.maximum(i, j) + 1
        c1[:, start:stop] = order_crossover(a[:, start:stop], b[:, start:stop], lo, hi)
        c2[:, start:stop] = order_crossover(b[:, start:stop], a[:, start:stop], lo, hi)
    return c1, c2


def rank_keys(f: np.ndarray, violation: np.ndarray) -> np.ndarray:
    """Ranks (0 = best) under (violation, fitness) order, ties by position."""
    order = np.lexsort((np.arange(len(f)), f, violation))
    ranks = np.empty(len(f), dtype=np.int64)
    ranks[order] = np.arange(len(f))
    return ranks


def tournament(ranks: np.ndarray, count: int, size: int,
               rng: np.random.Generator) -> np.ndarray:
    """Indices of ``count`` winners of tournaments of ``size`` entrants each, drawn
    uniformly with replacement; the lowest rank wins."""
    entrants = rng.integers(0, len(ranks), size=(count, size))
    return entrants[np.arange(count), np.argmin(ranks[entrants], axis=1)]
