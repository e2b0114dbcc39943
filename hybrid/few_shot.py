"""Few-shot weights: a copy of the shared weights per option of one parameter-free ``Choice``.

One-shot weights are shared by every structure, also by structures that need opposite
weights: a ``Choice`` among activations that includes ``nn.Identity()`` makes the layers
around it serve a linear net and a ReLU net at once. Trained under fair paths (every
option on a third of the rows), their gradients pull the shared layers apart, and the
weights learn neither. On issue 17's own case (``"mixed-inputs"`` of
:mod:`nondiff.problems.hybrid.acceptance`: 24 gated inputs, an identity / ReLU / tanh
choice; a plain loop of 320 steps under random gate masks, the known structure's test
loss):

========================================  =========
weights trained under                      loss
========================================  =========
the known structure alone                  0.12
ReLU only, half the gates open             0.32
the three activations, shared weights      0.55-0.60
the three activations, a copy each         0.37-0.39
========================================  =========

Under the shared weights the known structure (0.56-0.59 in the trainer) beat the linear
term alone by less than the three gates' cost, and every optimizer closed them. Zhao et
al. (2021, few-shot NAS) split the supernet on the options of one of its choices into
sub-supernets, one copy of the weights each, and rank structures within each copy: the
copies do not co-adapt across the options. Here:

- the split is on one ``Choice`` whose options have no weights of their own (an
  activation, an op without parameters): :func:`split_choice` finds it
  (``HybridTrainer(split_choice="auto")``, the default: the model's only such ``Choice``
  with 2 to :data:`SPLIT_MAX_OPTIONS` options, if the copies fit in
  :data:`SPLIT_MAX_BYTES`), or the user names one, or None turns it off;
- each option has its own copy of the model's state and of the weight optimizer's
  per-parameter state (:class:`FewShotSplit`); a weight step trains each option's
  paths on that option's copy (the batch's rows are split among the paths as before,
  so the examples and the forward passes are the same: each copy trains on its share),
  and an evaluation scores each candidate under its option's copy;
- once the final phase has selected its structure, the selected option's copy is the
  model's and the others go (the finalists' race, the late selection and the final
  steps then train one set of weights, as before). The copies start from the weights
  at the first step that uses them.

Measured on the acceptance suite (:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`, 13
optimizers, the trainer's defaults otherwise, against ``split_choice=None``; seeds
recovering the known structure, and (task, optimizer) rows meeting all three targets of
issue 17 per block of 5 seeds):

=============  ==========================  ==========================
task           seeds 0-4                   seeds 5-9
=============  ==========================  ==========================
mixed-inputs   14 -> 47 of 65 (0 -> 2)     20 -> 55 (0 -> 6)
many-inputs    48 -> 62 of 65 (5 -> 12)    47 -> 64 (1 -> 12)
=============  ==========================  ==========================

inputs-and-activation, the one other task with such a ``Choice``, stays at 65 of 65 (13
rows); the other seven have none or several, and do not change. Not solved:
on mixed-inputs most misses keep the fold and the linear term and close both inputs of
the product (no one move of the late selection opens a pair). A short run can starve a
copy: once the fair share is over, only the options the search still asks train, and on
a test's 120-step run the (1+lambda) EA kept one input of three on one seed of eight
(training every option in turn through the search: no better on the suite, mixed-inputs
99 against 102 seeds of 130).

Memory and time: one copy of the model's parameters, buffers and optimizer state per
option while the search runs (``"auto"`` splits only where the copies, with an optimizer
state twice their size, fit in :data:`SPLIT_MAX_BYTES`). A switch between options swaps
tensors and copies nothing, but a search step takes one forward pass and one optimizer
step per option it trains, and first copies those options, to undo the step if it fails
(a non-finite loss under ``on_nonfinite="raise"``, an interrupt). The forward examples
(``forward_examples``, issue 17's compute) do not change; the wall time of a whole
``fit`` on issue 17's model went 1.16 -> 1.83 ms per step at 2 thousand parameters, 3.13
-> 3.04 at 137 thousand and 19.1 -> 21.5 at 1.1 million (2 cores, one thread;
``python -m nondiff.benchmarks.hybrid_tasks.few_shot_overhead``). The model holds the
copy of the last option a weight step trained between steps (``evaluate`` puts back
the one it found), ``fit`` ends with the recommended structure's copy loaded, and the
copies follow the model to another device or dtype. A search that starts again after
a final phase (a later ``fit`` with an int ``final_steps``) makes its copies anew from
the weights then.

Several weightless ``Choice`` declarations: ``"auto"`` does not split (which one to
split on is not known); on a task written after this module (two hidden layers with an
activation ``Choice`` each, 12 gated inputs, an XOR of two; 13 optimizers x 3 seeds) one
set of weights recovered 39 of 39 runs and a split on the first ``Choice`` 38.

A known limit: an optimizer whose step size shrinks while every structure fits alike
(the CMA-ES family) can stop moving before a structure cost comes in; with the copies
the weights fit sooner, so on a test task's unbounded search (``search_compute=None``)
with a warm-up of 60 steps and a cost ramped in over the next 60, CMA-ES kept two noise
gates it closes with one set of weights; with the trainer's defaults (the bounded
search and its final selection) every optimizer finds that task's structure.

Source:
    - Y. Zhao, L. Wang, Y. Tian, R. Fonseca, T. Guo, "Few-shot neural architecture
      search", ICML 2021.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.few_shot import split_choice
    >>> from nondiff.hybrid.structure import Choice, Gates
    >>> model = nn.Sequential(Gates(4), nn.Linear(4, 8),
    ...                       Choice({"relu": nn.ReLU(), "identity": nn.Identity()}),
    ...                       nn.Linear(8, 2))
    >>> split_choice(model, "auto")
    '2'
    >>> split_choice(model, None) is None
    True
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .structure import Choice, named_structures

__all__ = ["SPLIT_MAX_BYTES", "SPLIT_MAX_OPTIONS", "FewShotSplit", "split_choice"]

SPLIT_MAX_OPTIONS = 4
"""The most options of a ``Choice`` that ``split_choice="auto"`` splits the weights on."""
SPLIT_MAX_BYTES = 2**30
"""The most bytes that ``split_choice="auto"`` lets the copies take: the model's state
and an optimizer state twice its size (Adam's two moments), once per option."""


def _free(choice: Choice) -> bool:
    """Whether no option of ``choice`` holds a parameter or a buffer."""
    return not any(True for option in choice.options for _ in
                   [*option.parameters(), *option.buffers()])


def split_choice(model: nn.Module, split: str | None) -> str | None:
    """The path of the ``Choice`` of ``model`` to split the weights on, or None.

    ``"auto"``: the model's only ``Choice`` whose options hold no parameter or buffer,
    with 2 to :data:`SPLIT_MAX_OPTIONS` options, when that many copies of the model's
    state, each with an optimizer state twice its size, stay within
    :data:`SPLIT_MAX_BYTES`; else None (also for a model with lazy modules). A path: that
    ``Choice``.

    Raises:
        ValueError: ``split`` is not None, ``"auto"`` or the path of a ``Choice`` of the
            model with at least two options; or a path, on a model with lazy modules not
            yet initialised.
    """
    choices = {name: decl for name, decl in named_structures(model) if isinstance(decl, Choice)}
    if split is None:
        return None
    state = [t for t in model.state_dict().values() if isinstance(t, torch.Tensor)]
    lazy = any(isinstance(t, nn.parameter.UninitializedTensorMixin) for t in state)
    if split == "auto":
        free = [name for name, decl in choices.items() if _free(decl)]
        if len(free) != 1 or lazy:  # lazy: its size is not known before its first pass
            return None
        options = len(choices[free[0]].options)
        size = sum(t.numel() * t.element_size() for t in state)  # x3: with Adam's moments
        return free[0] if 2 <= options <= SPLIT_MAX_OPTIONS and \
            3 * options * size <= SPLIT_MAX_BYTES else None
    if not isinstance(split, str) or split not in choices or len(choices[split].options) < 2:
        names = [name for name, decl in choices.items() if len(decl.options) >= 2]
        raise ValueError(f"split_choice must be None, 'auto' or the path of a Choice of the "
                         f"model with two options or more (one of {names}), got {split!r}; "
                         f"e.g. 'auto'")
    if lazy:
        raise ValueError(f"split_choice={split!r} needs the model's weights, and it has lazy "
                         f"modules not yet initialised; run one forward pass first (e.g. "
                         f"model(x[:2])), or pass split_choice=None")
    return split


class FewShotSplit:
    """The few-shot weights of :class:`~nondiff.hybrid.trainer.HybridTrainer` (a mixin: it
    reads the trainer's model, weight optimizer, ``split_on`` and ``split``).

    ``split`` is None until the first step that uses the copies, then ``{"copies": [a
    copy per option: its parameters, buffers and the weight optimizer's per-parameter
    states, as lists in the model's order; None for the option loaded], "loaded": the
    option the model holds, "done": bool, "on": the split ``Choice``'s path}``. A
    switch swaps tensors (``param.data``, the
    module's buffer, the optimizer's state entry): nothing is copied, and the model's
    structure (its declarations' values) and the live learning rates stay."""

    split_on: str | None
    split: dict[str, Any] | None

    def _split_active(self) -> bool:
        """Whether evaluations and weight steps use the per-option copies: a split
        ``Choice``, no engine, ``search_compute`` not ``"shared"`` (its fitness comes from
        the weight step's own pass) and no structure selected by the final phase yet."""
        return self.split_on is not None and self.engine is None and \
            self.search_compute != "shared" and not (self.split or {}).get("done")

    def _option(self, value: Mapping[str, Any]) -> int:
        """The index of the split ``Choice``'s option in the structure ``value``."""
        choices = self.space.spaces[self.split_on].choices
        return int(np.flatnonzero([c == value[self.split_on] for c in choices])[0])

    def _slots(self) -> tuple[list[nn.Parameter], list[tuple[nn.Module, str]]]:
        """The model's parameters and the (module, name) of each of its buffers, in a fixed
        order (a buffer two modules share is listed under both: ``model.to()`` converts
        it in each)."""
        buffers = [(module, name) for module in self.model.modules()
                   for name, buffer in module._buffers.items() if buffer is not None]
        return list(self.model.parameters()), buffers

    def _take(self) -> dict[str, list[Any]]:
        """The live copy: the tensors the model and the optimizer hold (not copied)."""
        params, buffers = self._slots()
        state = self.weight_optimizer.state
        return {"params": [p.data for p in params],
                "buffers": [module._buffers[name] for module, name in buffers],
                "moments": [state[p] if p in state else {} for p in params]}

    def _put(self, copy_: Mapping[str, list[Any]]) -> None:
        """``copy_``'s tensors into the model and the optimizer's state (not copied, unless
        the model has moved to another device or dtype since: then they follow it, as
        ``Optimizer.load_state_dict`` casts a state to its parameters; a tensor two slots
        share in ``copy_`` stays shared). Everything is cast before anything changes."""
        params, buffers = self._slots()
        if len(copy_["params"]) != len(params) or len(copy_["buffers"]) != len(buffers):
            raise ValueError("the few-shot copies do not fit the model's parameters and "
                             "buffers (was a module added or removed?); pass "
                             "split_choice=None or build a new trainer")
        cast: dict[int, torch.Tensor] = {}

        def like(tensor: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
            if id(tensor) not in cast:
                cast[id(tensor)] = _like(tensor, live)
            return cast[id(tensor)]
        tensors = [like(t, p.data) for p, t in zip(params, copy_["params"], strict=True)]
        held = [like(t, module._buffers[name])
                for (module, name), t in zip(buffers, copy_["buffers"], strict=True)]
        fused = {id(p): bool(group.get("fused") or group.get("capturable"))
                 for group in self.weight_optimizer.param_groups for p in group["params"]}
        moments = [{k: _step_like(v, p.data, fused.get(id(p), False)) if k == "step"
                    else like(v, p.data) if isinstance(v, torch.Tensor) else v
                    for k, v in m.items()}
                   for p, m in zip(params, copy_["moments"], strict=True)]
        for p, tensor in zip(params, tensors, strict=True):
            p.data = tensor
        for (module, name), tensor in zip(buffers, held, strict=True):
            module._buffers[name] = tensor
        state = self.weight_optimizer.state
        for p, m in zip(params, moments, strict=True):
            if m:
                state[p] = m
            else:
                state.pop(p, None)

    def _split_start(self) -> None:
        """The copies, made from the model's weights and optimizer state, once."""
        if self.split is None:
            count = len(self.space.spaces[self.split_on].choices)
            live = self._take()
            self.split = {"copies": [None] + [_cloned(live) for _ in range(count - 1)],
                          "loaded": 0, "done": False, "on": self.split_on}

    def _use_option(self, option: int) -> None:
        """The copy of ``option`` into the model and the weight optimizer (the one loaded
        before goes back to its place)."""
        self._split_start()
        loaded = self.split["loaded"]
        if loaded == option:
            return
        copies = list(self.split["copies"])
        copies[loaded] = self._take()
        self._put(copies[option])
        copies[option] = None
        self.split = {**self.split, "copies": copies, "loaded": option}

    def _split_state(self, split: Any) -> dict[str, Any] | None:
        """A stored ``split``, checked against this trainer: None, one that is done, or
        a copy per option of its split ``Choice``.

        Raises:
            ValueError: it is none of these (another model or ``split_choice``).
        """
        if split is None:
            return None
        if isinstance(split, Mapping) and split.get("done") is True and \
                set(split) <= {"copies", "loaded", "done", "on"}:
            return {"on": self.split_on, **split}  # closed: nothing of it is used
        if not isinstance(split, Mapping) or set(split) != {"copies", "loaded", "done", "on"}:
            got = sorted(split) if isinstance(split, Mapping) else type(split).__name__
            raise ValueError(f"split holds {got}, not few-shot weights with keys copies, "
                             f"loaded, done and on (the split Choice; a state from before "
                             f"it was recorded cannot say which Choice its copies are "
                             f"for): start afresh from a new checkpoint")
        count = None if self.split_on is None else \
            len(self.space.spaces[self.split_on].choices)
        if split["on"] != self.split_on or count != len(split["copies"]):
            raise ValueError(f"this HybridTrainer state dict holds few-shot weights split on "
                             f"{split['on']!r} ({len(split['copies'])} options), but the "
                             f"trainer splits on {self.split_on!r} ({count} options); build "
                             f"the trainer with the same model and split_choice")
        params, buffers = self._slots()
        for copy_ in split["copies"]:
            if copy_ is None:
                continue
            if [tuple(t.shape) for t in copy_["params"]] != [tuple(p.shape) for p in params] \
                    or len(copy_["buffers"]) != len(buffers) or \
                    len(copy_["moments"]) != len(params):
                raise ValueError("this HybridTrainer state dict holds few-shot weights of "
                                 "another model (their shapes differ); build the trainer "
                                 "with the same model")
        return dict(split)

    def _close_split(self, value: Mapping[str, Any]) -> None:
        """The copy of ``value``'s option is the model's from now on; the others go."""
        if not self._split_active():
            return
        self._use_option(self._option(value))
        self.split = {"copies": [], "loaded": None, "done": True, "on": self.split_on}

    def _split_groups(self, values: Sequence[Mapping[str, Any]]) -> dict[int, list[int]]:
        """The indices of ``values`` by option, in order of first appearance."""
        groups: dict[int, list[int]] = {}
        for i, value in enumerate(values):
            groups.setdefault(self._option(value), []).append(i)
        return groups

    def _split_evaluate(self, values: list[Mapping[str, Any]], x: Any, y: Any) -> np.ndarray:
        """Each structure of ``values`` scored under its option's copy (one group of
        candidates per option, each scored as before)."""
        for value in values:  # a bad structure: the space's ValueError, before anything
            self.space.encode(value)
        out = np.zeros(len(values), dtype=np.float64)
        self._split_start()
        loaded = self.split["loaded"]
        try:
            for option, idx in self._split_groups(values).items():
                self._use_option(option)
                out[idx] = self._evaluate_shared([values[i] for i in idx], x, y)
        finally:
            self._use_option(loaded)  # the model keeps its weights too
        return out

    def _split_weight_step(self, x: Any, y: Any, paths: list[Mapping[str, Any]],
                           rows: list[int]) -> tuple[float, bool]:
        """A weight step in which each option's paths train that option's copy: the
        paths sorted by option (stably), the batch's rows in order, one step per option
        on its rows. A step that raises (a non-finite loss under
        ``on_nonfinite="raise"``, an interrupt) puts every copy back as before it; under
        ``"skip"`` only the options whose loss is not finite skip it, and the step counts
        as skipped."""
        order = sorted(range(len(paths)), key=lambda j: self._option(paths[j]))
        paths, rows = [paths[j] for j in order], [rows[j] for j in order]
        groups = self._split_groups(paths)
        self._split_start()
        loaded = self.split["loaded"]
        before = {o: _cloned(self._take() if o == loaded else self.split["copies"][o])
                  for o in groups} if len(groups) > 1 else None  # put back if it fails
        n, start, total, skipped = sum(rows), 0, 0.0, False
        try:
            for option, idx in groups.items():
                r = sum(rows[j] for j in idx)
                self._use_option(option)
                loss, skip = self._shared_weight_step(
                    x[start:start + r], y[start:start + r], [paths[j] for j in idx],
                    [rows[j] for j in idx])
                total += loss * r / n
                skipped = skipped or skip
                start += r
        except BaseException:  # a non-finite loss, an interrupt, out of memory
            if before is not None:
                copies = list(self.split["copies"])
                copies[self.split["loaded"]] = self._take()
                for option, copy_ in before.items():
                    copies[option] = copy_
                self._put(copies[loaded])
                copies[loaded] = None
                self.split = {**self.split, "copies": copies, "loaded": loaded}
            raise
        return total, skipped


def _cloned(copy_: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    """A copy of ``copy_`` (see :meth:`FewShotSplit._take`) with tensors of its own (a
    tensor it holds twice, cloned once)."""
    memo: dict[int, Any] = {}

    def clone(value: Any) -> Any:
        if id(value) not in memo:
            memo[id(value)] = value.detach().clone() if isinstance(value, torch.Tensor) \
                else copy.deepcopy(value)
        return memo[id(value)]
    return {"params": [clone(t) for t in copy_["params"]],
            "buffers": [clone(t) for t in copy_["buffers"]],
            "moments": [{k: clone(v) for k, v in m.items()} for m in copy_["moments"]]}


def _like(tensor: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """``tensor`` on ``live``'s device, and in its dtype when both are floating point."""
    dtype = live.dtype if tensor.is_floating_point() and live.is_floating_point() \
        else tensor.dtype
    if tensor.device == live.device and tensor.dtype == dtype:
        return tensor
    return tensor.to(device=live.device, dtype=dtype)


def _step_like(step: Any, live: torch.Tensor, fused: bool) -> Any:
    """An optimizer's ``step`` entry for a parameter like ``live``: a float32 tensor on its
    device for a fused or capturable optimizer (as ``Optimizer.load_state_dict`` puts
    it), else as it is."""
    if fused and isinstance(step, torch.Tensor):
        return step.to(dtype=torch.float32, device=live.device)
    return step
