"""A decoupled stack across processes: one process per top-level block, torch.distributed.

:func:`fit_parallel` runs every top-level block of a :class:`~nondiff.hybrid.decoupled.Decoupled`
stack (a :class:`~nondiff.hybrid.decoupled.Group` of layers, or a nested stack) in its own
process, one thread each, each on a device of its own if asked (``devices="auto"``:
``cuda:k`` when there is a GPU per stage; :mod:`nondiff.hybrid.placement`): NCCL carries
the messages GPU to GPU when every stage has a GPU of its own, gloo otherwise
(:mod:`nondiff.hybrid.groups`). The processes are started here, or, on several hosts, by
``torchrun`` (one process per stage; see :func:`fit_parallel`). Activations and labels
travel forward with ``isend``/``irecv``; a block never waits for a backward pass from above. The
gradient a block computes at its input (the synthesizer target of the block below)
travels back *later*; ``staleness=k`` lets a synthesizer fall up to ``k`` steps behind
before its process waits for the target.

- ``mode="sync"``: at step ``t`` a process trains its synthesizer on exactly the
  targets of steps ``<= t - k - 1``, waiting for them if needed. The schedule does not
  depend on timing, so the result is deterministic and equal, bit for bit, to
  ``Decoupled(..., staleness=k).fit`` in one process with one thread.
- ``mode="async"``: also trains on any target that has already arrived (never older
  than ``k`` steps); faster, not reproducible.

With the ``"local"`` signal nothing travels backwards at all. A worker that raises
stops every worker; the parent re-raises :class:`WorkerError` with the worker's
traceback and no process is left behind. A worker that ends without a traceback
(``os._exit``, a segfault, the OOM killer) is named with its exit code or signal; the
workers that then lose their connection to it are reported as consequences, not as the
cause. Workers die with the parent, even when it is killed with SIGKILL. A non-finite
loss or synthetic gradient follows the model's ``on_nonfinite``
(:mod:`nondiff.hybrid.nonfinite`): the parent raises the worker's
:class:`~nondiff.hybrid.nonfinite.NonFiniteError`, or the steps are skipped and counted
in ``model.skipped_updates``. The trained blocks, synthesizers, heads,
optimizer states and in-flight synthesizer queues are copied back into the parent's
objects, so ``model.checkpoint()`` afterwards resumes exactly.

Source: Jaderberg et al., "Decoupled neural interfaces using synthetic gradients",
ICML 2017 (arXiv:1608.05343), Sec. 3.2-3.3 (multi-network, asynchronous updates).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid import Decoupled, Group, fit_parallel
    >>> from nondiff.problems.learning import mnist1d
    >>> ds = mnist1d(n=200, seed=0)
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = Decoupled([Group([nn.Linear(40, 32), nn.ReLU()]), nn.Linear(32, 10)],
    ...                   signal="local", seed=0)
    >>> losses = fit_parallel(model, ds, epochs=2, batch_size=40)  # two processes
    >>> len(losses), model.epoch, losses[1] < losses[0]
    (2, 2, True)
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import queue as queue_module
import signal as signal_module
import socket
import threading
import time
import traceback
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from nondiff.hybrid.decoupled import Decoupled
from nondiff.hybrid.groups import TORCHRUN_VARIABLES, Pipes, connect, torchrun_env
from nondiff.hybrid.nonfinite import NonFiniteError, epoch_mean
from nondiff.hybrid.payload import dumps, loads
from nondiff.hybrid.placement import Devices, place_stage, rank_device, stage_devices
from nondiff.hybrid.stage import LossTop, Stage
from nondiff.hybrid.startup import default_start_method, prepare_worker
from nondiff.optim.lifetime import die_with

__all__ = ["LAUNCHERS", "MODES", "PeerLost", "WorkerError", "fit_parallel", "free_port"]

MODES: tuple[str, ...] = ("sync", "async")
"""Synchronous (deterministic) or asynchronous synthesizer updates."""


class WorkerError(RuntimeError):
    """A worker process failed; the message names its rank and block, then holds its
    traceback or, for a worker that ended without one (``os._exit``, a segfault, the
    OOM killer), its exit code or signal. Other workers that then lost their connection
    to it are listed as consequences."""


class PeerLost(RuntimeError):
    """A message to or from a neighbouring worker failed: that worker is gone (a
    consequence of its failure, not a failure of this worker)."""


@contextlib.contextmanager
def _peer(what: str) -> Any:
    """Turn a failure of a torch.distributed call into :class:`PeerLost`."""
    try:
        yield
    except Exception as error:
        raise PeerLost(f"{what} failed: a neighbouring worker is gone") from error


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SEND_WINDOW = 4
"""Sends a worker keeps in flight before it waits for the oldest one."""


class _Link:
    """The worker's side of the pipeline: messages to and from its neighbours.

    Every message is one tensor of a fixed size in the model's floating dtype
    (``dtype``: float32 for most models, float64 for a float64 one), ``[n, payload]``: a forward
    message holds ``n`` labels (in ``batch_size`` slots) then ``n`` activation rows, a
    target message ``n`` gradient rows. One gloo message per step instead of three
    (header, activations, labels) halves the communication cost of small batches, and
    a fixed size lets a receive be posted before the batch size is known.

    gloo's send and receive handles report completion only once waited on, so sends
    are waited on in order, at most :data:`SEND_WINDOW` behind (else every message of
    the run would stay alive), and targets are received by a thread of their own, so
    that ``mode="async"`` can take those that have arrived without waiting.

    With ``pipes`` (:func:`~nondiff.hybrid.groups.connect`), each direction to each
    neighbour has a group of its own and messages live on ``pipes.device``: the
    stage's GPU under NCCL (waits then order the GPU's stream, not the host; the
    target thread waits on a stream of its own, so a queued target has arrived), the
    CPU under gloo. Without, every message goes through the default (gloo) group.
    """

    def __init__(self, rank: int, world: int, batch_size: int,
                 pipes: Pipes | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.rank, self.world, self.batch_size, self.dtype = rank, world, batch_size, dtype
        self.max_label = int(2 / torch.finfo(dtype).eps)  # integers held exactly
        self.pipes = pipes
        self.device = torch.device("cpu") if pipes is None else pipes.device
        self.sends: collections.deque[tuple[Any, torch.Tensor]] = collections.deque()
        self.incoming: tuple[Any, torch.Tensor] | None = None  # next forward message
        self.targets: queue_module.SimpleQueue[torch.Tensor | BaseException] | None = None
        self.receiver: threading.Thread | None = None

    def _group(self, name: str) -> Any:
        return None if self.pipes is None else getattr(self.pipes, name)

    def _send(self, message: torch.Tensor, peer: int, group: Any) -> None:
        with _peer(f"sending to worker {peer}"):
            self.sends.append((dist.isend(message, peer, group=group), message))
            while len(self.sends) > SEND_WINDOW:
                self.sends.popleft()[0].wait()

    def send_forward(self, h: torch.Tensor, y: torch.Tensor) -> None:
        n, cap = len(h), self.batch_size
        if y.dtype.is_floating_point or (n and y.device.type == "cpu"  # no GPU sync
                                         and int(y.abs().max()) >= self.max_label):
            raise ValueError(f"fit_parallel sends integer class labels below {self.max_label} "
                             f"forward (messages of dtype {self.dtype}); got labels of dtype "
                             f"{y.dtype}")
        message = torch.empty(1 + cap + cap * h[0].numel() if n else 1 + cap,
                              device=self.device, dtype=self.dtype)
        message[0] = n
        message[1:1 + n] = y
        message[1 + cap:1 + cap + h.numel()] = h.detach().reshape(-1)
        self._send(message, self.rank + 1, self._group("send_up"))

    def recv_forward(self, shape: tuple[int, ...], more: bool, n: int | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's message from below (``n`` rows: read from the message if not
        given; a GPU message is not read on the host); with ``more``, the receive of
        the next one is posted at once, so it lands while this step computes (double
        buffering)."""
        cap, row = self.batch_size, math.prod(shape)
        if self.incoming is None:
            self.incoming = self._post_forward(1 + cap + cap * row)
        work, message = self.incoming
        with _peer(f"receiving from worker {self.rank - 1}"):
            work.wait()
        self.incoming = self._post_forward(message.numel()) if more else None
        n = int(message[0]) if n is None else n
        y = message[1:1 + n].to(torch.int64)
        h = message[1 + cap:1 + cap + n * row].view(n, *shape)
        return h, y

    def _post_forward(self, size: int) -> tuple[Any, torch.Tensor]:
        message = torch.empty(size, device=self.device, dtype=self.dtype)
        with _peer(f"receiving from worker {self.rank - 1}"):
            return dist.irecv(message, self.rank - 1, group=self._group("recv_up")), message

    def send_back(self, target: torch.Tensor) -> None:
        message = torch.empty(1 + self.batch_size * target[0].numel(), device=self.device,
                              dtype=self.dtype)
        message[0] = len(target)
        message[1:1 + target.numel()] = target.reshape(-1)
        self._send(message, self.rank - 1, self._group("send_down"))

    def expect_targets(self, count: int, shape: tuple[int, ...]) -> None:
        """Start receiving the ``count`` targets (rows shaped ``shape``) from above."""
        self.targets = queue_module.SimpleQueue()
        size = 1 + self.batch_size * math.prod(shape)
        self.receiver = threading.Thread(target=self._receive_targets, name="nondiff-targets",
                                         args=(count, size), daemon=True)
        self.receiver.start()

    def _receive_targets(self, count: int, size: int) -> None:
        assert self.targets is not None
        group, stream = self._group("recv_down"), None
        try:
            if self.device.type == "cuda":  # the current GPU and stream are per thread
                torch.cuda.set_device(self.device)
                stream = torch.cuda.Stream(self.device)
            for _ in range(count):
                if stream is None:
                    message = torch.empty(size, device=self.device, dtype=self.dtype)
                    dist.recv(message, self.rank + 1, group=group)
                else:
                    # allocated on this thread's stream, which NCCL waits for: a block
                    # freed by work still queued on another stream is not handed out here
                    # (poll_target marks the main stream's use before it is freed)
                    with torch.cuda.stream(stream):
                        message = torch.empty(size, device=self.device, dtype=self.dtype)
                        dist.recv(message, self.rank + 1, group=group)
                    stream.synchronize()  # recv's wait orders this stream only: wait here
                self.targets.put(message)
        except BaseException as error:  # handed to the main thread, which raises it
            self.targets.put(error)

    def poll_target(self, like: torch.Tensor, block: bool) -> torch.Tensor | None:
        """The next target from above (shaped ``like``): waits if ``block``."""
        assert self.targets is not None, "expect_targets first"
        try:
            message = self.targets.get(block=block)
        except queue_module.Empty:
            return None
        if isinstance(message, BaseException):
            raise PeerLost(f"receiving a target from worker {self.rank + 1} failed: a "
                           "neighbouring worker is gone") from message
        if message.device.type == "cpu" and int(message[0]) != len(like):
            raise RuntimeError(f"a target of {int(message[0])} rows arrived for an activation "
                               f"of {len(like)}")
        if message.device.type == "cuda":  # allocated on the receiving thread's stream,
            message.record_stream(torch.cuda.current_stream(message.device))  # used on this
        return message[1:1 + like.numel()].view(like.shape)

    def flush(self) -> None:
        """Return once every send has completed (and the target thread has ended)."""
        with _peer("flushing the sends"):
            while self.sends:
                self.sends.popleft()[0].wait()
            if self.device.type == "cuda":  # NCCL's wait orders this stream, not the host:
                # the sends are done once it is (the groups may be destroyed next, and
                # the worker's time must include them)
                torch.cuda.current_stream(self.device).synchronize()
        if self.receiver is not None:
            self.receiver.join()


