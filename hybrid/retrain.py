"""Retraining the found structure alone, from the weights the model started with.

Weight sharing ranks structures; it does not train the one it finds as well as that
structure trained alone. One-shot NAS therefore retrains the structure it picks
(Bender et al. 2018, "Understanding and simplifying one-shot architecture search";
Z. Guo et al. 2020, "Single path one-shot neural architecture search with uniform
sampling", ECCV: supernet training, search, then retraining from scratch).
:meth:`Retraining.retrain` is that last stage for a
:class:`~nondiff.hybrid.trainer.HybridTrainer`: after
:meth:`~nondiff.hybrid.trainer.HybridTrainer.fit`, it puts back the
weights the model had when the trainer was made (and the weight optimizer's settings
then, its state cleared), sets the recommended structure (or a given one) and trains
it for ``epochs`` with the trainer's loss on the same batches ``fit`` would draw. With
the same data, seed and epochs as a plain loop over the same model, it is that loop:
the known structure retrained reproduces the known structure trained alone.

What it costs and buys (issue 17; the compute is the trainer's ``forward_examples``, which
counts the retraining too):

- ``nondiff.benchmarks.hybrid_tasks.regression_gap`` (a regression, 13 optimizers, seeds
  0-1, 10 epochs): with the shared weights as ``fit`` leaves them, the searched model's
  test MSE is 1.8-5.1x that of the known structure trained alone on the same batches;
  retrained, the 18 runs that found the known structure end at exactly its MSE (1.0x),
  those that left a noise gate open at 0.9-1.3x, and the one that closed a relevant
  gate at 4.7x. Search and retraining together take 3x the compute of training the
  structure alone.
- Searching half as long and then retraining, to stay within 2x, loses the structure:
  on the acceptance suite (:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`, seeds
  0-4, 13 optimizers, ``--retrain 0.5``) the seeds recovered fell from 874 to 684 of 910
  (many-inputs 62 -> 24 of 65), and the rows that meet issue 17's targets from 160 to
  97 of 182. So it is a step a user takes when the weights matter more than the
  compute, not a default.

The starting weights are kept on the host from the trainer's construction (one copy of
the model's state) and are part of the trainer's
:meth:`~nondiff.hybrid.trainer_state.TrainerState.state_dict`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.structure import Gates
    >>> from nondiff.hybrid.trainer import HybridTrainer
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(64, 4); y = (x[:, 1] > 0).long()
    >>> model = nn.Sequential(Gates(4), nn.Linear(4, 2))
    >>> trainer = HybridTrainer(model, "ga", lambda p: torch.optim.SGD(p, lr=0.5),
    ...                         progress=False)
    >>> _ = trainer.fit([(x, y)] * 20, epochs=1)
    >>> steps = trainer.retrain([(x, y)] * 20, epochs=1, structure={"0": [0, 1, 0, 0]})
    >>> len(steps), steps[-1]["loss"] < steps[0]["loss"]
    (20, True)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from .batches import as_batches
from .blocks import rows as _rows
from .devices import device_of, to_device
from .structure import set_structure

__all__ = ["Retraining", "host_copy", "initial_groups", "initial_weights"]


def initial_weights(model: nn.Module) -> dict[str, Any] | None:
    """A host copy of ``model``'s state (parameters, buffers and the extra state of its
    structure declarations), to retrain from; None while a lazy module's parameters are
    not made yet (their first forward pass makes them)."""
    state = model.state_dict()
    if any(is_lazy(value) for value in state.values()):
        return None
    return host_copy(state)


def host_copy(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with every tensor copied to the host, everything else deep-copied."""
    return {name: value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor)
            else copy.deepcopy(value) for name, value in state.items()}


