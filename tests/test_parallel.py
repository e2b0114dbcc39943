"""Decoupled stacks across processes: sync equals one process, async trains, failures
stop every worker, checkpoints resume."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import conftest
import pytest
import torch
from conftest import (
    finite_state,
    first_nan_batch,
    kill_leader_and_expect_session_gone,
    kill_session,
    plain_equal,
    poisoned,
    session_processes,
    wait_until,
)
from nondiff.hybrid import Decoupled, Group, NonFiniteError, WorkerError, fit_parallel
from nondiff.problems.learning import Dataset, mnist1d
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> Dataset:
    return mnist1d(n=600, seed=0)


def blocks(seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [Group([nn.Linear(40, 64), nn.ReLU()]), Group([nn.Linear(64, 64), nn.ReLU()]),
            nn.Linear(64, 10)]


class Exploding(nn.Module):
    """Raises on its third forward pass (pickled into a worker process)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.calls = nn.Linear(64, 10), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 3:
            raise ArithmeticError("block exploded on purpose")
        return self.linear(x)


def _children() -> list[int]:
    """Live (non-zombie) child processes of this process, from /proc."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(entry))
    return found


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))


@pytest.mark.parametrize("signal", ["synthetic-conditioned", "local"])
def test_sync_mode_equals_the_single_process_run(signal: str, data: Dataset) -> None:
    # spawn for one signal (the default, fresh interpreters), fork for the other (fast)
    method = "spawn" if signal == "local" else "fork"
    single = Decoupled(blocks(), signal=signal, staleness=1, seed=0)
    expected = single.fit(data, epochs=2, batch_size=50)
    parallel = Decoupled(blocks(), signal=signal, staleness=1, seed=0)
    assert fit_parallel(parallel, data, epochs=2, batch_size=50, start_method=method) == expected
    assert _same(single, parallel)  # gathered back into the parent's modules
    assert plain_equal(parallel.checkpoint()["stages"], single.checkpoint()["stages"])
    assert parallel.step_count == single.step_count and parallel.epoch == 2


def test_checkpoint_and_resume_equals_uninterrupted(data: Dataset) -> None:
    full = Decoupled(blocks(), signal="synthetic", staleness=2, seed=0)
    fit_parallel(full, data, epochs=2, batch_size=50, start_method="fork")
    half = Decoupled(blocks(), signal="synthetic", staleness=2, seed=0)
    fit_parallel(half, data, epochs=1, batch_size=50, start_method="fork")
    state = half.checkpoint()  # synthesizer targets still in flight are part of it
    assert any(s["target_steps"] for s in state["stages"])
    resumed = Decoupled(blocks(seed=3), signal="synthetic", staleness=2, seed=0)
    resumed.load_checkpoint(state, example=data.x_train[:2])
    fit_parallel(resumed, data, epochs=1, batch_size=50, start_method="fork")
    assert _same(full, resumed)


def test_async_mode_trains(data: Dataset) -> None:
    model = Decoupled(blocks(), signal="synthetic-conditioned", staleness=3, seed=0)
    before = model.accuracy(data.x_train, data.y_train)
    losses = fit_parallel(model, data, epochs=4, batch_size=50, mode="async",
                          start_method="fork")
    assert losses[-1] < losses[0] - 0.1
    assert model.accuracy(data.x_train, data.y_train) > before + 0.1


def test_worker_exception_stops_every_worker_and_surfaces(data: Dataset) -> None:
    torch.manual_seed(0)
    model = Decoupled([Group([nn.Linear(40, 64), nn.ReLU()]),
                       Group([nn.Linear(64, 64), nn.ReLU()]), Exploding()],
                      signal="synthetic", seed=0)
    model.build(data.x_train[:2])  # one call in the parent: the worker's third raises
    existing = set(_children())  # e.g. multiprocessing's resource tracker
    with pytest.raises(WorkerError) as info:
        fit_parallel(model, data, epochs=2, batch_size=50, start_method="fork", timeout=60)
    message = str(info.value)
    assert message.startswith("worker 2 (block 2: Exploding) failed:")
    assert "block exploded on purpose" in message and "worker 0 (" not in message
    assert "Traceback" in message and "in forward" in message
    assert wait_until(lambda: not set(_children()) - existing, timeout=30), \
        f"children left: {set(_children()) - existing}"


class Dying(nn.Module):
    """Ends its process with ``os._exit(7)`` on its third forward pass: no exception, no
    report, the way a segfault or the OOM killer ends a worker."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.calls = nn.Linear(64, 64), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 3:
            os._exit(7)
        return self.linear(x)


