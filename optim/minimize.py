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
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint as checkpoint_files
from . import registry
from .base import Array, BaseOptimizer, Result
from .checkpoint import Stateful
from .evaluate import Evaluator, SerialEvaluator, VectorizedEvaluator, evaluate_chunk
from .spaces import Space

CHECKPOINT_VERSION = 2  # 2: checksum, objective/evaluator states

Callback = Callable[[dict[str, float], BaseOptimizer], Any]


def make_optimizer(
    optimizer: str | BaseOptimizer,
    x0: Array | Space | None = None,
    sigma0: float | None = None,
    bounds: Any = None,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
) -> BaseOptimizer:
    """The optimizer that :func:`minimize` runs: built by name, or an instance as is.

    Args:
        optimizer: a registry name (see ``nondiff.optim.registry.names()``) or an
            optimizer instance (then every other argument must be None).
        x0: starting point or :class:`~nondiff.optim.spaces.Space`; required with a name.
        sigma0: initial step size; default 0.3 x the mean width of the finite sides
            of the box (of the space or of ``bounds``), else 1.
        bounds: ``(lower, upper)`` box.
        seed: seed of the optimizer's random generator.
        options: further hyperparameters for the optimizer's constructor.

    Raises:
        ValueError: arguments given with an instance, a name without ``x0``, or
            anything :func:`nondiff.optim.registry.create` rejects.

    Example:
        >>> from nondiff.optim.minimize import make_optimizer
        >>> from nondiff.optim.spaces import Real
        >>> opt = make_optimizer("snes", Real(0.0, 10.0, size=3), seed=0)
        >>> opt.name, opt.sigma0
        ('snes', 3.0)
    """
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
    options = dict(options or {})
    common = {"sigma0": sigma0, "bounds": bounds, "seed": seed}
    for key, value in common.items():  # also accepted among the options, but once
        if key in options:
            if value is not None:
                raise ValueError(f"{key} given twice, as {key}={value!r} and in options "
                                 f"({key}={options[key]!r}); pass it once")
            common[key] = options.pop(key)
    if common["sigma0"] is None:
        common["sigma0"] = _default_sigma0(x0, common["bounds"])
    return registry.create(optimizer, x0, **common, **options)


TORCH_VARIANTS = {name: f"{name}-torch" for name in (
    "cmaes", "sep-cmaes", "ipop-cmaes", "bipop-cmaes", "ipop-sep-cmaes", "bipop-sep-cmaes")}
"""pycma CMA-ES names and their torch counterparts (:mod:`nondiff.optim.cmaes_torch`)."""


