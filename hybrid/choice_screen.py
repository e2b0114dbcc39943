"""A screen of pairs of choice moves for the final selection: which two slots change together.

Two ``Choice`` slots that matter only together defeat a descent of single moves as two
gated inputs do (:mod:`nondiff.hybrid.gate_screen`): on issue 17's ``"routing"`` task
(:mod:`nondiff.problems.hybrid.acceptance`: slots ``left`` and ``right`` feed a product
unit, ``curve`` a learned curve; the label ``1[x_2 x_6 + x_4^2 > m]``) the search settles
on ``x4 * x4``, a second copy of the curve's ``x_4^2``. Every single move of a product
slot from there swaps ``x_4^2`` for noise and loses; the right pair is 2 of the 49 moves
of both slots, so the selection's pool, which holds the 21 single moves, never races it
(19 of the 34 misses of 65 runs, 13 optimizers x 5 seeds, ended on ``x4 * x4``). Yet in
the runs traced, under the weights the final phase had trained for ``x4 * x4``, the known
structure was the best of all 512 (on 1,000 test rows): it only had to be proposed.

A ``Choice`` has no "every option open" to leave one out from, but it can be relaxed
as DARTS relaxes an op slot (Liu et al. 2019): the slot's output is ``sum_i w_i
option_i(x)`` with ``w`` one-hot at the start's option, which leaves the start's loss
unchanged. The second-order Taylor expansion of the loss in the weights ``w`` of every
slot predicts the change a pair of moves makes: a move of slot ``s`` from option ``a``
to ``b`` is ``d = e_b - e_a``, and the pair ``(d_1, d_2)`` changes the loss by about
``g . d + d^T H d / 2`` with ``d = d_1 + d_2``; the cross term ``d_1^T H d_2`` is the
interaction a pair has and neither move alone. :func:`taylor_pairs` computes the
gradient ``g`` and one Hessian-vector product per single move (Pearlmutter 1994) on a
few rows, and ranks every pair of moves of two different slots; the selection races the
best predicted first (:func:`screened_choice_pairs`, at most a third of a stage's pool,
taking turns with the gate screen's pairs). Unlike the gates of a ReLU network, whose
loss is piecewise linear in each opening (so the Hessian holds no interaction:
:mod:`~nondiff.hybrid.gate_screen`), slots whose outputs meet in a product or a later
layer interact through the curvature — but not where they meet only in a ReLU network:
there the loss is piecewise linear in the slots' outputs and the cross term holds only the
Gauss-Newton part. Measured on two slots that pick the inputs of an MLP head for the
sign of ``x_3 x_5`` (8 inputs, weights shared by the known pair and random ones, 8
seeds), the known pair ranked 5th-29th of 49 with a ReLU head, 0th-15th with a tanh head:
the screen does not find such pairs. The prediction is local — a move replaces a whole
option — so it only ranks: at the late selection of four ``x4 * x4`` runs the known pair
was predicted best of the 147 in each (on 32 or 64 rows; on 16, 0th-16th); on the
product of a unit test (``tests/test_choice_screen.py``) it is first in 15 of 20 draws
of 32 rows.

Its cost, counted in ``forward_examples``: one gradient pass and two passes per
Hessian-vector product, over every option of every slot, on :data:`PAIR_SCREEN_ROWS`
rows — for ``"routing"``'s 21 moves 43 passes of 32 rows, 1,376 examples (timed on one
CPU thread: as long as 37 weight steps on those rows; with 12 inputs, 67 passes charged,
79 weight steps timed, so the charge is not generous). A selection
runs it only when that and the gate screen's examples are at most
:data:`PAIR_SCREEN_SHARE` of its budget: on ``"routing"`` a third paid for the first
selection's screen only (about 6,000 examples against the late one's 3,000). Slots whose
options' outputs differ in shape cannot be mixed; a model holding one is not screened,
nor one whose few-shot weights (:mod:`~nondiff.hybrid.few_shot`) are still split.

Measured on the acceptance suite (13 optimizers, seeds 0-4, the trainer's defaults;
seeds recovering the known structure of 65; ``python -m
nondiff.benchmarks.hybrid_tasks.acceptance routing op-graph nonlinearity``, with
``--first-seed 5`` and ``--no-screen-choices``): ``"routing"`` 31 without the screen, 39
with a third of the budget (the first selection's screen only), 53 with half (both
selections; on seeds 5-9, 39 -> 51); ``"op-graph"`` (three op slots) 65 in each (seeds
5-9: 64 with and without); ``"nonlinearity"`` (four activation slots of an additive
model, where pairs add nothing) 65 -> 63 (the (1+lambda) EA twice on ``abs`` for
``square``: a smaller pool; seeds 5-9: 63 with and without). Racing only the pairs the
descent cannot reach (a move predicted to lose alone, the pair predicted to beat both)
took routing to 48 and changed nothing else, so every pair is ranked. It does not
generalize to more inputs within the budget: on ``"routing"`` rewritten for 12 inputs
(``x_1 x_9 + x_5^2``, a check written after it, not in the suite) it recovered 20 seeds
of 65 against 19 without it — the screen, 2,144 examples, no longer fits half the late
selection's budget, and the first selection's screen, which fits, did not turn the runs
(16 of the 45 misses end on ``x5 * x5``). Routing's accuracy gap is not closed (3-14 points):
trained alone, the known structure needs about 250 of the 320 steps, and the search
finds it at the final phase, 96 steps before the end.

Sources:
    - H. Liu, K. Simonyan, Y. Yang, "DARTS: differentiable architecture search", ICLR
      2019 (a choice relaxed to a mixture of its options).
    - B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation
      6, 1994 (Hessian-vector products).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.structure import Choice, structure_space
    >>> class Product(nn.Module):  # y = x_left * x_right, each slot picks one column
    ...     def __init__(self):
    ...         super().__init__()
    ...         cols = {f"x{i}": (lambda x, i=i: x[:, i]) for i in range(4)}
    ...         self.left, self.right = Choice(dict(cols)), Choice(dict(cols))
    ...     def forward(self, x):
    ...         return self.left(x) * self.right(x)
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model, x = Product(), torch.randn(256, 4)
    >>> y = x[:, 1] * x[:, 3]  # the pair (x1, x3); single moves from (x0, x0) do not help
    >>> mse = lambda out, target: ((out - target) ** 2).mean()
    >>> pairs, passes = taylor_pairs(model, structure_space(model), [0, 0], x, y, mse)
    >>> sorted(p[:4] for p in pairs[:2]), passes  # left x1, right x3 and the mirror; 1 + 2 x 6
    ([(0, 1.0, 1, 3.0), (0, 3.0, 1, 1.0)], 13)
    >>> sorted(screened_choice_pairs([0, 0], pairs, 2))
    [[1.0, 3.0], [3.0, 1.0]]
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from nondiff.optim.spaces import Space
from torch import nn

from .candidate_norms import candidate_statistics
from .structure import Choice, declared_entries, get_structure, set_structure_encoded

__all__ = ["PAIR_SCREEN_KEEP", "PAIR_SCREEN_ROWS", "PAIR_SCREEN_SHARE", "choice_entries",
           "choice_moves", "relaxed_choices", "screened_choice_pairs", "taylor_pairs"]

PAIR_SCREEN_ROWS = 32
"""Rows of its batch the choice screen computes its derivatives on (at 32 and 64 rows
the known pair ranked first in the runs above, at 16 0th-16th; 32 keeps the screen,
1,376 examples on ``"routing"``, within half of the late selection's budget there,
about 3,000)."""
PAIR_SCREEN_KEEP = 8
"""The best predicted pairs a selection keeps for its stages."""
PAIR_SCREEN_SHARE = 1 / 2
"""The most of a selection's budget the choice screen may take together with the gate
screen's examples (which alone may take :data:`~nondiff.hybrid.gate_screen.SCREEN_SHARE`,
a third): the late selection's budget on ``"routing"``, about 3,000 examples, pays for
the choice screen only so."""


class _NotMixable(Exception):
    """A Choice's options give outputs that cannot be summed (shapes or types differ)."""


