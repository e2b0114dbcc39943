"""Pickle-free snapshots of a ``cma.CMAEvolutionStrategy`` (pycma).

:func:`snapshot` walks the pycma object graph and returns plain data — dicts
with string keys, lists, strings, numbers and torch tensors — that loads with
``torch.load(weights_only=True)``. :func:`restore` writes such a snapshot back
into a *freshly constructed* instance made with the same options, after which
the run continues bit for bit as if it had never been interrupted.

How the graph is stored: every container, array and pycma object becomes one
entry of a flat ``nodes`` list and is referenced by index (``{"t": "ref", "i":
k}``), so objects referenced twice (``es.B is es.sm.B``), cycles
(``es.integer_centering.params["es"] is es``) and array views
(``es.dC`` is a read-only view of ``es.sm.C``'s diagonal) come back shared as
they were. A pycma object is stored as its class's qualified name plus its
``__dict__`` (plus its items for ``dict``/``list``/``collections.deque``
subclasses, and a deque's ``maxlen``); ``collections.deque`` and
``collections.defaultdict`` (whose ``default_factory`` is code, see below) are
containers like ``list`` and ``dict``. On restore only
classes of the ``cma`` package (or ones the caller lists) are instantiated,
with ``cls.__new__(cls)`` — no ``__init__``, ``__setstate__`` or other code
named by the data runs. Code is never stored: functions, classes and callables
that are not pycma objects (options such as ``randn``, ``BoundaryHandler``,
``CMA_eigenmethod``) are recorded by the path where they were found and taken
from the fresh instance at the same path; bound methods of pycma objects
(``IntegerCentering.center``) are re-bound to the restored object by name.

pycma's solution archives (``cma.utilities.utils.SolutionDict``) are keyed by
``hash(x.tobytes())``, which Python salts per process; when the salt differs
from the snapshot's (a stored probe hash tells), their keys are recomputed, so a
snapshot resumes in another process too, also between ``ask`` and ``tell``.

Limits: objects of classes outside the allow-list, ``__slots__`` without a
``__dict__``, dict keys other than primitives/tuples and object arrays holding
unsupported values raise :class:`TypeError` at snapshot time (fail loudly
rather than restore something different). Attributes named in ``skip`` of the
root are not stored; they keep the fresh instance's value.

Example:
    >>> import cma, numpy as np
    >>> opts = {"verbose": -9, "verb_log": 0, "seed": 3}
    >>> es = cma.CMAEvolutionStrategy(np.ones(3), 0.5, opts)
    >>> es.tell(es.ask(), [1.0] * es.popsize)
    >>> plain = snapshot(es)
    >>> twin = cma.CMAEvolutionStrategy(np.ones(3), 0.5, opts)
    >>> twin = restore(plain, twin)
    >>> bool(np.array_equal(twin.mean, es.mean)), twin.countiter == es.countiter
    (True, True)
"""

from __future__ import annotations

import collections
import inspect
import sys
import types
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

FORMAT = "pycma-graph"
VERSION = 1

_PRIMITIVES = (type(None), bool, int, float, str)
_TORCH_DTYPES = frozenset(np.dtype(t) for t in (
    "bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64",
    "complex64", "complex128"))
_PROBE = b"nondiff: is str/bytes hashing salted like when the snapshot was taken?"
_BUSY = object()  # marks an immutable node being decoded (cycle guard)


def _is_pycma_class(cls: type, extra: frozenset[type]) -> bool:
    module = getattr(cls, "__module__", "") or ""
    return cls in extra or module == "cma" or module.startswith("cma.")


def snapshot(root: Any, *, skip: frozenset[str] = frozenset(),
             extra_classes: tuple[type, ...] = ()) -> dict[str, Any]:
    """Plain-data snapshot of the pycma object ``root`` (see module docstring)."""
    return _Encoder(frozenset(extra_classes), skip).run(root)


