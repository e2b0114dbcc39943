"""Decoupled training: accuracy of each signal, and multi-process throughput.

Part 1 (accuracy): test accuracy of backprop vs DNI ("synthetic") vs cDNI
("synthetic-conditioned") vs local losses (DGL) for a 5-layer MLP and a 3-block CNN on
MNIST-1D (4,000 train / 1,000 test, generated locally) and scikit-learn's digits, same
epochs and seeds, mean ± std over seeds. Anchor: the Decoupled Greedy Learning
repository's CIFAR-10 3-layer CNN logs (backprop 84.5 %, cDNI 80.9 %, DNI 64.7 %).
Target: the best decoupled signal within 1.0 point of backprop.

Part 2 (throughput): samples/s of a wide MLP on MNIST-1D trained with local losses in
2 processes (:func:`hybrid.fit_parallel`, one thread each) vs single-process backprop
at its best thread setting (1 or 2 threads), equal epochs, test accuracy alongside,
and the scaling with 1-4 groups (1 group = single-process backprop on one thread).
Parallel time is the slowest worker's training loop (process start-up, about a
second with fork, excluded). Target: ratio >= 1.5x.

Command:
    OMP_NUM_THREADS=1 python -m benchmarks.decoupled              # full (~30 min, 2 cores)
    OMP_NUM_THREADS=1 python -m benchmarks.decoupled --quick      # throughput only (~2 min)

Example:
    >>> from benchmarks.decoupled import mlp_blocks
    >>> len(mlp_blocks(40, 10, width=32, depth=5, groups=2))
    2
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from hybrid import SIGNALS, Decoupled, Group, fit_parallel
from problems.learning import Dataset, digits, mnist1d

ANCHOR = {"backprop": 84.5, "synthetic-conditioned": 80.9, "synthetic": 64.7, "local": None}


def mlp_blocks(features: int, classes: int, width: int = 256, depth: int = 5,
               groups: int | None = None) -> list[nn.Module]:
    """A ``depth``-layer MLP as blocks: one per hidden layer, or ``groups`` Groups."""
    layers: list[nn.Module] = []
    width_in = features
    for _ in range(depth - 1):
        layers.append(Group([nn.Linear(width_in, width), nn.ReLU()]))
        width_in = width
    layers.append(nn.Linear(width_in, classes))
    if groups is None:
        return layers
    size = -(-len(layers) // groups)
    return [Group(layers[i:i + size]) for i in range(0, len(layers), size)]


def cnn_blocks(ds: Dataset, channels: int = 32) -> list[nn.Module]:
    """Three conv blocks and a linear head, 1-D or 2-D after ``ds.image_shape``."""
    conv = nn.Conv1d if len(ds.image_shape) == 2 else nn.Conv2d
    spatial = 1
    for s in ds.image_shape[1:]:
        spatial *= -(-s // 4)
    return [Group([nn.Unflatten(1, ds.image_shape), conv(1, channels, 5, padding=2), nn.ReLU()]),
            Group([conv(channels, channels, 3, padding=1, stride=2), nn.ReLU()]),
            Group([conv(channels, channels, 3, padding=1, stride=2), nn.ReLU()]),
            Group([nn.Flatten(), nn.Linear(channels * spatial, ds.num_classes)])]


def accuracy_table(datasets: list[Dataset], seeds: int, epochs: int, batch: int,
                   lr: float) -> None:
    archs: dict[str, Callable[[Dataset], list[nn.Module]]] = {
        "mlp5": lambda ds: mlp_blocks(ds.features, ds.num_classes),
        "cnn3": cnn_blocks,
    }
    print(f"\n## Test accuracy (%), {epochs} epochs, batch {batch}, Adam lr {lr}, "
          f"{seeds} seeds (mean ± std)")
    header = f"{'dataset':8s} {'model':5s} " + " ".join(f"{s:>22s}" for s in SIGNALS)
    print(header + f" {'best decoupled - bp':>20s}")
    for ds in datasets:
        for arch, make in archs.items():
            means = {}
            cells = []
            for signal in SIGNALS:
                accs = []
                for seed in range(seeds):
                    torch.manual_seed(seed)
                    model = Decoupled(make(ds), signal=signal, seed=seed,
                                      optimizer=lambda p: torch.optim.Adam(p, lr))
                    model.fit(ds, epochs, batch, seed=seed)
                    accs.append(100 * model.accuracy(ds.x_test, ds.y_test))
                means[signal] = statistics.mean(accs)
                std = statistics.stdev(accs) if len(accs) > 1 else 0.0
                cells.append(f"{means[signal]:6.1f} ± {std:4.1f}")
            best = max(v for k, v in means.items() if k != "backprop")
            gap = best - means["backprop"]
            print(f"{ds.name:8s} {arch:5s} " + " ".join(f"{c:>22s}" for c in cells)
                  + f" {gap:+19.1f}{'' if gap >= -1.0 else '  (target missed)'}")
    print(f"{'anchor':8s} {'cifar':5s} " + " ".join(
        f"{'-' if ANCHOR[s] is None else f'{ANCHOR[s]:.1f}':>22s}" for s in SIGNALS)
        + "   (DGL repo, CIFAR-10 3-layer CNN)")


def _throughput_run(ds: Dataset, groups: int, threads: int, epochs: int, batch: int,
                    width: int, lr: float) -> tuple[float, float]:
    torch.manual_seed(0)
    optimizer = lambda p: torch.optim.Adam(p, lr)  # noqa: E731
    if groups == 1:
        model = Decoupled(mlp_blocks(ds.features, ds.num_classes, width, groups=1),
                          signal="backprop", optimizer=optimizer)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        start = time.perf_counter()
        model.fit(ds, epochs, batch)
        elapsed = time.perf_counter() - start
        torch.set_num_threads(previous)
    else:
        model = Decoupled(mlp_blocks(ds.features, ds.num_classes, width, groups=groups),
                          signal="local", optimizer=optimizer, head_hidden=0)
        model.build(ds.x_train[:2])
        stats: dict = {}
        fit_parallel(model, ds, epochs, batch, threads=threads, start_method="fork",
                     stats=stats)
        elapsed = max(stats["worker_seconds"])  # the pipeline's training loop
    samples = epochs * len(ds.y_train)
    return samples / elapsed, 100 * model.accuracy(ds.x_test, ds.y_test)


def throughput_table(ds: Dataset, epochs: int, batch: int, width: int, lr: float) -> None:
    print(f"\n## Throughput: {ds.name}, 5-layer MLP width {width}, batch {batch}, "
          f"{epochs} epochs (samples/s; workers timed from their first step)")
    bp = {t: _throughput_run(ds, 1, t, epochs, batch, width, lr) for t in (1, 2)}
    best_threads = max(bp, key=lambda t: bp[t][0])
    best_rate, best_acc = bp[best_threads]
    for t, (rate, acc) in bp.items():
        print(f"backprop, 1 process, {t} thread(s): {rate:9.0f} samples/s  acc {acc:5.1f} %")
    print(f"{'groups':>6s} {'processes':>9s} {'samples/s':>10s} {'acc %':>6s} "
          f"{'vs best backprop':>17s}")
    for groups in (1, 2, 3, 4):
        rate, acc = (bp[1] if groups == 1 else
                     _throughput_run(ds, groups, 1, epochs, batch, width, lr))
        print(f"{groups:6d} {groups:9d} {rate:10.0f} {acc:6.1f} {rate / best_rate:16.2f}x")
        if groups == 2:
            two = (rate, acc)
    ratio = two[0] / best_rate
    print(f"2-process local-loss stack vs backprop ({best_threads} thread(s)): "
          f"{ratio:.2f}x (target >= 1.5x{'' if ratio >= 1.5 else ', missed'}), accuracy "
          f"{two[1]:.1f} % vs {best_acc:.1f} % (target within 1 point"
          f"{'' if two[1] >= best_acc - 1 else ', missed'})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--throughput-epochs", type=int, default=5)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.throughput_epochs, args.width = 2, 3, 2, 1024
        args.skip_accuracy = True
    torch.set_num_threads(1)
    data = [mnist1d(seed=0), digits(seed=0)]
    if not args.skip_accuracy:
        accuracy_table(data, args.seeds, args.epochs, args.batch, args.lr)
    throughput_table(data[0], args.throughput_epochs, 256, args.width, args.lr)


if __name__ == "__main__":
    main()
