"""Row blocks of batched model inputs and outputs.

:class:`~nondiff.hybrid.trainer.HybridTrainer` runs several structures in one forward
pass (:func:`~nondiff.hybrid.structure.batched_structures`): the batch repeated once per
structure, or split among them in consecutive blocks of rows. These helpers repeat an
input and cut a (nested: tensors, tuples, lists, mappings) model output back into the
blocks.

Example:
    >>> import torch
    >>> from nondiff.hybrid.blocks import block, repeat, rows, slice_rows
    >>> x = torch.arange(3.0).reshape(3, 1)
    >>> rows(repeat(x, 2))
    6
    >>> out = {"y": repeat(x, 2), "aux": (repeat(x, 2) * 10,)}
    >>> block(out, 1, 3)["y"].flatten().tolist()
    [0.0, 1.0, 2.0]
    >>> slice_rows(out, 2, 4)["aux"][0].flatten().tolist()
    [20.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .structure import StructureBatchError

__all__ = ["block", "detached", "leaves", "repeat", "rows", "slice_rows"]


def rows(x: Any) -> int:
    """The number of rows (the first dimension) of a batch."""
    return int(x.shape[0])


def block(output: Any, i: int, n: int) -> Any:
    """Rows ``i * n .. (i + 1) * n`` of every tensor in a (nested) model output."""
    return slice_rows(output, i * n, (i + 1) * n)


def slice_rows(output: Any, start: int, stop: int) -> Any:
    """Rows ``start .. stop`` of every tensor in a (nested) model output."""
    if isinstance(output, torch.Tensor):
        return output[start:stop]
    if isinstance(output, (tuple, list)):
        return type(output)(slice_rows(o, start, stop) for o in output)
    if isinstance(output, Mapping):
        return {key: slice_rows(value, start, stop) for key, value in output.items()}
    raise StructureBatchError(f"cannot split a model output of type {type(output).__name__}")


def leaves(output: Any) -> list[Any]:
    """Every leaf of a (nested) model output or target: its tensors, and whatever else
    sits where a tensor could (a number, None), in order."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [leaf for item in output for leaf in leaves(item)]
    return [output]


def detached(output: Any) -> Any:
    """A (nested) model output with every tensor detached."""
    if isinstance(output, torch.Tensor):
        return output.detach()
    if isinstance(output, (tuple, list)):
        return type(output)(detached(o) for o in output)
    if isinstance(output, Mapping):
        return {key: detached(value) for key, value in output.items()}
    return output


def repeat(x: Any, k: int) -> Any:
    """A tensor input repeated ``k`` times along its rows (one block per structure)."""
    if isinstance(x, torch.Tensor):
        return x.repeat(k, *([1] * (x.dim() - 1)))
    raise StructureBatchError("only tensor inputs can be repeated for a batched evaluation")