def restore(plain: Mapping[str, Any], fresh: Any, *,
            extra_classes: tuple[type, ...] = ()) -> Any:
    """Write the snapshot ``plain`` into ``fresh`` (same class, same options) in place.

    Raises:
        ValueError: ``plain`` is not a snapshot, is corrupted, names a class
            outside the allow-list, or does not fit ``fresh``.
    """
    if not isinstance(plain, Mapping) or plain.get("format") != FORMAT:
        raise ValueError("not a pycma snapshot (missing format tag)")
    if plain.get("version") != VERSION:
        raise ValueError(f"unsupported pycma snapshot version {plain.get('version')!r}")
    try:
        return _Decoder(plain, fresh, frozenset(extra_classes)).run()
    except ValueError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError) as err:
        raise ValueError(f"corrupted pycma snapshot: {type(err).__name__}: {err}") from None


# ----- encoding --------------------------------------------------------------------
class _Encoder:
    def __init__(self, extra: frozenset[type], skip: frozenset[str]) -> None:
        self.extra, self.skip = extra, skip
        self.nodes: list[Any] = []
        self.memo: dict[int, int] = {}
        self.alive: list[Any] = []  # keep encoded objects alive so ids stay unique
        self.arrays: dict[int, tuple[int, np.ndarray]] = {}  # id -> (node, array)

    def run(self, root: Any) -> dict[str, Any]:
        if not _is_pycma_class(type(root), self.extra):
            raise TypeError(f"root must be a pycma object, got {type(root).__name__}")
        ref = self.value(root, ())
        self._link_views()
        return {"format": FORMAT, "version": VERSION, "root": ref["i"], "nodes": self.nodes,
                "skipped": sorted(self.skip), "hash_probe": hash(_PROBE)}

    def _new(self, obj: Any) -> tuple[dict[str, Any], int]:
        index = len(self.nodes)
        self.nodes.append(None)
        self.memo[id(obj)] = index
        self.alive.append(obj)
        return {"t": "ref", "i": index}, index

    def value(self, v: Any, path: tuple) -> Any:
        if type(v) in _PRIMITIVES:
            return v
        if isinstance(v, np.generic):
            if v.dtype.hasobject:
                raise TypeError(f"unsupported numpy scalar at {_fmt(path)}")
            return {"t": "npscalar", "dtype": v.dtype.str, "v": v.item()}
        if id(v) in self.memo:
            return {"t": "ref", "i": self.memo[id(v)]}
        ref, i = self._new(v)
        self.nodes[i] = self._node(v, path, i)
        return ref

    def _node(self, v: Any, path: tuple, index: int) -> dict[str, Any]:
        kind = type(v)
        if kind is np.ndarray:
            self.arrays[id(v)] = (index, v)
            return _array_node(v, path)
        if kind in (list, tuple, set, frozenset):
            items = sorted(v, key=repr) if kind in (set, frozenset) else v
            return {"t": kind.__name__,
                    "items": [self.value(x, (*path, ("i", j))) for j, x in enumerate(items)]}
        if kind is dict:
            return self._dict(v.items(), path)
        if kind is collections.deque:
            return {"t": "deque", "maxlen": v.maxlen,
                    "items": [self.value(x, (*path, ("i", j))) for j, x in enumerate(v)]}
        if kind is collections.defaultdict:  # the factory is code: from the fresh instance
            factory = self.value(v.default_factory, (*path, ("f", "default_factory")))
            return {**self._dict(v.items(), path), "t": "defaultdict", "factory": factory}
        if kind is range:
            return {"t": "range", "args": [v.start, v.stop, v.step]}
        if kind is bytes:
            return {"t": "bytes", "data": torch.from_numpy(np.frombuffer(v, np.uint8).copy())}
        if isinstance(v, types.MethodType) and _is_pycma_class(type(v.__self__), self.extra):
            return {"t": "method", "self": self.value(v.__self__, (*path, ("a", "__self__"))),
                    "name": v.__func__.__name__}
        if not isinstance(v, type) and _is_pycma_class(kind, self.extra):
            return self._object(v, path)
        if callable(v):  # code: taken from the fresh instance on restore
            if any(step is None for step in path):
                raise TypeError(f"callable {v!r} found under a non-addressable key")
            return {"t": "fresh", "path": [list(step) for step in path]}
        raise TypeError(f"cannot snapshot pycma state at {_fmt(path)}: type {kind.__name__}")

    def _dict(self, items: Any, path: tuple) -> dict[str, Any]:
        keys, values = [], []
        for k, x in items:
            keys.append(self.value(k, (*path, None)))
            step = ("k", k) if type(k) in (str, int) else None
            values.append(self.value(x, (*path, step)))
        return {"t": "dict", "keys": keys, "values": values}

    def _object(self, v: Any, path: tuple) -> dict[str, Any]:
        kind = type(v)
        bases = {b for b in kind.__mro__ if b.__module__ in ("builtins", "collections")}
        if not hasattr(v, "__dict__") or bases - {object, dict, list, collections.deque}:
            raise TypeError(f"cannot snapshot {kind.__qualname__} at {_fmt(path)}: "
                            "no __dict__ or an unsupported builtin base")
        attrs = {name: self.value(x, (*path, ("a", name)))
                 for name, x in vars(v).items() if not (path == () and name in self.skip)}
        node = {"t": "obj", "module": kind.__module__, "qualname": kind.__qualname__,
                "attrs": attrs}
        if isinstance(v, dict):
            node["dict"] = self._dict(list(dict.items(v)), path)
        if isinstance(v, list):
            node["list"] = [self.value(x, (*path, ("i", j))) for j, x in enumerate(v)]
        if isinstance(v, collections.deque):  # e.g. cma.constraints_handler.DequeCDF
            node["deque"] = {"maxlen": v.maxlen, "items": [
                self.value(x, (*path, ("i", j))) for j, x in enumerate(v)]}
        return node

    def _link_views(self) -> None:
        """Store arrays that view another stored array's memory as views of it."""
        for index, arr in list(self.arrays.values()):
            owner = arr
            while isinstance(owner.base, np.ndarray):
                owner = owner.base
            if owner is arr or not owner.flags.c_contiguous or owner.dtype.hasobject:
                continue
            if id(owner) not in self.arrays:  # e.g. rows of a user's array: store the owner
                _, i = self._new(owner)
                self.nodes[i] = _array_node(owner, ())
                self.arrays[id(owner)] = (i, owner)
            offset = (arr.__array_interface__["data"][0]
                      - owner.__array_interface__["data"][0])
            self.nodes[index] = {"t": "view", "base": {"t": "ref", "i": self.arrays[id(owner)][0]},
                                 "dtype": arr.dtype.str, "shape": list(arr.shape),
                                 "strides": list(arr.strides), "offset": int(offset),
                                 "writeable": bool(arr.flags.writeable)}


