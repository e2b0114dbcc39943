"""Typed search spaces: the values a user means, and the flat arrays optimizers see.

A space encodes a value into a float vector of ``space.size`` entries and decodes
it back. Leaves:

==============  ==================================  ===============================
space           value                               encoding (per entry)
==============  ==================================  ===============================
Real            float (array if ``size`` > 1)       the float (its log if ``log``)
Integer         int (array if ``size`` > 1)         the integer as a float
Categorical     one of ``choices`` (list if size)   the index 0 .. k-1
Binary(n)       bool array of shape (n,)            0.0 / 1.0
Permutation(n)  int array, a permutation of 0..n-1  the permutation itself
==============  ==================================  ===============================

A leaf with a single allowed value (``Integer(3, 3)``, ``Categorical(["x"])``,
``Permutation(1)``, ``Binary(0)``) is a constant: it encodes to zero coordinates
(``size`` 0), decodes an empty vector to its value, and ``leaves()`` leaves it out,
so optimizers only ever see the dimensions there are to search. ``Real(2.0, 2.0)``
is refused (most likely a typo); write ``Categorical([2.0])`` for a fixed real.

``Product`` names leaves (and nested products) for mixed spaces; its encoding is
the concatenation in the order given. Optimizers declare which leaf kinds they
handle (``supported_spaces``); each leaf reports its ``kind``, its encoded bounds
and, for discrete kinds, its cardinality.

Example:
    >>> from nondiff.optim.spaces import Binary, Categorical, Product, Real
    >>> space = Product({"lr": Real(1e-4, 1e-1, log=True),
    ...                  "op": Categorical(["conv", "pool", "skip"]),
    ...                  "mask": Binary(4)})
    >>> space.size
    6
    >>> value = {"lr": 0.01, "op": "pool", "mask": [True, False, False, True]}
    >>> decoded = space.decode(space.encode(value))
    >>> decoded["op"], round(decoded["lr"], 6), decoded["mask"].tolist()
    ('pool', 0.01, [True, False, False, True])
    >>> fixed = Product({"lr": Real(1e-4, 1e-1, log=True), "op": Categorical(["conv"])})
    >>> fixed.size, fixed.decode([-3.0])["op"]
    (1, 'conv')
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

KINDS = ("real", "integer", "categorical", "binary", "permutation")


class Space(ABC):
    """A set of values with an encoding as a float vector of ``size`` entries.

    ``size`` counts encoded coordinates: 0 for a constant (a one-value leaf, or a
    product of them), whatever the number of entries in its value.
    """

    kind: str = "space"
    size: int = 1

    @abstractmethod
    def encode(self, value: Any) -> np.ndarray:
        """The ``(size,)`` float64 encoding of ``value`` (ValueError if outside)."""

    @abstractmethod
    def decode(self, encoded: Any) -> Any:
        """The value of one ``(size,)`` encoded vector (ValueError if outside)."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n, size)`` encoded values drawn uniformly (log-uniform for log reals)."""

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Encoded lower and upper bounds, each ``(size,)`` (±inf when unbounded)."""
        return np.full(self.size, -np.inf), np.full(self.size, np.inf)

    @property
    def is_constant(self) -> bool:
        """True when the space holds one value: it encodes to zero coordinates."""
        return self.size == 0

    def leaves(self, prefix: str = "", *, constants: bool = False,
               ) -> Iterator[tuple[str, Space, slice]]:
        """(name, leaf space, slice of the encoding) for every leaf, in order.

        Constant leaves (zero coordinates, an empty slice) are left out unless
        ``constants``: what iterates over leaves to search them never sees them.
        """
        if constants or not self.is_constant:
            yield prefix, self, slice(0, self.size)

    def decode_batch(self, encoded: Any) -> list[Any]:
        """Decode every row of an ``(n, size)`` array."""
        array = _as_matrix(encoded, self.size)
        return [self.decode(row) for row in array]

    def contains(self, value: Any) -> bool:
        try:
            self.encode(value)
        except ValueError:
            return False
        return True

    def initial(self) -> np.ndarray:
        """A deterministic starting encoding: the middle of the encoded box."""
        lower, upper = self.bounds()
        low_ok, high_ok = np.isfinite(lower), np.isfinite(upper)
        both = low_ok & high_ok
        middle = np.zeros(self.size)
        middle[both] = (lower[both] + upper[both]) / 2
        middle[low_ok & ~high_ok] = lower[low_ok & ~high_ok]
        middle[high_ok & ~low_ok] = upper[high_ok & ~low_ok]
        return middle


def _as_vector(encoded: Any, size: int, what: str) -> np.ndarray:
    array = np.asarray(encoded.detach().cpu() if hasattr(encoded, "detach") else encoded,
                       dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f"{what} expects an encoded vector of shape ({size},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} got a non-finite encoded value: {array}")
    return array


def _as_matrix(encoded: Any, size: int) -> np.ndarray:
    array = np.asarray(encoded.detach().cpu() if hasattr(encoded, "detach") else encoded,
                       dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != size:
        raise ValueError(f"expected encoded rows of shape (n, {size}), got {array.shape}")
    return array


def _check_size(size: Any, what: str = "size", minimum: int = 1) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise ValueError(f"{what} must be {kind} integer, got {size!r}")
    return int(size)


class Real(Space):
    """Reals in ``[low, high]`` (either may be infinite), optionally on a log scale.

    Args:
        low, high: bounds, low < high; both > 0 if ``log``.
        log: encode ``log(x)``, so optimizers search orders of magnitude evenly.
        size: number of entries (a vector value when > 1).
    """

    kind = "real"

    def __init__(self, low: float = -math.inf, high: float = math.inf, *, log: bool = False,
                 size: int = 1) -> None:
        low, high = float(low), float(high)
        if low == high:
            raise ValueError(
                f"Real needs low < high, got low=high={low}: a real with one value is most "
                f"likely a typo in the bounds; for a fixed entry of a space write "
                f"Categorical([{low}]) (a constant, not searched)")
        if math.isnan(low) or math.isnan(high) or not low < high:
            raise ValueError(f"Real needs low < high, got low={low}, high={high}")
        if log and not (low > 0 and math.isfinite(high)):
            raise ValueError(f"Real(log=True) needs 0 < low < high < inf, got [{low}, {high}]")
        self.low, self.high, self.log, self.size = low, high, bool(log), _check_size(size)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        low, high = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        return np.full(self.size, low), np.full(self.size, high)

    def encode(self, value: Any) -> np.ndarray:
        array = np.broadcast_to(np.asarray(value, dtype=np.float64), (self.size,)) \
            if self.size > 1 else np.asarray([float(value)])
        if np.any(np.isnan(array)) or np.any(array < self.low) or np.any(array > self.high):
            raise ValueError(f"{value!r} is outside Real[{self.low}, {self.high}]")
        return np.log(array) if self.log else array.astype(np.float64)

    def decode(self, encoded: Any) -> Any:
        array = _as_vector(encoded, self.size, repr(self))
        value = np.exp(array) if self.log else array
        # exp(log(x)) may step a hair outside the box: that is rounding, not an error.
        tolerance = 1e-9 * np.maximum(1.0, np.abs(value))
        if np.any(value < self.low - tolerance) or np.any(value > self.high + tolerance):
            raise ValueError(f"decoded value {value} is outside Real[{self.low}, {self.high}]")
        value = np.clip(value, self.low, self.high)
        return float(value[0]) if self.size == 1 else value

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        lower, upper = self.bounds()
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise ValueError(f"cannot sample uniformly from unbounded {self!r}")
        return rng.uniform(lower, upper, size=(n, self.size))

    def __repr__(self) -> str:
        extra = (", log=True" if self.log else "")
        extra += f", size={self.size}" if self.size > 1 else ""
        return f"Real({self.low}, {self.high}{extra})"


class _Discrete(Space):
    """Shared by leaves whose ``count`` entries take ``cardinality`` values 0 .. k-1
    (+ offset). With one value (or no entry) the leaf is a constant: ``size`` 0."""

    offset = 0
    cardinality = 2
    count = 1

    def _set_count(self, count: int) -> None:
        self.count = count
        self.size = count if self.cardinality > 1 else 0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.full(self.size, float(self.offset)),
                np.full(self.size, float(self.offset + self.cardinality - 1)))

    def _indices(self, encoded: Any) -> np.ndarray:
        array = np.rint(_as_vector(encoded, self.size, repr(self)))
        if self.is_constant:
            return np.full(self.count, self.offset, dtype=np.int64)
        lower, upper = self.bounds()
        if np.any(array < lower) or np.any(array > upper):
            raise ValueError(
                f"decoded value {array} is outside {self!r} (entries must lie in "
                f"[{lower[0]:g}, {upper[0]:g}])"
            )
        return array.astype(np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return (self.offset + rng.integers(0, self.cardinality, size=(n, self.size))).astype(
            np.float64)


class Integer(_Discrete):
    """Integers in ``[low, high]`` inclusive."""

    kind = "integer"

    def __init__(self, low: int, high: int, *, size: int = 1) -> None:
        ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                 for v in (low, high))
        if not ok:
            raise ValueError(f"Integer needs finite integer bounds, got low={low!r}, "
                             f"high={high!r}; for an unbounded integer give a finite range "
                             "as wide as needed (e.g. Integer(0, 10**6))")
        if int(low) != low or int(high) != high or not low <= high:
            raise ValueError(f"Integer needs integer low <= high, got low={low}, high={high}")
        self.low, self.high = int(low), int(high)
        self.offset, self.cardinality = self.low, self.high - self.low + 1
        self._set_count(_check_size(size))

    def encode(self, value: Any) -> np.ndarray:
        array = np.atleast_1d(np.asarray(value))
        if array.shape != (self.count,) or not np.all(np.equal(np.mod(array, 1), 0)) \
                or np.any(array < self.low) or np.any(array > self.high):
            raise ValueError(f"{value!r} is not in {self!r}")
        return array[:self.size].astype(np.float64)

    def decode(self, encoded: Any) -> Any:
        values = self._indices(encoded)
        return int(values[0]) if self.count == 1 else values

    def __repr__(self) -> str:
        return f"Integer({self.low}, {self.high}" + (f", size={self.count})" if self.count > 1
                                                     else ")")


class Categorical(_Discrete):
    """One of ``choices`` (any objects; compared with ``==``), or ``size`` of them."""

    kind = "categorical"

    def __init__(self, choices: Sequence[Any], *, size: int = 1) -> None:
        choices = list(choices)
        if not choices:
            raise ValueError("Categorical needs at least one choice, got an empty list")
        for i, choice in enumerate(choices):
            if isinstance(choice, (np.ndarray, Space)) or hasattr(choice, "detach"):
                raise ValueError(
                    f"Categorical choices must compare with == to one True/False; choice {i} "
                    f"is a {type(choice).__name__} ({choice!r:.40}), which compares element "
                    "by element; pass tuples, or Categorical(range(k)) and index your arrays")
            if any(choice == other for other in choices[:i]):
                raise ValueError(f"Categorical choices must be distinct; {choice!r} repeats")
        self.choices, self.cardinality = choices, len(choices)
        self._set_count(_check_size(size))

    def _index(self, value: Any) -> int:
        for i, choice in enumerate(self.choices):
            if choice == value:
                return i
        raise ValueError(f"{value!r} is not one of the choices {self.choices}")

    def encode(self, value: Any) -> np.ndarray:
        values = [value] if self.count == 1 else list(value)
        if len(values) != self.count:
            raise ValueError(f"{self!r} expects {self.count} choices, got {len(values)}")
        return np.asarray([self._index(v) for v in values], dtype=np.float64)[:self.size]

    def decode(self, encoded: Any) -> Any:
        picked = [self.choices[i] for i in self._indices(encoded)]
        return picked[0] if self.count == 1 else picked

    def __repr__(self) -> str:
        return f"Categorical({self.choices!r}" + (f", size={self.count})" if self.count > 1
                                                  else ")")


class Binary(_Discrete):
    """A bit string of length ``n`` (a bool array); ``Binary(0)`` is the constant ``[]``."""

    kind = "binary"

    def __init__(self, n: int) -> None:
        self._set_count(_check_size(n, "Binary length n", minimum=0))

    def encode(self, value: Any) -> np.ndarray:
        array = np.asarray(value)
        if array.shape != (self.count,) or not np.all((array == 0) | (array == 1)):
            raise ValueError(f"{self!r} expects {self.count} values in {{0, 1}}, got {value!r}")
        return array.astype(np.float64)

    def decode(self, encoded: Any) -> np.ndarray:
        return self._indices(encoded).astype(bool)

    def __repr__(self) -> str:
        return f"Binary({self.count})"


class Permutation(Space):
    """An ordering of ``n`` items: an int array holding each of 0 .. n-1 once.

    ``Permutation(1)`` (and ``Permutation(0)``) has one ordering: a constant.
    """

    kind = "permutation"

    def __init__(self, n: int) -> None:
        self.count = _check_size(n, "Permutation length n", minimum=0)
        self.size = self.count if self.count > 1 else 0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.size), np.full(self.size, float(self.size - 1))

    def encode(self, value: Any) -> np.ndarray:
        array = np.asarray(value)
        if array.shape != (self.count,) or sorted(array.tolist()) != list(range(self.count)):
            raise ValueError(f"{value!r} is not a permutation of 0..{self.count - 1}")
        return array[:self.size].astype(np.float64)

    def decode(self, encoded: Any) -> np.ndarray:
        array = np.rint(_as_vector(encoded, self.size, repr(self))).astype(np.int64)
        if self.is_constant:
            return np.arange(self.count, dtype=np.int64)
        if sorted(array.tolist()) != list(range(self.size)):
            raise ValueError(f"decoded value {array} is not a permutation of 0..{self.size - 1}")
        return array

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.argsort(rng.random((n, self.size)), axis=1).astype(np.float64)

    def initial(self) -> np.ndarray:
        return np.arange(self.size, dtype=np.float64)

    def __repr__(self) -> str:
        return f"Permutation({self.count})"


class Product(Space):
    """Named sub-spaces side by side; values are dicts ``{name: value}``."""

    kind = "product"

    def __init__(self, spaces: Mapping[str, Space] | None = None, **named: Space) -> None:
        parts = {**(dict(spaces) if spaces else {}), **named}
        if not parts:
            raise ValueError("Product needs at least one named space")
        for name, space in parts.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"Product names must be non-empty strings, got {name!r}")
            if not isinstance(space, Space):
                raise ValueError(f"Product entry {name!r} is not a Space: {space!r}")
        self.spaces = parts
        self.size = sum(space.size for space in parts.values())
        self._slices: dict[str, slice] = {}
        start = 0
        for name, space in parts.items():
            self._slices[name] = slice(start, start + space.size)
            start += space.size

    def leaves(self, prefix: str = "", *, constants: bool = False,
               ) -> Iterator[tuple[str, Space, slice]]:
        for name, space in self.spaces.items():
            outer = self._slices[name]
            for leaf_name, leaf, inner in space.leaves(f"{prefix}{name}" if not prefix
                                                       else f"{prefix}.{name}",
                                                       constants=constants):
                yield leaf_name, leaf, slice(outer.start + inner.start, outer.start + inner.stop)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lows, highs = zip(*(space.bounds() for space in self.spaces.values()), strict=True)
        return np.concatenate(lows), np.concatenate(highs)

    def encode(self, value: Mapping[str, Any]) -> np.ndarray:
        if not isinstance(value, Mapping):
            raise ValueError(f"a Product value is a dict of {sorted(self.spaces)}, got {value!r}")
        unknown = set(value) - set(self.spaces)
        missing = set(self.spaces) - set(value)
        if unknown or missing:
            raise ValueError(f"Product value has unknown names {sorted(unknown)} and "
                             f"misses {sorted(missing)}; expected {list(self.spaces)}")
        return np.concatenate([space.encode(value[name]) for name, space in self.spaces.items()])

    def decode(self, encoded: Any) -> dict[str, Any]:
        array = _as_vector(encoded, self.size, "Product")
        return {name: space.decode(array[self._slices[name]])
                for name, space in self.spaces.items()}

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.concatenate([space.sample(rng, n) for space in self.spaces.values()], axis=1)

    def initial(self) -> np.ndarray:
        return np.concatenate([space.initial() for space in self.spaces.values()])

    def __getitem__(self, name: str) -> Space:
        if name not in self.spaces:
            raise ValueError(f"no space named {name!r}; names are {list(self.spaces)}")
        return self.spaces[name]

    def __repr__(self) -> str:
        return "Product({" + ", ".join(f"{k!r}: {v!r}" for k, v in self.spaces.items()) + "})"


def own_start(space: Space) -> bool:
    """Whether ``space.initial()`` is a start of its own, not the middle of its box
    (the default of :class:`Space`, :class:`Product` and their leaves): a wrapper that
    searches the space in another encoding lifts only such a start."""
    method = type(space).initial
    if method is Space.initial:
        return False
    if method is Product.initial:
        return any(own_start(part) for part in space.spaces.values())  # type: ignore[attr-defined]
    return type(space).__module__ != Space.__module__  # a leaf's own default, or a user's


def leaf_kinds(space: Space) -> set[str]:
    """The kinds of the leaves of ``space`` to search (e.g. ``{"real", "binary"}``);
    constant leaves do not count: ``{"real"}`` for ``Real`` beside ``Categorical(["x"])``."""
    return {leaf.kind for _, leaf, _ in space.leaves()}
