"""The search space of a study: named leaves, configs as encoded rows, PBT's explore step.

A study searches a :class:`~nondiff.optim.spaces.Product` (or a dict ``name -> leaf``,
nested dicts for nested products). Every leaf has a name, because ``train`` reads its
config by name; conditional choices are nested products whose branch ``train`` picks,
e.g. ``{"optimizer": Categorical(["sgd", "adam"]), "sgd": {"momentum": Real(0, 0.99)}}``.

A config is stored as its encoded row (the floats the optimizer searched), so any
value a ``Categorical`` holds (a string, a class, a tuple) round-trips exactly through
``space.decode``; leaves are named by their path, ``"sgd.momentum"``.

:func:`perturb` is the explore step of population-based training (Jaderberg et al.
2017): reals times 0.8 or 1.2, integers and categoricals one step to a neighbour,
one bit of a bit string flipped, two neighbours of a permutation swapped.

Optimizers of discrete spaces only (``ga``, ``one-plus-lambda``) search a :class:`Grid`
version of the space: each real leaf becomes an ``Integer(0, levels - 1)`` index into
``levels`` points evenly spaced in its encoding (log-spaced for ``log=True``).

Example:
    >>> import numpy as np
    >>> from nondiff.optim.spaces import Categorical, Integer, Real
    >>> from nondiff.hybrid.tune.space import leaf_names, perturb, study_space
    >>> space = study_space({"lr": Real(1e-4, 1e-1, log=True), "width": Integer(8, 64),
    ...                      "act": Categorical(["relu", "tanh", "gelu"])})
    >>> leaf_names(space)
    ['lr', 'width', 'act']
    >>> row = space.encode({"lr": 0.01, "width": 16, "act": "tanh"})
    >>> new = space.decode(perturb(space, row, np.random.default_rng(0)))
    >>> round(new["lr"] / 0.01, 6) in (0.8, 1.2), abs(new["width"] - 16), new["act"] != "tanh"
    (True, 1, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from nondiff.optim.spaces import Binary, Categorical, Integer, Permutation, Product, Real, Space

__all__ = ["GRID_LEVELS", "Grid", "leaf_names", "perturb", "study_space"]

GRID_LEVELS = 16
"""Points per real leaf when an optimizer of discrete spaces searches the study."""


def study_space(space: Any) -> Product:
    """``space`` as a :class:`Product` with named leaves, or a ValueError saying how.

    Args:
        space: a ``Product`` or a dict ``name -> leaf`` (values may be dicts: nested
            products). Names are non-empty strings without ``"."`` (the separator of
            leaf paths).
    """
    if isinstance(space, Mapping):
        return Product({_check_name(name, ""): _part(value, name)
                        for name, value in space.items()}) if space else _empty()
    if isinstance(space, Product):
        _check_product(space, "")
        return space
    if isinstance(space, Space):
        raise ValueError(
            f"space={space!r} is a single unnamed leaf; train(config, trial) reads its config "
            "by name, so pass a dict or Product that names it, e.g. {'lr': " f"{space!r}}}")
    raise ValueError(f"space must be a dict name -> leaf (Real, Integer, Categorical, ...) or a "
                     f"nondiff.optim.spaces.Product, got {type(space).__name__} {space!r:.80}")


def _empty() -> Product:
    raise ValueError("space={} has no leaves; name at least one, e.g. {'lr': Real(1e-4, 1e-1, "
                     "log=True)}")


def _check_name(name: Any, prefix: str) -> str:
    where = f"{prefix}{name!r}" if not prefix else f"{prefix}.{name}"
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(f"space names must be non-empty strings without '.', got {where}; "
                         "rename the leaf (nest a dict for a group of leaves)")
    return name


def _part(value: Any, path: str) -> Space:
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"space entry {path!r} is an empty dict; give it leaves or drop it")
        return Product({_check_name(k, path): _part(v, f"{path}.{k}") for k, v in value.items()})
    if isinstance(value, Product):
        _check_product(value, path)
        return value
    if not isinstance(value, Space):
        raise ValueError(f"space entry {path!r} is {type(value).__name__} {value!r:.60}, not a "
                         "leaf; use Real(low, high, log=...), Integer(low, high), "
                         "Categorical([...]) from nondiff.optim.spaces, or a dict of them")
    return value


def _check_product(space: Product, prefix: str) -> None:
    for name, part in space.spaces.items():
        _check_name(name, prefix)
        if isinstance(part, Product):
            _check_product(part, f"{prefix}.{name}" if prefix else name)


def leaf_names(space: Product, *, constants: bool = False) -> list[str]:
    """The paths of the leaves (``"sgd.momentum"``), in encoding order."""
    return [name for name, _, _ in space.leaves(constants=constants)]


def check_leaf_names(space: Product, names: Sequence[str] | None, argument: str) -> list[str]:
    """``names`` (all leaves when None) once each names a searched leaf of ``space``."""
    known = leaf_names(space)
    if names is None:
        return known
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{argument}={list(names)!r} names {unknown}, which the space does "
                         f"not have; its leaves are {known}")
    return list(names)


def perturb(space: Product, row: np.ndarray, rng: np.random.Generator,
            names: Sequence[str] | None = None, factors: tuple[float, float] = (0.8, 1.2),
            ) -> np.ndarray:
    """A copy of the encoded ``row`` with each leaf in ``names`` (default: all) moved a
    little: PBT's explore step (see the module docstring)."""
    out = np.array(row, dtype=np.float64, copy=True)
    chosen = set(leaf_names(space) if names is None else names)
    for name, leaf, part in space.leaves():
        if name not in chosen:
            continue
        out[part] = _move(leaf, out[part], rng, factors)
    return out


