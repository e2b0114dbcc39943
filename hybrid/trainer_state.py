"""Checkpoints of :class:`~nondiff.hybrid.trainer.HybridTrainer`: everything a resume needs.

``state_dict()`` holds the weights, both optimizers (a shared generation left open: the
structure optimizer as before its ask, asked again on load), the counters, the random
states (the trainer's and torch's), the last generation and the search's bookkeeping
(credit, generations remembered, winners, the selection under way, the cost signal) and
the starting weights and optimizer settings :meth:`~nondiff.hybrid.retrain.Retraining.
retrain` puts back (a second copy of the model's state, on the host; none with a
Decoupled engine; a state saved without them leaves the trainer's own), sealed
with a checksum (:mod:`nondiff.optim.checkpoint`): a trainer loaded from it and fit to
the same total epochs ends exactly where an uninterrupted one does. ``load_state_dict``
checks the whole state before it changes anything, and a load that fails half way puts
the trainer back as it was. :class:`TrainerState` is a mixin of the trainer.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.structure import Choice
    >>> from nondiff.hybrid.trainer import HybridTrainer
    >>> def make():
    ...     torch.manual_seed(0)
    ...     model = nn.Sequential(nn.Linear(2, 8), Choice(nn.ReLU(), nn.Tanh()),
    ...                           nn.Linear(8, 2))
    ...     return HybridTrainer(model, "ga", seed=0, total_steps=40,
    ...                          structure_options={"popsize": 4})
    >>> x = torch.randn(80, 2, generator=torch.Generator().manual_seed(1))
    >>> batches = [(x[i:i + 20], (x[i:i + 20].prod(1) > 0).long()) for i in range(0, 80, 20)]
    >>> straight, first = make(), make()
    >>> _ = straight.fit(batches, epochs=10)
    >>> _ = first.fit(batches, epochs=4)
    >>> resumed = make()
    >>> resumed.load_state_dict(first.state_dict())
    >>> _ = resumed.fit(batches, epochs=10)
    >>> all(torch.equal(p, q) for p, q in zip(straight.model.parameters(),
    ...                                       resumed.model.parameters()))
    True
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from nondiff.optim.checkpoint import seal, verify

from .devices import copy_state, device_of
from .retrain import check_initial

__all__ = ["STATE_VERSION", "TrainerState"]

STATE_VERSION = 1
"""The version of :meth:`TrainerState.state_dict`'s layout."""


