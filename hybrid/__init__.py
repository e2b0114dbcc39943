"""Hybrid models: discrete structure trained by search, differentiable parts by gradient.

Structure declarations inside ordinary ``nn.Module``s (:mod:`hybrid.structure`:
``Choice``, ``Gates``, ``Program``, integer and real hyperparameters) are searched by
any optimizer of :mod:`optim` while the weights train by gradient
(:mod:`hybrid.trainer`). Across a non-differentiable op, a learned critic of the
downstream loss (:mod:`hybrid.critic`) or the straight-through / Gumbel-softmax /
score-function estimators (:mod:`hybrid.estimators`) carry the gradient.

The decoupled engine: synthetic-gradient modules (DNI, cDNI) and local auxiliary
heads (:mod:`hybrid.synthetic`), decoupled stacks of unchanged user modules with
hierarchical groups and a one-flag backprop baseline (:mod:`hybrid.decoupled`), and
the same stacks across processes on torch.distributed (:mod:`hybrid.parallel`).

Example:
    >>> from hybrid import SIGNALS, Decoupled, Group, SyntheticGradient, fit_parallel
    >>> SIGNALS
    ('backprop', 'synthetic', 'synthetic-conditioned', 'local')
"""

from hybrid.critic import LossCritic
from hybrid.decoupled import SIGNALS, Decoupled, Group, default_optimizer
from hybrid.estimators import (
    gumbel_softmax,
    sample_categorical,
    score_function_surrogate,
    straight_through_argmax,
    straight_through_round,
)
from hybrid.parallel import MODES, WorkerError, fit_parallel
from hybrid.structure import (
    Choice,
    Gates,
    IntParam,
    Program,
    RealParam,
    Structure,
    StructureBatchError,
    batched_structures,
    get_structure,
    named_structures,
    set_structure,
    set_structure_encoded,
    structure_space,
)
from hybrid.synthetic import AuxiliaryHead, SyntheticGradient, TruncatedDNI
from hybrid.trainer import WEIGHT_STEPS, HybridTrainer

__all__ = [
    "MODES", "SIGNALS", "WEIGHT_STEPS", "AuxiliaryHead", "Choice", "Decoupled", "Gates",
    "Group", "HybridTrainer", "IntParam", "LossCritic", "Program", "RealParam", "Structure",
    "StructureBatchError", "SyntheticGradient", "TruncatedDNI", "WorkerError",
    "batched_structures", "default_optimizer", "fit_parallel", "get_structure",
    "gumbel_softmax", "named_structures", "sample_categorical", "score_function_surrogate",
    "set_structure", "set_structure_encoded", "straight_through_argmax",
    "straight_through_round", "structure_space",
]  # fmt: skip
