"""Hybrid tasks: digit arithmetic, architecture + weights, visual program induction.

The tasks are :mod:`nondiff.problems.hybrid`; the experiments that train and compare
methods on them are the modules of this package, one per part.

Part ``arithmetic`` (:mod:`nondiff.benchmarks.hybrid_tasks.arithmetic`): two digit
images -> one perception MLP -> hard argmax digits -> exact integer sum; only the sum is
labeled. Every method trains the same network for the same epochs and data order; the
table shows, over seeds, the sum accuracy on 2,000 held-out pairs of test images and the
implied digit accuracy (of the argmax on the test images, labels used only here), the
wall time and the perception forward passes (examples x passes: the compute). Anchor:
straight-through (the usual baseline); ratio = sum accuracy / its. Target: the best
method >= 90 % sum accuracy and ahead of straight-through.

Part ``architecture`` (:mod:`nondiff.benchmarks.hybrid_tasks.architecture`): an MLP on
MNIST-1D whose per-layer activation and width are ``Choice`` s, searched by REINFORCE,
CMA-ES and a GA through :class:`nondiff.hybrid.HybridTrainer` while the shared weights
train (unbounded, ``search_compute=None``: a generation every step); the found
architecture is retrained alone; compared with random search (architectures trained
briefly, the best on validation retrained) and with the best of the fixed
architectures trained alone. Columns: test accuracy of the retrained
architecture, and the compute (examples x forward passes) of the search.

Part ``programs`` (:mod:`nondiff.benchmarks.hybrid_tasks.programs`): sequences of 4
digit images -> perception -> a two-token program from a list DSL -> an output list; the
program is unknown and searched by REINFORCE over :class:`nondiff.hybrid.Program` while
the perception network trains (score-function gradient) from the outputs alone. Columns:
fraction of seeds whose found program is equivalent to the true one, and output
accuracy.

Beside the parts, :mod:`nondiff.benchmarks.hybrid_tasks.incumbent_bias` (run on its own) checks
that every structure optimizer finds the relevant inputs and a nonlinear activation
under shared weights (issue 17), with the trainer's weight steps before and after, and
:mod:`nondiff.benchmarks.hybrid_tasks.regression_gap` measures the same search on a
regression (test MSE against the known structure trained alone), and
:mod:`nondiff.benchmarks.hybrid_tasks.readme_digits` runs the README's example (digits
behind 64 gated pixels, an activation choice) with every structure optimizer against
each activation trained alone with every pixel.

Commands (2 cores, one thread each):
    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.hybrid_tasks               # all parts, 3 seeds
    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.hybrid_tasks arithmetic programs --seeds 3
    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.hybrid_tasks --quick       # 1 seed, short

The acceptance suite of structure search (:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`:
every registry optimizer that handles each task's structure space, against the known
structure trained alone) runs on its own:
``python -m nondiff.benchmarks.hybrid_tasks.acceptance``.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

PARTS = ("arithmetic", "architecture", "programs")


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
        from nondiff.benchmarks.hybrid_tasks.arithmetic import run_benchmark as run_arithmetic

        run_arithmetic(seeds, quick=args.quick)
    if "architecture" in parts:
        from nondiff.benchmarks.hybrid_tasks.architecture import (
            run_benchmark as run_architecture,
        )

        run_architecture(seeds, quick=args.quick)
    if "programs" in parts:
        from nondiff.benchmarks.hybrid_tasks.programs import run_benchmark as run_programs

        run_programs(seeds, quick=args.quick)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