def _is_peer_lost(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, PeerLost):
            return True
        error = error.__cause__ or error.__context__
    return False


def _worker(rank: int, world: int, port: int, payload: bytes, results: Any,
            owner: int) -> None:
    die_with(owner)  # never outlive the parent, even if it is killed with SIGKILL
    try:
        job = loads(payload)  # on the CPU: nothing lands on a GPU before _join picks one
        prepare_worker(job["stage"], job["threads"])  # threads, lazy first calls
        pipes = _join(rank, world, job, f"tcp://127.0.0.1:{port}")
        try:
            results.put(("done", rank, dumps(_work(rank, world, job, pipes), device_free=False),
                         None))
        except BaseException as error:  # reported before the connections close below
            _report(results, rank, error)
            raise SystemExit(1) from None
        finally:
            pipes.close()
    except SystemExit:
        raise
    except BaseException as error:  # report everything, including KeyboardInterrupt, then exit
        _report(results, rank, error)
        raise SystemExit(1) from None


def _join(rank: int, world: int, job: dict[str, Any], init_method: str) -> Pipes:
    """Move this rank's stage (it arrives on the CPU) to its device, and the data of
    rank 0 too if the parent kept it on a GPU (batches are then cut there, not copied
    up every step); then join the pipeline's process groups."""
    device = torch.device(job["device"])
    if device.type == "cuda":
        torch.cuda.set_device(device)  # before anything touches the GPU: no context on GPU 0
    place_stage(job["stage"], device)
    if job["data"] is not None and job["data_on_gpu"] and device.type == "cuda":
        job["data"] = job["data"].to(device)
    return connect(rank, world, device, init_method, job["timeout"])


