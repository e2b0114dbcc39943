"""Optimizers for objectives that gradients cannot reach, behind one ask/tell protocol.

Example:
    >>> import numpy as np
    >>> from optim import minimize
    >>> res = minimize(lambda x: float((x**2).sum()), np.ones(3), optimizer="snes",
    ...                budget=2000, seed=0)
    >>> bool(res.f < 1e-6)
    True
"""

from . import registry
from .base import BaseOptimizer, Optimizer, Result
from .minimize import evaluate, load_checkpoint, minimize, save_checkpoint

__all__ = [
    "BaseOptimizer",
    "Optimizer",
    "Result",
    "evaluate",
    "load_checkpoint",
    "minimize",
    "registry",
    "save_checkpoint",
]
