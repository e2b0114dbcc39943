"""Benchmark problems behind one :class:`Problem` contract, and their registry.

Problems are registered by name with a *kind* (``"continuous"`` now; ``"discrete"``,
``"control"``, ``"learning"`` and ``"hybrid"`` are reserved for the other modules)
and built with :func:`get`. Names are case-insensitive and ``_`` reads as ``-``.

Example:
    >>> from nondiff import problems
    >>> "rastrigin" in problems.names("continuous")
    True
    >>> f = problems.get("rastrigin", dim=5, instance=1)
    >>> f.dim, f.instance, f.x_opt.shape
    (5, 1, (5,))
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nondiff.problems.base import Problem
from nondiff.problems.continuous import FUNCTIONS, ContinuousProblem
from nondiff.problems.discrete import DISCRETE, DiscreteProblem
from nondiff.problems.mixed import MixedSphere
from nondiff.problems.sorting_networks import SortingNetwork

__all__ = [
    "KINDS", "ContinuousProblem", "DiscreteProblem", "Problem", "canonical_name", "get", "names",
    "register",
]  # fmt: skip

KINDS: tuple[str, ...] = ("continuous", "discrete", "control", "learning", "hybrid")
"""The problem kinds a registered name can have."""


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Problem]
    kind: str


_REGISTRY: dict[str, _Entry] = {}


def canonical_name(name: str) -> str:
    """The registry key of ``name``: stripped, lower-case, ``_`` read as ``-``.

    Example:
        >>> from nondiff import problems
        >>> problems.canonical_name(" Styblinski_Tang ")
        'styblinski-tang'
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"problem name must be a non-empty string, got {name!r}")
    return name.strip().lower().replace("_", "-")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown problem kind {kind!r}; expected one of {list(KINDS)}")


def register(
    name: str, factory: Callable[..., Problem], kind: str = "continuous", *, overwrite: bool = False
) -> None:
    """Register ``factory`` under ``name``.

    Args:
        name: problem name (stored lower-case, ``_`` replaced by ``-``).
        factory: callable returning a :class:`Problem`; :func:`get` calls it as
            ``factory(dim=dim, instance=instance, **kwargs)`` (``dim`` omitted if None).
        kind: one of :data:`KINDS`.
        overwrite: replace an existing registration instead of raising.

    Raises:
        ValueError: bad kind, non-callable factory, or ``name`` taken and not ``overwrite``.
    """
    key = canonical_name(name)
    _check_kind(kind)
    if not callable(factory):
        raise ValueError(f"factory for {key!r} must be callable, got {factory!r}")
    if key in _REGISTRY and not overwrite:
        raise ValueError(f"problem {key!r} is already registered; pass overwrite=True")
    _REGISTRY[key] = _Entry(factory, kind)


def names(kind: str | None = None) -> list[str]:
    """Sorted registered names, all or only those of ``kind`` (one of :data:`KINDS`)."""
    if kind is None:
        return sorted(_REGISTRY)
    _check_kind(kind)
    return sorted(key for key, entry in _REGISTRY.items() if entry.kind == kind)


def get(name: str, dim: int | None = None, instance: int = 0, **kwargs: Any) -> Problem:
    """Build the registered problem ``name``.

    Args:
        name: a registered name (see :func:`names`); case-insensitive.
        dim: search-space dimension, when the problem takes one.
        instance: 0 for the canonical problem, >= 1 for a seeded variant.
        **kwargs: passed to the factory (e.g. ``rotate=False`` for continuous ones).

    Raises:
        ValueError: unknown name (the message suggests the closest registered names).

    Example:
        >>> from nondiff import problems
        >>> problems.get("sphere", dim=2).f_opt
        0.0
    """
    key = canonical_name(name)
    entry = _REGISTRY.get(key)
    if entry is None:
        close = difflib.get_close_matches(key, _REGISTRY, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown problem {name!r}.{hint} "
            "Call problems.names() (or problems.names(kind)) for all registered names."
        )
    if dim is not None:
        kwargs["dim"] = dim
    return entry.factory(instance=instance, **kwargs)


for _name, _cls in FUNCTIONS.items():
    register(_name, _cls, kind="continuous")
for _name, _cls in {**DISCRETE, SortingNetwork.name: SortingNetwork,
                    MixedSphere.name: MixedSphere}.items():
    register(_name, _cls.create, kind="discrete")
del _name, _cls

from nondiff.problems.control import control_problems  # noqa: E402  (gymnasium tasks, batched)

for _name, _make in control_problems().items():
    register(_name, _make, kind="control")
del _name, _make
