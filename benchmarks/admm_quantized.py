"""Quantized nets: float vs ADMM (Leng et al. 2018) vs straight-through, same epochs.

MLP (two hidden layers of 256) and CNN (two convolutions) on digits and MNIST-1D
(4,000 samples), trained for the same number of epochs and batches of 64 in three ways
(see :mod:`nondiff.problems.quantized`): float weights; ADMM with binary / ternary weights
(per-layer fitted scale, Z/U once per epoch, rho
growing geometrically from 1e-3 to 0.3); and the straight-through estimator with the same
projections. Every method uses the same optimizer, by default SGD with momentum 0.9
(``--optimizer adam``: Adam, lr 1e-3), at its own learning rate (:data:`LR`). The
settings (optimizer, learning rates, rho schedule) were chosen on a validation split
carved out of the training set (``--validation``), never on the test set.
Prints mean ± std test accuracy over seeds, the ADMM-ternary gap to float (target:
within 2 points) and its lead over straight-through ternary (target: ahead) with the
standard error of the paired per-seed difference (same seed: same initial weights and
batches), next to the published ImageNet anchor of Leng et al. (ternary ResNet-18
67.0 % vs 70.3 %).

Each task runs twice: every linear/conv weight quantized (``none`` kept in float),
and the first layer kept in float for every method (``first``).

    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.admm_quantized [--seeds 3] [--epochs 20]
        [--optimizer sgd] [--lr X] [--rho-end 0.3] [--keep-float none,first]
        [--polish 0] [--validation] [--jobs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
from collections.abc import Sequence

import numpy as np
import torch
from nondiff.problems.learning import digits, mnist1d
from nondiff.problems.quantized import train, validation_split

RUNS = [("float", "float", "ternary"), ("admm-ternary", "admm", "ternary"),
        ("ste-ternary", "ste", "ternary"), ("admm-binary", "admm", "binary"),
        ("ste-binary", "ste", "binary")]
RHO = {"sgd": (1e-3, 0.3), "adam": (1e-4, 10.0)}  # ADMM (rho, rho_end), by validation
LR = {"sgd": {"float": 0.1, "admm": 0.1, "ste": 0.05},
      "adam": {"float": 1e-3, "admm": 1e-3, "ste": 1e-3}}
"""Learning rate per optimizer and method, chosen on the validation split: the best
mean validation accuracy over the 8 task x layer cells, of lr in {0.02, 0.05, 0.1, 0.2}
(3 seeds; 6 seeds for the close calls). SGD, ternary: float 85.9 / 86.7 % at 0.05 /
0.1 (0.2 diverges on some seeds); ADMM 84.3 / 86.1 / 83.0 % at 0.05 / 0.1 / 0.2 (at 0.2
a float first layer diverges on digits); straight-through 82.1 / 84.8 / 84.6 % at 0.02 /
0.05 / 0.1 (at 0.1 it collapses on some MNIST-1D CNN seeds, at 0.2 on most). Each
grid point: ``--validation --lr X``."""
POLISH_EPOCHS = 0
LENG_2018 = {"float": 70.3, "admm-ternary": 67.0}  # ResNet-18 top-1 on ImageNet, Table 3


KEEP_FLOAT = {"none": (), "first": (0,)}
"""Layer configurations: every linear/conv weight quantized, or the first layer in float
(as in most low-bit work since XNOR-Net: its few weights see the raw input)."""


def _run(job: tuple) -> float:
    dname, arch, method, levels, seed, keep, args = job
    torch.set_num_threads(1)
    ds = _LOADERS[dname]()
    ds = validation_split(ds) if args["validation"] else ds
    rho, rho_end = args["rho"]
    return 100 * train(ds, arch, method, levels, epochs=args["epochs"], seed=seed,
                       optimizer=args["optimizer"], lr=args["rates"][method], rho=rho,
                       rho_end=rho_end,
                       polish_epochs=0 if method == "float" else args["polish"],
                       keep_float=KEEP_FLOAT[keep])["accuracy"]


_LOADERS = {"digits": lambda: digits(seed=0), "mnist1d": lambda: mnist1d(n=4000, seed=0)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--datasets", default="digits,mnist1d")
    parser.add_argument("--archs", default="mlp,cnn")
    parser.add_argument("--optimizer", choices=sorted(RHO), default="sgd")
    parser.add_argument("--lr", type=float, default=None,
                        help="one learning rate for every method (default: LR, per method)")
    parser.add_argument("--rho-end", type=float, default=None,
                        help="ADMM's final rho (default: RHO of the optimizer)")
    parser.add_argument("--polish", type=int, default=POLISH_EPOCHS,
                        help="last epochs of ADMM and STE with codes frozen (scales and "
                             "biases train); 0: none")
    parser.add_argument("--keep-float", default="none,first",
                        help=f"layer configurations to run, of {sorted(KEEP_FLOAT)}")
    parser.add_argument("--jobs", type=int, default=2, help="training processes")
    parser.add_argument("--validation", action="store_true",
                        help="score on 20%% of the training split (for tuning) instead of test")
    args = parser.parse_args(argv)
    keeps = args.keep_float.split(",")
    for keep in keeps:
        if keep not in KEEP_FLOAT:
            parser.error(f"--keep-float takes {sorted(KEEP_FLOAT)}, got {keep!r}")
    for name in ("lr", "rho_end"):
        value = getattr(args, name)
        if value is not None and not (np.isfinite(value) and value > 0):
            parser.error(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    rates = ({m: args.lr for m in LR[args.optimizer]} if args.lr is not None
             else LR[args.optimizer])
    rho = RHO[args.optimizer][0], args.rho_end or RHO[args.optimizer][1]
    shared = {k: getattr(args, k) for k in ("validation", "optimizer", "epochs", "polish")}
    shared.update(rates=rates, rho=rho)
    rows = [(keep, dname, arch) for keep in keeps for dname in args.datasets.split(",")
            for arch in args.archs.split(",")]
    # the float baseline does not depend on the layer configuration: trained once
    cells = {row: {label: [(row[1], row[2], method, levels, seed,
                            "none" if method == "float" else row[0])
                           for seed in range(args.seeds)] for label, method, levels in RUNS}
             for row in rows}
    jobs = list(dict.fromkeys(job for row in rows for runs in cells[row].values()
                              for job in runs))
    names = [r[0] for r in RUNS]
    split = "validation" if args.validation else "test"
    print(f"{split} accuracy (%), {args.optimizer} lr "
          + ", ".join(f"{m} {rate:g}" for m, rate in rates.items())
          + f"; ADMM rho {rho[0]:g} -> {rho[1]:g}, "
          f"{args.epochs} epochs ({args.polish} of them "
          f"polish for ADMM and STE), {args.seeds} seeds; float layers: first = the first "
          "linear/conv layer kept in float for every method")
    print(f"{'float layers':<13}{'task':<14}" + "".join(f"{n:>15}" for n in names)
          + f"{'tern-float':>12}{'tern-ste ± se':>14}  targets")
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        arriving = zip(jobs, pool.imap(_run, [(*job, shared) for job in jobs], chunksize=1),
                       strict=True)
        done: dict[tuple, float] = {}
        for keep, dname, arch in rows:
            for job in (job for runs in cells[keep, dname, arch].values() for job in runs):
                while job not in done:  # results arrive in job order
                    key, value = next(arriving)
                    done[key] = value
            acc = {label: [done[job] for job in runs]
                   for label, runs in cells[keep, dname, arch].items()}
            gap = np.mean(acc["admm-ternary"]) - np.mean(acc["float"])
            paired = np.subtract(acc["admm-ternary"], acc["ste-ternary"])
            lead = paired.mean()
            error = (f"{paired.std(ddof=1) / np.sqrt(len(paired)):>4.1f}" if len(paired) > 1
                     else "   -")
            ok = ("ok" if gap >= -2 else "MISS") + "/" + ("ok" if lead > 0 else "MISS")
            print(f"{keep:<13}{dname + '-' + arch:<14}"
                  + "".join(f"{np.mean(acc[n]):>9.1f} ±{np.std(acc[n]):>4.1f}" for n in names)
                  + f"{gap:>12.1f}{lead:>7.1f} ±{error}  {ok}", flush=True)
    gap = LENG_2018["admm-ternary"] - LENG_2018["float"]
    print(f"{'':<13}{'Leng et al.':<14}{LENG_2018['float']:>15.1f}"
          f"{LENG_2018['admm-ternary']:>15.1f}{'':>45}{gap:>12.1f}  (ImageNet ResNet-18, "
          "published; not rerun)")


if __name__ == "__main__":
    main()
