"""Hybrid models: discrete structure trained by search, differentiable parts by gradient.

Structure declarations inside ordinary ``nn.Module``s (:mod:`nondiff.hybrid.structure`:
``Choice``, ``Gates``, ``Program``, integer and real hyperparameters) are searched by
any optimizer of :mod:`nondiff.optim` while the weights train by gradient
(:mod:`nondiff.hybrid.trainer`; the structures the shared weights train under, fair
paths first so no early pick is locked in: :mod:`nondiff.hybrid.sampling`). Across a
non-differentiable op, a learned critic of the downstream loss
(:mod:`nondiff.hybrid.critic`) or the straight-through / Gumbel-softmax / score-function
estimators (:mod:`nondiff.hybrid.estimators`) carry the gradient.

The decoupled engine: synthetic-gradient modules (DNI, cDNI) and local auxiliary
heads (:mod:`nondiff.hybrid.synthetic`), decoupled stacks of unchanged user modules with
hierarchical groups and a one-flag backprop baseline (:mod:`nondiff.hybrid.decoupled`), and
the same stacks across processes on torch.distributed (:mod:`nondiff.hybrid.parallel`),
one device per stage (:mod:`nondiff.hybrid.placement`) and several hosts through torchrun
(:mod:`nondiff.hybrid.groups`);
:mod:`nondiff.hybrid.split` cuts a network into stages of balanced cost.

Quantized weights (:mod:`nondiff.hybrid.quantize`): network-level ADMM
(:class:`ADMMQuantizer`, Leng et al. 2018) and the straight-through estimator onto
binary, ternary or k-bit sets.

Example:
    >>> from nondiff.hybrid import SIGNALS, Decoupled, Group, SyntheticGradient, fit_parallel
    >>> SIGNALS
    ('backprop', 'synthetic', 'synthetic-conditioned', 'local')
"""

from nondiff.hybrid.critic import LossCritic
from nondiff.hybrid.decoupled import SIGNALS, Decoupled, Group, default_optimizer
from nondiff.hybrid.estimators import (
    gumbel_softmax,
    sample_categorical,
    score_function_surrogate,
    straight_through_argmax,
    straight_through_round,
)
from nondiff.hybrid.nonfinite import ON_NONFINITE, NonFiniteError
from nondiff.hybrid.parallel import MODES, WorkerError, fit_parallel
from nondiff.hybrid.quantize import ADMMQuantizer, STEQuantize, level_set, quantized_layers
from nondiff.hybrid.split import balanced_split, mlp_blocks
from nondiff.hybrid.structure import (
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
from nondiff.hybrid.synthetic import AuxiliaryHead, SyntheticGradient, TruncatedDNI
from nondiff.hybrid.trainer import WEIGHT_STEPS, HybridTrainer

__all__ = [
    "MODES", "ON_NONFINITE", "SIGNALS", "WEIGHT_STEPS", "ADMMQuantizer", "AuxiliaryHead",
    "Choice", "Decoupled", "Gates", "Group", "HybridTrainer", "IntParam", "LossCritic",
    "NonFiniteError", "Program", "RealParam", "STEQuantize", "Structure", "StructureBatchError",
    "SyntheticGradient", "TruncatedDNI", "WorkerError", "balanced_split", "batched_structures",
    "default_optimizer", "fit_parallel", "get_structure", "gumbel_softmax", "level_set",
    "mlp_blocks", "named_structures", "quantized_layers", "sample_categorical",
    "score_function_surrogate", "set_structure", "set_structure_encoded",
    "straight_through_argmax", "straight_through_round", "structure_space",
]  # fmt: skip
