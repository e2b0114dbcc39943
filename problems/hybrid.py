"""Hybrid tasks that need both halves: search for the discrete part, gradients for the rest.

All on offline data (scikit-learn's digits, generated MNIST-1D); one module each:

- :mod:`nondiff.problems.hybrid_arithmetic` — digit arithmetic through a hard argmax: only the
  exact sum of two digit images is labeled (REINFORCE, learned critic,
  straight-through, Gumbel-softmax and ES compared);
- :mod:`nondiff.problems.hybrid_architecture` — architecture and weights together (ENAS-style
  per-layer op and width choices with shared weights, searched by any optimizer);
- :mod:`nondiff.problems.hybrid_programs` — visual program induction: an unknown DSL program
  over perceived digits, searched while the perception trains from outputs alone.

``python -m nondiff.benchmarks.hybrid_tasks`` runs all three side by side over seeds.

Example:
    >>> from nondiff.problems.hybrid import METHODS, TARGETS, SearchNet
    >>> METHODS
    ('reinforce', 'critic', 'straight-through', 'gumbel', 'es')
    >>> TARGETS[0]
    ('sort', 'reverse')
"""

from nondiff.problems.hybrid_architecture import (
    SearchNet,
    best_fixed,
    random_search,
    retrain,
    search,
)
from nondiff.problems.hybrid_arithmetic import (
    METHODS,
    DigitArithmetic,
    perception_net,
    train_arithmetic,
)
from nondiff.problems.hybrid_programs import DSL, TARGETS, ProgramModel, run_program, train_programs

__all__ = [
    "DSL", "METHODS", "TARGETS", "DigitArithmetic", "ProgramModel", "SearchNet", "best_fixed",
    "perception_net", "random_search", "retrain", "run_program", "search", "train_arithmetic",
    "train_programs",
]  # fmt: skip