def test_a_worker_that_dies_outright_is_named_with_its_exit_code(data: Dataset) -> None:
    torch.manual_seed(0)
    model = Decoupled([Group([nn.Linear(40, 64), nn.ReLU()]), Dying(), nn.Linear(64, 10)],
                      signal="synthetic", seed=0)
    model.build(data.x_train[:2])  # one call in the parent: the worker's second is its last
    existing = set(_children())
    with pytest.raises(WorkerError) as info:
        fit_parallel(model, data, epochs=2, batch_size=50, start_method="fork", timeout=60)
    message = str(info.value)
    assert message.startswith("worker 1 (block 1: Dying) exited with code 7"), message
    assert "worker 0 failed" not in message and "worker 2 failed" not in message
    assert wait_until(lambda: not set(_children()) - existing, timeout=30), \
        f"children left: {set(_children()) - existing}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_parent_killed_by_sigkill(tmp_path: Path) -> None:
    marker = tmp_path / "hanging"
    script = textwrap.dedent(f"""
        import pathlib, threading
        import torch
        from torch import nn
        from nondiff.hybrid import Decoupled, Group, fit_parallel
        from nondiff.problems.learning import mnist1d

        class Hang(nn.Linear):  # rank 1 blocks for good on its third forward pass
            calls = 0
            def forward(self, x):
                self.calls += 1
                if self.calls == 3:
                    pathlib.Path({str(marker)!r}).touch()
                    threading.Event().wait()
                return super().forward(x)

        model = Decoupled([Group([nn.Linear(40, 64), nn.ReLU()]), Hang(64, 64),
                           nn.Linear(64, 10)], signal="synthetic", seed=0)
        data = mnist1d(n=200, seed=0)
        model.build(data.x_train[:2])
        fit_parallel(model, data, epochs=1, batch_size=50, start_method="fork")
    """)
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: marker.exists() or process.poll() is not None, timeout=120)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert len(session_processes(process.pid)) >= 4  # the parent and its 3 workers
        kill_leader_and_expect_session_gone(process)
    finally:
        kill_session(process.pid)


def _link_pair(rank: int, port: int, results: Any) -> None:
    """Rank 0 sends 20 forward messages and takes 3 targets without blocking; rank 1
    receives the messages and sends the targets back."""
    import datetime

    import torch.distributed as dist
    from nondiff.hybrid.parallel import SEND_WINDOW, _Link

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2, timeout=datetime.timedelta(seconds=60))
    link = _Link(rank, 2, batch_size=5)
    try:
        if rank == 0:
            link.expect_targets(3, (4,))
            most = 0
            for k in range(20):
                link.send_forward(torch.full((5, 4), float(k)), torch.arange(5))
                most = max(most, len(link.sends))
            like, got, deadline = torch.zeros(5, 4), [], time.monotonic() + 30
            while len(got) < 3 and time.monotonic() < deadline:
                target = link.poll_target(like, block=False)  # never waits
                if target is not None:
                    got.append(float(target[0, 0]))
            results.put((most <= SEND_WINDOW, got))
        else:
            for k in range(20):
                h, y = link.recv_forward((4,), more=k < 19)
                assert torch.equal(h, torch.full((5, 4), float(k)))
                assert y.tolist() == [0, 1, 2, 3, 4]
            for k in range(3):
                link.send_back(torch.full((5, 4), 10.0 + k))
        link.flush()
    finally:
        dist.destroy_process_group()


