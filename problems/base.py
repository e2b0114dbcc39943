"""The `Problem` contract shared by every benchmark problem.

A problem evaluates a whole population in one call: ``problem(x)`` takes an
``(n, dim)`` batch (numpy array or torch tensor) and returns ``(n,)`` fitness in
the same library; a single ``(dim,)`` point gives a 0-d result. Problems are
minimized unless ``maximize`` is true.

Example:
    >>> from nondiff import problems
    >>> p = problems.get("sphere", dim=3)
    >>> float(p(p.x_opt[None])[0]) == p.f_opt
    True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from nondiff.optim.arrays import Array

if TYPE_CHECKING:
    from nondiff.optim.spaces import Space


class Problem(ABC):
    """A batched objective with a search domain and, when known, its optimum.

    Subclasses set ``name``, ``dim``, ``lower``/``upper`` (arrays of shape
    ``(dim,)`` or None), ``f_opt``/``x_opt`` (or None) and implement
    :meth:`evaluate` on a float64 torch batch. Problems with a typed search space
    (the discrete ones) set ``space`` to an :mod:`nondiff.optim.spaces` Space of ``dim``
    entries; box-bounded continuous problems leave it None.
    """

    name: str = "problem"
    maximize: bool = False
    space: Space | None = None

    def __init__(self, dim: int) -> None:
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.lower: np.ndarray | None = None
        self.upper: np.ndarray | None = None
        self.f_opt: float | None = None
        self.x_opt: np.ndarray | None = None
        self.evaluations = 0

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(lower, upper)`` of the search domain, or None when unbounded."""
        if self.lower is None or self.upper is None:
            return None
        return self.lower, self.upper

    @abstractmethod
    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """Fitness of a ``(n, dim)`` float tensor as an ``(n,)`` tensor."""

    def __call__(self, x: Array) -> Array:
        is_numpy = not isinstance(x, torch.Tensor)
        batch = torch.as_tensor(np.asarray(x, dtype=np.float64)) if is_numpy else x
        single = batch.ndim == 1
        if single:
            batch = batch[None]
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(
                f"{self.name} expects a batch of shape (n, {self.dim}) or a point of shape "
                f"({self.dim},), got shape {tuple(batch.shape)}"
            )
        if not batch.is_floating_point():
            batch = batch.to(torch.float64)
        values = self.evaluate(batch)
        self.evaluations += batch.shape[0]
        if single:
            values = values[0]
        return values.numpy() if is_numpy else values

    # ----- state: what a checkpoint holds so that a resumed run is exact ------------
    def state_dict(self) -> dict[str, Any]:
        """The problem's dynamic state as a plain dict (counters; subclasses add what
        their fitness depends on, e.g. episode seeds and observation statistics).
        ``minimize(..., checkpoint=...)`` saves and restores it with the optimizer."""
        return {"problem": type(self).__name__, "evaluations": int(self.evaluations)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; ValueError on another problem's or a damaged state."""
        self._check_state(state, {"evaluations"})
        self.evaluations = _count(state, "evaluations")

    def _check_state(self, state: Mapping[str, Any], keys: set[str]) -> None:
        if not isinstance(state, Mapping) or state.get("problem") != type(self).__name__:
            got = state.get("problem") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not a state of {type(self).__name__} (got {got!r}); load the "
                             "state of the same problem")
        if set(state) != keys | {"problem"}:
            raise ValueError(f"{type(self).__name__} state needs keys {sorted(keys)}, got "
                             f"{sorted(set(state) - {'problem'})}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def _count(state: Mapping[str, Any], key: str) -> int:
    """``state[key]`` as a count: a non-negative integer, else a ValueError naming it."""
    value = state[key]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"state field {key!r} must be a non-negative integer, got {value!r}")
    return int(value)
