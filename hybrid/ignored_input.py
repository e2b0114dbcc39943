"""A found structure under which the model ignores its input: detected, and named.

A structure search can end on a structure that cuts the model off from its input: every
input gate closed, or a ``Choice`` of a branch that reads none of it. The model then
gives every row the same output and predicts no better than a constant, however well
its weights train. With a structure cost this is the cost's optimum whenever the shared
weights learned too little for any input to be worth it. Measured (issue 17, on a task
outside the acceptance suite: ``1[x_4 x_19 > 0]`` among 32 inputs, 6 epochs of batches
of 32, a cost of 0.02 per open gate, 13 optimizers x 5 seeds): 5 of 65 runs ended with
every gate closed, at 0.49-0.52 test accuracy. In those runs the known pair's loss under
the shared weights was 0.64-0.68 when the cost came in, against 0.693 for a constant
prediction. None of the search's structures held the pair, and every structure it had
was worth less than its cost.

:meth:`~nondiff.hybrid.trainer.HybridTrainer.fit` checks the
structure it returns on the latest of the largest batches it trained on (one forward
pass of at most :data:`CHECK_ROWS` rows, in eval mode, without gradients; not counted in
``forward_examples``, which counts the search and the training; a short last batch of
equal rows tells nothing). If every row gets the same output (to within float rounding:
:data:`ROUNDING`), it warns with :func:`ignored_input_message`. It does not override the
structure: under the fitness the user gave, it is the best the search found. Only a
model of one input tensor is checked, and a check that fails (a model that cannot run
in eval mode) is skipped: the training is done by then.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.ignored_input import ignores_input
    >>> from nondiff.hybrid.structure import Gates, set_structure
    >>> model = nn.Sequential(Gates(3), nn.Linear(3, 2))
    >>> x = torch.randn(8, 3)
    >>> ignores_input(model, x)
    False
    >>> set_structure(model, {"0": [False, False, False]})
    >>> ignores_input(model, x)  # every gate closed: the bias alone
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .blocks import leaves
from .devices import device_of, to_device

__all__ = ["CHECK_ROWS", "LEAST_ROWS", "ROUNDING", "ignored_input_message", "ignores_input"]

CHECK_ROWS = 64
"""The rows of a batch that :func:`ignores_input` runs the model on (at most)."""
LEAST_ROWS = 8
"""The fewest rows :func:`ignores_input` judges on: fewer tell little (a last batch of
two equal rows gets two equal outputs from any model)."""
ROUNDING = 8
"""Outputs count as the same when each entry differs across the rows by at most this
many machine epsilons of its dtype, relative to that entry's largest magnitude (float
rounding, not closeness: a probability of 1e-18 and one of 1e-35 differ)."""


def _same_rows(t: torch.Tensor) -> bool:
    """Whether every row of ``t`` equals its first: exactly for integers and booleans,
    to within :data:`ROUNDING` for floats."""
    if not t.is_floating_point():
        return bool((t == t[:1]).all())
    t = t.detach().float() if t.dtype in (torch.float16, torch.bfloat16) else t.detach()
    t = t.reshape(t.shape[0], -1)  # each output entry against its own scale
    scale = t.abs().amax(dim=0)
    spread = (t - t[:1]).abs().amax(dim=0)
    return bool((spread <= ROUNDING * torch.finfo(t.dtype).eps * scale).all())


@torch.no_grad()
def ignores_input(model: nn.Module, x: Any, rows: int = CHECK_ROWS) -> bool:
    """Whether ``model`` (in eval mode, its mode restored) gives each of the first
    ``rows`` rows of ``x`` (moved to the model's device) the same output, to within float
    rounding (:data:`ROUNDING`).

    False when that cannot be told: ``x`` not a tensor (a model of several inputs is
    not checked), fewer than :data:`LEAST_ROWS` rows or those rows all alike, or an
    output without floating tensors of one row per input row.

    Raises:
        ValueError: ``rows`` not an int >= :data:`LEAST_ROWS`.

    >>> from torch import nn
    >>> ignores_input(nn.Linear(3, 2), torch.randn(16, 3))
    False
    >>> ignores_input(nn.Linear(3, 2), torch.ones(16, 3))  # rows all alike: cannot tell
    False
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < LEAST_ROWS:
        raise ValueError(f"rows must be an int >= {LEAST_ROWS} (the rows to compare "
                         f"outputs on), got {rows!r}; e.g. rows={CHECK_ROWS}")
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] < LEAST_ROWS:
        return False
    x = to_device(x[:rows], device_of(model))
    if _same_rows(x):
        return False
    was_training = model.training
    model.eval()
    try:
        outputs = [t for t in leaves(model(x)) if isinstance(t, torch.Tensor)]
    finally:
        model.train(was_training)
    outputs = [t for t in outputs
               if t.dim() > 0 and t.shape[0] == x.shape[0] and t.is_floating_point()]
    return bool(outputs) and all(_same_rows(t) for t in outputs)


def _shown(value: Any) -> str:
    """A structure's value in one short line: the open entries of gates."""
    if isinstance(value, (np.ndarray, list, tuple)) and len(value) and \
            all(isinstance(v, (bool, np.bool_)) for v in value):
        opened = [int(i) for i in np.flatnonzero(np.asarray(value, dtype=bool))]
        return f"open {opened}" if opened else "none open"
    return repr(value)


def ignored_input_message(structure: Mapping[str, Any], cost: bool) -> str:
    """The warning :meth:`~nondiff.hybrid.trainer.HybridTrainer.fit` gives when its
    structure ignores the input (``cost``: whether a structure cost was on, at a weight
    above 0, when ``fit`` ended).

    >>> ignored_input_message({"gates": [False, False], "act": "relu"}, cost=True)[:64]
    'fit returns a structure under which the model gives every row of'
    """
    shown = ", ".join(f"{name}={_shown(value)}" for name, value in structure.items())
    if len(shown) > 200:
        shown = shown[:197] + "..."
    why = ("The structure cost may have outweighed what the shared weights had learned; "
           "try more epochs, a larger learning rate of the weight optimizer (the "
           "default Adam's is 1e-3), a smaller cost_weight or a later cost_start" if cost
           else "The search may have found no structure that did better with its input, "
           "or the weights may have stopped reading it (check the loss); try more epochs, "
           "a larger learning rate of the weight optimizer (the default Adam's is 1e-3) "
           "or check the structure space")
    return (f"fit returns a structure under which the model gives every row of its last "
            f"batch the same output, so it predicts no better than a constant: {shown}. "
            f"{why}")
