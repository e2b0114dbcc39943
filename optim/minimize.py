"""The optimization loop: budget, stopping, callbacks, progress bar, checkpoints.

Example:
    >>> import numpy as np
    >>> from nondiff.optim import minimize
    >>> res = minimize(lambda x: float((x**2).sum()), np.ones(5), optimizer="cmaes",
    ...                budget=3000, sigma0=0.5, seed=1)
    >>> bool(res.f < 1e-8), res.evaluations <= 3000
    (True, True)
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import registry
from .base import Array, BaseOptimizer, Result
from .checks import as_float64
from .evaluate import Evaluator
from .spaces import Space

CHECKPOINT_VERSION = 1

Callback = Callable[[dict[str, float], BaseOptimizer], Any]


def evaluate(fn: Callable[[Array], Any], candidates: Array, vectorized: bool,
             space: Space | None = None, width: int | None = None) -> np.ndarray:
    """Values of ``fn`` on ``candidates``: float64 ``(n,)``, or ``(n, width)``.

    ``vectorized=True`` calls ``fn`` once on the whole ``(n, dim)`` batch (the
    encoded batch when there is a ``space``); otherwise once per row, with the
    row decoded by ``space`` when one is given. ``width`` admits ``m`` values per
    candidate (constraints); by default one.
    """
    n = candidates.shape[0]
    what = "constraint function" if width is not None else "objective"
    if vectorized:
        values = as_float64(fn(candidates), f"the {what}'s value")
        if values.ndim == 0 or values.shape[0] != n or (width is None and values.size != n):
            raise ValueError(
                f"a vectorized {what} must return shape ({n},) for a batch of {n} "
                f"candidates, got {values.shape}; pass vectorized=False if it takes one point"
            )
        return values.reshape(n, -1) if width is not None else values.reshape(n)
    rows = []
    for i in range(n):
        point = space.decode(candidates[i]) if space is not None else candidates[i]
        value = as_float64(fn(point), f"the {what}'s value")
        if width is None and value.size != 1:
            raise ValueError(
                f"the {what} must return one number per point, got shape {value.shape}; "
                "pass vectorized=True if it takes a whole (n, dim) batch"
            )
        rows.append(value.reshape(-1))
    values = np.stack(rows)
    return values if width is not None else values.reshape(n)


def _make_optimizer(
    optimizer: str | BaseOptimizer,
    x0: Array | Space | None,
    sigma0: float | None,
    bounds: Any,
    seed: int | None,
    options: dict[str, Any] | None,
) -> BaseOptimizer:
    if isinstance(optimizer, BaseOptimizer):
        given = [k for k, v in {"x0": x0, "sigma0": sigma0, "bounds": bounds, "seed": seed,
                                "options": options}.items() if v is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} given together with an optimizer instance; set them when "
                "constructing the optimizer, or pass the optimizer by name"
            )
        return optimizer
    if not isinstance(optimizer, str):
        raise ValueError(
            f"optimizer must be a registered name or an optimizer instance, got {optimizer!r}"
        )
    if x0 is None:
        raise ValueError("x0 is required when the optimizer is given by name")
    if sigma0 is None:
        sigma0 = _default_sigma0(x0, bounds)
    return registry.create(optimizer, x0, sigma0=sigma0, bounds=bounds, seed=seed,
                           **(options or {}))


def _default_sigma0(x0: Array | Space, bounds: Any) -> float:
    """0.3 x the mean width of the finite sides of the box (of the space or of
    ``bounds``); 1 when no side is finite."""
    if isinstance(x0, Space):
        lower, upper = x0.bounds()
    elif bounds is None:
        return 1.0
    else:
        try:
            low, high = bounds
            shape = np.shape(x0.detach().cpu() if isinstance(x0, torch.Tensor) else x0)
            lower = np.broadcast_to(np.asarray(low, dtype=np.float64), shape)
            upper = np.broadcast_to(np.asarray(high, dtype=np.float64), shape)
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be a pair (lower, upper) of scalars or (dim,) "
                             f"arrays, got {bounds!r}") from None
    widths = upper - lower
    widths = widths[np.isfinite(widths) & (widths > 0)]
    return float(0.3 * np.mean(widths)) if widths.size else 1.0


def _progress_bar(total: int, enabled: bool | None) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="eval", dynamic_ncols=True, leave=False)


def minimize(
    fn: Callable[[Array], Any],
    x0: Array | Space | None = None,
    *,
    optimizer: str | BaseOptimizer = "cmaes",
    budget: int = 10_000,
    sigma0: float | None = None,
    bounds: tuple[Any, Any] | None = None,
    maximize: bool = False,
    vectorized: bool = False,
    target: float | None = None,
    constraints: Callable[[Array], Any] | None = None,
    callbacks: Iterable[Callback] = (),
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 10,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    progress: bool | None = None,
    evaluator: Evaluator | None = None,
) -> Result:
    """Minimize (or maximize) ``fn`` with any registered optimizer.

    Args:
        fn: objective; takes one point ``(dim,)`` or, if ``vectorized``, an
            ``(n, dim)`` batch, in the array library of ``x0``. With a space,
            it takes one decoded value (e.g. a dict for a ``Product``), or the
            encoded ``(n, size)`` batch if ``vectorized``.
        x0: starting point / initial mean, or a :class:`~nondiff.optim.spaces.Space`
            to search (then ``Result.x`` is the decoded best value).
        optimizer: registry name (see ``nondiff.optim.registry.names()``) or an instance.
        budget: maximum number of evaluations; never exceeded (a generation that
            would exceed it is not started; restarts that enlarge the population
            decide it in ``tell``, before this check).
        sigma0: initial step size (default 1, or 0.3 x the mean box width).
        bounds: ``(lower, upper)`` box.
        maximize: maximize ``fn`` instead.
        vectorized: ``fn`` evaluates a whole batch in one call.
        target: stop once the best value reaches it (in the sense of ``maximize``)
            at a feasible point.
        constraints: ``g(x)`` with ``g <= 0`` feasible, called like ``fn``,
            returning one or ``m`` values per point; see ``BaseOptimizer.tell``.
        callbacks: called as ``cb(metrics, optimizer)`` after every generation;
            returning True stops the run.
        checkpoint: path of a state file written every ``checkpoint_every``
            generations and at the end. If it exists, the run resumes from it and
            continues the same trajectory bit for bit.
        seed: seed of the optimizer (with a checkpoint, the saved seed is reused).
        options: further hyperparameters for the optimizer's constructor.
        progress: show a progress bar (default: when stderr is a terminal).
        evaluator: where the population is evaluated (an :mod:`nondiff.optim.evaluate`
            evaluator: serial, vectorized, process pool, Ray); default: in this
            process, one call per batch (``vectorized``) or per point.

    Returns:
        A :class:`~nondiff.optim.base.Result`.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive number of evaluations, got {budget!r}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) \
            or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if evaluator is not None and not isinstance(evaluator, Evaluator):
        raise ValueError(f"evaluator must be an optim.evaluate.Evaluator (SerialEvaluator, "
                         f"VectorizedEvaluator, ProcessPoolEvaluator, RayEvaluator), "
                         f"got {evaluator!r}")
    sign = -1.0 if maximize else 1.0
    saved = load_checkpoint(checkpoint) if checkpoint is not None else None
    if saved is not None and seed is None and not isinstance(optimizer, BaseOptimizer):
        seed = int(saved["optimizer"]["config"]["seed"])
    opt = _make_optimizer(optimizer, x0, sigma0, bounds, seed, options)
    space = opt.space
    history: list[tuple[float, float]] = []
    if saved is not None:
        opt.load_state_dict(saved["optimizer"])
        history = [tuple(row) for row in saved["history"].tolist()]
    callbacks = list(callbacks)
    reasons: dict[str, Any] = {}
    bar = _progress_bar(budget, progress)
    if bar is not None:
        bar.update(opt.counters["evaluations"])
    since_checkpoint = 0
    try:
        while True:
            reasons = dict(opt.stop())
            if target is not None and history and sign * history[-1][1] <= sign * target \
                    and opt.best_violation == 0:
                reasons["target"] = target
            remaining = budget - opt.counters["evaluations"]
            if remaining < opt.popsize:
                if opt.counters["evaluations"] == 0:
                    raise ValueError(
                        f"budget={budget} is smaller than one generation "
                        f"(popsize={opt.popsize}); raise the budget or lower popsize"
                    )
                reasons["budget"] = budget
            if reasons:
                break
            candidates = opt.ask()
            if len(candidates) > remaining:  # an ask larger than its popsize: never evaluated
                reasons["budget"] = budget
                break
            if evaluator is None:
                fitness = sign * evaluate(fn, candidates, vectorized, space)
            else:
                decoded = _Decoded(fn, space) if space is not None and not vectorized else fn
                fitness = sign * evaluator(decoded, candidates, vectorized=vectorized)
            g = None if constraints is None else evaluate(constraints, candidates, vectorized,
                                                           space, width=-1)
            metrics = opt.tell(candidates, fitness, constraints=g)
            history.append((float(opt.counters["evaluations"]), sign * opt.best_f))
            if bar is not None:
                bar.update(len(fitness))
                bar.set_postfix(best=f"{sign * opt.best_f:.4g}", refresh=False)
            since_checkpoint += 1
            if checkpoint is not None and since_checkpoint >= checkpoint_every:
                save_checkpoint(checkpoint, opt, history)
                since_checkpoint = 0
            if any(cb(metrics, opt) is True for cb in callbacks):
                reasons = {"callback": True}
                break
    finally:
        if bar is not None:
            bar.close()
    if checkpoint is not None:
        save_checkpoint(checkpoint, opt, history)
    best = opt.best_f
    x_best = opt.best_x
    return Result(
        x=space.decode(x_best) if space is not None else x_best,
        f=sign * best if math.isfinite(best) else math.nan,
        evaluations=opt.counters["evaluations"],
        iterations=opt.counters["iterations"],
        stop=reasons,
        history=np.asarray(history, dtype=np.float64).reshape(-1, 2),
        nonfinite=opt.counters["nonfinite"],
        optimizer=opt.name,
        feasible=opt.best_violation == 0,
        violation=opt.best_violation,
    )


