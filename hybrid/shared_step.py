"""HybridTrainer's step with ``search_compute="shared"``: fitness from the weight step.

The trainer side of :mod:`nondiff.hybrid.shared_fitness` (which accumulates the
values): :func:`shared_step` opens a generation when none is open, trains the weights
under fair paths and the generation's members in one multi-path step, reads each
member's fitness on its own rows from that step's forward pass before the update,
scores ``n // k`` common rows under all ``k`` members (:func:`common_pass`, with
``HybridTrainer.paired_rows``), and tells the structure optimizer once every member has
``generation_rows`` rows. :class:`~nondiff.hybrid.trainer.HybridTrainer` calls it from
``step``; the module docstrings of both describe the method and its sources (Blier &
Ollivier 2018; Ru et al. 2021).

Example:
    >>> import torch
    >>> from nondiff.hybrid.shared_step import fitness_of
    >>> output, y = torch.tensor([[1.0], [2.0], [4.0]]), torch.zeros(3, 1)
    >>> mse = torch.nn.functional.mse_loss
    >>> fitness_of(mse, output, y, [0, 1], [1, 2], torch.device("cpu")).tolist()  # 1, (4+16)/2
    [1.0, 10.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .blocks import detached, repeat, slice_rows
from .blocks import rows as _rows
from .candidate_norms import candidate_statistics, has_batch_norm
from .devices import device_of
from .nonfinite import NonFiniteError
from .structure import StructureBatchError, batched_structures, set_structure

if TYPE_CHECKING:
    from .trainer import HybridTrainer

__all__ = ["common_pass", "fitness_of", "paired_fitness", "shared_step"]


def shared_step(trainer: HybridTrainer, x: Any, y: Any) -> dict[str, float]:
    """``trainer.step`` with ``search_compute="shared"`` on a batch already on the
    model's device: the weight step trains the open generation's candidates (and fair
    paths) and their losses on their rows, before the update, are their fitness samples
    (:mod:`nondiff.hybrid.shared_fitness`); a generation is told once every candidate
    has ``generation_rows`` rows (default: the batch's), and the next step asks a new
    one. Returns the step's metrics."""
    opt, gen, n = trainer.structure_optimizer, trainer.shared, _rows(x)
    warm = trainer.step_count < trainer.warmup_steps
    if not warm and not gen.active:
        snapshot = opt.state_dict()  # a resume re-asks this generation from here
        candidates = opt.ask()
        encoded = candidates.detach().cpu().numpy() \
            if isinstance(candidates, torch.Tensor) else np.asarray(candidates)
        incumbent = trainer._incumbent()
        scored = [*encoded, *([] if incumbent is None else [incumbent])]
        costs = None if trainer.structure_cost is None else \
            trainer.costs(trainer.space.decode_batch(np.asarray(scored)))  # checked up front
        gen.open(encoded, incumbent, trainer.generation_rows or n, snapshot, candidates,
                 costs)
    values = [] if warm else trainer.space.decode_batch(
        np.asarray([*gen.encoded, *([] if gen.incumbent is None else [gen.incumbent])]))
    share = trainer.fair_share_at(trainer.step_count)
    paths, rows, owners = trainer._owned_paths(values, share, n)
    scored = [j for j, owner in enumerate(owners) if owner >= 0]
    common = None
    if trainer.paired_rows and len(values) > 1:
        common = common_pass(trainer, x, y, values)
    trainer.model.train()
    try:
        loss, skipped = trainer._weight_step(x, y, paths, rows, scored)
    except NonFiniteError as error:
        error.step, error.epoch = trainer.step_count, trainer.epoch
        raise
    if trainer._step_fitness is not None:
        mine, used = [owners[j] for j in scored], [rows[j] for j in scored]
        gen.add(mine, trainer._step_fitness, used)
    if common is not None:
        gen.add_common(common, max(1, n // len(values)))
    trainer.skipped_steps += skipped
    trainer.forward_examples += n + (0 if common is None else len(values) * max(
        1, n // len(values)))
    told = gen.complete()
    fitness, metrics = np.full(1, np.nan), {}
    if told:
        weight = trainer.cost_weight_at(trainer.step_count)
        fitness = gen.fitness()
        objective = fitness if gen.costs is None else fitness + weight * gen.costs
        extra = {}
        if gen.incumbent is not None:
            extra = {"incumbent": gen.incumbent, "incumbent_fitness": float(objective[-1])}
            fitness, objective = fitness[:-1], objective[:-1]
        metrics = opt.tell(gen.candidates, objective, **extra)
        trainer.remember(gen.encoded, objective)  # for the final selection's shortlist
        if gen.costs is not None:
            trainer.last_generation = {"fitness": fitness.tolist(),
                                       "cost": gen.costs[:len(fitness)].tolist(),
                                       "encoded": gen.encoded.tolist()}
    trainer.step_count += 1
    result = {"step": float(trainer.step_count), "loss": loss,
              "fitness_best": float(np.min(fitness)), "fitness_mean": float(np.mean(fitness)),
              "warmup": float(warm), "skipped": float(skipped), "searched": float(told),
              "fair_share": share}
    if trainer.structure_cost is not None:
        result["cost_weight"] = weight if told else 0.0 if warm else \
            trainer.cost_weight_at(trainer.step_count - 1)
        result["cost_mean"] = float(np.mean(gen.costs[:len(fitness)])) if told else math.nan
    if told:
        gen.close()
    result.update({f"structure_{k}": v for k, v in metrics.items()})
    return result


@torch.no_grad()
def common_pass(trainer: HybridTrainer, x: Any, y: Any, values: list[Mapping[str, Any]]
                ) -> torch.Tensor:
    """``n // k`` rows of the batch at a random place (``k`` members of the
    generation), scored under every member with the weights before the update, in
    eval mode: the fitness of each member there."""
    n, k = _rows(x), len(values)
    r = max(1, n // k)
    start = int(trainer.rng.integers(n - r + 1))
    model = trainer.model
    was_training = model.training
    model.eval()
    try:
        xb, yb = x[start:start + r], y[start:start + r]
        if has_batch_norm(model):  # each member by its own statistics, one pass each
            with candidate_statistics(model, r):
                return paired_fitness(trainer, repeat(xb, k), repeat(yb, k), values,
                                      [r] * k, batched=False)
        return paired_fitness(trainer, repeat(xb, k), repeat(yb, k), values, [r] * k)
    finally:
        model.train(was_training)


def paired_fitness(trainer: HybridTrainer, x: Any, y: Any, paths: list[Mapping[str, Any]],
                   rows: list[int], batched: bool = True) -> torch.Tensor:
    """``trainer.fitness`` of ``paths[j]`` on its block of ``rows[j]`` rows of ``(x, y)``:
    one batched pass when the declarations allow it (``trainer.batched``, and
    ``batched``), else one pass per block."""
    model, device = trainer.model, device_of(trainer.model)
    if trainer.batched and batched:
        try:
            with batched_structures(model, paths, rows):
                output = model(x)
            return fitness_of(trainer.fitness, output, y, list(range(len(paths))), rows, device)
        except StructureBatchError:
            if trainer.batched is True:
                raise
            trainer.batched = False
    before, start, out = trainer.structure(current=True), 0, []
    try:
        for path, r in zip(paths, rows, strict=True):
            set_structure(model, path)
            out.append(fitness_of(trainer.fitness, model(x[start:start + r]),
                                  y[start:start + r], [0], [r], device))
            start += r
    finally:
        set_structure(model, before)
    return torch.cat(out)


def fitness_of(fitness: Callable[[Any, Any], Any], output: Any, y: Any, scored: list[int],
               rows: list[int], device: torch.device) -> torch.Tensor:
    """``fitness`` of paths ``scored`` on their rows of ``output`` (rows ``rows[j]`` per
    path, in order), as one float64 tensor on ``device`` (no host sync)."""
    starts = np.concatenate([[0], np.cumsum(rows)])
    with torch.no_grad():
        values = [fitness(slice_rows(detached(output), int(starts[j]), int(starts[j + 1])),
                          y[starts[j]:starts[j + 1]]) for j in scored]
    return torch.stack([torch.as_tensor(v, device=device).to(torch.float64).reshape(())
                        for v in values])
