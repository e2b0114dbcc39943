"""Clones in a study: ``one-plus-lambda`` vs random search on a tiny torch regression.

An optimizer of discrete spaces (``one-plus-lambda``, on the 16-point grid the study
puts on each real leaf) proposes configs it has already seen; the study tells such a
clone the fitness of the trial that already ended with that config instead of
training it again (:mod:`nondiff.hybrid.tune.driver`). This measures what that buys
at a fixed compute: the study's best validation loss, its trials and distinct
configs, and how many proposals were clones, against random search (uniform configs,
each trained to the end; Bergstra & Bengio 2012, "Random search for hyper-parameter
optimization", JMLR 13) with the same budget. Run side by side, seed by seed::

    python -m nondiff.benchmarks.studies.tune_clones --seeds 3

The task: a 2-16-1 tanh MLP fitted full batch to y = sin(3x) + noise (256 training,
256 validation points), ``max_steps`` epochs of 20 steps each; the space is the
learning rate (log, 1e-4..1), weight decay (log, 1e-6..1e-1) and the optimizer
(sgd/adam); executor ``inline``, no scheduler (every trial trains to ``max_steps``).
"""

from __future__ import annotations

import argparse
import math
import statistics

import numpy as np
import torch
from nondiff.benchmarks.timing import machine
from nondiff.hybrid.tune.space import study_space
from nondiff.optim.spaces import Categorical, Real

from nondiff.tune import tune

SPACE = {"lr": Real(1e-4, 1.0, log=True), "weight_decay": Real(1e-6, 1e-1, log=True),
         "optimizer": Categorical(["sgd", "adam"])}


def _data() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(512, 1, generator=generator) * 4 - 2
    y = torch.sin(3 * x) + 0.1 * torch.randn(512, 1, generator=generator)
    return x[:256], y[:256], x[256:], y[256:]


DATA = _data()


def validation_losses(config: dict, max_steps: int):
    """Yields the validation MSE after each epoch of training with ``config``."""
    x, y, xv, yv = DATA
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    kind = torch.optim.SGD if config["optimizer"] == "sgd" else torch.optim.Adam
    optimizer = kind(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    for _ in range(max_steps):
        for _ in range(20):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
        with torch.no_grad():
            loss = float(torch.nn.functional.mse_loss(model(xv), yv))
        yield loss if np.isfinite(loss) else float("nan")


def train(config: dict, trial) -> None:
    for step, loss in enumerate(validation_losses(config, trial.max_steps), start=1):
        trial.report(step, loss)
        if trial.should_stop():
            return


def run_tune(optimizer: str, budget: int, max_steps: int, seed: int) -> dict:
    study = tune(train, SPACE, optimizer=optimizer, scheduler=None, budget=budget,
                 max_steps=max_steps, mode="min", executor="inline", seed=seed)
    distinct = {tuple(t.encoded) for t in study.trials}
    return {"best": study.best_metric, "trials": len(study.trials), "distinct": len(distinct),
            "clones": getattr(study, "clones", 0), "compute": study.compute}


def run_random(budget: int, max_steps: int, seed: int) -> dict:
    space = study_space(SPACE)
    rng = np.random.default_rng(seed)
    trials = budget // max_steps
    best = min((loss for row in space.sample(rng, trials)
                for loss in validation_losses(space.decode(row), max_steps)
                if math.isfinite(loss)), default=math.nan)
    return {"best": best, "trials": trials, "distinct": trials, "clones": 0,
            "compute": trials * max_steps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=72)
    parser.add_argument("--max-steps", type=int, default=4)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(machine("cpu"))
    methods = {"one-plus-lambda": lambda s: run_tune("one-plus-lambda", args.budget,
                                                     args.max_steps, s),
               "random": lambda s: run_random(args.budget, args.max_steps, s)}
    rows: dict[str, list[dict]] = {name: [] for name in methods}
    for seed in range(args.seeds):  # interleaved, seed by seed
        for name, method in methods.items():
            out = method(seed)
            rows[name].append(out)
            print(f"seed {seed} {name:>16}: best val MSE {out['best']:.4f}, {out['trials']} "
                  f"trials, {out['distinct']} distinct configs, {out['clones']} clones told "
                  f"without training, compute {out['compute']}")
    for name, outs in rows.items():
        print(f"{name:>16}: median best val MSE "
              f"{statistics.median(o['best'] for o in outs):.4f} over {args.seeds} seeds")
    ours = statistics.median(o["best"] for o in rows["one-plus-lambda"])
    print(f"ratio one-plus-lambda / random (median best val MSE): "
          f"{ours / statistics.median(o['best'] for o in rows['random']):.3f}")


if __name__ == "__main__":
    main()
