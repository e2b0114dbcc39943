"""The finalists' race: the last candidates of the final selection, each trained briefly
on its own copy of the weights before one is chosen.

Weights shared by many structures end co-adapted to the ones the search asked most: a
linear head fitted to the features of one program reads another program's features
badly, so a better structure one move away loses the race of
:mod:`nondiff.hybrid.selection` (scored under the shared weights) to the incumbent.
Evaluating a candidate after a short fine-tune of the shared weights ranks candidates
closer to how they rank trained alone (Bender et al. 2018 fine-tune their one-shot
candidates; Yu et al. 2020 measure how poorly the plain shared weights rank). Here,
after the final selection of
:class:`~nondiff.hybrid.trainer.HybridTrainer` has picked its structure, the first
final steps train :data:`RACE_FINALISTS` finalists — that structure and the best others
of the selection's first batch, one of each score (:func:`pick_finalists`: equal
scores are one function) — each on its own copy of the
weights and of the weight optimizer's state, on the same batches. Each is scored on a
batch before it trains on it (its fitness from that forward pass, plus the structure
cost at the step's weight, or without a cost (or with it withheld) the penalty of
:attr:`~nondiff.hybrid.final_phase.FinalPhase.gate_parsimony`), averaged over the second
half of each stage of
:data:`RACE_STAGE_STEPS` steps (the first half lets its weights adapt: a finalist the
shared weights read backwards starts far behind), and after each stage the better half
goes on (successive halving; ties go to the better place in the stage before); the last
one left
is :attr:`~nondiff.hybrid.trainer.HybridTrainer.selected`, and its weights and optimizer
state go on training as the final phase's.

Between two steps the model holds the leader's weights and structure (the finalist with
the lowest sum so far: :attr:`~nondiff.hybrid.trainer.HybridTrainer.selected`), so a
``fit`` that ends or is stopped mid-race, or a callback, sees one consistent model. The
learning rates are the weight optimizer's live ones (a scheduler stepped in a callback
goes on); only the optimizer's per-parameter state is per finalist. The race scores on
the training batches, before each finalist trains on them, also when ``fit`` has
``held_out`` batches (those serve the selection). A non-finite loss follows
``on_nonfinite`` (``"raise"``: the step is refused and the race left as it was; ``"skip"``:
that finalist neither trains nor scores on the batch).

The extra training passes (all finalists but one per step) are paid from what is left of
the final selection's budget (``search_compute``), priced with the rows of the batches
the race will see, so the bound holds; fewer finalists are raced when it is short (none
below two), a batch the budget left cannot pay for ends the race with its leader, and
there is no race under an engine. Memory: each finalist holds a copy of the model's
state and of the weight optimizer's state until it is eliminated (up to twice that
during a step); with the defaults the race lasts 12 steps. ``HybridTrainer.race_finalists
= 0`` turns the race off.

Measured on the acceptance suite (:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`, 7
tasks x 13 optimizers x 5 seeds, the trainer's defaults otherwise), with 4 finalists in
stages of 8 steps: rows meeting all three targets 65 -> 69 of 91, seeds recovering the
structure 404 -> 415 of 455; program 4 -> 7 rows (55 -> 60 seeds), relevant-inputs 11 ->
12 rows, routing 31 -> 36 seeds, no task worse (scoring every step of a stage instead of
its second half: also 69 rows, program 59 seeds). With the defaults, 8 finalists in
stages of 4 steps: 74 rows (program 11, relevant-inputs 13; routing 32 seeds).

Sources:
    - G. Bender, P.-J. Kindermans, B. Zoph, V. Vasudevan, Q. Le, "Understanding and
      simplifying one-shot architecture search", ICML 2018.
    - K. Yu, C. Sciuto, M. Jaggi, C. Musat, M. Salzmann, "Evaluating the search phase
      of neural architecture search", ICLR 2020.
    - K. Jamieson, A. Talwalkar, "Non-stochastic best arm identification and
      hyperparameter optimization", AISTATS 2016 (successive halving).

Example:
    >>> from nondiff.hybrid.finalists import pick_finalists, race_cost
    >>> opening = {"candidates": [[0, 1], [1, 1], [0, 0], [1, 0]],
    ...            "first": [0.5, 0.3, None, 0.4]}
    >>> pick_finalists([0, 1], opening, k=3)  # the selected first, then the best others
    [[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]
    >>> race_cost(4, stage_steps=8, rows=64)  # extra examples: (3 + 1) x 8 steps x 64
    2048
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .blocks import rows as _rows
from .candidate_norms import norm_buffers, restore_norm_buffers
from .devices import copy_state
from .nonfinite import check_finite
from .structure import set_structure

__all__ = ["RACE_FINALISTS", "RACE_STAGE_STEPS", "FinalistRace", "pick_finalists",
           "race_cost", "race_steps"]

RACE_FINALISTS = 8
"""Default ``HybridTrainer.race_finalists``: the structures the finalists' race trains
(at most; fewer when the budget left is short)."""
RACE_STAGE_STEPS = 4
"""Default ``HybridTrainer.race_stage_steps``: steps between two halvings of the race.
Measured (8 tasks x 13 optimizers x 5 seeds): 4 finalists in stages of 8 steps 82 rows
meeting all three targets of 104, 8 in stages of 4 87 (program 7 -> 11 rows,
relevant-inputs 12 -> 13; routing 36 -> 32 seeds); 8 in stages of 6 (fewer fit the
budget) program 8 rows; 6 in stages of 8: program and relevant-inputs 19 rows, as 4
finalists in stages of 8."""


def pick_finalists(selected: Sequence[float], opening: Mapping[str, Any] | None, k: int
                   ) -> list[list[float]]:
    """``selected`` and then the other candidates of the selection's first batch
    (``opening``: its ``candidates`` and their ``first`` scores, None for one not
    scored), best first, at most ``k`` structures of distinct scores.

    Candidates with exactly the same first score are taken for one function and raced
    once: structures that compute the same thing score bit for bit alike on the same
    rows under the same weights, and training cannot tell them apart either (a program
    ``sort, sort, identity`` and ``sort, sort, sort``; a product's two inputs swapped;
    gates the loss does not reach). Traced on the program task (OpenAI-ES seed 1), 7
    finalists held 4 functions. Measured (13 optimizers): program 7 -> 9 rows meeting
    all three targets of issue 17 of 13 on seeds 0-4 and 6 -> 8 on seeds 5-9 (seeds
    recovered 58 -> 61 and 57 -> 61 of 65); routing and head-choice as before.
    """
    out = [[float(v) for v in selected]]
    if opening:
        scored = [(float(v), [float(c) for c in cand]) for cand, v in
                  zip(opening["candidates"], opening["first"], strict=True)
                  if v is not None and math.isfinite(float(v))]
        seen = {v for v, cand in scored if cand == out[0]}  # the selected one's score
        for v, cand in sorted(scored, key=lambda pair: pair[0]):
            if len(out) >= k:
                break
            if cand not in out and v not in seen:
                out.append(cand)
                seen.add(v)
    return out[:max(k, 1)]


def race_steps(k: int, stage_steps: int) -> int:
    """The steps a race of ``k`` finalists takes: a stage of ``stage_steps`` per halving."""
    stages = 0
    while k > 1:
        stages, k = stages + 1, math.ceil(k / 2)
    return stages * stage_steps


def race_cost(k: int, stage_steps: int, rows: int | Sequence[int]) -> int:
    """The training examples a race of ``k`` finalists adds to one structure's: every
    finalist but one trains on each batch (``rows``: the rows of every batch, or of each
    of the race's batches in order)."""
    extra, step = 0, 0
    while k > 1:
        for _ in range(stage_steps):
            r = rows if isinstance(rows, int) else rows[min(step, len(rows) - 1)]
            extra, step = extra + (k - 1) * int(r), step + 1
        k = math.ceil(k / 2)
    return extra


class FinalistRace:
    """The finalists' race of :class:`~nondiff.hybrid.trainer.HybridTrainer`'s final
    phase (a mixin: it reads the trainer's model, weight optimizer, loss, fitness, cost
    and selection)."""

    race_finalists: int = RACE_FINALISTS
    race_stage_steps: int = RACE_STAGE_STEPS

    def _check_race(self) -> None:
        """Refuse bad race settings (class attributes a user may set), before anything.

        Raises:
            ValueError: ``race_finalists`` not an int >= 0 or ``race_stage_steps`` not
                an int >= 2.
        """
        for name, value, least in (("race_finalists", self.race_finalists, 0),
                                   ("race_stage_steps", self.race_stage_steps, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"HybridTrainer.{name} must be an int >= {least}, got "
                                 f"{value!r}; e.g. {RACE_FINALISTS if least == 0 else 8}")

    def _start_race(self, rows: int) -> dict[str, Any] | None:
        """The race state for a race that starts at a batch of ``rows`` rows, or None
        when there is none to run: fewer than two finalists, an engine, or not enough
        budget or steps left for two (fewer finalists race when they are short). The
        stage length is kept in the state: a race goes on as it was priced."""
        self._check_race()
        if self.engine is not None or self.race_finalists < 2 or self.selected is None:
            return None
        sel = self.selection or {}
        finalists = pick_finalists(self.selected, sel.get("opening"), self.race_finalists)
        left, stage = sel.get("left"), self.race_stage_steps
        future = self._final_rows(rows)
        plan = self._run_plan() if isinstance(self.final_steps, float) else self.planned_steps
        steps_left = 0 if plan is None else plan - self.step_count
        while len(finalists) > 1 and (
                race_steps(len(finalists), stage) > min(steps_left, len(future)) or
                (left is not None and race_cost(len(finalists), stage, future) > left)):
            finalists = finalists[:-1]
        if len(finalists) < 2:
            return None
        weights = copy_state(self.model.state_dict())
        moments = copy.deepcopy(self.weight_optimizer.state_dict()["state"])
        k = len(finalists)
        return {"encoded": finalists, "weights": [copy_state(weights) for _ in finalists],
                "optimizers": [copy.deepcopy(moments) for _ in finalists],
                "sums": [0.0] * k, "counts": [0] * k, "prior": [0.0] * k,
                "alive": list(range(k)), "steps": 0, "nonfinite": 0, "stage_steps": stage}

    def _race_step(self, x: Any, y: Any) -> tuple[float, bool, bool]:
        """One step of the race (:attr:`race` under way): every finalist still in it
        scored on ``(x, y)`` and trained on it with its own weights (and its own state
        of the weight optimizer; the learning rates are the live ones, which a
        scheduler may change); after each stage the finalists with the better mean
        score over the stage's second half go on (a finalist skipped on a batch under
        ``on_nonfinite="skip"`` is judged on the others; one that scored nothing
        loses). Between steps the model holds the leader's weights and structure
        (:attr:`selected`); the last finalist left is the winner. A batch that the
        budget left cannot pay for ends the race with the leader, who trains on it as
        in a plain final step. Returns (the mean training loss, whether nothing trained,
        whether the finalists raced on the batch); the caller counts the step and the
        one pass a final step costs anyway.

        Raises:
            NonFiniteError: a loss is not finite under ``on_nonfinite="raise"`` (the
                race and the model are left as before the step).
        """
        race = {**self.race, "sums": list(self.race["sums"]),
                "counts": list(self.race.get("counts", [0] * len(self.race["sums"]))),
                "weights": list(self.race["weights"]),
                "optimizers": list(self.race["optimizers"])}
        stage = int(race.get("stage_steps", self.race_stage_steps))
        rows, losses, scores = _rows(x), [], {}
        left = (self.selection or {}).get("left")
        if left is not None and rows * (len(race["alive"]) - 1) > left:  # the bound
            leader = self._leader(race)
            self._load_finalist(race, leader, None)
            loss, skipped = self._weight_step(x, y, [self.recommended()], [rows])
            race["alive"] = [leader]
            self._close_race(race)
            return loss, skipped, False
        weight = self.cost_weight_at(self.step_count) if self.structure_cost is not None \
            else 0.0
        values = self.space.decode_batch(np.asarray(race["encoded"]))
        costs = self.costs(values) if self.structure_cost is not None else None
        parsimony = self._parsimony(race["encoded"])  # FinalPhase.gate_parsimony: else 0
        self.model.train()
        try:
            for i in race["alive"]:
                self._load_finalist(race, i, values[i])
                saved = norm_buffers(self.model)
                self.weight_optimizer.zero_grad()
                output = self.model(x)
                loss = self.loss(output, y)
                if not check_finite(loss, self.on_nonfinite, "loss", self.step_count):
                    self.weight_optimizer.zero_grad()  # skipped: untrained, unscored
                    restore_norm_buffers(saved)
                    race["nonfinite"] += 1
                    continue
                with torch.no_grad():
                    score = float(self.fitness(output.detach(), y))
                loss.backward()
                self.weight_optimizer.step()
                losses.append(float(loss.detach()))
                scores[i] = score + (weight * float(costs[i]) if costs is not None else 0.0) \
                    + float(parsimony[i])
                race["weights"][i] = copy_state(self.model.state_dict())
                race["optimizers"][i] = copy.deepcopy(self.weight_optimizer.state_dict()
                                                      ["state"])
        except BaseException:
            self._load_finalist(self.race, self._leader(self.race), None)  # as before
            raise
        if 2 * (race["steps"] % stage) >= stage:  # the stage's second half: after adapting
            for i, value in scores.items():
                race["sums"][i] += value if math.isfinite(value) else math.inf
                race["counts"][i] += 1
        race["steps"] += 1
        self.weight_examples += rows
        self.forward_examples += rows * (len(race["alive"]) - 1)  # the caller adds one
        if left is not None:
            self.selection = {**self.selection, "left": left - rows * (len(race["alive"]) - 1)}
        if race["steps"] % stage == 0 and len(race["alive"]) > 1:
            ranked = self._ranked(race)
            race["alive"] = sorted(ranked[:math.ceil(len(ranked) / 2)])
            race["prior"] = [float(ranked.index(i)) if i in ranked else math.inf
                             for i in range(len(race["sums"]))]  # ties next stage
            race["sums"], race["counts"] = [0.0] * len(race["sums"]), [0] * len(race["sums"])
            for i in range(len(race["weights"])):  # the eliminated ones' copies go
                if i not in race["alive"]:
                    race["weights"][i], race["optimizers"][i] = None, None
        result = (float(np.mean(losses)) if losses else math.nan), not losses, True
        if len(race["alive"]) == 1:
            self._load_finalist(race, race["alive"][0], None)
            self._close_race(race)
            return result
        self.race = race
        leader = self._leader(race)
        self._load_finalist(race, leader, values[leader])
        return result

    def _ranked(self, race: Mapping[str, Any]) -> list[int]:
        """The finalists still in ``race``, best first: by mean score over the batches
        each scored in this stage (none: last), then by their place after the stage
        before, then the earlier (the selected structure first)."""
        counts = race.get("counts") or [1] * len(race["sums"])
        prior = race.get("prior") or [0.0] * len(race["sums"])

        def key(i: int) -> tuple[float, float, int]:
            mean = race["sums"][i] / counts[i] if counts[i] else math.inf
            return (mean if not math.isnan(mean) else math.inf, prior[i], i)
        return sorted(race["alive"], key=key)

    def _leader(self, race: Mapping[str, Any]) -> int:
        """The best finalist still in ``race`` so far (:meth:`_ranked`)."""
        return self._ranked(race)[0]

    def _load_finalist(self, race: Mapping[str, Any], i: int, value: Any) -> None:
        """Finalist ``i``'s weights and optimizer state into the model and the weight
        optimizer (copies: a later step does not change the stored ones), and its
        structure (``value``, or decoded when None) into the model, and into
        :attr:`selected`."""
        self.model.load_state_dict(race["weights"][i])
        state = self.weight_optimizer.state_dict()  # the live learning rates stay
        state["state"] = copy.deepcopy(race["optimizers"][i])
        self.weight_optimizer.load_state_dict(state)
        encoded = race["encoded"][i]
        set_structure(self.model, self.space.decode(np.asarray(encoded))
                      if value is None else value)
        self.selected = [float(v) for v in encoded]

    def _close_race(self, race: Mapping[str, Any]) -> None:
        """The race over, the one finalist left in ``race`` (loaded) the winner; the
        copies go."""
        self.race = {"done": True, "winner": race["alive"][0],
                     "nonfinite": race["nonfinite"], "encoded": race["encoded"]}
