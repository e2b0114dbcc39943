"""Discrete structure declared inside ordinary ``nn.Module``s, kept apart from the weights.

A model that is partly a program declares its discrete decisions as submodules:

- :class:`Choice` among submodules or plain functions (which op, which width, which
  block) — a categorical leaf; the options' weights stay weights;
- :class:`Gates` ``(n)`` — a binary mask (pruning, feature selection, skip connections);
- :class:`Program` ``(dsl, length)`` — a token sequence over a small DSL of list or
  tensor functions, executed left to right;
- :class:`IntParam` / :class:`RealParam` — integer and real hyperparameters.

A declaration with a single possible value (a one-option ``Choice``, a one-token
``Program`` DSL, ``IntParam(2, 2)``, ``Gates(0)``) is a constant: it runs as declared
and takes no coordinate of the space, so optimizers search only the rest.

:func:`structure_space` walks ``model.named_modules()`` (as ``named_parameters`` walks
the weights) and returns one :class:`~nondiff.optim.spaces.Product` keyed by module path, so any
optimizer of :mod:`nondiff.optim` can search it; :func:`set_structure` / :func:`get_structure`
fix and read one value. The current value lives in a plain attribute (saved in the
module's ``state_dict`` as extra state), never in a ``Parameter``: ``model.parameters()``
keeps meaning weights, and changing the structure never touches them.

Batched evaluation (ENAS, Pham et al. 2018, evaluate many child models with shared
weights): inside ``with batched_structures(model, values, batch)`` the input batch is
repeated once per candidate and each row block runs under its own structure —
:class:`Choice` runs every option once on all rows that picked it, :class:`Gates`
multiplies each block by its own mask, :class:`Program` runs each distinct program
once. Reading a declaration's single ``value`` there raises :class:`StructureBatchError`
(callers then fall back to one forward pass per candidate).

Devices: declarations hold no tensors; masks and row indices are made on the device
of the input (the model's), a :class:`Gates` mask once per value and device.

Sources:
    - H. Pham, M. Guan, B. Zoph, Q. Le, J. Dean, "Efficient neural architecture
      search via parameter sharing" (ENAS), ICML 2018.
    - R. J. Williams, "Simple statistical gradient-following algorithms for
      connectionist reinforcement learning", Machine Learning 8, 1992.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.structure import Choice, Gates, structure_space, set_structure
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.gates = Gates(4)
    ...         self.act = Choice({"relu": nn.ReLU(), "tanh": nn.Tanh()})
    ...         self.out = nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.out(self.act(self.gates(x)))
    >>> net = Net()
    >>> structure_space(net)
    Product({'gates': Binary(4), 'act': Categorical(['relu', 'tanh'])})
    >>> set_structure(net, {"gates": [1, 0, 1, 1], "act": "tanh"})
    >>> net.act.value, len(list(net.parameters()))  # weights only: out.weight, out.bias
    ('tanh', 2)
    >>> net(torch.ones(3, 4)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from nondiff.optim.spaces import Binary, Categorical, Integer, Product, Real, Space
from torch import nn

__all__ = [
    "Choice", "Gates", "IntParam", "Program", "RealParam", "Structure", "StructureBatchError",
    "batched_structures", "declared_entries", "get_structure", "named_structures",
    "set_structure", "set_structure_encoded", "structure_space",
]  # fmt: skip


class StructureBatchError(RuntimeError):
    """A declaration was used in a way that one batched forward pass cannot serve."""


class _Function(nn.Module):
    """A plain callable as a module (so a :class:`Choice` can hold functions)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


def _as_module(option: Any, what: str) -> nn.Module:
    if isinstance(option, nn.Module):
        return option
    if callable(option):
        return _Function(option)
    raise ValueError(f"{what} must be an nn.Module or a callable, got {option!r}")


