"""An optimizer of bit strings searching any discrete space through a binary code.

:class:`BinaryCoded` is the binary counterpart of :mod:`nondiff.optim.relaxed`: it
wraps an optimizer that searches bit strings only (the compact GA ``cga``) so that it
searches spaces with integer, categorical and permutation leaves as well. The inner
optimizer searches a string of bits; every :meth:`~BinaryCoded.ask` decodes its rows
into the space's ordinary encoding (the rows ``space.decode`` reads).
``registry.create(name, space)`` (and so ``minimize``, ``HybridTrainer`` and ``tune``)
wraps an optimizer whose ``supported_spaces`` is ``{"binary"}`` automatically when the
space has other leaves; the class itself is ``BinaryCoded(space, inner=CompactGA)``.
Real leaves have no binary code here: they raise ``UnsupportedSpaceError``.

Code of each leaf (``e`` = ``extra_bits``, 1 by default; ``k`` values per entry):

==============  ====================================  ================================
leaf            bits                                  decoded by
==============  ====================================  ================================
Binary(n)       n                                     themselves (identity)
Integer, k      ``b = log2 k`` per entry if k is a     ``u`` = the bits read as a Gray
Categorical, k  power of two, else ``ceil(log2 k)+e``  code (or plain binary), value
                                                      ``floor(u k / 2^b)``
Permutation(n)  n keys of ``ceil(log2 n) + e + 1``     argsort of the keys (each read
                bits                                  like ``u``), ties by index
==============  ====================================  ================================

Why this code:

- *Every value reachable, as evenly as the bits allow.* ``u`` is uniform on
  ``0 .. 2^b - 1`` when the bits are fair coins (the cGA's start, ``p = 1/2``), and
  ``floor(u k / 2^b)`` gives every value ``floor(2^b / k)`` or ``ceil(2^b / k)`` codes
  (Bresenham's even split; exact for ``k`` a power of two). An extra bit halves the
  worst excess: Categorical(3) draws ``(1/2, 1/4, 1/4)`` with 2 bits, ``(3/8, 3/8,
  1/4)`` with 3 and ``(6/16, 5/16, 5/16)`` with 4 (``extra_bits=2``). The Gray
  code (Gray 1953) is a bijection of the codes, so it keeps these frequencies.
- *The bit model can converge on any value.* Every value has a code, a corner of
  the bit cube, and the cGA's frequencies can approach any corner (up to its
  borders ``1/n``): the model then samples that value with probability near one.
- *Gray code by default.* Neighbouring integers have codes one bit apart (plain
  binary has Hamming cliffs, 0111 | 1000, that the bitwise model crosses only by
  flipping four frequencies together); measured in
  ``benchmarks/studies/binary_code.py`` (module docstring there).
- *Permutations by random keys* (Bean 1994): ``n`` keys, argsort; a key change moves
  one item. Ties (equal keys) go by index, which favours the identity order a little;
  one more bit per key than an integer of ``n`` values keeps ties rare.

Measured (``python -m nondiff.benchmarks.studies.binary_code --seeds 30``, budget
6000, optima found / mean evaluations to them, Gray vs plain binary with ``extra_bits``
0 / 1 / 2): integers (6 in 0..9, ``sum |x - t|``) Gray 30/30 in 476 / 363 / 428,
binary 23 / 19 / 19 of 30; a categorical lookup (8 of 5 choices) Gray 315 / 193 / 203,
binary 468 / 222 / 259 (all found); a permutation of 6 (items out of place) Gray
29/30 193, 30/30 180 / 334, binary 281 / 166 / 143. Largest ``|frequency - 1/k|`` of
the first generation at ``extra_bits=1``: 0.083 (k = 3), 0.050 (5), 0.025 (10); a
uniform Permutation(3..5) lies within total variation 0.03 to 0.07 of uniform.
On the hybrid acceptance suite (``python -m
nondiff.benchmarks.hybrid_tasks.acceptance --seeds 5 --optimizers cga ga``) the cGA
through this code recovers the known structure in 26 of 35 runs (ga: 28), op-graph
5/5 (ga 4/5), nonlinearity 5/5, inputs-and-activation 4/5, frequencies 5/5, routing
2/5 (ga 3/5), program 3/5 (ga 1/5).

Telling rows: the rows of the last ``ask`` (the array itself, a copy, or a subset of
its rows) are told to the inner optimizer as the bit rows they were decoded from,
exactly; other valid rows are *encoded*: the first code of each value (in Gray form
when ``code="gray"``), a permutation evenly spaced keys in its order. Rows that
decode to no value of the space get the base class's ValueError before anything
changes.

Sources:
    - J. C. Bean, "Genetic algorithms and random keys for sequencing and
      optimization", ORSA Journal on Computing 6(2), 1994 (random keys).
    - F. Gray, "Pulse code communication", US patent 2,632,058, 1953 (reflected
      binary code); its use in GAs: R. A. Caruana, J. D. Schaffer, "Representation
      and hidden bias: Gray vs. binary coding for genetic algorithms", ICML 1988.
    - G. R. Harik, F. G. Lobo, D. E. Goldberg, "The compact genetic algorithm",
      IEEE Transactions on Evolutionary Computation 3(4), 1999 (the inner ``cga``).

Example:
    >>> from nondiff.optim import minimize
    >>> from nondiff.optim.spaces import Categorical
    >>> target = ["c", "a", "b", "c", "b", "a"]
    >>> res = minimize(lambda x: sum(a != b for a, b in zip(x, target)),
    ...                Categorical(["a", "b", "c"], size=6), optimizer="cga",
    ...                budget=2000, seed=0)
    >>> res.x == target
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .arrays import Array
from .base import BaseOptimizer, UnsupportedSpaceError
from .checks import as_float64
from .hyperparameters import Hyperparameters, choice, hyperparameter, integer
from .inner_rows import INNER_OWN_METRICS, inner_rows
from .spaces import KINDS, Binary, Space, leaf_kinds, own_start
from .state import from_plain, to_plain

__all__ = ["BinaryCodeConfig", "BinaryCoded", "binary_code_needed", "bits_for",
           "decode_bits", "encode_values"]

CODED = tuple(k for k in KINDS if k != "real")  # the kinds a binary code reaches
CODES = ("gray", "binary")
MAX_BITS = 31  # per entry: floor(u k / 2^b) in int64


def bits_for(k: int, extra_bits: int) -> int:
    """Bits per entry of ``k`` values: ``log2 k`` for a power of two (an exact split),
    else ``ceil(log2 k) + extra_bits``.

    Example:
        >>> from nondiff.optim.binary_code import bits_for
        >>> [bits_for(k, 1) for k in (2, 3, 4, 5, 8, 10)]
        [1, 3, 2, 4, 3, 5]
    """
    exact = max(1, (k - 1).bit_length())
    return exact if k == 1 << exact else exact + extra_bits


def decode_bits(bits: np.ndarray, k: int, code: str = "gray") -> np.ndarray:
    """Values ``floor(u k / 2^b)`` of ``(..., b)`` bit groups, ``u`` the group read as
    a Gray code (``code="gray"``) or a plain binary number, most significant bit first.

    Example:
        >>> from nondiff.optim.binary_code import decode_bits
        >>> codes = np.array([[0, 0], [0, 1], [1, 1], [1, 0]])
        >>> decode_bits(codes, 4).tolist(), decode_bits(codes, 4, "binary").tolist()
        ([0, 1, 2, 3], [0, 1, 3, 2])
    """
    bits = np.asarray(bits).astype(np.int64)
    if code == "gray":  # binary digit j = XOR of the Gray digits 0..j
        bits = np.bitwise_xor.accumulate(bits, axis=-1)
    b = bits.shape[-1]
    u = bits @ (1 << np.arange(b - 1, -1, -1, dtype=np.int64))
    return (u * k) >> b  # floor(u k / 2^b)


def encode_values(values: np.ndarray, k: int, b: int, code: str = "gray") -> np.ndarray:
    """``(..., b)`` bits of the first code of each value (the inverse of
    :func:`decode_bits` on its values).

    Example:
        >>> from nondiff.optim.binary_code import decode_bits, encode_values
        >>> bits = encode_values(np.arange(5), 5, 4)
        >>> decode_bits(bits, 5).tolist()
        [0, 1, 2, 3, 4]
    """
    values = np.asarray(values, dtype=np.int64)
    u = -(-(values << b) // k)  # ceil(v 2^b / k): the smallest u with floor(u k / 2^b) = v
    if code == "gray":
        u = u ^ (u >> 1)
    return (u[..., None] >> np.arange(b - 1, -1, -1, dtype=np.int64)) & 1


@dataclasses.dataclass(frozen=True)
class BinaryCodeConfig(Hyperparameters):
    """The wrapper's own hyperparameters: ``code``, how a group of bits reads as a
    number (``"gray"``, default, or ``"binary"``); ``extra_bits``, bits beyond
    ``ceil(log2 k)`` for ``k`` values that are not a power of two (module docstring)."""

    code: str = hyperparameter("gray", choice(CODES))
    extra_bits: int = hyperparameter(1, integer(0, 8))


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """One leaf's place: its slice of the encoding and of the bit string."""

    kind: str
    encoded: slice
    bits: slice
    count: int  # entries (or permutation length)
    cardinality: int  # values per entry (the key range 2^b for a permutation)
    per_entry: int  # bits per entry (per key)
    offset: int = 0


