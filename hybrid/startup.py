"""How the worker processes of :func:`~nondiff.hybrid.parallel.fit_parallel` start.

A worker that starts as a fresh interpreter (``"spawn"``, ``"forkserver"``) used to train
several times slower than a forked one (issue 18). Measured on the 16 x 128 MLP
(batch 64, two stages, one thread each, 2-core machine): the steps themselves run at
the same speed in the parent and in forked, forkserver and spawned processes (per
stage step: forward 0.25-0.33 ms, backward 0.48-0.56 ms, fused Adam 0.12-0.19 ms, no
trend by start method). What differed is a one-off cost in the first step: every
method of ``torch.optim.Optimizer`` (``zero_grad``, ``step``) is wrapped by
``torch._disable_dynamo``, which imports ``torch._dynamo`` at its first call, 1.2-2.8 s
on that machine and 7-8 s when it is overloaded, paid inside the timed loop while the
neighbouring stages wait. A forked worker inherits the import from a parent that has
trained before. Ruled out by measurement: the thread settings (the same under every
start method), flush-to-zero of denormals (off in all of them), and MKL's
conditional numerical reproducibility (``MKL_CBWR``, which :mod:`nondiff` sets before
torch's first MKL call, so parent and workers agree; ``AUTO,STRICT`` and ``AUTO`` cost
the same CPU time per step there). No worker thread or process is started by the
import.

:func:`prepare_worker` runs first in every worker: it sets the thread count and makes
those lazy first calls (``zero_grad`` on every optimizer of the stage, a no-op on the
freshly unpickled parameters, whose gradients are ``None``) before the workers'
start-up barrier, so the training loop of a spawned worker runs as fast as a forked
one (first step 5-20 ms instead of seconds). Start-up itself still differs: a
forked worker is ready at once, a spawned or forkserver one imports torch and
nondiff first (both took the same 25-45 s for two workers on the overloaded 2-core
machine, a few seconds on an idle one). :func:`default_start_method` picks a safe way
to start them.

Example:
    >>> import torch
    >>> from nondiff.hybrid.stage import Stage
    >>> from nondiff.hybrid.startup import default_start_method, optimizers_of, prepare_worker
    >>> default_start_method() in ("forkserver", "spawn")
    True
    >>> stage = Stage(torch.nn.Linear(3, 2), None, "local", 2)
    >>> stage.optimizer = torch.optim.Adam(stage.block.parameters())
    >>> len(optimizers_of(stage))
    1
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.multiprocessing as mp

__all__ = ["default_start_method", "optimizers_of", "prepare_worker"]


def default_start_method() -> str:
    """``"forkserver"`` where the platform offers it (POSIX), else ``"spawn"``.

    Both start a worker from a clean process, which is safe after the parent has run
    autograd, threads or CUDA (``"fork"`` is not: with a CUDA build of torch it fails
    with "Unable to handle autograd's threading in combination with fork-based
    multiprocessing", and forking a process that holds threads can deadlock). Once
    :func:`prepare_worker` has made the lazy first calls before the start-up barrier,
    their workers train as fast as forked ones, and they start in the same time
    (each imports torch and nondiff); forkserver is also what Python 3.14 made the
    POSIX default.
    """
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def optimizers_of(stage: Any) -> list[torch.optim.Optimizer]:
    """Every optimizer a stage owns: its block's (or, for a nested stack, its inner
    stages'), its synthesizer's and its local head's."""
    found: list[torch.optim.Optimizer] = []
    inner = getattr(stage.block, "stages", None)
    if inner is not None:  # a nested Decoupled stack
        for sub in inner:
            found += optimizers_of(sub)
    found += [o for o in (stage.optimizer, stage.synth_optimizer, stage.head_optimizer)
              if o is not None]
    return found


def prepare_worker(stage: Any, threads: int) -> None:
    """Set up a worker before it trains ``stage``: ``threads`` torch threads (intra-op;
    also exported as ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` for libraries the
    stage may start later), then the lazy first calls that would otherwise land in
    the first training step (see the module docstring). Changes no parameter, state
    or random number stream."""
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    for optimizer in optimizers_of(stage):
        optimizer.zero_grad()  # the first call imports torch._dynamo (1-3 s)
