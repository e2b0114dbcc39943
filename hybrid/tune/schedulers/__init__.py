"""Schedulers of a study: when to stop, pause or copy trials.

:class:`ASHA` (asynchronous successive halving, Li et al. 2020), :class:`MedianStopping`
(Golovin et al. 2017) and :class:`PBT` (population-based training, Jaderberg et al.
2017); :class:`FIFO` runs every trial to its end. :func:`make_scheduler` turns the
``scheduler=`` argument of :func:`~nondiff.hybrid.tune.api.tune` into one.

Example:
    >>> from nondiff.hybrid.tune.schedulers import make_scheduler
    >>> make_scheduler("asha"), make_scheduler(None)
    (ASHA(eta=3, min_resource=1), FIFO())
"""

from __future__ import annotations

from typing import Any

from nondiff.optim.registry import unknown_name_error

from .asha import ASHA
from .base import FIFO, NEW, WAIT, Exploit, Resume, Scheduler
from .median import MedianStopping
from .pbt import PBT

__all__ = ["ASHA", "FIFO", "NEW", "PBT", "WAIT", "Exploit", "MedianStopping", "Resume",
           "Scheduler", "make_scheduler"]

SCHEDULERS = {"asha": ASHA, "median": MedianStopping, "pbt": PBT}


def make_scheduler(scheduler: Any) -> Scheduler:
    """A scheduler from a name (``"asha"``, ``"median"``, ``"pbt"``), None (run every
    trial to its end) or an instance (returned as is)."""
    if scheduler is None:
        return FIFO()
    if isinstance(scheduler, Scheduler):
        return scheduler
    if isinstance(scheduler, str):
        if scheduler not in SCHEDULERS:
            raise unknown_name_error("scheduler", scheduler, [*SCHEDULERS, "None"])
        return SCHEDULERS[scheduler]()
    raise ValueError(f"scheduler must be 'asha', 'median', 'pbt', None or a Scheduler instance "
                     f"(ASHA(eta=3), MedianStopping(), PBT(interval=4)), got {scheduler!r}")