def _move(leaf: Space, encoded: np.ndarray, rng: np.random.Generator,
          factors: tuple[float, float]) -> np.ndarray:
    low, high = leaf.bounds()
    if isinstance(leaf, Real):
        factor = factors[int(rng.integers(2))]
        if leaf.log:
            moved = encoded + math.log(factor)
        else:
            value = encoded * factor
            # at 0 a factor moves nothing: step by a tenth of the box (or 1) instead
            width = high - low
            step = np.where(np.isfinite(width), 0.1 * width, 1.0)
            moved = np.where(value == encoded, encoded + np.sign(factor - 1.0) * step, value)
        return np.clip(moved, low, high)
    if isinstance(leaf, (Integer, Categorical)):
        step = rng.choice([-1.0, 1.0], size=encoded.shape)
        moved = encoded + step
        stuck = (moved < low) | (moved > high)  # at an end: the only neighbour
        moved[stuck] = encoded[stuck] - step[stuck]
        return np.clip(moved, low, high)
    if isinstance(leaf, Binary):
        moved = encoded.copy()
        i = int(rng.integers(moved.size))
        moved[i] = 1.0 - moved[i]
        return moved
    if isinstance(leaf, Permutation):
        moved = encoded.copy()
        i = int(rng.integers(moved.size - 1))
        moved[[i, i + 1]] = moved[[i + 1, i]]
        return moved
    return encoded  # a kind without a neighbourhood: left as is


def describe(config: Any) -> str:
    """A short readable form of a decoded config (arrays as lists, floats to 4 digits)."""
    if isinstance(config, Mapping):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in config.items()) + "}"
    if isinstance(config, float):
        return f"{config:.4g}"
    if isinstance(config, np.ndarray):
        return describe(config.tolist())
    if isinstance(config, (list, tuple)):
        return "[" + ", ".join(describe(v) for v in config) + "]"
    return getattr(config, "__name__", None) or repr(config)


class Grid:
    """``space`` with every real leaf on a grid of ``levels`` points (see the module
    docstring); :meth:`to_space` maps a grid row to the encoding of ``space``.

    Example:
        >>> from nondiff.optim.spaces import Categorical, Real
        >>> from nondiff.hybrid.tune.space import Grid, study_space
        >>> space = study_space({"lr": Real(1e-4, 1e-1, log=True), "act": Categorical("ab")})
        >>> grid = Grid(space, levels=4)
        >>> grid.space
        Product({'lr': Integer(0, 3), 'act': Categorical(['a', 'b'])})
        >>> [round(space.decode(grid.to_space([i, 1]))["lr"], 6) for i in range(4)]
        [0.0001, 0.001, 0.01, 0.1]
    """

    def __init__(self, space: Product, levels: int = GRID_LEVELS) -> None:
        self.levels = levels
        self.study = space
        self.space = self._grid(space, "")
        self.reals = [(part, *leaf.bounds()) for _, leaf, part in space.leaves()
                      if isinstance(leaf, Real)]

    def _grid(self, space: Space, path: str) -> Space:
        if isinstance(space, Product):
            return Product({name: self._grid(part, f"{path}.{name}" if path else name)
                            for name, part in space.spaces.items()})
        if isinstance(space, Real):
            low, high = space.bounds()
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise ValueError(f"space entry {path!r} is {space!r}, unbounded: an optimizer "
                                 "of discrete spaces searches reals on a grid between finite "
                                 "bounds; give it finite low and high")
            return Integer(0, self.levels - 1, size=space.size)
        return space

    def to_space(self, row: Any) -> np.ndarray:
        """The encoding in the study's space of the grid row ``row``."""
        out = np.array(row, dtype=np.float64, copy=True)
        for part, low, high in self.reals:
            out[part] = low + np.rint(out[part]) / (self.levels - 1) * (high - low)
        return out
