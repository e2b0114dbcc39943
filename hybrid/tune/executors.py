"""Where trials run: threads of this process, a pool of processes, or Ray actors.

Each executor has ``parallel`` slots; :meth:`Executor.start` runs one ``train`` call
(a :class:`~nondiff.hybrid.tune.trial.Job`) on a free slot, :meth:`Executor.wait`
returns the messages the running trials sent (``report``, ``checkpoint``, ``done``,
``error``, or ``died`` when a worker process or actor was lost), and
:meth:`Executor.reply` answers a report with the scheduler's decision. The study's
driver is the same whatever runs the trials.

- ``"inline"`` (:class:`ThreadExecutor`): threads of this process; nothing is pickled
  (any ``train``, lambdas included); for small models and debugging.
- ``"process"`` (:class:`ProcessExecutor`): worker processes started by forkserver
  (spawn where there is none; never fork: a process that has run autograd cannot
  fork safely), each with a pipe to the driver; ``train`` must pickle (a top-level
  function). Workers die with the driver (:func:`nondiff.optim.lifetime.die_with`).
- ``"ray"`` (:class:`RayExecutor`): Ray actors (one CPU each) that run ``train`` in a
  thread and hand its messages to the driver; joins a running Ray instance or starts
  a local one (and shuts it down at the end).

Each worker gets ``max(1, cpus // parallel)`` torch threads.

Example:
    >>> from nondiff.hybrid.tune.executors import ThreadExecutor
    >>> from nondiff.hybrid.tune.trial import Job
    >>> def train(config, trial):
    ...     trial.report(1, config["x"])
    >>> with ThreadExecutor(train, parallel=1) as pool:
    ...     pool.start(0, Job(number=7, config={"x": 0.5}, max_steps=1))
    ...     slot, message = pool.wait()[0]
    ...     pool.reply(slot, "continue")
    ...     done = pool.wait()[0][1]
    >>> message, done[:3]
    (('report', 7, 1, 0.5), ('done', 7, None))
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_connections
from typing import Any

from nondiff.optim.evaluate import pickled
from nondiff.optim.lifetime import die_with

from .trial import STOP, Job, run_job

__all__ = ["EXECUTORS", "Executor", "ProcessExecutor", "RayExecutor", "ThreadExecutor",
           "make_executor"]

EXECUTORS = ("process", "ray", "inline")
Message = tuple[int, tuple[Any, ...]]


def _threads(parallel: int) -> int:
    return max(1, (os.cpu_count() or 1) // parallel)


class Executor(ABC):
    """Slots that run trials; see the module docstring."""

    def __init__(self, train: Callable[..., Any], parallel: int) -> None:
        self.train, self.parallel = train, parallel
        self.jobs: dict[int, int] = {}  # slot -> trial number of the job running there

    @abstractmethod
    def start(self, slot: int, job: Job) -> None:
        """Run ``job`` on the free ``slot``."""

    @abstractmethod
    def wait(self) -> list[Message]:
        """Block until a running trial sends something; ``(slot, message)`` pairs."""

    @abstractmethod
    def reply(self, slot: int, decision: str) -> None:
        """Answer the report the trial on ``slot`` is waiting on."""

    def close(self) -> None:  # noqa: B027 (a hook)
        """Release the workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _QueueChannel:
    """A trial's channel over queues (threads, and threads inside Ray actors)."""

    def __init__(self, outbox: Any, inbox: Any, tag: int | None = None) -> None:
        self.outbox, self.inbox, self.tag = outbox, inbox, tag

    def send(self, message: tuple[Any, ...]) -> None:
        self.outbox.put(message if self.tag is None else (self.tag, message))

    def request(self, message: tuple[Any, ...]) -> Any:
        self.send(message)
        return self.inbox.get()


class ThreadExecutor(Executor):
    """Trials in threads of this process (``executor="inline"``)."""

    def __init__(self, train: Callable[..., Any], parallel: int) -> None:
        super().__init__(train, parallel)
        self.outbox: queue.Queue[Message] = queue.Queue()
        self.inboxes = [queue.Queue() for _ in range(parallel)]

    def start(self, slot: int, job: Job) -> None:
        self.jobs[slot] = job.number
        channel = _QueueChannel(self.outbox, self.inboxes[slot], tag=slot)
        threading.Thread(target=run_job, args=(self.train, job, channel), daemon=True,
                         name=f"nondiff-trial-{job.number}").start()

    def wait(self) -> list[Message]:
        out = [self.outbox.get()]
        while True:
            try:
                out.append(self.outbox.get_nowait())
            except queue.Empty:
                return out

    def reply(self, slot: int, decision: str) -> None:
        self.inboxes[slot].put(decision)

    def close(self) -> None:
        for inbox in self.inboxes:  # a trial still waiting on a report stops
            inbox.put(STOP)


# ----- processes ------------------------------------------------------------------------
class _PipeChannel:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def send(self, message: tuple[Any, ...]) -> None:
        self.conn.send(message)

    def request(self, message: tuple[Any, ...]) -> Any:
        self.conn.send(message)
        return self.conn.recv()


def _process_worker(conn: Connection, owner: int, threads: int, payload: bytes) -> None:
    import torch

    die_with(owner)
    torch.set_num_threads(threads)
    train = pickle.loads(payload)
    channel = _PipeChannel(conn)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        run_job(train, job, channel)


def check_picklable(train: Any) -> bytes:
    """``pickle.dumps(train)``, or a ValueError saying how to make it travel."""
    return pickled(train, "train", "pass executor='inline' (threads) or executor='ray' "
                   "(cloudpickle)")