def _report(results: Any, rank: int, error: BaseException) -> None:
    """Send the parent this worker's failure: its kind, traceback and, for a
    :class:`NonFiniteError`, the fields to raise it again there."""
    fields = error.fields() if isinstance(error, NonFiniteError) else None
    results.put(("lost" if _is_peer_lost(error) else "error", rank, traceback.format_exc(),
                 fields))


def _work(rank: int, world: int, job: dict[str, Any], pipes: Pipes | None = None
          ) -> dict[str, Any]:
    stage: Stage = job["stage"]
    link = _Link(rank, world, job["batch_size"], pipes, job["message_dtype"])
    last = rank == world - 1
    if stage.wants_target:  # one target per step of the block above, in step order
        link.expect_targets(job["steps"], job["out_shape"])
    staleness, sync = job["staleness"], job["mode"] == "sync"
    top = LossTop(job["loss"]) if last else stage
    # steps whose activation waits for a target from above, in arrival order
    awaited = collections.deque(sorted(set(stage.memory) - {s for s, _ in stage.targets}))
    losses: list[float] = []
    with _peer("waiting for every worker"):
        # every worker is up: time the pipeline, not the process start-up
        dist.barrier(group=None if pipes is None else pipes.control)
    step, started = job["start_step"], time.perf_counter()
    batches = ((x, y) for epoch in job["epochs"]
               for x, y in job["data"].batches(job["batch_size"], seed=job["seed"],
                                               epoch=epoch)) if rank == 0 else None
    try:
        for left in range(job["steps"] - 1, -1, -1):
            if stage.wants_target:
                while awaited and (awaited[0] <= step - staleness - 1 or not sync):
                    blocking = awaited[0] <= step - staleness - 1
                    target = link.poll_target(stage.memory[awaited[0]][0], blocking)
                    if target is None:
                        break
                    stage.push_target(awaited.popleft(), target)
                stage.absorb(step - staleness - 1 if sync else step)
            x, y = next(batches) if rank == 0 else link.recv_forward(
                job["in_shape"], left > 0, job["sizes"][step - job["start_step"]])
            on_output = None if last else (lambda h, y=y: link.send_forward(h, y))
            _, grad = stage.run(x, y, top, step, job["input_grad"], on_output)
            if grad is not None:
                link.send_back(grad * len(grad))  # the per-example target of the block below
            if stage.wants_target:
                awaited.append(step)
            if last:
                losses.append(top.value)
            step += 1
    except NonFiniteError as error:  # name this worker's block and the step's epoch
        error.block = (rank, *error.block)
        epochs = [e for e, n in zip(job["epochs"], job["per_epoch"], strict=True)
                  for _ in range(n)]
        index = error.step - job["start_step"]
        error.epoch = epochs[index] if 0 <= index < len(epochs) else None
        raise
    while stage.wants_target and awaited:  # targets in flight: queue them, do not train
        stage.push_target(awaited[0], link.poll_target(stage.memory[awaited.popleft()][0],
                                                       True))
    link.flush()
    return {"stage": stage, "losses": losses, "seconds": time.perf_counter() - started,
            "backend": "gloo" if pipes is None else pipes.backend, "device": job.get("device")}