class Structure(nn.Module):
    """Base of every declaration: a space and a current value (not a weight).

    Subclasses set ``self._space`` in ``__init__``; the value is stored encoded, as
    ``space.encode`` gives it, and decoded when read.
    """

    _space: Space

    def __init__(self) -> None:
        super().__init__()
        self._batch: tuple[list[Any], Any] | None = None  # (values, rows per value)

    @property
    def space(self) -> Space:
        """The set of values this declaration may take."""
        return self._space

    @property
    def value(self) -> Any:
        """The current value (decoded). Raises in a batched evaluation."""
        if self._batch is not None:
            raise StructureBatchError(
                f"{type(self).__name__}.value is undefined while candidates are evaluated in "
                "one batch; use the module's forward, or evaluate one structure at a time")
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        self.set_encoded(self._space.encode(value))

    def set_encoded(self, encoded: Any) -> None:
        """Set the value from its encoding (rounded and checked by the space)."""
        decoded = self._space.decode(encoded)
        self._encoded = self._space.encode(decoded)
        self._value = decoded

    @property
    def encoded(self) -> np.ndarray:
        """A copy of the current encoding, ``(space.size,)`` float64."""
        return self._encoded.copy()

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        return {"encoded": torch.from_numpy(self._encoded.copy())}

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, Mapping) or "encoded" not in state:
            raise ValueError(f"not a {type(self).__name__} extra state: {state!r}")
        self.set_encoded(np.asarray(state["encoded"], dtype=np.float64))

    def _block_values(self) -> tuple[list[Any], Any]:
        """(values, rows): ``rows`` an int (the same for every value) or one int per value."""
        assert self._batch is not None
        return self._batch

    def extra_repr(self) -> str:
        return f"space={self._space!r}, value={self._value!r}"


class Choice(Structure):
    """One of several submodules or functions; the picked one runs in ``forward``.

    Args:
        *options: ``nn.Module``s or callables; the value is the option's index.
        Or one mapping ``{name: option}``; the value is then the name.
        default: the initial value (default: the first option).

    The options are registered submodules, so their weights are model weights
    whichever is picked. In a batched evaluation every option shares its output
    shape.
    """

    def __init__(self, *options: Any, default: Any = None) -> None:
        super().__init__()
        if len(options) == 1 and isinstance(options[0], Mapping):
            named = dict(options[0])
            labels: list[Any] = list(named)
            modules = [_as_module(o, f"Choice option {k!r}") for k, o in named.items()]
        else:
            labels = list(range(len(options)))
            modules = [_as_module(o, f"Choice option {i}") for i, o in enumerate(options)]
        if not modules:
            raise ValueError("Choice needs at least one option, got none")
        self.options = nn.ModuleList(modules)
        self._space = Categorical(labels)
        self.value = labels[0] if default is None else default

    @property
    def index(self) -> int:
        """Index of the picked option."""
        if self._batch is not None:
            raise StructureBatchError("Choice.index is undefined in a batched evaluation")
        # the Categorical encoding is the index; one option encodes to nothing (a constant)
        return int(self._encoded[0]) if self._encoded.size else 0

    @property
    def chosen(self) -> nn.Module:
        """The picked option module."""
        return self.options[self.index]

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self._batch is None:
            return self.options[self.index](x, *args, **kwargs)
        values, rows = self._block_values()
        indices = [self._space.choices.index(v) for v in values]
        if len(set(indices)) == 1:
            return self.options[indices[0]](x, *args, **kwargs)
        pick = np.repeat(indices, rows)  # the rows of each option, found on the host
        out: torch.Tensor | None = None
        for i in sorted(set(indices)):
            where = torch.as_tensor(np.flatnonzero(pick == i), device=x.device)
            part = self.options[i](x[where], *args, **kwargs)
            if out is None:
                out = part.new_zeros((x.shape[0], *part.shape[1:]))
            out[where] = part
        return out


