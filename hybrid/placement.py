"""Where each stage of a pipeline runs: one device per stage, chosen or automatic.

:func:`~nondiff.hybrid.parallel.fit_parallel` runs stage ``k`` (top-level block ``k`` of a
:class:`~nondiff.hybrid.decoupled.Decoupled` stack, with its synthesizer or head, its
optimizers and its queues) on the device :func:`stage_devices` names for it:

- ``devices=None``: where the block's parameters are (``model.blocks[1].to("cuda:1")``
  places block 1 by hand; a block without parameters stays on the CPU);
- ``devices="auto"``: ``cuda:k`` when at least as many GPUs are visible as there are
  stages, else the CPU; under torchrun, ``cuda:LOCAL_RANK`` when this host's processes
  each have one among those visible, ``cuda:0`` when a process sees exactly one (its
  own, with ``CUDA_VISIBLE_DEVICES`` set per process), else the CPU
  (:func:`auto_rank_device`);
- one device (``"cpu"``, ``"cuda:0"``) for every stage, or a list with one entry per
  stage (``["cuda:0", "cuda:1"]``; ``None`` entries: where that block is).

:func:`place_stage` moves a stage there in its worker (modules, optimizer states and
queues; nothing moves when it is there already, so a CPU run stays bit for bit the
same). :func:`choose_backend` picks what carries the messages between stages: NCCL,
device to device, when every stage has a GPU of its own (told apart by UUID,
:func:`gpu_identity`, not by the index each process sees); else gloo, with CUDA
stages sending through host memory.

Example:
    >>> import torch
    >>> from nondiff.hybrid.placement import choose_backend, stage_devices
    >>> stage_devices(["cpu", None], [torch.device("cpu")] * 2)
    [device(type='cpu'), device(type='cpu')]
    >>> stage_devices("auto", [None, None], gpus=0)  # fewer GPUs than stages: the CPU
    [device(type='cpu'), device(type='cpu')]
    >>> stage_devices("auto", [None, None], gpus=2)
    [device(type='cuda', index=0), device(type='cuda', index=1)]
    >>> choose_backend([("host", "cuda:0"), ("host", "cuda:1")], nccl=True)
    'nccl'
    >>> choose_backend([("host", "cuda:0"), ("host", "cuda:0")], nccl=True)  # one GPU, shared
    'gloo'
    >>> choose_backend([("host", "cpu"), ("host", "cuda:0")], nccl=True)
    'gloo'
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable, Sequence
from typing import Any

import torch
from nondiff.hybrid.decoupled import Decoupled
from nondiff.hybrid.stage import Stage

__all__ = ["DEVICE_KINDS", "auto_device", "auto_rank_device", "choose_backend", "gpu_identity",
           "place_stage", "rank_device", "stage_devices"]

DEVICE_KINDS: tuple[str, ...] = ("cpu", "cuda")
"""The kinds of device a stage can run on."""

Devices = str | torch.device | Sequence[str | torch.device | None] | None


def _device(spec: str | torch.device, what: str) -> torch.device:
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"{what}={spec!r} is not a device; pass e.g. 'cpu', 'cuda:1' "
                         "or 'auto'") from error
    if device.type not in DEVICE_KINDS:
        raise ValueError(f"{what}={spec!r}: stages run on {list(DEVICE_KINDS)} devices, "
                         f"not {device.type!r}")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)  # each stage names its GPU: "cuda" is the first
    return device


def _entries(devices: Devices, stages: int) -> list[Any]:
    """One entry of ``devices`` per stage (the list as given, else the one spec)."""
    if isinstance(devices, (list, tuple)):
        if len(devices) != stages:
            raise ValueError(f"devices has {len(devices)} entries for {stages} stages; give "
                             "one per top-level block (None: where that block is)")
        return list(devices)
    if devices is None or isinstance(devices, (str, torch.device)):
        return [devices] * stages
    raise ValueError(f"devices must be None, 'auto', a device or a list of devices, got "
                     f"{devices!r}")


def _visible() -> int:
    """GPUs visible here; asked only when a stage may use one (the CUDA runtime must
    not start in a process that forks workers and never meant to use a GPU)."""
    return torch.cuda.device_count()


def auto_device(gpus: int, index: int, needed: int) -> torch.device:
    """``devices="auto"`` for the stage of ``index`` among ``needed`` stages that share
    this host's ``gpus`` visible GPUs: ``cuda:index`` when there is one for each, else the
    CPU."""
    return torch.device("cuda", index) if gpus >= needed else torch.device("cpu")


def auto_rank_device(gpus: int, local_rank: int, local_world: int) -> torch.device:
    """``devices="auto"`` for a process of a torchrun job: ``cuda:LOCAL_RANK`` when this
    host's ``local_world`` processes each have one among the ``gpus`` it sees; ``cuda:0``
    when the process sees exactly one GPU (its own, where ``CUDA_VISIBLE_DEVICES`` is set
    per process, or the host's only one; stages that turn out to share it talk over gloo,
    :func:`choose_backend`); else the CPU.

    Example:
        >>> auto_rank_device(gpus=8, local_rank=3, local_world=8)
        device(type='cuda', index=3)
        >>> auto_rank_device(gpus=1, local_rank=1, local_world=2)  # one GPU per process
        device(type='cuda', index=0)
        >>> auto_rank_device(gpus=0, local_rank=1, local_world=2)
        device(type='cpu')
    """
    if gpus == 1:
        return torch.device("cuda", 0)
    return auto_device(gpus, local_rank, max(local_world, local_rank + 1))


def _resolve(entry: Any, where: torch.device | None, what: str, gpus: int | None,
             auto: Callable[[int], torch.device]) -> torch.device:
    if entry is None:
        device = where or torch.device("cpu")
    elif entry == "auto":
        gpus = _visible() if gpus is None else gpus
        device = auto(gpus)
    else:
        device = _device(entry, what)
    if device.type == "cuda" and gpus is None:
        gpus = _visible()
    if device.type == "cuda" and device.index is not None and device.index >= gpus:
        raise ValueError(f"{what}={str(entry if entry is not None else device)!r}, but "
                         f"{gpus} GPU(s) are visible here; pass 'cpu' or 'auto'")
    return device


def stage_devices(devices: Devices, placed: Sequence[torch.device | None],
                  gpus: int | None = None) -> list[torch.device]:
    """The device of each stage, all on this host.

    Args:
        devices: ``None``, ``"auto"``, one device, or one entry per stage (see the
            module docstring).
        placed: where each stage's block is now (``None``: it holds no tensor).
        gpus: GPUs visible here (default ``torch.cuda.device_count()``).

    Raises:
        ValueError: a list of the wrong length, an entry that is not a CPU or CUDA
            device, or a GPU that is not visible here.
    """
    entries = _entries(devices, len(placed))
    listed = isinstance(devices, (list, tuple))
    return [_resolve(entry, where, f"devices[{k}]" if listed else "devices", gpus,
                     functools.partial(auto_device, index=k, needed=len(placed)))
            for k, (entry, where) in enumerate(zip(entries, placed, strict=True))]


def rank_device(devices: Devices, placed: Sequence[torch.device | None], rank: int,
                local_rank: int, local_world: int, gpus: int | None = None) -> torch.device:
    """The device of stage ``rank`` when every stage is a process of its own (torchrun):
    as :func:`stage_devices`, but ``"auto"`` follows :func:`auto_rank_device`
    (``cuda:LOCAL_RANK``, or ``cuda:0`` when the process sees one GPU), and only this
    stage's GPU is checked (the other stages may be on other hosts)."""
    entry = _entries(devices, len(placed))[rank]
    what = f"devices[{rank}]" if isinstance(devices, (list, tuple)) else "devices"
    return _resolve(entry, placed[rank], what, gpus, functools.partial(
        auto_rank_device, local_rank=local_rank, local_world=local_world))


