"""nondiff: train models that are not differentiable end to end.

Search optimizers behind one ask/tell protocol (:mod:`nondiff.optim`), hybrid models
whose discrete structure is searched while their weights train by gradient
(:mod:`nondiff.hybrid`), problems (:mod:`nondiff.problems`) and comparison benchmarks
(:mod:`nondiff.benchmarks`). The everyday names are re-exported here.

Example:
    >>> import numpy as np
    >>> import nondiff
    >>> res = nondiff.minimize(lambda x: float((x**2).sum()), np.ones(3),
    ...                        optimizer="snes", budget=2000, seed=0)
    >>> bool(res.f < 1e-6)
    True
    >>> space = nondiff.spaces.Product(op=nondiff.spaces.Categorical(["a", "b"]))
    >>> "reinforce" in nondiff.registry.names()
    True
"""

import os

__version__ = "0.1.0"

# Intel MKL (the BLAS of torch's x86 builds) picks kernels by memory alignment, so the
# same matrix product can differ in the last bit between a tensor made here and one
# unpickled in a worker or loaded from a checkpoint. Strict conditional numerical
# reproducibility (MKL_CBWR) keeps the fastest instruction set and removes that
# dependence, which nondiff's bit-for-bit resumes and its multi-process sync mode need.
# Read by MKL at its first call: a value the user set, or a call made before importing
# nondiff, wins.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from nondiff import hybrid, optim, problems, tune  # tune: a callable module
from nondiff.hybrid import (
    Choice,
    Decoupled,
    Gates,
    Group,
    HybridTrainer,
    IntParam,
    LossCritic,
    Program,
    RealParam,
    fit_parallel,
    set_structure,
    structure_space,
)
from nondiff.optim import (
    Result,
    load_checkpoint,
    minimize,
    registry,
    save_checkpoint,
    spaces,
)
from nondiff.tensorboard import TensorBoard

__all__ = [
    "Choice", "Decoupled", "Gates", "Group", "HybridTrainer", "IntParam", "LossCritic",
    "Program", "RealParam", "Result", "TensorBoard", "__version__", "fit_parallel", "hybrid",
    "load_checkpoint", "minimize", "optim", "problems", "registry", "save_checkpoint",
    "set_structure", "spaces", "structure_space", "tune",
]  # fmt: skip