def _array_node(a: np.ndarray, path: tuple) -> dict[str, Any]:
    if a.dtype.hasobject:
        raise TypeError(f"object array at {_fmt(path)} is not supported")
    data = np.array(a, copy=True, order="C")
    if data.dtype in _TORCH_DTYPES:
        tensor = torch.from_numpy(data)
    else:  # other dtypes (byte-swapped, uint32, ...) travel as raw bytes
        tensor = torch.from_numpy(data.reshape(-1).view(np.uint8).copy())
    return {"t": "ndarray", "dtype": a.dtype.str, "shape": list(a.shape), "data": tensor,
            "writeable": bool(a.flags.writeable)}


def _fmt(path: tuple) -> str:
    out = "es"
    for step in path:
        out += "[?]" if step is None else (
            f".{step[1]}" if step[0] in ("a", "f") else f"[{step[1]!r}]")
    return out


# ----- decoding --------------------------------------------------------------------
class _Decoder:
    def __init__(self, plain: Mapping[str, Any], fresh: Any, extra: frozenset[type]) -> None:
        self.nodes = plain["nodes"]
        if not isinstance(self.nodes, list):
            raise ValueError("corrupted pycma snapshot: nodes is not a list")
        self.root = int(plain["root"])
        self.fresh, self.extra = fresh, extra
        self.fresh_attrs = dict(vars(fresh))
        self.skipped = [str(name) for name in plain.get("skipped", [])]
        self.rehash = plain.get("hash_probe") != hash(_PROBE)
        self.objs: dict[int, Any] = {}
        self.created: list[Any] = []

    def run(self) -> Any:
        node = self.nodes[self.root]
        if node.get("t") != "obj" or (node["module"], node["qualname"]) != (
                type(self.fresh).__module__, type(self.fresh).__qualname__):
            raise ValueError("pycma snapshot root does not match the fresh instance's class")
        self.objs[self.root] = self.fresh
        attrs = {name: self.value(x) for name, x in node["attrs"].items()}
        from cma.utilities.utils import SolutionDict  # pycma is imported by now: fresh is one

        for obj in self.created if self.rehash else ():
            if isinstance(obj, SolutionDict):
                _rehash(obj)
        for name in self.skipped:  # skipped attributes keep the fresh instance's value
            if name in self.fresh_attrs:
                attrs[name] = self.fresh_attrs[name]
        vars(self.fresh).clear()
        vars(self.fresh).update(attrs)
        return self.fresh

    def value(self, v: Any) -> Any:
        if type(v) in _PRIMITIVES:
            return v
        if not isinstance(v, Mapping):
            raise ValueError(
                f"corrupted pycma snapshot: unexpected value of type {type(v).__name__}")
        if v.get("t") == "ref":
            return self.node(int(v["i"]))
        if v.get("t") == "npscalar":
            dtype = np.dtype(v["dtype"])
            if dtype.hasobject:
                raise ValueError("corrupted pycma snapshot: object scalar")
            return dtype.type(v["v"])
        raise ValueError(f"corrupted pycma snapshot: unknown value tag {v.get('t')!r}")

    def node(self, i: int) -> Any:
        if i in self.objs:
            obj = self.objs[i]
            if obj is _BUSY:
                raise ValueError("corrupted pycma snapshot: cycle through an immutable node")
            return obj
        if not 0 <= i < len(self.nodes):
            raise ValueError(f"corrupted pycma snapshot: reference {i} out of range")
        n = self.nodes[i]
        t = n["t"]
        if t == "ndarray":
            obj = _decode_array(n)
        elif t == "view":
            obj = self._view(n)
        elif t == "list":
            obj = self.objs[i] = []
            obj.extend(self.value(x) for x in n["items"])
        elif t == "dict":
            obj = self.objs[i] = {}
            self._fill_dict(obj, n)
        elif t == "deque":
            obj = self.objs[i] = collections.deque(maxlen=_maxlen(n["maxlen"]))
            obj.extend(self.value(x) for x in n["items"])
        elif t == "defaultdict":
            factory = self.value(n["factory"])
            if factory is not None and not callable(factory):
                raise ValueError("corrupted pycma snapshot: default_factory is not callable")
            obj = self.objs[i] = collections.defaultdict(factory)
            self._fill_dict(obj, n)
        elif t in ("tuple", "set", "frozenset"):
            self.objs[i] = _BUSY
            obj = {"tuple": tuple, "set": set, "frozenset": frozenset}[t](
                self.value(x) for x in n["items"])
        elif t == "bytes":
            obj = bytes(n["data"].numpy().tobytes())
        elif t == "range":
            obj = range(*(int(a) for a in n["args"]))
        elif t == "obj":
            obj = self._object(i, n)
        elif t == "method":  # bind the class's function; no property or __getattr__ runs
            owner = self.value(n["self"])
            func = inspect.getattr_static(type(owner), str(n["name"]), None)
            if not isinstance(func, types.FunctionType):
                raise ValueError(f"corrupted pycma snapshot: {n['name']!r} is not a method")
            obj = types.MethodType(func, owner)
        elif t == "fresh":
            obj = self._fresh(n["path"])
        else:
            raise ValueError(f"corrupted pycma snapshot: unknown node tag {t!r}")
        self.objs[i] = obj
        return obj

    def _fill_dict(self, obj: dict, n: Mapping[str, Any]) -> None:
        keys, values = n["keys"], n["values"]
        if len(keys) != len(values):
            raise ValueError("corrupted pycma snapshot: dict keys and values differ in length")
        dict.update(obj, zip([self.value(k) for k in keys], [self.value(x) for x in values],
                             strict=True))

    def _object(self, i: int, n: Mapping[str, Any]) -> Any:
        cls = self._class(str(n["module"]), str(n["qualname"]))
        obj = self.objs[i] = cls.__new__(cls)
        if "dict" in n:
            self._fill_dict(obj, n["dict"])
        if "list" in n:
            list.extend(obj, [self.value(x) for x in n["list"]])
        if "deque" in n:
            if not isinstance(obj, collections.deque):
                raise ValueError(f"corrupted pycma snapshot: {n['qualname']} is not a deque")
            collections.deque.__init__(obj, [self.value(x) for x in n["deque"]["items"]],
                                       _maxlen(n["deque"]["maxlen"]))
        vars(obj).update({str(k): self.value(x) for k, x in n["attrs"].items()})
        self.created.append(obj)
        return obj

    def _class(self, module: str, qualname: str) -> type:
        for cls in self.extra:
            if (cls.__module__, cls.__qualname__) == (module, qualname):
                return cls
        if not (module == "cma" or module.startswith("cma.")):
            raise ValueError(f"pycma snapshot names class {module}.{qualname}, which is "
                             "outside the allow-list (classes of the cma package)")
        cls: Any = sys.modules.get(module)  # look up only, never import
        for part in qualname.split("."):
            cls = inspect.getattr_static(cls, part, None)
        if not isinstance(cls, type) or (cls.__module__, cls.__qualname__) != (module, qualname):
            raise ValueError(f"pycma snapshot names unknown class {module}.{qualname}")
        return cls

    def _view(self, n: Mapping[str, Any]) -> np.ndarray:
        base = self.value(n["base"])
        if not isinstance(base, np.ndarray) or not base.flags.c_contiguous:
            raise ValueError("corrupted pycma snapshot: view of a non-array")
        arr = np.ndarray(tuple(n["shape"]), dtype=np.dtype(n["dtype"]), buffer=base,
                         offset=int(n["offset"]), strides=tuple(n["strides"]))
        arr.flags.writeable = bool(n["writeable"]) and base.flags.writeable
        return arr

    def _fresh(self, path: list) -> Any:
        obj: Any = self.fresh
        for depth, (kind, key) in enumerate(path):
            try:
                if kind == "a":
                    obj = (self.fresh_attrs if depth == 0 else vars(obj))[key]
                elif kind == "k":
                    obj = dict.__getitem__(obj, key) if isinstance(obj, dict) else obj[key]
                elif kind == "f":
                    if not isinstance(obj, collections.defaultdict):
                        raise TypeError("not a defaultdict")
                    obj = obj.default_factory
                else:
                    obj = obj[int(key)]
            except (KeyError, IndexError, TypeError):
                raise ValueError(
                    f"pycma snapshot refers to {_fmt(tuple(map(tuple, path)))}, which the freshly "
                    "constructed instance lacks; construct the optimizer with the same "
                    "arguments") from None
        return obj