class Gates(Structure):
    """A binary mask of ``n`` gates; ``gates(x)`` multiplies ``x`` along ``dim``.

    Args:
        n: number of gates.
        default: initial mask (default: all open).
        dim: the dimension of ``x`` the gates act on (default 1: features/channels).
    """

    def __init__(self, n: int, default: Sequence[bool] | None = None, dim: int = 1) -> None:
        super().__init__()
        self._space = Binary(n)
        self.dim = int(dim)
        self.value = np.ones(n, dtype=bool) if default is None else np.asarray(default)

    @property
    def mask(self) -> torch.Tensor:
        """The current mask as a float tensor ``(n,)``."""
        return torch.as_tensor(self.value, dtype=torch.float32)

    def set_encoded(self, encoded: Any) -> None:
        super().set_encoded(encoded)
        self._masks: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def _mask_like(self, x: torch.Tensor) -> torch.Tensor:
        """The mask on ``x``'s device and dtype, made once per value (not per forward)."""
        masks = self.__dict__.setdefault("_masks", {})
        key = (x.device, x.dtype)
        if key not in masks:
            masks[key] = torch.as_tensor(self._value, dtype=x.dtype, device=x.device)
        return masks[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, dim = self._space.size, self.dim % x.dim()
        if x.shape[dim] != n:
            raise ValueError(f"Gates({n}) got an input with {x.shape[dim]} entries on dim "
                             f"{self.dim}; pass dim= to gate another dimension")
        shape = [1] * x.dim()
        if self._batch is None:
            shape[dim] = n
            return x * self._mask_like(x).view(shape)
        values, rows = self._block_values()
        masks = torch.as_tensor(np.stack(values), dtype=x.dtype, device=x.device)
        if not isinstance(rows, int):  # one count per value, made on the host: no sync
            rows = torch.as_tensor(rows, device=x.device)
        size = {"output_size": x.shape[0]} if masks.numel() else {}  # (a hint: no sync)
        masks = masks.repeat_interleave(rows, dim=0, **size)  # (rows, n)
        shape[0], shape[dim] = x.shape[0], n
        return x * masks.view(shape)


class Program(Structure):
    """A sequence of ``length`` tokens over a DSL, applied left to right.

    Args:
        dsl: ``{name: function}``; each function maps the running value to the next
            (e.g. a ``(batch, items)`` tensor to another). ``nn.Module`` functions are
            registered, so their weights train.
        length: number of tokens.
        default: initial token names (default: the first token repeated).
    """

    def __init__(self, dsl: Mapping[str, Callable[[Any], Any]], length: int,
                 default: Sequence[str] | None = None) -> None:
        super().__init__()
        if not isinstance(dsl, Mapping) or not dsl:
            raise ValueError(f"Program needs a non-empty dict {{name: function}}, got {dsl!r}")
        self.dsl = nn.ModuleDict({name: _as_module(fn, f"DSL token {name!r}")
                                  for name, fn in dsl.items()})
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"Program length must be a positive integer, got {length!r}")
        self.length = length
        self._space = Categorical(list(dsl), size=length)
        self.value = [next(iter(dsl))] * length if default is None else list(default)

    def run(self, program: Sequence[str], x: Any) -> Any:
        """Execute the token sequence ``program`` on ``x``."""
        for token in program:
            x = self.dsl[token](x)
        return x

    def forward(self, x: Any) -> Any:
        if self._batch is None:
            return self.run(self.value, x)
        values, rows = self._block_values()
        sizes = [rows] * len(values) if isinstance(rows, int) else [int(r) for r in rows]
        starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        outputs: dict[tuple[str, ...], Any] = {}
        parts = []
        for k, program in enumerate(values):
            key = tuple(program)
            if key not in outputs:  # each distinct program runs once on its own rows
                blocks = [j for j, p in enumerate(values) if tuple(p) == key]
                where = torch.cat([torch.arange(starts[j], starts[j + 1],
                                                device=getattr(x, "device", None))
                                   for j in blocks])
                offsets = np.concatenate([[0], np.cumsum([sizes[j] for j in blocks])]).tolist()
                outputs[key] = (blocks, offsets, self.run(key, x[where]))
            blocks, offsets, out = outputs[key]
            i = blocks.index(k)
            parts.append(out[offsets[i]:offsets[i + 1]])
        return torch.cat(parts)


