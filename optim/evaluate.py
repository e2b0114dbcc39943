"""Evaluators: where and how a population's fitness is computed.

The same run can evaluate its candidates one at a time (:class:`SerialEvaluator`),
in one batched call (:class:`VectorizedEvaluator`), in a local process pool
(:class:`ProcessPoolEvaluator`) or on a Ray cluster (:class:`RayEvaluator`), without
changing the objective: ``evaluator(fn, candidates)`` returns the float64 ``(n,)``
values and ``minimize(fn, x0, evaluator=...)`` uses it. The population is split
into contiguous chunks; each worker keeps the objective it was sent (and so warm
environments) until it is sent another, and the chunks' results are put back in
order, so the values never depend on which worker ran which chunk.

Objectives with state of their own (running observation statistics, step
counters, the episode seeds of a generation, as in Salimans et al. 2017's
distributed ES, where workers share seeds and return scalars) implement
:class:`PopulationObjective`: the main process draws one context per generation,
workers evaluate chunks under it, and the main process merges the chunks'
extras. Workers that die mid-generation (a process killed, a Ray actor lost) have
their chunks re-run on the others, and a replacement is started; the generation
completes with every value present. With ``k`` chunks of ``m`` rows the values are

    f[c_j : c_j + m_j] = fn.evaluate_chunk(x[c_j : c_j + m_j], context)      # Eq. (1)

Source: T. Salimans, J. Ho, X. Chen, S. Sidor, I. Sutskever, "Evolution Strategies as
a Scalable Alternative to Reinforcement Learning", arXiv:1703.03864, 2017.

Example:
    >>> import numpy as np
    >>> from nondiff.optim.evaluate import SerialEvaluator, VectorizedEvaluator
    >>> x = np.arange(6.0).reshape(3, 2)
    >>> SerialEvaluator()(lambda p: float(p @ p), x, vectorized=False)
    array([ 1., 13., 41.])
    >>> VectorizedEvaluator()(lambda b: (b * b).sum(axis=1), x)
    array([ 1., 13., 41.])
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .arrays import Array
from .checks import as_float64
from .lifetime import die_with

__all__ = ["Evaluator", "PopulationObjective", "ProcessPoolEvaluator", "RayEvaluator",
           "SerialEvaluator", "VectorizedEvaluator", "evaluate_chunk"]


@runtime_checkable
class PopulationObjective(Protocol):
    """An objective with per-generation context and results to merge (see module doc)."""

    def generation_context(self) -> Any: ...

    def evaluate_chunk(self, x: Array, context: Any) -> tuple[Array, Any]: ...

    def merge_results(self, extras: Sequence[Any]) -> None: ...


def evaluate_chunk(fn: Callable[..., Any], x: Array, context: Any, vectorized: bool,
                   multiple: bool = False) -> tuple[np.ndarray, Any]:
    """Values and extras of one chunk, Eq. (1); runs in any process.

    The values are float64 ``(m,)``: one number per candidate. With ``multiple``,
    ``fn`` may return several per candidate (a constraint function's ``k``
    values) and the values are ``(m, k)``. ``vectorized`` calls ``fn`` once on the
    ``(m, dim)`` chunk, else once per row.
    """
    if isinstance(fn, PopulationObjective):
        values, extra = fn.evaluate_chunk(x, context)
        return as_float64(values, "the objective's values").reshape(-1), extra
    m = x.shape[0]
    what = "constraint function" if multiple else "objective"
    if vectorized:
        values = as_float64(fn(x), f"the {what}'s value")
        if (values.ndim == 0 or values.shape[0] != m) if multiple else values.size != m:
            raise ValueError(
                f"a vectorized {what} must return shape ({m},{' k' if multiple else ''}) for "
                f"a batch of {m} candidates, got {values.shape}; pass vectorized=False if it "
                "takes one point"
            )
        return (values.reshape(m, -1) if multiple else values.reshape(m)), None
    rows = []
    for i in range(m):
        value = as_float64(fn(x[i]), f"the {what}'s value")
        if not multiple and value.size != 1:
            raise ValueError(
                f"the {what} must return one number per point, got shape {value.shape}; "
                "pass vectorized=True if it takes a whole (n, dim) batch"
            )
        rows.append(value.reshape(-1))
    values = np.stack(rows)
    return (values if multiple else values.reshape(m)), None


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous near-equal (start, stop) ranges covering ``range(n)``."""
    parts = max(1, min(parts, n))
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