class _Decoded:
    """``fn`` of the decoded point (picklable, for evaluators in other processes)."""

    def __init__(self, fn: Callable[[Any], Any], space: Space) -> None:
        self.fn, self.space = fn, space

    def __call__(self, encoded: Array) -> Any:
        return self.fn(self.space.decode(encoded))


def save_checkpoint(path: str | os.PathLike[str], opt: BaseOptimizer,
                    history: list[tuple[float, float]]) -> None:
    """Write the run's state atomically (a crash mid-write keeps the old file)."""
    path = Path(path)
    payload = {
        "checkpoint_version": CHECKPOINT_VERSION,
        "optimizer": opt.state_dict(),
        "history": torch.tensor(history, dtype=torch.float64).reshape(-1, 2),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read a checkpoint written by :func:`save_checkpoint` (None if absent).

    Only tensors, numbers, strings and containers are read
    (``torch.load(weights_only=True)``): no code is unpickled.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        payload = torch.load(path, weights_only=True)
    except Exception as error:
        raise ValueError(
            f"checkpoint {str(path)!r} is unreadable ({type(error).__name__}: {error}); "
            "delete it to start afresh, or point checkpoint= at another file"
        ) from error
    if not isinstance(payload, dict) or payload.get("checkpoint_version") != CHECKPOINT_VERSION \
            or not {"optimizer", "history"} <= set(payload):
        raise ValueError(
            f"{str(path)!r} is not a nondiff checkpoint of version {CHECKPOINT_VERSION}; "
            "delete it to start afresh, or point checkpoint= at another file"
        )
    payload["history"] = payload["history"].numpy()
    return payload
