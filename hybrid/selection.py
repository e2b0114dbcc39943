"""The final selection: the structure the final phase trains, picked on several batches.

A search scored on mini-batches ends with a recommendation that one noisy generation
decided: the best of the last GA population, the last accepted (1+lambda) child, the
mean of a CMA-ES that still moves. Before :class:`~nondiff.hybrid.trainer.HybridTrainer`'s
final phase (``final_steps``) trains one structure alone, it scores a pool of candidates
on the first ``select_batches`` batches of that phase — every candidate on the same rows
under the same weights (paired) — and trains and returns the best. The pool
(:func:`candidate_pool`) is

- the optimizer's recommendation;
- in the first selection, structures a screen built (``built``): the recommendation
  with every gate open, pruned by the closing screen, one per option of a few-shot split
  (:mod:`~nondiff.hybrid.gate_closing`; the search may have lost inputs the weights
  still read);
- the structures its last generations asked most often (a converged population holds
  its best several times; the luckiest single draw of the last generation does not get
  in by luck), as often asked ones by their place in their generations;
- the recommendation's neighbours (:func:`neighbours`: one gate flipped, one choice
  changed, an integer moved by one, a real moved along a ladder of steps or to a coarse
  grid (:mod:`~nondiff.hybrid.real_moves`), two adjacent items of an ordering swapped), the
  cheapest first under a structure cost, each declaration of the model taking its turn
  (:func:`leaf_turns`: 64 pixel gates do not crowd out an activation's moves): a local
  search on the trained supernet, which is competitive with far more elaborate NAS
  searches (White et al. 2021). It repairs what a search ended one step short of: a noise
  gate left open whose cost the last generations did not have time to weigh, one slot
  still on a wrong op;
- in the room the budget leaves once every single move has a place, pairs of gate
  openings (:func:`gate_openings`, :func:`two_moves`): inputs that matter only together
  (the sign of a product) stay closed under single moves, since opening one alone
  changes nothing but the cost. Before those, when a selection has screened the
  start's closed gates (:mod:`~nondiff.hybrid.gate_screen`: each one closed with every
  gate open), the pairs of the best ranked ones still closed, before the single moves,
  and the single openings in the order of their rank; and when it has screened pairs of
  moves of two ``Choice`` slots (:mod:`~nondiff.hybrid.choice_screen`: a Taylor
  prediction in the slots relaxed to mixtures), the best predicted ones, taking turns
  with the gate pairs.

The pool is raced by successive halving (:func:`halving_plan`; Jamieson & Talwalkar
2016): every candidate on the first batch, the better half (by the sums so far) on the
next, and so on, so twice the candidates fit the budget of scoring a fixed shortlist on
every batch. The selection descends in stages of two batches (:func:`stage_lengths`;
``select_batches=4``: two): each later stage races the last winner and those of its
neighbours not raced before, the moves the last stage had no room for first
(:func:`untried_first`), so a structure two steps from the recommendation (two noise
gates left open) is reached; it also races the winner with every other move of the last
stage that beat that stage's start on their common first batch, and that start with all
of them (:func:`combined_moves`; the winner may be no move of the start but a structure
the last generations asked often), so three noise gates left open close in one stage.
Each stage's pool is as large as its share of the budget pays for (:func:`pool_size`);
the budget is what the final phase's steps earn under the search's bound, so a bounded
search stays within it. This is the last step of one-shot NAS — candidates from the
supernet re-ranked on more data before one is chosen (Bender et al. 2018; Guo et al. 2020
rank their final candidates on a validation set) — on the training batches the search
saw.

Measured on the acceptance suite (5 seeds;
:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`), its 13 optimizers x 4 tasks (49 rows,
245 runs): seeds that recover the known structure 180 with the shortlist scored on every
batch, 196 with the neighbours raced in one stage, 207 in two stages (rows meeting all
three targets 23, 27, 28). The combined moves (7 tasks, 91 rows, 455 runs): on the
winner, seeds recovered 358 -> 360 (REINFORCE on inputs-and-activation 3 -> 5 of 5: noise
gates it left open), rows meeting all three 60 -> 61, no run worse; on the start too, 361
and 62 rows (REINFORCE on relevant-inputs 3 -> 5 of 5; one program run of CMA-ES lost).
The pairs of gate openings in the room a pool has left (10 tasks x 13 optimizers x 5
seeds, the trainer's defaults): rows meeting all three targets 98 -> 99 of 130, seeds
recovered 586 -> 588 (head-choice 12 -> 13 rows: CEM's seed 4 had closed every gate and
now finds ``x0`` and ``x3``; relevant-inputs 64 -> 65 seeds); the tasks without gates
cannot change. Pairs of any two moves (categorical ones too) took routing from 31 to 37
seeds but program from 7 to 6 rows (more candidates give a wrong program more chances
to win a noisy race), so only gate openings are paired.
Before, the shortlist scored on every batch (no neighbours, no halving) took the 37
(task, optimizer) rows of then meeting all three targets from 18 (``select_batches=0``)
to 25; sep-CMA-ES on relevant-inputs 3 -> 5 of 5 seeds (gap 6.8 -> 1.1 points), CMA-ES on
nonlinearity gap 3.1 -> 1.0 points, REINFORCE on inputs-and-activation 1 -> 4 of 5 seeds
and on op-graph 3 -> 4.

Sources:
    - G. Bender, P.-J. Kindermans, B. Zoph, V. Vasudevan, Q. Le, "Understanding and
      simplifying one-shot architecture search", ICML 2018.
    - Z. Guo, X. Zhang, H. Mu, W. Heng, Z. Liu, Y. Wei, J. Sun, "Single path one-shot
      neural architecture search with uniform sampling", ECCV 2020.
    - C. White, S. Nolen, Y. Savani, "Exploring the loss landscape in neural
      architecture search", UAI 2021 (local search on NAS benchmarks).
    - K. Jamieson, A. Talwalkar, "Non-stochastic best arm identification and
      hyperparameter optimization", AISTATS 2016 (successive halving).

Example:
    >>> from nondiff.hybrid.selection import halving_plan, neighbours, shortlist
    >>> from nondiff.optim.spaces import Binary, Categorical, Product
    >>> recent = [[[0, 1], [1, 1], [1, 1]], [[1, 1], [0, 0]]]  # two generations
    >>> shortlist([0, 1], recent, 3)  # the recommendation, then the most asked
    [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    >>> shortlist([0, 1], [[[1, 0], [0, 0], [1, 1]]], 3, objectives=[[0.5, 0.2, 0.9]])
    [[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    >>> space = Product(gates=Binary(2), op=Categorical(["add", "mul", "max"]))
    >>> neighbours(space, [1, 0, 2])  # one gate flipped or the op changed
    [[0.0, 0.0, 2.0], [1.0, 1.0, 2.0], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]
    >>> halving_plan(10, batches=4)  # candidates scored on each batch
    [10, 5, 3, 2]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from nondiff.optim.spaces import Space

from .real_moves import REAL_GRID, REAL_STEPS, real_moves

__all__ = ["PAIR_ENUMERATE", "SELECT_BATCHES", "SELECT_CANDIDATES", "SELECT_GENERATIONS",
           "SELECT_RECENT", "SELECT_STAGE_BATCHES", "SELECT_WINNERS", "candidate_pool",
           "closed_gates", "combined_moves", "gate_openings", "halving_plan", "leaf_turns",
           "neighbour_count", "neighbours", "pool_size", "real_entries", "real_moves_of",
           "record_winner", "shortlist", "stage_lengths", "survivors", "two_moves",
           "untried_first"]

SELECT_BATCHES = 4
"""Default ``select_batches``: batches the pool is raced on (4 x 64 rows)."""
SELECT_CANDIDATES = 24
"""The most candidates in a pool (an unbounded search's pool)."""
SELECT_GENERATIONS = 4
"""The last generations whose structures enter the pool."""
SELECT_RECENT = 7
"""The most often asked structures of those generations that enter the pool."""
SELECT_WINNERS = 16
"""The generation winners (best of their generation) the archive keeps."""
SELECT_STAGE_BATCHES = 2
"""Batches per stage of the descent (:func:`stage_lengths`)."""
PAIR_ENUMERATE = 4096
""":func:`two_moves` lists every pair of single moves up to this many, else samples."""


def shortlist(recommended: Sequence[float], recent: Sequence[Sequence[Sequence[float]]],
              k: int, objectives: Sequence[Sequence[float]] | None = None
              ) -> list[list[float]]:
    """At most ``k`` distinct encoded structures: ``recommended`` first, then those of the
    ``recent`` generations (oldest first), the most often asked first; among as often
    asked, the best placed in their generations first when ``objectives`` (per
    generation, one value per row, lower is better) are given — a rank within a
    generation compares rows scored on one batch — then the one asked last."""
    first = tuple(float(v) for v in recommended)
    counts: Counter[tuple[float, ...]] = Counter()
    places: dict[tuple[float, ...], list[float]] = {}
    last: dict[tuple[float, ...], int] = {}
    for g, generation in enumerate(recent):
        ranks = [0.0] * len(generation)
        if objectives is not None and len(generation) > 1:
            values = [v if math.isfinite(v) else math.inf for v in objectives[g]]
            order = sorted(range(len(values)), key=values.__getitem__)
            for place, i in enumerate(order):
                ranks[i] = place / (len(values) - 1)
        for i, row in enumerate(generation):
            key = tuple(float(v) for v in row)
            counts[key] += 1
            places.setdefault(key, []).append(ranks[i])
            last[key] = g * 1_000_000 + i
    others = sorted((key for key in counts if key != first),
                    key=lambda key: (-counts[key], sum(places[key]) / len(places[key]),
                                     -last[key]))
    return [list(key) for key in [first, *others][:max(k, 0)]]


def neighbours(space: Space, encoded: Sequence[float]) -> list[list[float]]:
    """Every encoded structure one step from ``encoded`` in ``space``, leaf by leaf: a
    binary or categorical entry set to each of its other values, an integer entry
    moved by one (within its bounds), a real entry with finite bounds moved by a
    ladder of local steps and to a coarse grid
    (:func:`~nondiff.hybrid.real_moves.real_moves`), two adjacent items of a permutation
    swapped."""
    x = np.asarray(encoded, dtype=np.float64).reshape(-1)
    out: list[list[float]] = []
    for _, leaf, where in space.leaves():
        lower, upper = leaf.bounds()
        for j in range(where.start, where.stop):
            lo, hi = lower[j - where.start], upper[j - where.start]
            if leaf.kind in ("binary", "categorical"):
                values = [v for v in np.arange(lo, hi + 1) if v != x[j]]
            elif leaf.kind == "integer":
                values = [v for v in (x[j] - 1, x[j] + 1) if lo <= v <= hi]
            elif leaf.kind == "real":
                values = real_moves(float(x[j]), float(lo), float(hi))
            else:
                values = []
            for v in values:
                y = x.copy()
                y[j] = v
                out.append(y.tolist())
        if leaf.kind == "permutation":
            for j in range(where.start, where.stop - 1):
                y = x.copy()
                y[j], y[j + 1] = x[j + 1], x[j]
                out.append(y.tolist())
    return out


def real_entries(space: Space) -> set[int]:
    """The entries of ``space``'s encoding that belong to its real leaves.

    >>> from nondiff.optim.spaces import Binary, Product, Real
    >>> sorted(real_entries(Product(g=Binary(2), t=Real(0.0, 1.0))))
    [2]
    """
    return {j for _, leaf, where in space.leaves() if leaf.kind == "real"
            for j in range(where.start, where.stop)}


def real_moves_of(start: Sequence[float], near: Sequence[Sequence[float]], reals: set[int]
                  ) -> tuple[list[list[float]], list[list[float]]]:
    """``near`` split into the moves of other entries and those that change real entries
    only (``reals``: :func:`real_entries`), each in its order.

    >>> real_moves_of([0, 0.5], [[1, 0.5], [0, 0.75], [1, 0.75]], {1})
    ([[1, 0.5], [1, 0.75]], [[0, 0.75]])
    """
    base = np.asarray(start, dtype=np.float64).reshape(-1)
    others: list[list[float]] = []
    moves: list[list[float]] = []
    for row in near:
        changed = np.flatnonzero(np.asarray(row, dtype=np.float64).reshape(-1) != base)
        (moves if changed.size and set(changed.tolist()) <= reals else others).append(
            list(row))
    return others, moves


def neighbour_count(space: Space) -> int:
    """How many neighbours (:func:`neighbours`) a structure of ``space`` has at most: one
    per other value of each binary or categorical entry, two per integer entry, those of
    :func:`~nondiff.hybrid.real_moves.real_moves` per real entry with finite bounds, one
    per adjacent pair of a permutation.

    >>> from nondiff.optim.spaces import Binary, Categorical, Product
    >>> neighbour_count(Product(gates=Binary(20), act=Categorical(["relu", "tanh", "id"])))
    22
    """
    count = 0
    for _, leaf, where in space.leaves():
        size = where.stop - where.start
        if leaf.kind in ("binary", "categorical"):
            count += size * (int(leaf.cardinality) - 1)
        elif leaf.kind == "integer":
            count += 2 * size
        elif leaf.kind == "real":
            lower, upper = leaf.bounds()
            count += sum(2 * len(REAL_STEPS) + REAL_GRID
                         for lo, hi in zip(lower, upper, strict=True)
                         if math.isfinite(lo) and math.isfinite(hi) and hi > lo)
        elif leaf.kind == "permutation":
            count += max(0, size - 1)
    return count


def leaf_turns(space: Space, encoded: Sequence[float], near: Sequence[Sequence[float]]
               ) -> list[list[float]]:
    """``near`` (structures one step from ``encoded``, in order of priority) reordered so
    that the leaves of ``space`` take turns: the first move of each leaf (by the first
    entry it changes), in the order the leaves first appear, then the second of each,
    and so on; within a leaf the order is kept. A pool cut short then holds moves of
    every declaration, not only of its largest one: 64 pixel gates would otherwise fill
    a pool of 24 and leave out the one move of an activation ``Choice`` beside them.

    >>> from nondiff.optim.spaces import Binary, Categorical, Product
    >>> space = Product(gates=Binary(3), act=Categorical(["relu", "none"]))
    >>> near = neighbours(space, [1, 1, 1, 1])
    >>> leaf_turns(space, [1, 1, 1, 1], near)  # the act's move second, not last
    [[0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]]
    """
    x = np.asarray(encoded, dtype=np.float64).reshape(-1)
    owner = np.zeros(x.size, dtype=np.int64)
    for i, (_, _, where) in enumerate(space.leaves()):
        owner[where] = i
    groups: dict[int, list[list[float]]] = {}
    for row in near:
        changed = np.flatnonzero(np.asarray(row, dtype=np.float64).reshape(-1) != x)
        groups.setdefault(int(owner[changed[0]]) if changed.size else -1, []).append(
            [float(v) for v in row])
    out: list[list[float]] = []
    for turn in range(max((len(g) for g in groups.values()), default=0)):
        out.extend(g[turn] for g in groups.values() if turn < len(g))
    return out


def record_winner(winners: Sequence[Sequence[Any]], row: Sequence[float], generation: int,
                  limit: int = SELECT_WINNERS) -> list[list[Any]]:
    """The archive ``winners`` (``[encoded, wins, when it last won]`` entries) with
    ``row`` recorded as the winner at ``generation`` (a generation or step count): the
    ``limit`` most often winning structures kept (among as often, the latest), most
    wins first.

    >>> archive = record_winner([], [1, 0], 0)
    >>> archive = record_winner(record_winner(archive, [0, 1], 1), [1, 0], 2)
    >>> archive
    [[[1.0, 0.0], 2, 2], [[0.0, 1.0], 1, 1]]
    """
    key = [float(v) for v in row]
    entries = [[list(map(float, e[0])), int(e[1]), int(e[2])] for e in winners]
    for entry in entries:
        if entry[0] == key:
            entry[1], entry[2] = entry[1] + 1, generation
            break
    else:
        entries.append([key, 1, generation])
    entries.sort(key=lambda e: (-e[1], -e[2]))
    return entries[:limit]


def candidate_pool(recommended: Sequence[float], frequent: Sequence[Sequence[float]],
                   near: Sequence[Sequence[float]], limit: int,
                   winners: Sequence[Sequence[float]] = (),
                   built: Sequence[Sequence[float]] = ()) -> list[list[float]]:
    """At most ``limit`` distinct candidates, in order of priority: ``recommended``, the
    ``built`` ones (structures a screen constructed), the three most ``frequent`` (a
    :func:`shortlist` without its first entry), the three first ``winners`` (the best of
    earlier generations, most often best first), the ``near`` structures (neighbours,
    best first), then the other frequent ones and winners."""
    pool: list[list[float]] = []
    seen: set[tuple[float, ...]] = set()
    for row in [recommended, *built, *frequent[:3], *winners[:3], *near, *frequent[3:],
                *winners[3:]]:
        key = tuple(float(v) for v in row)
        if key not in seen and len(pool) < max(limit, 0):
            seen.add(key)
            pool.append(list(key))
    return pool


def two_moves(start: Sequence[float], near: Sequence[Sequence[float]], limit: int,
              rng: np.random.Generator) -> list[list[float]]:
    """At most ``limit`` structures two moves from ``start``: two of the single moves
    ``near`` (each a neighbour of ``start``, e.g. its :func:`gate_openings`) that change
    different entries, applied together, in an order drawn from ``rng``; none that
    ``near`` holds already.

    Inputs that matter only together (the sign of a product, an XOR) defeat a descent
    of single moves: from a structure with both closed, opening either one alone changes
    nothing but the cost, so both stay closed while the weights, trained under fair
    paths that opened them, would read them. The final selection races these pairs in
    what its budget leaves once every single move has a place (:func:`candidate_pool`'s
    ``limit``), so a small space also gets its two-move neighbourhood.

    >>> rng = np.random.default_rng(0)
    >>> sorted(two_moves([0, 0, 0], [[1, 0, 0], [0, 1, 0], [0, 0, 1]], 5, rng))
    [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    """
    base = np.asarray(start, dtype=np.float64).reshape(-1)
    moves = [(np.flatnonzero(row != base), row) for row in
             (np.asarray(r, dtype=np.float64).reshape(-1) for r in near)]
    moves = [(changed, row) for changed, row in moves if changed.size]
    m = len(moves)
    if limit < 1 or m < 2:
        return []
    total = m * (m - 1) // 2
    if total <= PAIR_ENUMERATE:  # every pair, in a random order
        pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
        order = [pairs[t] for t in rng.permutation(total)]
    else:  # a large space: random pairs (a repeat is skipped below)
        order = [tuple(sorted(rng.choice(m, 2, replace=False))) for _ in range(4 * limit)]
    seen = {row.tobytes() for _, row in moves}
    out: list[list[float]] = []
    for i, j in order:
        (a, row_a), (b, row_b) = moves[i], moves[j]
        if np.intersect1d(a, b).size:
            continue
        both = row_a.copy()
        both[b] = row_b[b]
        if both.tobytes() in seen:
            continue
        seen.add(both.tobytes())
        out.append(both.tolist())
        if len(out) >= limit:
            break
    return out


def closed_gates(space: Space, start: Sequence[float]) -> list[int]:
    """The entries of ``start`` in the binary leaves of ``space`` that are closed
    (exactly 0, as :func:`neighbours` reads them), in order.

    >>> from nondiff.optim.spaces import Binary, Categorical, Product
    >>> closed_gates(Product(gates=Binary(3), act=Categorical(["relu", "tanh"])), [0, 1, 0, 0])
    [0, 2]
    """
    base = np.asarray(start, dtype=np.float64).reshape(-1)
    return [j for _, leaf, where in space.leaves() if leaf.kind == "binary"
            for j in range(where.start, where.stop) if base[j] == 0]


def gate_openings(space: Space, start: Sequence[float]) -> list[list[float]]:
    """Every structure one gate opening from ``start``: one entry of a binary leaf of
    ``space`` set from 0 to 1 (:func:`closed_gates`), nothing else changed.

    >>> from nondiff.optim.spaces import Binary, Categorical, Product
    >>> gate_openings(Product(gates=Binary(3), act=Categorical(["relu", "tanh"])), [0, 1, 0, 1])
    [[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]]
    """
    base = np.asarray(start, dtype=np.float64).reshape(-1)
    out = []
    for j in closed_gates(space, start):
        row = base.copy()
        row[j] = 1.0
        out.append(row.tolist())
    return out


def untried_first(previous_start: Sequence[float], previous: Sequence[Sequence[float]],
                  start: Sequence[float], near: Sequence[Sequence[float]]
                  ) -> list[list[float]]:
    """``near`` (moves from ``start``, in order of priority) with the moves the last
    stage did not race first: a move is the entries a structure changes and their new
    values, and the last stage raced the moves of its candidates ``previous`` from its
    own start ``previous_start``. Within each group the order is kept.

    A later stage whose pool the budget cuts short would otherwise race again the moves
    that just lost from the stage's new winner, and leave out, a second time, the ones
    the first pool had no room for: on issue 17's 20-input case a relevant input left
    closed was never raced, in either stage, while ten noise inputs were raced twice.

    >>> previous = [[0, 0, 0], [1, 0, 0], [0, 1, 0]]  # the start and two moves
    >>> untried_first([0, 0, 0], previous, [1, 0, 0], [[1, 1, 0], [1, 0, 1], [0, 0, 0]])
    [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
    """
    def move(row: Sequence[float], base: np.ndarray) -> tuple[tuple[int, float], ...]:
        r = np.asarray(row, dtype=np.float64).reshape(-1)
        return tuple((int(i), float(r[i])) for i in np.flatnonzero(r != base))

    old = np.asarray(previous_start, dtype=np.float64).reshape(-1)
    raced = {move(c, old) for c in previous} - {()}
    base = np.asarray(start, dtype=np.float64).reshape(-1)
    rows = [[float(v) for v in row] for row in near]
    return sorted(rows, key=lambda row: move(row, base) in raced)


def combined_moves(start: Sequence[float], candidates: Sequence[Sequence[float]],
                   scores: Sequence[float | None], winner: Sequence[float]
                   ) -> list[float] | None:
    """``winner`` with every other move of a stage that beat its ``start`` applied too,
    or None when no other move did.

    A move is a candidate that differs from ``start`` in one or two entries (a neighbour:
    a gate flipped, a choice changed, two items swapped; or a pair of gate openings,
    :func:`two_moves`); it beat the start when its
    ``scores`` entry (the stage's first batch, which scored every candidate on the same
    rows; None: not scored) is finite and lower than the start's. Moves are applied
    best first, each only where no applied move, nor the winner's own change, has
    touched its entries. Several noise gates left open each cost their price, and
    closing each one beats the start on its own; the descent of one move per stage
    (:func:`neighbours`) would close one per stage, this candidate closes them at once
    and is raced in the next stage like any other.

    >>> start = [1, 1, 1, 1]
    >>> moves = [[1, 1, 1, 1], [0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]]
    >>> combined_moves(start, moves, [0.5, 0.9, 0.4, 0.45, 0.3], winner=[1, 1, 1, 0])
    [1.0, 0.0, 0.0, 0.0]
    """
    s = np.asarray(start, dtype=np.float64).reshape(-1)
    base = next((v for c, v in zip(candidates, scores, strict=True)
                 if np.array_equal(np.asarray(c, dtype=np.float64), s)), None)
    if base is None or not math.isfinite(base):
        return None
    moves = []
    for c, v in zip(candidates, scores, strict=True):
        if v is None or not math.isfinite(v) or v >= base:
            continue
        row = np.asarray(c, dtype=np.float64).reshape(-1)
        changed = np.flatnonzero(row != s)
        if 0 < changed.size <= 2:
            moves.append((float(v), changed, row[changed]))
    out = np.asarray(winner, dtype=np.float64).reshape(-1).copy()
    taken = set(np.flatnonzero(out != s).tolist())
    applied = 0
    for _, changed, values in sorted(moves, key=lambda m: m[0]):
        if taken & set(changed.tolist()):
            continue
        out[changed] = values
        taken |= set(changed.tolist())
        applied += 1
    return out.tolist() if applied else None


def stage_lengths(batches: int, per_stage: int = SELECT_STAGE_BATCHES) -> list[int]:
    """The batches of each stage of the descent: ``batches // per_stage`` stages (at
    least one), as equal as can be, the longer first.

    >>> stage_lengths(4), stage_lengths(5), stage_lengths(3), stage_lengths(1)
    ([2, 2], [3, 2], [3], [1])
    """
    stages = max(1, batches // per_stage)
    return [batches // stages + (i < batches % stages) for i in range(stages)]


def halving_plan(n: int, batches: int) -> list[int]:
    """Candidates scored on each of ``batches`` batches when ``n`` start: the better half
    (rounded up, at least 2) goes on after each batch."""
    plan = []
    for _ in range(max(batches, 0)):
        if n < 1:
            break
        plan.append(n)
        n = max(min(n, 2), math.ceil(n / 2))
    return plan


def survivors(sums: Sequence[float], alive: Sequence[int], keep: int) -> list[int]:
    """The ``keep`` indices of ``alive`` with the lowest ``sums`` (non-finite last; ties:
    the earlier index, the recommendation first), in index order."""
    def key(i: int) -> tuple[float, int]:
        value = sums[i]
        return (value if math.isfinite(value) else math.inf, i)
    return sorted(sorted(alive, key=key)[:max(keep, 0)])


def pool_size(budget: float, rows: int, batches: int, limit: int = SELECT_CANDIDATES) -> int:
    """The most candidates (at most ``limit``) whose :func:`halving_plan` over ``batches``
    batches of ``rows`` rows ``budget`` evaluation examples pay for; 0 when fewer than 2:
    nothing to compare.

    Example: 2048 examples of 64-row batches pay for 32 scorings: 16 candidates over 4
    batches (16 + 8 + 4 + 2 = 30).

    >>> pool_size(budget=2048, rows=64, batches=4)
    16
    >>> pool_size(budget=200, rows=64, batches=4)
    0
    """
    if rows <= 0 or batches <= 0:
        return 0
    k = limit
    while k >= 2 and math.isfinite(budget) and sum(halving_plan(k, batches)) * rows > budget:
        k -= 1
    return k if k >= 2 else 0
