"""Generations per second of our ES against evotorch's SNES and PGPE (target >= 1.0).

A vectorized sphere in float32 torch, dim 100,000, popsize 256 (the issue's
setting). Each loop samples, evaluates the whole population in one call and
updates; repetitions alternate between libraries and the medians are compared.

    python -m nondiff.benchmarks.es_speed [--dim 100000] [--popsize 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import torch
from nondiff.benchmarks.timing import interleaved, seconds_per_call
from nondiff.optim import registry


def sphere(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(dim=1)


def evotorch_step(algorithm: str, dim: int, popsize: int):
    import evotorch
    from evotorch import algorithms

    logging.getLogger("evotorch").setLevel(logging.WARNING)
    problem = evotorch.Problem("min", sphere, solution_length=dim, initial_bounds=(-1.0, 1.0),
                               vectorized=True, dtype=torch.float32, seed=0)
    if algorithm == "PGPE":
        searcher = algorithms.PGPE(problem, popsize=popsize, center_learning_rate=0.5,
                                   stdev_learning_rate=0.1, stdev_init=1.0, optimizer="clipup")
    else:
        searcher = algorithms.SNES(problem, popsize=popsize, stdev_init=1.0)
    return searcher.step


def our_step(name: str, dim: int, popsize: int):
    opt = registry.create(name, torch.zeros(dim, dtype=torch.float32), sigma0=1.0,
                          popsize=popsize, seed=0)

    def step() -> None:
        x = opt.ask()
        opt.tell(x, sphere(x))

    return step


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=100_000)
    parser.add_argument("--popsize", type=int, default=256)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"dim {args.dim}, popsize {args.popsize}, float32, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'algorithm':>10} {'evotorch gen/s':>15} {'ours gen/s':>11} {'ratio':>7}"
          "  target >= 1.0")
    for ours, theirs in (("snes", "SNES"), ("pgpe", "PGPE")):
        steps = {"evotorch": evotorch_step(theirs, args.dim, args.popsize),
                 "ours": our_step(ours, args.dim, args.popsize)}
        for step in steps.values():  # warm up allocations
            step()
        times = interleaved({k: (lambda s=s: seconds_per_call(s, args.generations))
                             for k, s in steps.items()}, args.repeats)
        ratio = times["evotorch"] / times["ours"]
        print(f"{ours:>10} {1 / times['evotorch']:>15.2f} {1 / times['ours']:>11.2f} "
              f"{ratio:>7.3f}  {'ok' if ratio >= 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
