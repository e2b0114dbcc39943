"""The final selection: the structure the final phase trains, picked on several batches.

A search scored on mini-batches ends with a recommendation that one noisy generation
decided: the best of the last GA population, the last accepted (1+lambda) child, the
mean of a CMA-ES that still moves. Before :class:`~nondiff.hybrid.trainer.HybridTrainer`'s
final phase (``final_steps``) trains one structure alone, it scores a shortlist on the
first ``select_batches`` batches of that phase — every candidate on the same rows under
the same weights, the sums compared (paired) — and trains and returns the best. The
shortlist (:func:`shortlist`) is the optimizer's recommendation and the structures its
last generations asked most often (a converged population holds its best several
times; the luckiest single draw of the last generation does not get in by luck), as
often asked ones by their place in their generations. The
budget (:func:`shortlist_size`) is what the final phase's steps earn under the search's
bound, so a bounded search stays within it. This is the last step of one-shot NAS —
candidates from the supernet re-ranked on more data before one is chosen (Bender et
al. 2018; Guo et al. 2020 rank their final candidates on a validation set) — on the
training batches the search saw.

Measured on the acceptance suite (5 seeds, 37 (task, optimizer) rows, the trainer's
defaults against ``select_batches=0``; :mod:`nondiff.benchmarks.hybrid_tasks.acceptance`):
rows meeting all three targets 18 -> 25; sep-CMA-ES on relevant-inputs 3 -> 5 of 5
seeds (gap 6.8 -> 1.1 points), CMA-ES on nonlinearity gap 3.1 -> 1.0 points, REINFORCE
on inputs-and-activation 1 -> 4 of 5 seeds and on op-graph 3 -> 4.

Sources:
    - G. Bender, P.-J. Kindermans, B. Zoph, V. Vasudevan, Q. Le, "Understanding and
      simplifying one-shot architecture search", ICML 2018.
    - Z. Guo, X. Zhang, H. Mu, W. Heng, Z. Liu, Y. Wei, J. Sun, "Single path one-shot
      neural architecture search with uniform sampling", ECCV 2020.

Example:
    >>> from nondiff.hybrid.selection import shortlist, shortlist_size
    >>> recent = [[[0, 1], [1, 1], [1, 1]], [[1, 1], [0, 0]]]  # two generations
    >>> shortlist([0, 1], recent, 3)  # the recommendation, then the most asked
    [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    >>> shortlist([0, 1], [[[1, 0], [0, 0], [1, 1]]], 3, objectives=[[0.5, 0.2, 0.9]])
    [[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    >>> shortlist_size(budget=2048, rows=64, batches=4, limit=8)
    8
    >>> shortlist_size(budget=500, rows=64, batches=4, limit=8)  # fewer than 2: none
    0
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

__all__ = ["SELECT_BATCHES", "SELECT_CANDIDATES", "SELECT_GENERATIONS", "shortlist",
           "shortlist_size"]

SELECT_BATCHES = 4
"""Default ``select_batches``: batches the shortlist is scored on (4 x 64 rows)."""
SELECT_CANDIDATES = 8
"""The most candidates on a shortlist."""
SELECT_GENERATIONS = 4
"""The last generations whose structures enter the shortlist."""


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


def shortlist_size(budget: float, rows: int, batches: int, limit: int = SELECT_CANDIDATES
                   ) -> int:
    """How many candidates ``budget`` evaluation examples pay for on ``batches`` batches of
    ``rows`` rows (at most ``limit``; 0 when fewer than 2: nothing to compare)."""
    if rows <= 0 or batches <= 0:
        return 0
    k = min(limit, math.floor(budget / (rows * batches))) if math.isfinite(budget) else limit
    return int(k) if k >= 2 else 0
