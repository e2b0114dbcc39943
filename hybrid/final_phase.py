"""The final phase of :class:`~nondiff.hybrid.trainer.HybridTrainer`: select, then train.

The last ``final_steps`` of a bounded search take no generation: the first
``select_batches`` of them race a pool of candidates on the same rows under the same
weights (:mod:`nondiff.hybrid.selection` has the method and its measurements), and every
final step trains the selected structure alone, so the shared weights end specialised to
the structure ``fit`` returns; after the race, the finalists' race
(:mod:`nondiff.hybrid.finalists`) trains the last candidates briefly, each on its own
weights, before one goes on. :class:`FinalPhase` holds these steps and the bookkeeping
they read (the generations remembered, the archive of generation winners, the rows the
final steps will earn); the trainer inherits them (a mixin).

The late selection (``HybridTrainer.late_select``, default :data:`LATE_SELECT`: half
way through the final phase, once the finalists' race is over) races the selected
structure against its neighbours once more — one gate flipped, one choice changed
(:func:`~nondiff.hybrid.selection.neighbours`), and pairs of gate openings when its pool
has room, in the same stages as the first selection, but with no generation's structures
— under the weights the final steps have
trained since. The first selection judges with weights that every structure shared:
on issue 17's own case on 20 inputs (``"many-inputs"`` of
:mod:`nondiff.problems.hybrid.acceptance`) the known structure's loss under them was
still 0.53-0.59 at the start of the final phase (0.10 trained alone), and closing one of
its three relevant inputs changed it by -0.005 to 0.02, no more than a gate's cost, so
the search kept noise inputs or closed a relevant one. Half way through the final phase
the weights trained for the selected structure show both: a relevant input left closed
lowers the test loss by 0.04-0.11 when opened, a noise input left open costs more than
it gives. Fine-tuning before ranking is Bender et al. (2018)'s remedy for one-shot
weights; a local search from the found structure is White et al. (2021)'s. The late
selection's budget is set aside while the search runs (:data:`LATE_RESERVE` of each
search step's evaluation budget, until it pays for the late selection's whole pool; none
when the whole search phase's share would not pay for its first stage, or when the late
selection would not have its ``select_batches`` steps before the end), plus what the
first selection and the race left, so the bound holds (with ``search_compute="shared"``
nothing is set aside: the leftover alone). It starts half way through the final phase
or, if later, when the race ends.

Measured on the acceptance suite (:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`, 9
tasks x 13 optimizers, seeds 0-9, against ``late_select=None``): seeds recovering the
known structure 975 -> 1042 of 1170 — many-inputs 31 -> 95 of 130, op-graph 121 -> 129,
inputs-and-activation 124 -> 117 (runs whose search, a little shorter, closed every gate
before the final phase), the others within 1 — and (task, optimizer) rows meeting all
three targets of issue 17 on each block of 5 seeds 161 -> 159 of 234 (op-graph 18 -> 25,
many-inputs 1 -> 5, inputs-and-activation 21 -> 14, program 17 -> 13, relevant-inputs 26
-> 24; on seeds 10-14 program 2 -> 7 rows and 52 -> 58 seeds, inputs-and-activation 7
-> 9 and 57 -> 58). Tried and not kept: one stage of four batches (many-inputs 30
seeds of 65, against 45 in two stages of two), a reserve of 0.3 (42), a start at 0.35 or
0.65 of the final phase (40, 44), a larger share of the budget for the first stage (41),
and a budget split from the final phase's own steps instead of the search's (it starved
the finalists' race: program 12 -> 5 rows on seeds 0-4, 2 of 13 on seeds 5-9).

Sources:
    - Z. Guo, X. Zhang, H. Mu, W. Heng, Z. Liu, Y. Wei, J. Sun, "Single path one-shot
      neural architecture search with uniform sampling", ECCV 2020 (candidates
      re-ranked, then the found structure trained).
    - G. Bender, P.-J. Kindermans, B. Zoph, V. Vasudevan, Q. Le, "Understanding and
      simplifying one-shot architecture search", ICML 2018.
    - C. White, S. Nolen, Y. Savani, "Exploring the loss landscape in neural
      architecture search", UAI 2021 (local search on NAS benchmarks).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.structure import Choice, Gates
    >>> from nondiff.hybrid.trainer import HybridTrainer
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(Gates(3), nn.Linear(3, 8), Choice(nn.ReLU(), nn.Tanh()),
    ...                       nn.Linear(8, 2))
    >>> x = torch.randn(320, 3)
    >>> batches = [(x[i:i + 32], (x[i:i + 32, 0] > 0).long()) for i in range(0, 320, 32)]
    >>> trainer = HybridTrainer(model, "ga", seed=0, final_steps=0.3, select_batches=2,
    ...                         structure_options={"popsize": 4})
    >>> history = trainer.fit(batches, epochs=4)
    >>> [int(m.get("final", 0)) for m in history[-13:]]  # the last 30 % of 40 steps
    [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    >>> trainer.selected is not None  # the race's pick, which the final steps trained
    True
    >>> str(trainer.structure(current=True)) == str(trainer.recommended())  # the model's
    True
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from typing import Any

import numpy as np
import torch

from .batches import RowBatches
from .blocks import rows as _rows
from .choice_screen import (
    PAIR_SCREEN_KEEP,
    PAIR_SCREEN_ROWS,
    PAIR_SCREEN_SHARE,
    choice_moves,
    screened_choice_pairs,
    taylor_pairs,
)
from .devices import device_of, to_device
from .finalists import FinalistRace, race_steps
from .gate_closing import (
    CLOSING_SHARE,
    closed_together,
    closing_screen,
    every_gate_open,
    gate_entries,
    noise_threshold,
    order_closings,
    pruning_path,
)
from .gate_screen import (
    SCREEN_PAIRS,
    SCREEN_ROWS,
    SCREEN_SHARE,
    order_openings,
    rank_closed,
    screen_candidates,
    screened_pairs,
)
from .joint_closing import joint_closing
from .nonfinite import NonFiniteError
from .schedules import steps_of
from .selection import (
    SELECT_CANDIDATES,
    SELECT_GENERATIONS,
    SELECT_RECENT,
    candidate_pool,
    combined_moves,
    gate_openings,
    halving_plan,
    leaf_turns,
    neighbour_count,
    neighbours,
    pool_size,
    real_entries,
    real_moves_of,
    record_winner,
    shortlist,
    stage_lengths,
    survivors,
    two_moves,
    untried_first,
)

__all__ = ["LATE_RESERVE", "LATE_SELECT", "FinalPhase"]

LATE_SELECT = 0.5
"""Default ``HybridTrainer.late_select``: how far into the final phase (a fraction of its
steps) the late selection starts."""
LATE_RESERVE = 0.2
"""The share of the search phase's evaluation budget (``search_compute``) set aside for
the late selection."""

JOINT_ROWS = 8
"""The fewest rows :meth:`FinalPhase._keep_together` measures a group on: with fewer, the
standard error of the rows' changes is no test (0 for one row)."""