class ProcessExecutor(Executor):
    """Trials in worker processes (``executor="process"``); see the module docstring."""

    def __init__(self, train: Callable[..., Any], parallel: int,
                 start_method: str | None = None) -> None:
        super().__init__(train, parallel)
        self.payload = check_picklable(train)
        methods = multiprocessing.get_all_start_methods()
        method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
        self.context = multiprocessing.get_context(method)
        self.workers: dict[int, tuple[Any, Connection]] = {}

    def _worker(self, slot: int) -> tuple[Any, Connection]:
        if slot not in self.workers:
            ours, theirs = self.context.Pipe()
            process = self.context.Process(
                target=_process_worker, name=f"nondiff-tune-{slot}",
                args=(theirs, os.getpid(), _threads(self.parallel), self.payload))
            process.start()
            theirs.close()  # only the worker holds its end: its death reads as EOF here
            self.workers[slot] = (process, ours)
        return self.workers[slot]

    def start(self, slot: int, job: Job) -> None:
        self.jobs[slot] = job.number
        _, conn = self._worker(slot)
        conn.send(job)

    def wait(self) -> list[Message]:
        busy = {self.workers[slot][1]: slot for slot in self.jobs if slot in self.workers}
        out: list[Message] = []
        for conn in wait_connections(list(busy)):
            slot = busy[conn]
            try:
                while conn.poll():
                    message = conn.recv()
                    out.append((slot, message))
                    if message[0] in ("done", "error"):
                        del self.jobs[slot]
                        break
            except (EOFError, OSError, pickle.UnpicklingError):
                out.append((slot, ("died", self.jobs.pop(slot), self._bury(slot))))
        return out

    def _bury(self, slot: int) -> str:
        process, conn = self.workers.pop(slot)
        conn.close()
        process.join(timeout=10)
        return (f"the worker process (pid {process.pid}) died with exit code "
                f"{process.exitcode} while running the trial (killed, or out of memory)")

    def reply(self, slot: int, decision: str) -> None:
        self.workers[slot][1].send(decision)

    def close(self) -> None:
        for _, conn in self.workers.values():
            try:
                conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for process, conn in self.workers.values():
            process.join(timeout=5)
            if process.is_alive():  # still in a trial: end it
                process.kill()
                process.join(timeout=5)
            conn.close()
        self.workers.clear()


# ----- Ray --------------------------------------------------------------------------------
class _RayTrialWorker:
    """A Ray actor running one trial at a time in a thread; the driver pulls messages."""

    def __init__(self, train: Callable[..., Any], threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.train = train
        self.outbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.inbox: queue.Queue[str] = queue.Queue()

    def start(self, job: Job) -> None:
        channel = _QueueChannel(self.outbox, self.inbox)
        threading.Thread(target=run_job, args=(self.train, job, channel), daemon=True).start()

    def next_message(self) -> tuple[Any, ...]:
        return self.outbox.get()

    def reply(self, decision: str) -> None:
        self.inbox.put(decision)


class RayExecutor(Executor):
    """Trials on Ray actors (``executor="ray"``); see the module docstring."""

    def __init__(self, train: Callable[..., Any], parallel: int,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(train, parallel)
        try:
            import ray
        except ImportError as error:
            raise ValueError("executor='ray' needs Ray: pip install 'nondiff[dist]', or pass "
                             "executor='process'") from error
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(**{"include_dashboard": False, "log_to_driver": False,
                        **(init_kwargs or {})})
        self.remote = ray.remote(num_cpus=1, max_concurrency=4, max_restarts=0)(_RayTrialWorker)
        self.actors: dict[int, Any] = {}
        self.pending: dict[Any, int] = {}  # next_message ref -> slot

    def _actor(self, slot: int) -> Any:
        if slot not in self.actors:
            self.actors[slot] = self.remote.remote(self.train, _threads(self.parallel))
        return self.actors[slot]

    def start(self, slot: int, job: Job) -> None:
        self.jobs[slot] = job.number
        actor = self._actor(slot)
        actor.start.remote(job)
        self.pending[actor.next_message.remote()] = slot

    def wait(self) -> list[Message]:
        ray = self.ray
        ready, _ = ray.wait(list(self.pending), num_returns=1)
        rest = [r for r in self.pending if r not in ready]
        more = ray.wait(rest, num_returns=len(rest), timeout=0)[0] if rest else []
        out: list[Message] = []
        for ref in ready + more:
            slot = self.pending.pop(ref)
            try:
                message = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as error:
                self.actors.pop(slot, None)
                out.append((slot, ("died", self.jobs.pop(slot),
                                   f"the Ray actor running the trial died ({error})")))
                continue
            out.append((slot, message))
            if message[0] in ("done", "error"):
                del self.jobs[slot]
            else:
                self.pending[self.actors[slot].next_message.remote()] = slot
        return out

    def reply(self, slot: int, decision: str) -> None:
        self.actors[slot].reply.remote(decision)

    def close(self) -> None:
        for actor in self.actors.values():
            self.ray.kill(actor)
        self.actors.clear()
        self.pending.clear()
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
            self.started = False


def make_executor(executor: str, train: Callable[..., Any], parallel: int) -> Executor:
    """The executor named ``executor`` with ``parallel`` slots."""
    if executor == "inline":
        return ThreadExecutor(train, parallel)
    if executor == "process":
        return ProcessExecutor(train, parallel)
    if executor == "ray":
        return RayExecutor(train, parallel)
    raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
