"""Quantized nets: float vs ADMM (Leng et al. 2018) vs straight-through, same epochs.

MLP (two hidden layers of 256) and CNN (two convolutions) on digits and MNIST-1D
(4,000 samples), trained for the same number of epochs and batches of 64 in three ways
(:func:`train`; tasks of :mod:`nondiff.problems.quantized`, quantization of
:mod:`nondiff.hybrid.quantize`): float weights; ADMM with binary / ternary weights
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

    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.studies.admm_quantized [--seeds 3] [--epochs 20]
        [--optimizer sgd] [--lr X] [--rho-end 0.3] [--keep-float none,first]
        [--polish 0] [--validation] [--jobs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from nondiff.hybrid.quantize import (
    ADMMQuantizer,
    apply_ste,
    freeze_codes,
    level_set,
    quantize_in_place,
    quantized_layers,
)
from nondiff.optim.checks import check_int, check_positive
from nondiff.problems.learning import Dataset, accuracy, digits, mnist1d
from nondiff.problems.quantized import cnn, mlp, validation_split

METHODS = ("float", "admm", "ste")
OPTIMIZERS = {"adam": 1e-3, "sgd": 0.05}
"""Optimizer names and their default learning rates (SGD with momentum 0.9)."""

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


def train(ds: Dataset, arch: str = "mlp", method: str = "admm",
          levels: str | int = "ternary", epochs: int = 20, seed: int = 0,
          optimizer: str = "adam", lr: float | None = None, batch_size: int = 64,
          rho: float = 1e-4, rho_end: float = 10.0, every: int | None = None,
          hidden: tuple[int, ...] = (256, 256), polish_epochs: int = 0,
          polish_lr: float | None = None, keep_float: Sequence[int] = ()) -> dict[str, Any]:
    """Train ``arch`` (``"mlp"``, ``"cnn"``) on ``ds`` by ``method`` with the same optimizer,
    epochs and batches: ``"float"`` weights (the reference accuracy), ``"admm"``
    (:class:`~nondiff.hybrid.quantize.ADMMQuantizer`, weights put exactly on their sets
    at the end) or ``"ste"`` (straight-through, :func:`~nondiff.hybrid.quantize.apply_ste`).

    ``optimizer`` is ``"adam"`` or ``"sgd"`` (momentum 0.9), ``lr`` defaults to
    :data:`OPTIMIZERS`. For ADMM, Z and U update once per epoch by default (``every``
    steps) and rho grows geometrically from ``rho`` to ``rho_end`` over the run, so
    that W is driven onto its set by the end. The penalty rho/2 ||W - Z + U||^2 is a
    quadratic of curvature rho only under plain (momentum) SGD; Adam rescales each
    coordinate's gradient by its running RMS, so the pull towards Z no longer follows
    rho (the L2-vs-weight-decay effect of Loshchilov and Hutter 2019). On a validation
    split of MNIST-1D (CNN, 20 epochs) ADMM ternary reached 71 % with Adam and 90 % with
    SGD (float: 85 % and 94 %).

    ``polish_epochs`` (ADMM and STE; within ``epochs``, not added) ends the run as
    the final polish of ADMM heuristics (Takapoui et al. 2020: fix the discrete part,
    optimize the continuous rest): the weights are put on their sets, their integer
    codes are frozen (:func:`~nondiff.hybrid.quantize.freeze_codes`), and only the
    per-tensor scales and the biases train, with the same optimizer at ``polish_lr``
    (default: a tenth of ``lr``).

    ``keep_float``: indices of linear/conv layers left in float (see
    :func:`~nondiff.hybrid.quantize.quantized_layers`); the same for every method.

    Returns:
        dict with ``accuracy`` (test), ``train_accuracy``, ``seconds``, ``on_levels``
        (every quantized weight exactly on its set) and the trained ``model``.

    Example:
        >>> out = train(digits(seed=0), "mlp", method="admm", levels="ternary", epochs=3,
        ...             seed=0)
        >>> out["on_levels"], out["accuracy"] > 0.8
        (True, True)
    """
    if arch not in ("mlp", "cnn"):
        raise ValueError(f"arch must be 'mlp' or 'cnn', got {arch!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    epochs = check_int("epochs", epochs, 1)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    lr = OPTIMIZERS[optimizer] if lr is None else check_positive("lr", lr)
    polish_epochs = check_int("polish_epochs", polish_epochs, 0)
    if polish_epochs and (method == "float" or polish_epochs >= epochs):
        raise ValueError(f"polish_epochs must be 0 for float training and < epochs "
                         f"({epochs}) otherwise, got {polish_epochs!r}")
    polish_lr = lr / 10 if polish_lr is None else check_positive("polish_lr", polish_lr)
    if check_positive("rho_end", rho_end) < check_positive("rho", rho):
        raise ValueError(f"rho_end must be >= rho, got rho_end={rho_end!r} < rho={rho!r}")
    constraint_set = level_set(levels)
    torch.manual_seed(check_int("seed", seed, 0))
    model = mlp(ds, hidden) if arch == "mlp" else cnn(ds)
    layers = quantized_layers(model, keep_float)

    def make_optimizer(params: list[torch.nn.Parameter], rate: float) -> torch.optim.Optimizer:
        return (torch.optim.Adam(params, lr=rate) if optimizer == "adam"
                else torch.optim.SGD(params, lr=rate, momentum=0.9))

    opt = make_optimizer(list(model.parameters()), lr)
    main_epochs = epochs - polish_epochs
    steps = main_epochs * ds.num_batches(batch_size)
    quant = None
    if method == "admm":
        every = ds.num_batches(batch_size) if every is None else check_int("every", every, 1)
        growth = (rho_end / rho) ** (every / steps)
        quant = ADMMQuantizer([m.weight for m in layers], levels=constraint_set, rho=rho,
                              every=every, rho_growth=growth, rho_max=1e6)
    elif method == "ste":
        apply_ste(layers, constraint_set)
    loss_fn = torch.nn.CrossEntropyLoss()
    began = time.perf_counter()
    for epoch in range(epochs):
        if epoch == main_epochs:  # polish: codes frozen, scales and biases train
            quantize_in_place(layers, quant)
            quant = None
            freeze_codes(layers, constraint_set)
            free = [p for p in model.parameters() if p.requires_grad]  # not the codes
            opt = make_optimizer(free, polish_lr)
        for xb, yb in ds.batches(batch_size, seed=seed, epoch=epoch):
            loss = loss_fn(model(xb), yb)
            if quant is not None:
                loss = loss + quant.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if quant is not None:
                quant.step()
    quantize_in_place(layers, quant)
    seconds = time.perf_counter() - began
    on_levels = all(constraint_set.contains(m.weight.detach()) for m in layers)
    for m in layers:
        m.weight.requires_grad_(True)
    return {"accuracy": accuracy(model, ds.x_test, ds.y_test),
            "train_accuracy": accuracy(model, ds.x_train, ds.y_train),
            "seconds": seconds, "on_levels": on_levels, "model": model}


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
    with multiprocessing.get_context("forkserver").Pool(args.jobs) as pool:
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
