"""Structure search on a regression: how far the searched model's test MSE is from the
known structure trained alone.

The acceptance suite (:mod:`nondiff.benchmarks.hybrid_tasks.acceptance`) scores
classifications, whose accuracy saturates long before the loss does. This script runs
issue 17's setting on a regression instead: ``y = sin(2 x_1) + x_4^2 - x_7 + 0.1 e`` of
10 standard normal inputs, a model with ``Gates`` on the inputs, a hidden layer of 32, an
identity / ReLU / tanh ``Choice`` and one output
(:class:`~nondiff.problems.hybrid.acceptance.GatedActivationMLP` with ``classes=1``),
the MSE as loss, a cost of 0.01 per open gate, 10 epochs of 2,000 rows in batches of 64
with Adam (lr 0.01) for every method. It prints, per optimizer and seed, whether the
recommended structure is the known one (gates 1, 4, 7 and a nonlinear activation), the
searched model's test MSE (the shared weights as trained) and the known structure's
trained alone, and the ratio of the two.

Measured (2 cores, one thread, torch 2.13 CPU; the 13 registry optimizers without the
restart variants, seeds 0 and 1; the known structure trained alone on the batches
``fit`` draws, in its order: test MSE 0.060 and 0.111): the three relevant gates are open
in 25 of 26 runs and the structure is exactly the known one in 19; the searched test MSE
is 0.11-0.57 (1.8-5.1x), and 1.8-4.2x on the 19 runs that found the known structure
exactly: there the gap is in the weights. The found structure's weights had about a third of the
training to themselves (the fair share, half the steps, trains under random gates and
activations), and weights trained so carry over little to it (seed 1, a plain loop: 224
such steps, then 96 on the known structure, end at 0.49 with a random activation, 0.30
with ReLU fixed, against 0.57 for the 96 steps alone). ``--fair-steps 0.25 --final-steps
0.5`` takes seed 1 of CEM, CMA-ES, REINFORCE and SNES from 0.42-0.53 to 0.32-0.37.

``--retrain`` then trains the found structure alone from the starting weights for as
many epochs (:meth:`~nondiff.hybrid.trainer.HybridTrainer.retrain`, at 3x the compute of
training it alone, search included): the 19 runs that found the known structure end at
exactly its MSE trained alone (1.0x), those with a noise gate open at 0.9-1.3x, and the
one that closed a relevant gate at 4.7x. Within 2x the gap is not solved (issue 17).

Command::

    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.hybrid_tasks.regression_gap
    python -m nondiff.benchmarks.hybrid_tasks.regression_gap --seeds 2 --optimizers cmaes \\
        --fair-steps 0.25 --final-steps 0.5
    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.hybrid_tasks.regression_gap --retrain

Example:
    >>> row = run_one("fixed", seed=0, epochs=1)
    >>> sorted(row) == ["forward_examples", "optimizer", "recovered", "seed", "structure",
    ...                 "test_mse"]
    True
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from nondiff.hybrid.batches import RowBatches
from nondiff.hybrid.structure import set_structure, structure_space
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.optim import registry
from nondiff.optim.spaces import leaf_kinds
from nondiff.problems.hybrid.acceptance import GatedActivationMLP
from torch import nn
from torch.utils.data import TensorDataset

__all__ = ["RELEVANT", "known_structure", "main", "make_data", "recovered", "run_one",
           "structure_optimizers"]

RELEVANT = (1, 4, 7)
"""The inputs the target depends on: ``sin(2 x_1) + x_4^2 - x_7``."""
FEATURES, ROWS, GATE_COST = 10, 2000, 0.01


def make_data(seed: int) -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)``, 2,000 rows each; ``y`` of shape ``(n, 1)``."""
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(2 * ROWS, FEATURES, generator=g)
    y = (torch.sin(2 * x[:, 1]) + x[:, 4].square() - x[:, 7]
         + 0.1 * torch.randn(2 * ROWS, generator=g))[:, None]
    return x[:ROWS], y[:ROWS], x[ROWS:], y[ROWS:]


def known_structure() -> dict[str, Any]:
    """The relevant gates open and ReLU."""
    mask = np.zeros(FEATURES, dtype=bool)
    mask[list(RELEVANT)] = True
    return {"gates": mask, "act": "relu"}


def _gate_cost(structure: Mapping[str, Any]) -> float:
    return GATE_COST * float(np.sum(structure["gates"]))


def recovered(structure: Mapping[str, Any]) -> bool:
    """Whether ``structure`` opens exactly the relevant gates, with ReLU or tanh."""
    return bool(np.array_equal(np.asarray(structure["gates"], dtype=bool),
                               known_structure()["gates"]) and structure["act"] != "identity")


