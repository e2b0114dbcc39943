"""Hybrid tasks that need both halves: search for the discrete part, gradients for the rest.

All on offline data (scikit-learn's digits, generated MNIST-1D); one module each, with
the data, the model pieces, the known structure and the evaluation:

- :mod:`nondiff.problems.hybrid.arithmetic` — digit arithmetic through a hard argmax:
  only the exact sum of two digit images is labeled;
- :mod:`nondiff.problems.hybrid.architecture` — architecture and weights together
  (ENAS-style per-layer op and width choices with shared weights);
- :mod:`nondiff.problems.hybrid.programs` — visual program induction: an unknown DSL
  program over perceived digits, to be found while the perception trains from
  outputs alone;
- :mod:`nondiff.problems.hybrid.acceptance` — small generated tasks whose right
  structure is known (relevant inputs, the needed nonlinearity, an op graph): the
  acceptance suite of structure search (``python -m
  nondiff.benchmarks.hybrid_tasks.acceptance``).
- :mod:`nondiff.problems.hybrid.acceptance_checks` — check tasks outside that suite,
  written after its methods (budgets and labels it does not have).

The experiments that train and compare methods on them are
:mod:`nondiff.benchmarks.hybrid_tasks` (``python -m nondiff.benchmarks.hybrid_tasks``
runs all three side by side over seeds).

Example:
    >>> from nondiff.problems.hybrid import TARGETS, DigitArithmetic, SearchNet
    >>> TARGETS[0]
    ('sort', 'reverse')
    >>> len(SearchNet().layers)
    3
"""

from nondiff.problems.hybrid.architecture import SearchNet, error_rate, search_split
from nondiff.problems.hybrid.arithmetic import (
    DigitArithmetic,
    pair_loss,
    perception_net,
    relaxed_pair_loss,
)
from nondiff.problems.hybrid.programs import (
    DSL,
    TARGETS,
    ProgramModel,
    Sequences,
    mismatch,
    run_program,
)

__all__ = [
    "DSL", "TARGETS", "DigitArithmetic", "ProgramModel", "SearchNet", "Sequences",
    "error_rate", "mismatch", "pair_loss", "perception_net", "relaxed_pair_loss",
    "run_program", "search_split",
]  # fmt: skip