def initial_groups(optimizer: torch.optim.Optimizer | None) -> list[dict[str, Any]] | None:
    """The settings of each of ``optimizer``'s parameter groups (learning rate, betas,
    ...; not the parameters), to put back before retraining; None without one."""
    if optimizer is None:
        return None
    return [{k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            for group in optimizer.param_groups]


class Retraining:
    """:meth:`retrain` of :class:`~nondiff.hybrid.trainer.HybridTrainer` (a mixin; the
    trainer keeps ``initial_model`` and ``initial_optimizer`` from its construction)."""

    initial_model: dict[str, Any] | None
    initial_optimizer: list[dict[str, Any]] | None

    def retrain(self, data: Any, epochs: int, batch_size: int = 64, seed: int = 0,
                structure: Mapping[str, Any] | None = None) -> list[dict[str, float]]:
        """Train ``structure`` (default: the trainer's ``recommended()``) alone from the
        weights the model had when the trainer was made, for ``epochs`` epochs of
        ``data`` (as ``fit`` takes it, batched by ``batch_size`` and ``seed`` alike), with the
        trainer's loss and its weight optimizer, its state cleared and its settings
        (learning rates, ...) as they were then. The few-shot copies of the weights go.
        The search's state is left as it is; the model is left at ``structure``.

        Returns:
            the metrics of each weight step taken (``retrain_step``, ``epoch``,
            ``loss``, ``skipped``). The trainer's callbacks see each (one returning True
            stops the retraining), and ``forward_examples`` counts the rows.

        Raises:
            ValueError: a Decoupled engine (it owns its optimizers: retrain its blocks
                with the engine instead), a model with lazy modules not yet run when the
                trainer was made (no starting weights were kept), a bad ``epochs`` or
                ``batch_size``, data without batches, a structure outside the model's
                space, or a weight optimizer given parameter groups since; all before
                anything changes.
        """
        if self.engine is not None:
            raise ValueError("retrain trains the model with the trainer's weight optimizer, "
                             "and a Decoupled engine owns its optimizers; build a "
                             "HybridTrainer with engine='backprop' to retrain, or train the "
                             "engine on the found structure")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1 (the epochs to retrain for), got "
                             f"{epochs!r}; e.g. the epochs fit ran")
        if self.initial_model is None:
            raise ValueError("retrain starts from the weights the model had when the "
                             "trainer was made, and a lazy module's were not made yet; run "
                             "the model on one batch before building the HybridTrainer")
        found = self.recommended() if structure is None else structure
        self.space.encode(found)  # a ValueError names the path, before anything changes
        data = as_batches(data)
        self._check_batch_size(batch_size, data)
        if self._batches_per_epoch(data, batch_size) == 0:
            raise ValueError("data has no batches, so retrain would take no step; pass a "
                             "Dataset or a non-empty list of (x, y) batches")
        self._check_pairs(data)
        self._check_norm_rows(data, batch_size)
        groups = self.weight_optimizer.param_groups
        if len(groups) != len(self.initial_optimizer):
            raise ValueError(f"the weight optimizer has {len(groups)} parameter groups and "
                             f"had {len(self.initial_optimizer)} when the trainer was made, "
                             f"so retrain cannot put its settings back; add parameter "
                             f"groups before building the HybridTrainer")
        self.split = None  # the search's copies of the weights
        self.model.load_state_dict(self.initial_model)
        set_structure(self.model, found)
        for group, settings in zip(groups, self.initial_optimizer, strict=True):
            group.update(copy.deepcopy(settings))
        self.weight_optimizer.state.clear()
        self.model.train()
        taken: list[dict[str, float]] = []
        for epoch in range(epochs):
            batches = data.batches(batch_size, seed=seed, epoch=epoch) \
                if hasattr(data, "batches") else iter(data)
            for i, batch in enumerate(batches):
                x, y = to_device(self._pair(batch, i), device_of(self.model))
                loss, skipped = self._shared_weight_step(x, y, [found], [_rows(x)])
                self.forward_examples += _rows(x)
                metrics = {"retrain_step": float(len(taken) + 1), "epoch": float(epoch),
                           "loss": loss, "skipped": float(skipped)}
                taken.append(metrics)
                if any(cb(metrics, self) is True for cb in self.callbacks):
                    return taken
        return taken
