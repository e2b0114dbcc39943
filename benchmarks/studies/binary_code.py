"""Discrete spaces through the binary code of ``nondiff.optim.binary_code`` (the cGA).

Two measurements at equal budgets and seeds (no timings: quality only):

1. ``even``: how evenly a uniform bit string (the cGA's first generation) draws the
   values: the largest ``|frequency - 1/k|`` over the values, exactly (every code
   enumerated), for Integer/Categorical with k = 3, 5, 6, 10 and ``extra_bits`` 0, 1, 2;
   and the total-variation distance of Permutation(n), n = 3, 4, 5, from uniform
   (sampled, 200000 strings; ties go by index, so fewer key bits favour the identity).
2. ``converge``: the cGA through the code, Gray vs plain binary and ``extra_bits``
   0 / 1 / 2, on tasks with a known optimum: integers (6 in 0..9, the distance
   ``sum |x - t|``, OneMax-like with an order), a categorical lookup (8 entries of 5
   choices, the number of wrong entries), and a permutation of 6 (the number of items
   out of place). Per cell: optima found in ``seeds`` runs, and the mean evaluations
   to the optimum over the runs that found it (budget 6000).

    OMP_NUM_THREADS=1 nice -n 10 python -m nondiff.benchmarks.studies.binary_code \\
        [even converge] [--seeds 10]

Measured (30 seeds, 2 shared cores, 109 s): (1) at ``extra_bits`` 0 / 1 / 2 the
largest deviation is 0.167 / 0.083 / 0.042 for k = 3 and 0.038 / 0.025 / 0.009 for
k = 10; Permutation(4)'s distance from uniform 0.144 / 0.071 / 0.036. (2) Gray codes
find every integer optimum (30/30 at every ``extra_bits``; plain binary 23, 19, 19 of
30: the Hamming cliffs), and ``extra_bits=1`` is the fastest on integers (363
evaluations) and the categorical lookup (193); permutations: 29-30 of 30 everywhere.
Hence the defaults ``code="gray"``, ``extra_bits=1``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from nondiff.benchmarks.studies import run_studies
from nondiff.optim import registry
from nondiff.optim.binary_code import bits_for, decode_bits
from nondiff.optim.spaces import Categorical, Integer, Permutation, Space

CODES = ("gray", "binary")
EXTRA = (0, 1, 2)


def even(seeds: int) -> None:
    print("\n1. first generation (uniform bits): max |frequency - 1/k| (exact)")
    ks = (3, 5, 6, 10)
    print(f"{'extra_bits':>10}" + "".join(f"{f'k={k}':>14}" for k in ks))
    for extra in EXTRA:
        cells = []
        for k in ks:
            b = bits_for(k, extra)
            codes = np.array(list(itertools.product((0, 1), repeat=b)))
            freq = np.bincount(decode_bits(codes, k), minlength=k) / len(codes)
            cells.append(f"{np.abs(freq - 1 / k).max():.3f} ({b} b)")
        print(f"{extra:>10}" + "".join(f"{c:>14}" for c in cells))
    print("Permutation(n): total variation from uniform, 200000 uniform bit strings")
    print(f"{'extra_bits':>10}" + "".join(f"{f'n={n}':>14}" for n in (3, 4, 5)))
    for extra in EXTRA:
        cells = []
        for n in (3, 4, 5):
            opt = registry.create("cga", Permutation(n), extra_bits=extra, seed=0)
            bits = np.random.default_rng(0).integers(0, 2, (200_000, opt.n_bits))
            rows = opt.decode(bits).astype(np.int64)
            index = rows @ (n ** np.arange(n))
            counts = np.unique(index, return_counts=True)[1] / len(rows)
            tv = 0.5 * (np.abs(counts - 1 / math.factorial(n)).sum()
                        + (math.factorial(n) - len(counts)) / math.factorial(n))
            cells.append(f"{tv:.3f} ({opt.layout[0].per_entry} b)")
        print(f"{extra:>10}" + "".join(f"{c:>14}" for c in cells))


def _tasks() -> dict[str, tuple[Space, Callable[[Any], float]]]:
    rng = np.random.default_rng(1)
    cat, ints, order = rng.integers(0, 5, 8), rng.integers(0, 10, 6), rng.permutation(6)
    return {
        "integer-10x6": (Integer(0, 9, size=6),
                         lambda v: float(np.abs(np.asarray(v) - ints).sum())),
        "categorical-5x8": (Categorical(list("abcde"), size=8),
                            lambda v: float(sum(c != "abcde"[t]
                                                for c, t in zip(v, cat, strict=True)))),
        "permutation-6": (Permutation(6), lambda v: float(np.sum(np.asarray(v) != order))),
    }


def _run(space: Space, fn: Callable[[Any], float], code: str, extra: int, seed: int,
         budget: int) -> int | None:
    """Evaluations until the optimum (0) is first asked, None if never."""
    opt = registry.create("cga", space, code=code, extra_bits=extra, seed=seed)
    used = 0
    while used < budget:
        x = opt.ask()
        f = np.array([fn(v) for v in space.decode_batch(x)])
        used += len(x)
        if (f == 0).any():
            return used
        opt.tell(x, f)
    return None


def converge(seeds: int, budget: int = 6000) -> None:
    print(f"\n2. cga through the code: optima found in {seeds} runs / mean evaluations to "
          f"the optimum (budget {budget})")
    columns = [(c, e) for c in CODES for e in EXTRA]
    print(f"{'task':<17}" + "".join(f"{f'{c} +{e}':>14}" for c, e in columns))
    for label, (space, fn) in _tasks().items():
        cells = []
        for code, extra in columns:
            hits = [h for h in (_run(space, fn, code, extra, s, budget) for s in range(seeds))
                    if h is not None]
            mean = f"{np.mean(hits):.0f}" if hits else "-"
            cells.append(f"{len(hits)}/{seeds} {mean}")
        print(f"{label:<17}" + "".join(f"{c:>14}" for c in cells), flush=True)


STUDIES = {"even": even, "converge": converge}


def main(argv: list[str] | None = None) -> None:
    run_studies(STUDIES, __doc__.split("\n")[0], argv, seeds=10)


if __name__ == "__main__":
    main()