class IntParam(Structure):
    """An integer hyperparameter in ``[low, high]`` (read ``.value``)."""

    def __init__(self, low: int, high: int, default: int | None = None) -> None:
        super().__init__()
        self._space = Integer(low, high)
        self.value = low if default is None else default


class RealParam(Structure):
    """A real hyperparameter in ``[low, high]``, optionally log-scaled (read ``.value``)."""

    def __init__(self, low: float, high: float, default: float | None = None, *,
                 log: bool = False) -> None:
        super().__init__()
        self._space = Real(low, high, log=log)
        if default is None:
            default = float(np.exp(self._space.initial()[0]) if log else self._space.initial()[0])
        self.value = default


# ----- collecting and setting ---------------------------------------------------------
def named_structures(model: nn.Module) -> Iterator[tuple[str, Structure]]:
    """``(path, declaration)`` for every declaration in ``model`` (the model itself: "root")."""
    for name, module in model.named_modules():
        if isinstance(module, Structure):
            yield (name or "root"), module


def declared_entries(model: nn.Module, space: Space) -> list[tuple[int, Structure]]:
    """``(first entry, declaration)`` for every declaration of ``model``: where its entries
    start in the encoding of ``space`` (``structure_space(model)``).

    Raises:
        ValueError: ``space`` is not the model's (its size differs).
    """
    out, at = [], 0
    for _, decl in named_structures(model):
        out.append((at, decl))
        at += decl.space.size
    if at != space.size:
        raise ValueError(f"space has {space.size} entries, the model's declarations "
                         f"{at}; pass structure_space(model)")
    return out


def structure_space(model: nn.Module) -> Product:
    """All declarations of ``model`` as one named space, keyed by module path.

    Raises:
        ValueError: the model declares no structure.
    """
    spaces = {name: decl.space for name, decl in named_structures(model)}
    if not spaces:
        raise ValueError(f"{type(model).__name__} declares no structure; add a Choice, Gates, "
                         "Program, IntParam or RealParam submodule")
    return Product(spaces)


def get_structure(model: nn.Module) -> dict[str, Any]:
    """The current value of every declaration, ``{path: value}``."""
    return {name: decl.value for name, decl in named_structures(model)}


def set_structure(model: nn.Module, value: Mapping[str, Any]) -> None:
    """Set every declaration from ``{path: value}`` (a value of :func:`structure_space`).

    Raises:
        ValueError: unknown or missing paths, or a value outside its space (nothing
            is changed then).
    """
    space = structure_space(model)
    set_structure_encoded(model, space.encode(value))


def set_structure_encoded(model: nn.Module, encoded: Any) -> None:
    """Set every declaration from one encoded vector of :func:`structure_space`."""
    space = structure_space(model)
    array = space.encode(space.decode(encoded))  # validates all before changing anything
    start = 0
    for _, decl in named_structures(model):
        decl.set_encoded(array[start:start + decl.space.size])
        start += decl.space.size


@contextlib.contextmanager
def batched_structures(model: nn.Module, values: Sequence[Mapping[str, Any]],
                       rows: int | Sequence[int]) -> Iterator[None]:
    """Evaluate ``len(values)`` structures in one forward pass of a repeated batch.

    Inside the block, row ``j * rows + i`` of the model's input runs under
    ``values[j]`` (declarations read per-row values; see the module docstring). With
    ``rows`` a sequence (one count per value, e.g. the blocks of a fair weight step of
    :mod:`nondiff.hybrid.sampling`), the rows of ``values[j]`` follow those of
    ``values[j - 1]``, ``rows[j]`` of them.
    """
    if isinstance(rows, (int, np.integer)):
        rows = int(rows)
    else:
        rows = [int(r) for r in rows]
        if len(rows) != len(values) or min(rows, default=0) < 0:
            raise ValueError(f"rows must be one count >= 0 per structure ({len(values)}), "
                             f"got {rows}")
    decls = list(named_structures(model))
    try:
        for name, decl in decls:
            decl._batch = ([v[name] for v in values], rows)
        yield
    finally:
        for _, decl in decls:
            decl._batch = None