def test_link_bounds_its_sends_and_polls_targets_without_waiting() -> None:
    """gloo's handles report completion only once waited on: the link must wait on old
    sends itself (else it keeps every message of the run) and receive targets on a
    thread (else a non-blocking poll never sees one, and async mode never takes them)."""
    import multiprocessing

    from nondiff.hybrid.parallel import free_port

    context = multiprocessing.get_context("fork")
    results, port = context.Queue(), free_port()
    workers = [context.Process(target=_link_pair, args=(rank, port, results))
               for rank in (0, 1)]
    for worker in workers:
        worker.start()
    bounded, got = results.get(timeout=60)
    for worker in workers:
        worker.join(timeout=30)
    assert [w.exitcode for w in workers] == [0, 0]
    assert bounded and got == [10.0, 11.0, 12.0]


def test_bad_arguments_are_named(data: Dataset) -> None:
    with pytest.raises(ValueError, match="decoupled signal"):
        fit_parallel(Decoupled(blocks(), signal="backprop"), data, 1, 50)
    with pytest.raises(ValueError, match="unknown mode"):
        fit_parallel(Decoupled(blocks()), data, 1, 50, mode="eventually")
    with pytest.raises(ValueError, match="epochs"):
        fit_parallel(Decoupled(blocks()), data, 0, 50)


def test_float_targets_are_refused_before_any_process_starts(data: Dataset) -> None:
    """Labels travel forward packed in float32 messages: regression targets would be
    cut to integers, so they are refused up front with the way out."""
    from dataclasses import replace

    floats = replace(data, y_train=data.y_train.to(torch.float32))
    before = _children()
    with pytest.raises(ValueError, match=r"integer class labels.*model\.fit"):
        fit_parallel(Decoupled(blocks(), signal="local"), floats, 1, 50)
    assert _children() == before


def test_a_nan_sample_stops_every_worker_and_names_step_epoch_block(data: Dataset) -> None:
    bad = poisoned(data)
    model = Decoupled(blocks(), signal="synthetic", seed=0)
    model.build(data.x_train[:2])
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(NonFiniteError) as info:
        fit_parallel(model, bad, epochs=2, batch_size=50, start_method="fork", timeout=60)
    k = first_nan_batch(bad, 50, seed=0, epoch=0)
    assert f"non-finite synthetic-gradient objective at step {k}, epoch 0, block 0;" in \
        str(info.value), str(info.value)
    assert isinstance(info.value.__cause__, WorkerError)  # the worker's traceback
    assert plain_equal(dict(model.state_dict()), dict(before))  # nothing copied back


def test_skip_in_workers_equals_skip_in_one_process(data: Dataset) -> None:
    bad = poisoned(data)
    single = Decoupled(blocks(), signal="synthetic", seed=0, on_nonfinite="skip")
    expected = single.fit(bad, epochs=2, batch_size=50)
    parallel = Decoupled(blocks(), signal="synthetic", seed=0, on_nonfinite="skip")
    losses = fit_parallel(parallel, bad, epochs=2, batch_size=50, start_method="fork")
    assert losses == expected and all(map(math.isfinite, losses))
    assert parallel.skipped_updates == single.skipped_updates == 2 * (3 + 2)
    assert _same(parallel, single) and finite_state(parallel)


def test_a_float64_model_trains_as_in_one_process(data: Dataset) -> None:
    """Messages carry the model's dtype (they were float32: a float64 stage above the
    first got float32 activations and failed)."""
    wide = dataclasses.replace(data, x_train=data.x_train.double(),
                               x_test=data.x_test.double())
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the synthesizers and heads Decoupled builds
    try:
        single = Decoupled([b.double() for b in blocks()], signal="synthetic", seed=0)
        expected = single.fit(wide, epochs=1, batch_size=50)
        parallel = Decoupled([b.double() for b in blocks()], signal="synthetic", seed=0)
        # forkserver: a fresh worker's default dtype is float32 (fork would inherit float64)
        assert fit_parallel(parallel, wide, epochs=1, batch_size=50,
                            start_method="forkserver") == expected
    finally:
        torch.set_default_dtype(default)
    assert _same(single, parallel)
    assert all(p.dtype == torch.float64 for p in parallel.parameters())


