"""Two pycma components with their side effects removed, for :mod:`nondiff.optim.cmaes`.

Imported on first use through :mod:`~nondiff.optim.backends.pycma_options` (which names
them, so snapshots and pickles keep the path ``nondiff.optim.backends.pycma_options``):
importing pycma takes 1.5 s. Reference: N. Hansen et al., pycma,
https://github.com/CMA-ES/pycma.

Example:
    >>> from nondiff.optim.backends import pycma_options
    >>> pycma_options.QuietTPA.__module__
    'nondiff.optim.backends.pycma_options'
"""

from __future__ import annotations

from typing import Any

import cma
from cma.sigma_adaptation import CMAAdaptSigmaTPA

__all__ = ["QuietAL", "QuietTPA"]

PUBLIC_MODULE = __name__.rsplit(".", 1)[0] + ".pycma_options"
"""The module that names these classes (in snapshots, pickles and error messages)."""


class QuietTPA(CMAAdaptSigmaTPA):
    """pycma's TPA step-size adaptation (used from dimension 300 on) without its
    debugging self-check, which draws indices from the global ``np.random`` and
    changes nothing else."""

    def check_consistency(self, es: Any) -> None:
        return None


class QuietAL(cma.constraints_handler.AugmentedLagrangian):
    """pycma's augmented Lagrangian without its data loggers: constructing them
    creates the directory ``./outcmaes`` and records absolute paths, even when
    logging is off afterwards. Nothing else differs (``logging = 0`` is pycma's
    own switch; ``_init_`` is its logger setup)."""

    def _init_(self) -> None:
        self.logging = 0
        self.logger_mu_conditions = None
        super()._init_()  # with logging 0: an empty logger list


QuietTPA.__module__ = QuietAL.__module__ = PUBLIC_MODULE
