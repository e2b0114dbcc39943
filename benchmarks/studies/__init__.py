"""One-off studies, apart from the suite engine and the named comparison benchmarks.

Each module answers one question with a table and runs by name, ``python -m
nondiff.benchmarks.studies.<name>``:

- ``reinforce_variance``: REINFORCE gradient variance by baseline;
- ``mixed_space``: CMA-ES vs REINFORCE vs GA on a mixed integer/real/categorical space;
- ``miqp``: ADMM vs brute force vs relax-and-round on mixed-integer quadratic programs;
- ``layerwise_admm``: gradient-free layer-wise ADMM (Taylor et al. 2016) vs SGD/Adam;
- ``admm_quantized``: float vs ADMM vs straight-through binary/ternary networks;
- ``tune_clones``: ``tune`` with ``one-plus-lambda`` (clones told, not retrained) vs
  random search on a tiny torch regression;
- ``relaxation``: real-vector optimizers on discrete spaces through the relaxation;
- ``binary_code``: the compact GA on integer/categorical/permutation spaces through the
  binary code.

A module with several studies runs them by name through :func:`run_studies`.

Example:
    >>> import importlib
    >>> study = importlib.import_module("nondiff.benchmarks.studies.miqp")
    >>> callable(study.main)
    True
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Mapping

import torch

__all__ = ["run_studies"]


def run_studies(studies: Mapping[str, Callable[[int], None]], description: str,
                argv: list[str] | None = None, seeds: int = 5) -> None:
    """Parse ``argv`` (study names, default all; ``--seeds``, default ``seeds``), print
    the machine, run each named study with the seed count, and print the total time."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("studies", nargs="*", choices=[*studies, []], default=None)
    parser.add_argument("--seeds", type=int, default=seeds)
    args = parser.parse_args(argv)
    print(f"{platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s); {args.seeds} seeds")
    start = time.perf_counter()
    for name in args.studies or list(studies):
        studies[name](args.seeds)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
