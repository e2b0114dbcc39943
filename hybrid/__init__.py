"""Hybrid models: discrete structure trained by search, differentiable parts by gradient.

The decoupled engine lives here: synthetic-gradient modules (DNI, cDNI) and local
auxiliary heads (:mod:`hybrid.synthetic`), decoupled stacks of unchanged user modules
with hierarchical groups and a one-flag backprop baseline (:mod:`hybrid.decoupled`),
and the same stacks across processes on torch.distributed (:mod:`hybrid.parallel`).

Example:
    >>> from hybrid import SIGNALS, Decoupled, Group, SyntheticGradient, fit_parallel
    >>> SIGNALS
    ('backprop', 'synthetic', 'synthetic-conditioned', 'local')
"""

from hybrid.decoupled import SIGNALS, Decoupled, Group, default_optimizer
from hybrid.parallel import MODES, WorkerError, fit_parallel
from hybrid.synthetic import AuxiliaryHead, SyntheticGradient, TruncatedDNI

__all__ = [
    "MODES", "SIGNALS", "AuxiliaryHead", "Decoupled", "Group", "SyntheticGradient",
    "TruncatedDNI", "WorkerError", "default_optimizer", "fit_parallel",
]  # fmt: skip
