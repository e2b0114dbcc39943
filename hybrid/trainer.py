"""HybridTrainer: a structure optimizer searches the declarations, gradients train the weights.

Each step on a batch ``(x, y)`` (ENAS, Pham et al. 2018, alternates the same two halves):

1. ``candidates = structure_optimizer.ask()`` — encoded structures of
   :func:`~nondiff.hybrid.structure.structure_space` (any optimizer of :mod:`nondiff.optim` that
   handles its leaf kinds, by registry name or instance);
2. each candidate is evaluated on the batch with the shared weights, without
   gradients — in one forward pass of the repeated batch when every declaration
   allows it (:func:`~nondiff.hybrid.structure.batched_structures`), else one pass each;
   its fitness is ``fitness(model(x), y)`` (default: the loss);
3. ``structure_optimizer.tell(candidates, fitness)``;
4. the weights take one step of ``loss(model(x), y)`` by plain backprop and
   ``weight_optimizer`` (or by a :class:`~nondiff.hybrid.decoupled.Decoupled` engine's
   ``train_step``) under the structures of ``weight_step``:

   - ``"fair"`` (default): the batch is split among paths — a share ``s_t`` of its rows
     among fair paths (:func:`~nondiff.hybrid.sampling.fair_structures`: every option
     of every ``Choice`` and both states of every gate trained equally often in the
     step, FairNAS; each gate open in every fair path at first, in ``fair_open`` of
     them by the end of ``fair_steps``: ``fair_open_start``), the rest among this
     generation's candidates (the optimizer's current distribution or population) — in
     one forward pass and one update; ``s_t`` falls linearly from 1 to 0 over
     ``fair_steps`` (counted over all ``fit`` calls: see ``total_steps``);
   - ``"population"``: the whole batch among this generation's candidates;
   - before issue 17, one structure: a candidate drawn at random from this generation
     (``"sampled"``, the ENAS shared-weight step), the generation's best (``"best"``)
     or the optimizer's recommendation (``"recommended"``).

Why fair by default (:mod:`nondiff.hybrid.sampling` has the literature): weights trained
under the structure the search currently prefers make it look better still, and a
search that converges fast (a GA, CMA-ES) locks in an early pick — in issue 17 the
identity activation, at chance accuracy. Fair paths give every structure the same
training while the ranking forms (Bender et al. 2018; Guo et al. 2020; Chu et al.
2021); the falling share then hands the weights to the structures the search has come
to prefer, so they end specialised to the one it returns (SPOS instead retrains the
found structure from scratch: :meth:`retrain`, :mod:`nondiff.hybrid.retrain`). FairNAS
trains its ``k`` paths on ``k`` copies of the batch; here they share the batch, so a
step costs the same examples as a single-path one. Uniform warm-up alone
(``warmup_steps`` with ``"sampled"``) did not prevent the lock-in: once the search
starts, weights trained under its converging population favour it again.

Elitist optimizers (the GA, the (1+lambda) EA: ``reevaluates_incumbent``) keep the
fitness their parent had when scored, on one batch under older weights; a lucky score
holds off every better child (the (1+1) EA kept an identity activation so in issue 17).
With ``reevaluate_incumbent`` (default) their recommendation is scored again with every
generation, on the same batch under the current weights, and told as
``tell(..., incumbent=, incumbent_fitness=)`` (:mod:`nondiff.optim.ga`): one candidate
more per generation. ``forward_examples`` counts the compute: examples x forward passes
of evaluations, re-evaluations and weight steps.

Search compute (``search_compute``, default 1.0): the evaluations are bounded by ``c``
evaluation examples per weight-step example: each step earns ``c`` times its rows, and a
generation runs when the earned credit covers its cost (``popsize`` candidates, plus a
re-evaluated incumbent, times the evaluation batch's rows) — about every
``ceil(popsize / c)`` steps. In between, the weights train as ``weight_step`` says under
the last generation (``"fair"``: fair paths and that generation; before the first one,
under fair or uniformly random paths as in warm-up). ``c=1`` keeps the total at most
twice the weight training alone (issue 17's target); steps without a generation report
``fitness_best`` NaN and ``searched`` 0, and a ``fit`` that ends before the first
generation warns. ``search_compute=None`` is the unbounded search of before (every
step scores a whole generation on the batch, so a step costs ``1 + popsize`` batches of
forward examples: 3-13x the weight training on the acceptance suite,
:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`); it can still find more with an
optimizer that needs many generations (REINFORCE on 12 gates: 5 of 5 seeds unbounded, 2
of 5 bounded), at that compute.

Fitness from the weight steps (``search_compute="shared"``, with ``weight_step`` ``"fair"``
or ``"population"``): the multi-path weight step already runs each member of the
generation on its share of the batch; its loss there, before the update, is the
member's fitness sample, accumulated over the steps of the generation until every
member has ``generation_rows`` rows (default: a batch), then told
(:mod:`nondiff.hybrid.shared_fitness`; the step is :mod:`nondiff.hybrid.shared_step`).
Each step also scores ``n // k`` common rows under all ``k`` members (paired
comparisons; rows scored by one member only rank the members by the rows they drew).
Search compute: at most one forward pass of the batch beyond the weight step (<= 2x the
weight training; 1x with ``paired_rows=False``).
A generation then spans several weight steps, the steps between asks report
``fitness_best`` NaN and ``searched`` 0, and ``held_out`` batches are refused (the
structures are scored on their training rows). A ``state_dict`` taken inside a
generation holds the structure optimizer as before its ask, and a loaded trainer asks
again (the same candidates), so a resume mid-generation is exact.

The final phase (``final_steps``; by default the last 30 % of the steps when the search is
bounded, none with ``search_compute=None``): the last steps of ``fit`` take no generation
and train the recommended structure alone (a float ``final_steps`` is the last fraction
of the whole training, counted over all ``fit`` calls as a float ``fair_steps``), so the
shared weights end specialised to the structure ``fit`` returns even where the
population has not converged (SPOS retrains the found structure from scratch instead,
Guo et al. 2020; here the weights are inherited and the steps come out of the same
budget). On the acceptance suite (5 seeds) ``final_steps=0.1`` with
``search_compute=1.0`` took the (task, optimizer) rows within 2 points of the structure
trained alone from 11 to 20 of 37 (GA on the nonlinearity task: 7.8 -> 0.5). The default
is 0.3 since the program task's model shares one head among 216 programs and that head,
trained alone, needs most of the steps to sharpen: on the 7 tasks x 13 optimizers of the
suite, rows meeting all three targets 62 (0.1), 61 (0.2), 65 (0.3); program rows 0, 1,
4 (REINFORCE's gap 4.1 -> 2.0 -> 1.3 points), the five first tasks 62, 60, 61.

The final selection (``select_batches``, default 4): the recommendation comes from one
noisy generation (the best of the last GA population, the mean of a CMA-ES still
moving), so the first ``select_batches`` final steps race a pool — the
recommendation, the structures the last generations asked most often, the winners of
earlier generations and the recommendation's neighbours — on the same rows under the
same weights, by successive halving and in stages of two batches that descend from each
stage's winner to its neighbours (a local search on the trained weights), and the final
phase trains and ``fit`` returns the last winner (:mod:`nondiff.hybrid.selection`;
:attr:`HybridTrainer.selected`). Its evaluations are
paid by what the final steps earn under ``search_compute`` (plus the credit left), so
the bound holds; without two candidates it paid for, the recommendation stands. Then the
finalists' race (:mod:`nondiff.hybrid.finalists`): the selected structure and the best
others of the selection's first batch, up to ``HybridTrainer.race_finalists`` (8; 0 turns
it off), each train on their own copy of the weights for the next steps, and the better
half goes on every ``race_stage_steps`` (4) steps until one is left — shared weights
co-adapted to one structure rank a better one a move away below it until it has
trained a little (program task: rows meeting all three targets 4 -> 11). Half way
through the final phase (or when the race ends, if later), the late selection races the
selected structure's neighbours once more, under the weights trained for it since
(:mod:`nondiff.hybrid.final_phase`; ``HybridTrainer.late_select = None`` turns it off):
a noise input left open or a relevant one left closed shows there, where the shared
weights hid it.

Defaults (issue 17): a user who passes nothing gets ``search_compute=1.0``,
``final_steps=0.3`` (0.1 until the measurements above) and ``select_batches=4``: at most
twice the forward examples of training one structure. On the acceptance suite (5 seeds,
37 (task, optimizer) rows; :mod:`nondiff.benchmarks.hybrid_tasks.acceptance`) the rows
meeting recovered (>= 4 of 5 seeds) / gap (<= 2 points to the known structure trained
alone) / compute (<= 2x) / all three: 27 / 28 / 37 / 25 (with the GA's plain bit
mutation, :mod:`nondiff.optim.ga`); ``search_compute=1.0, final_steps=0.1`` before the
selection and that GA change 20 / 20 / 37 / 16; the unbounded search (a generation every
step, 3-13x) 29 / 19 / 0 / 0 (28 / 18 / 0 / 0 before the GA change). The old behaviour:
``search_compute=None`` (``final_steps`` then defaults to 0, so no selection either); it
still suits an optimizer that needs many generations at any compute (REINFORCE on the 12
gates of relevant-inputs: 5 of 5 seeds unbounded at 12x, 2 of 5 bounded).

Structure costs (``structure_cost``): each candidate's fitness becomes
``fitness + w_t * cost(structure)`` — e.g. the number of open gates, the parameter
count or FLOPs of the chosen ops — with a weight ``w_t`` that is 0 until
``cost_start`` and then ramps linearly to ``cost_weight`` over ``cost_ramp_steps`` (or any
schedule ``step -> weight``, e.g. an optax schedule). By default the cost is off for the
first 30 % of the training, and after that until a generation's best fitness lies 10 %
below its median (the weights tell structures apart: ``COST_SIGNAL``; at the latest at 60
%, except on a model with ``Gates`` scored by its loss (and a final phase), where without
the signal the cost stays off and the final phase's gate parsimony weighs the gates
instead: ``cost_withheld``), and then ramps in over 40 % of the training or by the final
phase's start (the last 30 %: a cost that waits until 60 % then ramps over 10 %;
``DEFAULT_COST_START``); a given ``warmup_steps`` starts it there instead, at full weight
unless ``cost_ramp_steps`` says otherwise. A cost at full weight from the first step
closes every gate before the weights behind them learn anything: under untrained weights
no gate is worth its cost, and a closed gate's weights get no gradient, so it never
becomes worth it. :meth:`HybridTrainer.pareto` gives the non-dominated (fitness, cost)
candidates of the last generation.

``fit`` ends with the model set to the recommended structure, and warns when under it
the model gives every row of a batch the same output
(:mod:`nondiff.hybrid.ignored_input`: a structure cost that closed every input gate).
``state_dict`` holds the weights, both optimizers, counters and random states; a trainer
loaded from it and fit to the same total epochs ends exactly where an uninterrupted one
does.

Few-shot weights (``split_choice``, :mod:`nondiff.hybrid.few_shot`): while the search
runs, each option of one parameter-free ``Choice`` (by default the model's only one, such
as an activation choice that includes ``nn.Identity()``) trains and is scored on its own
copy of the weights, so a linear path and a ReLU path do not pull one set of weights
apart; the final phase keeps the selected option's copy.

The class is written in five files, one concern each: this one (the step, the weight
paths, the loop), :mod:`nondiff.hybrid.structure_costs` (the cost schedule and the
Pareto view), :mod:`nondiff.hybrid.final_phase` (the final selection and steps),
:mod:`nondiff.hybrid.few_shot` (the per-option copies) and
:mod:`nondiff.hybrid.trainer_state` (checkpoints); the last four are mixins it inherits.

Source: H. Pham et al., "Efficient neural architecture search via parameter sharing",
ICML 2018.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.structure import Choice
    >>> from nondiff.hybrid.trainer import HybridTrainer
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(2, 16), Choice(nn.Tanh(), nn.Identity()),
    ...                       nn.Linear(16, 1))
    >>> x = torch.randn(256, 2)
    >>> y = x.prod(dim=1, keepdim=True)  # needs the nonlinearity
    >>> trainer = HybridTrainer(model, "reinforce", lambda p: torch.optim.Adam(p, lr=0.03),
    ...                         loss=nn.functional.mse_loss, seed=0,
    ...                         structure_options={"popsize": 4, "lr": 0.3})
    >>> _ = trainer.fit([(x, y)], epochs=60)
    >>> trainer.structure()
    {'1': 0}
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from nondiff.optim.base import BaseOptimizer
from nondiff.optim.spaces import leaf_kinds
from torch import nn

from .batches import RowBatches, as_batches
from .blocks import block, repeat
from .blocks import rows as _rows
from .candidate_norms import (
    candidate_statistics,
    has_batch_norm,
    norm_buffers,
    restore_norm_buffers,
)
from .devices import device_of, to_device
from .few_shot import FewShotSplit
from .few_shot import split_choice as split_choice_of
from .final_phase import FinalPhase
from .ignored_input import ignored_input_message, ignores_input
from .named_optimizer import named_structure_optimizer
from .nonfinite import NonFiniteError, check_finite, check_policy
from .retrain import Retraining, initial_groups, initial_weights
from .sampling import FAIR_OPEN, FAIR_OPEN_START, fair_structures, merge_small, split_rows
from .sampling import fair_paths as fair_path_count
from .schedules import fair_share_at, final_at, open_share_at, plan_warning
from .selection import SELECT_BATCHES
from .shared_fitness import SharedGeneration
from .shared_step import fitness_of, shared_step
from .structure import (
    StructureBatchError,
    batched_structures,
    named_structures,
    set_structure,
    structure_space,
)
from .structure_costs import (
    COST_LATEST,
    COST_SIGNAL,
    DEFAULT_COST_RAMP,
    DEFAULT_COST_START,
    StructureCosts,
    pareto_front,
)
from .trainer_state import TrainerState

__all__ = ["COST_LATEST", "COST_SIGNAL", "DEFAULT_COST_RAMP", "DEFAULT_COST_START",
           "DEFAULT_FINAL_STEPS", "DEFAULT_SEARCH_COMPUTE", "WEIGHT_STEPS", "HybridTrainer",
           "pareto_front"]

WEIGHT_STEPS = ("fair", "population", "sampled", "best", "recommended")
"""The structures the weights train under (see the module docstring); the first two train
several paths per step, the last three one structure (the behaviour before issue 17)."""
DEFAULT_SEARCH_COMPUTE = 1.0
"""The default ``search_compute``: evaluations at most the weight training's forward
examples, so a search costs at most twice training one structure (issue 17)."""
DEFAULT_FINAL_STEPS = 0.3
"""The default ``final_steps`` of a bounded search (``search_compute`` not None): the last
30 % of the steps train the recommended structure alone. Measured against 0.4 (13
optimizers x seeds 0-4; rows meeting all three targets of issue 17, seeds recovered):
routing 0 -> 0 rows, 53 -> 39 seeds (fewer generations find its product pair less
often); on two tasks outside the suite, a wider one (2 of 32 inputs, batches of 32) 9 ->
10 rows and a shorter one (16 steps per epoch) 8 -> 10 rows. Kept at 0.3."""
Loss = Callable[[Any, Any], torch.Tensor]
Callback = Callable[[dict[str, float], "HybridTrainer"], Any]
Cost = Callable[[dict[str, Any]], Any]



def _host_scores(values: list[Any]) -> np.ndarray:
    """Fitness values (numbers or one-element tensors) as a float64 array: tensors in
    one transfer to the host (one sync on a GPU)."""
    if values and all(isinstance(v, torch.Tensor) and v.numel() == 1 for v in values):
        return torch.stack([v.reshape(()) for v in values]).double().cpu().numpy()
    return np.array([float(v) for v in values], dtype=np.float64)


class HybridTrainer(StructureCosts, FinalPhase, FewShotSplit, Retraining, TrainerState):
    """Train a model's declared structure by search and its weights by gradient.

    Args:
        model: an ``nn.Module`` with declarations of :mod:`nondiff.hybrid.structure`.
        structure_optimizer: a registry name (see ``nondiff.optim.registry.names_supporting``)
            or an optimizer built on ``structure_space(model)``.
        weight_optimizer: a ``torch.optim`` optimizer, or a factory
            ``params -> optimizer`` (default Adam, lr 1e-3). None with a Decoupled engine.
            Everything runs on the device of the model's parameters (move the model,
            ``model.to("cuda")``, before the first step); batches are moved there.
        engine: ``"backprop"`` or a :class:`~nondiff.hybrid.decoupled.Decoupled` whose
            ``train_step(x, y)`` takes the weight step (it owns its optimizers).
        loss: ``loss(output, y)`` → scalar tensor (default cross-entropy).
        fitness: ``fitness(output, y)`` → scalar the structure optimizer minimizes
            (default: ``loss``), e.g. an error rate.
        weight_step: one of :data:`WEIGHT_STEPS` (default ``"fair"``; ``"sampled"`` is the
            behaviour before issue 17).
        fair_steps: with ``weight_step="fair"``, the steps over which the fair share of
            each batch falls from 1 to 0: an int (steps), or a float in ``[0, 1]``: that
            fraction of the whole training (default 0.5; 0.3 measured worse: two-pairs
            11 -> 7 rows of 13, routing 53 -> 50 seeds of 65), ``total_steps`` or else the
            steps the first :meth:`fit` plans (its ``epochs`` times the batches per
            epoch, kept for later calls and in :meth:`state_dict`). Steps taken without
            ``fit``, or with data of unknown length, train half fair, half population
            with a fraction and no ``total_steps``.
        total_steps: the weight steps of the whole training, all :meth:`fit` calls
            together, that a float ``fair_steps`` or ``final_steps`` is a fraction of;
            give it when ``fit`` is called in parts, e.g. ``epochs x batches per epoch``
            for ``for e in range(1, epochs + 1): trainer.fit(data, e)`` (without it, the
            first call's plan of one epoch would end the fair share within half an epoch
            and start the final phase at the end of that epoch; a later call planning
            beyond the first warns).
        fair_paths: paths per fair step (default: :func:`~nondiff.hybrid.sampling.
            fair_paths` of the space, e.g. 6 for gates and a 3-way choice).
        fair_open: the share of the fair paths that open each gate, in ``[0, 1]``
            (default 0.5: both states equally). Higher trains inputs that matter only
            together (a product of two gated inputs) in more paths, so a structure cost
            is less likely to close them before the weights have learned them, at the
            price of noise inputs open more often while the weights train (measured:
            :data:`~nondiff.hybrid.sampling.FAIR_OPEN`).
        fair_open_start: the share of the fair paths that open each gate at the first
            step, in ``[0, 1]`` (default 1: every gate open); it falls linearly to
            ``fair_open`` over ``fair_steps`` (Bender et al. 2018's ramp of the path
            dropout; measured: :data:`~nondiff.hybrid.sampling.FAIR_OPEN_START`).
            ``fair_open_start=fair_open`` keeps the share fixed.
        split_choice: few-shot weights (:mod:`~nondiff.hybrid.few_shot`, Zhao et al.
            2021): while the search runs, each option of this ``Choice`` (its module
            path, e.g. ``"act"``) trains and is scored on a copy of the weights of its
            own, until the final phase selects one. ``"auto"`` (default): the model's only
            ``Choice`` whose options hold no weights (an activation choice), with 2-4
            options, when the copies and an optimizer state twice their size fit in 1 GiB;
            else none. None: one set of weights. Not with a Decoupled engine or
            ``search_compute="shared"`` (``"auto"`` is then off; a path is refused).
            Each search step takes one optimizer step per option it trains.
            Weights shared by an identity and a ReLU learn neither (issue 17's 24-input
            case: the known structure's loss 0.56-0.59 shared, 0.37-0.39 with copies).
        reevaluate_incumbent: with an elitist structure optimizer that accepts it
            (``reevaluates_incumbent``: the GA and the (1+lambda) EA), evaluate its
            recommendation with every generation, on the same batch under the current
            weights, and tell it the fresh value: a parent scored once on a lucky batch,
            or under weights since trained on, otherwise holds off every better child
            (in issue 17 the (1+1) EA kept an identity activation so). One more
            candidate per generation.
        structure_options: keyword options of the optimizer's constructor (by name). A
            GA built by name gets ``shift=False`` unless given, and no default
            population is larger than ``max(20, 4 + 3 ln d)`` (the cross-entropy
            method's is ``10 d``, which left a bounded search 4 generations):
            :mod:`nondiff.hybrid.named_optimizer`.
        batched: evaluate all candidates in one forward pass when the declarations
            allow it (``"auto"`` tries and falls back), or never (False).
        callbacks: ``cb(metrics, trainer)`` after every step; True stops ``fit``.
        progress: show a progress bar (default: when stderr is a terminal).
        seed: seeds the structure optimizer (by name) and the trainer's own sampling.
        warmup_steps: first steps train the shared weights under uniformly random
            structures (fair paths, with ``"fair"`` or ``"population"``), without
            asking the optimizer (one-shot warm-up, Guo et al. 2020: rankings under
            barely trained shared weights favour whatever trains fastest).
        on_nonfinite: a NaN or infinite training loss: ``"raise"`` a
            :class:`~nondiff.hybrid.nonfinite.NonFiniteError` naming the step, epoch,
            block (with an engine) and structure before the weights change (default);
            ``"skip"`` the weight step, reported as ``metrics["skipped"]`` and counted in
            :attr:`skipped_steps`; ``"off"``: no check. With a Decoupled engine this sets
            the engine's ``on_nonfinite``. Candidates' non-finite fitness values are the
            structure optimizer's to handle (worst rank). See :mod:`nondiff.hybrid.nonfinite`.
        search_compute: the evaluation forward examples allowed per weight-step
            example (a number > 0; the default 1.0 keeps ``forward_examples`` at most
            twice those of the weight steps alone), or None: a generation every step
            (unbounded, the default before issue 17). With a number, a
            generation then runs only when the steps have earned its cost (see the
            module docstring); the credit and the last generation are in
            :meth:`state_dict`, so a resume mid-cycle is exact. Or ``"shared"``: the
            fitness from the weight steps' own forward passes plus common rows (at most
            twice the weight training; see the module docstring).
        generation_rows: with ``search_compute="shared"``, the rows (own and common)
            each member of a generation is scored on before the optimizer is told
            (default: the rows of the batch that opened the generation).
        final_steps: the last steps of :meth:`fit` train the recommended structure
            alone, without asking the structure optimizer: an int (the last steps of
            each ``fit`` call) or a float in ``[0, 1)``: that fraction of the whole
            training, ending it — of ``total_steps``, or else of the steps the first
            :meth:`fit` plans, as a float ``fair_steps`` (every step from the final
            phase's start on is final, also those of a later ``fit`` planning beyond it:
            it warns); default None: :data:`DEFAULT_FINAL_STEPS` (0.3) when the search is
            bounded (``search_compute`` not None), else 0: none. Weights shared by
            a population that has not converged (a sep-CMA-ES still opening noise gates
            now and then) fit no one structure well; the final steps specialise them to
            the one returned, at no extra compute (see the module docstring).
        select_batches: the first final steps that race the final selection's pool
            (see the module docstring), an int >= 0; 0: none, the final phase trains
            the optimizer's recommendation. Default 4 (two stages of two batches). The
            late selection (``HybridTrainer.late_select``: half way through the final
            phase, or when the finalists' race ends if later; None turns it off) races
            the selected structure's neighbours on as many batches, where that many
            steps are left (:mod:`nondiff.hybrid.final_phase`).
        structure_cost: ``cost(structure) -> number`` (a float or one-element tensor) of
            a decoded structure, e.g. ``lambda s: s["gates"].sum()``; the structure
            optimizer minimizes ``fitness + weight * cost``. A NaN, infinite or
            non-number cost raises a ValueError naming the structure, before the
            structure optimizer is told.
        cost_weight: the weight the ramp reaches (>= 0).
        cost_start: the step the cost comes on at (an int), or a float in [0, 1]: that
            fraction of the whole training (``total_steps``, else the first fit's
            plan). Default: ``warmup_steps`` when ``warmup_steps`` or
            ``cost_ramp_steps`` is given, else ``DEFAULT_COST_START`` (0.3) of the
            training — off while the weights learn what each part is worth — or later:
            the default waits for the first generation whose best fitness is
            :data:`COST_SIGNAL` below its median, at most until :data:`COST_LATEST` (0.6)
            of the training (the step is ``cost_signal_at``, checkpointed); on a model
            with ``Gates`` scored by its loss, however late (the class attribute
            ``cost_withheld``). Never
            before ``warmup_steps``; a fraction without a plan (steps taken without
            ``fit`` and no ``total_steps``) starts at ``warmup_steps``.
        cost_ramp_steps: steps (an int) or a fraction of the training (a float in
            [0, 1]) over which the weight then rises linearly from 0 to
            ``cost_weight`` (0: full weight at once). Default: 0 when ``warmup_steps``
            is given, else ``DEFAULT_COST_RAMP`` (0.4) of the training. The weight at
            step ``t`` (steps taken so far) is
            ``cost_weight * clip((t - start) / ramp, 0, 1)``.
        cost_schedule: instead of the ramp, ``schedule(t) -> weight`` (an optax-style
            schedule of the step count); leave ``cost_weight``, ``cost_start`` and
            ``cost_ramp_steps`` at their defaults then.

    With a ``structure_cost`` the step metrics hold ``cost_weight`` and ``cost_mean``
    (the generation's mean cost; NaN in warm-up), and ``fitness_best``/``fitness_mean``
    stay the fitness without the cost.
    """

    paired_rows: bool = True
    """With ``search_compute="shared"``: also score ``n // k`` common rows of each batch
    under all ``k`` members of the generation (at most one more forward pass of the
    batch: paired comparisons); False: the members' own rows only (no forward pass
    beyond the weight step)."""

    def __init__(
        self, model: nn.Module, structure_optimizer: str | BaseOptimizer = "reinforce",
        weight_optimizer: torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] | None
        = None, engine: str | nn.Module = "backprop", loss: Loss | None = None, *,
        fitness: Loss | None = None, weight_step: str = "fair",
        structure_options: Mapping[str, Any] | None = None, batched: bool | str = "auto",
        callbacks: Iterable[Callback] = (), progress: bool | None = None, seed: int = 0,
        warmup_steps: int = 0, on_nonfinite: str = "raise", structure_cost: Cost | None = None,
        cost_weight: float = 1.0, cost_ramp_steps: int | float | None = None,
        cost_schedule: Callable[[int], Any] | None = None, fair_steps: int | float = 0.5,
        fair_paths: int | None = None, reevaluate_incumbent: bool = True,
        search_compute: float | str | None = DEFAULT_SEARCH_COMPUTE,
        generation_rows: int | None = None, final_steps: int | float | None = None,
        total_steps: int | None = None, select_batches: int = SELECT_BATCHES,
        cost_start: int | float | None = None, fair_open: float = FAIR_OPEN,
        fair_open_start: float = FAIR_OPEN_START, split_choice: str | None = "auto",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        self._check_cost_arguments(structure_cost, cost_weight, cost_ramp_steps, cost_schedule,
                                   cost_start)
        self.structure_cost, self.cost_schedule = structure_cost, cost_schedule
        self.cost_weight, self.cost_ramp_steps = float(cost_weight), cost_ramp_steps
        self.cost_start = cost_start
        self._warned_cost = False  # a fractional cost schedule without a plan, warned once
        self.last_generation: dict[str, list[Any]] = {"fitness": [], "cost": [], "encoded": []}
        self.model, self.space = model, structure_space(model)
        if weight_step not in WEIGHT_STEPS:
            raise ValueError(f"weight_step must be one of {WEIGHT_STEPS}, got {weight_step!r}")
        self.fair_steps, self.fair_paths = self._check_fair(fair_steps, fair_paths)
        for name, share, what, example in (
                ("fair_open", fair_open, "each gate", "0.5, or 0.75 for inputs that matter "
                                                       "only together"),
                ("fair_open_start", fair_open_start, "each gate at the first step",
                 "1.0 (every gate open), or fair_open for no ramp")):
            if isinstance(share, bool) or not isinstance(share, (int, float)) or \
                    not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1] (the share of the fair "
                                 f"paths that open {what}), got {share!r}; e.g. {example}")
        self.fair_open, self.fair_open_start = float(fair_open), float(fair_open_start)
        if not isinstance(reevaluate_incumbent, bool):
            raise ValueError(f"reevaluate_incumbent must be True or False, got "
                             f"{reevaluate_incumbent!r}")
        self.reevaluate_incumbent = reevaluate_incumbent
        self._check_search_compute(search_compute, generation_rows, weight_step, engine)
        self.search_compute = search_compute if search_compute in (None, "shared") \
            else float(search_compute)
        self.generation_rows = generation_rows
        if final_steps is None:  # default: a final phase exactly when the search is bounded
            final_steps = 0 if self.search_compute is None else DEFAULT_FINAL_STEPS
        if isinstance(final_steps, bool) or not isinstance(final_steps, (int, float)) or \
                not math.isfinite(final_steps) or final_steps < 0 or (
                    isinstance(final_steps, float) and final_steps >= 1):
            raise ValueError(f"final_steps must be None (the default), an int >= 0 (steps) "
                             f"or a float in [0, 1) (a fraction of fit's steps), got "
                             f"{final_steps!r}; e.g. 0.1")
        self.final_steps = final_steps
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(
                total_steps, int) or total_steps < 1 or not (
                    isinstance(fair_steps, float) or isinstance(final_steps, float)
                    or self._cost_fraction(warmup_steps))):
            raise ValueError(f"total_steps must be None or a positive integer (the weight "
                             f"steps of all fit calls) with a float fair_steps, final_steps "
                             f"or cost schedule (a fraction of them), got total_steps="
                             f"{total_steps!r} with final_steps={final_steps!r} and "
                             f"fair_steps={fair_steps!r}; e.g. fair_steps=0.5, "
                             f"total_steps=epochs * batches_per_epoch")
        self.total_steps = total_steps
        if isinstance(select_batches, bool) or not isinstance(select_batches, int) or \
                select_batches < 0:
            raise ValueError(f"select_batches must be an int >= 0 (batches the final phase "
                             f"races its pool on; 0: no selection), got "
                             f"{select_batches!r}; e.g. 4")
        self.select_batches = select_batches
        self.recent: list[list[list[float]]] = []  # the last generations' candidates
        self.recent_objectives: list[list[float]] = []  # and their objectives
        self.winners: list[list[Any]] = []  # the best of each generation: [row, wins, last]
        self.cost_signal_at: int | None = None  # first generation with COST_SIGNAL's spread
        self.epoch_rows: list[int] = []  # rows of each batch of the last whole epoch of fit
        self._rows_now: list[int] = []  # and of the epoch under way
        self.selection: dict[str, Any] | None = None  # the final selection under way
        self.race: dict[str, Any] | None = None  # the finalists' race (hybrid.finalists)
        self.selected: list[float] | None = None  # its pick (encoded): recommended()
        self.planned_steps: int | None = None  # fit's epochs x batches per epoch
        self.fair_plan: int | None = None  # the first fit's: what a fraction is of
        self._warned_plan = False  # a later fit planned beyond the first (warned once)
        self.shared = SharedGeneration()  # search_compute="shared": the open generation
        self._scored: list[int] = []  # paths whose fitness the weight step reads
        self._step_fitness: torch.Tensor | None = None
        self.search_credit = 0.0  # evaluation examples earned and not yet spent
        self.late_credit = 0.0  # and set aside for the late selection
        self.gate_noise: list[list[float]] = []  # [entry, penalty]: FinalPhase.gate_parsimony
        self._generation_cost: int | None = None  # of the next generation, its rows
        self._eval_rows = 1
        self.between: dict[str, list] = {"encoded": [], "objective": []}  # last generation
        if batched not in (True, False, "auto"):
            raise ValueError(f"batched must be True, False or 'auto', got {batched!r}")
        if isinstance(structure_optimizer, BaseOptimizer):
            if structure_options:
                raise ValueError("structure_options apply to an optimizer given by name; "
                                 "configure the instance when constructing it")
            if structure_optimizer.space is None or \
                    structure_optimizer.space.size != self.space.size:
                raise ValueError(f"the structure optimizer must search structure_space(model) "
                                 f"= {self.space!r}; build it on that space")
            self.structure_optimizer = structure_optimizer
        else:
            options = dict(structure_options or {})
            sigma0 = options.pop("sigma0", None)
            self.structure_optimizer = named_structure_optimizer(
                structure_optimizer, self.space, sigma0, seed=seed, options=options)
        if engine == "backprop":
            self.engine = None
            if weight_optimizer is None:
                weight_optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            elif not isinstance(weight_optimizer, torch.optim.Optimizer):
                if not callable(weight_optimizer):
                    raise ValueError(f"weight_optimizer must be a torch.optim optimizer or a "
                                     f"factory of one, got {weight_optimizer!r}")
                weight_optimizer = weight_optimizer(model.parameters())
        elif hasattr(engine, "train_step") and isinstance(engine, nn.Module):
            if weight_optimizer is not None:
                raise ValueError("a Decoupled engine owns its optimizers; pass "
                                 "weight_optimizer=None (set the engine's optimizer= instead)")
            self.engine = engine
        else:
            raise ValueError(f"engine must be 'backprop' or a hybrid.Decoupled, got {engine!r}")
        self.weight_optimizer = weight_optimizer
        # what retrain starts from: the weights and optimizer settings as given (an
        # engine owns its optimizers, and retrain refuses it)
        self.initial_model = initial_weights(model) if self.engine is None else None
        self.initial_optimizer = initial_groups(weight_optimizer)
        self.split_on = split_choice_of(model, split_choice)  # few-shot weights (few_shot)
        if self.split_on is not None and split_choice != "auto" and (
                self.engine is not None or self.search_compute == "shared"):
            mode = "a Decoupled engine" if self.engine is not None else \
                "search_compute='shared'"
            raise ValueError(f"split_choice={split_choice!r} gives each option of a Choice a "
                             f"copy of the weights, which {mode} does not support; pass "
                             f"split_choice=None or 'auto'")
        self.split: dict[str, Any] | None = None
        self.loss = loss if loss is not None else nn.functional.cross_entropy
        if self.engine is not None:
            if loss is None:
                self.loss = self.engine.loss  # one loss for evaluation and weight steps
            else:
                self.engine.loss = loss
        self.fitness = fitness if fitness is not None else self.loss
        self.on_nonfinite = check_policy(on_nonfinite)
        if self.engine is not None:
            self.engine.on_nonfinite = on_nonfinite
        self.skipped_steps = 0  # weight steps left out for a non-finite loss
        self.weight_step, self.batched = weight_step, batched
        self.batched_steps = bool(batched)  # multi-path weight steps in one pass (see there)
        self.callbacks, self.progress = list(callbacks), progress
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) \
                or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
        self.warmup_steps = warmup_steps
        self.seed = int(seed)
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self.step_count, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.forward_examples = 0  # compute: examples x forward passes (evaluations + steps)
        self.weight_examples = 0  # the weight steps' examples alone
        self.history: list[dict[str, float]] = []

    @staticmethod
    def _check_search_compute(compute: Any, rows: Any, weight_step: str, engine: Any) -> None:
        if compute == "shared":
            if weight_step not in ("fair", "population"):
                raise ValueError(f"search_compute='shared' scores the candidates on their "
                                 f"rows of a multi-path weight step; weight_step="
                                 f"{weight_step!r} trains one structure: pass weight_step="
                                 "'fair' or 'population'")
            if not (isinstance(engine, str) and engine == "backprop"):
                raise ValueError("search_compute='shared' reads each path's loss from the "
                                 "backprop weight step; a Decoupled engine trains one "
                                 "structure per step: pass search_compute=None or a number")
        elif compute is not None and (
                isinstance(compute, bool) or not isinstance(compute, (int, float))
                or not math.isfinite(compute) or compute <= 0):
            raise ValueError(f"search_compute must be None (a generation every step), a "
                             f"finite number > 0 (evaluation examples per weight-step "
                             f"example) or 'shared' (fitness from the weight steps), got "
                             f"{compute!r}; e.g. 1.0")
        if rows is not None and (compute != "shared" or isinstance(rows, bool)
                                 or not isinstance(rows, int) or rows < 1):
            raise ValueError(f"generation_rows must be None or a positive integer with "
                             f"search_compute='shared' (the rows each candidate is scored "
                             f"on), got {rows!r} with search_compute={compute!r}")

    def _check_fair(self, steps: Any, paths: Any) -> tuple[int | float, int]:
        if isinstance(steps, bool) or not isinstance(steps, (int, float)) or \
                not math.isfinite(steps) or steps < 0 or (isinstance(steps, float) and steps > 1):
            raise ValueError(f"fair_steps must be an int >= 0 (steps) or a float in [0, 1] "
                             f"(a fraction of fit's steps), got {steps!r}")
        if paths is None:
            return steps, fair_path_count(self.space)
        if isinstance(paths, bool) or not isinstance(paths, int) or paths < 1:
            raise ValueError(f"fair_paths must be a positive integer, got {paths!r}; e.g. "
                             "the number of options of the largest Choice")
        return steps, paths

    def final_at(self, step: int) -> bool:
        """Whether step ``step`` is in the final phase (``final_steps``), which trains the
        recommended structure alone: an int's last steps of this :meth:`fit`, a float's
        last fraction of the whole training (``total_steps``, else the first fit's plan).
        Never where that end is not known (steps taken without ``fit``, data of unknown
        length, and no ``total_steps``)."""
        if isinstance(self.final_steps, float):
            return final_at(step, self.final_steps, self._run_plan())
        return final_at(step, self.final_steps, self.planned_steps)

    def _run_plan(self) -> int | None:
        """The steps of the whole training a float ``fair_steps``/``final_steps`` is a
        fraction of: ``total_steps``, else the first fit's plan (None before it)."""
        return self.total_steps if self.total_steps is not None else self.fair_plan

    def fair_share_at(self, step: int) -> float:
        """The share of the batch trained under fair paths at step ``step`` (1 in warm-up;
        0 unless ``weight_step="fair"``)."""
        return fair_share_at(step, warmup_steps=self.warmup_steps, weight_step=self.weight_step,
                             fair_steps=self.fair_steps, plan=self._run_plan())

    def open_share_at(self, step: int) -> float:
        """The share of the fair paths that open each gate at step ``step``: from
        ``fair_open_start`` down to ``fair_open`` over ``fair_steps``."""
        return open_share_at(step, start=self.fair_open_start, end=self.fair_open,
                             fair_steps=self.fair_steps, plan=self._run_plan())

    # ----- one step -------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, values: list[Mapping[str, Any]], x: Any, y: Any) -> np.ndarray:
        """Fitness of each structure in ``values`` on ``(x, y)`` with the shared weights
        (eval mode, no gradients; a batch norm normalises each candidate by its own
        statistics on ``x``: :mod:`~nondiff.hybrid.candidate_norms`; with few-shot
        weights, :mod:`~nondiff.hybrid.few_shot`, each under its option's copy); the
        model keeps its structure."""
        if self._split_active() and values:
            return self._split_evaluate(values, x, y)
        return self._evaluate_shared(values, x, y)

    @torch.no_grad()
    def _evaluate_shared(self, values: list[Mapping[str, Any]], x: Any, y: Any) -> np.ndarray:
        """:meth:`evaluate` under the weights the model holds."""
        x, y = to_device((x, y), device_of(self.model))
        before = self.structure(current=True)
        was_training = self.model.training
        self.model.eval()
        norms = has_batch_norm(self.model)
        try:
            if self.batched and len(values) > 1 and not norms:
                try:
                    return self._evaluate_batched(values, x, y)
                except StructureBatchError:
                    if self.batched is True:
                        raise
                    self.batched = False  # "auto": some declaration needs one pass each
            with candidate_statistics(self.model, _rows(x)):
                scores = []
                for value in values:
                    set_structure(self.model, value)
                    scores.append(self.fitness(self.model(x), y))
            return _host_scores(scores)
        finally:
            set_structure(self.model, before)
            self.model.train(was_training)

    def _evaluate_batched(self, values: list[Mapping[str, Any]], x: Any, y: Any) -> np.ndarray:
        n, k = _rows(x), len(values)
        with batched_structures(self.model, values, n):
            output = self.model(repeat(x, k))
        return _host_scores([self.fitness(block(output, i, n), y) for i in range(k)])

    def step(self, x: Any, y: Any, held_out: tuple[Any, Any] | None = None
             ) -> dict[str, float]:
        """One structure generation and one weight step on the batch (moved to the
        device of the model's parameters); returns metrics. With ``held_out`` a batch
        ``(x, y)`` the weights do not train on, the generation is evaluated there."""
        self._check_final()
        if _rows(x) < 2 and has_batch_norm(self.model):
            raise ValueError(f"x has {_rows(x)} row(s) and the model has a batch norm, which "
                             "needs at least 2 rows to train on; drop the batch (a "
                             "DataLoader's drop_last=True) or choose a batch_size that "
                             "leaves no single row")
        if self.final_at(self.step_count):
            return self._final_step(*to_device((x, y), device_of(self.model)), held_out)
        self.selection, self.selected, self.race = None, None, None  # select anew later
        if (self.split or {}).get("done"):  # few-shot copies anew, from the weights now
            self.split = None
        if self.search_compute == "shared":
            if held_out is not None:
                raise ValueError("held_out batches are for evaluations; search_compute="
                                 "'shared' scores the structures on their training rows "
                                 "instead: pass held_out=None, or search_compute=None or a "
                                 "number")
            return shared_step(self, *to_device((x, y), device_of(self.model)))
        x, y = to_device((x, y), device_of(self.model))
        fx, fy = (x, y) if held_out is None else to_device(tuple(held_out),
                                                           device_of(self.model))
        opt = self.structure_optimizer
        warm = self.step_count < self.warmup_steps
        single = self.weight_step in ("sampled", "best", "recommended")
        searched = not warm and self._search_due(_rows(x), _rows(fx))
        uniform = warm or (not searched and not self.between["encoded"])  # no generation yet
        if uniform:
            values = self.space.decode_batch(self.space.sample(self.rng, 1)) if single else []
            fitness, metrics, objective = np.full(1, np.nan), {}, np.zeros(1)
        elif not searched:  # between generations: the weights train under the last one
            values = self.space.decode_batch(np.asarray(self.between["encoded"]))
            objective = np.asarray(self.between["objective"], dtype=np.float64)
            fitness, metrics = np.full(1, np.nan), {}
        else:
            candidates = opt.ask()
            encoded = candidates.detach().cpu().numpy() \
                if isinstance(candidates, torch.Tensor) else np.asarray(candidates)
            values = self.space.decode_batch(encoded)
            incumbent = self._incumbent()
            scored = values if incumbent is None else [*values, self.space.decode(incumbent)]
            if self.structure_cost is not None:  # checked before anything is evaluated
                weight, costs = self.cost_weight_at(self.step_count), self.costs(scored)
            fitness = self.evaluate(scored, fx, fy)
            objective = fitness if self.structure_cost is None else fitness + weight * costs
            extra = {}
            if incumbent is not None:  # re-evaluated under the current weights, this batch
                extra = {"incumbent": incumbent, "incumbent_fitness": float(objective[-1])}
                fitness, objective = fitness[:-1], objective[:-1]
                costs = costs[:-1] if self.structure_cost is not None else None
            metrics = opt.tell(candidates, objective, **extra)
            self.remember(encoded, objective)
            if self.search_compute is not None:
                self.search_credit -= _rows(fx) * len(scored)
                self.between = {"encoded": encoded.tolist(), "objective": objective.tolist()}
            if self.structure_cost is not None:
                self.last_generation = {"fitness": fitness.tolist(), "cost": costs.tolist(),
                                        "encoded": encoded.tolist()}
        share = self.fair_share_at(self.step_count)
        if single:
            if uniform:
                chosen = values[0]
            elif self.weight_step == "sampled":
                chosen = values[int(self.rng.integers(len(values)))]
            elif self.weight_step == "best":
                chosen = values[int(np.argmin(np.where(np.isfinite(objective), objective,
                                                        np.inf)))]
            else:
                chosen = self.recommended()
            paths, rows = [chosen], [_rows(x)]
        else:
            paths, rows = self._paths(values, share, _rows(x))
        self.model.train()
        try:
            loss, skipped = self._weight_step(x, y, paths, rows)
        except NonFiniteError as error:  # the trainer's step and epoch, and the structure
            error.step, error.epoch = self.step_count, self.epoch
            raise
        self.skipped_steps += skipped
        self.step_count += 1
        self.forward_examples += _rows(x) + (_rows(fx) * len(scored) if searched else 0)
        result = {"step": float(self.step_count), "loss": loss,
                  "fitness_best": float(np.min(fitness)), "fitness_mean": float(np.mean(fitness)),
                  "warmup": float(warm), "skipped": float(skipped)}
        if self.search_compute is not None:
            result["searched"] = float(searched)
        if not single:
            result["fair_share"] = share
        if self.structure_cost is not None:
            result["cost_weight"] = weight if searched else 0.0 if warm else \
                self.cost_weight_at(self.step_count - 1)
            result["cost_mean"] = float(np.mean(costs)) if searched else math.nan
        result.update({f"structure_{k}": v for k, v in metrics.items()})
        return result

    def _search_due(self, rows: int, eval_rows: int) -> bool:
        """Whether this step evaluates a generation. Always without ``search_compute``;
        with it, the step first earns ``search_compute * rows`` evaluation examples, and
        a generation runs when the credit covers its cost: ``eval_rows`` times the
        optimizer's ``popsize`` (plus the re-evaluated incumbent). The generation then
        spends its actual cost, so the evaluations never exceed ``search_compute`` times
        the weight-step examples by more than one generation asking more than
        ``popsize`` candidates."""
        if self.search_compute is None:
            return True
        earned = self.search_compute * rows
        held = self._late_reserve(earned, rows)  # the late selection's (hybrid.final_phase)
        self.late_credit += held
        self.search_credit += earned - held
        size = int(getattr(self.structure_optimizer, "popsize", 1))
        size += self._incumbent() is not None
        self._generation_cost, self._eval_rows = size * eval_rows, eval_rows  # for a warning
        return self.search_credit >= size * eval_rows

    def _incumbent(self) -> np.ndarray | None:
        """The structure optimizer's recommendation (encoded) to re-evaluate with this
        generation: for an elitist that takes a fresh value for it
        (``reevaluates_incumbent``, see :mod:`nondiff.optim.ga`), after its first tell,
        with ``reevaluate_incumbent`` on; else None."""
        opt = self.structure_optimizer
        if not (self.reevaluate_incumbent and getattr(opt, "reevaluates_incumbent", False)
                and opt.counters["iterations"] > 0):
            return None
        rec = opt.recommend()
        return rec.detach().cpu().numpy() if isinstance(rec, torch.Tensor) else np.asarray(rec)

    def _paths(self, generation: list[Mapping[str, Any]], share: float, n: int
               ) -> tuple[list[Mapping[str, Any]], list[int]]:
        """The structures of a multi-path weight step and the rows of each: a share
        ``share`` of the ``n`` rows among fair paths, the rest among ``generation``;
        paths left without a row are dropped."""
        paths, rows, _ = self._owned_paths(generation, share, n)
        if self.engine is not None:  # an engine trains one structure: one path, by rows
            i = int(self.rng.choice(len(paths), p=np.asarray(rows) / n))
            paths, rows = [paths[i]], [n]
        return paths, rows

    def _owned_paths(self, generation: list[Mapping[str, Any]], share: float, n: int
                     ) -> tuple[list[Mapping[str, Any]], list[int], list[int]]:
        """:meth:`_paths` before an engine picks one, with each path's index in
        ``generation`` (-1 for a fair path). A model with a batch norm (and no engine,
        which trains the whole batch) gives no path a single row, which would have no
        batch statistics: its rows go to the largest path (:func:`~nondiff.hybrid.sampling.
        merge_small`), and the members that get the fewest rows take turns from step to
        step, so that each one's rows add up (``search_compute="shared"`` waits for them)."""
        fair = round(share * n) if generation else n
        paths: list[Mapping[str, Any]] = []
        rows: list[int] = []
        owners: list[int] = []
        if fair:
            k = min(self.fair_paths, fair)
            paths += self.space.decode_batch(fair_structures(self.space, k, self.rng,
                                                             self.open_share_at(
                                                                 self.step_count)))
            rows += split_rows(fair, [1.0] * k)
            owners += [-1] * k
        norms = self.engine is None and has_batch_norm(self.model)
        if n - fair:
            paths += list(generation)
            shares = split_rows(n - fair, [1.0] * len(generation))
            if norms:  # the members whose rows merge_small moves take turns, step by step
                turn = self.step_count % len(generation)
                shares = shares[-turn:] + shares[:-turn] if turn else shares
            rows += shares
            owners += list(range(len(generation)))
        if norms:
            rows = merge_small(rows, 2)
        kept = [i for i, r in enumerate(rows) if r > 0]
        return [paths[i] for i in kept], [rows[i] for i in kept], [owners[i] for i in kept]

    def _weight_step(self, x: Any, y: Any, paths: list[Mapping[str, Any]], rows: list[int],
                     scored: list[int] | None = None) -> tuple[float, bool]:
        """:meth:`_shared_weight_step`, or with few-shot weights
        (:mod:`~nondiff.hybrid.few_shot`) one per option on its copy."""
        if self._split_active() and not scored:
            return self._split_weight_step(x, y, paths, rows)
        return self._shared_weight_step(x, y, paths, rows, scored)

    def _shared_weight_step(self, x: Any, y: Any, paths: list[Mapping[str, Any]],
                            rows: list[int], scored: list[int] | None = None
                            ) -> tuple[float, bool]:
        """One weight step, rows ``rows[j]`` of the batch (in order) under ``paths[j]``:
        (loss, skipped). One path: the model is left at it; several: in one batched
        forward pass (else one pass per path, the gradients summed, weighted by rows),
        the model keeps its structure. With ``scored`` (path indices), the ``fitness``
        of those paths on their rows, from the same forward pass before the update, is
        left in ``self._step_fitness`` (a tensor; not synced to the host)."""
        self._scored, self._step_fitness = scored or [], None
        self.weight_examples += int(sum(rows))
        if len(paths) == 1:
            set_structure(self.model, paths[0])
        norms = norm_buffers(self.model) if self.engine is None else []
        try:
            if self.engine is not None:
                before = getattr(self.engine, "skipped_updates", 0)
                loss = float(self.engine.train_step(x, y))
                return loss, getattr(self.engine, "skipped_updates", 0) > before
            self.weight_optimizer.zero_grad()
            if len(paths) == 1:
                output = self.model(x)
                objective = self.loss(output, y)
                objectives = [objective]
                if self._scored:
                    self._step_fitness = fitness_of(self.fitness, output, y, [0], rows,
                                                    device_of(self.model))
            else:
                objective, objectives = self._multi_path_loss(x, y, paths, rows)
            if not check_finite(objective, self.on_nonfinite, "loss", self.step_count):
                self.weight_optimizer.zero_grad()  # what per-path passes accumulated
                restore_norm_buffers(norms)  # nor the statistics of the skipped batch
                return float(objective.detach()), True
            if objective.requires_grad:
                objective.backward()
            self.weight_optimizer.step()
            return float(objective.detach()), False
        except NonFiniteError as error:  # name the (first) path whose loss is not finite
            if self.weight_optimizer is not None:
                self.weight_optimizer.zero_grad()
            restore_norm_buffers(norms)
            error.structure = paths[0] if len(paths) == 1 else \
                self._first_nonfinite(objectives, x, y, paths, rows)
            raise

    def _multi_path_loss(self, x: Any, y: Any, paths: list[Mapping[str, Any]], rows: list[int]
                         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The loss of a multi-path step: of one batched forward pass when the model and
        the loss allow it (a loss that reads the structure, e.g. ``model.program.value``,
        raises there; a batch norm's statistics would mix the paths), else
        the rows-weighted sum of one pass per path, each backpropagated at once (the
        returned total, detached, is then only checked and reported; no host sync per
        path: a non-finite total discards the accumulated gradients)."""
        if self.batched_steps and not has_batch_norm(self.model):
            try:
                with batched_structures(self.model, paths, rows):
                    output = self.model(x)
                    total = self.loss(output, y)
                if self._scored:
                    self._step_fitness = fitness_of(self.fitness, output, y, self._scored, rows,
                                                    device_of(self.model))
                return total, []
            except StructureBatchError:
                if self.batched is True:
                    raise
                self.batched_steps = False  # "auto": from now on one pass per path
        before = self.structure(current=True)
        total, parts, start, n, fits = 0.0, [], 0, _rows(x), []
        try:
            for j, (path, r) in enumerate(zip(paths, rows, strict=True)):
                set_structure(self.model, path)
                output = self.model(x[start:start + r])
                part = self.loss(output, y[start:start + r])
                parts.append(part.detach())
                if j in self._scored:
                    fits.append(fitness_of(self.fitness, output, y[start:start + r], [0], [r],
                                           device_of(self.model)))
                start += r
                if part.requires_grad:
                    (part * (r / n)).backward()  # gradients add up: one path at a time
                total = total + part.detach() * (r / n)
        finally:
            set_structure(self.model, before)
        if fits:
            self._step_fitness = torch.cat(fits)
        return torch.as_tensor(total), parts

    @torch.no_grad()
    def _first_nonfinite(self, parts: list[torch.Tensor], x: Any, y: Any,
                         paths: list[Mapping[str, Any]], rows: list[int]) -> Any:
        """The first path whose rows give a non-finite loss (one pass each, rarely run)."""
        start = 0
        for j, (path, r) in enumerate(zip(paths, rows, strict=True)):
            if j < len(parts):
                bad = not bool(torch.isfinite(parts[j]))
            else:
                before = self.structure(current=True)
                set_structure(self.model, path)
                try:
                    bad = not bool(torch.isfinite(self.loss(self.model(x[start:start + r]),
                                                            y[start:start + r])))
                finally:
                    set_structure(self.model, before)
            if bad:
                return path
            start += r
        return paths

    # ----- the loop -------------------------------------------------------------------
    def fit(self, data: Any, epochs: int, batch_size: int = 64, seed: int = 0,
            held_out: Any = None) -> list[dict[str, float]]:
        """Train until ``epochs`` epochs are done in total (a resumed trainer continues).

        Args:
            data: a :class:`nondiff.problems.learning.Dataset` (its ``batches(batch_size, seed,
                epoch)``), a map-style torch ``Dataset`` of ``(x, y)`` rows such as a
                ``TensorDataset`` (shuffled by ``seed`` and the epoch into batches of
                ``batch_size``: :mod:`nondiff.hybrid.batches`), or a re-iterable of
                ``(x, y)`` batches (e.g. a list or a ``DataLoader``).
            epochs: total number of epochs to reach.
            batch_size, seed: for ``data.batches``.
            held_out: batches the weights never train on, to evaluate the structures on
                (a Dataset, whose training split is used, a torch ``Dataset`` of rows, or a
                list of ``(x, y)``): step
                ``t`` evaluates its generation on batch ``t mod len`` of them, as ENAS
                trains its controller on validation data. On the training batch
                (default) a structure that lets the weights overfit (open gates on noise
                inputs) looks better than it is.

        Returns:
            the metrics of every step taken in this call. The model is left at the
            recommended structure.

        Warns:
            UserWarning: no generation ran in the steps taken; or the structure
                returned makes the model give every row of a batch it trained on the same
                output (:mod:`nondiff.hybrid.ignored_input`: e.g. every input gate
                closed by the structure cost).
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        data, held_out = as_batches(data), as_batches(held_out, "held_out")
        self._check_batch_size(batch_size, data, held_out)
        if held_out is not None and self.search_compute == "shared":
            raise ValueError("held_out batches are for evaluations; search_compute='shared' "
                             "scores the structures on their training rows instead: pass "
                             "held_out=None, or search_compute=None or a number")
        per_epoch = self._batches_per_epoch(data, batch_size)
        if per_epoch == 0 and self.epoch < epochs:
            raise self._no_batches(data, f"fit would count {epochs - self.epoch} epoch(s) "
                                         "without a step")
        self._check_pairs(data)  # checked whole before the plan is pinned
        if held_out is not None:  # checked whole before the plan is pinned
            held_out = list(held_out.batches(batch_size, seed=seed) if hasattr(
                held_out, "batches") else held_out)
            if not held_out:
                raise ValueError("held_out has no batches; pass None or a non-empty list")
            for i, batch in enumerate(held_out):
                self._pair(batch, i, "held_out")
        self._check_final()
        self._check_norm_rows(data, batch_size)
        taken: list[dict[str, float]] = []
        stopped, last_x = False, None
        before = (self.epoch_rows, self.planned_steps, self.fair_plan, self._warned_plan,
                  self.step_count)
        if not self.epoch_rows:  # the rows of each batch, where known before the epoch
            self.epoch_rows = self._epoch_rows(data, batch_size)
        self.planned_steps = None if per_epoch is None else epochs * per_epoch
        self._plan_fair(per_epoch, epochs)
        bar = self._progress_bar(data, epochs, batch_size)
        try:
            while self.epoch < epochs and not stopped:
                for i, batch in enumerate(self._epoch_batches(data, batch_size, seed,
                                                              self.epoch)):
                    if i < self.batch_in_epoch:
                        continue  # done before a resume
                    x, y = self._pair(batch, i)
                    metrics = self.step(x, y, None if held_out is None else
                                        held_out[self.step_count % len(held_out)])
                    if last_x is None or _rows(x) >= _rows(last_x):
                        last_x = x  # the latest of the largest batches: not a short tail
                    self._rows_now.append(_rows(x))
                    self.batch_in_epoch = i + 1
                    metrics["epoch"] = float(self.epoch)
                    taken.append(metrics)
                    self.history.append(metrics)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{metrics['loss']:.4g}",
                                        fitness=f"{metrics['fitness_best']:.4g}", refresh=False)
                    if any(cb(metrics, self) is True for cb in self.callbacks):
                        stopped = True
                        break
                if not stopped:
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    self.epoch_rows, self._rows_now = self._rows_now, []
        except Exception:
            if self.step_count == before[-1]:  # refused before a step: the plan unpinned
                self.epoch_rows, self.planned_steps, self.fair_plan, self._warned_plan = \
                    before[:-1]
            raise
        finally:
            if bar is not None:
                bar.close()
        recommended = self.recommended()
        if self._split_active() and self.split is not None:  # its option's weights
            self._use_option(self._option(recommended))
        set_structure(self.model, recommended)
        if taken and self.structure_optimizer.counters["iterations"] == 0:
            self._warn_no_generation(len(taken))
        elif taken and self._ignores_input(last_x):
            cost = self.structure_cost is not None and \
                float(self.cost_weight_at(self.step_count)) > 0
            warnings.warn(ignored_input_message(recommended, cost), stacklevel=2)
        end = self._search_end()
        if taken and self.cost_held_back(self.step_count) and (
                end is None or self.step_count >= end):  # the search is over, no signal
            self._warn_cost_held_back()
        if bar is not None and self.structure_cost is not None and taken:
            self.print_pareto(file=sys.stderr)  # where the progress bar was
        return taken

    @staticmethod
    def _epoch_batches(data: Any, batch_size: int, seed: int, epoch: int) -> Iterator[Any]:
        """The batches of one epoch of ``data`` (drawn by ``batch_size``, ``seed`` and
        ``epoch`` where it has ``batches``; else in its own order)."""
        return data.batches(batch_size, seed=seed, epoch=epoch) \
            if hasattr(data, "batches") else iter(data)

    @staticmethod
    def _no_batches(data: Any, consequence: str) -> ValueError:
        """The error for ``data`` without a batch; ``consequence``: what the call would do."""
        kind = type(data.rows if isinstance(data, RowBatches) else data).__name__
        return ValueError(f"data has no batches ({kind} of length 0), so {consequence}; "
                          "pass a Dataset or a non-empty list of (x, y) batches")

    @staticmethod
    def _check_batch_size(batch_size: Any, *sources: Any) -> None:
        """A ValueError for a bad ``batch_size`` where one of ``sources`` is batched by it."""
        if any(hasattr(s, "batches") for s in sources) and (
                isinstance(batch_size, bool) or not isinstance(batch_size, int)
                or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}; "
                             f"e.g. 64")

    def _check_pairs(self, data: Any) -> None:
        """Every batch of a list or tuple of batches checked as an ``(x, y)`` pair."""
        if isinstance(data, (list, tuple)):
            for i, batch in enumerate(data):
                self._pair(batch, i)

    def _check_norm_rows(self, data: Any, batch_size: int) -> None:
        """A ValueError where the model has a batch norm and a batch of ``data`` would
        have a single row (a batch norm cannot train on one)."""
        if not has_batch_norm(self.model):
            return
        known = self._epoch_rows(data, batch_size)
        single = [i for i, r in enumerate(known) if r < 2]
        if single:
            raise ValueError(f"batch {single[0]} of each epoch has {known[single[0]]} "
                             f"row(s) (batch_size={batch_size!r} of {sum(known)} rows) "
                             "and the model has a batch norm, which needs at least 2 "
                             "rows to train on; choose a batch_size that leaves no "
                             "single row, or drop the last row")

    def _ignores_input(self, x: Any) -> bool:
        """:func:`~nondiff.hybrid.ignored_input.ignores_input` on ``x`` under the model as
        ``fit`` leaves it; False where the check itself fails (a model that cannot run
        in eval mode, or on fewer rows): it is advice, and the training is done."""
        try:
            return ignores_input(self.model, x)
        except Exception:  # advice only: never lose a finished fit
            return False

    def _plan_fair(self, per_epoch: int | None, epochs: int) -> None:
        """Pin the run a float ``fair_steps`` or ``final_steps`` is a fraction of
        (``fair_plan``) at the first ``fit`` that takes steps (its ``epochs`` x
        ``per_epoch``); warn once when a later one plans beyond it without
        ``total_steps``: its fair share ends, and its final phase starts, by the first
        plan."""
        fair = self.weight_step == "fair" and isinstance(self.fair_steps, float)
        final = isinstance(self.final_steps, float) and self.final_steps > 0
        if per_epoch is None or epochs * per_epoch <= self.step_count or \
                self.total_steps is not None or not (fair or final or self._cost_fraction()):
            return  # no fraction to resolve
        planned = epochs * per_epoch
        if self.fair_plan is None:
            self.fair_plan = planned
        elif planned > self.fair_plan and not self._warned_plan:
            self._warned_plan = True
            warnings.warn(plan_warning(epochs, planned, self.fair_plan,
                                       self.fair_steps if fair else None,
                                       self.final_steps if final else None), stacklevel=3)

    def _warn_no_generation(self, steps: int) -> None:
        """Warn that ``fit`` ended (after ``steps`` steps) before any generation: the
        model is left at the structure optimizer's untrained recommendation."""
        if self.step_count <= self.warmup_steps:
            why = (f"all {self.step_count} steps so far were warm-up "
                   f"(warmup_steps={self.warmup_steps}); fit more epochs or lower "
                   "warmup_steps")
        elif not isinstance(self.search_compute, float) or self._generation_cost is None \
                or self.search_credit <= 0:  # no credit to name (another kind of budget)
            why = (f"search_compute={self.search_compute!r} ran no generation in "
                   f"{self.step_count - self.warmup_steps} steps after warm-up; fit more epochs")
        else:
            cost, c = self._generation_cost, self.search_compute
            needed = cost * c / self.search_credit  # the weight-step rows so far earned it
            digits = 2 - math.floor(math.log10(needed))  # 3 significant digits, rounded up
            needed = math.ceil(needed * 10 ** digits) / 10 ** digits
            why = (f"search_compute={c} earned {self.search_credit:g} evaluation examples "
                   f"after warm-up, and a generation costs {cost} ({cost // self._eval_rows} "
                   f"candidates x {self._eval_rows} rows); pass search_compute >= "
                   f"{needed:g}, fit more epochs, or a smaller popsize")
        warnings.warn(f"fit took {steps} steps without any generation of the structure "
                      f"optimizer, so the model is left at its untrained initial "
                      f"recommendation: {why}", stacklevel=3)

    @staticmethod
    def _pair(batch: Any, index: int, name: str = "data") -> tuple[Any, Any]:
        """A batch of ``name`` (``data``, ``held_out``) as ``(x, y)``, or a ValueError
        naming what it is."""
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            x, y = batch
            if any(getattr(v, "ndim", None) == 0 for v in (x, y)) or isinstance(
                    y, (int, float, np.generic)):  # a row and its label, not a batch
                raise ValueError(f"{name}'s batch {index} holds a single row (x of shape "
                                 f"{tuple(getattr(x, 'shape', ()))}, y of shape "
                                 f"{tuple(getattr(y, 'shape', ()))}): the first dimension is "
                                 f"the batch's rows; for a dataset of rows (an "
                                 f"IterableDataset) pass DataLoader(dataset, batch_size=64)")
            return x, y
        what = f"a {type(batch).__name__}" + (
            f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else
            f" of shape {tuple(batch.shape)}" if hasattr(batch, "shape") else "")
        raise ValueError(f"{name}'s batch {index} is {what}, not an (inputs, targets) pair; "
                         "pass a Dataset or a list of (x, y) tuples, e.g. [(x, y)] for one "
                         "batch")

    @staticmethod
    def _batches_per_epoch(data: Any, batch_size: int) -> int | None:
        if hasattr(data, "num_batches"):
            return data.num_batches(batch_size)
        try:  # a DataLoader over an IterableDataset has __len__ but no length
            return len(data) if hasattr(data, "__len__") else None
        except TypeError:
            return None

    def _progress_bar(self, data: Any, epochs: int, batch_size: int) -> Any:
        enabled = self.progress if self.progress is not None else sys.stderr.isatty()
        if not enabled:
            return None
        from tqdm.auto import tqdm

        per_epoch = self._batches_per_epoch(data, batch_size)
        total = None if per_epoch is None else max(0, (epochs - self.epoch) * per_epoch
                                                   - self.batch_in_epoch)
        return tqdm(total=total, unit="step", dynamic_ncols=True, leave=False)

    # ----- structure ------------------------------------------------------------------
    def recommended(self) -> dict[str, Any]:
        """The structure optimizer's current recommendation, decoded — or, once the final
        phase has raced its pool (``select_batches``), the structure it selected
        (:attr:`selected`)."""
        if self.selected is not None:
            return self.space.decode(np.asarray(self.selected, dtype=np.float64))
        rec = self.structure_optimizer.recommend()
        rec = rec.detach().cpu().numpy() if isinstance(rec, torch.Tensor) else np.asarray(rec)
        return self.space.decode(rec)

    def structure(self, current: bool = False) -> dict[str, Any]:
        """The recommended structure (or, with ``current``, the model's own right now)."""
        if current:
            return {name: decl._value for name, decl in named_structures(self.model)}
        return self.recommended()

    def __repr__(self) -> str:
        kinds = "/".join(sorted(leaf_kinds(self.space)))
        return (f"HybridTrainer({type(self.model).__name__}, structure={kinds} "
                f"x{self.space.size} by {self.structure_optimizer.name}, "
                f"step={self.step_count}, epoch={self.epoch})")
