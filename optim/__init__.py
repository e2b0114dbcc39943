"""Optimizers for objectives that gradients cannot reach, behind one ask/tell protocol.

Example:
    >>> import numpy as np
    >>> from nondiff.optim import minimize
    >>> res = minimize(lambda x: float((x**2).sum()), np.ones(3), optimizer="snes",
    ...                budget=2000, seed=0)
    >>> bool(res.f < 1e-6)
    True
"""

from . import registry, spaces
from .admm import ADMM
from .base import BaseOptimizer, Optimizer, Result
from .binary_code import BinaryCoded
from .cem import CEM
from .cmaes import CMAES, SepCMAES
from .cmaes_torch import CMAESTorch, SepCMAESTorch
from .compact_ga import CompactGA
from .es import PGPE, OpenAIES
from .evaluate import (
    Evaluator,
    ProcessPoolEvaluator,
    RayEvaluator,
    SerialEvaluator,
    VectorizedEvaluator,
)
from .ga import GeneticAlgorithm, OnePlusLambdaEA
from .minimize import load_checkpoint, minimize, save_checkpoint
from .nes import SNES, XNES
from .reinforce import REINFORCE
from .relaxed import Relaxed
from .restarts import BIPOPCMAES, IPOPCMAES, VARIANTS, Restarts

for _cls in (CMAES, SepCMAES, OpenAIES, SNES, XNES, PGPE, CEM,
             REINFORCE, GeneticAlgorithm, OnePlusLambdaEA, CompactGA, *VARIANTS,
             CMAESTorch, SepCMAESTorch):
    registry.register(_cls)
del _cls

__all__ = [
    "ADMM",
    "BIPOPCMAES",
    "CEM",
    "CMAES",
    "IPOPCMAES",
    "PGPE",
    "REINFORCE",
    "SNES",
    "XNES",
    "BaseOptimizer",
    "BinaryCoded",
    "CMAESTorch",
    "CompactGA",
    "Evaluator",
    "GeneticAlgorithm",
    "OnePlusLambdaEA",
    "OpenAIES",
    "Optimizer",
    "ProcessPoolEvaluator",
    "RayEvaluator",
    "Relaxed",
    "Restarts",
    "Result",
    "SepCMAES",
    "SepCMAESTorch",
    "SerialEvaluator",
    "VectorizedEvaluator",
    "load_checkpoint",
    "minimize",
    "registry",
    "save_checkpoint",
    "spaces",
]
