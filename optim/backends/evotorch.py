"""Drive any evotorch ``SearchAlgorithm`` through nondiff's ask/tell protocol.

evotorch algorithms own their loop: ``algorithm.step()`` samples a population and
calls ``problem.evaluate(batch)`` itself. The adapter inverts that control. The
algorithm steps in a worker thread whose problem, instead of computing fitness,
hands each batch it wants evaluated to :meth:`ask` and waits until :meth:`tell`
brings the fitness back. Exactly one thread runs at a time (the two hand the
turn over through queues), so the algorithm's arithmetic and its random
generator (the problem's own, seeded) see the same sequence of calls as in
evotorch's own loop.

Reference: Toklu et al. 2023, "EvoTorch: Scalable Evolutionary Computation in
Python", arXiv:2302.12600.

Example:
    >>> import torch
    >>> from evotorch.algorithms import SNES
    >>> from nondiff.optim.backends.evotorch import EvoTorchAdapter
    >>> opt = EvoTorchAdapter(torch.zeros(5), SNES, sigma0=1.0, popsize=20, seed=0)
    >>> for _ in range(200):
    ...     x = opt.ask()
    ...     _ = opt.tell(x, (x**2).sum(dim=1))
    >>> bool(opt.best_f < 1e-4)
    True
    >>> opt.close()
"""

from __future__ import annotations

import dataclasses
import inspect
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..base import Array, BaseOptimizer


@dataclasses.dataclass
class _AdapterState:
    pending: int = 0  # batches asked but not yet told


