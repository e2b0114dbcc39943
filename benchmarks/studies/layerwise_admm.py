"""Layer-wise ADMM (Taylor et al. 2016) vs SGD and Adam on the same MLP: accuracy vs time.

One hidden layer of 256 ReLU units on digits and MNIST-1D (4,000 samples), 3 seeds.
Layer-wise ADMM runs full-batch closed-form sweeps (no gradients); SGD (momentum
0.9, lr 0.05) and Adam (lr 1e-3) run mini-batches of 64. Test accuracy (mean over
seeds) is printed at checkpoints of wall time, for each method side by side.

    python -m nondiff.benchmarks.studies.layerwise_admm [--seeds 3] [--iterations 40] [--epochs 30]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch
from nondiff.hybrid.layerwise_admm import LayerwiseADMM
from nondiff.problems.learning import Dataset, digits, mnist1d
from torch import nn


def _admm(ds: Dataset, seed: int, iterations: int) -> list[tuple[float, float]]:
    net = LayerwiseADMM([ds.features, 256, ds.num_classes], loss="square", seed=seed)
    trace, began = [], time.perf_counter()

    def record(metrics: dict, model: LayerwiseADMM) -> None:
        acc = float((model.predict(ds.x_test) == ds.y_test).float().mean())
        trace.append((time.perf_counter() - began, acc))

    with torch.no_grad():
        net.fit(ds.x_train, ds.y_train, iterations=iterations, callback=record)
    return trace


def _gradient(ds: Dataset, seed: int, epochs: int, method: str) -> list[tuple[float, float]]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(ds.features, 256), nn.ReLU(), nn.Linear(256, ds.num_classes))
    opt = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if method == "sgd"
           else torch.optim.Adam(model.parameters(), lr=1e-3))
    trace, began = [], time.perf_counter()
    for epoch in range(epochs):
        for xb, yb in ds.batches(64, seed=seed, epoch=epoch):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
        with torch.no_grad():
            acc = float((model(ds.x_test).argmax(1) == ds.y_test).float().mean())
        trace.append((time.perf_counter() - began, acc))
    return trace


def _at(trace: list[tuple[float, float]], seconds: float) -> float:
    """Accuracy of the last checkpoint reached by ``seconds`` (nan before the first)."""
    done = [acc for t, acc in trace if t <= seconds]
    return done[-1] if done else float("nan")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=40, help="layer-wise ADMM sweeps")
    parser.add_argument("--epochs", type=int, default=30, help="SGD / Adam epochs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for ds in (digits(seed=0), mnist1d(n=4000, seed=0)):
        traces = {"layerwise-admm": [_admm(ds, s, args.iterations) for s in range(args.seeds)],
                  "sgd": [_gradient(ds, s, args.epochs, "sgd") for s in range(args.seeds)],
                  "adam": [_gradient(ds, s, args.epochs, "adam") for s in range(args.seeds)]}
        end = max(t[-1][0] for runs in traces.values() for t in runs)
        marks = [end * f for f in (0.05, 0.1, 0.25, 0.5, 1.0)]
        print(f"\n{ds.name}: mean test accuracy at wall time (s); final = end of run")
        print(f"{'method':<16}" + "".join(f"{m:>9.2f}" for m in marks) + f"{'final':>9}"
              + f"{'total s':>9}")
        for method, runs in traces.items():
            accs = []
            for m in marks:  # runs that have no checkpoint yet at this time are left out
                reached = [a for a in (_at(t, m) for t in runs) if a == a]
                accs.append(float(np.mean(reached)) if reached else float("nan"))
            final = np.mean([t[-1][1] for t in runs])
            total = np.mean([t[-1][0] for t in runs])
            print(f"{method:<16}" + "".join(f"{a:>9.3f}" for a in accs) + f"{final:>9.3f}"
                  + f"{total:>9.2f}")


if __name__ == "__main__":
    main()