def _model() -> GatedActivationMLP:
    return GatedActivationMLP(FEATURES, hidden=32, classes=1)


def _adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-2)


def structure_optimizers() -> list[str]:
    """Registry names that search the model's space (gates and a categorical), without
    the ``ipop-``/``bipop-`` restart variants."""
    return [n for n in registry.names_supporting(leaf_kinds(structure_space(_model())))
            if not n.startswith(("ipop-", "bipop-"))]


def run_one(optimizer: str, seed: int, epochs: int = 10, retrain: bool = False,
            **trainer_options: Any) -> dict[str, Any]:
    """``optimizer``'s search (``"fixed"``: the known structure trained alone) on seed
    ``seed``, with ``HybridTrainer``'s defaults or ``trainer_options`` (e.g.
    ``fair_steps=0.25, final_steps=0.5``), and with ``retrain`` the found structure then
    retrained alone for as many epochs (:meth:`HybridTrainer.retrain`): the recommended
    structure, whether it is the known one, the test MSE and the forward examples."""
    x, y, x_test, y_test = make_data(seed)
    torch.manual_seed(seed)
    model = _model()
    if optimizer == "fixed":
        set_structure(model, known_structure())
        opt, rows = _adam(model.parameters()), RowBatches(TensorDataset(x, y))
        for epoch in range(epochs):  # the batches fit draws, in its order
            for xb, yb in rows.batches(64, seed=seed, epoch=epoch):
                opt.zero_grad()
                nn.functional.mse_loss(model(xb), yb).backward()
                opt.step()
        found, forwards = known_structure(), epochs * ROWS
    else:
        trainer = HybridTrainer(model, optimizer, _adam, loss=nn.functional.mse_loss,
                                structure_cost=_gate_cost, seed=seed, progress=False,
                                **trainer_options)
        trainer.fit(TensorDataset(x, y), epochs=epochs, batch_size=64, seed=seed)
        found = trainer.recommended()
        if retrain:
            trainer.retrain(TensorDataset(x, y), epochs=epochs, batch_size=64, seed=seed)
        forwards = trainer.forward_examples
    with torch.no_grad():
        mse = float(nn.functional.mse_loss(model(x_test), y_test))
    return {"optimizer": optimizer, "seed": seed, "structure": found,
            "recovered": recovered(found), "test_mse": mse, "forward_examples": forwards}


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the table; returns its rows (each with the seed's ``fixed_mse``)."""
    parser = argparse.ArgumentParser(
        description="Structure search on a regression: test MSE against the known "
                    "structure trained alone.")
    parser.add_argument("--seeds", type=int, default=2, help="seeds 0 .. N-1")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--optimizers", nargs="+", default=None,
                        help="registry names (default: every one that searches the "
                             "model's space, but the ipop-/bipop- variants)")
    parser.add_argument("--fair-steps", type=float, default=None,
                        help="HybridTrainer(fair_steps=); default: the trainer's")
    parser.add_argument("--final-steps", type=float, default=None,
                        help="HybridTrainer(final_steps=); default: the trainer's")
    parser.add_argument("--retrain", action="store_true",
                        help="retrain the found structure alone after the search "
                             "(HybridTrainer.retrain), for as many epochs")
    args = parser.parse_args(argv)
    names = args.optimizers or structure_optimizers()
    options = {k: v for k, v in (("fair_steps", args.fair_steps),
                                 ("final_steps", args.final_steps)) if v is not None}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    fixed = {s: run_one("fixed", s, args.epochs)["test_mse"] for s in range(args.seeds)}
    rows = []
    print(f"{'optimizer':16s} {'seed':>4s} {'recovered':>9s} {'test MSE':>9s} "
          f"{'fixed':>7s} {'ratio':>6s} {'compute':>7s}  gates act")
    for name in names:
        for seed in range(args.seeds):
            row = run_one(name, seed, args.epochs, args.retrain, **options)
            row["fixed_mse"] = fixed[seed]
            gates = "".join("1" if b else "0" for b in np.asarray(row["structure"]["gates"]))
            print(f"{name:16s} {seed:4d} {row['recovered']!s:>9s} {row['test_mse']:9.3f} "
                  f"{fixed[seed]:7.3f} {row['test_mse'] / fixed[seed]:5.1f}x "
                  f"{row['forward_examples'] / (args.epochs * ROWS):6.1f}x  "
                  f"{gates} {row['structure']['act']}", flush=True)
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