def _layout(space: Space, extra_bits: int) -> list[_Leaf]:
    leaves, start = [], 0
    for _, leaf, where in space.leaves():
        count = where.stop - where.start
        if leaf.kind == "binary":
            k, b = 2, 1
        elif leaf.kind == "permutation":
            b = max(1, (count - 1).bit_length()) + extra_bits + 1
            k = 1 << b
        else:
            k = int(leaf.cardinality)
            b = bits_for(k, extra_bits)
        if b > MAX_BITS:  # u * k must stay below 2^63
            raise ValueError(
                f"the binary code of {leaf!r} needs {b} bits per entry, more than {MAX_BITS} "
                f"(at most about 2^{MAX_BITS - extra_bits} values with extra_bits="
                f"{extra_bits}); split the range into several leaves or search it with ga")
        leaves.append(_Leaf(leaf.kind, where, slice(start, start + count * b), count, k, b,
                            int(getattr(leaf, "offset", 0))))
        start += count * b
    return leaves


def _inner_class(inner: Any) -> type[BaseOptimizer]:
    if not (isinstance(inner, type) and issubclass(inner, BaseOptimizer)) \
            or issubclass(inner, BinaryCoded) or "binary" not in inner.supported_spaces:
        raise ValueError(
            f"inner must be an optimizer class of bit strings (e.g. "
            f"nondiff.optim.CompactGA) to search a binary code, got {inner!r}; by name, "
            "registry.create(name, space) codes where needed")
    return inner


