"""Which open gates to close first: the selection's single closings ordered by a gradient.

A selection's pool (:mod:`nondiff.hybrid.selection`) is often smaller than the start's
single moves. Under a structure cost the cheapest moves come first, so the pool holds
closings, but with more open gates than places it holds a random subset of them. On
issue 17's ``"two-pairs"`` task (:mod:`nondiff.problems.hybrid.acceptance`: the sign of
``x_1 x_7 + x_13 x_18`` among 20 inputs) PGPE's late selection started from ten open
gates, four relevant and six noise, with a pool of twelve: three screened pairs and
eight closings. The two closings left out were noise gates, and the run ended with them
open (accuracy 0.970 against 0.982 for the known structure trained alone). Under the
weights trained for that start, closing a noise gate changed the loss by -0.006 to
-0.001 and closing a relevant one by +0.14 to +0.15, so the ranking is easy to get; only
the pool did not see it.

The screen predicts the change of the loss from closing each open gate of the start by a
Taylor expansion in the gate's relaxed opening ``g`` (the gate multiplies its input by
``g``; closing moves ``g`` from 1 to 0): ``-dL/dg + F/2``, with the empirical Fisher
``F`` (the mean over rows of the squared derivative of each row's loss) standing for the
second derivative, as in Optimal Brain Damage's saliency with the Fisher in place of the
Hessian (Theis et al. 2018). One forward and one backward pass on the selection's first
rows give both, every gate at once: each row gets its own opening, so the backward pass
returns every row's derivative (:func:`closing_changes`). The first-order term alone is
not enough: the weights are trained, so the loss is near a minimum along the scale of
every input the weights use, and ``dL/dg`` was as small for the two relevant inputs
of a product (0.0006, 0.0049) as for noise inputs; the Fisher term ranked the six noise
gates first there (predicted -0.007 to 0.001, the relevant ones 0.05 to 0.16). It
underestimates a confident model's loss from closing a relevant input (0.18 predicted
against 1.24 in the tests) but ranks it last; a noise input, which the weights barely
use, changes the loss almost linearly in its opening, and its prediction is its real
change. The loss is taken to be a mean over the rows (a sum scales the Fisher term up by
the rows), and a batch norm couples the rows a little.

The selection then orders the single closings of its pool by the prediction plus the
change of the structure cost, lowest first, in the places the closings hold
(:func:`order_closings`), and races one more candidate before them: the start with
every gate closed whose prediction is below 0 (:func:`closed_together`), when the
fitness is the loss (the cost is scaled for the fitness). The race still decides; a
wrong prediction costs a place in the pool. On the PGPE run above the joined candidate
won the late selection's first stage, and the run ended on the known structure (0.978).

Measured on the acceptance suite's six gated tasks
(:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`, 13 optimizers, the trainer's
defaults, against ``screen_closings=False``; ``OMP_NUM_THREADS=1 python -m
nondiff.benchmarks.hybrid_tasks.acceptance relevant-inputs inputs-and-activation
head-choice many-inputs mixed-inputs two-pairs [--first-seed 5] [--no-screen-closings]``):
(task, optimizer) rows meeting all
three targets of issue 17 66 -> 65 of 78 on seeds 0-4 (mixed-inputs 6 -> 5: a CEM seed
took another path earlier and lost an input) and 62 -> 66 on seeds 5-9; seeds recovering
the known structure 368 -> 373 and 358 -> 371 of 390 (two-pairs 53 -> 59 and 52 -> 56).
On two gated tasks written afterwards as a check (``1[x3 x11 + x6 > 0]`` among 16 inputs
with the activation choice; ``|x2| + |x8| - x13`` above its median among 18 with a plain
gated MLP; seeds 0-4) 50 -> 54 and 63 -> 63 seeds, 6 -> 6 and 12 -> 13 rows. It runs
where the few-shot weights are no longer split (:mod:`~nondiff.hybrid.few_shot`), so on
models with an activation choice only in the late selection. The misses left are mostly
runs whose shared weights never learned the product, and ended with both its inputs
closed.

The first selection also prunes from the other end (``HybridTrainer.prune_open``,
default True; :meth:`~nondiff.hybrid.final_phase.FinalPhase._pruned_starts`). A search
can lose inputs that matter only together: its recommendation holds neither input of a
product, or only noise inputs, while the weights, trained first with every gate open
(:data:`~nondiff.hybrid.sampling.FAIR_OPEN_START`), still read them. So the screen also
runs on the recommendation with every gate open (:func:`every_gate_open`), and the
first stage races that start with every gate closed whose prediction is below 0 (the
cost's change included when the fitness is the loss; :func:`closed_together` with
``least=0``), right after the recommendation.
While few-shot weights are split on an activation :class:`~nondiff.hybrid.structure.
Choice` (:mod:`~nondiff.hybrid.few_shot`) it builds one such start per option, each
screened under its option's copy, the recommendation's option first. Wang et al.
(2021) select a supernet's operations the same way, by the loss of removing each from
the whole supernet. It screens once, from every gate open: screened again from its
pruned start, the second screen closed the one input of a product the first had kept
(with its partner closed, it is worth nothing): mixed-inputs fell from 64 to 62 of 65
seeds (seeds 0-4). Closing also the gates whose prediction is within one standard error
(over the rows) of the cost's saving, the 1-SE rule, closed a product's input on two
more seeds of it (SNES seed 4, xNES seed 2). Traced on four runs that had ended wrong
(two-pairs CEM seed 0 and the (1+lambda) EA seed 2, mixed-inputs CGA seed 3 and xNES
seed 2), one screen on 1,000 test rows (the trainer screens the 64 first rows of the
selection's batch): the ReLU copy's pruned start kept 2 to 4 of the relevant inputs and
no more than one noise input, and scored 0.58-0.77 with its cost, against 0.75-0.85 for
the recommendation. It costs one pass of its rows per option, within
:data:`CLOSING_SHARE` of the selection's budget.

Measured on the six gated tasks (13 optimizers, the trainer's defaults, against
``prune_open=False``: the command above, with and without ``--no-prune-open``; the
forward examples stay within 2x): (task, optimizer) rows meeting all three targets of
issue 17 65 -> 73 of 78 on seeds 0-4 and 66 -> 73 on seeds 5-9; seeds recovering the
known structure 373 -> 385 and 371 -> 385 of 390. Over seeds 0-9, mixed-inputs 14 -> 23
rows of 26 (114 -> 127 seeds of 130), two-pairs 17 -> 23 (115 -> 127),
inputs-and-activation 25 -> 26, many-inputs 23 -> 22 (126 seeds either way; a (1+lambda)
EA seed that missed either way lost more accuracy), relevant-inputs and head-choice 26
rows and 130 seeds either way. On the two gated tasks written as a check after the
closing screen (above; seeds 0-4) 117 -> 124 seeds of 130 and 19 -> 21 rows of 26
(``x_3 x_11 + x_6``: 54 -> 60 seeds). The misses left on it end on ``x_6`` alone with
tanh: the ReLU copy's pruned start kept the product's pair and two noise inputs, and
lost the first stage by their cost (0.456 against 0.447 on its first batch).

Each pruned start is followed in the pool by the next steps back along its pruning path
(:func:`pruning_path`, :data:`~nondiff.hybrid.final_phase.PRUNE_PATH` of them): the
start with its most valuable closed gate open again, then its two most valuable. Under
weights that read a product weakly, one of its inputs can fall just below the cost
while its partner stays: traced on ``x_4 x_19 > 0`` among 32 inputs (6 epochs of batches
of 32; CEM seed 4), the ReLU copy's screen ranked input 4 first (0.056) and input 19
second (0.018), below the cost of 0.02, so the pruned start kept input 4 alone and the
selection ended with every gate closed (0.49 accuracy); one step back it holds the pair,
which won (0.96). No screen is added: the path reuses the start's predictions, and its
structures take places in the first stage's pool after the pruned starts. Measured on
the six gated tasks (13 optimizers, against no path): rows meeting all three targets
73 -> 75 of 78 on seeds 0-4 and 73 -> 75 on seeds 5-9 (many-inputs 22 -> 24 of 26,
two-pairs 23 -> 25, mixed-inputs 23 either way), seeds recovered 385 -> 386 and 385 ->
387 of 390; on tasks outside the suite (seeds 0-4), that XOR among 32 inputs 9 -> 11
rows of 13 (59 -> 61 seeds; the runs that ended with every gate closed 5 -> 3; seeds
5-9: 8 -> 9 rows, 56 -> 57 seeds),
``x_3 x_11 + x_6`` 8 -> 9 rows (60 -> 61 seeds), ``|x_2| + |x_8| - x_13`` 13 rows either
way, and ``x_1^2 + x_7^2`` among 12 inputs (batches of 128) 8 rows either way.

Sources:
    - M. C. Mozer, P. Smolensky, "Skeletonization: a technique for trimming the fat from
      a network via relevance assessment", NIPS 1988 (the derivative of the loss in a
      unit's attentional strength as its relevance).
    - L. Breiman, J. Friedman, R. Olshen, C. Stone, "Classification and regression
      trees", Wadsworth 1984 (the one-standard-error rule: the simplest model within
      one standard error of the best).
    - D. L. Donoho, I. M. Johnstone, "Ideal spatial adaptation by wavelet shrinkage",
      Biometrika 81, 1994 (the universal threshold ``sqrt(2 ln n)`` standard errors).
    - Y. LeCun, J. Denker, S. Solla, "Optimal brain damage", NIPS 1989 (the
      second-order saliency of removing a weight).
    - L. Theis, I. Korshunova, A. Tejani, F. Huszár, "Faster gaze prediction with
      dense networks and Fisher pruning", 2018 (the empirical Fisher as that second
      derivative, for removing feature maps through a multiplicative mask).
    - R. Wang, M. Cheng, X. Chen, X. Tang, C.-J. Hsieh, "Rethinking architecture
      selection in differentiable NAS", ICLR 2021 (a supernet's operations selected by
      the loss of removing each one).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.structure import Gates, structure_space
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(Gates(3), nn.Linear(3, 1))
    >>> with torch.no_grad():
    ...     _ = model[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.5]]))
    ...     _ = model[1].bias.zero_()
    >>> x = torch.randn(64, 3)
    >>> y = x[:, :1].clone()  # only input 0 matters; input 2 adds noise
    >>> space = structure_space(model)
    >>> changes, passes = closing_changes(model, space, [1, 0, 1], x, y, nn.MSELoss())
    >>> sorted(changes, key=changes.get), passes  # closing input 2 lowers the loss
    ([2, 0], 1)
    >>> order_closings([1, 0, 1], [[0, 0, 1], [1, 1, 1], [1, 0, 0]], changes)
    [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from nondiff.optim.spaces import Space
from torch import nn

from .candidate_norms import candidate_statistics
from .gate_screen import reorder_flips
from .structure import Gates, declared_entries, get_structure, set_structure_encoded

__all__ = ["CLOSING_SHARE", "closed_together", "closing_changes", "closing_screen",
           "every_gate_open", "gate_entries", "noise_threshold", "order_closings",
           "pruning_path"]

CLOSING_SHARE = 1 / 2
"""The most of a selection's budget the closing screen may take together with the other
screens' examples (:mod:`~nondiff.hybrid.gate_screen`, :mod:`~nondiff.hybrid.choice_screen`);
it costs one pass of its rows, and the first selection's pruned starts one more per
option of a few-shot split, within the same share."""


def gate_entries(model: nn.Module, space: Space) -> list[tuple[int, Gates]]:
    """``(first entry, gates)`` for every :class:`~nondiff.hybrid.structure.Gates` of
    ``model``: where its bits start in the encoding of ``space``
    (``structure_space(model)``)."""
    return [(at, decl) for at, decl in declared_entries(model, space)
            if isinstance(decl, Gates)]


def closing_changes(model: nn.Module, space: Space, start: Sequence[float], x: torch.Tensor,
                    y: Any, loss: Callable[[Any, Any], torch.Tensor]
                    ) -> tuple[dict[int, float], int]:
    """The change of ``loss(model(x), y)`` (a mean over the rows) that closing each open
    gate of ``start`` (encoded in ``space``) makes, predicted as ``-dL/dg + F/2`` at the
    gate's opening ``g = 1`` (``F``: the mean over rows of the squared derivative of each
    row's loss; see the module docstring), by entry, and the passes it took (one forward
    and backward pass, or 0 when ``start`` has no open gate). The model is evaluated in
    eval mode (a batch norm on the rows' own statistics, as the selection scores) and
    keeps its structure and mode (and a ``forward`` set on a ``Gates`` instance); no
    parameter's ``.grad`` changes. Left out: gates the loss does not reach. Returns
    ``({}, passes)`` when the loss or a derivative is not finite, autograd refuses (a
    RuntimeError), or a ``Gates`` does not see one row per row of ``x`` (gates on the
    rows' dimension, rows reshaped). :func:`closing_screen` gives their standard errors
    too."""
    changes, _, passes = closing_screen(model, space, start, x, y, loss)
    return changes, passes


def closing_screen(model: nn.Module, space: Space, start: Sequence[float], x: torch.Tensor,
                   y: Any, loss: Callable[[Any, Any], torch.Tensor]
                   ) -> tuple[dict[int, float], dict[int, float], int]:
    """:func:`closing_changes` with the standard error of each prediction: ``(changes,
    errors, passes)``, ``errors`` by entry as ``changes``. Row ``r``'s own predicted
    change is ``-D_r + D_r^2 / 2`` (``D_r`` the derivative of its loss in the opening),
    whose mean over the rows is the prediction; the error is their standard deviation
    (one degree of freedom less; 0 for one row) over the square root of the rows (the
    gate parsimony of :class:`~nondiff.hybrid.trainer.HybridTrainer` weighs a gate by
    it: :func:`noise_threshold`).

    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.structure import Gates, structure_space
    >>> model = nn.Sequential(Gates(2), nn.Linear(2, 1))
    >>> with torch.no_grad():
    ...     _ = model[1].weight.copy_(torch.tensor([[1.0, 0.05]]))
    ...     _ = model[1].bias.zero_()
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(256, 2, generator=g)
    >>> y = x[:, :1] + 0.5 * torch.randn(256, 1, generator=g)  # input 1 is noise
    >>> changes, errors, _ = closing_screen(model, structure_space(model), [1, 1], x, y,
    ...                                     nn.MSELoss())
    >>> changes[0] > 3 * errors[0], changes[1] < 0  # input 0 matters; 1 only adds noise
    (True, True)
    """
    entries = gate_entries(model, space)
    base = np.asarray(start, dtype=np.float64).reshape(-1)
    open_entries = [(at, gates) for at, gates in entries
                    if base[at:at + gates.space.size].any()]
    if not open_entries:
        return {}, {}, 0
    before = space.encode(get_structure(model))  # restored after
    was_training = model.training
    floating = [p.dtype for p in model.parameters() if p.is_floating_point()]
    dtype = floating[0] if floating else torch.float32
    rows = int(x.shape[0])
    openings = [torch.as_tensor(base[at:at + gates.space.size], dtype=dtype, device=x.device
                                ).repeat(rows, 1).requires_grad_(True)  # one per row
                for at, gates in open_entries]
    patched: list[tuple[Gates, Any]] = []
    try:
        set_structure_encoded(model, base)
        model.eval()
        for (_, gates), opening in zip(open_entries, openings, strict=True):
            patched.append((gates, gates.__dict__.get("forward")))
            gates.forward = _per_row(gates, opening)  # an instance attribute: nn.Module calls it
        with torch.enable_grad(), candidate_statistics(model, rows):
            value = loss(model(x), y)
            if not math.isfinite(float(value.detach())):
                return {}, {}, 1
            parts = torch.autograd.grad(value, openings, allow_unused=True)
    except RuntimeError:  # autograd refused, or the gates saw no rows of x
        return {}, {}, 1
    finally:
        for gates, previous in patched:
            del gates.forward
            if previous is not None:  # one the user had set
                gates.forward = previous
        set_structure_encoded(model, before)
        model.train(was_training)
    out: dict[int, float] = {}
    errors: dict[int, float] = {}
    for (at, _), part in zip(open_entries, parts, strict=True):
        if part is None:  # the loss does not reach these gates
            continue
        grad = part.detach().double().cpu().numpy()  # (rows, n): d mean loss / d g_ri
        if not np.isfinite(grad).all():
            return {}, {}, 1
        first = grad.sum(axis=0)  # dL/dg
        fisher = rows * np.square(grad).sum(axis=0)  # mean over rows of (d loss_r / dg)^2
        own = rows * grad  # (rows, n): d loss_r / d g_ri, each row's own derivative
        per_row = -own + 0.5 * np.square(own)  # each row's change; their mean: -dL/dg + F/2
        spread = per_row.std(axis=0, ddof=min(1, rows - 1)) / math.sqrt(rows)
        for i in np.flatnonzero(base[at:at + grad.shape[1]] > 0):
            out[at + int(i)] = float(-first[i] + 0.5 * fisher[i])
            errors[at + int(i)] = float(spread[i])
    return out, errors, 1


def noise_threshold(gates: int) -> float:
    """How many standard errors (:func:`closing_screen`) a gate's predicted value must
    exceed to be told from noise among ``gates`` gates: the universal threshold
    ``sqrt(2 ln gates)`` of Donoho and Johnstone (1994), at least 1 (the one-standard-error
    rule of Breiman et al. 1984). Of ``gates`` values that are noise alone, the largest
    stays below it with a probability that tends to 1 as ``gates`` grows; a value of the
    same order as the loss clears it by far.

    >>> round(noise_threshold(16), 2), round(noise_threshold(2), 3)
    (2.35, 1.177)

    Raises:
        ValueError: ``gates`` not an int >= 1.
    """
    if isinstance(gates, bool) or not isinstance(gates, int) or gates < 1:
        raise ValueError(f"gates must be an int >= 1 (the gates screened), got {gates!r}")
    return max(1.0, math.sqrt(2.0 * math.log(gates)))


def _per_row(gates: Gates, opening: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A forward of ``gates`` that multiplies row ``r`` of its input by ``opening[r]``
    (``(rows, n)``); a RuntimeError when the input's first dimension is not those rows."""
    n = gates.space.size

    def forward(inp: torch.Tensor) -> torch.Tensor:
        dim = gates.dim % inp.dim()
        if dim == 0 or inp.shape[0] != opening.shape[0] or inp.shape[dim] != n:
            raise RuntimeError("the gates' input is not one row per row of x")
        shape = [1] * inp.dim()
        shape[0], shape[dim] = inp.shape[0], n
        return inp * opening.to(dtype=inp.dtype, device=inp.device).view(shape)
    return forward


def order_closings(start: Sequence[float], near: Sequence[Sequence[float]],
                   changes: dict[int, float]) -> list[list[float]]:
    """``near`` (moves from ``start``, in order of priority) with its single closings of
    the gates in ``changes`` (:func:`closing_changes`) ordered by their predicted change,
    lowest first, in the places those closings hold (other moves keep theirs, as
    :func:`~nondiff.hybrid.gate_screen.order_openings` does for openings)."""
    return reorder_flips(start, near, changes, 1)


def closed_together(start: Sequence[float], changes: dict[int, float], least: int = 2
                    ) -> list[float] | None:
    """``start`` with every gate closed whose predicted change (``changes``: by entry,
    the structure cost's change included) is below 0 and which ``start`` has open; None
    when fewer than ``least`` such gates (the default 2: one is a single move, which the
    pool holds).

    >>> closed_together([1, 1, 1, 0], {0: -0.02, 1: 0.3, 2: -0.01, 3: -0.5})
    [0.0, 1.0, 0.0, 0.0]
    >>> closed_together([1, 1], {0: 0.1, 1: 0.3}, least=0)  # nothing to close: the start
    [1.0, 1.0]
    """
    row = np.asarray(start, dtype=np.float64).reshape(-1).copy()
    close = [j for j, v in changes.items() if v < 0 and row[j] == 1]
    if len(close) < least:
        return None
    row[close] = 0.0
    return row.tolist()


def pruning_path(start: Sequence[float], changes: dict[int, float], steps: int = 2
                 ) -> list[list[float]]:
    """The next ``steps`` structures down the pruning path of :func:`closed_together`
    (``least=0``): it with the gate of highest predicted change among those it closes
    kept open, then the two highest, and so on (fewer when it closes fewer).

    A screen from every gate open sees the two inputs of a product each with its
    partner open, and under weights that read the product weakly one of them can fall
    just below the cost: the pair is then cut in half, and half a product is worth
    nothing. One or two steps back along the path keep it.

    >>> pruning_path([1, 1, 1, 1], {0: -0.02, 1: 0.3, 2: -0.01, 3: -0.5})
    [[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]]
    >>> pruning_path([1, 1], {0: 0.1, 1: 0.3})  # nothing closed: no step back
    []

    Raises:
        ValueError: ``steps`` not an int >= 0.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0 (structures back along the path), "
                         f"got {steps!r}; e.g. 2")
    row = np.asarray(start, dtype=np.float64).reshape(-1)
    closed = sorted((j for j, v in changes.items() if v < 0 and row[j] == 1),
                    key=lambda j: -changes[j])
    base = closed_together(start, changes, least=0)
    out = []
    for k in range(1, min(steps, len(closed)) + 1):
        kept = list(base)
        for j in closed[:k]:
            kept[j] = 1.0
        out.append(kept)
    return out


def every_gate_open(start: Sequence[float], entries: Sequence[tuple[int, Gates]]
                    ) -> list[float]:
    """``start`` with every gate of ``entries`` (:func:`gate_entries`) open.

    >>> from nondiff.hybrid.structure import Gates
    >>> every_gate_open([0, 1, 0, 2], [(0, Gates(3))])
    [1.0, 1.0, 1.0, 2.0]
    """
    row = np.asarray(start, dtype=np.float64).reshape(-1).copy()
    for at, gates in entries:
        row[at:at + gates.space.size] = 1.0
    return row.tolist()
