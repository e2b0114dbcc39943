"""MIQP: ADMM (Takapoui et al. 2017) vs brute force vs rounding the relaxed solution.

On random MIQPs (8 integers in [-2, 2] and 2 reals) and box-constrained integer
least squares (8 integers in [-2, 2], 12 rows), per method: how many seeds reach the
brute-force optimum, the mean relative optimality gap ``(f - f*) / |f*|`` and the
median time. Methods: brute force (enumeration with the reals eliminated), ADMM with
and without the polish, and relax-and-round (box relaxation by L-BFGS-B, integers
rounded, reals re-solved).

    python -m nondiff.benchmarks.studies.miqp [--seeds 10] [--restarts 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
from nondiff.optim.admm import ADMM
from nondiff.problems.miqp import MIQP, IntegerLeastSquares, QuadraticProblem, round_relaxation

PROBLEMS = {"miqp": lambda seed: MIQP(seed=seed),
            "integer-least-squares": lambda seed: IntegerLeastSquares(seed=seed)}


def _methods(restarts: int) -> dict:
    def admm(polish: bool):
        def run(p: QuadraticProblem, seed: int) -> float:
            return ADMM(p.constraint_set, P=p.P, q=p.q, c=p.c, restarts=restarts,
                        polish=polish, seed=seed).solve().f
        return run
    return {"admm+polish": admm(True), "admm": admm(False),
            "relax-and-round": lambda p, seed: round_relaxation(p)[1]}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--restarts", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'problem':<22} {'method':<16} {'optimal':>8} {'mean gap':>10} {'median s':>10} "
          f"{'time / brute':>13}")
    for name, make in PROBLEMS.items():
        rows: dict[str, list] = {"brute force": []}
        built = []
        for seed in range(args.seeds):
            began = time.perf_counter()
            p = make(seed)
            rows["brute force"].append((p.f_opt, time.perf_counter() - began, p.f_opt))
            built.append(p)
        for method, run in _methods(args.restarts).items():
            rows[method] = []
            for seed, p in enumerate(built):
                began = time.perf_counter()
                f = run(p, seed)
                rows[method].append((f, time.perf_counter() - began, p.f_opt))
        brute_time = float(np.median([t for _, t, _ in rows["brute force"]]))
        for method, results in rows.items():
            gaps = [(f - opt) / max(abs(opt), 1e-12) for f, _, opt in results]
            hits = sum(g <= 1e-9 for g in gaps)
            seconds = float(np.median([t for _, t, _ in results]))
            print(f"{name:<22} {method:<16} {hits:>4}/{len(results):<3} {np.mean(gaps):>10.2e} "
                  f"{seconds:>10.4f} {seconds / brute_time:>13.2f}")


if __name__ == "__main__":
    main()