def choice_entries(model: nn.Module, space: Space) -> list[tuple[int, Choice]]:
    """``(entry, choice)`` for every ``Choice`` of ``model`` with two options or more:
    its entry in the encoding of ``space`` (``structure_space(model)``)."""
    return [(at, decl) for at, decl in declared_entries(model, space)
            if isinstance(decl, Choice) and len(decl.options) > 1]


def choice_moves(model: nn.Module, space: Space) -> int:
    """The single moves of the ``Choice`` slots :func:`taylor_pairs` screens (one per other
    option of each slot), 0 when fewer than two slots can move: the screen takes at most
    ``1 + 2 x`` that many passes (fewer when it leaves moves out or stops early)."""
    entries = choice_entries(model, space)
    return sum(len(c.options) - 1 for _, c in entries) if len(entries) > 1 else 0


@contextlib.contextmanager
def relaxed_choices(choices: Sequence[Choice], weights: Sequence[torch.Tensor],
                    starts: Sequence[int] | None = None) -> Iterator[set[tuple[int, int]]]:
    """Inside the block each of ``choices`` returns ``sum_i weights[c][i] * option_i(x)``
    (a DARTS mixture; every option runs); outputs of different shapes raise
    ``_NotMixable`` at the forward pass. The block gets a set that collects ``(choice,
    option)`` for every option other than ``starts[choice]`` whose output held a
    non-finite value: those values enter the mixture as 0 (a ``log`` option on negative
    inputs would otherwise turn every derivative into NaN through its weight 0)."""
    bad: set[tuple[int, int]] = set()

    def mixture(c: int, choice: Choice, w: torch.Tensor) -> Callable[..., torch.Tensor]:
        def forward(x: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
            out: torch.Tensor | None = None
            for i, option in enumerate(choice.options):
                part = option(x, *args, **kwargs)
                if not isinstance(part, torch.Tensor) or not part.is_floating_point() or (
                        out is not None and part.shape != out.shape):
                    raise _NotMixable
                if (starts is None or i != starts[c]) and not bool(part.isfinite().all()):
                    bad.add((c, i))
                    part = torch.where(part.isfinite(), part, torch.zeros_like(part))
                term = w[i].to(part.dtype) * part
                out = term if out is None else out + term
            assert out is not None  # a Choice has options
            return out
        return forward

    patched = []
    try:
        for c, (choice, w) in enumerate(zip(choices, weights, strict=True)):
            choice.forward = mixture(c, choice, w)  # an instance attribute: nn.Module calls it
            patched.append(choice)
        yield bad
    finally:
        for choice in patched:
            del choice.forward


def _flat(parts: Sequence[torch.Tensor | None], weights: Sequence[torch.Tensor]
          ) -> torch.Tensor:
    return torch.cat([torch.zeros_like(w) if p is None else p.reshape(-1)
                      for p, w in zip(parts, weights, strict=True)])


def taylor_pairs(model: nn.Module, space: Space, start: Sequence[float], x: torch.Tensor,
                 y: Any, loss: Callable[[Any, Any], torch.Tensor]
                 ) -> tuple[list[tuple[int, float, int, float, float]], int]:
    """Every pair of single moves of two different ``Choice`` slots of ``model`` from
    ``start`` (encoded in ``space``), ranked by the change of ``loss(model(x), y)`` the
    second-order Taylor expansion in the slots' relaxed weights predicts (lowest first;
    see the module docstring), and the passes it took (one gradient pass, two per
    Hessian-vector product: one product per single move). A pair is ``(entry, value,
    entry, value, predicted change)``. The model is evaluated in eval mode (a batch norm
    on the rows' own statistics, as the selection scores) and keeps its structure and
    mode; no parameter's ``.grad`` changes.

    Left out: the moves of a slot the loss does not reach (a ``Choice`` read through
    ``.chosen`` and not called) and the moves to an option whose output on ``x`` is not
    finite. Returns ``([], 0)`` when fewer than two slots can move, ``([], passes
    taken)`` when the options of a slot cannot be mixed (one pass, at most), when fewer
    than two slots are left, when autograd refuses (an op without a second derivative,
    a loss that no slot reaches), or when the loss or a derivative is not finite."""
    entries = choice_entries(model, space)
    if len(entries) < 2:
        return [], 0
    base = np.asarray(start, dtype=np.float64).reshape(-1)
    floating = [p.dtype for p in model.parameters() if p.is_floating_point()]
    before = space.encode(get_structure(model))  # restored after
    was_training = model.training
    sizes = [len(choice.options) for _, choice in entries]
    offsets = np.cumsum([0, *sizes])
    starts = [int(base[j]) for j, _ in entries]
    weights = []
    for k in range(len(entries)):
        w = torch.zeros(sizes[k], device=x.device, dtype=floating[0] if floating else None)
        w[starts[k]] = 1.0
        weights.append(w.requires_grad_(True))
    passes, moves, products = 0, [], []
    try:
        set_structure_encoded(model, base)
        model.eval()
        with torch.enable_grad(), candidate_statistics(model, int(x.shape[0])), \
                relaxed_choices([c for _, c in entries], weights, starts) as bad:
            passes = 1
            value = loss(model(x), y)
            if not math.isfinite(float(value.detach())):
                return [], passes
            parts = torch.autograd.grad(value, weights, create_graph=True, allow_unused=True)
            grad = _flat(parts, weights)
            moves = [(k, starts[k], b) for k in range(len(entries)) if parts[k] is not None
                     for b in range(sizes[k]) if b != starts[k] and (k, b) not in bad]
            if len({k for k, _, _ in moves}) < 2:
                return [], passes
            for k, a, b in moves:  # H d for d = e_b - e_a of slot k
                scalar = grad[offsets[k] + b] - grad[offsets[k] + a]
                passes += 2
                products.append(_flat(torch.autograd.grad(
                    scalar, weights, retain_graph=True, allow_unused=True), weights)
                    if scalar.requires_grad else torch.zeros_like(grad))
    except (_NotMixable, RuntimeError):  # no mixture, or autograd refused
        return [], passes
    finally:
        set_structure_encoded(model, before)
        model.train(was_training)
    g = grad.detach().double().cpu().numpy()
    hd = torch.stack(products).detach().double().cpu().numpy()
    finite = math.isfinite(float(value.detach()))
    if not (finite and np.isfinite(g).all() and np.isfinite(hd).all()):
        return [], passes
    vectors = np.zeros((len(moves), len(g)))
    for m, (k, a, b) in enumerate(moves):
        vectors[m, offsets[k] + b], vectors[m, offsets[k] + a] = 1.0, -1.0
    single = vectors @ g + 0.5 * np.einsum("mi,mi->m", vectors, hd)  # each move alone
    cross = vectors @ hd.T  # d_m^T H d_n
    out = []
    for m, (k, _, b) in enumerate(moves):
        for n, (other, _, c) in enumerate(moves):
            if other > k:
                out.append((entries[k][0], float(b), entries[other][0], float(c),
                            float(single[m] + single[n] + cross[m, n])))
    out.sort(key=lambda pair: pair[4])
    return out, passes


def screened_choice_pairs(start: Sequence[float], pairs: Sequence[Sequence[float]],
                          limit: int) -> list[list[float]]:
    """At most ``limit`` structures that apply ``pairs`` (``(entry, value, entry,
    value, ...)``: :func:`taylor_pairs`' ranking, best first) to ``start``: both entries
    set, where each differs from ``start`` (a pair one of whose moves a stage's start
    already holds is no pair there)."""
    base = np.asarray(start, dtype=np.float64).reshape(-1)
    out: list[list[float]] = []
    for pair in pairs:
        if len(out) >= limit:
            break
        i, a, j, b = int(pair[0]), pair[1], int(pair[2]), pair[3]
        if base[i] != a and base[j] != b:
            row = base.copy()
            row[i], row[j] = a, b
            out.append(row.tolist())
    return out
