"""The final selection's moves of a real entry: a ladder of local steps and a coarse grid.

The final selection of :class:`~nondiff.hybrid.trainer.HybridTrainer`
(:mod:`nondiff.hybrid.selection`) races the recommendation's neighbours, one move
each: a gate flipped, a choice changed, an integer moved by one. A real entry (a
:class:`~nondiff.hybrid.structure.RealParam`) had none, so the selections kept the
search's value of it, and the search's value was often far off. Traced on a hard
threshold written as a check (``"threshold"`` of
:mod:`nondiff.problems.hybrid.acceptance_checks`: ``x_0 > t`` fed to an MLP as a 0/1
feature beside ``x_1 .. x_7``, the label ``1[x_1 > 0] xor 1[x_0 > 1]``, ``t`` a
``RealParam(-2, 2)``; 10 epochs of 2,000 rows, Adam lr 1e-2): CMA-ES-torch (seed 1)
went to ``t = -1.95``, then ``-1.34``, in its first generations, under weights that had
not learned yet, and stopped there on a flat fitness, while under the weights of the
run's end the loss is lowest at ``t = 1``; CEM, xNES and sep-CMA-ES ended as far off on
other seeds.

:func:`real_moves` gives a real entry with finite bounds ``[lo, hi]`` (width ``w``, in the
encoding: a log-scaled real moves in its logarithm) the moves ``value -+ w s`` for each
``s`` of :data:`REAL_STEPS` (clipped to the bounds) and the midpoints of
:data:`REAL_GRID` equal strata of the range. The first selection's grid reaches a region
the search never saw; the later stages and the late selection (under weights trained
for the selected structure) walk the ladder down to ``w / 128``. The selection races
them in the room its other moves and the pairs of gate openings leave
(:meth:`~nondiff.hybrid.final_phase.FinalPhase._next_stage`), so in a space that also
has gates or choices they never crowd those out; in a space of reals only they are the
neighbours, in an order drawn from the trainer's seed (raced after the recommendation,
the three most asked structures and the three first generation winners: measured
against racing them after every asked structure and winner, on the check task 50 of 50
seeds and 4 rows against 47 and 2).

Measured on that task (``python -m nondiff.benchmarks.hybrid_tasks.acceptance
threshold``: 10 structure optimizers, seeds 0-4, against no real moves):
runs ending within 0.1 of ``t = 1`` 34 -> 50 of 50, runs ending more than 0.5 away 7 -> 0,
mean accuracy gap to ``t = 1`` trained alone 5.3 -> 2.5 points, runs within 2 points 23
-> 32, (optimizer) rows with at least 4 of 5 seeds found and a mean gap within 2 points 1
-> 4 of 10. A fourth, finer step (``w / 512``) changed little (2.45 points, 5 rows). What
is left is mostly weights: a search that sat far off until the selection trains the
right threshold for the final phase's steps alone (CEM, seed 1: ``t = 1.000`` at 0.879
against 0.985).

Example:
    >>> real_moves(0.5, -2.0, 2.0)  # steps of 0.5, 0.125 and 1/32, then the grid
    [0.0, 1.0, 0.375, 0.625, 0.46875, 0.53125, -1.75, -1.25, -0.75, -0.25, 0.25, 0.75, 1.25, 1.75]
"""

from __future__ import annotations

import math

__all__ = ["REAL_GRID", "REAL_STEPS", "real_moves"]

REAL_GRID = 8
"""Equal strata of a real entry's range whose midpoints are moves (:func:`real_moves`)."""
REAL_STEPS = (1 / 8, 1 / 32, 1 / 128)
"""The local steps of a real entry, as fractions of its range's width."""


def real_moves(value: float, lo: float, hi: float) -> list[float]:
    """The values a real entry at ``value`` in ``[lo, hi]`` may move to: ``value -+ s (hi -
    lo)`` for each ``s`` of :data:`REAL_STEPS`, clipped to the bounds, then the midpoints
    of :data:`REAL_GRID` equal strata of the range; each once, none equal to ``value``.
    Empty without finite bounds (no width to step by) or at a value that is not finite."""
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(value)) or hi <= lo:
        return []
    width = hi - lo
    candidates = [value + sign * step * width for step in REAL_STEPS for sign in (-1, 1)]
    candidates += [lo + width * (i + 0.5) / REAL_GRID for i in range(REAL_GRID)]
    out: list[float] = []
    for v in candidates:
        v = float(min(max(v, lo), hi))
        if v != value and v not in out:
            out.append(v)
    return out