class EvoTorchAdapter(BaseOptimizer):
    """An evotorch search algorithm behind ``ask``/``tell``.

    Args:
        x0: initial center, ``(dim,)``.
        algorithm: an evotorch ``SearchAlgorithm`` class, or any callable
            ``factory(problem, **algorithm_kwargs)`` returning one.
        sigma0: initial standard deviation; passed as ``stdev_init`` when the
            algorithm accepts it. The problem's initial bounds are
            ``x0 ± sigma0`` (or ``bounds``).
        popsize: passed as ``popsize`` when the algorithm accepts it.
        seed: seed of the problem's own torch generator.
        bounds: hard bounds of the evotorch problem.
        **algorithm_kwargs: further constructor arguments of the algorithm.

    The batch size of each ``ask`` is the algorithm's: ``ask(n)`` with another
    ``n`` raises. ``tell`` must receive the candidates ``ask`` returned, since
    evotorch learns from the population it sampled. The algorithm's state is
    held in live evotorch objects, so ``state_dict`` records counters and the
    best-so-far only and refuses to load into a fresh adapter: use a native
    optimizer (``nondiff.optim.SNES``, ``nondiff.optim.PGPE``, ...) when runs must resume.
    """

    name = "evotorch"
    backend = "torch"
    handles_bounds = True

    def __init__(
        self,
        x0: Array,
        algorithm: Callable[..., Any],
        sigma0: float = 1.0,
        popsize: int | None = None,
        seed: int | None = None,
        bounds: tuple[Any, Any] | None = None,
        **algorithm_kwargs: Any,
    ) -> None:
        if not callable(algorithm):
            raise ValueError(
                f"algorithm must be an evotorch SearchAlgorithm class, got {algorithm!r}"
            )
        self.algorithm_factory = algorithm
        self.algorithm_kwargs = dict(algorithm_kwargs)
        super().__init__(x0, sigma0=sigma0, popsize=popsize, seed=seed, bounds=bounds)
        self._to_worker: queue.Queue[Any] = queue.Queue()
        self._to_caller: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._batch: Any = None
        self._thread: threading.Thread | None = None
        self.problem = self._make_problem()
        self.algorithm = self._make_algorithm(popsize)
        self.popsize = int(getattr(self.algorithm, "_popsize", None) or self.popsize)

    def _make_problem(self) -> Any:
        from evotorch import Problem

        # The problem and the worker hold the queues, never the adapter itself, so
        # an adapter that is dropped without close() is still garbage-collected.
        to_worker, to_caller = self._to_worker, self._to_caller

        class _HandOverProblem(Problem):
            def _evaluate_batch(self, batch: Any) -> None:
                to_caller.put(("batch", batch))
                fitness = to_worker.get()
                if fitness is _QUIT:
                    raise _Stopped
                batch.set_evals(fitness)

        center = self.format.to_torch(self._best_x)
        if self.bounds is not None:
            lower, upper = (torch.as_tensor(b, dtype=center.dtype) for b in self.bounds)
            initial = (lower, upper)
        else:
            initial = (center - self.sigma0, center + self.sigma0)
        return _HandOverProblem(
            "min",
            solution_length=self.dim,
            initial_bounds=initial,
            bounds=initial if self.bounds is not None else None,
            dtype=self.format.torch_dtype,
            device=self.format.device,
            seed=self.seed,
        )

    def _make_algorithm(self, popsize: int | None) -> Any:
        kwargs = dict(self.algorithm_kwargs)
        try:
            accepted = inspect.signature(self.algorithm_factory).parameters
        except (TypeError, ValueError):
            accepted = {}
        defaults = {"center_init": self.format.to_torch(self._best_x).clone(),
                    "stdev_init": self.sigma0, "popsize": popsize or self.popsize}
        for key, value in defaults.items():
            if key in accepted and key not in kwargs:
                kwargs[key] = value
        return self.algorithm_factory(self.problem, **kwargs)

    def config(self) -> dict[str, Any]:
        algorithm = getattr(self.algorithm_factory, "__qualname__", repr(self.algorithm_factory))
        return {**super().config(), "algorithm": algorithm}

    # ----- the hand-over -------------------------------------------------------
    @staticmethod
    def _worker(algorithm: Any, to_worker: queue.Queue[Any],
                to_caller: queue.Queue[tuple[str, Any]]) -> None:
        while to_worker.get() is not _QUIT:
            try:
                algorithm.step()
            except _Stopped:
                return
            except BaseException as error:  # surfaced in the caller's thread
                to_caller.put(("error", error))
            else:
                to_caller.put(("stepped", None))

    def _wait(self) -> None:
        kind, payload = self._to_caller.get()
        if kind == "error":
            raise RuntimeError(f"the evotorch algorithm raised: {payload!r}") from payload
        self._batch = payload if kind == "batch" else None

    def ask(self, n: int | None = None) -> Array:
        """The batch the algorithm wants evaluated next."""
        if self._batch is None:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._worker, daemon=True,
                    args=(self.algorithm, self._to_worker, self._to_caller),
                )
                self._thread.start()
            self._to_worker.put("step")
            self._wait()
        values = self._batch.values
        if n is not None and n != values.shape[0]:
            raise ValueError(
                f"the evotorch algorithm asks for {values.shape[0]} candidates now, not n={n}; "
                "call ask() without n"
            )
        self.state.pending = 1
        return self.format.to_user(values.clone())

    def _init_state(self, x0: Array) -> _AdapterState:
        return _AdapterState()

    def _ask(self, n: int) -> Array:  # ask() is overridden; kept for the template
        raise NotImplementedError

    def _tell(self, x: Array, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        if self._batch is None or self.state.pending == 0:
            raise ValueError("tell() without a pending ask(); call ask() first")
        values = self._batch.values
        if x.shape != values.shape or not torch.equal(x.to(values.dtype), values):
            raise ValueError(
                "evotorch algorithms learn from the population they sampled: tell the "
                "candidates that ask() returned, unchanged"
            )
        self.state.pending = 0
        self._to_worker.put(torch.as_tensor(fitness, dtype=torch.float64))
        self._wait()
        stdev = getattr(self.algorithm, "_distribution", None)
        if stdev is not None and "sigma" in getattr(stdev, "parameters", {}):
            return {"sigma": float(stdev.parameters["sigma"].mean())}
        return {}

    def _recommend(self) -> Array:
        distribution = getattr(self.algorithm, "_distribution", None)
        if distribution is not None and "mu" in getattr(distribution, "parameters", {}):
            return distribution.parameters["mu"].detach().clone()
        return self._best_x

    def load_state_dict(self, state: Any) -> None:
        raise ValueError(
            "EvoTorchAdapter cannot restore the evotorch algorithm's internal state; "
            "resume with a native optimizer (optim.SNES, optim.PGPE, optim.CMAES, ...)"
        )

    def close(self) -> None:
        """Stop the worker thread (also done when the adapter is garbage-collected)."""
        if self._thread is not None and self._thread.is_alive():
            self._to_worker.put(_QUIT)
            self._thread.join(timeout=5)
        self._thread = None
        self._batch = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class _Stopped(Exception):
    """Raised inside the worker to unwind a step when the adapter closes."""


_QUIT = object()
