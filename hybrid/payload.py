"""What travels to a pipeline worker: bytes that name no device but the CPU.

:func:`~nondiff.hybrid.parallel.fit_parallel` ships each stage (block, synthesizer,
optimizers, queues) to its worker process as ``torch.save`` bytes. ``torch.save`` records
every tensor's device with its data ("cuda:0"), and ``torch.load`` puts it back there:
a stage that sat on GPU 0 in the parent was unpickled onto GPU 0 in every worker before
moving to the worker's own GPU, which started a CUDA context on GPU 0 in each worker
(hundreds of MiB) and failed outright where GPU 0 is not visible to the worker
(``CUDA_VISIBLE_DEVICES``, or a host without it). Here the parent ships the stage
device-free (:func:`dumps`: every tensor's data tagged as the CPU's, without a second
copy on the GPU), the worker reads it onto the CPU whatever it says (:func:`loads`,
``map_location="cpu"``), and then moves it once, to its own device
(:func:`~nondiff.hybrid.placement.place_stage`). :func:`storage_locations` reads the
devices a payload names without loading a tensor (and without touching a GPU), so that
the rule can be checked.

Example:
    >>> import torch
    >>> from nondiff.hybrid.payload import dumps, loads, storage_locations
    >>> data = dumps({"w": torch.ones(2), "step": 3})
    >>> storage_locations(data)
    {'cpu'}
    >>> loads(data)["w"].device
    device(type='cpu')
"""

from __future__ import annotations

import io
import pickle
import zipfile
from typing import Any

import torch

__all__ = ["dumps", "loads", "storage_locations"]


def _save(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    """The object in ``data`` with every tensor on the CPU, whatever device the bytes
    name (no CUDA call is made)."""
    return torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")


def dumps(obj: Any, device_free: bool = True) -> bytes:
    """``obj`` as ``torch.save`` bytes; with ``device_free`` (default), bytes that name
    only the CPU (:func:`storage_locations`), so that loading them anywhere, even with
    plain ``torch.load``, touches no GPU.

    ``obj`` is not changed. Tensors on a GPU are copied to the host once by
    ``torch.save`` (as always); the bytes are then read back on the CPU and saved
    again, so no second copy is made on the GPU. An ``obj`` on the CPU is saved once.
    """
    data = _save(obj)
    if not device_free or storage_locations(data) <= {"cpu"}:
        return data
    return _save(loads(data))


class _Anything:
    """Stands for every class and function named in a payload while its device tags are
    read: takes any arguments and any state, builds nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Anything:
        return _Anything()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _TagReader(pickle.Unpickler):
    """Runs a ``torch.save`` pickle with every global replaced by :class:`_Anything`,
    collecting the device tag of each tensor storage (its persistent id is
    ``("storage", type, key, location, numel)``)."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.locations: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        return _Anything

    def persistent_load(self, pid: Any) -> None:
        if isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage":
            self.locations.add(str(pid[3]))
        else:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")


def storage_locations(data: bytes) -> set[str]:
    """The devices (``"cpu"``, ``"cuda:1"``, ...) that the tensors in ``data`` (bytes
    of ``torch.save``) are tagged with, read without loading any tensor.

    Raises:
        ValueError: ``data`` is not the zip format that ``torch.save`` writes.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            pickled = archive.read(name)
    except (zipfile.BadZipFile, StopIteration) as error:
        raise ValueError("storage_locations reads the bytes of torch.save (zip format, "
                         "torch >= 1.6); got something else") from error
    reader = _TagReader(io.BytesIO(pickled))
    reader.load()
    return reader.locations
