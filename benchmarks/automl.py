"""AutoML on a real training run: ours (nondiff.tune, one-shot HybridTrainer) vs Optuna.

The task is :class:`nondiff.problems.automl.CNNTask`: a small 1-D CNN on a locally
generated MNIST-1D, eight hyperparameters of mixed kinds (learning rate and weight
decay on a log scale, width and depth, activation and optimizer, dropout, batch size;
:data:`nondiff.problems.automl.SPACE`). Every method gets the same total compute,
``--budget`` training epochs summed over its trials (``trial.report`` calls), and one
full trial is ``max_steps`` epochs. Methods, run side by side in one process, seed by
seed (interleaved: a slow phase of a shared machine hits every method alike):

- ``optuna-tpe-median``: Optuna's TPE sampler + ``MedianPruner`` (the anchor);
- ``optuna-tpe-hyperband``: TPE + ``HyperbandPruner`` (min 1, max ``max_steps``, eta 3);
- ``random``: random configurations, every trial to the end (Bergstra & Bengio 2012);
- ``cmaes-asha``, ``reinforce-asha``, ``ga-asha``: :func:`nondiff.tune.tune` with that
  optimizer proposing and asynchronous successive halving (Li et al. 2020) stopping
  (the GA searches discrete spaces only: it gets the three reals on grids of 16
  values, log-spaced for the log reals; :func:`grid`);
- ``pbt``: :func:`nondiff.tune.tune` with population-based training (Jaderberg et
  al. 2017), CMA-ES proposing the members, ``budget // max_steps`` of them (one
  population that spends the budget: 15 at 300 epochs; the optimizer's popsize of
  10 trained 1.5 populations, the second cut off halfway: best val 85.6 ± 1.0 against
  87.0 ± 2.1 %, test 83.9 ± 1.4 against 83.7 ± 1.9 %, 5 seeds); explore perturbs
  learning rate, weight decay, dropout and batch size (architecture and optimizer
  kind stay the donor's, whose weights and optimizer state are copied);
- ``oneshot``: architecture by weight sharing, then hyperparameters. Width, depth and
  activation are structure leaves of one :class:`~nondiff.problems.automl.SuperNet`
  that :class:`~nondiff.hybrid.trainer.HybridTrainer` trains for half of ``max_steps``
  epochs (half of its steps uniform warm-up, Guo et al. 2020; then REINFORCE proposes
  architectures, each evaluated on the batch with the shared weights, Pham et al.
  2018) under fixed hyperparameters (AdamW, lr 1e-2, batch 64: at lr 3e-3 the
  supernet and the architecture it found underfit in 20 epochs, 66-79 % validation
  accuracy for the found network inside the supernet and 78-84 % for it trained
  alone at those settings, seeds 0-4, so the search after it started far from the
  configs that reach 90 %; half the epochs
  found about the same architectures as the full 20 on seeds 0-4: widths 22-30
  against 26-31, the same depth on three). The found
  architecture is then fixed and the rest of the budget goes to ``tune`` (CMA-ES +
  ASHA) over the other five hyperparameters, CMA-ES's mean starting at the
  supernet's hyperparameters, every trial starting from the supernet's weights of
  that architecture (:meth:`~nondiff.problems.automl.SuperNet.subnet_state`: the
  weight sharing's saving, no epochs spent again on what the supernet learned; from
  scratch, ``run_oneshot(inherit=False)``, reached Optuna's best later, see
  :func:`run_oneshot`). The final pick is still scored after a retrain from scratch,
  like every method's.
  The supernet's compute counts: each of its epochs is one epoch of weight
  steps plus the candidates' forward passes at a third of a training epoch each
  (forward + backward ~ 3 forward passes).

Measured per method and seed: the best validation accuracy reported so far against
the compute spent (the curve, also plotted), the final pick (the configuration of
the best validation report) and its **test accuracy after retraining from scratch**
for ``max_steps`` epochs with a fixed seed (the same protocol for every method, not
counted in the budget; no method's checkpoint is scored), and the compute at which
the method first reaches Optuna's final best validation accuracy on that seed (the
better of the two Optuna runs). The table gives means ± standard errors over seeds.

Target: a method of ours reaches Optuna's final best with <= 50 % of Optuna's compute
(median over seeds, a seed that never reaches it counting as infinite) and its pick's
test accuracy is >= Optuna's (the mean over seeds) at the same budget.

    python -m nondiff.benchmarks.automl [--quick] [--seeds 5] [--budget 300] [--out DIR]
    # seeds split across processes, then one table:
    python -m nondiff.benchmarks.automl --seeds 3 --out a & \
        python -m nondiff.benchmarks.automl --seed-start 3 --seeds 2 --out b; wait
    python -m nondiff.benchmarks.automl --merge a/automl.json b/automl.json --out both

Sources: J. Bergstra, Y. Bengio, "Random search for hyper-parameter optimization", JMLR
2012; T. Akiba et al., "Optuna", KDD 2019; L. Li et al., "A system for massively
parallel hyperparameter tuning" (ASHA), MLSys 2020; L. Li et al., "Hyperband", JMLR
2018; M. Jaderberg et al., "Population based training of neural networks", 2017; H. Pham
et al., "Efficient neural architecture search via parameter sharing", ICML 2018; J. T.
Ash, R. P. Adams, "On warm-starting neural network training", NeurIPS 2020; Z. Guo et
al., "Single path one-shot neural architecture search with uniform sampling", ECCV 2020.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.optim.minimize import make_optimizer
from nondiff.optim.registry import names_supporting
from nondiff.optim.spaces import Categorical, Integer, Product, Real, leaf_kinds
from nondiff.problems.automl import SPACE, CNNTask, SuperNet

__all__ = ["METHODS", "OURS", "Result", "grid", "main", "run_method", "summarize"]

ANCHORS = ("optuna-tpe-median", "optuna-tpe-hyperband")
OURS = ("cmaes-asha", "reinforce-asha", "ga-asha", "pbt", "oneshot")
METHODS = (*ANCHORS, "random", *OURS)
ARCHITECTURE = ("width", "depth", "activation")
SUPERNET_HPARAMS = {"lr": 1e-2, "weight_decay": 1e-4, "optimizer": "adam", "dropout": 0.0,
                    "batch_size": 64}
EVAL_SEED = 12345  # the retrain of every final pick uses this seed
PBT_MUTABLE = ("lr", "weight_decay", "dropout", "batch_size")


@dataclass
class Result:
    """One method on one seed."""

    method: str
    seed: int
    curve: list[tuple[float, float]]  # (compute, best validation accuracy so far)
    compute: float
    pick: dict[str, Any]
    best_val: float
    test: float = math.nan
    seconds: float = 0.0
    trials: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def compute_to(self, target: float) -> float:
        """The compute at which the curve first reaches ``target`` (inf if never)."""
        for compute, best in self.curve:
            if best >= target - 1e-12:
                return compute
        return math.inf


# ----- the anchors' loop: a budget of epochs shared by the trials ----------------------
class _Budget:
    """Counts reported epochs across trials and keeps the best report's config."""

    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0
        self.curve: list[tuple[float, float]] = []
        self.best, self.pick, self.trials = -math.inf, {}, 0

    @property
    def spent(self) -> bool:
        return self.used >= self.budget

    def record(self, config: Mapping[str, Any], metric: float) -> None:
        self.used += 1
        if metric > self.best:
            self.best, self.pick = metric, dict(config)
        self.curve.append((float(self.used), self.best))


