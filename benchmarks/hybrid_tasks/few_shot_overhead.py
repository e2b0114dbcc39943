"""Wall time of few-shot weights: ``HybridTrainer(split_choice="auto")`` against ``None``.

Few-shot weights (:mod:`nondiff.hybrid.few_shot`) keep one copy of the weights per option
of an activation ``Choice`` while the search runs. The forward examples are the same
(each copy trains on its share of the batch), but a search step takes one forward pass
and one optimizer step per option it trains instead of one each, and under
``on_nonfinite="raise"`` copies the options it trains first (to undo a refused step).
This script times ``fit`` on issue 17's model (``Gates`` on the inputs, a hidden layer,
an identity / ReLU / tanh ``Choice``, a linear head:
:class:`~nondiff.problems.hybrid.acceptance.GatedActivationMLP`) at three widths, both
settings in the same process in interleaved rounds, and prints milliseconds per step (the
median over rounds) and the ratio, with the machine. Measured (2 cores, one thread, torch
2.13 CPU): 1.16 -> 1.83 ms per step at width 32 (2 thousand parameters), 3.13 -> 3.04 at
2048, 19.1 -> 21.5 at 16384 (1.1 million).

Command::

    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.hybrid_tasks.few_shot_overhead
    python -m nondiff.benchmarks.hybrid_tasks.few_shot_overhead --rounds 5 --widths 32 2048
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.problems.hybrid.acceptance import GatedActivationMLP

__all__ = ["main", "time_fit"]


def time_fit(split: str | None, width: int, features: int = 64, steps: int = 100) -> float:
    """Milliseconds per step of a ``fit`` of ``steps`` steps (batches of 64 rows)."""
    torch.manual_seed(0)
    x = torch.randn(64 * steps, features)
    y = (x[:, 0] * x[:, 1] > 0).long()
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, len(y), 64)]
    trainer = HybridTrainer(GatedActivationMLP(features, width), "cmaes", seed=0, progress=False,
                            split_choice=split)
    start = time.perf_counter()
    trainer.fit(batches, epochs=1)
    return 1000 * (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 2048, 16384])
    args = parser.parse_args(argv)
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), cpu; {args.rounds} interleaved rounds")
    for width in args.widths:
        times: dict[str, list[float]] = {"None": [], "auto": []}
        for _ in range(args.rounds):
            for split in (None, "auto"):
                times[str(split)].append(time_fit(split, width))
        plain, split = statistics.median(times["None"]), statistics.median(times["auto"])
        params = sum(p.numel() for p in GatedActivationMLP(64, width).parameters())
        print(f"width {width:5d} ({params:,} parameters): one set {plain:7.2f} ms/step, "
              f"few-shot copies {split:7.2f} ms/step, ratio {split / plain:.2f}x")


if __name__ == "__main__":
    main()