class Evaluator(ABC):
    """Evaluate a population: ``evaluator(fn, candidates, vectorized=True)``.

    ``fn`` takes an ``(m, dim)`` batch (``vectorized``) or one point; a
    :class:`PopulationObjective` is evaluated chunk by chunk under one context.
    Subclasses implement :meth:`_run` over the chunks. Evaluators that hold
    workers release them in :meth:`close` (also on leaving a ``with`` block).
    """

    def __call__(self, fn: Callable[..., Any], candidates: Array,
                 vectorized: bool = True) -> np.ndarray:
        if not callable(fn):
            raise ValueError(f"the objective must be callable, got {type(fn).__name__}")
        n = candidates.shape[0]
        if n == 0:
            raise ValueError("no candidates to evaluate: pass an (n, dim) batch with n >= 1")
        context = fn.generation_context() if isinstance(fn, PopulationObjective) else None
        chunks = self._chunks(n)
        results = self._run(fn, candidates, chunks, context, vectorized)
        if isinstance(fn, PopulationObjective):
            fn.merge_results([extra for _, extra in results])
        return np.concatenate([values for values, _ in results])

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        return [(0, n)]

    def check_objective(self, fn: Callable[..., Any]) -> None:  # noqa: B027 (a hook)
        """Refuse, before any work, an objective this evaluator cannot run (e.g. one
        that cannot be sent to other processes)."""

    @abstractmethod
    def _run(self, fn: Callable[..., Any], x: Array, chunks: list[tuple[int, int]],
             context: Any, vectorized: bool) -> list[tuple[np.ndarray, Any]]:
        """The (values, extra) of every chunk, in chunk order."""

    def close(self) -> None:  # noqa: B027 (a hook: in-process evaluators hold nothing)
        """Release workers (a no-op for in-process evaluators)."""

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialEvaluator(Evaluator):
    """One candidate at a time in this process (the reference the others must match)."""

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        return [(i, i + 1) for i in range(n)]

    def _run(self, fn, x, chunks, context, vectorized):
        return [evaluate_chunk(fn, x[a:b], context, vectorized) for a, b in chunks]


class VectorizedEvaluator(Evaluator):
    """The whole population in one call of a vectorized objective, in this process."""

    def _run(self, fn, x, chunks, context, vectorized):
        if not vectorized and not isinstance(fn, PopulationObjective):
            raise ValueError("VectorizedEvaluator needs a vectorized objective (one call on "
                             "an (n, dim) batch); use SerialEvaluator for one point at a time")
        return [evaluate_chunk(fn, x[a:b], context, True) for a, b in chunks]


class _Shipping:
    """The objective as pickled bytes under a token; workers unpickle once per token."""

    def __init__(self) -> None:
        self._fn: Any = None
        self.token = ""
        self._payload: bytes | None = None

    def update(self, fn: Any) -> None:
        if fn is not self._fn:
            self._fn, self.token, self._payload = fn, uuid.uuid4().hex, None

    @property
    def payload(self) -> bytes:
        """The objective pickled (once per objective; Ray ships it its own way)."""
        if self._payload is None:
            self._payload = _pickled(self._fn)
        return self._payload


def pickled(obj: Any, what: str, alternatives: str) -> bytes:
    """``pickle.dumps(obj)``, or a ValueError naming ``what`` could not travel to worker
    processes, how to define it so it does, and the ``alternatives`` that need no pickle.

    Example:
        >>> len(pickled(abs, "the objective", "")) > 0
        True
    """
    try:
        return pickle.dumps(obj)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        name = getattr(obj, "__qualname__", type(obj).__name__)
        raise ValueError(
            f"{what} {name!r} cannot be sent to worker processes ({type(error).__name__}: "
            f"{error}); define it with def at the top level of a module (lambdas and local "
            f"functions do not pickle), or {alternatives}") from None


def _pickled(fn: Any) -> bytes:
    """``pickle.dumps(fn)``, or a ValueError that says how to make ``fn`` travel."""
    return pickled(fn, "the objective", "use SerialEvaluator / RayEvaluator (cloudpickle), "
                   "or vectorized=True in this process")


