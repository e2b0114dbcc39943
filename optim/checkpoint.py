"""Checkpoint files: sealed with a checksum, written atomically, verified on load.

A checkpoint is a plain dict (tensors, numpy arrays, numbers, strings, lists,
dicts). :func:`seal` adds the SHA-256 of a canonical serialization of everything
in it (keys in sorted order; each tensor by dtype, shape and raw bytes; each number
by type and exact ``repr``), :func:`verify` recomputes it: a flipped byte in a
tensor, a value edited by hand and re-saved, or a truncated file is refused with a
ValueError naming the file, instead of resuming a silently different run.
:func:`write` replaces the file atomically (a crash mid-write keeps the old one);
:func:`read` loads with ``torch.load(weights_only=True)`` (no code is unpickled).

Objects whose state must travel with a run (a problem's episode counter and
observation statistics, an evaluator's) follow :class:`Stateful`; ``minimize``
saves and restores them beside the optimizer.

Example:
    >>> import os, tempfile, torch
    >>> from nondiff.optim.checkpoint import read, write
    >>> path = os.path.join(tempfile.mkdtemp(), "run.pt")
    >>> write(path, {"step": 3, "w": torch.ones(2)})
    >>> read(path)["step"]
    3
    >>> payload = torch.load(path, weights_only=True)
    >>> payload["w"][0] = 2.0  # edited without resealing
    >>> torch.save(payload, path)
    >>> read(path)
    Traceback (most recent call last):
    ...
    ValueError: checkpoint '...run.pt' is corrupt: ...
"""

from __future__ import annotations

import copy
import hashlib
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["CHECKSUM_KEY", "POSITIVE_KEYS", "Stateful", "check_counters", "check_state_values",
           "check_writable", "digest", "read", "seal", "verify", "write"]

CHECKSUM_KEY = "sha256"
"""The key under which :func:`seal` stores the checksum (hex digest)."""


@runtime_checkable
class Stateful(Protocol):
    """Anything whose state a checkpoint must hold for a resumed run to be exact."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


POSITIVE_KEYS = frozenset({"sigma", "sigma0", "stdev", "std"})
"""State entries that are step sizes or standard deviations: finite and > 0 wherever
they appear in a loaded state (a hand-edited ``sigma <= 0`` is refused)."""


def check_counters(counters: Any, keys: set[str], where: str) -> dict[str, int]:
    """``counters`` as ``{key: int}`` once every one of ``keys`` is a non-negative
    integer; a ValueError naming ``where`` and the field otherwise."""
    if not isinstance(counters, Mapping) or set(counters) != keys:
        got = sorted(counters) if isinstance(counters, Mapping) else type(counters).__name__
        raise ValueError(f"{where}: counters need keys {sorted(keys)}, got {got}")
    out = {}
    for key, value in counters.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{where}: counter {key!r} must be a non-negative integer, got "
                             f"{value!r}; the state was edited or damaged")
        out[key] = int(value)
    return out


def check_state_values(saved: Any, template: Any, where: str, path: str = "state") -> None:
    """Refuse hand-edited values in a loaded plain state, compared with ``template``
    (the plain state of a fresh optimizer of the same configuration): a tensor whose
    number of dimensions differs, or whose last dimension differs for a matrix (the
    problem dimension: population sizes may change, e.g. with restarts), and step
    sizes (:data:`POSITIVE_KEYS`) that are not finite and > 0."""
    if isinstance(saved, torch.Tensor) and isinstance(template, torch.Tensor):
        if saved.ndim != template.ndim or (saved.ndim >= 2
                                           and saved.shape[-1] != template.shape[-1]):
            raise ValueError(f"{where}: {path} has shape {tuple(saved.shape)}, this optimizer "
                             f"expects {tuple(template.shape)}; the state was edited or is "
                             "of another problem")
    elif isinstance(saved, Mapping):
        for key, value in saved.items():
            sub = template.get(key) if isinstance(template, Mapping) else None
            if key in POSITIVE_KEYS:
                _check_positive(value, where, f"{path}.{key}")
            check_state_values(value, sub, where, f"{path}.{key}")
    elif isinstance(saved, (list, tuple)):
        same = isinstance(template, (list, tuple)) and len(template) == len(saved)
        for i, value in enumerate(saved):
            check_state_values(value, template[i] if same else None, where, f"{path}[{i}]")


def _check_positive(value: Any, where: str, path: str) -> None:
    if isinstance(value, Mapping):  # e.g. pycma's snapshot of a float: {"t": ..., "v": 0.3}
        for key, sub in value.items():
            _check_positive(sub, where, f"{path}.{key}")
        return
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        ok = bool(torch.isfinite(value).all() and (value > 0).all())
    elif isinstance(value, (float, int, np.floating, np.integer)) and not isinstance(value, bool):
        ok = bool(np.isfinite(value) and value > 0)
    else:
        return
    if not ok:
        shown = value.tolist() if isinstance(value, torch.Tensor) else value
        raise ValueError(f"{where}: {path} must be finite and > 0 (a step size or standard "
                         f"deviation), got {shown!r}; the state was edited or damaged")


def _feed(h: Any, value: Any) -> None:
    """Add ``value`` to the hash ``h`` canonically (tagged, length-prefixed)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        head = f"T{t.dtype}{tuple(t.shape)}".encode()
        h.update(struct.pack("<Q", len(head)) + head + struct.pack("<Q", len(raw)) + raw)
    elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        _feed(h, torch.from_numpy(np.ascontiguousarray(value)))
    elif isinstance(value, np.ndarray):
        _feed(h, value.tolist())
    elif isinstance(value, Mapping):
        h.update(b"D" + struct.pack("<Q", len(value)))
        for key in sorted(value, key=repr):
            _feed(h, key)
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update((b"L" if isinstance(value, list) else b"U") + struct.pack("<Q", len(value)))
        for item in value:
            _feed(h, item)
    else:  # None, bool, int, float, str, bytes, numpy scalars: type and exact repr
        if isinstance(value, np.generic):
            value = value.item()
        text = f"{type(value).__name__}:{value!r}".encode()
        h.update(b"S" + struct.pack("<Q", len(text)) + text)