def _copy_stage(dst: Stage, src: Stage) -> None:
    """Load a worker's trained stage into the parent's objects (same module identities)."""
    if isinstance(dst.block, Decoupled):
        dst.block.load_checkpoint(src.block.checkpoint())
    else:
        dst.block.load_state_dict(src.block.state_dict())
        dst.optimizer.load_state_dict(src.optimizer.state_dict())
    for name in ("synthesizer", "head"):
        if getattr(dst, name) is not None:
            getattr(dst, name).load_state_dict(getattr(src, name).state_dict())
    for name in ("synth_optimizer", "head_optimizer"):
        if getattr(dst, name) is not None:
            getattr(dst, name).load_state_dict(getattr(src, name).state_dict())
    dst.load_state(src.state())


FAILURE_GRACE = 10.0
"""Seconds the parent waits, after the first failure, for the other workers' reports."""


def _collect(results: Any, outputs: dict[int, Any], reports: dict[int, tuple[str, str, Any]],
             wait: float) -> None:
    """Take every message waiting in ``results`` (the first within ``wait`` seconds)."""
    while True:
        try:
            kind, rank, body, fields = results.get(timeout=wait) if wait else results.get_nowait()
        except queue_module.Empty:
            return
        if kind == "done":
            outputs[rank] = loads(body)  # on the CPU, then copied to the model's devices
        else:
            reports[rank] = (kind, body, fields)
        wait = 0.0


