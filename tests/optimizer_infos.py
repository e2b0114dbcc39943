"""Per-optimizer configurations for the contract tests, in the manner of torch's
``OptimizerInfo`` (``torch/testing/_internal/common_optimizers.py``): for every registry
name, non-default configurations that every contract must hold under, and bad inputs
with the words their ValueError must contain.

A configuration is the keyword arguments of ``registry.create`` besides ``x0`` (the
contract tests add ``sigma0``, ``seed`` and the problem); the default configuration
``{}`` is always tested first. ``tests/test_contract.py`` fails for a registered
optimizer without an entry here, and for a hyperparameter that no entry exercises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OptimizerInput:
    """A configuration: ``kwargs`` for ``registry.create``; ``desc`` names it in test ids.

    ``progress``: the sphere test expects this configuration to improve on the
    first generation within a few generations.
    """

    desc: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    progress: bool = True


@dataclass(frozen=True)
class ErrorInput:
    """Arguments that must raise a ValueError whose message matches ``match``."""

    desc: str
    kwargs: dict[str, Any]
    match: str


@dataclass(frozen=True)
class OptimizerInfo:
    name: str
    inputs: tuple[OptimizerInput, ...]
    error_inputs: tuple[ErrorInput, ...]


C, E = OptimizerInput, ErrorInput  # short names for the table below
BOUNDS = C("bounds", {"bounds": (-1.0, 2.0)})
NAN = float("nan")

_CMAES_ERRORS = (
    E("covariance", {"covariance": "dense"}, "covariance"),
    E("feasible-first-not-bool", {"find_feasible_first": "yes"}, "find_feasible_first"),
    E("integer-variables-negative", {"integer_variables": [-1]}, "integer_variables"),
    E("options-unknown", {"options": {"no_such_pycma_option": 1}}, "no_such_pycma_option"),
    E("options-reserved", {"options": {"popsize": 5}}, "'popsize' is set by CMAES"),
    # checked for the problem size (resolve) and the bounds, before anything is built
    E("integer-variables-out-of-range", {"integer_variables": [6]},
      r"integer_variables \[6\] out of range for dimension 6"),
    E("integer-variable-bound-not-half", {"integer_variables": [0], "bounds": (-0.3, 2.0)},
      "integer variable 0 has bound -0.3"),
    E("popsize-one", {"popsize": 1}, r"popsize must be at least 2.*CMA-ES"),
)

_CMAES_TORCH_ERRORS = (
    E("covariance", {"covariance": "dense"}, "covariance must be one of 'full', 'diagonal'"),
    E("active-not-bool", {"active": "yes"}, "active must be True or False"),
    E("popsize-one", {"popsize": 1}, r"popsize must be at least 2.*CMA-ES"),
)

OPTIMIZER_INFOS: dict[str, OptimizerInfo] = {info.name: info for info in [
    OptimizerInfo("openai-es", (
        C("no-antithetic-odd-popsize", {"antithetic": False, "popsize": 5}),
        C("decays", {"sigma_decay": 0.9, "sigma_min": 0.05, "lr_decay": 0.95, "lr_min": 1e-3,
                     "lr": 0.1}),
        C("adam-betas-weight-decay", {"betas": (0.5, 0.9), "eps": 1e-6, "weight_decay": 0.01,
                                      "lr": 0.1}),
        C("shaping-normalized", {"shaping": "normalized", "lr": 0.1}),
        BOUNDS,
    ), (
        E("lr-zero", {"lr": 0.0}, "lr must be a finite number"),
        E("odd-popsize-antithetic", {"popsize": 7}, r"popsize must be even.*antithetic=False"),
        E("betas-not-pair", {"betas": 0.9}, "betas must be a pair"),
        E("beta2-one", {"betas": (0.9, 1.0)}, r"betas\[1\]"),
        E("sigma-decay-above-one", {"sigma_decay": 1.5}, "sigma_decay"),
        E("lr-min-negative", {"lr_min": -1.0}, "lr_min"),
        E("shaping-unknown", {"shaping": "fancy"}, "shaping: unknown fitness shaping method"),
    )),
    OptimizerInfo("pgpe", (
        C("adam", {"optimizer": "adam", "center_lr": 0.05}),
        C("sgd-momentum", {"optimizer": "sgd", "momentum": 0.5, "center_lr": 0.05}),
        C("clipup-max-speed", {"optimizer": "clipup", "max_speed": 0.2, "momentum": 0.5}),
        C("no-symmetric-odd-popsize", {"symmetric": False, "popsize": 5}),
        C("stdev-unclamped", {"stdev_max_change": None, "stdev_min": 0.01, "stdev_lr": 0.05,
                              "lr_decay": 0.9}),
        C("shaping-nes", {"shaping": "nes_utilities"}),
        BOUNDS,
    ), (
        E("optimizer-unknown", {"optimizer": "rmsprop"}, "optimizer must be one of"),
        E("max-speed-without-clipup", {"optimizer": "sgd", "max_speed": 1.0},
          "max_speed applies to optimizer='clipup'"),
        E("momentum-with-adam", {"optimizer": "adam", "momentum": 0.5}, "momentum applies"),
        E("odd-popsize-symmetric", {"popsize": 5}, r"popsize must be even.*symmetric=False"),
        E("stdev-max-change-zero", {"stdev_max_change": 0.0}, "stdev_max_change"),
        E("center-lr-nan", {"center_lr": NAN}, "center_lr"),
    )),
    OptimizerInfo("snes", (
        C("antithetic-default-popsize", {"antithetic": True}),
        C("rates-and-ranks", {"eta_mu": 0.5, "eta_sigma": 0.1, "shaping": "centered_ranks"}),
        BOUNDS,
    ), (
        E("eta-mu-zero", {"eta_mu": 0.0}, "eta_mu"),
        E("eta-sigma-inf", {"eta_sigma": float("inf")}, "eta_sigma"),
        E("odd-popsize-antithetic", {"antithetic": True, "popsize": 5}, "popsize must be even"),
        E("antithetic-not-bool", {"antithetic": 1}, "antithetic must be True or False"),
    )),
    OptimizerInfo("xnes", (
        C("rates", {"eta_mu": 0.8, "eta_sigma": 0.05, "eta_b": 0.02}),
        C("shaping-centered", {"shaping": "centered"}),
        BOUNDS,
    ), (
        E("eta-b-zero", {"eta_b": 0.0}, "eta_b"),
        E("eta-sigma-negative", {"eta_sigma": -1.0}, "eta_sigma"),
        E("shaping-none", {"shaping": None}, "shaping"),
    )),
    OptimizerInfo("cem", (
        C("extra-noise", {"extra_noise": 0.1, "noise_decay": 0.9, "popsize": 12}),
        C("no-smoothing-half-elites", {"smoothing": 1.0, "elite_frac": 0.5, "stdev_min": 0.01,
                                       "popsize": 12}),
        BOUNDS,
    ), (
        E("elite-frac-zero", {"elite_frac": 0.0}, "elite_frac"),
        E("smoothing-above-one", {"smoothing": 1.5}, "smoothing"),
        E("noise-decay-above-one", {"noise_decay": 2.0}, "noise_decay"),
        E("extra-noise-negative", {"extra_noise": -1.0}, "extra_noise"),
    )),
    OptimizerInfo("reinforce", (
        C("baseline-none", {"baseline": "none", "lr": 0.05}),
        C("moving-average", {"baseline": "moving-average", "baseline_decay": 0.5,
                             "popsize": 3}),
        C("sgd-momentum", {"optimizer": "sgd", "momentum": 0.5, "lr": 0.05}),
        C("adam-betas-entropy", {"betas": (0.5, 0.9), "entropy_bonus": 0.01}),
        C("raw-losses-absolute-mean", {"shaping": None, "mean_units": "absolute",
                                       "mean_lr": 0.1, "log_std_lr": 0.1}),
        BOUNDS,
    ), (
        E("optimizer-clipup", {"optimizer": "clipup"}, "optimizer must be one of 'adam', 'sgd'"),
        E("momentum-with-adam", {"momentum": 0.5}, "momentum applies to optimizer='sgd'"),
        E("betas-with-sgd", {"optimizer": "sgd", "betas": (0.5, 0.9)}, "betas apply"),
        E("baseline-unknown", {"baseline": "mean"}, "baseline must be one of"),
        E("baseline-decay-one", {"baseline_decay": 1.0}, "baseline_decay"),
        E("rloo-popsize-one", {"popsize": 1}, r"popsize must be at least 2.*rloo"),
        E("entropy-bonus-inf", {"entropy_bonus": float("inf")}, "entropy_bonus"),
        E("mean-units-unknown", {"mean_units": "natural"}, "mean_units must be one of"),
        E("mean-lr-zero", {"mean_lr": 0.0}, "mean_lr must be a finite number"),
        E("log-std-lr-nan", {"log_std_lr": float("nan")}, "log_std_lr must be a finite number"),
    )),
    OptimizerInfo("ga", (
        C("one-point-no-elites", {"crossover": "one-point", "elitism": 0, "popsize": 6}),
        C("no-crossover-big-tournament", {"crossover_rate": 0.0, "tournament_size": 5,
                                          "elitism": 3, "popsize": 6}),
        C("strong-mutation", {"mutation_rate": 2.0, "popsize": 6}),
        C("no-shift", {"shift": False, "popsize": 6}),
    ), (
        E("crossover-unknown", {"crossover": "two-point"}, "crossover must be one of"),
        E("tournament-zero", {"tournament_size": 0}, "tournament_size"),
        E("crossover-rate-above-one", {"crossover_rate": 1.5}, "crossover_rate"),
        E("elitism-above-popsize", {"elitism": 7, "popsize": 6},
          r"elitism must be in \[0, popsize=6\]"),
        E("mutation-rate-above-dim", {"mutation_rate": 1e6}, r"mutation_rate must be in \(0, dim"),
        E("popsize-one", {"popsize": 1}, "popsize must be at least 2"),
    )),
    OptimizerInfo("one-plus-lambda", (
        C("lambda-4-strong-mutation", {"popsize": 4, "mutation_rate": 2.0}),
        C("no-shift", {"shift": False, "popsize": 4}),
    ), (
        E("mutation-rate-zero", {"mutation_rate": 0.0}, "mutation_rate"),
        E("mutation-rate-above-dim", {"mutation_rate": 1e6}, r"mutation_rate must be in \(0, dim"),
    )),
    OptimizerInfo("cga", (
        C("mode-small-k", {"recommend": "mode", "virtual_popsize": 4, "popsize": 4}),
    ), (
        E("virtual-popsize-one", {"virtual_popsize": 1}, "virtual_popsize"),
        E("recommend-unknown", {"recommend": "mean"}, "recommend must be one of"),
    )),
    OptimizerInfo("cmaes", (
        C("diagonal", {"covariance": "diagonal"}),
        C("options", {"options": {"CMA_active": False}}),
        C("integer-variable", {"integer_variables": [0]}),
        BOUNDS,
    ), _CMAES_ERRORS),
    OptimizerInfo("sep-cmaes", (C("full", {"covariance": "full"}), BOUNDS), _CMAES_ERRORS),
    OptimizerInfo("cmaes-torch", (
        C("diagonal", {"covariance": "diagonal"}),
        C("passive", {"active": False}),
        BOUNDS,
    ), _CMAES_TORCH_ERRORS),
    OptimizerInfo("sep-cmaes-torch", (C("full-passive", {"covariance": "full", "active": False}),
                                      BOUNDS), _CMAES_TORCH_ERRORS),
]}

# IPOP/BIPOP (optim/restarts.py): the wrapper's own options, then every configuration and
# bad input of the optimizer it restarts (its options pass through to every run).
_RESTART_INPUTS = (
    C("one-restart-short-patience", {"restarts": 1, "patience": 3, "tolfun": 1e-9,
                                     "tolx": 1e-9}),
)
_RESTART_ERRORS = (
    E("strategy", {"strategy": "lpop"}, "strategy must be 'ipop' or 'bipop'"),
    E("restarts-negative", {"restarts": -1}, "restarts must be an integer >= 0"),
    E("patience-zero", {"patience": 0}, "patience must be an integer >= 1"),
    E("tolfun-negative", {"tolfun": -1.0}, "tolfun"),
    E("tolx-nan", {"tolx": NAN}, "tolx"),
    E("stagnation-not-bool", {"stagnation": "yes"}, "stagnation must be True, False or None"),
)
for _inner in ("cmaes", "sep-cmaes", "snes", "xnes", "pgpe", "openai-es", "cem", "cmaes-torch",
               "sep-cmaes-torch"):
    for _strategy in ("ipop", "bipop"):
        _info_of = OPTIMIZER_INFOS[_inner]
        # the generic stop test is off by default for CMA-ES (it has pycma's), on elsewhere
        _generic = (C("generic-test-on", {"stagnation": True}) if "cmaes" in _inner
                    else C("no-generic-test", {"stagnation": False}))
        # the variant's own strategy may be named; the other one contradicts the name
        _other = "bipop" if _strategy == "ipop" else "ipop"
        OPTIMIZER_INFOS[f"{_strategy}-{_inner}"] = OptimizerInfo(
            f"{_strategy}-{_inner}",
            (*_RESTART_INPUTS, C("small-patience-own-strategy",
                                 {"strategy": _strategy, "patience": 2}),
             _generic, *_info_of.inputs),
            (*_RESTART_ERRORS, E("strategy-contradicts", {"strategy": _other},
                                 f"strategy='{_other}' contradicts"),
             *_info_of.error_inputs))

DEFAULT = OptimizerInput("default")


def optimizer_cases(names: list[str]) -> list[tuple[str, OptimizerInput]]:
    """(name, configuration) pairs: the default and every listed configuration (a name
    without an entry gets the default only; a contract test then fails for it)."""
    return [(name, case) for name in names
            for case in (DEFAULT, *_info(name).inputs)]


def error_cases(names: list[str]) -> list[tuple[str, ErrorInput]]:
    """(name, bad input) pairs of every listed optimizer."""
    return [(name, case) for name in names for case in _info(name).error_inputs]


def _info(name: str) -> OptimizerInfo:
    return OPTIMIZER_INFOS.get(name, OptimizerInfo(name, (), ()))