# -- Issue 18: stages travel to their workers device-free. This machine may have no GPU,
# so a CPU model's storages are tagged as GPU 1's through torch's own extension point
# for devices (torch.serialization.register_package): torch.save then writes exactly
# what it writes for a model on cuda:1, and a plain torch.load puts it back there.
_TAGGED_AS_GPU: set[int] = set()  # data pointers of the storages tagged "cuda:1"


def _gpu_tag(storage: Any) -> str | None:
    return "cuda:1" if storage.data_ptr() in _TAGGED_AS_GPU else None


torch.serialization.register_package(0, _gpu_tag, lambda storage, location: None)


def _stage_tensors(stage: Any) -> list[torch.Tensor]:
    modules = [m for m in (stage.block, stage.synthesizer, stage.head) if m is not None]
    found = [t for m in modules for t in m.state_dict().values()]
    for optimizer in (stage.optimizer, stage.synth_optimizer, stage.head_optimizer):
        if optimizer is not None:
            found += [t for state in optimizer.state.values() for t in state.values()
                      if isinstance(t, torch.Tensor)]
    queued = stage.state()
    found += [t for key in ("memory_h", "memory_context", "targets") for t in queued[key]
              if t is not None]
    return found


@contextlib.contextmanager
def tagged_as_gpu(model: Decoupled) -> Any:
    """Every storage of ``model``'s stages saves (and plainly loads) as cuda:1's."""
    pointers = {t.untyped_storage().data_ptr() for stage in model.stages
                for t in _stage_tensors(stage)} - {0}
    _TAGGED_AS_GPU.update(pointers)
    try:
        yield
    finally:
        _TAGGED_AS_GPU.difference_update(pointers)


def test_a_stage_on_a_gpu_is_shipped_device_free(device: str, data: Dataset) -> None:
    """What is pickled for a worker names no device but the CPU (a worker used to
    unpickle the parent's GPU tensors onto that GPU: a CUDA context there, or a failure
    where it is not visible), and it holds the same values."""
    from nondiff.hybrid.payload import dumps, loads, storage_locations

    model = Decoupled(blocks(), signal="synthetic", staleness=2, seed=0)
    model.fit(data, epochs=1, batch_size=50)  # optimizer states, activations in flight
    stage = model.stages[1]
    if device == "cuda":
        stage.block.to("cuda")
        stage.synthesizer.to("cuda")
        where = contextlib.nullcontext()
    else:
        where = tagged_as_gpu(model)
    with where:
        plain = dumps(stage, device_free=False)  # what torch.save writes
        assert storage_locations(plain) - {"cpu"}, "the premise: the stage is on a GPU"
        if device == "cpu" and conftest.GPUS < 2:  # the failure a worker saw
            with pytest.raises(RuntimeError, match="CUDA"):
                torch.load(io.BytesIO(plain), weights_only=False)
        shipped = dumps(stage)
    assert storage_locations(shipped) == {"cpu"}
    for payload in (shipped, plain):  # a worker reads either onto the CPU
        copy = loads(payload)
        assert all(t.device.type == "cpu" for t in _stage_tensors(copy))
        assert plain_equal([t.cpu() for t in _stage_tensors(copy)],
                           [t.cpu() for t in _stage_tensors(stage)])


def test_a_model_tagged_for_a_gpu_trains_in_workers_as_in_one_process(data: Dataset) -> None:
    """fit_parallel ships such a model device-free: the workers (which see no GPU 1)
    train it, bit for bit as one process does; before, each failed to unpickle it."""
    single = Decoupled(blocks(), signal="synthetic", staleness=1, seed=0)
    expected = single.fit(data, epochs=1, batch_size=50)
    parallel = Decoupled(blocks(), signal="synthetic", staleness=1, seed=0)
    parallel.build(data.x_train[:2])
    method = "fork" if torch.version.cuda is None else "forkserver"
    with tagged_as_gpu(parallel):
        losses = fit_parallel(parallel, data, epochs=1, batch_size=50, start_method=method)
    assert losses == expected and _same(single, parallel)
