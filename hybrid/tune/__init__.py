"""AutoML: training runs searched with ASHA, median stopping and PBT.

:func:`tune` takes the user's training loop ``train(config, trial)`` and a space of
configs (learning rates, widths, depths, activations, optimizers: any mix of
:mod:`nondiff.optim.spaces` leaves). Any optimizer of the registry proposes configs
(ask/tell, :mod:`~nondiff.hybrid.tune.proposals`); a scheduler prunes or copies trials:

- :class:`ASHA` — asynchronous successive halving, Li et al., "A system for massively
  parallel hyperparameter tuning", MLSys 2020;
- :class:`MedianStopping` — the median stopping rule of Google Vizier, Golovin et al.,
  KDD 2017;
- :class:`PBT` — population-based training, Jaderberg et al., arXiv:1711.09846, 2017.

Trials run on threads, worker processes or Ray (:mod:`~nondiff.hybrid.tune.executors`);
every trial, report and checkpoint goes to SQLite as it happens
(:mod:`~nondiff.hybrid.tune.storage`), so a killed study resumes with the same call.
The result is a :class:`Study`. Also importable as ``nondiff.tune``.

Example:
    >>> from nondiff.hybrid.tune import tune
    >>> from nondiff.optim.spaces import Categorical, Real
    >>> def train(config, trial):
    ...     gain = {"relu": 1.0, "tanh": 0.8}[config["act"]]
    ...     for step in range(trial.step + 1, trial.max_steps + 1):
    ...         trial.report(step, gain * (1 - abs(config["dropout"] - 0.2)) * step / 10)
    ...         if trial.should_stop():
    ...             return
    >>> study = tune(train, {"act": Categorical(["relu", "tanh"]), "dropout": Real(0.0, 0.5)},
    ...              optimizer="reinforce", scheduler="median", budget=50, max_steps=5,
    ...              executor="inline")
    >>> study.best_config["act"], study.compute
    ('relu', 50)
"""

from .api import tune
from .schedulers import ASHA, FIFO, PBT, MedianStopping, Scheduler
from .study import Study, TrialRecord
from .trial import Trial, TrialUsageError

__all__ = ["ASHA", "FIFO", "PBT", "MedianStopping", "Scheduler", "Study", "Trial",
           "TrialRecord", "TrialUsageError", "tune"]
