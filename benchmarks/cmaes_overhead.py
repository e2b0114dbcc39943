"""Overhead of our CMA-ES wrapper over raw pycma ask/tell (target ratio <= 1.05).

Both loops run the same pycma code on a cheap vectorized objective (the sphere),
each in its canonical form (``while not stop(): ask; tell``),
with the same options and the same kind of random generator (a seeded numpy
``Generator`` as pycma's ``randn``), so the difference is the wrapper's own work:
input checks, array conversion, best-so-far and counters. Repetitions alternate
between the two loops; the medians are compared.

    python -m nondiff.benchmarks.cmaes_overhead [--dims 100 1000] [--repeats 7]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import cma
import numpy as np
from nondiff.benchmarks.timing import interleaved, seconds_per_call
from nondiff.optim import registry

ITERATIONS = {100: 400, 1000: 30}


def cheap(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def raw_pycma_step(dim: int, seed: int):
    rng = np.random.default_rng(seed)
    opts = {"seed": seed, "verbose": -9, "verb_log": 0,
            "randn": lambda *shape: rng.standard_normal(shape)}
    es = cma.CMAEvolutionStrategy(np.ones(dim), 0.5, opts)

    def step() -> None:  # pycma's canonical loop: `while not es.stop(): ask, tell`
        es.stop()
        x = es.ask()
        es.tell(x, cheap(np.asarray(x)).tolist())

    return step


def our_step(dim: int, seed: int):
    opt = registry.create("cmaes", np.ones(dim), sigma0=0.5, seed=seed)

    def step() -> None:  # the same loop as minimize(): `while not opt.stop(): ask, tell`
        opt.stop()
        x = opt.ask()
        opt.tell(x, cheap(x))

    return step


def measure(dim: int, repeats: int) -> dict[str, float]:
    calls = ITERATIONS.get(dim, max(10, 40_000 // dim))
    # A fresh optimizer for each repetition, so both loops time the same iterations.
    return interleaved({
        "pycma": lambda: seconds_per_call(raw_pycma_step(dim, 1), calls),
        "ours": lambda: seconds_per_call(our_step(dim, 1), calls),
    }, repeats)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"{'dim':>6} {'pycma ms/iter':>14} {'ours ms/iter':>13} {'ratio':>7}  target <= 1.05")
    for dim in args.dims:
        times = measure(dim, args.repeats)
        ratio = times["ours"] / times["pycma"]
        print(f"{dim:>6} {1e3 * times['pycma']:>14.3f} {1e3 * times['ours']:>13.3f} "
              f"{ratio:>7.3f}  {'ok' if ratio <= 1.05 else 'MISSED'}")


if __name__ == "__main__":
    main()