PRUNE_PATH = 2
"""The steps back along the pruning path (:func:`~nondiff.hybrid.gate_closing.
pruning_path`) the first selection races after each pruned start: it with its most
valuable closed gate open again, then its two most valuable. Their places in the first
stage's pool come out of the same budget: on a run of 80 steps of 32 rows
(tests/test_finalists.py) the selection then left 122 examples, short of a finalists'
race of two (128), which the run without them had."""


FINAL_SWITCHES = {
    "screen_gates": "the final selection screens closed gates",
    "screen_choices": "the final selection screens pairs of choice moves",
    "screen_closings": "the final selection screens the closings of open gates",
    "prune_open": "the first selection races the start with every gate open, pruned",
    "gate_parsimony": "without a structure cost (or with one withheld), a gate stays open "
                      "only where its value clears its noise",
    "keep_together": "without a structure cost, the gates the gate parsimony would close "
                     "lose their penalty where closing them together costs more than noise",
    "fresh_final_state": "the weight optimizer's state starts afresh once the first "
                         "selection has picked",
}
"""The final phase's switches (bool class attributes of
:class:`~nondiff.hybrid.trainer.HybridTrainer`) and what each turns on."""


class FinalPhase(FinalistRace):
    """The final-phase methods of :class:`~nondiff.hybrid.trainer.HybridTrainer` (a
    mixin: it reads the trainer's optimizers, counters, ``selection``, ``winners``,
    ``recent`` generations and ``epoch_rows``)."""

    late_select: float | None = LATE_SELECT
    screen_gates: bool = True
    """Whether a selection screens the closed gates of its start first
    (:mod:`~nondiff.hybrid.gate_screen`) and races the best ranked pairs of openings."""
    screen_closings: bool = True
    """Whether a selection screens the open gates of its start
    (:mod:`~nondiff.hybrid.gate_closing`) and races the closings predicted to win first,
    and all of them at once."""
    screen_choices: bool = True
    """Whether a selection screens the pairs of moves of two ``Choice`` slots of its start
    (:mod:`~nondiff.hybrid.choice_screen`) and races the best predicted first."""
    prune_open: bool = True
    """Whether the first selection also races the start with every gate open, pruned by
    the closing screen (:meth:`_pruned_starts`): one per option of the split ``Choice``
    while few-shot weights are split, each under its option's copy."""
    fresh_final_state: bool = True
    """Whether the weight optimizer's per-parameter state (Adam's moments, a momentum
    buffer) starts afresh when the first selection has picked its structure (without a
    Decoupled engine; the learning rates and a scheduler go on): the final phase then
    fine-tunes the selected structure as a new run would, as one-shot searches fine-tune
    or retrain the structure they pick (Bender et al. 2018; Guo et al. 2020).

    Adam's second moments remember about 1,000 steps (``beta2 = 0.999``): the gradients
    of the structures the search tried, larger than the selected one's, keep its steps
    small for the rest of the run. Traced on a program task written as a check (the
    third smallest of 8 magnitudes above its median; CGA, seed 0: ``abs, abs, sort``
    found), the searched model scored 0.958 against 0.986 for the program trained alone;
    96 more steps from its weights reached 0.974 with the trainer's optimizer state and
    0.987 with a fresh one.

    Measured against ``fresh_final_state=False`` (13 optimizers, seeds 0-4, the
    trainer's defaults; ``python -m nondiff.benchmarks.hybrid_tasks.acceptance
    [--no-fresh-final-state]``): over the 910 runs of the suite's twelve tasks and three
    outside it, seeds recovering the structure 879 -> 876 and the mean accuracy gap to
    the structure trained alone 1.57 -> 1.54 points (160 runs closer by more than half
    a point, 110 further); rows meeting all three targets of issue 17 +1 in the suite
    (many-inputs and nonlinearity +1, op-graph -1) and +2 outside it (the program
    above); ``"program"``'s gap 2.4 -> 1.9 points, ``"routing"``'s 6.0 -> 7.1 (seeds
    53 -> 51: weights the search had trained well take a fresh optimizer's first,
    full-size steps)."""
    gate_parsimony: bool = True
    """Whether, without a structure cost or with one withheld for want of a signal
    (:attr:`~nondiff.hybrid.structure_costs.StructureCosts.cost_withheld`), and with the
    loss as the fitness, the final phase weighs each open gate by its noise:
    :data:`~nondiff.hybrid.gate_closing.noise_threshold` standard errors of its closing
    screen's prediction (:func:`~nondiff.hybrid.gate_closing.closing_screen`; the first
    selection's screen of every gate open, at most the median error: :meth:`_note_noise`),
    added to a candidate's score in the selection and the finalists' race
    (:meth:`_parsimony`) and taken off the predicted change of closing it
    (:meth:`_less_noise`). A gate whose value the weights cannot tell from noise then
    closes, as a structure cost would close it. It applies with ``held_out`` batches too
    (the finalists' race scores on training rows either way). And as a cost can, it closes
    every input when the start's option of a ``Choice`` cannot use them (the identity before
    a product of two inputs) and no few-shot copy screens the other options
    (``split_choice=None``; :meth:`_pruned_starts`): traced on a run with no search at all
    (tests/test_fair_sampling.py), the selection started from the identity with every gate
    closed and stayed there, where without the parsimony the noise of the race kept the
    inputs that a move to ReLU then used.

    Without it, nothing closes a noise input: the search and the races score on training
    rows, where weights that have fitted a noise input read it to a lower loss. Traced on
    ``1[x_3 x_12 > 0]`` among 16 gated inputs with no cost (CMA-ES-torch, seed 2), the
    closing screen of every gate open under the ReLU option predicted +0.14 and +0.12
    (20 and 19 thousandths standard error) for the two inputs of the product, and -0.006
    to +0.008 (3 to 9 thousandths) for the fourteen noise inputs; the run ended with
    eight of them open, at 0.965 test accuracy against 0.989 for the known structure
    trained alone. With a structure cost the user has weighed a gate already, and
    nothing changes, unless the cost is withheld (no generation told the structures
    apart, so the cost would rank them alone): the parsimony then stands in for it. Gates
    each within their noise but worth much together keep no penalty
    (:attr:`keep_together`)."""

    keep_together: bool = True
    """Whether, without a structure cost, the first selection tests the gates that the gate
    parsimony closes in its pruned start as one group (:meth:`_keep_together`,
    :mod:`~nondiff.hybrid.joint_closing`) and takes their penalties off, racing every gate
    open too, when closing them together costs more than noise: inputs that each add
    little to the others but much together, as the pixels of an image do. With a cost
    withheld (:attr:`~nondiff.hybrid.structure_costs.StructureCosts.cost_withheld`) the
    parsimony stands in for a cost the user asked for, and it is not tested."""

    def _final_step(self, x: Any, y: Any, held_out: tuple[Any, Any] | None = None
                    ) -> dict[str, float]:
        """:meth:`step` in the final phase: no generation; the first ``select_batches``
        steps race the pool (:meth:`_select`, on ``held_out`` when given); the steps
        after it race the finalists (:mod:`nondiff.hybrid.finalists`), when there is
        a race; later steps race the late selection (:meth:`_late_due`; its metric
        ``late_select`` is 1 where it scored candidates); every step trains the weights
        under the recommended structure alone, the race's under each finalist's (a
        shared generation left open stays untold)."""
        selected = self.selected is not None  # by an earlier step's race
        late = self._late_due()  # after a first selection, with select_batches only
        scored = self.forward_examples
        if self.select_batches and (self.selected is None or late):
            fx, fy = (x, y) if held_out is None else to_device(tuple(held_out),
                                                               device_of(self.model))
            self._select(fx, fy)
        if self.selected is not None:  # few-shot weights: the selected option's copy on
            self._close_split(self.space.decode(np.asarray(self.selected)))
            if not selected and self.fresh_final_state and self.engine is None:
                self.weight_optimizer.state.clear()  # the selected structure's own moments
        late = late and self.forward_examples > scored
        if selected and self.race is None:  # the finalists' race, when there is one
            self.race = self._start_race(_rows(x)) or {"done": True}
        racing = self.race is not None and not self.race.get("done")
        self.model.train()
        try:
            if racing:
                loss, skipped, racing = self._race_step(x, y)
            else:
                loss, skipped = self._weight_step(x, y, [self.recommended()], [_rows(x)])
        except NonFiniteError as error:
            error.step, error.epoch = self.step_count, self.epoch
            raise
        self.skipped_steps += skipped
        self.step_count += 1
        self.forward_examples += _rows(x)
        result = {"step": float(self.step_count), "loss": loss, "fitness_best": math.nan,
                  "fitness_mean": math.nan, "warmup": 0.0, "skipped": float(skipped),
                  "final": 1.0, "select_nonfinite": float((self.selection or {}).get(
                      "nonfinite", 0)), "race": float(racing), "late_select": float(late)}
        if self.search_compute is not None:
            result["searched"] = 0.0
        if self.weight_step in ("fair", "population"):
            result["fair_share"] = 0.0
        if self.structure_cost is not None:
            result["cost_weight"], result["cost_mean"] = \
                self.cost_weight_at(self.step_count - 1), math.nan
        return result

    def remember(self, encoded: Any, objective: Any) -> None:
        """Keep the encoded candidates of a told generation and their objectives for the
        final selection's pool (the last ``SELECT_GENERATIONS``), the generation's
        best in the archive of winners, and the first step whose generation shows the
        :data:`~nondiff.hybrid.structure_costs.COST_SIGNAL` (``note_cost_signal``)."""
        rows = np.asarray(encoded, dtype=np.float64).reshape(len(encoded), -1)
        values = np.asarray(objective, dtype=np.float64).reshape(-1).tolist()
        self.recent = [*self.recent, rows.tolist()][-SELECT_GENERATIONS:]
        self.recent_objectives = [*self.recent_objectives, values][-SELECT_GENERATIONS:]
        finite = [v if math.isfinite(v) else math.inf for v in values]
        if len(rows) > 1 and math.isfinite(min(finite)):
            self.winners = record_winner(self.winners, rows[int(np.argmin(finite))],
                                         self.step_count)
        self.note_cost_signal(values)

    def _check_final(self) -> None:
        """Refuse bad final-phase settings (class attributes a user may set), before
        anything.

        Raises:
            ValueError: ``race_finalists`` not an int >= 0, ``race_stage_steps`` not an
                int >= 2, a switch of :data:`FINAL_SWITCHES` (``screen_gates``,
                ``screen_choices``, ``screen_closings``, ``prune_open``,
                ``gate_parsimony``, ``fresh_final_state``) or ``cost_withheld`` not a
                bool, or
                ``late_select`` not None or a number in ``[0, 1)``.
        """
        self._check_race()
        if not isinstance(self.cost_withheld, bool):
            raise ValueError(f"HybridTrainer.cost_withheld must be True or False (whether a "
                             f"cost on gates waits for the generations to tell structures "
                             f"apart), got {self.cost_withheld!r}")
        for name, purpose in FINAL_SWITCHES.items():
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"HybridTrainer.{name} must be True or False (whether "
                                 f"{purpose}), got {getattr(self, name)!r}")
        late = self.late_select
        if late is not None and (isinstance(late, bool) or not isinstance(late, (int, float))
                                 or not 0 <= late < 1):
            raise ValueError(f"HybridTrainer.late_select must be None or a number in [0, 1) "
                             f"(how far into the final phase the late selection starts; 0 or "
                             f"None: none), got {late!r}; e.g. {LATE_SELECT}")

    def _final_count(self) -> int:
        """The steps of the final phase that starts now (or, once it has started, its
        steps left)."""
        if isinstance(self.final_steps, float):
            return max(1, (self._run_plan() or 0) - self.step_count)
        if self.selected is not None and self.planned_steps is not None:
            return max(1, self.planned_steps - self.step_count)
        return max(1, int(self.final_steps))

    def _late_span(self) -> tuple[int, int, int] | None:
        """The steps the final phase and the late selection (``late_select`` of the final
        phase in) start at and the step the training ends at, or None: no late selection
        (``late_select`` 0 or None, no ``select_batches``, an engine, or no known end)."""
        late = self.late_select
        if not late or not self.select_batches or self.engine is not None:
            return None
        end = self._run_plan() if isinstance(self.final_steps, float) else self.planned_steps
        count = steps_of(self.final_steps, end) if end is not None else None
        if not count:
            return None
        count = min(count, end)  # an int final_steps beyond the plan: every step final
        return end - count, end - count + max(1, round(late * count)), end

    def _late_reserve(self, earned: float, rows: int) -> float:
        """The part of ``earned`` (a search step's evaluation examples, on a batch of
        ``rows`` rows) set aside for the late selection: :data:`LATE_RESERVE` of it,
        until the reserve pays for the late selection's whole pool (the selected structure
        and its neighbours, up to :data:`~nondiff.hybrid.selection.SELECT_CANDIDATES`,
        raced in every stage); none when there is no late selection, or when the
        reserve of the whole search phase would not pay for its first stage."""
        span = self._late_span()
        k = min(SELECT_CANDIDATES, 1 + neighbour_count(self.space))
        if span is None or not isinstance(self.search_compute, (int, float)) or k < 2:
            return 0.0
        final, start, end = span
        race = race_steps(self.race_finalists, self.race_stage_steps) \
            if self.race_finalists >= 2 else 0
        if max(start, final + self.select_batches + race) + self.select_batches > end:
            return 0.0  # it would not have its batches before the end
        stages = stage_lengths(self.select_batches)
        first = sum(halving_plan(k, stages[0])) * rows
        earning = max(0, final - max(self.step_count, self.warmup_steps))  # steps left
        if self.late_credit + LATE_RESERVE * float(self.search_compute) * rows * earning \
                < first:
            return 0.0
        full = sum(sum(halving_plan(k, length)) for length in stages) * rows
        return min(LATE_RESERVE * earned, max(0.0, full - self.late_credit))

    def _late_due(self) -> bool:
        """Whether this step belongs to the late selection: it has started (and not
        ended), or it starts now: the first selection and the finalists' race are over,
        the step is at the late selection's start (:meth:`_late_span`) or after, and
        ``select_batches`` steps are left for it (else there is none: a structure
        changed on the last batches would hardly train)."""
        sel = self.selection or {}
        if sel.get("late"):
            return not sel.get("done")
        span = self._late_span()
        race_over = self.race is not None and self.race.get("done")
        return bool(span is not None and self.selected is not None and race_over
                    and span[1] <= self.step_count <= span[2] - self.select_batches)

    def _select(self, x: Any, y: Any) -> None:
        """One batch of the final selection (see :mod:`nondiff.hybrid.selection`), a
        local descent in stages of two batches (:func:`~nondiff.hybrid.selection.
        stage_lengths`): the first stage races the recommendation, the
        recommendation with every gate open pruned by the closing screen when
        ``prune_open`` and the budget allow (:meth:`_pruned_starts`), the most asked
        structures of the last generations and the recommendation's neighbours
        (cheapest first within each leaf of the space under a structure cost, else in a
        seeded random order; the leaves taking turns: :meth:`_near`); each
        later stage races the previous stage's winner, the winner and the previous
        stage's start with that stage's winning moves applied
        (:func:`~nondiff.hybrid.selection.combined_moves`) and the winner's neighbours;
        a pool with room left races pairs of gate openings after them
        (:func:`~nondiff.hybrid.selection.two_moves`). Each selection first screens
        the closed gates of its start on its first batch when ``screen_gates`` and the
        budget allow (:meth:`_screen`, :mod:`~nondiff.hybrid.gate_screen`), and the
        pairs of moves of two ``Choice`` slots when ``screen_choices`` and the budget
        allow (:meth:`_choice_screen`, :mod:`~nondiff.hybrid.choice_screen`), and its open
        gates when ``screen_closings`` and the budget allow (:meth:`_closing_screen`,
        :mod:`~nondiff.hybrid.gate_closing`); every
        stage then races the pairs of the best ranked ones first, then the start with
        every gate closed that the closing screen predicts to win, and orders its single
        closings by that prediction. A stage's
        pool is as large as its share of the budget pays for when raced by successive
        halving — the budget being what the final phase's steps earn under
        ``search_compute`` (at the mean batch of the steps so far, with the credit
        left); the late selection's (``selected`` already set: it starts from it and
        races its neighbours and pairs of gate openings only) is what the search phase
        set aside for it (``late_credit``: :meth:`_late_reserve`) and what the first
        selection and the race left; each batch scores the candidates still in the race
        under the same weights, adds to their sums and keeps the better half. After
        ``select_batches`` batches (or fewer when the phase is shorter; or when a pool
        has fewer than two candidates) the last winner is :attr:`selected`. Non-finite
        scores lose and are counted (the final steps' metric ``select_nonfinite``); a
        batch where every candidate scores one warns."""
        rows = _rows(x)
        sel = self.selection
        late = self.selected is not None  # the late selection (_late_due)
        if sel is None or (late and not sel.get("late")):  # built whole, then kept
            batches = min(self.select_batches, self._final_count())
            future = self._final_rows(rows)
            if self.search_compute is None:
                budget = math.inf
            elif late:  # what the search phase set aside for it, and what is left
                budget = self.late_credit + max(0.0, (sel or {}).get("left") or 0.0)
            else:  # what the final steps will earn, and the credit left
                rate = 1.0 if self.search_compute == "shared" else float(self.search_compute)
                budget = rate * sum(future) + max(0.0, self.search_credit)
            if late:
                rec = list(self.selected)
            else:
                rec = self.structure_optimizer.recommend()
                rec = np.asarray(rec.detach().cpu().numpy() if isinstance(rec, torch.Tensor)
                                 else rec, dtype=np.float64).tolist()
            ranked, spent = self._screen(rec, x, y, budget)
            pairs, paid = self._choice_screen(rec, x, y, budget, spent)
            spent += paid
            closings, paid = self._closing_screen(rec, x, y, budget, spent)
            spent += paid
            pruned, paid = ([], 0.0) if late else self._pruned_starts(rec, x, y, budget, spent)
            spent += paid
            if closings:  # the gate parsimony's penalties, now that every screen has run
                closings = [[float(j), v] for j, v in sorted(self._less_noise(
                    {int(j): v for j, v in closings}).items())]
            budget -= spent
            stages = stage_lengths(batches)
            race = future[:batches]  # the rows each batch of the race will score
            sizes, at = [], 0
            for length in stages:  # each stage: its share of the budget, at its largest batch
                share = budget * sum(race[at:at + length]) / max(1, sum(race))
                sizes.append(pool_size(share, max(race[at:at + length]), length))
                at += length
            sel = {"stages": stages, "sizes": sizes, "stage": -1, "batches": 0,
                   "target": batches, "left": None if math.isinf(budget) else float(budget)}
            if late:
                sel.update(late=True, done=False)
            if ranked:
                sel["screen"] = ranked
            if pairs:
                sel["choice_pairs"] = pairs
            if closings:
                sel["closings"] = closings
                sel["close_together"] = self.fitness is self.loss  # the cost is in its units
            if pruned:
                sel["pruned"] = pruned
            opened = self._next_stage(sel, rec, first=True)  # may refuse: nothing changed
            self.forward_examples += int(spent)  # the screen's, once the start stands
            if not opened:
                if late:  # nothing to race: the selected structure stands
                    self.selection = {**sel, "done": True}
                    self.late_credit = 0.0
                return
            if late:  # its budget is the selection's now (a refused start kept it)
                self.late_credit = 0.0
        sel = copy.deepcopy(sel)  # changed only once this batch is scored
        alive = sel.get("alive", list(range(len(sel["candidates"]))))  # older states: all
        left = sel.get("left")
        if left is not None and rows * len(alive) > left:  # never beyond the bound
            keep = int(left // rows)
            if keep < 2:  # nothing left to compare: the leader so far stands
                scored = sel["batches"] > sum(sel.get("stages", [])[:sel.get("stage", 0)])
                self.selected = sel["candidates"][survivors(sel["sums"], alive, 1)[0]
                                                  if scored else alive[0]]
                self.selection = {**sel, "done": True} if sel.get("late") else sel
                return
            alive = survivors(sel["sums"], alive, keep)
        values = self.space.decode_batch(np.asarray([sel["candidates"][i] for i in alive]))
        objective = self.evaluate(values, x, y)
        if self.structure_cost is not None:
            objective = objective + self.cost_weight_at(self.step_count) * self.costs(values)
        if self.gate_noise and self._parsimony_on():
            objective = np.asarray(objective, dtype=np.float64) + self._parsimony(
                [sel["candidates"][i] for i in alive])
        sums = list(sel["sums"])
        for i, value in zip(alive, objective, strict=True):
            sums[i] += float(value)
        stages = sel.get("stages", [sel["target"]])
        if sel["batches"] == sum(stages[:sel.get("stage", 0)]):  # a stage's first batch
            first: list[float | None] = [None] * len(sums)
            for i, value in zip(alive, objective, strict=True):
                first[i] = float(value)
            sel["first"] = first  # every candidate on the same rows: combined_moves
            if sel.get("stage", 0) == 0:  # the opening: the finalists' race picks from it
                sel["opening"] = {"candidates": copy.deepcopy(sel["candidates"]),
                                  "first": list(first)}
        bad = int(np.sum(~np.isfinite(np.asarray(objective, dtype=np.float64))))
        if bad == len(alive):
            warnings.warn(f"every candidate of the final selection scored a non-finite "
                          f"objective at step {self.step_count} (weights or loss diverged?); "
                          f"the race keeps its leader", stacklevel=3)
        sel.update(sums=sums, batches=sel["batches"] + 1, alive=alive,
                   nonfinite=sel.get("nonfinite", 0) + bad)
        if left is not None:
            sel["left"] = left - rows * len(values)
        stage_end = sum(stages[:sel.get("stage", 0) + 1])
        selected = None
        if sel["batches"] >= min(stage_end, sel["target"]):
            winner = sel["candidates"][survivors(sums, alive, 1)[0]]  # ties: the first
            if sel["batches"] >= sel["target"] or not self._next_stage(sel, winner,
                                                                        first=False):
                selected = winner
        elif "stages" in sel:
            sel["alive"] = survivors(sums, alive, halving_plan(len(alive), 2)[-1])
        self.forward_examples += rows * len(values)
        if selected is not None and sel.get("late"):
            sel["done"] = True
        self.selection = sel
        if selected is not None:
            self.selected = selected

    def _next_stage(self, sel: dict[str, Any], start: list[float], first: bool) -> bool:
        """Open the next stage of the selection ``sel`` from ``start`` (see
        :meth:`_select`), in ``sel`` only; when its pool would hold fewer than two
        candidates, False (and ``start`` stands; a first stage is then not kept)."""
        k = sel["sizes"][sel["stage"] + 1]
        first_of_search = first and not sel.get("late")  # the late one: no generation's structures
        frequent = shortlist(start, self.recent, SELECT_RECENT + 1,
                             self.recent_objectives)[1:] if first_of_search else []
        lost = {tuple(c) for c in sel.get("candidates", []) if c != start}
        near = [c for c in self._near(start) if tuple(c) not in lost]  # raced before: out
        if sel.get("closings"):  # the single closings by their predicted change
            changes = {int(j): v for j, v in sel["closings"]}
            near = order_closings(start, near, changes)
            together = closed_together(start, changes) if sel.get("close_together") else None
            if together is not None and tuple(together) not in lost:  # all winning closings
                near = [together, *[c for c in near if c != together]]
        if sel.get("screen") or sel.get("choice_pairs"):  # the screened pairs first
            room = min(SCREEN_PAIRS, (k - 1) // 3)  # a small pool keeps its single moves
            gates = [c for c in screened_pairs(start, sel.get("screen", []), room)
                     if tuple(c) not in lost]
            choices = [c for c in screened_choice_pairs(
                start, sel.get("choice_pairs", []), PAIR_SCREEN_KEEP) if tuple(c) not in lost]
            pairs = [c for both in itertools.zip_longest(gates, choices) for c in both
                     if c is not None][:room]  # the two screens take turns
            if sel.get("screen"):  # the single openings by their rank
                near = order_openings(start, near, sel["screen"])
            near = pairs + [c for c in near if c not in pairs]
        if not first and sel.get("candidates"):  # the moves the last stage left out first
            near = untried_first(sel["candidates"][0], sel["candidates"], start, near)
        if not first and sel.get("first"):  # the last stage's winning moves at once
            last = sel["candidates"][0]  # on the winner, and on the last stage's start
            for base in (last, start):
                combined = combined_moves(last, sel["candidates"], sel["first"], base)
                if combined is not None and tuple(combined) not in lost and \
                        combined != start:
                    near = [combined, *[c for c in near if c != combined]]
        winners = [w[0] for w in self.winners] if first_of_search else []
        built = sel.get("pruned", []) if first_of_search else []
        entries = real_entries(self.space)
        reals: list[list[float]] = []
        if entries and len(entries) < self.space.size:  # a mixed space: reals after the rest
            near, reals = real_moves_of(start, near, entries)
        candidates = candidate_pool(start, frequent, near, max(k, 1), winners,
                                    [c for c in built if tuple(c) not in lost])
        if len(candidates) < k:  # room left: pairs of gate openings (inputs that act together)
            rng = np.random.default_rng([self.seed, self.step_count, 2])
            taken = {tuple(c) for c in candidates} | lost  # enough pairs to fill it after these
            pairs = two_moves(start, gate_openings(self.space, start),
                              k - len(candidates) + len(taken), rng)
            candidates += [c for c in pairs if tuple(c) not in taken][:k - len(candidates)]
        if len(candidates) < k and reals:  # the room still left: moves of real entries
            taken = {tuple(c) for c in candidates} | lost
            candidates += [c for c in reals if tuple(c) not in taken][:k - len(candidates)]
        if len(candidates) < 2:  # nothing to compare: the start stands
            if first:
                self.selected = candidates[0]
            return False
        sel.update(stage=sel["stage"] + 1, candidates=candidates,
                   sums=[0.0] * len(candidates), alive=list(range(len(candidates))))
        if first:
            self.selection = sel
        return True

    def _screen(self, start: list[float], x: Any, y: Any, budget: float
                ) -> tuple[list[int], float]:
        """The closed gates of ``start`` ranked by the screen of
        :mod:`~nondiff.hybrid.gate_screen` on the first
        :data:`~nondiff.hybrid.gate_screen.SCREEN_ROWS` rows of ``(x, y)`` (every gate
        open, then each closed one closed again) and the examples it took (the caller
        counts them once the selection's start stands: a refused start changes nothing);
        ``([], 0.0)`` without it: ``screen_gates`` False, fewer than two closed gates, a
        screen that would take more than
        :data:`~nondiff.hybrid.gate_screen.SCREEN_SHARE` of ``budget``; no ranking, the
        examples still counted, when every gate open scores a non-finite value."""
        if not self.screen_gates:
            return [], 0.0
        entries, rows = screen_candidates(self.space, start)
        n = min(_rows(x), SCREEN_ROWS)
        cost = float(n * len(rows))
        if len(entries) < 2 or (math.isfinite(budget) and cost > SCREEN_SHARE * budget):
            return [], 0.0
        if n < _rows(x):  # the first rows, cut as the weight steps cut a batch
            x, y = x[:n], y[:n]
        scores = self.evaluate(self.space.decode_batch(np.asarray(rows)), x, y)
        if not math.isfinite(float(scores[0])):  # no reference: no ranking (still paid)
            return [], cost
        return rank_closed(entries, scores.tolist()), cost

    def _choice_screen(self, start: list[float], x: Any, y: Any, budget: float, spent: float
                       ) -> tuple[list[list[float]], float]:
        """The best predicted pairs of moves of two ``Choice`` slots of ``start``
        (:func:`~nondiff.hybrid.choice_screen.taylor_pairs` on the first
        :data:`~nondiff.hybrid.choice_screen.PAIR_SCREEN_ROWS` rows of ``(x, y)``, under
        the trainer's ``loss``: it only ranks, the race scores the ``fitness`` and the
        structure cost), each ``[entry, value, entry, value]``, and the examples it
        took (counted by the caller, as :meth:`_screen`'s); ``([], 0.0)`` without it:
        ``screen_choices`` False, fewer than two slots that can move, few-shot weights
        still split (each option on its own copy: no mixture), a Decoupled engine (its
        blocks train apart: no second derivative through them), or ``spent`` (the gate
        screen's examples) plus its cost above
        :data:`~nondiff.hybrid.choice_screen.PAIR_SCREEN_SHARE` of ``budget``."""
        if not self.screen_choices or self.engine is not None or self._split_active():
            return [], 0.0
        moves = choice_moves(self.model, self.space)
        n = min(_rows(x), PAIR_SCREEN_ROWS)
        cost = float(n * (1 + 2 * moves))
        if not moves or (math.isfinite(budget) and spent + cost > PAIR_SCREEN_SHARE * budget):
            return [], 0.0
        x, y = to_device((x[:n], y[:n]), device_of(self.model))
        pairs, passes = taylor_pairs(self.model, self.space, start, x, y, self.loss)
        return [list(p[:4]) for p in pairs[:PAIR_SCREEN_KEEP]], float(n * passes)

    def _closing_screen(self, start: list[float], x: Any, y: Any, budget: float,
                        spent: float) -> tuple[list[list[float]], float]:
        """``[entry, predicted change]`` of closing each open gate of ``start``
        (:func:`~nondiff.hybrid.gate_closing.closing_changes` on the first
        :data:`~nondiff.hybrid.gate_screen.SCREEN_ROWS` rows of ``(x, y)``, under the
        trainer's ``loss``) and the examples it took (counted by the caller, as
        :meth:`_screen`'s), the change of the structure cost (at this step's weight)
        included when the fitness is the loss (the cost is scaled for the fitness);
        ``([], 0.0)`` without it: ``screen_closings`` False, fewer than two open gates,
        few-shot weights still split, a Decoupled engine (as :meth:`_choice_screen`), or
        ``spent`` (the other screens' examples) plus its cost above
        :data:`~nondiff.hybrid.gate_closing.CLOSING_SHARE` of ``budget``. The gate
        parsimony's penalties (:meth:`_less_noise`) are taken off by the caller once
        every screen has run; the screen's errors weigh the gates no screen has
        weighed yet (:meth:`_note_noise`)."""
        if not self.screen_closings or self.engine is not None or self._split_active():
            return [], 0.0
        base = np.asarray(start, dtype=np.float64)
        opened = sum(int(base[at:at + g.space.size].sum())
                     for at, g in gate_entries(self.model, self.space))
        n = min(_rows(x), SCREEN_ROWS)
        if opened < 2 or (math.isfinite(budget) and spent + n > CLOSING_SHARE * budget):
            return [], 0.0
        x, y = to_device((x[:n], y[:n]), device_of(self.model))
        changes, errors, passes = closing_screen(self.model, self.space, start, x, y,
                                                 self.loss)
        self._note_noise(errors, every_gate=False)
        changes = self._with_cost_changes(start, changes)
        return [[float(j), v] for j, v in sorted(changes.items())], float(n * passes)

    def _parsimony_on(self) -> bool:
        """Whether :attr:`gate_parsimony` weighs the gates: it is on, there is no
        structure cost or it is withheld now (:meth:`~nondiff.hybrid.structure_costs.
        StructureCosts.cost_held_back`), and the fitness is the loss (the penalty is in
        its units)."""
        return self.gate_parsimony and self.fitness is self.loss and (
            self.structure_cost is None or self.cost_held_back(self.step_count))

    def _note_noise(self, errors: dict[int, float], every_gate: bool) -> None:
        """Keep each gate's penalty of :attr:`gate_parsimony` from a closing screen's
        standard errors (``errors``, by entry): :func:`~nondiff.hybrid.gate_closing.
        noise_threshold` of the model's gates times the gate's error, at most the
        median of the screen's errors above 0 (none above 0: nothing kept). A screen of
        ``every_gate`` open (the pruned start's) sets every penalty, 0 for the gates
        its loss does not reach; another adds only gates not weighed yet.

        The cap is the error a gate would have if it did nothing: a relevant input's
        rows change by very different amounts when it closes (a confident model loses
        little on most rows, much on a few), so its own error is large — 0.14 for a
        predicted change of 0.18 (a real one of 1.2) in the tests, where noise inputs
        have 0.001 to 0.01 — and would count against it; most gates of a model that
        needs the search are noise, and the median error is theirs."""
        positive = [e for e in errors.values() if e > 0]
        if not positive or not self._parsimony_on():
            return
        gates = [j for at, g in gate_entries(self.model, self.space)
                 for j in range(at, at + g.space.size)]
        cap = float(np.median(positive))
        fresh = {j: noise_threshold(max(1, len(gates))) * min(e, cap)
                 for j, e in errors.items()}
        if every_gate:  # the gates it does not reach: nothing says they are noise
            noise = {**{j: 0.0 for j in gates}, **fresh}
        else:  # another screen: the gates weighed before stay
            noise = {**fresh, **{int(j): v for j, v in self.gate_noise}}
        self.gate_noise = [[float(j), float(v)] for j, v in sorted(noise.items())]

    def _gate_penalties(self) -> dict[int, float]:
        """Each gate's penalty of :attr:`gate_parsimony` (:meth:`_note_noise`), by entry;
        a gate no screen has weighed: the median of those weighed. Empty when it is off
        or nothing is weighed yet."""
        if not self.gate_noise or not self._parsimony_on():
            return {}
        noise = {int(j): v for j, v in self.gate_noise}
        fallback = float(np.median(list(noise.values())))
        return {j: noise.get(j, fallback) for at, g in gate_entries(self.model, self.space)
                for j in range(at, at + g.space.size)}

    def _parsimony(self, rows: Any) -> np.ndarray:
        """The penalty of :attr:`gate_parsimony` of each encoded structure of ``rows``:
        the sum of its open gates' penalties (:meth:`_gate_penalties`); zeros when it is
        off or nothing is weighed yet."""
        penalties = self._gate_penalties()
        if not penalties or not len(rows):
            return np.zeros(len(rows))
        rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        gates = list(penalties)
        return (rows[:, gates] > 0) @ np.asarray([penalties[j] for j in gates])

    def _less_noise(self, changes: dict[int, float]) -> dict[int, float]:
        """``changes`` (predicted changes of closing each gate, by entry) less each
        gate's penalty of :attr:`gate_parsimony` (:meth:`_gate_penalties`): the saving
        of closing it; unchanged when it is off or nothing is weighed yet."""
        penalties = self._gate_penalties()
        return {j: v - penalties.get(j, 0.0) for j, v in changes.items()} if penalties \
            else changes

    def _with_cost_changes(self, start: list[float], changes: dict[int, float]
                           ) -> dict[int, float]:
        """``changes`` (the predicted loss change of closing each gate of ``start``) plus
        the change of the structure cost each closing makes, at this step's weight, when
        the fitness is the loss (the cost is scaled for the fitness: else unchanged)."""
        if not changes or self.structure_cost is None or self.fitness is not self.loss:
            return changes
        rows = []
        for j in changes:
            row = list(start)
            row[j] = 0.0
            rows.append(row)
        costs = self.costs(self.space.decode_batch(np.asarray([list(start), *rows])))
        weight = self.cost_weight_at(self.step_count)
        return {j: v + weight * float(cost - costs[0])
                for (j, v), cost in zip(changes.items(), costs[1:], strict=True)}

    def _pruned_starts(self, start: list[float], x: Any, y: Any, budget: float,
                       spent: float) -> tuple[list[list[float]], float]:
        """``start`` with every gate open, then every gate closed whose predicted change
        (:func:`~nondiff.hybrid.gate_closing.closing_changes` on the first
        :data:`~nondiff.hybrid.gate_screen.SCREEN_ROWS` rows of ``(x, y)``, plus the
        structure cost's change when the fitness is the loss, as in
        :meth:`_closing_screen`) is below 0 — one such structure per option of the split
        ``Choice``, each screened under its option's copy, ``start``'s option first,
        while few-shot weights are split, else one — then each one's next
        :data:`PRUNE_PATH` steps back along its pruning path
        (:func:`~nondiff.hybrid.gate_closing.pruning_path`: its most valuable closed
        gate open again, then its two most valuable), and the examples it took (counted
        by the caller, as :meth:`_screen`'s). Gates the loss does not reach (inside an
        option not taken) keep ``start``'s value.

        This is the selection's way back to inputs the search has lost: the search's
        recommendation may hold none of the inputs that matter together (both inputs of a
        product closed) while the weights, trained first with every gate open, still
        read them; pruning the whole model by what each gate is worth under those
        weights keeps them (as Wang et al. 2021 select a supernet's operations by the
        loss of removing each). ``([], 0.0)`` without it: ``prune_open`` False, a
        Decoupled engine, fewer than two gates, or no screen that fits in
        :data:`~nondiff.hybrid.gate_closing.CLOSING_SHARE` of ``budget`` after
        ``spent`` (the options whose screens do not fit are left out, and so are those
        whose screen fails: a non-finite loss or derivative, autograd refusing; its pass
        is still paid). A structure cost that is not a sum over gates is weighed with
        the unreached gates open. Under the gate parsimony without a structure cost the
        gates the first pruned start closes are then tested together
        (:meth:`_keep_together`): when they matter together, the start is pruned again
        without their penalties, after the start with every gate open."""
        entries = gate_entries(self.model, self.space)
        n = min(_rows(x), SCREEN_ROWS)
        if not self.prune_open or self.engine is not None or \
                sum(g.space.size for _, g in entries) < 2 or \
                (math.isfinite(budget) and spent + n > CLOSING_SHARE * budget):
            return [], 0.0
        value = self.space.decode(np.asarray(every_gate_open(start, entries)))
        split = self._split_active()
        starts = [value]
        if split:  # an option per start, start's own first
            options = sorted(self.space.spaces[self.split_on].choices,
                             key=lambda option: option != value[self.split_on])
            starts = [{**value, self.split_on: option} for option in options]
        gates = [j for at, g in entries for j in range(at, at + g.space.size)]
        pruned: list[list[float]] = []
        path: list[list[float]] = []
        paid = 0.0
        loaded = None
        try:
            x, y = to_device((x[:n], y[:n]), device_of(self.model))
            if split:
                self._split_start()
                loaded = self.split["loaded"]
            for value in starts:
                if math.isfinite(budget) and spent + paid + n > CLOSING_SHARE * budget:
                    break
                row = np.asarray(self.space.encode(value), dtype=np.float64).tolist()
                if split:
                    self._use_option(self._option(value))
                changes, errors, passes = closing_screen(self.model, self.space, row, x, y,
                                                         self.loss)
                paid += float(n * passes)
                if not changes:
                    continue
                if value is starts[0]:  # the start's own option: every gate weighed at once
                    self._note_noise(errors, every_gate=True)
                costed = self._with_cost_changes(row, changes)
                weighed = self._less_noise(costed)
                built = [closed_together(row, weighed, least=0),
                         *pruning_path(row, weighed, PRUNE_PATH)]
                opened = 0  # 1: built starts with every gate open
                if value is starts[0] and self.keep_together and self._parsimony_on() \
                        and self.structure_cost is None:  # a withheld cost keeps its say
                    together, cost = self._keep_together(row, built[0], weighed, x, y,
                                                         budget, spent + paid)
                    paid += cost
                    if together:  # every gate open, then pruned again without them
                        weighed = self._less_noise(costed)
                        built = [list(row), closed_together(row, weighed, least=0),
                                 *pruning_path(row, weighed, PRUNE_PATH)]
                        opened = 1
                for kept in built:
                    for j in gates:  # gates the loss does not reach: as the start has them
                        if j not in changes:
                            kept[j] = float(start[j])
                pruned.extend(built[:1 + opened])
                path.extend(built[1 + opened:])
        finally:
            if loaded is not None:
                self._use_option(loaded)
        return pruned + path, paid

    def _keep_together(self, start: list[float], pruned: list[float],
                       weighed: dict[int, float], x: Any, y: Any, budget: float, spent: float
                       ) -> tuple[bool, float]:
        """Whether the gates that the pruned start ``pruned`` closes of ``start`` (every
        gate open) under the gate parsimony's penalties are worth keeping together
        (:mod:`~nondiff.hybrid.joint_closing`), and the examples it took. The group less
        its :data:`PRUNE_PATH` most valuable gates (by ``weighed``: each gate's predicted
        change of closing less its penalty, by entry, as
        :func:`~nondiff.hybrid.gate_closing.pruning_path` ranks them, which races those
        open again) is closed together on the rows of ``(x, y)``
        (:func:`~nondiff.hybrid.joint_closing.joint_closing`); when the loss rises by
        more than :func:`~nondiff.hybrid.gate_closing.noise_threshold` of the model's
        gates times its standard error, what they are worth is not in any one of them:
        every gate of the group gets a penalty of 0 for the rest of the run (True; those
        the screen predicts to lower the loss when closed still close in the start
        pruned again). ``(False, 0.0)`` when the parsimony closes no more than
        :data:`PRUNE_PATH` gates, the rows are fewer than :data:`JOINT_ROWS`, or the two
        passes do not fit in :data:`~nondiff.hybrid.gate_closing.CLOSING_SHARE` of
        ``budget`` after ``spent``."""
        penalties = self._gate_penalties()
        group = sorted((j for j, v in penalties.items()
                        if v > 0 and start[j] > 0 and pruned[j] == 0),
                       key=lambda j: (-weighed.get(j, 0.0), j))
        n = _rows(x)
        if len(group) <= PRUNE_PATH or n < JOINT_ROWS or (
                math.isfinite(budget) and spent + 2 * n > CLOSING_SHARE * budget):
            return False, 0.0
        closed = list(start)
        for j in group[PRUNE_PATH:]:
            closed[j] = 0.0
        change, error, passes = joint_closing(self.model, self.space, start, closed, x, y,
                                              self.loss)
        paid = float(n * passes)
        if not (math.isfinite(change) and change > noise_threshold(len(penalties)) * error):
            return False, paid
        noise = {int(j): v for j, v in self.gate_noise}
        noise.update({j: 0.0 for j in group})
        self.gate_noise = [[float(j), float(v)] for j, v in sorted(noise.items())]
        return True, paid

    def _epoch_rows(self, data: Any, batch_size: int) -> list[int]:
        """The rows of each batch of an epoch of ``data`` known before it runs: a list of
        batches, or a :class:`~nondiff.problems.learning.Dataset` (its last batch the
        remainder); else none."""
        if isinstance(data, (list, tuple)):
            return [_rows(self._pair(batch, i)[0]) for i, batch in enumerate(data)]
        if hasattr(data, "batches") and (hasattr(data, "y_train") or
                                         isinstance(data, RowBatches)):
            n = len(data.y_train) if hasattr(data, "y_train") else len(data)
            return [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size
                                                       else [])
        return []

    def _final_rows(self, rows: int) -> list[int]:
        """The rows of each step of the final phase that starts now, or of the steps it
        has left once a structure is selected (``rows``, this step's, first): the
        batches at the same places of an epoch when ``fit`` knows them (a list of
        batches, a Dataset, or the last whole epoch), else each as small as the smallest
        batch so far, so that the selection's budget never counts on rows the phase will
        not earn."""
        count = self._final_count()
        start = self.batch_in_epoch  # the index of this step's batch in its epoch
        known = self.epoch_rows
        if len(known) > start:
            return [rows] + [known[(start + j) % len(known)] for j in range(1, count)]
        smallest = min([rows, *known, *self._rows_now])
        return [rows] + [smallest] * (count - 1)

    def _near(self, encoded: list[float]) -> list[list[float]]:
        """The neighbours of ``encoded`` (:func:`~nondiff.hybrid.selection.neighbours`),
        the cheapest first under a structure cost (at full weight), in an order drawn
        from the trainer's seed among as cheap ones; then the leaves of the space take
        turns (:func:`~nondiff.hybrid.selection.leaf_turns`), so the order is cheapest
        first within each leaf."""
        near = neighbours(self.space, encoded)
        if not near:
            return near
        order = np.random.default_rng([self.seed, self.step_count]).permutation(len(near))
        near = [near[i] for i in order]
        if self.structure_cost is not None:
            costs = self.costs(self.space.decode_batch(np.asarray(near)))
            near = [near[i] for i in np.argsort(costs, kind="stable")]
        return leaf_turns(self.space, encoded, near)
