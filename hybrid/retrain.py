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
the same data, seed and epochs (and torch random state, for dropout) as a plain loop over
the same model, it is that loop: the known structure retrained reproduces the known
structure trained alone.

What it costs and buys (issue 17; the compute is the trainer's ``forward_examples``, which
counts the retraining too):

- ``nondiff.benchmarks.hybrid_tasks.regression_gap`` (a regression, 13 optimizers, seeds
  0-1, 10 epochs): with the shared weights as ``fit`` leaves them, the searched model's
  test MSE is 1.8-5.1x that of the known structure trained alone on the same batches;
  retrained, the 19 runs that found the known structure end at exactly its MSE (1.0x),
  those that left a noise gate open at 0.9-1.3x, and the one that closed a relevant
  gate at 4.7x. Search and retraining together take 3x the compute of training the
  structure alone.
- Searching half as long and then retraining, to stay within 2x, loses the structure:
  on the acceptance suite (:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`, seeds
  0-4, 13 optimizers, ``--retrain 0.5`` against the defaults, in one session) the seeds
  recovered fell from 687 to 531 of 715 (many-inputs 62 -> 24 of 65, mixed-inputs 63
  -> 25), and the rows that meet issue 17's targets from 123 to 77 of 143. So it is a
  step a user takes when the weights matter more than the compute, not a default.

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
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parameter import is_lazy

from .batches import as_batches, epoch_seed
from .blocks import rows as _rows
from .candidate_norms import has_batch_norm
from .devices import copy_state, device_of, to_device
from .nonfinite import NonFiniteError
from .structure import set_structure

__all__ = ["Retraining", "check_initial", "initial_groups", "initial_weights"]


def initial_weights(model: nn.Module) -> dict[str, Any] | None:
    """A host copy of ``model``'s state (parameters, buffers and the extra state of its
    structure declarations), to retrain from; None while a lazy module's parameters are
    not made yet (their first forward pass makes them)."""
    state = model.state_dict()
    if any(is_lazy(value) for value in state.values()):
        return None
    return copy_state(state, "cpu")


def check_initial(initial: Any, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                  fix: str = "build the trainer with the same model and weight optimizer "
                             "before loading") -> None:
    """A ValueError (ending in ``fix``) unless ``initial`` (starting weights and settings,
    ``{"model", "optimizer"}``) fits ``model`` (the same entries, laid out alike: tensors
    of the same shapes, extra states of the same keys and shapes) and ``optimizer``
    (per parameter group, settings it has, without its parameters)."""
    if not isinstance(initial, Mapping) or set(initial) != {"model", "optimizer"}:
        raise ValueError(f"the initial entry is not {{'model', 'optimizer'}}: "
                         f"{initial!r:.80}; {fix}")
    weights, groups = initial["model"], initial["optimizer"]
    live = model.state_dict()
    if weights is not None and (not isinstance(weights, Mapping) or set(weights) != set(live)
                                or any(_layout(weights[k]) != _layout(v)
                                       for k, v in live.items())):
        raise ValueError(f"the initial weights do not fit the model (other entries or "
                         f"shapes); {fix}")
    live_groups = None if optimizer is None else optimizer.param_groups
    if (groups is None) != (live_groups is None) or (groups is not None and (
            not isinstance(groups, list) or len(groups) != len(live_groups)
            or not all(isinstance(g, Mapping) and "params" not in g
                       and set(g) <= set(now) for g, now in zip(groups, live_groups,
                                                                strict=True)))):
        count = None if live_groups is None else len(live_groups)
        raise ValueError(f"the initial optimizer settings do not fit the weight optimizer "
                         f"({count} parameter groups, settings it has); {fix}")


def _layout(value: Any) -> Any:
    """What must match between a stored entry of a state dict and the live one: the
    shapes of tensors and arrays, the keys and lengths of what holds them."""
    if isinstance(value, torch.Tensor):
        return ("tensor", None if is_lazy(value) else tuple(value.shape))
    if isinstance(value, np.ndarray):
        return ("array", value.shape)
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((str(k), _layout(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("sequence", tuple(_layout(v) for v in value))
    return type(value).__name__


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
                structure: Mapping[str, Any] | None = None,
                callbacks: Iterable[Callable[[dict[str, float], Any], Any]] = ()
                ) -> list[dict[str, float]]:
        """Train ``structure`` (default: the trainer's ``recommended()``) alone from the
        weights the model had when the trainer was made, for ``epochs`` epochs of
        ``data`` (as ``fit`` takes it, batched by ``batch_size`` and ``seed`` alike),
        with the trainer's loss and its weight optimizer, its state cleared and its
        settings (learning rates, ...) as they were then. The few-shot copies of the
        weights go. The search's state is left as it is; the model is left at
        ``structure``. With the global torch random state the same (dropout, a shuffling
        ``DataLoader``), it is a plain training loop over the same model, bit for bit.

        A retraining is one call: it is not checkpointed partway, and a stopped or
        interrupted one is run again whole (from the starting weights; its rows are
        counted again in ``forward_examples``).

        Args:
            callbacks: ``cb(metrics, trainer)`` after every step of the retraining (the
                trainer's own callbacks are for ``fit``); True stops it.

        Returns:
            the metrics of each weight step taken (``retrain_step``, ``epoch``,
            ``loss``, ``skipped``); ``forward_examples`` and ``weight_examples`` count
            the rows, ``skipped_steps`` the steps a non-finite loss left out (with
            ``on_nonfinite="skip"``).

        Raises:
            ValueError: a Decoupled engine (it owns its optimizers: retrain its blocks
                with the engine instead), no starting weights (a lazy module not yet run
                when the trainer was made), a model whose entries changed since, a bad
                ``epochs``, ``batch_size`` or ``seed``, data without batches, a structure
                outside the model's space, or a weight optimizer given parameter groups
                since; all before anything changes. Also a batch of one row under a
                batch norm, found only when it comes where its rows are not known up
                front (a ``DataLoader``).
            NonFiniteError: a non-finite loss under ``on_nonfinite="raise"``, with the
                retraining's step and epoch.
        """
        found, data = self._check_retrain(data, epochs, batch_size, seed, structure)
        callbacks = list(callbacks)
        self.model.load_state_dict(self.initial_model)
        self.split = None  # the search's copies of the weights
        set_structure(self.model, found)
        for group, settings in zip(self.weight_optimizer.param_groups,
                                   self.initial_optimizer, strict=True):
            group.update({k: copy.deepcopy(v) for k, v in settings.items() if k != "params"})
        self.weight_optimizer.state.clear()
        self.model.train()
        taken: list[dict[str, float]] = []
        norms = has_batch_norm(self.model)
        for epoch in range(epochs):
            for i, batch in enumerate(self._epoch_batches(data, batch_size, seed, epoch)):
                x, y = to_device(self._pair(batch, i), device_of(self.model))
                if norms and _rows(x) < 2:  # rows not known up front (a DataLoader)
                    raise ValueError(f"batch {i} of epoch {epoch} has {_rows(x)} row(s) and "
                                     "the model has a batch norm, which needs at least 2 "
                                     "rows to train on; drop the batch (a DataLoader's "
                                     "drop_last=True) or choose another batch_size")
                try:
                    loss, skipped = self._shared_weight_step(x, y, [found], [_rows(x)])
                except NonFiniteError as error:  # the retraining's step, not the search's
                    error.step, error.epoch = len(taken), epoch
                    raise
                self.forward_examples += _rows(x)
                self.skipped_steps += skipped
                metrics = {"retrain_step": float(len(taken) + 1), "epoch": float(epoch),
                           "loss": loss, "skipped": float(skipped)}
                taken.append(metrics)
                if any(cb(metrics, self) is True for cb in callbacks):
                    return taken
        return taken

    def _check_retrain(self, data: Any, epochs: Any, batch_size: Any, seed: Any,
                       structure: Mapping[str, Any] | None
                       ) -> tuple[Mapping[str, Any], Any]:
        """Every check of :meth:`retrain`, before it changes anything: the structure to
        train and the data as :meth:`fit` reads it."""
        if self.engine is not None:
            raise ValueError("retrain trains the model with the trainer's weight optimizer, "
                             "and a Decoupled engine owns its optimizers; build a "
                             "HybridTrainer with engine='backprop' to retrain, or train the "
                             "engine on the found structure")
        if self.initial_model is None:
            raise ValueError("retrain starts from the weights the model had when the "
                             "trainer was made, and none were kept: a lazy module had not "
                             "made its weights yet (or the trainer's state was saved from "
                             "such a trainer); run the model on one batch before building "
                             "the HybridTrainer")
        check_initial({"model": self.initial_model, "optimizer": self.initial_optimizer},
                      self.model, self.weight_optimizer,
                      "the model or its weight optimizer changed since the trainer was made "
                      "(parameters, buffers or parameter groups), so retrain cannot put "
                      "them back; build a HybridTrainer on the model as it is")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1 (the epochs to retrain for), got "
                             f"{epochs!r}; e.g. the epochs fit ran")
        found = self.recommended() if structure is None else structure
        self.space.encode(found)  # a ValueError names the path
        data = as_batches(data)
        self._check_batch_size(batch_size, data)
        if hasattr(data, "batches"):
            epoch_seed(seed, 0)  # the ValueError data.batches would raise, up front
        if self._batches_per_epoch(data, batch_size) == 0:
            raise self._no_batches(data, "retrain would take no step")
        self._check_pairs(data)
        self._check_norm_rows(data, batch_size)
        return found, data