def device_variant(optimizer: str, x0: Any, options: dict[str, Any] | None = None) -> str:
    """The optimizer :func:`minimize` runs for the name ``optimizer``: the torch CMA-ES
    (e.g. ``cmaes-torch``) for a pycma CMA-ES name when ``x0`` is a torch tensor on a
    CUDA device and every option is one the torch version takes (pycma's
    ``options``, ``integer_variables`` keep pycma), else ``optimizer`` itself. On the
    CPU pycma stays the default: ``nondiff.benchmarks.cmaes_speed`` compares them.

    Example:
        >>> import torch
        >>> from nondiff.optim.minimize import device_variant
        >>> device_variant("cmaes", torch.zeros(3))  # a CPU tensor keeps pycma
        'cmaes'
    """
    torch_name = TORCH_VARIANTS.get(optimizer)
    if torch_name is None or not isinstance(x0, torch.Tensor) or x0.device.type != "cuda":
        return optimizer
    if not set(options or {}) <= set(registry.options(torch_name)):
        return optimizer
    return torch_name


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
            A pycma CMA-ES name (``cmaes``, ``sep-cmaes`` and their ``ipop-``/``bipop-``
            variants) with a torch ``x0`` on a CUDA device runs the torch CMA-ES
            (``cmaes-torch``, ...: the same updates, on the GPU; see
            :func:`device_variant`).
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
            process, ``VectorizedEvaluator()`` (one call per batch) when
            ``vectorized``, else ``SerialEvaluator()`` (one call per point).

    Returns:
        A :class:`~nondiff.optim.base.Result`.

    Raises:
        ValueError: bad arguments, before any evaluation; among them a space whose every
            leaf is a constant (one allowed value, e.g. ``Categorical(["x"])``): there is
            nothing to search, so call ``fn(space.decode([]))`` directly. Constant leaves
            beside searched ones are fine: the result's ``x`` holds their values.
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive number of evaluations, got {budget!r}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) \
            or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if evaluator is not None and not isinstance(evaluator, Evaluator):
        raise ValueError(f"evaluator must be a nondiff.optim.evaluate.Evaluator (SerialEvaluator, "
                         f"VectorizedEvaluator, ProcessPoolEvaluator, RayEvaluator), "
                         f"got {evaluator!r}")
    callbacks = _check_run_arguments(fn, target, callbacks, checkpoint, evaluator)
    sign = -1.0 if maximize else 1.0
    saved = load_checkpoint(checkpoint) if checkpoint is not None else None
    if saved is not None and seed is None and not isinstance(optimizer, BaseOptimizer) \
            and "seed" not in (options or {}):
        seed = int(saved["optimizer"]["config"]["seed"])
    if constraints is None and isinstance(optimizer, str) and (
            saved is None or saved["optimizer"].get("optimizer") != optimizer):
        optimizer = device_variant(optimizer, x0, options)  # a checkpoint of `optimizer` resumes it
    opt = make_optimizer(optimizer, x0, sigma0, bounds, seed, options)
    space = opt.space
    if evaluator is None:
        evaluator = VectorizedEvaluator() if vectorized else SerialEvaluator()
    objective = _Decoded(fn, space) if space is not None and not vectorized else fn
    constraint = constraints
    if constraints is not None and space is not None and not vectorized:
        constraint = _Decoded(constraints, space)
    history: list[tuple[float, float]] = []
    stateful = _stateful(fn, evaluator)
    if saved is not None:
        opt.load_state_dict(saved["optimizer"])
        _restore_stateful(saved, stateful, checkpoint)
        history = [tuple(row) for row in saved["history"].tolist()]
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
            fitness = sign * evaluator(objective, candidates, vectorized=vectorized)
            g = None if constraint is None else evaluate_chunk(
                constraint, candidates, None, vectorized, multiple=True)[0]
            metrics = opt.tell(candidates, fitness, constraints=g)
            history.append((float(opt.counters["evaluations"]), sign * opt.best_f))
            if bar is not None:
                bar.update(len(fitness))
                bar.set_postfix(best=f"{sign * opt.best_f:.4g}", refresh=False)
            since_checkpoint += 1
            if checkpoint is not None and since_checkpoint >= checkpoint_every:
                save_checkpoint(checkpoint, opt, history, stateful)
                since_checkpoint = 0
            if any(cb(metrics, opt) is True for cb in callbacks):
                reasons = {"callback": True}
                break
    finally:
        if bar is not None:
            bar.close()
    if checkpoint is not None:
        save_checkpoint(checkpoint, opt, history, stateful)
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


def _check_run_arguments(fn: Any, target: Any, callbacks: Any, checkpoint: Any,
                         evaluator: Evaluator | None) -> list[Callback]:
    """Refuse, before any evaluation, what would otherwise fail (or mislead) later."""
    if not callable(fn):
        raise ValueError(f"fn must be callable (the objective), got {fn!r}")
    if target is not None and (isinstance(target, bool) or not isinstance(
            target, (int, float, np.integer, np.floating)) or math.isnan(target)):
        raise ValueError(f"target must be a number (the value at which to stop) or None, got "
                         f"{target!r}")
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        raise ValueError(f"callbacks must be a list of functions cb(metrics, optimizer), got "
                         f"{callbacks!r}")
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise ValueError(f"callbacks[{i}] must be a function cb(metrics, optimizer), got "
                             f"{cb!r}")
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise ValueError(f"checkpoint must be a file path, got {checkpoint!r}")
        checkpoint_files.check_writable(checkpoint)
    if evaluator is not None:
        evaluator.check_objective(fn)
    return callbacks