def _silent_deaths(processes: list[Any], outputs: dict[int, Any],
                   reports: dict[int, tuple[str, str, Any]]) -> dict[int, int]:
    """Ranks whose process ended with a non-zero code and sent nothing: ``{rank: code}``.
    A worker's report is in the queue before its process ends, so it was read by now
    (:func:`_collect` ran after the exit codes were last written)."""
    return {rank: p.exitcode for rank, p in enumerate(processes)
            if p.exitcode not in (None, 0) and rank not in outputs and rank not in reports}


def _how(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by signal {signal_module.Signals(-code).name}"
    return f"exited with code {code}"


def _failure_message(model: Decoupled, processes: list[Any], outputs: dict[int, Any],
                     reports: dict[int, tuple[str, str, Any]]) -> str:
    """The cause first (a worker that died without a report, else one that raised), then
    the workers that failed only because they lost their connection to it."""

    def who(rank: int) -> str:
        return f"worker {rank} (block {rank}: {type(model.blocks[rank]).__name__})"

    silent = _silent_deaths(processes, outputs, reports)
    raised = sorted(r for r, (kind, _, _) in reports.items() if kind == "error")
    lost = sorted(r for r, (kind, _, _) in reports.items() if kind == "lost")
    parts = [f"{who(r)} {_how(code)} without a report (os._exit, a crash of native code, "
             "or a kill such as the OOM killer's)" for r, code in sorted(silent.items())]
    parts += [f"{who(r)} failed:\n{reports[r][1]}" for r in raised]
    if not parts and lost:  # nobody else to blame: show the first connection error
        parts, lost = [f"{who(lost[0])} failed:\n{reports[lost[0]][1]}"], lost[1:]
    if lost:
        parts.append(f"as a consequence, worker(s) {', '.join(map(str, lost))} lost their "
                     "connection to a failed worker")
    return "\n".join(parts)


def _stop(processes: list[Any]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + 5.0
    for process in processes:
        if process.pid is None:  # never started: its start (or an earlier one) failed
            continue
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


LAUNCHERS: tuple[str, ...] = ("auto", "local", "torchrun")
"""Who starts the stages' processes: ``"local"``, this call (one host); ``"torchrun"``,
torchrun (or any launcher that sets its variables), one process per stage on any number
of hosts, each of which calls :func:`fit_parallel`; ``"auto"``: ``"torchrun"`` when
``RANK`` and ``WORLD_SIZE`` are set, else ``"local"``."""


def fit_parallel(
    model: Decoupled, data: Any, epochs: int, batch_size: int, seed: int = 0,
    mode: str = "sync", threads: int = 1, timeout: float = 600.0,
    start_method: str | None = None, stats: dict[str, Any] | None = None,
    devices: Devices = None, launcher: str = "auto",
) -> list[float]:
    """Train ``model`` for ``epochs`` more epochs with one process per top-level block.

    On one host (``launcher="local"``) this call starts the processes. On several
    hosts, start the same script on every host with torchrun, one process per stage in
    all (``--nnodes`` × ``--nproc-per-node`` = number of top-level blocks); every
    process builds the same model and data and calls ``fit_parallel``, which then runs
    this process's stage (``RANK``) only::

        torchrun --nnodes 2 --node-rank 0 --nproc-per-node 1 \\
                 --master-addr 10.0.0.1 --master-port 29500 train.py   # on host 10.0.0.1
        torchrun --nnodes 2 --node-rank 1 --nproc-per-node 1 \\
                 --master-addr 10.0.0.1 --master-port 29500 train.py   # on the other host

    Either way the trained stages are copied back into ``model`` (on every rank under
    torchrun), where it is: the model does not move to ``devices``.

    Args:
        model: a :class:`Decoupled` stack with a decoupled signal (not ``"backprop"``)
            and at least two blocks. Its ``staleness`` bounds how many steps a
            synthesizer target may lag. Its ``loss`` must be picklable.
        data: a :class:`nondiff.problems.learning.Dataset` (anything with its ``batches``);
            under torchrun, every process passes the same data (stage 0 reads it).
        epochs: epochs to train, continuing from ``model.epoch``.
        batch_size: examples per step.
        seed: shuffling seed (as in :meth:`Decoupled.fit`).
        mode: ``"sync"`` (deterministic) or ``"async"`` (see the module docstring).
        threads: torch threads per worker process.
        timeout: seconds before the run (and every blocking receive) gives up.
        start_method: how workers start; ``None`` (default) picks the fastest safe one,
            ``"forkserver"`` on POSIX, else ``"spawn"``
            (:func:`~nondiff.hybrid.startup.default_start_method`). Every method trains
            at the same speed once started (:mod:`nondiff.hybrid.startup`); ``"fork"``
            starts at once but fails after autograd has run with CUDA builds of torch.
            With stages on GPUs, the main script must not use CUDA at import (keep it
            under ``if __name__ == "__main__":``): forkserver imports it in its server
            process, and a worker forked from a server that has used CUDA cannot.
        stats: if a dict, filled with ``"worker_seconds"`` (each worker's training
            loop, timed from a barrier that all workers pass once started, so process
            start-up is excluded and pipeline fill and drain are included; the
            slowest worker's time is the run's wall-clock training time), ``"devices"``
            (each stage's device) and ``"backend"`` (``"nccl"`` or ``"gloo"``).
        devices: where each stage runs (:mod:`nondiff.hybrid.placement`): ``None``
            (default), where each block's parameters are; ``"auto"``, ``cuda:k`` when
            there is a GPU per stage (under torchrun: ``cuda:LOCAL_RANK`` when there is
            one per process of the host, ``cuda:0`` when a process sees only one), else
            the CPU; one device for all; or a list, one per block. Stages that all have a
            GPU of their own talk over NCCL, GPU to GPU; otherwise over gloo.
        launcher: one of :data:`LAUNCHERS`.

    Returns:
        The mean training loss of each epoch (as :meth:`Decoupled.fit`).

    Raises:
        ValueError: bad arguments. WorkerError: a worker failed (its rank, block and
            traceback, or its exit code, inside). NonFiniteError: a non-finite loss or
            synthetic gradient under the model's ``on_nonfinite="raise"`` (step, epoch,
            block; the model keeps the weights it had before this call).
        TimeoutError: the run took longer than ``timeout``. Under torchrun a failure
            is raised in the process where it happens; its neighbours raise
            :class:`PeerLost`.
    """
    if not isinstance(model, Decoupled):
        raise ValueError(f"model must be a Decoupled stack, got {type(model).__name__}")
    if model.signal == "backprop" or len(model.blocks) < 2:
        raise ValueError(
            f"fit_parallel needs a decoupled signal and >= 2 blocks, got signal "
            f"{model.signal!r} with {len(model.blocks)} block(s); use model.fit instead")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if launcher not in LAUNCHERS:
        raise ValueError(f"unknown launcher {launcher!r}; expected one of {list(LAUNCHERS)}")
    env = None if launcher == "local" else torchrun_env(os.environ)
    if launcher == "torchrun" and env is None:
        raise ValueError(f"launcher='torchrun' but {list(TORCHRUN_VARIABLES)} are not set: "
                         "start the script with torchrun, or pass launcher='local'")
    if start_method is None:
        start_method = default_start_method()
    if env is None and start_method not in mp.get_all_start_methods():
        raise ValueError(f"start_method {start_method!r} is not available here; expected one "
                         f"of {mp.get_all_start_methods()}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    first = next(data.batches(batch_size, seed=seed, epoch=model.epoch))
    if first[1].dtype.is_floating_point or first[1].dtype == torch.bool:
        raise ValueError(f"fit_parallel sends integer class labels forward; got labels of "
                         f"dtype {first[1].dtype} (train float targets with model.fit)")
    model.build(first[0])
    world = len(model.stages)
    placed = [stage.device for stage in model.stages]
    if env is not None:
        if env.world != world:
            raise ValueError(f"WORLD_SIZE={env.world} processes for {world} stages: start "
                             f"one process per top-level block (--nnodes x --nproc-per-node "
                             f"= {world})")
        where = {env.rank: rank_device(devices, placed, env.rank, env.local_rank,
                                       env.local_world)}
    else:
        where = dict(enumerate(stage_devices(devices, placed)))
        if start_method == "fork" and any(d.type == "cuda" for d in where.values()) \
                and torch.cuda.is_initialized():
            raise ValueError("start_method='fork' cannot use CUDA in the workers once this "
                             "process has used it; pass start_method='spawn' or 'forkserver'")
    epoch_list = list(range(model.epoch, model.epoch + epochs))
    sizes = [[len(y) for _, y in data.batches(batch_size, seed=seed, epoch=e)]
             for e in epoch_list]
    per_epoch = [len(s) for s in sizes]
    common = dict(loss=model.loss, staleness=model.staleness, mode=mode, threads=threads,
                  timeout=timeout, start_step=model.step_count, steps=sum(per_epoch),
                  epochs=epoch_list, per_epoch=per_epoch, batch_size=batch_size, seed=seed,
                  sizes=[n for epoch in sizes for n in epoch],
                  data_on_gpu=_kept_on_gpu(data),
                  message_dtype=next((p.dtype for p in model.parameters()
                                      if p.is_floating_point()), torch.float32))
    shapes = [tuple(first[0].shape[1:]), *model.shapes]

    def job(rank: int) -> dict[str, Any]:
        return dict(common, stage=model.stages[rank], data=data if rank == 0 else None,
                    in_shape=shapes[rank], device=str(where[rank]),
                    out_shape=shapes[rank + 1] if rank + 1 < len(shapes) else None,
                    input_grad=rank > 0 and model.stages[rank - 1].wants_target)

    if env is None:
        # device-free: a worker must not unpickle a tensor onto the parent's GPU (a CUDA
        # context there, or a failure where that GPU is not visible); it moves once, in _join
        outputs = _run_local(model, [dumps(job(rank)) for rank in range(world)],
                             start_method, timeout)
    else:
        outputs = _run_here(env.rank, world, job(env.rank))
    for rank, stage in enumerate(model.stages):
        _copy_stage(stage, outputs[rank]["stage"])
    if stats is not None:
        stats["worker_seconds"] = [outputs[r]["seconds"] for r in range(world)]
        stats["devices"] = [outputs[r]["device"] for r in range(world)]
        stats["backend"] = outputs[0]["backend"]
    model.step_count += sum(per_epoch)
    model.epoch += epochs
    losses, history = outputs[world - 1]["losses"], []
    for n in per_epoch:
        history.append(epoch_mean(losses[:n], model.on_nonfinite))
        losses = losses[n:]
    return history


def _kept_on_gpu(data: Any) -> bool:
    """Whether ``data`` (a :class:`~nondiff.problems.learning.Dataset`) lives on a GPU
    and can be moved (``data.to``)."""
    device = getattr(data, "device", None)
    return hasattr(data, "to") and isinstance(device, torch.device) and device.type == "cuda"


def _run_here(rank: int, world: int, job: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Run stage ``rank`` in this process (started by torchrun), then gather every
    rank's trained stage, losses and time. The stage trains as a copy, as in a worker."""
    job = dict(job, stage=loads(dumps(job["stage"], device_free=False)))  # a CPU copy
    threads = torch.get_num_threads()
    torch.set_num_threads(job["threads"])
    try:
        pipes = _join(rank, world, job, "env://")
        result = dumps(_work(rank, world, job, pipes), device_free=False)
        gathered: list[Any] = [None] * world
        with _peer("gathering the trained stages"):
            dist.all_gather_object(gathered, result, group=pipes.control)
        pipes.close(keep_default=True)  # after a failure the process ends (torchrun)
    finally:
        torch.set_num_threads(threads)
    return {r: loads(body) for r, body in enumerate(gathered)}


def _run_local(model: Decoupled, payloads: list[bytes], start_method: str, timeout: float
               ) -> dict[int, dict[str, Any]]:
    """Start one worker process per stage on this host; their results by rank."""
    world = len(payloads)
    context = mp.get_context(start_method)
    results = context.Queue()
    port = free_port()
    processes = [context.Process(target=_worker, args=(rank, world, port, payloads[rank],
                                                       results, os.getpid()), daemon=True)
                 for rank in range(world)]
    outputs: dict[int, dict[str, Any]] = {}
    # rank -> ("error" | "lost", traceback, NonFiniteError fields or None)
    reports: dict[int, tuple[str, str, Any]] = {}
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + timeout
        while len(outputs) < world:
            _collect(results, outputs, reports, wait=0.2)
            if reports or _silent_deaths(processes, outputs, reports):
                # the first sign of a failure: let the others report (or die) too, so
                # that the cause is told apart from its consequences
                grace = time.monotonic() + FAILURE_GRACE
                while (any(p.exitcode is None for p in processes)
                       and time.monotonic() < grace):
                    _collect(results, outputs, reports, wait=0.1)
                _collect(results, outputs, reports, wait=0.0)
                failure = WorkerError(_failure_message(model, processes, outputs, reports))
                raised = [r for r, (kind, _, _) in sorted(reports.items()) if kind == "error"]
                fields = reports[raised[0]][2] if raised else None
                if fields is not None and not _silent_deaths(processes, outputs, reports):
                    raise NonFiniteError(**fields) from failure
                raise failure
            if time.monotonic() > deadline:
                raise TimeoutError(f"fit_parallel did not finish within {timeout} s")
    finally:
        _stop(processes)
        results.close()
        results.join_thread()
    return outputs
