"""``tune``: search the hyperparameters and architecture of a training run.

Hand over an ordinary torch training loop, ``train(config, trial)``, and a space of
configs; any optimizer of the registry proposes configs by ask/tell, a scheduler
stops unpromising trials early (ASHA, median stopping) or trains a population that
copies its best members (PBT), trials run in parallel on threads, processes or Ray,
and every trial, report and checkpoint goes to SQLite as it happens, so a study
killed at any moment resumes with the same command.

See :func:`tune` for the arguments; the modules of :mod:`nondiff.hybrid.tune` for the
parts (schedulers, storage, executors, how pruned trials inform the optimizer).

Example:
    >>> from nondiff.hybrid.tune.api import tune
    >>> from nondiff.optim.spaces import Integer, Real
    >>> def train(config, trial):  # a stand-in for a torch loop: accuracy rises with steps
    ...     for step in range(trial.step + 1, trial.max_steps + 1):
    ...         acc = 1 - (config["lr"] - 0.1) ** 2 - 0.01 * abs(config["width"] - 32) / step
    ...         trial.report(step, acc)
    ...         if trial.should_stop():
    ...             return
    >>> study = tune(train, {"lr": Real(1e-3, 1.0, log=True), "width": Integer(8, 64)},
    ...              optimizer="cmaes", scheduler="asha", budget=60, max_steps=9,
    ...              executor="inline", seed=0)
    >>> study.compute <= 60, len(study.trials) > 60 // 9
    (True, True)
    >>> {t.state for t in study.trials} <= {"complete", "pruned"}
    True
"""

from __future__ import annotations

import json
import numbers
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from nondiff.optim import registry
from nondiff.optim.base import BaseOptimizer
from nondiff.optim.minimize import TORCH_VARIANTS, make_optimizer
from nondiff.optim.spaces import Product, Space, leaf_kinds

from .driver import Driver
from .executors import EXECUTORS, check_picklable, make_executor
from .schedulers import Scheduler, make_scheduler
from .space import Grid, study_space
from .storage import Storage
from .study import Study
from .trial import Trial

__all__ = ["tune"]

MODES = ("max", "min")


