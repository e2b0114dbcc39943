"""Quantized nets: float vs ADMM (Leng et al. 2018) vs straight-through, same epochs.

MLP (two hidden layers of 256) and CNN (two convolutions) on digits and MNIST-1D
(4,000 samples), trained for the same number of epochs and batches of 64 in three ways
(see :mod:`problems.quantized`): float weights; ADMM with binary / ternary weights
(every conv/linear weight quantized, per-layer fitted scale, Z/U once per epoch, rho
growing geometrically from 1e-3 to 0.3); and the straight-through estimator with the same
projections. Every method uses the same optimizer, by default SGD with momentum 0.9
and lr 0.05 (``--optimizer adam``: Adam, lr 1e-3). The settings (optimizer, rho
schedule) were chosen on a validation split carved out of the training set
(``--validation``), never on the test set. Prints mean ± std test accuracy over
seeds, the ADMM-ternary gap to float (target: within 2 points) and its lead over
straight-through ternary (target: ahead), next to the published ImageNet anchor of
Leng et al. (ternary ResNet-18 67.0 % vs 70.3 %).

    python -m benchmarks.admm_quantized [--seeds 3] [--epochs 20] [--optimizer sgd]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch

from problems.learning import digits, mnist1d
from problems.quantized import train, validation_split

RUNS = [("float", "float", "ternary"), ("admm-ternary", "admm", "ternary"),
        ("ste-ternary", "ste", "ternary"), ("admm-binary", "admm", "binary"),
        ("ste-binary", "ste", "binary")]
RHO = {"sgd": (1e-3, 0.3), "adam": (1e-4, 10.0)}  # ADMM (rho, rho_end), by validation
LENG_2018 = {"float": 70.3, "admm-ternary": 67.0}  # ResNet-18 top-1 on ImageNet, Table 3


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--datasets", default="digits,mnist1d")
    parser.add_argument("--archs", default="mlp,cnn")
    parser.add_argument("--optimizer", choices=sorted(RHO), default="sgd")
    parser.add_argument("--validation", action="store_true",
                        help="score on 20%% of the training split (for tuning) instead of test")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    loaders = {"digits": lambda: digits(seed=0), "mnist1d": lambda: mnist1d(n=4000, seed=0)}
    rho, rho_end = RHO[args.optimizer]
    names = [r[0] for r in RUNS]
    split = "validation" if args.validation else "test"
    print(f"{split} accuracy (%), {args.optimizer}, {args.epochs} epochs, {args.seeds} seeds")
    print(f"{'task':<14}" + "".join(f"{n:>15}" for n in names)
          + f"{'tern-float':>12}{'tern-ste':>10}  targets")
    for dname in args.datasets.split(","):
        ds = loaders[dname]()
        ds = validation_split(ds) if args.validation else ds
        for arch in args.archs.split(","):
            acc = {}
            for label, method, levels in RUNS:
                acc[label] = [100 * train(ds, arch, method, levels, epochs=args.epochs, seed=s,
                                          optimizer=args.optimizer, rho=rho,
                                          rho_end=rho_end)["accuracy"]
                              for s in range(args.seeds)]
            gap = np.mean(acc["admm-ternary"]) - np.mean(acc["float"])
            lead = np.mean(acc["admm-ternary"]) - np.mean(acc["ste-ternary"])
            ok = ("ok" if gap >= -2 else "MISS") + "/" + ("ok" if lead > 0 else "MISS")
            print(f"{dname + '-' + arch:<14}"
                  + "".join(f"{np.mean(acc[n]):>9.1f} ±{np.std(acc[n]):>4.1f}" for n in names)
                  + f"{gap:>12.1f}{lead:>10.1f}  {ok}", flush=True)
    gap = LENG_2018["admm-ternary"] - LENG_2018["float"]
    print(f"{'Leng et al.':<14}{LENG_2018['float']:>15.1f}{LENG_2018['admm-ternary']:>15.1f}"
          f"{'':>45}{gap:>12.1f}  (ImageNet ResNet-18, published; not rerun)")


if __name__ == "__main__":
    main()