class BinaryCoded(BaseOptimizer):
    """An optimizer of bit strings searching any discrete space (module docstring).

    Args:
        x0: the space to search (a :class:`~nondiff.optim.spaces.Space` without
            real leaves).
        sigma0, popsize, seed: the inner optimizer's (default: its own popsize).
        bounds: must be None (bounds come from the space).
        inner: the optimizer class of the bit string (by name:
            ``registry.create(name, space)``).
        code: ``"gray"`` (default) or ``"binary"``: how a group of bits reads as a number.
        extra_bits: bits beyond ``ceil(log2 k)`` for ``k`` values not a power of two.
        **options: hyperparameters of the inner optimizer.

    ``name`` is the inner optimizer's (``"cga"``). ``state_dict()`` holds the inner
    optimizer's state dict and the bit and decoded rows of the last ask; loading
    continues bit for bit. The inner optimizer starts from the space's own
    ``initial()`` (encoded) where the space names one; the cGA has no start (its
    frequencies begin at 1/2).
    """

    name: ClassVar[str] = "binary-coded"
    backend: ClassVar[str] = "numpy"
    handles_bounds: ClassVar[bool] = True  # decoded rows always lie in the space
    supported_spaces: ClassVar[frozenset[str]] = frozenset(CODED)
    config_space: ClassVar[bool] = True
    Hyperparameters = BinaryCodeConfig
    hparams: BinaryCodeConfig

    def __init__(self, x0: Space, sigma0: float = 1.0, popsize: int | None = None,
                 seed: int | None = None, bounds: tuple[Any, Any] | None = None, *,
                 inner: type[BaseOptimizer], code: str = "gray", extra_bits: int = 1,
                 **options: Any) -> None:
        cls = _inner_class(inner)
        hparams = BinaryCodeConfig(code=code, extra_bits=extra_bits)
        if not isinstance(x0, Space):
            raise ValueError(f"{cls.name} through a binary code searches a space (Categorical, "
                             f"Integer, ...); got x0 of type {type(x0).__name__}: pass a Space")
        if bounds is not None:
            raise ValueError("bounds come from the space; pass either bounds or a space")
        kinds = leaf_kinds(x0)
        if "real" in kinds:
            raise UnsupportedSpaceError(
                f"{cls.name} searches binary spaces, and through a binary code "
                f"{'/'.join(k for k in sorted(CODED) if k != 'binary')} ones, not the "
                f"{'/'.join(sorted(kinds))} space (real leaves have no binary code)", kinds)
        BinaryCoded._check_space(x0)  # a constant space: nothing to search
        self.code = hparams.code
        self.layout = _layout(x0, hparams.extra_bits)
        self.n_bits = self.layout[-1].bits.stop
        start = self.encode(x0.initial()[None])[0] if own_start(x0) else None
        self.inner = cls(_Bits(self.n_bits, start), sigma0=sigma0, popsize=popsize, seed=seed,
                         **options)
        self.inner_class_used = cls
        self.name = cls.name
        self.handles_constraints = cls.handles_constraints
        super().__init__(x0, sigma0, self.inner.popsize, self.inner.seed, None, code=code,
                         extra_bits=extra_bits)

    def __getattr__(self, name: str) -> Any:
        """The inner optimizer's hyperparameters read as attributes (``opt.virtual_popsize``)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("inner")
            if inner is not None and name in inner.hparams.names():
                return getattr(inner.hparams, name)
            raise

    def config(self) -> dict[str, Any]:
        per_run = {"dim", "sigma0", "popsize", "seed", "bounds", "space"}
        inner = {k: v for k, v in self.inner.config().items() if k not in per_run}
        return {**super().config(), "inner": self.inner_class_used.name,
                "bits": self.n_bits, "inner_config": inner}

    def min_tell_rows(self) -> int:
        return self.inner.min_tell_rows()

    def _min_popsize_reason(self) -> str:
        return self.inner._min_popsize_reason()

    # ----- the code ------------------------------------------------------------------
    def decode(self, bits: np.ndarray) -> np.ndarray:
        """``(n, dim)`` rows of the space's encoding from ``(n, n_bits)`` bit rows."""
        bits = np.rint(np.asarray(bits, dtype=np.float64)).astype(np.int64)
        out = np.empty((bits.shape[0], self.dim))
        for leaf in self.layout:
            part = bits[:, leaf.bits]
            if leaf.kind == "binary":
                out[:, leaf.encoded] = part
                continue
            groups = part.reshape(len(bits), leaf.count, leaf.per_entry)
            values = decode_bits(groups, leaf.cardinality, self.code)
            if leaf.kind == "permutation":  # random keys, ties by index
                values = np.argsort(values, axis=1, kind="stable")
            out[:, leaf.encoded] = leaf.offset + values
        return out

    def encode(self, x: np.ndarray, rows: Any = None) -> np.ndarray:
        """A bit row for each encoded row of ``x`` that decodes to it (module docstring);
        ValueError for a row that decodes to no value of the space (named by its index
        in ``rows``, default ``range(len(x))``)."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((len(x), self.n_bits), dtype=np.float64)
        names = range(len(x)) if rows is None else rows
        space = self.__dict__.get("space")  # None while __init__ encodes the start
        for i, row in zip(names, x, strict=True):
            try:
                if space is not None:
                    space.decode(row)
            except ValueError as error:
                raise ValueError(f"candidate row {i} is no value of the space: {error}; tell "
                                 "rows as ask() returned them or space.encode(value)") from None
        values = np.rint(x).astype(np.int64)
        for leaf in self.layout:
            part = values[:, leaf.encoded]
            if leaf.kind == "binary":
                out[:, leaf.bits] = part
                continue
            if leaf.kind == "permutation":  # evenly spaced keys in the row's order
                keys = np.empty_like(part)
                ranks = (np.arange(leaf.count) * leaf.cardinality) // leaf.count
                np.put_along_axis(keys, part, np.broadcast_to(ranks, part.shape), axis=1)
                part = keys
            else:
                part = part - leaf.offset
            bits = encode_values(part, leaf.cardinality, leaf.per_entry, self.code)
            out[:, leaf.bits] = bits.reshape(len(x), -1)
        return out

    # ----- ask / tell ---------------------------------------------------------------
    def _init_state(self, x0: np.ndarray) -> dict[str, np.ndarray]:
        return {"bits": np.zeros((0, self.n_bits)), "asked": np.zeros((0, self.dim))}

    def _ask(self, n: int) -> np.ndarray:
        bits = self.inner.ask(n)
        decoded = self.decode(as_float64(bits))
        self._bits_asked = bits  # the very array the inner returned: told back as is
        self.state = {"bits": as_float64(bits).copy(), "asked": decoded.copy()}
        return decoded

    def tell(self, candidates: Array, fitness: Array, **extra: Any) -> dict[str, float]:
        """Tell the inner optimizer the bit rows of ``candidates`` (module docstring)."""
        self._told_bits = self._bits_of(candidates)
        try:
            metrics = super().tell(candidates, fitness, **extra)
        finally:
            self._told_bits = None
        self.popsize = int(self.inner.popsize)
        return metrics

    def _bits_of(self, candidates: Array) -> Any:
        """The bit rows to tell for ``candidates`` (:func:`~nondiff.optim.inner_rows.
        inner_rows`); None where the base's checks will refuse them."""
        return inner_rows(candidates, self.bounds, self.state["asked"], self.state["bits"],
                          getattr(self, "_bits_asked", None), self.encode)

    def _tell(self, x: np.ndarray, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        bits = self._told_bits
        if bits is None:  # pragma: no cover - the base refused such rows already
            bits = self.encode(x)
        forward = {k: v for k, v in extra.items() if k not in ("raw_fitness", "violation")}
        metrics = self.inner.tell(bits, fitness, **forward)
        self.state = {"bits": np.zeros((0, self.n_bits)), "asked": np.zeros((0, self.dim))}
        self._bits_asked = None
        return {k: v for k, v in metrics.items() if k not in INNER_OWN_METRICS}

    def stop(self) -> dict[str, Any]:
        """The inner optimizer's reasons to stop."""
        return self.inner.stop()

    def _recommend(self) -> np.ndarray:
        """The inner optimizer's recommendation (the cGA: its best string), decoded."""
        return self.decode(as_float64(self.inner.recommend())[None, :])[0]

    # ----- checkpoints ---------------------------------------------------------------
    def _state_to_plain(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "bits": to_plain(self.state["bits"]),
                "asked": to_plain(self.state["asked"])}

    def _state_from_plain(self, plain: Any) -> None:
        if not isinstance(plain, Mapping) or set(plain) != {"inner", "bits", "asked"}:
            raise ValueError(f"not a binary-coded {self.name} state: expected keys "
                             "['asked', 'bits', 'inner']")
        bits = from_plain(np.zeros(0), plain["bits"]).reshape(-1, self.n_bits)
        asked = from_plain(np.zeros(0), plain["asked"]).reshape(-1, self.dim)
        if len(bits) != len(asked) or not np.isin(bits, (0.0, 1.0)).all():
            raise ValueError(f"corrupted binary-coded {self.name} state: bit rows "
                             f"{bits.shape} and asked rows {asked.shape}")
        self.inner.load_state_dict(plain["inner"])
        self.state = {"bits": bits, "asked": asked}
        self._bits_asked = None
        self.popsize = int(self.inner.popsize)


class _Bits(Binary):
    """The inner optimizer's space: ``n`` bits, starting at ``start`` when given."""

    def __init__(self, n: int, start: np.ndarray | None) -> None:
        super().__init__(n)
        self._start = None if start is None else np.asarray(start, dtype=np.float64).copy()

    def initial(self) -> np.ndarray:
        return super().initial() if self._start is None else self._start.copy()

    def __repr__(self) -> str:
        return f"Binary({self.count})"


def binary_code_needed(cls: type[BaseOptimizer], space: Any) -> bool:
    """Whether ``registry.create`` wraps ``cls`` in :class:`BinaryCoded` for ``space``:
    ``cls`` searches bit strings only and ``space`` has other leaves (real leaves
    then raise ``UnsupportedSpaceError`` in the wrapper).

    Example:
        >>> from nondiff.optim.binary_code import binary_code_needed
        >>> from nondiff.optim.compact_ga import CompactGA
        >>> from nondiff.optim.spaces import Binary, Integer
        >>> binary_code_needed(CompactGA, Integer(0, 9)), binary_code_needed(CompactGA, Binary(3))
        (True, False)
    """
    return isinstance(space, Space) and not space.is_constant \
        and cls.supported_spaces == frozenset({"binary"}) and not leaf_kinds(space) <= {"binary"}
