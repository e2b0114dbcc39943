"""``nondiff.tune``: AutoML for training runs (ASHA, median stopping, PBT), by name.

This module is :mod:`nondiff.hybrid.tune` under a short name, and it is callable:
``nondiff.tune(train, space, ...)`` is :func:`nondiff.hybrid.tune.api.tune`, so
``from nondiff import tune`` and ``from nondiff.tune import tune, Study, ASHA`` both
work and ``nondiff.tune.Study`` stays reachable (a plain function re-exported under
the module's name would hide the module).

Example:
    >>> import nondiff
    >>> from nondiff.tune import ASHA, PBT, MedianStopping, Study, Trial, tune
    >>> tune is nondiff.tune.tune, callable(nondiff.tune)
    (True, True)
    >>> study = nondiff.tune(lambda config, trial: trial.report(1, -config["x"] ** 2),
    ...                      {"x": nondiff.spaces.Real(-1.0, 1.0)}, scheduler=None,
    ...                      budget=20, max_steps=1, executor="inline")
    >>> len(study.trials), round(study.best_metric, 1)
    (20, -0.0)
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

from nondiff.hybrid.tune import (
    ASHA,
    FIFO,
    PBT,
    MedianStopping,
    Scheduler,
    Study,
    Trial,
    TrialRecord,
    TrialUsageError,
    tune,
)

__all__ = ["ASHA", "FIFO", "PBT", "MedianStopping", "Scheduler", "Study", "Trial",
           "TrialRecord", "TrialUsageError", "tune"]


class _CallableModule(types.ModuleType):
    """This module's type: calling it calls :func:`tune`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Study:
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
__signature__ = inspect.signature(tune)
