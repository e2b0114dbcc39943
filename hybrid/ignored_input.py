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
structure it returns on the last batch it trained on (one forward pass of at most
:data:`CHECK_ROWS` rows, in eval mode, without gradients; not counted in
``forward_examples``, which counts the search and the training). If every row gets the
same output, it warns with :func:`ignored_input_message`. It does not override the
structure: under the fitness the user gave, it is the best the search found.

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

__all__ = ["CHECK_ROWS", "ignored_input_message", "ignores_input"]

CHECK_ROWS = 64
"""The rows of the last batch that :func:`ignores_input` runs the model on (at most)."""


def _tensors(output: Any) -> list[torch.Tensor]:
    """The tensors of a model's output: a tensor, or those in a tuple, list or dict."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for t in output if isinstance(t, torch.Tensor)]
    return []


@torch.no_grad()
def ignores_input(model: nn.Module, x: Any, rows: int = CHECK_ROWS) -> bool:
    """Whether ``model`` (in eval mode, its mode restored) gives each of the first
    ``rows`` rows of ``x`` the same output, to within float rounding.

    False when that cannot be told: ``x`` not a tensor or under two rows, or an output
    without tensors of one row per input row.
    """
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] < 2:
        return False
    was_training = model.training
    model.eval()
    try:
        outputs = _tensors(model(x[:rows]))
    finally:
        model.train(was_training)
    n = min(rows, x.shape[0])
    outputs = [t for t in outputs if t.dim() > 0 and t.shape[0] == n and t.is_floating_point()]
    if not outputs:
        return False
    return all(bool(torch.allclose(t, t[:1].expand_as(t), rtol=1e-5, atol=1e-6))
               for t in outputs)


def _shown(value: Any) -> str:
    """A structure's value in one short line: the open entries of gates."""
    if isinstance(value, (np.ndarray, list, tuple)) and len(value) and \
            all(isinstance(v, (bool, np.bool_)) for v in value):
        opened = [int(i) for i in np.flatnonzero(np.asarray(value, dtype=bool))]
        return f"open {opened}" if opened else "none open"
    return repr(value)


def ignored_input_message(structure: Mapping[str, Any], cost: bool) -> str:
    """The warning :meth:`~nondiff.hybrid.trainer.HybridTrainer.fit` gives when its
    structure ignores the input (``cost``: whether the trainer has a structure cost)."""
    shown = ", ".join(f"{name}={_shown(value)}" for name, value in structure.items())
    if len(shown) > 200:
        shown = shown[:197] + "..."
    why = ("The structure cost outweighed what the shared weights had learned by then; "
           "try more epochs, a smaller cost_weight or a later cost_start" if cost else
           "No structure the search tried did better with its input; try more epochs or "
           "check the structure space")
    return (f"fit returns a structure under which the model gives every input row the same "
            f"output, so it predicts no better than a constant: {shown}. {why}")