class _BudgetTrial:
    """The trial a user's ``train`` sees: reports go to the budget (and to an Optuna
    trial when there is one, whose pruner then decides ``should_stop``)."""

    def __init__(self, budget: _Budget, config: Mapping[str, Any], optuna_trial: Any = None
                 ) -> None:
        self.budget, self.config, self.optuna_trial = budget, config, optuna_trial
        self.pruned = False

    def report(self, step: int, metric: float) -> None:
        self.budget.record(self.config, float(metric))
        if self.optuna_trial is not None:
            self.optuna_trial.report(float(metric), int(step))

    def should_stop(self) -> bool:
        if self.budget.spent:
            return True
        if self.optuna_trial is not None and self.optuna_trial.should_prune():
            self.pruned = True
        return self.pruned

    def checkpoint(self, state: Mapping[str, Any]) -> None:
        pass  # full or pruned trials never resume

    def restore(self) -> None:
        return None


def _suggest(trial: Any, space: Product) -> dict[str, Any]:
    """One config of ``space`` from an Optuna trial (log reals as log, like ours)."""
    config: dict[str, Any] = {}
    for name, leaf in space.spaces.items():
        if isinstance(leaf, Real):
            config[name] = trial.suggest_float(name, leaf.low, leaf.high, log=leaf.log)
        elif isinstance(leaf, Integer):
            config[name] = trial.suggest_int(name, leaf.low, leaf.high)
        elif isinstance(leaf, Categorical):
            config[name] = trial.suggest_categorical(name, leaf.choices)
        else:
            raise ValueError(f"no Optuna distribution for {name!r}: {leaf!r}")
    return config


