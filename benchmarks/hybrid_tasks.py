"""Hybrid tasks: digit arithmetic, architecture + weights, visual program induction.

Part ``arithmetic`` (:mod:`nondiff.problems.hybrid_arithmetic`): two digit images -> one
perception MLP -> hard argmax digits -> exact integer sum; only the sum is labeled.
Every method trains the same network for the same epochs and data order; the table
shows, over seeds, the sum accuracy on 2,000 held-out pairs of test images and the
implied digit accuracy (of the argmax on the test images, labels used only here),
the wall time and the perception forward passes (examples x passes: the compute).
Anchor: straight-through (the usual baseline); ratio = sum accuracy / its. Target: the
best method >= 90 % sum accuracy and ahead of straight-through.

Part ``architecture`` (:mod:`nondiff.problems.hybrid_architecture`): an MLP on MNIST-1D whose
per-layer activation and width are ``Choice`` s, searched by REINFORCE, CMA-ES and a
GA through :class:`nondiff.hybrid.HybridTrainer` while the shared weights train; the found
architecture is retrained alone; compared with random search (architectures trained
briefly, the best on validation retrained) and with the best of the fixed
architectures trained alone. Columns: test accuracy of the retrained architecture,
and the compute (examples x forward passes) of the search.

Part ``programs`` (:mod:`nondiff.problems.hybrid_programs`): sequences of 4 digit images ->
perception -> a two-token program from a list DSL -> an output list; the program is
unknown and searched by REINFORCE over :class:`nondiff.hybrid.Program` while the perception
network trains (score-function gradient) from the outputs alone. Columns: fraction of
seeds whose found program is equivalent to the true one, and output accuracy.

Commands (2 cores, one thread each):
    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.hybrid_tasks               # all parts, 3 seeds
    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.hybrid_tasks arithmetic programs --seeds 3
    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.hybrid_tasks --quick       # 1 seed, short
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

import torch

PARTS = ("arithmetic", "architecture", "programs")


def _fmt(mean: float, std: float, scale: float = 100.0) -> str:
    if math.isnan(std):
        return f"{scale * mean:6.1f}"
    return f"{scale * mean:6.1f} ± {scale * std:4.1f}"


def run_arithmetic(seeds: int, epochs: int) -> list[dict[str, Any]]:
    from nondiff.problems.hybrid_arithmetic import (
        METHODS,
        DigitArithmetic,
        summarize,
        train_arithmetic,
    )

    rows = []
    for seed in range(seeds):
        task = DigitArithmetic(seed)
        for method in METHODS:
            rows.append(train_arithmetic(method, seed, epochs=epochs, task=task,
                                         es_popsize=50))
            print(f"  arithmetic seed {seed} {method:16s} sum {rows[-1]['sum_accuracy']:.3f} "
                  f"digit {rows[-1]['digit_accuracy']:.3f} ({rows[-1]['seconds']:.1f} s)",
                  flush=True)
    summary = summarize(rows)
    anchor = summary["straight-through"]["sum_accuracy"]
    print(f"\nDigit arithmetic ({seeds} seeds, {epochs} epochs; % on held-out pairs)")
    print(f"{'method':18s} {'sum acc':>14s} {'digit acc':>14s} {'vs ST':>7s} {'seconds':>8s} "
          f"{'fwd examples':>13s}")
    for method, entry in summary.items():
        ratio = entry["sum_accuracy"] / anchor if anchor > 0 else math.inf
        print(f"{method:18s} {_fmt(entry['sum_accuracy'], entry['sum_accuracy_std']):>14s} "
              f"{_fmt(entry['digit_accuracy'], entry['digit_accuracy_std']):>14s} "
              f"{ratio:6.2f}x {entry['seconds']:8.1f} {entry['forward_examples']:13.3g}")
    best = max(summary, key=lambda m: summary[m]["sum_accuracy"])
    ok = summary[best]["sum_accuracy"] >= 0.9 and best != "straight-through"
    print(f"best: {best} ({100 * summary[best]['sum_accuracy']:.1f} %); target >= 90 % and ahead "
          f"of straight-through: {'met' if ok else 'NOT met'}")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", metavar="part",
                        help=f"any of {', '.join(PARTS)} or all (default: all)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 seed, shorter budgets")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts) - {*PARTS, "all"})
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)} or all")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    seeds = 1 if args.quick else args.seeds
    parts = PARTS if not args.parts or "all" in args.parts else tuple(args.parts)
    start = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.1f} (timings on a shared machine are noisy)")
    if "arithmetic" in parts:
        run_arithmetic(seeds, epochs=4 if args.quick else 12)
    if "architecture" in parts:
        from nondiff.problems.hybrid_architecture import run_benchmark as run_architecture

        run_architecture(seeds, quick=args.quick)
    if "programs" in parts:
        from nondiff.problems.hybrid_programs import run_benchmark as run_programs

        run_programs(seeds, quick=args.quick)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
