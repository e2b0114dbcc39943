"""Gates that matter together: the gate parsimony's closings tested as one group.

Without a structure cost, :class:`~nondiff.hybrid.trainer.HybridTrainer`'s gate
parsimony (:attr:`~nondiff.hybrid.final_phase.FinalPhase.gate_parsimony`) charges each
open gate what noise could explain of its value: ``sqrt(2 ln n)`` standard errors of its
closing screen (:func:`~nondiff.hybrid.gate_closing.noise_threshold`). That tells a
relevant input from a noise input one gate at a time; it cannot see inputs that are
each worth little because the others carry the same information. On the README's
example (scikit-learn's 8 x 8 digits behind 64 gates, an activation choice, 10 epochs
at lr 1e-2) the first selection's pruned start — every gate open, then every gate
closed whose saving after its penalty is below 0 — closed 51 to 62 of the 64 pixels,
whose predicted changes summed to -0.004 to 0.55, below the 0.30 to 1.95 that their
penalties added up to; measured on the same 64 rows, closing them together raised the
loss by 0.8 to 2.0 (4.4 to 15 standard errors; CMA-ES, GA, REINFORCE, PGPE, seeds
0-2). The runs ended with 16 to 46 pixels, 0.8 to 14 points (mean 3.4) below the best
activation trained alone with every pixel.

:func:`joint_closing` measures a group instead of predicting it: the loss of each row
with the group closed less its loss with every gate open, under the same weights, on
the screen's rows; their mean and its standard error. The trainer
(:meth:`~nondiff.hybrid.final_phase.FinalPhase._keep_together`, switched by
``HybridTrainer.keep_together``) closes the pruned start's group less its two most
valuable gates (the pruning path races those two open again:
:data:`~nondiff.hybrid.final_phase.PRUNE_PATH`). When the loss rises by more than the
threshold the single gates had to clear, in its own standard errors, what the group is
worth lies in no one or two of its gates: every gate of the group loses its penalty for
the rest of the run, the start is pruned again without them, and the first stage races
the start with every gate open before it. The noise inputs of the group lose their
penalty too (one by one they cannot be told from the inputs that matter together).

Measured with :mod:`nondiff.benchmarks.hybrid_tasks.readme_digits` (13 optimizers, seeds
0-2, against ``--no-keep-together``): runs within 2 points of the best activation
trained alone with every pixel 20 -> 31 of 39 at 10 epochs and lr 1e-2 (pixels kept 37
-> 54, mean gap 2.7 -> 1.6 points), 5 -> 33 at 5 epochs and lr 1e-3 (4.2 -> 1.6), 5 -> 31
at 10 epochs and lr 1e-3 (3.7 -> 1.7), 7 -> 13 at 5 epochs and lr 1e-2 (6.5 -> 4.1: too
short a run, where even the every-pixel ReLU trained alone for the final 30 % after
weights shared for 70 % ends 1.4-2.2 points short). On the acceptance suite's tasks with
gates, where few inputs matter, the same whole group (CMA-ES and GA, seed 0, no cost)
changed the loss by -0.06 to +0.06, -2.1 to +1.5 standard errors. Over 13 optimizers
and seeds 0-4 (:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`): the six gated tasks,
xor-16 and three-class without their cost 96 -> 95 rows of 104 meeting issue 17's
targets, 478 -> 474 seeds recovered (with a structure cost nothing is tested: a cost
withheld for want of a signal keeps the parsimony as its stand-in; tested there too, the
suite with its costs and three check tasks went 161 -> 160 of 182 rows, 876 -> 874
seeds, by the pool the passes took). Of the 520 runs without a cost 18 changed: the
test's two passes take 128 examples from the selection's pool, and where the group held
a relevant input beyond the two most valuable (relevant-inputs, CMA-ES-torch seed 1:
the loss rose by 0.70, 4.4 standard errors) the noise inputs of the group stayed open
with it (6 gates for 3; 0.957 against 0.966; three-class, sep-CMA-ES-torch seed 4: 12
gates for 4, 0.938 against 0.941).

Tried first: keeping open only the fewest most valuable gates whose staying open
brought the rest's closing within the noise (a bisection). Under the shared weights, on
64 rows, a few pixels carried all that was measurable, and the run ended as before (35
pixels kept, 3.7 points below). Freeing only the group's gates whose own predicted
change is above 0, with or without the every-gate-open start: 2.6 and 2.1 points.

Sources:
    - L. Breiman, J. Friedman, R. Olshen, C. Stone, "Classification and regression
      trees", Wadsworth 1984 (the one-standard-error rule: the simplest model within
      one standard error of the best).
    - I. Guyon, A. Elisseeff, "An introduction to variable and feature selection",
      JMLR 3, 2003 (variables useless alone can be useful together; redundant
      variables each look useless while the others are kept).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.structure import Gates, structure_space
    >>> model = nn.Sequential(Gates(4), nn.Linear(4, 1))
    >>> with torch.no_grad():  # every input carries a quarter of the target
    ...     _ = model[1].weight.fill_(0.25)
    ...     _ = model[1].bias.zero_()
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(64, 1, generator=g).repeat(1, 4)  # four copies of one signal
    >>> change, error, passes = joint_closing(model, structure_space(model), [1, 1, 1, 1],
    ...                                       [1, 0, 0, 0], x, x[:, :1], nn.MSELoss())
    >>> change > 3 * error, passes  # closing three of the copies costs far beyond noise
    (True, 2)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from nondiff.optim.spaces import Space
from torch import nn

from .blocks import leaves, slice_rows
from .candidate_norms import candidate_statistics
from .structure import get_structure, set_structure_encoded

__all__ = ["joint_closing", "row_losses"]


@torch.no_grad()
def row_losses(model: nn.Module, space: Space, encoded: Sequence[float], x: torch.Tensor,
               y: Any, loss: Callable[[Any, Any], torch.Tensor]) -> np.ndarray | None:
    """Each row's ``loss`` under the structure ``encoded`` (in ``space``,
    ``structure_space(model)``): ``loss`` on that row of the output alone, so ``loss`` is
    taken to be a mean over the rows, as the closing screen takes it
    (:func:`~nondiff.hybrid.gate_closing.closing_screen`). One forward pass of the rows
    in eval mode (a batch norm on the rows' own statistics, as the selection scores),
    without gradients; the model keeps its structure and mode. None when a loss is not
    finite, when the output or the target is not one row per row of ``x`` (a tensor whose
    first dimension is not the rows, a scalar), or when ``loss`` refuses a single row;
    an error of the forward pass itself propagates."""
    before = space.encode(get_structure(model))  # restored after
    was_training = model.training
    rows = int(x.shape[0])
    try:
        model.eval()
        set_structure_encoded(model, np.asarray(encoded, dtype=np.float64))
        with candidate_statistics(model, rows):
            out = model(x)
    finally:
        set_structure_encoded(model, before)
        model.train(was_training)
    if not all(isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == rows
               for t in leaves(out) + leaves(y)):
        return None
    try:
        losses = np.asarray([float(loss(slice_rows(out, r, r + 1), slice_rows(y, r, r + 1)))
                             for r in range(rows)])
    except (RuntimeError, TypeError, ValueError, IndexError):  # the loss refuses one row
        return None
    return losses if np.isfinite(losses).all() else None


def _paired(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """The mean of the rows' changes and its standard error (ddof 1; 0 for one row)."""
    change = after - before
    return float(change.mean()), float(change.std(ddof=min(1, len(change) - 1))
                                       / math.sqrt(len(change)))


def joint_closing(model: nn.Module, space: Space, start: Sequence[float],
                  closed: Sequence[float], x: torch.Tensor, y: Any,
                  loss: Callable[[Any, Any], torch.Tensor]) -> tuple[float, float, int]:
    """The measured change of ``loss`` from ``start`` to ``closed`` (structures encoded in
    ``space``; ``closed`` is ``start`` with some gates closed) on the rows of ``(x, y)``:
    the mean over the rows of each row's loss under ``closed`` less its loss under
    ``start`` (:func:`row_losses`), the standard error of that mean, and the passes it
    took (one forward pass of the rows per structure). ``(nan, nan, passes)`` when a
    loss is not finite or the output cannot be cut into rows."""
    before = row_losses(model, space, start, x, y, loss)
    if before is None:
        return math.nan, math.nan, 1
    after = row_losses(model, space, closed, x, y, loss)
    if after is None:
        return math.nan, math.nan, 2
    return (*_paired(before, after), 2)