def run_optuna(task: CNNTask, budget: int, seed: int, pruner: str) -> _Budget:
    """TPE + ``pruner`` ("median" or "hyperband") until ``budget`` epochs are spent."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruners = {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5,
                                                             n_warmup_steps=1),
               "hyperband": lambda: optuna.pruners.HyperbandPruner(
                   min_resource=1, max_resource=task.epochs, reduction_factor=3)}
    # a fixed study name: HyperbandPruner assigns trials to brackets by a hash of it
    study = optuna.create_study(direction="maximize", pruner=pruners[pruner](),
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                study_name=f"automl-{pruner}-{seed}")
    spent = _Budget(budget)

    def objective(trial: Any) -> float:
        config = _suggest(trial, SPACE)
        adapter = _BudgetTrial(spent, config, trial)
        spent.trials += 1
        value = task.train(config, adapter)
        if adapter.pruned:
            raise optuna.TrialPruned()
        return value

    def stop(study: Any, _: Any) -> None:
        if spent.spent:
            study.stop()

    study.optimize(objective, n_trials=10 * budget, callbacks=[stop])
    return spent


def run_random(task: CNNTask, budget: int, seed: int) -> _Budget:
    """Random configurations of the space, every one trained to the end."""
    rng = np.random.default_rng(seed)
    spent = _Budget(budget)
    while not spent.spent:
        config = SPACE.decode(SPACE.sample(rng, 1)[0])
        spent.trials += 1
        task.train(config, _BudgetTrial(spent, config))
    return spent


# ----- ours --------------------------------------------------------------------------
def _study_result(study: Any, offset: float = 0.0) -> tuple[list[tuple[float, float]],
                                                             float, dict[str, Any], float, int]:
    curve = [(offset + float(c), float(b)) for c, b in study.best_curve()]
    return (curve, offset + float(study.compute), dict(study.best_config),
            float(study.best_metric), len(study.trials))


def grid(space: Product, points: int = 16) -> Product:
    """``space`` with every real leaf replaced by ``points`` values (log-spaced for a log
    real) as a categorical leaf: the space a discrete-only optimizer (the GA) searches."""
    parts = {}
    for name, leaf in space.spaces.items():
        if isinstance(leaf, Real):
            values = (np.geomspace if leaf.log else np.linspace)(leaf.low, leaf.high, points)
            parts[name] = Categorical([float(v) for v in values])
        else:
            parts[name] = leaf
    return Product(parts)


class _StartedAt(Product):
    """A :class:`Product` whose optimizers start at ``config`` (its ``initial()``)
    instead of the middle of the box: the same space (and repr) otherwise."""

    def __init__(self, space: Product, config: Mapping[str, Any]) -> None:
        super().__init__(space.spaces)
        self._start = space.encode(dict(config))

    def initial(self) -> np.ndarray:
        return self._start.copy()


def run_tune(task: CNNTask, budget: int, seed: int, optimizer: Any, scheduler: str,
             space: Product = SPACE, init: SuperNet | None = None) -> Any:
    """:func:`nondiff.tune.tune` on the task, in this process (no pool: one core each);
    the GA, which searches discrete spaces only, gets :func:`grid` of the space. PBT's
    explore step changes only :data:`PBT_MUTABLE` (a copied network keeps its shape
    and its kind of optimizer, whose state it copies). ``init``: a trained supernet every
    trial's network starts from (:meth:`CNNTask.train`)."""
    from nondiff.tune import PBT, tune

    if isinstance(optimizer, str) and optimizer not in names_supporting(leaf_kinds(space)):
        space = grid(space)
    if scheduler == "pbt":  # one population that spends the budget (the default, the
        # optimizer's popsize of 10, trains 1.5: the second is cut off halfway)
        scheduler = PBT(mutable=PBT_MUTABLE, population=max(2, budget // task.epochs))

    train = task.train if init is None else functools.partial(task.train, init=init)
    return tune(train, space, optimizer=optimizer, scheduler=scheduler, budget=budget,
                max_steps=task.epochs, mode="max", parallel=1, executor="inline", seed=seed)


def _error_rate(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (output.argmax(dim=1) != y).float().mean()


def run_oneshot(task: CNNTask, budget: int, seed: int, popsize: int = 4,
                inherit: bool = True, epochs: int | None = None
                ) -> tuple[Any, float, dict[str, Any]]:
    """The supernet search, then ``tune`` over the other hyperparameters with the found
    architecture fixed, CMA-ES's mean starting at the supernet's hyperparameters;
    returns (study, supernet compute, architecture). ``epochs``: the supernet's
    (default half of ``task.epochs``). ``inherit``: every trial fine-tunes the
    supernet's weights of the architecture instead of training from scratch. Measured
    on this task (budget 300, seeds 0-4, the same supernets, lr 1e-2 for 10 epochs):
    with it, Optuna's best is reached at 37, 57, 97, never, 68 epochs (median 23 %
    of Optuna's compute), best val 91.6 ± 1.3 %, test 89.7 ± 0.7 %; from scratch at
    34, 176, never, never, 77 (median 59 %), best val 91.8 ± 0.6 %, test
    89.3 ± 0.9 %. (Under the earlier supernet, lr 3e-3 for 20 epochs, whose networks
    sat at 66-79 % validation accuracy, fine-tuning was worse: best val 87.3 ± 1.9 vs
    90.6 ± 0.9 %, test 72.6 ± 14.8 vs 89.6 ± 1.7 %; warm-started training can
    generalize worse, Ash & Adams 2020, and the retrain from scratch scores that.)"""
    epochs = max(1, task.epochs // 2) if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs (the supernet's) must be a positive integer or None, got "
                         f"{epochs!r}")
    torch.manual_seed(seed)
    net = SuperNet(dropout=SUPERNET_HPARAMS["dropout"])
    data = task.data
    batch = SUPERNET_HPARAMS["batch_size"]
    steps = epochs * data.num_batches(batch)
    trainer = HybridTrainer(
        net, "reinforce",
        lambda p: torch.optim.AdamW(p, lr=SUPERNET_HPARAMS["lr"],
                                    weight_decay=SUPERNET_HPARAMS["weight_decay"]),
        fitness=_error_rate, seed=seed, warmup_steps=steps // 2, progress=False,
        structure_options={"popsize": popsize},
        search_compute=None)  # a generation scored every step (counted below): the
    # measured setting; the trainer's bounded default found other architectures
    trainer.fit(data, epochs=epochs, batch_size=batch, seed=seed)
    examples = len(data.y_train)
    weight_epochs = epochs  # one weight step per batch
    evaluation_passes = trainer.forward_examples / examples - weight_epochs
    supernet = weight_epochs + evaluation_passes / 3.0
    arch = {k: v for k, v in trainer.recommended().items() if k in ARCHITECTURE}
    fixed = Product({name: (Categorical([arch[name]]) if name in arch else leaf)
                     for name, leaf in SPACE.spaces.items()})
    rest = max(task.epochs, budget - math.ceil(supernet))
    started = _StartedAt(fixed, {**SUPERNET_HPARAMS, **arch})
    optimizer = make_optimizer("cmaes", started, seed=seed)
    study = run_tune(task, rest, seed, optimizer, "asha", space=started,
                     init=net if inherit else None)
    return study, supernet, arch


def run_method(method: str, task: CNNTask, budget: int, seed: int) -> Result:
    """One method on one seed; the pick is scored on the test split after a retrain."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
    start = time.perf_counter()
    notes: dict[str, Any] = {}
    if method in ANCHORS or method == "random":
        spent = (run_random(task, budget, seed) if method == "random"
                 else run_optuna(task, budget, seed, method.rsplit("-", 1)[1]))
        curve, compute, pick, best, trials = (spent.curve, float(spent.used), spent.pick,
                                              spent.best, spent.trials)
    elif method == "oneshot":
        study, supernet, arch = run_oneshot(task, budget, seed)
        curve, compute, pick, best, trials = _study_result(study, offset=supernet)
        notes = {"supernet_compute": supernet, "architecture": arch}
    else:
        optimizer, scheduler = method.split("-") if method != "pbt" else ("cmaes", "pbt")
        curve, compute, pick, best, trials = _study_result(
            run_tune(task, budget, seed, optimizer, scheduler))
    seconds = time.perf_counter() - start
    state = task.retrain(pick, seed=EVAL_SEED)
    return Result(method, seed, curve, compute, _plain(pick), best,
                  task.test_accuracy(pick, state), seconds, trials, notes)


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in config.items()}


# ----- the report --------------------------------------------------------------------
def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    se = float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else math.nan
    return float(array.mean()), se


def _pm(values: Sequence[float], scale: float = 100.0) -> str:
    mean, se = _mean_se(values)
    return f"{scale * mean:5.1f} ± {scale * se:3.1f}" if math.isfinite(se) \
        else f"{scale * mean:5.1f}      "


def summarize(results: Sequence[Result], budget: int) -> dict[str, Any]:
    """Print the table and the verdict on the target; returns the numbers."""
    methods = list(dict.fromkeys(r.method for r in results))
    seeds = sorted({r.seed for r in results})
    by = {(r.method, r.seed): r for r in results}
    anchors = [m for m in ANCHORS if m in methods]
    target = {s: max(by[m, s].best_val for m in anchors) for s in seeds} if anchors else {}
    # Optuna's compute: the budget it used (the run holding the target on each seed)
    anchor_compute = {s: max((by[m, s] for m in anchors), key=lambda r: r.best_val).compute
                      for s in seeds} if anchors else {}
    print(f"\n{len(seeds)} seeds, budget {budget} epochs per method; test = the final pick "
          f"retrained from scratch (seed {EVAL_SEED}, not counted), scored on the test split")
    header = (f"{'method':<22} {'best val %':>13} {'test %':>13} {'to Optuna best':>15} "
              f"{'reached':>8} {'compute':>8} {'trials':>7} {'s/run':>7}")
    print(header)
    print("-" * len(header))
    rows: dict[str, Any] = {}
    for method in methods:
        mine = [by[method, s] for s in seeds]
        ratios = [r.compute_to(target[r.seed]) / anchor_compute[r.seed] for r in mine] \
            if target else [math.nan]
        median = float(np.median(ratios))
        reached = sum(math.isfinite(x) for x in ratios)
        rows[method] = {"best_val": _mean_se([r.best_val for r in mine]),
                        "test": _mean_se([r.test for r in mine]),
                        "ratio_median": median, "reached": reached,
                        "compute": float(np.mean([r.compute for r in mine]))}
        ratio = ">1" if math.isinf(median) else "-" if math.isnan(median) \
            else f"{100 * median:.0f} %"
        print(f"{method:<22} {_pm([r.best_val for r in mine]):>13} "
              f"{_pm([r.test for r in mine]):>13} {ratio:>15} {reached:>4}/{len(mine):<3} "
              f"{rows[method]['compute']:8.0f} {np.mean([r.trials for r in mine]):7.1f} "
              f"{np.mean([r.seconds for r in mine]):7.1f}")
    verdict = {}
    if anchors:
        optuna_test = max(rows[m]["test"][0] for m in anchors)
        print(f"\nTarget: reach Optuna's final best validation accuracy (per seed, the better "
              f"Optuna run) with <= 50 % of its compute (median over seeds), and a test "
              f"accuracy >= Optuna's ({100 * optuna_test:.1f} %, the better Optuna mean)")
        for method in [m for m in methods if m in OURS]:
            row = rows[method]
            fast = row["ratio_median"] <= 0.5
            good = row["test"][0] >= optuna_test
            verdict[method] = fast and good
            share = "never" if math.isinf(row["ratio_median"]) \
                else format(row["ratio_median"], ".0%")
            print(f"    {method:<20} compute {'met' if fast else 'MISSED':>6} ({share}), "
                  f"test {'met' if good else 'MISSED':>6} "
                  f"({100 * (row['test'][0] - optuna_test):+.1f} points)")
        print(f"target met by: {[m for m, ok in verdict.items() if ok] or 'none'}")
    return {"rows": rows, "verdict": verdict, "targets": target}


def plot(results: Sequence[Result], budget: int, path: Path) -> Path:
    """Best validation accuracy vs compute, mean over seeds (band: ± one standard
    error), one line per method; written as a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    grid = np.linspace(0.0, budget, 200)
    figure = Figure(figsize=(7.5, 4.8))
    ax = figure.add_subplot()
    for method in dict.fromkeys(r.method for r in results):
        lines = []
        for r in (r for r in results if r.method == method):
            compute = np.array([c for c, _ in r.curve] or [0.0])
            best = np.array([b for _, b in r.curve] or [math.nan])
            where = np.searchsorted(compute, grid, side="right") - 1
            lines.append(np.where(where >= 0, best[np.clip(where, 0, None)], np.nan))
        lines_arr = np.array(lines)
        with warnings.catch_warnings():  # before a method's first report: all NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(lines_arr, axis=0)
            se = np.nanstd(lines_arr, axis=0, ddof=1) / math.sqrt(len(lines)) \
                if len(lines) > 1 else None
        style = "-" if method in OURS else "--"
        (line,) = ax.plot(grid, 100 * mean, style, label=method)
        if se is not None:
            ax.fill_between(grid, 100 * (mean - se), 100 * (mean + se),
                            color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("compute (training epochs summed over trials)")
    ax.set_ylabel("best validation accuracy so far (%)")
    ax.set_title("MNIST-1D CNN: hyperparameters and architecture")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def machine() -> str:
    """One line: processor, cores, torch threads, library versions."""
    try:
        import optuna

        version = optuna.__version__
    except ImportError:
        version = "missing"
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
            f"(torch threads {torch.get_num_threads()}), python {platform.python_version()}, "
            f"torch {torch.__version__}, optuna {version}")


def main(argv: Sequence[str] | None = None,
         runner: Callable[[str, CNNTask, int, int], Result] = run_method) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=None,
                        help="training epochs per method and seed (default 300; quick 24)")
    parser.add_argument("--quick", action="store_true",
                        help="a small task (1,000 examples, 4-epoch trials), budget 24")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--out", type=Path, default=Path("automl-results"),
                        help="directory for automl.png and automl.json")
    parser.add_argument("--seed-start", type=int, default=0,
                        help="first seed (split seeds across processes, then --merge)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="no runs: the table and plot of saved automl.json files together")
    args = parser.parse_args(argv)
    if args.merge:
        return _merge(args.merge, args.out)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    task = CNNTask(n=1000, epochs=4) if args.quick else CNNTask(n=4000, epochs=20)
    budget = args.budget if args.budget is not None else (24 if args.quick else 300)
    if budget < task.epochs:
        parser.error(f"--budget must be at least one full trial ({task.epochs} epochs), "
                     f"got {budget}")
    torch.set_num_threads(1)
    print(machine())
    print(f"task: MNIST-1D CNN, {task.n} examples, trials of {task.epochs} epochs; "
          f"budget {budget} epochs per method and seed; methods {methods}")
    results: list[Result] = []
    seeds = range(args.seed_start, args.seed_start + args.seeds)
    for seed in seeds:  # interleaved: every method on a seed, then the next
        for method in methods:
            result = runner(method, task, budget, seed)
            results.append(result)
            print(f"  seed {seed} {method:<22} best val {100 * result.best_val:5.1f} test "
                  f"{100 * result.test:5.1f} compute {result.compute:5.0f} trials "
                  f"{result.trials:3d} {result.seconds:6.1f} s  pick {result.pick}", flush=True)
            _save(results, budget, asdict(task), machine(), args.out)  # kept if cut short
    return _report(results, budget, asdict(task), machine(), args.out)


def _report(results: Sequence[Result], budget: int, task: dict[str, Any], where: str,
            out: Path) -> dict[str, Any]:
    summary = summarize(results, budget)
    figure = plot(results, budget, out / "automl.png")
    _save(results, budget, task, where, out, summary)
    print(f"plot: {figure}; results: {out / 'automl.json'}")
    return summary


def _save(results: Sequence[Result], budget: int, task: dict[str, Any], where: str, out: Path,
          summary: dict[str, Any] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "automl.json").write_text(json.dumps(
        {"budget": budget, "task": task, "machine": where,
         "results": [asdict(r) for r in results], "summary": summary},
        default=float, indent=1))


def _merge(paths: Sequence[Path], out: Path) -> dict[str, Any]:
    """The report of several saved runs (e.g. seeds split across processes)."""
    saved = [json.loads(Path(p).read_text()) for p in paths]
    settings = {(s["budget"], json.dumps(s["task"], sort_keys=True)) for s in saved}
    if len(settings) != 1:
        raise ValueError(f"--merge needs runs of one budget and task, got {sorted(settings)}")
    results = [Result(**{**r, "curve": [tuple(p) for p in r["curve"]]})
               for s in saved for r in s["results"]]
    keys = [(r.method, r.seed) for r in results]
    if len(set(keys)) != len(keys):
        raise ValueError("--merge got the same (method, seed) twice; merge runs of other seeds")
    methods = set(dict.fromkeys(r.method for r in results))
    cut = sorted(s for s in {r.seed for r in results}
                 if {r.method for r in results if r.seed == s} != methods)
    if cut:  # a run cut short: compare on the seeds every method finished
        print(f"left out seeds {cut}: not every method finished them")
        results = [r for r in results if r.seed not in cut]
    for line in dict.fromkeys(run["machine"] for run in saved):
        print(line)
    return _report(results, saved[0]["budget"], saved[0]["task"], saved[0]["machine"], out)


if __name__ == "__main__":
    main()