def _check_retries(max_retries: Any) -> int:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be a non-negative integer (0: no retry), got "
                         f"{max_retries!r}")
    return max_retries


_WORKER_OBJECTIVE: dict[str, Any] = {}


def _worker_objective(token: str, payload: bytes) -> Any:
    fn = _WORKER_OBJECTIVE.get(token)
    if fn is None:  # a new objective: drop the old one (and its environments)
        _WORKER_OBJECTIVE.clear()
        fn = _WORKER_OBJECTIVE[token] = pickle.loads(payload)
    return fn


def _pool_task(token: str, payload: bytes, x: Array, context: Any, vectorized: bool
               ) -> tuple[np.ndarray, Any]:
    return evaluate_chunk(_worker_objective(token, payload), x, context, vectorized)


def _pool_init(owner: int) -> None:
    import torch

    die_with(owner)  # a worker never outlives the process that started the pool
    torch.set_num_threads(1)


def _check_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return workers


class ProcessPoolEvaluator(Evaluator):
    """Chunks in a pool of local processes (spawned; one torch thread each).

    Workers die with the process that created the pool, even when it is killed with
    SIGKILL (:func:`nondiff.optim.lifetime.die_with`).

    Args:
        workers: number of processes (default: the CPUs of this machine).
        max_retries: times a generation is resubmitted to a fresh pool after a
            worker died (``BrokenProcessPool``) before giving up.
        start_method: ``"spawn"`` (default: safe with threads, each worker imports
            torch afresh), ``"forkserver"`` or ``"fork"`` (fast start; only from a
            process without threads that hold locks).
    """

    def __init__(self, workers: int | None = None, max_retries: int = 2,
                 start_method: str = "spawn") -> None:
        self.workers = _check_workers(workers if workers is not None else os.cpu_count() or 1)
        self.max_retries = _check_retries(max_retries)
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(f"start_method must be one of "
                             f"{multiprocessing.get_all_start_methods()}, got {start_method!r}")
        self.start_method = start_method
        self._ship = _Shipping()
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, initializer=_pool_init,
                                             initargs=(os.getpid(),),
                                             mp_context=multiprocessing.get_context(self.start_method))
        return self._pool

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        return _split(n, self.workers)

    def check_objective(self, fn: Callable[..., Any]) -> None:
        _pickled(fn)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (empty before the first call)."""
        return [] if self._pool is None else list(self._pool._processes)

    def _run(self, fn, x, chunks, context, vectorized):
        self._ship.update(fn)
        results: dict[int, tuple[np.ndarray, Any]] = {}
        for attempt in range(self.max_retries + 1):
            pool = self._executor()
            futures = {}
            try:
                for i, (a, b) in enumerate(chunks):
                    if i not in results:
                        futures[i] = pool.submit(_pool_task, self._ship.token,
                                                 self._ship.payload, x[a:b], context, vectorized)
                for i, future in futures.items():
                    results[i] = future.result()
                break
            except BrokenProcessPool:  # a worker died: finished chunks stay, the rest re-run
                for i, future in futures.items():
                    if future.done() and future.exception() is None:
                        results[i] = future.result()
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
                if attempt == self.max_retries:
                    raise
        return [results[i] for i in range(len(chunks))]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class _RayWorker:
    """A Ray actor that keeps the last objective (and its environments) between calls."""

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(1)
        self.token, self.fn = "", None

    def evaluate(self, token: str, boxed: list[Any], x: Array, context: Any,
                 vectorized: bool) -> tuple[np.ndarray, Any]:
        if token != self.token:
            import ray

            self.fn, self.token = ray.get(boxed[0]), token
        return evaluate_chunk(self.fn, x, context, vectorized)

    def pid(self) -> int:
        return os.getpid()


class RayEvaluator(Evaluator):
    """Chunks on Ray actors that keep their objective warm between generations.

    Args:
        address: Ray cluster to join (``"auto"``, ``"ray://host:port"``); None joins
            the instance this process already initialized, or starts a local one.
        num_workers: actors (default: the cluster's CPUs).
        chunks_per_worker: chunks per actor and generation (more: finer balance).
        max_retries: times one chunk is re-run after its actor died.
        init_kwargs: extra ``ray.init`` arguments when this evaluator starts Ray.

    A lost actor is replaced; its chunk re-runs on a live actor at once. :meth:`close`
    kills the actors and shuts Ray down if this evaluator started it.
    """

    def __init__(self, address: str | None = None, num_workers: int | None = None,
                 chunks_per_worker: int = 1, max_retries: int = 3,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        _check_retries(max_retries)
        try:
            import ray
        except ImportError as error:
            raise ValueError("RayEvaluator needs Ray: pip install 'nondiff[dist]'") from error
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False,
                      **(init_kwargs or {})}
            ray.init(address=address, **kwargs)
            self._started = True
        if num_workers is None:
            num_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.num_workers = _check_workers(num_workers)
        self.chunks_per_worker = _check_workers(chunks_per_worker)
        self.max_retries = max_retries
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(_RayWorker)
        self.actors = [self._remote.remote() for _ in range(self.num_workers)]
        self.replaced = 0
        self._ship = _Shipping()
        self._boxed: list[Any] = []

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        return _split(n, self.num_workers * self.chunks_per_worker)

    def _run(self, fn, x, chunks, context, vectorized):
        return self.submit(fn, x, chunks, context, vectorized).result()

    def submit(self, fn: Callable[..., Any], x: Array, chunks: list[tuple[int, int]] | None = None,
               context: Any = None, vectorized: bool = True) -> _RayGeneration:
        """Start a generation and return at once; ``.result()`` waits for it.

        Called directly (``chunks`` None), the generation context is drawn here and
        the results are merged into ``fn`` by ``.result()``, as ``evaluator(fn, x)``
        would. Useful to act while it runs (tests kill an actor in between).
        """
        own = chunks is None
        if own:
            chunks = self._chunks(x.shape[0])
            context = fn.generation_context() if isinstance(fn, PopulationObjective) else None
        if fn is not self._ship._fn:
            self._ship.update(fn)
            self._boxed = [self._ray.put(fn)]
        return _RayGeneration(self, fn if own else None, x, chunks, context, vectorized)

    def _call(self, actor: Any, x: Array, context: Any, vectorized: bool) -> Any:
        return actor.evaluate.remote(self._ship.token, self._boxed, x, context, vectorized)

    def _replace(self, actor: Any) -> None:
        if actor in self.actors:
            self.actors[self.actors.index(actor)] = self._remote.remote()
            self.replaced += 1

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
            self._started = False


class _RayGeneration:
    """A generation under way on Ray: chunks in flight, re-run when an actor dies."""

    def __init__(self, owner: RayEvaluator, merge_into: Any, x: Array,
                 chunks: list[tuple[int, int]], context: Any, vectorized: bool) -> None:
        self.owner, self.merge_into, self.x = owner, merge_into, x
        self.chunks, self.context, self.vectorized = chunks, context, vectorized
        self.pending: dict[Any, tuple[int, Any]] = {}  # ref -> (chunk, actor)
        self.tries = [0] * len(chunks)
        actors = self.warm = list(owner.actors)
        for i in range(len(chunks)):
            self._launch(i, actors[i % len(actors)])

    def _launch(self, i: int, actor: Any) -> None:
        a, b = self.chunks[i]
        ref = self.owner._call(actor, self.x[a:b], self.context, self.vectorized)
        self.pending[ref] = (i, actor)

    def result(self) -> Any:
        ray = self.owner._ray
        lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError)
        done: dict[int, tuple[np.ndarray, Any]] = {}
        dead: set[Any] = set()
        turn = 0
        while self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=1)
            ref = ready[0]
            i, actor = self.pending.pop(ref)
            try:
                done[i] = ray.get(ref)
            except lost:
                self.tries[i] += 1
                if self.tries[i] > self.owner.max_retries:
                    raise
                if actor not in dead:
                    dead.add(actor)
                    self.owner._replace(actor)
                # re-run on a surviving warm actor (it queues the chunk); a fresh
                # replacement only when none survives
                live = [a for a in self.warm if a not in dead] or [
                    a for a in self.owner.actors if a not in dead]
                turn += 1
                self._launch(i, live[turn % len(live)])
        results = [done[i] for i in range(len(self.chunks))]
        if self.merge_into is not None:
            if isinstance(self.merge_into, PopulationObjective):
                self.merge_into.merge_results([extra for _, extra in results])
            return np.concatenate([values for values, _ in results])
        return results
