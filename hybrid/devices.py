"""Where a model lives, and moving its batches there: one rule for every hybrid part.

Everything in :mod:`nondiff.hybrid` and the learning tasks of :mod:`nondiff.problems`
runs on the device of the model's parameters: :func:`device_of` finds it (the first
parameter, else the first buffer, else the CPU; :func:`placed_device` says ``None``
there, for a module that runs wherever its input is), :func:`to_device` moves a batch there
once per step (tensors nested in tuples, lists and dicts; ``non_blocking`` when the
source is pinned, so a pinned host batch overlaps with the work already queued), and
:func:`draw_on` runs a random draw with a generator of another device (a CPU
``torch.Generator`` for a CUDA model) and moves the result, so a seeded CPU stream
stays the same stream wherever the model is. :func:`copy_state` copies a state dict
whose tensors no longer follow the live ones (kept beside the model, or on the host).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.devices import device_of, to_device
    >>> device_of(nn.Linear(2, 3)), device_of(nn.ReLU())
    (device(type='cpu'), device(type='cpu'))
    >>> x, y = to_device((torch.ones(2, 2), torch.zeros(2)), device_of(nn.Linear(2, 3)))
    >>> x.device.type, y.device.type
    ('cpu', 'cpu')
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = ["copy_state", "device_of", "draw_on", "placed_device", "to_device"]

T = TypeVar("T")


def device_of(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (else first buffer; else the CPU)."""
    return placed_device(module) or torch.device("cpu")


def placed_device(module: nn.Module) -> torch.device | None:
    """The device of ``module``'s first parameter, else of its first buffer; ``None`` for
    a module that holds no tensor (``nn.ReLU``): it runs wherever its input is."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"device_of needs an nn.Module, got {type(module).__name__}; "
                         "pass the model whose parameters set the device")
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return None


def to_device(batch: T, device: torch.device | str) -> T:
    """``batch`` with every tensor in it (nested in tuples, lists, dicts) on ``device``.

    A tensor already there is returned as is (no copy); a pinned one is copied with
    ``non_blocking=True``. Anything else passes through unchanged.
    """
    if isinstance(batch, torch.Tensor):
        if batch.device == torch.device(device):
            return batch
        return batch.to(device, non_blocking=batch.device.type == "cpu" and batch.is_pinned())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(to_device(b, device) for b in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return type(batch)({k: to_device(v, device) for k, v in batch.items()})  # type: ignore
    return batch


def draw_on(device: torch.device, generator: torch.Generator | None,
            draw: Callable[[torch.device], torch.Tensor]) -> torch.Tensor:
    """``draw(d)`` on the generator's device ``d`` (``device`` without one), moved to
    ``device``: a CPU generator keeps its stream for a model on another device."""
    source = device if generator is None else generator.device
    return draw(source).to(device)


def copy_state(state: Mapping[str, Any], device: torch.device | str | None = None
               ) -> dict[str, Any]:
    """A copy of a module's state dict whose tensors do not follow the live ones (on
    ``device``, e.g. ``"cpu"`` to keep it on the host; default: where each is), and
    whose extra states (a declaration's value) are deep copies too, where they are (a
    tensor inside an extra state is not moved)."""
    return {k: (v.detach().clone() if device is None else v.detach().to(device, copy=True))
            if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in state.items()}
