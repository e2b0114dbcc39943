"""Array formats: the library, dtype and device a user works in, and conversions.

Optimizers compute in their own backend (torch or numpy); :class:`ArrayFormat`
turns their arrays into the user's (those of ``x0``) and back, detached from any
autograd graph.

Example:
    >>> import torch
    >>> from nondiff.optim.arrays import ArrayFormat
    >>> fmt = ArrayFormat.of(torch.zeros(3, dtype=torch.float32))
    >>> fmt.to_user([1.0, 2.0]).dtype
    torch.float32
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

Array = Any  # numpy.ndarray | torch.Tensor

__all__ = ["Array", "ArrayFormat", "copy_array"]


@dataclasses.dataclass
class ArrayFormat:
    """The array library, dtype and device a user works in (those of ``x0``)."""

    library: str  # "numpy" or "torch"
    dtype: Any
    device: torch.device

    @classmethod
    def of(cls, x0: Array) -> ArrayFormat:
        if isinstance(x0, torch.Tensor):
            dtype = x0.dtype if x0.is_floating_point() else torch.float64
            return cls("torch", dtype, x0.device)
        arr = np.asarray(x0)
        dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float64)
        return cls("numpy", dtype, torch.device("cpu"))

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.library == "torch":
            return self.dtype
        return torch.from_numpy(np.zeros(0, dtype=self.dtype)).dtype

    def to_torch(self, x: Array, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or self.torch_dtype
        if isinstance(x, torch.Tensor):  # detached: optimizers never join an autograd graph
            return x.detach().to(device=self.device, dtype=dtype)
        return torch.as_tensor(np.asarray(x), device=self.device).to(dtype)

    def to_numpy(self, x: Array) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy().astype(np.float64, copy=False)
        return np.asarray(x, dtype=np.float64)

    def to_user(self, x: Array) -> Array:
        """Convert an internal array (torch or numpy) to the user's format."""
        if self.library == "torch":
            return self.to_torch(x, self.dtype)
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        return np.asarray(x).astype(self.dtype, copy=False)


def copy_array(array: Array) -> Array:
    """A copy of a numpy array or torch tensor (never a view of the input)."""
    return array.clone() if isinstance(array, torch.Tensor) else np.array(array, copy=True)
