"""The process groups of a pipeline: one rank per stage, on one host or many (torchrun).

:func:`connect` joins this process to the pipeline as rank ``rank`` of ``world``: a gloo
default group for control (the start barrier, the exchange of where every rank runs --
host, device and GPU UUID, so that processes that each see their own GPU as ``cuda:0``
still talk over NCCL --, the trained stages at the end), then, for every pair of
neighbouring stages, one group per direction — activations up, synthesizer targets
down — on the backend that :func:`~nondiff.hybrid.placement.choose_backend` picks for
the ranks' devices (NCCL when every stage has a GPU of its own, else gloo). Each of these
groups carries messages one way between two ranks and is used by one thread of each:
NCCL orders the operations of a group on one stream, so a send up and a receive down in
one group could wait on each other; apart, they cannot.

:func:`torchrun_env` reads the rank of this process from the variables that ``torchrun``
(or any launcher) sets: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` and
optionally ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``; then ``init_method="env://"``.

Example:
    >>> from nondiff.hybrid.groups import torchrun_env
    >>> torchrun_env({}) is None  # not started by torchrun
    True
    >>> env = torchrun_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0",
    ...                     "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"})
    >>> env.rank, env.world, env.local_rank, env.local_world
    (1, 2, 0, 1)
"""

from __future__ import annotations

import dataclasses
import datetime
import socket
from collections.abc import Mapping

import torch
import torch.distributed as dist
from nondiff.hybrid.placement import choose_backend, gpu_identity

__all__ = ["TORCHRUN_VARIABLES", "Pipes", "TorchrunEnv", "connect", "torchrun_env"]

TORCHRUN_VARIABLES: tuple[str, ...] = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""The environment variables an env:// rendezvous needs (torchrun sets them)."""


@dataclasses.dataclass(frozen=True)
class TorchrunEnv:
    """This process's place in a job started by torchrun (or a launcher like it)."""

    rank: int
    world: int
    local_rank: int
    local_world: int


def torchrun_env(environ: Mapping[str, str]) -> TorchrunEnv | None:
    """This process's rank from ``environ``; ``None`` when neither ``RANK`` nor
    ``WORLD_SIZE`` is set.

    Raises:
        ValueError: some of :data:`TORCHRUN_VARIABLES` set and others missing, or a
            value that is not a number in range.
    """
    if "RANK" not in environ and "WORLD_SIZE" not in environ:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if not environ.get(name)]
    if missing:
        raise ValueError(f"the environment sets RANK/WORLD_SIZE but not {missing}: start "
                         "each host with torchrun (it sets them all) or set them by hand")
    try:
        rank, world = int(environ["RANK"]), int(environ["WORLD_SIZE"])
        local_rank = int(environ.get("LOCAL_RANK", 0))
        # not every launcher sets LOCAL_WORLD_SIZE: then at least this many run here
        local_world = int(environ.get("LOCAL_WORLD_SIZE", local_rank + 1))
    except ValueError as error:
        raise ValueError(f"RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be "
                         f"integers: {error}") from None
    if not 0 <= rank < world or not 0 <= local_rank < local_world:
        raise ValueError(f"RANK={rank} must be in [0, WORLD_SIZE={world}) and LOCAL_RANK="
                         f"{local_rank} in [0, LOCAL_WORLD_SIZE={local_world})")
    return TorchrunEnv(rank, world, local_rank, local_world)


@dataclasses.dataclass
class Pipes:
    """The groups of one rank: ``control`` (gloo; ``None`` is the default group), and
    the groups of its messages (``None`` where it has no such neighbour)."""

    backend: str  # of the message groups
    device: torch.device  # where messages live: the stage's GPU under NCCL, else the CPU
    control: dist.ProcessGroup | None
    send_up: dist.ProcessGroup | None
    recv_up: dist.ProcessGroup | None  # activations from below
    send_down: dist.ProcessGroup | None  # targets to the stage below
    recv_down: dist.ProcessGroup | None
    created: list[dist.ProcessGroup]
    owns_default: bool

    def close(self, keep_default: bool = False) -> None:
        """Destroy the groups :func:`connect` made, the default group too if it made it
        (unless ``keep_default``: torchrun's rendezvous serves one default group per
        process, so a second run in the same processes reuses it)."""
        if self.owns_default and not keep_default:
            dist.destroy_process_group()
            return
        for group in self.created:
            dist.destroy_process_group(group)


def connect(rank: int, world: int, device: torch.device, init_method: str,
            timeout: float) -> Pipes:
    """Join the pipeline as rank ``rank`` of ``world`` with the stage on ``device``.

    ``init_method``: ``"tcp://host:port"`` (workers of one host) or ``"env://"``
    (torchrun). Reuses a default group that is initialized already (the world and
    rank must match). Every rank calls it; it returns once every rank has.
    """
    wait = datetime.timedelta(seconds=timeout)
    owns = not dist.is_initialized()
    created: list[dist.ProcessGroup] = []
    if owns:
        dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                                timeout=wait)
        control = None
    else:
        if (dist.get_rank(), dist.get_world_size()) != (rank, world):
            raise ValueError(f"the initialized default process group has rank "
                             f"{dist.get_rank()} of {dist.get_world_size()}, the pipeline "
                             f"needs rank {rank} of {world} (one rank per stage)")
        control = dist.new_group(backend="gloo", timeout=wait)
        created.append(control)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and the caching allocator use the current GPU
    placements: list[tuple[str, str, str]] = [("", "", "")] * world
    dist.all_gather_object(placements, (socket.gethostname(), str(device),
                                        gpu_identity(device)), group=control)
    backend = choose_backend(placements)
    pairs = {}
    for low in range(world - 1):  # every rank creates every group, in the same order
        for direction in ("up", "down"):
            group = dist.new_group([low, low + 1], backend=backend, timeout=wait)
            pairs[low, direction] = group
            if rank in (low, low + 1):
                created.append(group)
    return Pipes(
        backend=backend, device=device if backend == "nccl" else torch.device("cpu"),
        control=control, send_up=pairs.get((rank, "up")), recv_up=pairs.get((rank - 1, "up")),
        send_down=pairs.get((rank - 1, "down")), recv_down=pairs.get((rank, "down")),
        created=created, owns_default=owns)