_PLAIN = (torch.Tensor, str, bytes, int, float, bool, type(None))


def _check_loadable(value: Any, path: str) -> None:
    """Refuse, before writing, what ``torch.load(weights_only=True)`` would refuse to
    read back (a checkpoint that could never resume): e.g. numpy arrays in a
    ``state_dict()``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_loadable(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_loadable(item, f"{path}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise ValueError(
            f"{path} is a {type(value).__name__}, which a checkpoint cannot hold (it is read "
            "back with torch.load(weights_only=True)); return tensors, numbers, strings, "
            "lists and dicts from state_dict(), e.g. torch.as_tensor(array) or float(x)")


def digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``payload`` without its checksum entry."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != CHECKSUM_KEY})
    return h.hexdigest()


def seal(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``payload`` with its checksum under :data:`CHECKSUM_KEY`: a
    snapshot, so training on after ``state_dict()`` (whose tensors are the live ones)
    does not invalidate what was sealed."""
    out = copy.deepcopy({k: v for k, v in payload.items() if k != CHECKSUM_KEY})
    out[CHECKSUM_KEY] = digest(out)
    return out


def verify(payload: Any, where: str) -> dict[str, Any]:
    """``payload`` without its checksum, after checking it; ValueError naming ``where``
    when the checksum is missing or does not match (the data was altered)."""
    if not isinstance(payload, Mapping) or CHECKSUM_KEY not in payload:
        raise ValueError(f"{where} is not a nondiff checkpoint (it has no checksum "
                         f"{CHECKSUM_KEY!r}; written by another program or an older nondiff): "
                         "delete it to start afresh, or point to another file")
    stored, actual = payload[CHECKSUM_KEY], digest(payload)
    if stored != actual:
        raise ValueError(
            f"{where} is corrupt: its contents do not match the checksum stored with them "
            f"(stored {str(stored)[:12]}..., computed {actual[:12]}...), so a byte was changed "
            "after it was written; delete it to start afresh, or restore a good copy")
    return {k: v for k, v in payload.items() if k != CHECKSUM_KEY}


def check_writable(path: str | os.PathLike[str], argument: str = "checkpoint") -> Path:
    """``Path(path)`` once its folder exists (or can be made) and takes a new file;
    a ValueError naming ``argument`` otherwise, before any work is done."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{argument}={str(path)!r} is a folder; pass a file path such as "
                         f"{str(path / 'run.pt')!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(f"{argument}={str(path)!r} cannot be written ({error.strerror or error}); "
                         "pass a path in a writable folder") from None
    return path


def write(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Seal ``payload`` and write it to ``path`` atomically (a crash mid-write keeps
    the old file)."""
    path = Path(path)
    _check_loadable(payload, "payload")
    sealed = seal(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(sealed, handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read(path: str | os.PathLike[str], what: str = "checkpoint") -> dict[str, Any] | None:
    """The verified payload written by :func:`write` (None if ``path`` is absent).

    Raises:
        ValueError: unreadable, without checksum, or altered since written; the
            message names the file.
    """
    path = Path(path)
    if not path.exists():
        return None
    where = f"{what} {str(path)!r}"
    try:
        payload = torch.load(path, weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{where} is unreadable, perhaps corrupt ({type(error).__name__}: {error}); delete "
            "it to start afresh, or point to another file") from error
    return verify(payload, where)