def _positive_int(name: str, value: Any, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; {fix}")
    return int(value)


def tune(
    train: Callable[[dict[str, Any], Trial], float | None],
    space: Mapping[str, Any] | Space,
    *,
    optimizer: str | BaseOptimizer = "cmaes",
    scheduler: str | Scheduler | None = "asha",
    budget: int = 200,
    max_steps: int = 20,
    mode: str = "max",
    parallel: int = 1,
    executor: str = "process",
    storage: str | os.PathLike[str] | None = None,
    study_name: str = "default",
    seed: int = 0,
) -> Study:
    """Search configs of ``train`` under a budget of training steps.

    Args:
        train: ``train(config, trial)``, the user's training loop: it builds the model
            from ``config`` (a dict named as ``space``), starts from ``trial.restore()``
            when that is not None (and counts steps from ``trial.step``), and after every
            step (e.g. epoch) calls ``trial.report(step, metric)``, then
            ``trial.checkpoint(state)`` (needed to resume after a crash and by PBT),
            and returns when ``trial.should_stop()``. A returned number is kept as the
            trial's ``result`` (e.g. a test metric); the search uses the reports.
        space: a dict ``name -> leaf`` (``Real(low, high, log=True)``, ``Integer``,
            ``Categorical``, ... of :mod:`nondiff.optim.spaces`; a nested dict or a
            ``Product`` for a group, e.g. the branches of a conditional choice) or a
            ``Product`` of named leaves.
        optimizer: a registry name (``"cmaes"``, ``"reinforce"``, ``"ga"``, ...) built on
            the space with ``seed``, or an optimizer instance built on this space; it
            proposes configs by ask and learns from finished trials by tell (see
            :mod:`nondiff.hybrid.tune.proposals`). Optimizers of discrete spaces
            (``ga``) search each real leaf on a grid of 16 points
            (:class:`~nondiff.hybrid.tune.space.Grid`).
        scheduler: ``"asha"`` (:class:`~nondiff.hybrid.tune.schedulers.ASHA`, eta 3),
            ``"median"`` (:class:`~nondiff.hybrid.tune.schedulers.MedianStopping`),
            ``"pbt"`` (:class:`~nondiff.hybrid.tune.schedulers.PBT`), None (every trial
            runs to its end) or a scheduler instance.
        budget: training steps (reports) summed over all trials; no trial starts once
            it is spent, and running trials stop at their next report (so it is exceeded
            by at most ``parallel - 1`` steps).
        max_steps: steps of one full trial (the last step a trial reports); rungs and
            PBT intervals derive from it.
        mode: ``"max"`` or ``"min"``: whether a larger metric is better.
        parallel: trials at a time.
        executor: ``"process"`` (worker processes; ``train`` must be a top-level
            function), ``"ray"`` (Ray actors of one CPU each: the cluster needs
            ``parallel`` CPUs) or ``"inline"`` (threads of this process).
        storage: a ``.sqlite`` file: every trial, report and checkpoint is written as it
            happens, and the same call resumes a study that was interrupted (even by
            SIGKILL), losing at most the steps in flight. None: in memory only.
        study_name: the study inside ``storage`` (one file holds several).
        seed: seeds the optimizer and the scheduler's draws.

    Returns:
        The :class:`~nondiff.hybrid.tune.study.Study`: ``best_config``,
        ``best_metric``, every trial with its curve, ``compute``, ``best_curve()``,
        ``plot(path)``, ``summary()``.

    Raises:
        ValueError: bad arguments, before any trial runs (each names the argument, the
            value and the fix); a stored study of the same name with other settings;
            a ``train`` that never reports, or misuses its trial (after that trial).
            A trial that raises is recorded as ``failed`` with its traceback and the
            study goes on.
    """
    if not callable(train):
        raise ValueError(f"train must be a function train(config, trial), got {train!r:.80}")
    space = study_space(space)
    budget = _positive_int("budget", budget, "the training steps (reports) summed over trials")
    max_steps = _positive_int("max_steps", max_steps, "the steps (e.g. epochs) of one full "
                              "trial")
    if budget < max_steps:
        raise ValueError(f"budget={budget} is less than max_steps={max_steps}: not one trial "
                         f"could train to the end; raise budget (e.g. to {10 * max_steps}) or "
                         "lower max_steps")
    if mode not in MODES:
        raise ValueError(f"mode must be 'max' (larger metric is better) or 'min', got {mode!r}")
    parallel = _positive_int("parallel", parallel, "the number of trials run at a time")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(map(repr, EXECUTORS))}, got "
                         f"{executor!r}")
    if not isinstance(study_name, str) or not study_name:
        raise ValueError(f"study_name must be a non-empty string, got {study_name!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if storage is not None and not isinstance(storage, (str, os.PathLike)):
        raise ValueError(f"storage must be a path to a .sqlite file or None, got {storage!r}")
    if executor == "process":
        check_picklable(train)
    opt, grid = _optimizer(optimizer, space, int(seed))
    sched = make_scheduler(scheduler)
    sched.bind(max_steps, mode, space=space, seed=int(seed), popsize=opt.popsize)
    settings = {"space": _stable(repr(space)), "optimizer": _stable(f"{opt.name} {_config(opt)}"),
                "scheduler": sched.settings(), "max_steps": max_steps, "mode": mode,
                "seed": int(seed)}
    store = Storage(storage, study_name)
    try:
        _check_settings(store, settings, study_name)
        driver = Driver(space=space, optimizer=opt, scheduler=sched, storage=store,
                        executor_factory=lambda: make_executor(executor, train, parallel),
                        budget=budget, max_steps=max_steps, mode=mode, parallel=parallel,
                        name=study_name, to_space=grid.to_space if grid is not None else None)
        driver.restore()
        store.save_settings(settings)
        return driver.run()
    finally:
        store.close()


def _optimizer(optimizer: Any, space: Product, seed: int) -> tuple[BaseOptimizer, Grid | None]:
    """The optimizer, and the grid it searches when it handles no real leaves."""
    needs_grid = "real" in leaf_kinds(space)
    if isinstance(optimizer, BaseOptimizer):
        grid = Grid(space) if needs_grid and "real" not in optimizer.supported_spaces else None
        target = grid.space if grid is not None else space
        if optimizer.space is None or repr(optimizer.space) != repr(target):
            raise ValueError(
                f"optimizer={optimizer.name} was built on {optimizer.space!r}, not on the "
                f"study's space {target!r}; build it on the same space (e.g. "
                f"nondiff.optim.registry.create({optimizer.name!r}, space, seed=0)) or pass "
                "its name")
        return optimizer, grid
    if not isinstance(optimizer, str):
        raise ValueError(f"optimizer must be a registry name ('cmaes', 'reinforce', 'ga', ...) "
                         f"or an optimizer instance, got {optimizer!r:.80}")
    cls = registry.get(optimizer)  # an unknown name: a ValueError with the close ones
    if optimizer in TORCH_VARIANTS and space.size == 1 and leaf_kinds(space) == {"real"}:
        optimizer = TORCH_VARIANTS[optimizer]  # pycma cannot search one bounded real
        cls = registry.get(optimizer)
    grid = Grid(space) if needs_grid and "real" not in cls.supported_spaces else None
    return make_optimizer(optimizer, grid.space if grid is not None else space, seed=seed), grid


def _stable(text: str) -> str:
    """``text`` without memory addresses (``<function f at 0x7f..>``: another in every
    process), so the same call compares equal to the settings it stored."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _config(opt: BaseOptimizer) -> str:
    config = {k: (v if isinstance(v, (str, int, float, bool, type(None))) else repr(v))
              for k, v in opt.config().items()}
    return json.dumps(config, sort_keys=True, default=str)


def _check_settings(store: Storage, settings: dict[str, Any], name: str) -> None:
    saved = store.settings()
    if saved is None:
        return
    differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
    if differ:
        detail = "; ".join(f"{k}: stored {saved.get(k)!r}, now {settings.get(k)!r}"
                           for k in differ)
        raise ValueError(f"storage={store.path!r} holds a study {name!r} with other settings "
                         f"({detail}); resume with the same arguments (budget may change), or "
                         "pass another study_name or storage file")
