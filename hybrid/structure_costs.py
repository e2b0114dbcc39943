"""Structure costs of :class:`~nondiff.hybrid.trainer.HybridTrainer`: schedule, Pareto view.

A ``structure_cost`` (``cost(structure) -> number``: open gates, parameters, FLOPs of
the chosen ops) is added to each candidate's fitness with a weight that follows a
schedule of the step count (:meth:`StructureCosts.cost_weight_at`): off while the shared
weights learn what each part is worth, then ramped in. The default waits for two signs:
a share of the training (:data:`DEFAULT_COST_START`) and a generation whose best fitness
stands out from its median (:data:`COST_SIGNAL`: the weights tell structures apart), at
the latest :data:`COST_LATEST` of it — or, on a gated model scored by its loss, never
without the signal (:attr:`StructureCosts.cost_withheld`). :meth:`StructureCosts.pareto`
gives the non-dominated (fitness, cost) candidates of the last generation
(:func:`pareto_front`). The trainer inherits these methods (:class:`StructureCosts` is a
mixin of it; the module docstring of :mod:`nondiff.hybrid.trainer` has the whole step).

Sources: feature selection as an L0 cost, C. Louizos, M. Welling, D. Kingma, "Learning
sparse neural networks through L0 regularization", ICLR 2018; multi-objective NAS
(accuracy vs cost, the Pareto front), T. Elsken, J. H. Metzen, F. Hutter, "Efficient
multi-objective neural architecture search via Lamarckian evolution", ICLR 2019.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.structure import Gates
    >>> from nondiff.hybrid.trainer import HybridTrainer
    >>> model = nn.Sequential(Gates(4), nn.Linear(4, 1))
    >>> trainer = HybridTrainer(model, "ga", structure_cost=lambda s: float(s["0"].sum()),
    ...                         total_steps=100)
    >>> trainer.cost_window()  # (start, ramp): no generation has told structures apart
    (100, 0)
    >>> trainer.cost_held_back(59), trainer.cost_held_back(60)  # withheld past 60 %
    (False, True)
    >>> trainer.step_count = 40  # a generation whose best stands out from its median
    >>> trainer.note_cost_signal([0.7, 0.69, 0.71, 0.5])
    >>> trainer.cost_signal_at, trainer.cost_window()  # full weight by the final phase (70)
    (40, (40, 30))
    >>> trainer.cost_weight_at(39), trainer.cost_weight_at(55), trainer.cost_weight_at(70)
    (0.0, 0.5, 1.0)
    >>> pareto_front([[0.3, 2.0], [0.2, 3.0], [0.4, 2.0]])  # (fitness, cost) rows
    [0, 1]
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .gate_closing import gate_entries
from .schedules import steps_of

__all__ = ["COST_LATEST", "COST_SIGNAL", "DEFAULT_COST_RAMP", "DEFAULT_COST_START",
           "StructureCosts", "check_number", "pareto_front", "plain_structure"]

DEFAULT_COST_START = 0.3
"""The default schedule of a ``structure_cost`` (given without ``warmup_steps`` and
``cost_ramp_steps``): off for the first 30 % of the training (and then until the
:data:`COST_SIGNAL`), then ramped linearly to full weight over the next 40 %. A cost from
the first step closes every gate before the weights behind them learn anything, and a
part worth something only with another (one factor of a product) never reopens. Measured
on the acceptance suite's gated tasks (:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`;
REINFORCE, GA, CMA-ES, SNES, and for 5 seeds also CEM, (1+lambda) and PGPE): with the
cost on from the first step (the default before) inputs-and-activation was recovered on 1
of 12 runs (3 seeds) while relevant-inputs was on 12 of 12; over 5 seeds, seeds recovered
on inputs-and-activation / relevant-inputs: start 10 %, ramp 20 %: 14 / 28 of 35; 20 %,
20 %: 21 / 27; 30 %, 40 % (this default): 29 / 25 (with a final phase of 10 %; since
it is 30 %, the ramp ends by 70 % of the training). An earlier cost closes noise gates
sooner and collapses products more often; the final selection's descent
(:mod:`nondiff.hybrid.selection`) closes the noise gates a late cost leaves open."""
DEFAULT_COST_RAMP = 0.4
"""The default ramp of a ``structure_cost``: the fraction of the training over which its
weight rises to ``cost_weight`` after ``DEFAULT_COST_START``."""
COST_SIGNAL = 0.1
"""The default schedule's cost also waits for a sign that the shared weights tell the
structures apart: a told generation whose best fitness lies this fraction (of the
median's magnitude) below its median (the trainer's ``cost_signal_at``:
:meth:`StructureCosts.note_cost_signal`), or ``COST_LATEST`` of the training, whichever
comes first; the ramp is then shortened to end by the final phase. Under weights that
have not yet learned a part worth something only with another (one factor of a product),
every structure scores alike and the cost alone ranks them: it closed both factors, and
weights trained under the closed gates never learned them. Measured
(``run_suite(["relevant-inputs", "inputs-and-activation"], 10)`` of
:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`, 13 optimizers, 10 seeds): runs that
closed every gate on inputs-and-activation 15 -> 4 of 130, its seeds recovered 115 ->
122, relevant-inputs 123 -> 121, (task, optimizer) rows meeting all three targets 13 ->
20 of 26; frequencies (also with a cost) 129 of 130 recovered either way. The product
there is learned between 30 % and 55 % of the training depending on the seed; the fixed
30 % start closed it on the late seeds."""
COST_LATEST = 0.6
"""The latest start of the default cost schedule (a fraction of the training) when no
generation shows the :data:`COST_SIGNAL` (where the cost is not withheld:
:attr:`StructureCosts.cost_withheld`)."""


def pareto_front(points: Any) -> list[int]:
    """Indices of the non-dominated rows of ``points`` ``(n, 2)``, both columns minimized.

    A row is dominated by one at least as good in both columns and better in one; of
    equal rows the first is kept. Rows with a NaN or infinite entry are left out. The
    indices come sorted by the second column, then the first.

    Example:
        >>> pareto_front([[1.0, 5.0], [2.0, 2.0], [3.0, 3.0], [0.5, 9.0], [2.0, 2.0]])
        [1, 0, 3]
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(pts).all(axis=1)
    keep = []
    for i in np.flatnonzero(finite):
        no_worse = finite & (pts <= pts[i]).all(axis=1)
        better = (pts < pts[i]).any(axis=1)
        equal_before = (pts == pts[i]).all(axis=1) & (np.arange(len(pts)) < i)
        if not (no_worse & (better | equal_before)).any():
            keep.append(int(i))
    return sorted(keep, key=lambda i: (pts[i, 1], pts[i, 0]))


def plain_structure(value: Any) -> Any:
    """A structure value for printing: gate masks as bit strings, arrays as lists."""
    if isinstance(value, np.ndarray):
        if value.dtype == bool:
            return "".join("1" if v else "0" for v in value)
        return value.tolist()
    if isinstance(value, Mapping):
        return {k: plain_structure(v) for k, v in value.items()}
    return value


def check_number(value: Any, name: str, fix: str) -> float:
    """``value`` (a number or one-element tensor) as a finite float, or a ValueError
    naming ``name``, the value and ``fix``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.detach().item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}; {fix}")
    return float(value)


class StructureCosts:
    """The structure-cost methods of :class:`~nondiff.hybrid.trainer.HybridTrainer` (a
    mixin: it reads the trainer's ``structure_cost``, ``cost_weight``, ``cost_start``,
    ``cost_ramp_steps``, ``cost_schedule``, ``warmup_steps``, ``cost_signal_at``,
    ``last_generation`` and its plan)."""

    cost_withheld: bool = True
    """Whether the default schedule withholds the cost until a generation shows the
    :data:`COST_SIGNAL` (however late; never, if none does) instead of starting it at
    :data:`COST_LATEST`, where the final phase's gate parsimony can weigh the gates instead
    (a model with ``Gates``, the loss as the fitness, a final phase that screens the
    closings: :meth:`_waits_for_signal`); ``fit`` then warns (:meth:`cost_held_back`). A
    cost that starts without the signal ranks the structures alone: under weights that have
    not learned what the inputs are worth it closes them all. Withheld, the whole cost
    waits, its part on other entries too (``cost_start`` gives the cost a fixed start); a
    state saved by an earlier version past 60 % without a signal resumes with the cost
    withheld. Measured on the acceptance suite
    (:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`, 13 optimizers, seeds 0-4, against
    ``cost_withheld = False``): at the tasks' own learning rates the six tasks with gates
    and a cost held 76 of 78 rows either way (many-inputs -1, mixed-inputs +1) and 383 of
    390 seeds (384); at Adam's default 1e-3 (``--lr 1e-3``), where the signal rarely comes,
    their seeds recovered rose from 113 to 175 (inputs-and-activation 33 -> 57, two-pairs 0
    -> 12, where 63 of 65 runs had closed every gate) and their mean gap to the known
    structure trained alone fell from 22.4 to 16.7 points. On the frequency count (an
    integer cost, no gates) withholding it lost 10 of 65 seeds at 1e-2 and 33 at 1e-3: it is
    not withheld there. On the check task xor-16 at 1e-3
    (:mod:`nondiff.problems.hybrid.acceptance_checks`, written before the change) the seeds
    recovered rose from 33 to 54 of 65 and the mean gap fell from 26.2 to 12.3 points;
    parity-3 stays at none."""

    @staticmethod
    def _check_cost_arguments(cost: Any, weight: Any, ramp: Any, schedule: Any,
                              start: Any = None) -> None:
        if cost is not None and not callable(cost):
            raise ValueError(f"structure_cost must be a callable structure -> number, got "
                             f"{cost!r}; e.g. lambda s: s['gates'].sum()")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"cost_weight must be a finite number >= 0, got {weight!r}")
        for name, value, example in (("cost_ramp_steps", ramp, 0.4), ("cost_start", start, 0.3)):
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, (int, float)) or not math.isfinite(value) or value < 0 or (
                    isinstance(value, float) and value > 1)):
                raise ValueError(f"{name} must be None (the default), an int >= 0 (steps) or "
                                 f"a float in [0, 1] (a fraction of the training), got "
                                 f"{value!r}; e.g. {example}")
        if schedule is not None and not callable(schedule):
            raise ValueError(f"cost_schedule must be a callable step -> weight, got "
                             f"{schedule!r}")
        if schedule is not None and (weight != 1.0 or ramp is not None or start is not None):
            raise ValueError(f"cost_schedule replaces cost_weight={weight!r}, cost_start="
                             f"{start!r} and cost_ramp_steps={ramp!r}; give the schedule "
                             f"alone")
        if cost is None and (schedule is not None or weight != 1.0 or ramp is not None
                             or start is not None):
            raise ValueError("cost_weight, cost_start, cost_ramp_steps and cost_schedule "
                             "weigh a structure_cost; pass structure_cost= too")

    def cost_window(self) -> tuple[int, int]:
        """(the step the cost comes on at, the steps its weight then ramps over), with
        the defaults and fractions resolved against the training's plan (see
        ``cost_start``)."""
        explicit = self.warmup_steps > 0 or self.cost_ramp_steps is not None
        start = self.cost_start if self.cost_start is not None else (
            self.warmup_steps if explicit else DEFAULT_COST_START)
        ramp = self.cost_ramp_steps if self.cost_ramp_steps is not None else (
            0 if explicit else DEFAULT_COST_RAMP)
        plan = self._run_plan()
        start_steps, ramp_steps = steps_of(start, plan), steps_of(ramp, plan)
        latest = steps_of(COST_LATEST, plan)
        if self.cost_start is None and not explicit and start_steps is not None and \
                latest is not None:  # the default waits for the signal (or the latest)
            withheld = self._waits_for_signal() and self.cost_signal_at is None
            if withheld:  # no latest start: not within this plan (cost_held_back)
                start_steps, ramp_steps = max(start_steps, plan), 0
            elif self._waits_for_signal():
                start_steps = max(start_steps, self.cost_signal_at)
            else:
                signal = latest if self.cost_signal_at is None else self.cost_signal_at
                start_steps = max(start_steps, min(signal, latest))
            end = self._search_end()  # and reaches full weight by the search's end
            if end is not None and ramp_steps is not None and not withheld:
                start_steps = min(start_steps, end)
                ramp_steps = min(ramp_steps, max(0, end - start_steps))
        if (start_steps is None or ramp_steps is None) and not self._warned_cost:
            self._warned_cost = True
            warnings.warn(f"the structure cost's schedule is a fraction of the training "
                          f"(cost_start={start!r}, cost_ramp_steps={ramp!r}), but there is no "
                          f"plan to take it of (steps taken without fit, or data of unknown "
                          f"length), so the cost is at full weight from step "
                          f"{self.warmup_steps}; pass HybridTrainer(total_steps=...) or int "
                          f"cost_start and cost_ramp_steps", stacklevel=3)
        return (max(self.warmup_steps, start_steps or 0),
                0 if ramp_steps is None else ramp_steps)

    def _cost_fraction(self, warmup_steps: int | None = None) -> bool:
        """Whether the cost's schedule is a fraction of the training (the default, or a
        float ``cost_start``/``cost_ramp_steps``), so ``fit`` pins a plan for it."""
        if self.structure_cost is None or self.cost_schedule is not None:
            return False
        warm = self.warmup_steps if warmup_steps is None else warmup_steps
        explicit = (isinstance(warm, int) and warm > 0) or self.cost_ramp_steps is not None
        start = self.cost_start if self.cost_start is not None else (
            None if explicit else DEFAULT_COST_START)
        ramp = self.cost_ramp_steps if self.cost_ramp_steps is not None else (
            None if explicit else DEFAULT_COST_RAMP)
        return isinstance(start, float) or isinstance(ramp, float)

    def _waits_for_signal(self) -> bool:
        """Whether the default schedule withholds the cost until the
        :data:`COST_SIGNAL`, however late, instead of starting it at :data:`COST_LATEST`:
        ``cost_withheld`` on, and something to stand in for the cost — the gate parsimony
        of :class:`~nondiff.hybrid.final_phase.FinalPhase`, which needs it on, the loss
        as the fitness, a model with :class:`~nondiff.hybrid.structure.Gates`, a final
        phase, no engine, and a closing screen that weighs the gates (``screen_closings``
        or ``prune_open``)."""
        if not (self.cost_withheld and getattr(self, "gate_parsimony", False)
                and self.fitness is self.loss and getattr(self, "final_steps", 0)
                and getattr(self, "engine", None) is None
                and (getattr(self, "screen_closings", False)
                     or getattr(self, "prune_open", False))):
            return False
        if not hasattr(self, "_gated"):  # the model's declarations do not change
            self._gated = bool(gate_entries(self.model, self.space))
        return self._gated

    def _cost_waiting(self) -> bool:
        """Whether the default schedule (no ``cost_start``, ``warmup_steps``,
        ``cost_ramp_steps`` or ``cost_schedule``, and a plan to take its fractions of)
        withholds the cost now: it waits for the signal (:meth:`_waits_for_signal`) and
        none has come. Its weight is then 0 at every step."""
        return self._default_schedule() and self.cost_signal_at is None and \
            self._run_plan() is not None and self._waits_for_signal()

    def _default_schedule(self) -> bool:
        """Whether a ``structure_cost`` follows the default schedule, the one that waits
        for the :data:`COST_SIGNAL`: no ``cost_start``, ``warmup_steps``,
        ``cost_ramp_steps`` or ``cost_schedule``."""
        return self.structure_cost is not None and self.cost_schedule is None and \
            self.cost_start is None and self.warmup_steps == 0 and \
            self.cost_ramp_steps is None

    def cost_held_back(self, step: int) -> bool:
        """Whether the cost is withheld at ``step`` where the schedule would otherwise
        have started it: it is waiting for the :data:`COST_SIGNAL`
        (:meth:`_cost_waiting`) and ``step`` is at or past :data:`COST_LATEST` of the
        training's plan (or the search's end, if earlier: no signal comes after it). The
        final phase then weighs the gates by their noise instead
        (:attr:`~nondiff.hybrid.final_phase.FinalPhase.gate_parsimony`), and ``fit``
        warns once the search is over."""
        if not self._cost_waiting():
            return False
        latest, end = steps_of(COST_LATEST, self._run_plan()), self._search_end()
        if latest is None:
            return False
        return step >= (latest if end is None else min(latest, end))

    def _warn_cost_held_back(self) -> None:
        """The warning ``fit`` gives when it ends with the cost withheld
        (:meth:`cost_held_back`)."""
        warnings.warn(f"the structure cost was not weighed: no generation's best fitness "
                      f"stood {COST_SIGNAL:g} of its median below it, so the shared weights "
                      f"did not tell the structures apart, and a cost would have ranked "
                      f"them alone; the final phase weighed each gate by its noise instead "
                      f"(gate_parsimony). Train longer or with a larger learning rate of the "
                      f"weight optimizer (the default Adam's is 1e-3), or pass cost_start to "
                      f"weigh the cost from a given step", stacklevel=3)

    def _search_end(self) -> int | None:
        """The step the final phase starts at (the plan's end without one), or None
        without a plan."""
        plan = self._run_plan()
        if plan is None:
            return None
        final = self.final_steps
        return plan - (steps_of(final, plan) if isinstance(final, float) else int(final))

    def note_cost_signal(self, objectives: Any) -> None:
        """Record ``cost_signal_at`` (once): the step of the first told generation whose
        best objective lies :data:`COST_SIGNAL` of its median's magnitude below the
        median (and strictly below it); only under the default schedule (no
        ``cost_start``, ``warmup_steps``, ``cost_ramp_steps`` or ``cost_schedule``), where
        the objectives before the cost is on are the fitness alone. Non-finite values are
        left out. A generation before :data:`DEFAULT_COST_START` counts too (the cost
        then starts there): counting only later ones left a population that had
        converged by then (every candidate alike, no gap) without a signal, and the cost
        late (CMA-ES-torch on relevant-inputs: 5 -> 3 of 5 seeds). A fitness offset far
        from 0 (minus an accuracy near 1) may hide the signal: the cost then starts at
        :data:`COST_LATEST`."""
        if self.cost_signal_at is not None or not self._default_schedule():
            return
        values = np.asarray(objectives, dtype=np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        if values.size < 2:
            return
        middle = float(np.median(values))
        gap = middle - float(values.min())
        if gap > 0 and gap >= COST_SIGNAL * abs(middle):
            self.cost_signal_at = self.step_count

    def cost_weight_at(self, step: int) -> float:
        """The weight of the structure cost at step ``step`` (steps taken before it)."""
        if self.structure_cost is None:
            return 0.0
        if self.cost_schedule is not None:
            weight = check_number(self.cost_schedule(step), f"cost_schedule({step})",
                                   "return a finite weight >= 0")
            if weight < 0:
                raise ValueError(f"cost_schedule({step}) must be >= 0, got {weight!r}; "
                                 "return a finite weight >= 0")
            return weight
        if self._cost_waiting():  # withheld (cost_withheld), past the plan too
            return 0.0
        start, ramp = self.cost_window()
        if step < start:
            return 0.0
        if ramp == 0:
            return self.cost_weight
        return self.cost_weight * min(1.0, (step - start) / ramp)

    def costs(self, values: list[Mapping[str, Any]]) -> np.ndarray:
        """``structure_cost`` of each decoded structure, checked (finite numbers)."""
        assert self.structure_cost is not None
        out = np.empty(len(values))
        for i, value in enumerate(values):
            out[i] = check_number(self.structure_cost(value),
                                   f"structure_cost of structure {plain_structure(value)}",
                                   "return a finite float or one-element tensor")
        return out

    def pareto(self) -> list[dict[str, Any]]:
        """The non-dominated ``{"fitness", "cost", "structure"}`` of the last generation.

        The last generation evaluated (the structure optimizer's last ``ask``): its
        candidates were all evaluated on the same batch with the same weights, so their
        fitness values compare (those of earlier generations, under other weights and
        batches, would not). Sorted by cost; a structure asked twice appears once;
        empty before the first evaluated generation.
        """
        if self.structure_cost is None:
            raise ValueError("pareto() needs a structure_cost; pass structure_cost= to "
                             "HybridTrainer")
        last = self.last_generation
        points = np.column_stack([last["fitness"], last["cost"]]) if last["fitness"] \
            else np.empty((0, 2))
        return [{"fitness": float(points[i, 0]), "cost": float(points[i, 1]),
                 "structure": self.space.decode(np.asarray(last["encoded"][i]))}
                for i in pareto_front(points)]

    def print_pareto(self, file: Any = None) -> str:
        """Print (to ``file``, default stdout) and return a table of :meth:`pareto`."""
        front = self.pareto()
        lines = [f"Pareto front of the last generation ({len(front)} structures, "
                 f"step {self.step_count}):", f"{'fitness':>12} {'cost':>12}  structure"]
        lines += [f"{p['fitness']:>12.5g} {p['cost']:>12.5g}  {plain_structure(p['structure'])}"
                  for p in front]
        table = "\n".join(lines)
        print(table, file=file if file is not None else sys.stdout)
        return table
