"""Mixed spaces: CMA-ES with integer variables vs REINFORCE vs genetic search.

The ``mixed-sphere`` problem (reals, integers, categories and bits; optimum 0) at
equal budgets and seeds, once with its real part (optimizers of real and discrete
variables: CMA-ES and REINFORCE) and once without (every optimizer of discrete
spaces, the genetic ones included). Each optimizer runs with its defaults through
``minimize(problem, problem.space, ...)``; an optimizer that does not handle a
space is listed as such.

    python -m nondiff.benchmarks.studies.mixed_space [--n 5] [--seeds 5] [--budget 20000]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import numpy as np
from nondiff.optim import minimize, registry

from nondiff import problems

OPTIMIZERS = ["cmaes", "bipop-cmaes", "reinforce", "ga", "one-plus-lambda"]
TARGET = 1e-6


def run(name: str, n: int, reals: bool, seeds: Sequence[int], budget: int) -> dict:
    finals, hits, seconds = [], [], []
    for seed in seeds:
        problem = problems.get("mixed-sphere", dim=n, instance=1 + seed, reals=reals)
        began = time.perf_counter()
        result = minimize(problem, problem.space, optimizer=name, budget=budget,
                          vectorized=True, seed=seed, target=TARGET, progress=False)
        seconds.append(time.perf_counter() - began)
        finals.append(result.f)
        reached = np.nonzero(result.history[:, 1] <= TARGET)[0]
        hits.append(result.history[reached[0], 0] if reached.size else math.inf)
    solved = [h for h in hits if math.isfinite(h)]
    return {"median_f": float(np.median(finals)), "solved": len(solved), "runs": len(seeds),
            "median_evals": float(np.median(solved)) if solved else math.inf,
            "seconds": float(np.median(seconds))}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5, help="size of each part")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=20_000)
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    print(f"mixed-sphere, {args.n} entries per part, budget {args.budget}, {args.seeds} seeds "
          f"(instance = seed + 1); solved = f <= {TARGET:g}")
    print(f"{'space':<28}{'optimizer':<18}{'median f':>11}{'solved':>8}"
          f"{'median evals':>14}{'time [s]':>10}")
    for reals in (True, False):
        label = "real+int+cat+bin" if reals else "int+cat+bin"
        kinds = {"integer", "categorical", "binary"} | ({"real"} if reals else set())
        for name in OPTIMIZERS:
            if not kinds <= registry.supported_kinds(name):
                print(f"{label:<28}{name:<18}{'does not handle this space':>43}")
                continue
            row = run(name, args.n, reals, seeds, args.budget)
            evals = "-" if math.isinf(row["median_evals"]) else f"{row['median_evals']:.0f}"
            print(f"{label:<28}{name:<18}{row['median_f']:>11.3g}"
                  f"{row['solved']:>5}/{row['runs']:<2}{evals:>14}{row['seconds']:>10.2f}")
        print()


if __name__ == "__main__":
    main()
