"""Hyperparameters of an optimizer: one frozen dataclass, validated in one place.

Each optimizer declares its hyperparameters (the keyword-only constructor arguments
after ``x0, sigma0, popsize, seed, bounds``) as a frozen dataclass derived from
:class:`Hyperparameters`, in the spirit of evosax's ``Params`` beside its ``State``:

- every field has its default and a checker (:func:`hyperparameter`), run once in
  ``__post_init__``; each checker returns the clean value or raises a ValueError
  that names the argument, the value and what is expected;
- :meth:`Hyperparameters.check` holds the rules between fields, and
  :meth:`Hyperparameters.resolve` fills defaults that depend on the problem size
  (``dim``, ``popsize``) and checks limits given by it;
- :meth:`Hyperparameters.config` derives the ``config()`` entries that a state dict
  saves (all fields unless marked ``config=False``, plus :meth:`derived_config`);
- ``mirrored`` names the boolean field that turns on mirrored (antithetic) sampling:
  the optimizer's base then keeps every population size even.

The optimizer stores the resolved instance as ``opt.hparams``; its fields also read
as attributes of the optimizer (``opt.eta_sigma``). The registry and the generated
constructor signature take the option names from the fields.

Example:
    >>> import dataclasses
    >>> from nondiff.optim.hyperparameters import Hyperparameters, hyperparameter, real
    >>> @dataclasses.dataclass(frozen=True)
    ... class Rates(Hyperparameters):
    ...     lr: float = hyperparameter(0.1, real(low=0.0, low_open=True))
    >>> Rates(lr=1).config()
    {'lr': 1.0}
    >>> Rates(lr=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite number in (0.0, inf], got -1.0
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from .checks import check_bool, check_int, check_real
from .shaping import check_method

__all__ = [
    "Checker", "Hyperparameters", "boolean", "choice", "hyperparameter", "integer", "pair",
    "real", "shaping_method",
]

Checker = Callable[[str, Any], Any]
H = TypeVar("H", bound="Hyperparameters")


def hyperparameter(default: Any, check: Checker | None = None, *, config: bool = True) -> Any:
    """A field of a :class:`Hyperparameters` dataclass.

    Args:
        default: the value when the argument is not given (immutable).
        check: ``check(name, value) -> clean value``, raising ValueError.
        config: whether the field is a ``config()`` entry itself (False when
            :meth:`Hyperparameters.derived_config` reports it, e.g. through a step).
    """
    return dataclasses.field(default=default, metadata={"check": check, "config": config})


def real(*, low: float = -math.inf, high: float = math.inf, low_open: bool = False,
         high_open: bool = False, optional: bool = False) -> Checker:
    """A finite real in the interval (None allowed when ``optional``), as a float."""
    def run(name: str, value: Any) -> float | None:
        if optional and value is None:
            return None
        return check_real(name, value, low=low, high=high, low_open=low_open,
                          high_open=high_open)
    return run


def integer(low: int, high: int | None = None, *, optional: bool = False) -> Checker:
    """An integer in ``[low, high]`` (None allowed when ``optional``), as an int."""
    def run(name: str, value: Any) -> int | None:
        return None if optional and value is None else check_int(name, value, low, high)
    return run


def boolean() -> Checker:
    """True or False (numpy booleans too), as a bool."""
    return check_bool


def choice(options: tuple[str, ...], *, lower: bool = False) -> Checker:
    """One of ``options`` (compared in lower case when ``lower``)."""
    def run(name: str, value: Any) -> str:
        key = value.lower() if lower and isinstance(value, str) else value
        if key not in options:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, "
                             f"got {value!r}")
        return key
    return run


def shaping_method(*, optional: bool = False) -> Checker:
    """A method of :mod:`nondiff.optim.shaping`, by its canonical name."""
    def run(name: str, value: Any) -> str | None:
        if optional and value is None:
            return None
        try:
            return check_method(value)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    return run


def pair(check: Checker) -> Checker:
    """A pair ``(a, b)`` whose entries pass ``check`` (named ``name[0]``, ``name[1]``)."""
    def run(name: str, value: Any) -> tuple[Any, Any]:
        try:
            first, second = value
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a pair (a, b), got {value!r}") from None
        return check(f"{name}[0]", first), check(f"{name}[1]", second)
    return run


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """Base of every optimizer's hyperparameter dataclass (declare it ``frozen=True``).

    Attributes:
        mirrored: name of the boolean field that turns on mirrored sampling (rows
            ``i`` and ``i + n/2`` mirror each other), or None.
    """

    mirrored: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check = field.metadata.get("check")
            if check is not None:
                object.__setattr__(self, field.name, check(field.name, getattr(self, field.name)))
        self.check()

    def check(self) -> None:
        """Rules between fields; raise a ValueError naming the arguments and the fix."""

    def resolve(self: H, dim: int, popsize: int) -> H:
        """A copy with the size-dependent defaults filled in; raise ValueError for
        values out of the range the problem size allows."""
        return self

    @property
    def popsize_multiple(self) -> int:
        """2 while mirrored sampling is on (population sizes must be even), else 1."""
        return 2 if self.mirrored is not None and getattr(self, self.mirrored) else 1

    def config(self) -> dict[str, Any]:
        """The entries saved in a state dict's ``config`` (compared on load)."""
        entries = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.metadata.get("config", True)}
        return {**entries, **self.derived_config()}

    def derived_config(self) -> dict[str, Any]:
        """Further ``config()`` entries computed from the fields (e.g. a step's)."""
        return {}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names: the optimizer's keyword-only options."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def build(cls: type[H], owner: str, options: Mapping[str, Any],
              common: tuple[str, ...] = ()) -> H:
        """``cls(**options)``, with a ValueError (suggesting the closest of the fields
        and the ``common`` arguments) for an option that ``owner`` does not have,
        instead of a TypeError."""
        known = (*common, *cls.names())
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ValueError(f"unknown option of {owner}: {key!r}{hint} "
                                 f"Known: {', '.join(known)}")
        return cls(**options)