def _maxlen(value: Any) -> int | None:
    if value is None or (type(value) is int and value >= 0):
        return value
    raise ValueError(f"corrupted pycma snapshot: bad deque maxlen {value!r}")


def _decode_array(n: Mapping[str, Any]) -> np.ndarray:
    dtype, shape, data = np.dtype(n["dtype"]), tuple(int(s) for s in n["shape"]), n["data"]
    if dtype.hasobject or not isinstance(data, torch.Tensor):
        raise ValueError("corrupted pycma snapshot: bad array node")
    raw = data.detach().cpu().numpy()
    if dtype in _TORCH_DTYPES:
        if raw.dtype != dtype or raw.shape != shape:
            raise ValueError("corrupted pycma snapshot: array dtype or shape mismatch")
        arr = np.array(raw, copy=True)
    else:
        arr = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(shape).copy()
    arr.flags.writeable = bool(n["writeable"])
    return arr


def _rehash(d: Any) -> None:
    """Recompute the (per-process salted) hash keys of a pycma ``SolutionDict``."""
    new_key = {k: d.key(x) for k, x in d._unhashed_keys.items()}
    d.data = {new_key.get(k, k): v for k, v in d.data.items()}
    d.data_with_same_key = {new_key.get(k, k): v for k, v in d.data_with_same_key.items()}
    d._unhashed_keys = {new_key[k]: x for k, x in d._unhashed_keys.items()}