def gpu_identity(device: torch.device) -> str:
    """What tells ``device`` apart from every other GPU (its UUID), whatever index this
    process sees it under; ``""`` for the CPU (no CUDA call is made)."""
    if device.type != "cuda":
        return ""
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    return str(uuid) if uuid is not None else f"{socket.gethostname()}:{device}"


def choose_backend(placements: Sequence[tuple[str, ...]], nccl: bool | None = None) -> str:
    """``"nccl"`` when every stage sits on a GPU of its own, else ``"gloo"``.

    Args:
        placements: ``(host name, device)`` or ``(host name, device, GPU identity)``
            (:func:`gpu_identity`) of every rank. The identity tells GPUs apart that
            processes see under the same index (``CUDA_VISIBLE_DEVICES`` set per
            process: each sees its own GPU as ``cuda:0``); without one, the index does.
        nccl: whether NCCL is available (default: ask torch.distributed).

    Example:
        >>> choose_backend([("h", "cuda:0", "GPU-a"), ("h", "cuda:0", "GPU-b")], nccl=True)
        'nccl'
        >>> choose_backend([("h", "cuda:0", "GPU-a"), ("h", "cuda:0", "GPU-a")], nccl=True)
        'gloo'
    """
    if nccl is None:
        nccl = torch.distributed.is_available() and torch.distributed.is_nccl_available()
    devices = [(p[0], torch.device(p[1]), p[2] if len(p) > 2 else "") for p in placements]
    on_gpus = all(d.type == "cuda" for _, d, _ in devices)
    gpus = {identity or (host, d.index) for host, d, identity in devices}
    shared = len(gpus) < len(devices)
    return "nccl" if nccl and on_gpus and not shared else "gloo"


def _move_optimizer(optimizer: torch.optim.Optimizer | None) -> None:
    """Move an optimizer's state to its parameters' devices (load_state_dict casts it)."""
    if optimizer is not None:
        optimizer.load_state_dict(optimizer.state_dict())


def _queues(stage: Stage) -> list[Any]:
    """The tensors waiting in ``stage``'s queues (and its nested stack's)."""
    nested = stage.block._stage_states() if isinstance(stage.block, Decoupled) else []
    return [stage.state(), nested]


def _on(value: Any, device: torch.device) -> bool:
    if isinstance(value, torch.Tensor):
        return value.device == device
    if isinstance(value, dict):
        return all(_on(v, device) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_on(v, device) for v in value)
    return True


def place_stage(stage: Stage, device: torch.device | str) -> None:
    """Move ``stage`` to ``device`` in place: its block (a nested stack with its
    synthesizers, heads and stages), synthesizer, head, optimizer states and queues.

    A stage that is there already is left untouched.
    """
    device = torch.device(device)
    modules = [m for m in (stage.block, stage.synthesizer, stage.head) if m is not None]
    if all(_on(list(m.state_dict().values()), device) for m in modules) and \
            _on(_queues(stage), device):
        return
    for module in modules:
        module.to(device)
    block = stage.block
    nested = isinstance(block, Decoupled)  # a stack of its own: its stages move too
    for optimizer in (*(block._optimizers() if nested else ()), stage.optimizer,
                      stage.synth_optimizer, stage.head_optimizer):
        _move_optimizer(optimizer)
    if nested:
        block._load_stage_states(block._stage_states(), block._counters())
    stage.load_state(stage.state())