class TrainerState:
    """The checkpoint methods of :class:`~nondiff.hybrid.trainer.HybridTrainer` (a
    mixin)."""

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimizers, counters and random states (``torch.save``-able), sealed
        with a checksum that :meth:`load_state_dict` verifies."""
        if self.engine is not None:
            weights = self.engine.checkpoint() if self.engine.built else None
        else:
            weights = self.weight_optimizer.state_dict()
        return seal({
            "version": STATE_VERSION,
            "model": self.model.state_dict(),
            "weight_optimizer": weights,
            # with an open shared generation: the state before its ask (a resume re-asks)
            "structure_optimizer": copy.deepcopy(self.shared.snapshot)
            if self.search_compute == "shared" and self.shared.active
            else self.structure_optimizer.state_dict(),
            "counters": {"step": self.step_count, "epoch": self.epoch,
                         "batch_in_epoch": self.batch_in_epoch,
                         "forward_examples": self.forward_examples,
                         "weight_examples": self.weight_examples,
                         "skipped_steps": self.skipped_steps,
                         **({} if self.fair_plan is None else {"fair_plan": self.fair_plan})},
            "rng": dict(self.rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
            "batched": self.batched,
            "batched_steps": self.batched_steps,
            "last_generation": {k: list(v) for k, v in self.last_generation.items()},
            "search": {"credit": self.search_credit, "late_credit": self.late_credit,
                       "between": {k: list(v) for k, v in self.between.items()},
                       "shared": self.shared.state_dict(),
                       "recent": copy.deepcopy(self.recent),
                       "recent_objectives": copy.deepcopy(self.recent_objectives),
                       "winners": copy.deepcopy(self.winners),
                       "gate_noise": copy.deepcopy(self.gate_noise),
                       "cost_signal_at": self.cost_signal_at,
                       "epoch_rows": list(self.epoch_rows), "rows_now": list(self._rows_now),
                       "selection": copy.deepcopy(self.selection),
                       "selected": None if self.selected is None else list(self.selected),
                       "race": self.race,  # seal copies it
                       "split": self.split},
            # what retrain starts from (hybrid.retrain)
            "initial": {"model": self.initial_model, "optimizer": self.initial_optimizer},
        })

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (also the global torch RNG it saved); a
        state altered since it was made (checksum mismatch) is refused."""
        if isinstance(state, Mapping):
            state = verify(state, "HybridTrainer state dict")
        keys = {"version", "model", "weight_optimizer", "structure_optimizer", "counters",
                "rng", "torch_rng", "batched"}
        if not isinstance(state, Mapping) or \
                set(state) - {"last_generation", "batched_steps", "search", "initial"} != keys:
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not a HybridTrainer state dict: expected keys {sorted(keys)}, "
                             f"got {got}")
        if state["version"] != STATE_VERSION:
            raise ValueError(f"HybridTrainer state version {state['version']!r} is not "
                             f"{STATE_VERSION}")
        last = state.get("last_generation") or {"fitness": [], "cost": [], "encoded": []}
        if not isinstance(last, Mapping) or set(last) != {"fitness", "cost", "encoded"}:
            raise ValueError(f"not a HybridTrainer state dict: last_generation is {last!r}")
        search = state.get("search") or {"credit": 0.0,
                                          "between": {"encoded": [], "objective": []}}
        try:
            last = {k: list(v) for k, v in last.items()}
            search = {"credit": float(search["credit"]),
                      "late_credit": float(search.get("late_credit", 0.0)),
                      "between": {k: list(search["between"][k])
                                  for k in ("encoded", "objective")},
                      "shared": search.get("shared"),
                      "recent": [[list(map(float, row)) for row in generation]
                                 for generation in search.get("recent") or []],
                      "recent_objectives": [list(map(float, values)) for values in
                                            search.get("recent_objectives") or []],
                      "winners": [[list(map(float, w[0])), int(w[1]), int(w[2])]
                                  for w in search.get("winners") or []],
                      "gate_noise": [[float(j), float(v)]
                                     for j, v in search.get("gate_noise") or []],
                      # a state from before the signal: the schedule it ran (30 %)
                      "cost_signal_at": 0 if "cost_signal_at" not in search else None
                      if search["cost_signal_at"] is None else int(search["cost_signal_at"]),
                      "epoch_rows": [int(r) for r in search.get("epoch_rows") or []],
                      "rows_now": [int(r) for r in search.get("rows_now") or []],
                      "selection": copy.deepcopy(search.get("selection")),
                      "selected": None if search.get("selected") is None
                      else [float(v) for v in search["selected"]],
                      "race": _race_state(search.get("race")),
                      "split": self._split_state(search.get("split"))}
            counters = {k: int(v) for k, v in state["counters"].items()}
        except (TypeError, ValueError, AttributeError, KeyError) as error:
            raise ValueError(f"not a HybridTrainer state dict: {error}") from None
        if any(v < 0 for v in counters.values()) or not {"step", "epoch", "batch_in_epoch"} \
                <= set(counters):
            raise ValueError(f"HybridTrainer state dict has bad counters {counters}; it was "
                             "edited or damaged")
        if search["shared"] is not None and self.search_compute != "shared":
            raise ValueError(f"this HybridTrainer state dict holds an open generation of "
                             f"search_compute='shared', but the trainer has search_compute="
                             f"{self.search_compute!r}; build the trainer with "
                             f"search_compute='shared' to load it")
        if state.get("initial") is not None:
            check_initial(state["initial"], self.model, self.weight_optimizer)
        before = self.state_dict()  # a refused load leaves the trainer as it was
        try:
            self._load_parts(state, counters, last, search)
        except Exception as error:
            self._load_parts(verify(before, "HybridTrainer state"), before["counters"],
                             before["last_generation"], before["search"])
            if isinstance(error, ValueError):
                raise
            raise ValueError(f"this HybridTrainer state dict does not fit the trainer "
                             f"({type(error).__name__}: {error}); build the trainer with the "
                             "same model, optimizers and engine before loading") from error

    def _load_parts(self, state: Mapping[str, Any], counters: Mapping[str, int],
                    last: dict[str, list], search: Mapping[str, Any]) -> None:
        self.structure_optimizer.load_state_dict(state["structure_optimizer"])
        if search.get("shared") is not None:  # the open generation: asked again
            self.shared.load_state_dict(search["shared"], self.structure_optimizer.ask(),
                                        state["structure_optimizer"], device_of(self.model))
        else:
            self.shared.close()
        if self.engine is not None:
            if state["weight_optimizer"] is not None:
                self.engine.load_checkpoint(state["weight_optimizer"])
        else:
            self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        self.model.load_state_dict(state["model"])
        self.step_count, self.epoch = int(counters["step"]), int(counters["epoch"])
        self.batch_in_epoch = int(counters["batch_in_epoch"])
        self.forward_examples = int(counters.get("forward_examples", 0))
        self.weight_examples = int(counters.get("weight_examples", 0))
        self.skipped_steps = int(counters.get("skipped_steps", 0))
        self.fair_plan = counters.get("fair_plan")
        self.rng.bit_generator.state = dict(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        self.batched = state["batched"]
        self.batched_steps = bool(state.get("batched_steps", bool(self.batched)))
        self.last_generation = last
        self.search_credit = float(search["credit"])
        self.late_credit = float(search.get("late_credit", 0.0))
        self.between = {k: list(v) for k, v in search["between"].items()}
        self.recent, self.selection = search["recent"], search["selection"]
        self.recent_objectives = search["recent_objectives"]
        self.winners = search["winners"]
        self.gate_noise = search["gate_noise"]
        self.cost_signal_at = search.get("cost_signal_at")
        self.epoch_rows, self._rows_now = search["epoch_rows"], search["rows_now"]
        self.selected = search["selected"]
        self.race = copy.deepcopy(search.get("race"))
        self.split = copy.deepcopy(search.get("split"))
        if state.get("initial") is not None:  # a state from before retrain: kept as built
            weights = state["initial"]["model"]
            self.initial_model = None if weights is None or self.engine is not None \
                else copy_state(weights, "cpu")
            self.initial_optimizer = copy.deepcopy(state["initial"]["optimizer"])


def _race_state(race: Any) -> dict[str, Any] | None:
    """A stored finalists' race (:mod:`nondiff.hybrid.finalists`), checked: None, a
    finished one, or one under way with a weight and optimizer state per finalist."""
    if race is None:
        return None
    if not isinstance(race, Mapping) or ("done" not in race and not {
            "encoded", "weights", "optimizers", "sums", "alive", "steps"} <= set(race)):
        raise TypeError(f"race is {type(race).__name__} without a finalists' race's keys")
    if "done" not in race and not (len(race["encoded"]) == len(race["weights"]) ==
                                   len(race["optimizers"]) == len(race["sums"])):
        raise ValueError("race holds a different number of finalists, weights and states")
    return dict(race)  # copied once, where it is loaded
