"""Optimizers by name: the names ``minimize(optimizer=...)``, the CLI and the docs use.

Example:
    >>> import numpy as np
    >>> from nondiff.optim import registry
    >>> "cmaes" in registry.names()
    True
    >>> opt = registry.create("snes", np.zeros(4), sigma0=0.5, seed=1)
    >>> opt.ask().shape  # popsize 4 + floor(3 ln 4)
    (8, 4)
    >>> from nondiff.optim.spaces import Binary
    >>> registry.create("snes", Binary(6), seed=1).ask().shape  # through a relaxation
    (9, 6)
    >>> sorted(registry.supported_kinds("ga"))  # ga searches discrete spaces only
    ['binary', 'categorical', 'integer', 'permutation']
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from .base import Array, BaseOptimizer, UnsupportedSpaceError
from .spaces import KINDS, Space, leaf_kinds

_OPTIMIZERS: dict[str, type[BaseOptimizer]] = {}


def register(cls: type[BaseOptimizer]) -> type[BaseOptimizer]:
    """Add an optimizer class under its ``name``; usable as a class decorator."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name == BaseOptimizer.name:
        raise ValueError(f"{cls.__name__} needs a class attribute `name` to be registered")
    if name in _OPTIMIZERS and _OPTIMIZERS[name] is not cls:
        raise ValueError(f"an optimizer named {name!r} is registered already")
    _OPTIMIZERS[name] = cls
    return cls


def names() -> list[str]:
    """Registered optimizer names, sorted."""
    return sorted(_OPTIMIZERS)


def unknown_name_error(kind: str, name: object, known: list[str]) -> ValueError:
    """A ValueError for a misspelled name that suggests the closest known ones."""
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}{hint or ';'} Known: {', '.join(known)}")


def supported_kinds(name: str) -> frozenset[str]:
    """The leaf kinds ``create(name, space)`` searches: the class's own
    ``supported_spaces``, and every kind for an optimizer of real vectors (it searches
    the others through :class:`~nondiff.optim.relaxed.Relaxed`), every discrete kind for
    an optimizer of bit strings only (through
    :class:`~nondiff.optim.binary_code.BinaryCoded`). The optimizers of discrete spaces
    only (``ga``, ``one-plus-lambda``, ``cga``) search no real leaves."""
    own = get(name).supported_spaces
    if own == frozenset({"binary"}):  # the others through a binary code (binary_code.py)
        return frozenset(KINDS) - {"real"}
    return frozenset(KINDS) if "real" in own else frozenset(own)


def names_supporting(kinds: set[str] | frozenset[str]) -> list[str]:
    """Registered optimizers that ``create`` builds on a space of all of ``kinds``
    (:func:`supported_kinds`)."""
    return [name for name in names() if set(kinds) <= supported_kinds(name)]


def get(name: str) -> type[BaseOptimizer]:
    """The optimizer class registered as ``name``."""
    if name not in _OPTIMIZERS:
        raise unknown_name_error("optimizer", name, names())
    return _OPTIMIZERS[name]


def options(name: str) -> list[str]:
    """The keyword options ``create(name, x0, ...)`` accepts, sorted.

    Example:
        >>> from nondiff.optim import registry
        >>> registry.options("xnes")
        ['bounds', 'eta_b', 'eta_mu', 'eta_sigma', 'popsize', 'seed', 'shaping', 'sigma0']
    """
    return sorted(_hyperparameters(get(name)))


def create(name: str, x0: Array, **kwargs: Any) -> BaseOptimizer:
    """Construct the optimizer ``name`` at ``x0`` with keyword hyperparameters.

    An optimizer of real vectors given a space with leaves it does not search
    (binary, categorical, integer, permutation) searches it through a continuous
    relaxation: the result is a :class:`~nondiff.optim.relaxed.Relaxed` wrapping it
    (same ``name``; its options ``width`` and ``relax`` are accepted then). ``relax``
    also asks for it where the optimizer has its own handling, and on a space without
    real leaves an optimizer's ``relaxed_kinds`` are relaxed unless ``relax`` says
    otherwise: there the pycma CMA-ES family searches categorical leaves by argmax of
    scores instead of pycma's rounded index (an order the choices do not have), integers
    and bits still as pycma's integer variables; ``create("cmaes", space, relax=[])``
    keeps the rounded index. Spaces with real leaves keep pycma's own handling unless
    ``relax`` is given (its bound transformation of the reals beat the relaxation's clip
    on the AutoML benchmark's mixed space: one-shot picks tested 89.7 vs 87.2 %).
    An optimizer of bit strings only (``cga``) given integer, categorical or permutation
    leaves searches a binary code of them: a
    :class:`~nondiff.optim.binary_code.BinaryCoded` wrapping it (options ``code`` and
    ``extra_bits`` accepted then).

    Raises:
        ValueError: unknown name, or a hyperparameter the optimizer does not have.
        UnsupportedSpaceError: a space the optimizer does not search (a ValueError
            that names the registered optimizers that do).
    """
    from .binary_code import BinaryCoded, binary_code_needed
    from .relaxed import Relaxed, relaxation_needed

    cls = get(name)
    space_kinds = leaf_kinds(x0) if isinstance(x0, Space) else set()
    by_default = sorted(cls.relaxed_kinds & space_kinds)
    if by_default and "relax" not in kwargs and "real" not in space_kinds:
        kwargs = {**kwargs, "relax": by_default}
    relax = relaxation_needed(cls, x0) or (
        bool(kwargs.get("relax")) and "real" in cls.supported_spaces and isinstance(x0, Space))
    relaxable = relax or (isinstance(x0, Space) and bool(cls.relaxed_kinds))
    accepted = _hyperparameters(cls) | ({"width", "relax"} if relaxable else set())
    coded = binary_code_needed(cls, x0)
    accepted |= {"code", "extra_bits"} if coded else set()
    for key in kwargs:
        if key not in accepted:
            raise unknown_name_error(f"option of {name}:", key, sorted(accepted))
    try:
        if relax:
            return Relaxed(x0, inner=cls, **kwargs)
        if coded:
            return BinaryCoded(x0, inner=cls, **kwargs)
        return cls(x0, **{k: v for k, v in kwargs.items() if k != "relax"})
    except UnsupportedSpaceError as error:
        raise UnsupportedSpaceError(error.problem, error.kinds,
                                    names_supporting(error.kinds)) from None


def _hyperparameters(cls: type[BaseOptimizer]) -> set[str]:
    """The options of ``cls``: the fields of its ``Hyperparameters`` dataclass and the
    common arguments; for an optimizer with its own constructor, that constructor's
    keyword arguments (following ``**kwargs`` to its bases)."""
    names: set[str] = set(cls.Hyperparameters.names())
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if klass is BaseOptimizer or not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names - {"self", "x0"}
