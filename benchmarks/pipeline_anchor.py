"""Anchor for the decoupled pipeline: exact backprop pipelined by ``torch.distributed.pipelining``.

The same blocks that :func:`nondiff.hybrid.fit_parallel` runs one per process are run,
one per process on gloo, as the stages of a pipeline schedule (:data:`SCHEDULES`).
``"gpipe"`` (Huang et al., "GPipe: efficient training of giant neural networks using
pipeline parallelism", NeurIPS 2019; PyTorch's ``ScheduleGPipe``): each batch is cut
into micro-batches that flow forward through all stages, then backward, then every
stage takes its optimizer step. ``"1f1b"`` (one forward, one backward, flushed every
batch: PipeDream-Flush, Narayanan et al., "Memory-efficient pipeline-parallel DNN
training", ICML 2021; PyTorch's ``Schedule1F1B``): after a warm-up each stage
alternates a forward and a backward micro-batch, so it keeps at most as many
activations as there are stages (GPipe keeps all), with the same bubble; it needs at
least as many micro-batches as stages. Gradients are averaged over the micro-batches
(``scale_grads``), so an update of either equals end-to-end backprop on the whole
batch; only the blocks' waiting differs. Batches smaller than
``batch`` (the last one of an epoch) are left out, as the schedule needs equal
micro-batches; the rate counts the samples trained on.

Workers start by forkserver, set their threads, build the schedule and pass a barrier;
the timed loop starts there (as :func:`fit_parallel`'s ``worker_seconds``), so process
start-up is excluded and pipeline fill and drain are included.

Run by :mod:`nondiff.benchmarks.decoupled` (its throughput part).
"""

from __future__ import annotations

import datetime
import functools
import io
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from nondiff.hybrid.parallel import free_port
from nondiff.problems.learning import Dataset
from torch import nn

__all__ = ["SCHEDULES", "pipelined_backprop"]

SCHEDULES: tuple[str, ...] = ("gpipe", "1f1b")
"""The schedules of ``torch.distributed.pipelining`` the anchor runs: ``ScheduleGPipe``,
``Schedule1F1B``."""


def _worker(rank: int, world: int, port: int, payload: bytes, results: Any) -> None:
    try:
        job = torch.load(io.BytesIO(payload), weights_only=False)
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

        torch.set_num_threads(job["threads"])
        block: nn.Module = job["block"]
        optimizer = job["optimizer"](block.parameters())
        optimizer.zero_grad()  # lazy first call (imports torch._dynamo) before the barrier
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world, timeout=datetime.timedelta(seconds=600))
        try:
            stage = PipelineStage(block, rank, world, torch.device("cpu"))
            kind = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}[job["schedule"]]
            schedule = kind(stage, job["microbatches"], loss_fn=nn.functional.cross_entropy)
            ds: Dataset = job["data"]
            dist.barrier()
            started, samples = time.perf_counter(), 0
            for epoch in range(job["epochs"]):
                for x, y in ds.batches(job["batch"], seed=0, epoch=epoch, drop_last=True):
                    if rank == 0:
                        schedule.step(x)
                    elif rank == world - 1:
                        schedule.step(target=y)
                    else:
                        schedule.step()
                    optimizer.step()
                    optimizer.zero_grad()
                    samples += len(y)
            seconds = time.perf_counter() - started
            buffer = io.BytesIO()
            torch.save(block.state_dict(), buffer)
            results.put((rank, seconds, samples, buffer.getvalue(), None))
        finally:
            dist.destroy_process_group()
    except BaseException as error:  # the parent raises it
        import traceback

        results.put((rank, 0.0, 0, b"", f"{error!r}\n{traceback.format_exc()}"))


def pipelined_backprop(blocks: list[nn.Module], data: Dataset, epochs: int, batch: int,
                       threads: int, microbatches: int, lr: float = 1e-3,
                       start_method: str = "forkserver",
                       optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                       schedule: str = "gpipe") -> tuple[float, float]:
    """Train ``blocks`` (one process each, ``threads`` torch threads per process) as a
    pipeline of ``schedule`` (one of :data:`SCHEDULES`); returns (samples/s of the
    slowest stage's loop, test accuracy in percent). ``blocks`` are trained in place,
    each by ``optimizer(parameters)`` (a picklable factory; default fused Adam at rate
    ``lr``)."""
    world = len(blocks)
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {list(SCHEDULES)}")
    if batch % microbatches:
        raise ValueError(f"batch {batch} must split into {microbatches} equal micro-batches")
    if schedule == "1f1b" and microbatches < world:
        raise ValueError(f"schedule '1f1b' needs at least as many micro-batches as stages; "
                         f"got {microbatches} for {world} stages (pass microbatches >= "
                         f"{world}, or schedule='gpipe')")
    context = mp.get_context(start_method)
    results = context.Queue()
    port = free_port()
    processes = []
    for rank, block in enumerate(blocks):
        buffer = io.BytesIO()
        torch.save(dict(block=block, threads=threads, microbatches=microbatches,
                        schedule=schedule,
                        optimizer=optimizer or functools.partial(torch.optim.Adam, lr=lr,
                                                                 fused=True),
                        epochs=epochs, batch=batch, data=data), buffer)
        processes.append(context.Process(target=_worker, daemon=True, args=(
            rank, world, port, buffer.getvalue(), results)))
    try:
        for process in processes:
            process.start()
        outputs = [results.get(timeout=1200) for _ in processes]
    finally:
        for process in processes:
            if process.pid is not None:
                process.join(30)
            if process.is_alive():
                process.kill()
                process.join()
        results.close()
        results.join_thread()
    failed = [o[4] for o in outputs if o[4] is not None]
    if failed:
        raise RuntimeError("a pipelining worker failed:\n" + failed[0])
    for rank, _, _, state, _ in outputs:
        blocks[rank].load_state_dict(torch.load(io.BytesIO(state), weights_only=True))
    seconds = max(o[1] for o in outputs)
    samples = max(o[2] for o in outputs)
    model = nn.Sequential(*blocks)
    with torch.no_grad():
        accuracy = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    return samples / seconds, 100 * accuracy