class _Decoded:
    """``fn`` of the decoded point (picklable, for evaluators in other processes)."""

    def __init__(self, fn: Callable[[Any], Any], space: Space) -> None:
        self.fn, self.space = fn, space

    def __call__(self, encoded: Array) -> Any:
        return self.fn(self.space.decode(encoded))


def _stateful(fn: Any, evaluator: Any) -> dict[str, Stateful]:
    """The objects besides the optimizer whose state a checkpoint holds: the objective
    (e.g. a ControlProblem's episode counter and observation statistics) and the
    evaluator, when they follow the :class:`~nondiff.optim.checkpoint.Stateful` protocol."""
    found = {"objective": fn, "evaluator": evaluator}
    return {key: obj for key, obj in found.items() if isinstance(obj, Stateful)}


def save_checkpoint(path: str | os.PathLike[str], opt: BaseOptimizer,
                    history: list[tuple[float, float]],
                    stateful: Mapping[str, Stateful] | None = None) -> None:
    """Write the run's state atomically, sealed with a checksum.

    Args:
        path: the file (replaced atomically: a crash mid-write keeps the old file).
        opt: the optimizer.
        history: ``(evaluations, best f)`` after each generation.
        stateful: further objects whose ``state_dict()`` the run depends on, by name
            (``minimize`` passes the objective and the evaluator when they have one).
    """
    payload = {
        "checkpoint_version": CHECKPOINT_VERSION,
        "optimizer": opt.state_dict(),
        "history": torch.tensor(history, dtype=torch.float64).reshape(-1, 2),
        "stateful": {key: obj.state_dict() for key, obj in (stateful or {}).items()},
    }
    checkpoint_files.write(path, payload)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read a checkpoint written by :func:`save_checkpoint` (None if absent).

    Only tensors, numbers, strings and containers are read
    (``torch.load(weights_only=True)``): no code is unpickled. The checksum is
    verified: a file altered after it was written is refused.

    Raises:
        ValueError: unreadable, corrupt (checksum mismatch), or not a checkpoint of
            this version; the message names the file.
    """
    path = Path(path)
    payload = checkpoint_files.read(path)
    if payload is None:
        return None
    if payload.get("checkpoint_version") != CHECKPOINT_VERSION \
            or set(payload) != {"checkpoint_version", "optimizer", "history", "stateful"}:
        raise ValueError(
            f"{str(path)!r} is not a nondiff checkpoint of version {CHECKPOINT_VERSION}; "
            "delete it to start afresh, or point checkpoint= at another file"
        )
    history = payload["history"]
    if not isinstance(history, torch.Tensor) or history.ndim != 2 or history.shape[1] != 2 \
            or history.dtype != torch.float64:
        raise ValueError(f"checkpoint {str(path)!r} has a malformed history (want (k, 2) "
                         "float64); delete it to start afresh")
    payload["history"] = history.numpy()
    return payload


def _restore_stateful(saved: Mapping[str, Any], stateful: Mapping[str, Stateful],
                      path: Any) -> None:
    """Load the saved states into the run's objects; both sides must name the same."""
    states = saved["stateful"]
    if set(states) != set(stateful):
        raise ValueError(
            f"checkpoint {str(path)!r} holds the state of {sorted(states) or 'nothing'} besides "
            f"the optimizer, this run has {sorted(stateful) or 'nothing'} with state; resume "
            "with the same kind of objective and evaluator, or delete the checkpoint")
    for key, obj in stateful.items():
        try:
            obj.load_state_dict(states[key])
        except (ValueError, KeyError, TypeError, RuntimeError) as error:  # RuntimeError: nn.Module
            raise ValueError(f"checkpoint {str(path)!r}: the saved state of the {key} does not "
                             f"fit it ({error})") from error
