"""Plain state: what ``state_dict()`` is made of.

A state dict holds only tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(weights_only=True)`` and never unpickles code. Optimizer state
dataclasses and numpy arrays are turned into that form and back.

Example:
    >>> import numpy as np
    >>> from nondiff.optim.state import from_plain, to_plain
    >>> plain = to_plain({"mean": np.zeros(2)})
    >>> type(plain["mean"]).__name__
    'Tensor'
    >>> from_plain({"mean": np.ones(2)}, plain)["mean"]
    array([0., 0.])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def to_plain(value: Any) -> Any:
    """Turn state into plain tensors, scalars, strings, lists and dicts.

    numpy arrays become torch tensors, so the result loads with
    ``torch.load(weights_only=True)``.
    """
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, copy=True))
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def from_plain(template: Any, value: Any) -> Any:
    """Inverse of :func:`to_plain`, guided by a ``template`` of the wanted types."""
    if isinstance(template, np.ndarray):
        arr = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        return np.array(arr, dtype=template.dtype, copy=True)
    if isinstance(template, torch.Tensor):
        return torch.as_tensor(value).to(dtype=template.dtype, device=template.device).clone()
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        fields = {f.name for f in dataclasses.fields(template)}
        unknown = set(value) - fields
        if unknown:
            raise ValueError(f"unknown state keys {sorted(unknown)} for {type(template).__name__}")
        kwargs = {
            name: from_plain(getattr(template, name), value[name]) if name in value
            else getattr(template, name)  # back-fill keys added after the checkpoint
            for name in fields
        }
        return type(template)(**kwargs)
    if isinstance(template, Mapping) and isinstance(value, Mapping):
        return {k: from_plain(template.get(k), v) for k, v in value.items()}
    return value


def plain_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        try:
            return bool(torch.equal(torch.as_tensor(a), torch.as_tensor(b)))
        except (TypeError, RuntimeError):
            return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
