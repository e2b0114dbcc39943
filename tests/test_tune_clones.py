"""A proposal of a config that already ended is told that trial's fitness, not retrained.

``one-plus-lambda`` searches a grid and proposes configs it has seen; before, each was
trained again at full cost (a study of 18 trials held 13 distinct configs).
"""

from __future__ import annotations

import math

from nondiff.hybrid.tune.driver import MAX_CLONES_IN_A_ROW
from nondiff.optim.spaces import Categorical, Real

from nondiff.tune import PBT, tune
from tests.tune_helpers import SPACE, train

SMALL = {"lr": Real(1e-3, 1.0, log=True), "act": Categorical(["relu", "tanh"])}


def curve(config: dict, trial) -> None:
    """A deterministic curve of the config: best at lr 0.03 with relu."""
    ceiling = 0.9 - 0.05 * (math.log10(config["lr"]) + 1.5) ** 2 \
        - (0.1 if config["act"] == "tanh" else 0.0)
    for step in range(1, trial.max_steps + 1):
        trial.report(step, ceiling * (1 - 0.5 ** step))
        if trial.should_stop():
            return


def _configs(study) -> list[tuple]:
    return [(t.config["lr"], t.config["act"]) for t in study.trials]


def test_no_config_is_trained_twice_and_clones_spend_no_budget() -> None:
    study = tune(curve, SMALL, optimizer="one-plus-lambda", scheduler=None, budget=40,
                 max_steps=2, executor="inline", seed=0)
    configs = _configs(study)  # 20 of the 32 configs of the grid
    assert len(set(configs)) == len(configs) == 20  # every trial a new config
    assert study.clones > 0 and study.compute == 40
    assert "told its fitness without training" in study.summary()


def test_an_optimizer_that_only_proposes_seen_configs_cannot_spin_the_study() -> None:
    def two(config, trial):
        trial.report(1, {"a": 0.5, "b": 0.7}[config["c"]])

    study = tune(two, {"c": Categorical(["a", "b"])}, optimizer="one-plus-lambda",
                 scheduler=None, budget=5, max_steps=1, executor="inline", seed=0)
    assert study.compute == 5 and len(study.trials) == 5  # the space has 2 configs
    assert study.clones == MAX_CLONES_IN_A_ROW * 3  # 20 free clones before each retrain


def test_a_resumed_study_decides_about_clones_as_the_one_that_never_stopped(tmp_path) -> None:
    # the GA's populations are open at the stops, holding clones and trials both
    settings = {"optimizer": "ga", "scheduler": None, "max_steps": 2, "executor": "inline",
                "seed": 0}
    whole = tune(curve, SMALL, budget=40, **settings)
    assert whole.clones > 0
    path = str(tmp_path / "study.sqlite")
    for budget in (14, 26, 40):  # stopped and resumed twice
        part = tune(curve, SMALL, budget=budget, storage=path, **settings)
    assert _configs(part) == _configs(whole) and part.clones == whole.clones


def test_a_resumed_study_keeps_the_bound_on_clones_in_a_row(tmp_path) -> None:
    def two(config, trial):
        trial.report(1, {"a": 0.5, "b": 0.7}[config["c"]])

    settings = {"optimizer": "one-plus-lambda", "scheduler": None, "max_steps": 1,
                "executor": "inline", "seed": 0}
    space = {"c": Categorical(["a", "b"])}
    whole = tune(two, space, budget=5, **settings)
    path = str(tmp_path / "study.sqlite")
    for budget in (3, 4, 5):
        part = tune(two, space, budget=budget, storage=path, **settings)
    assert part.clones == whole.clones and _configs_of(part) == _configs_of(whole)


def _configs_of(study) -> list[str]:
    return [t.config["c"] for t in study.trials]


def test_pbt_trains_every_proposal() -> None:
    study = tune(train, SPACE, optimizer="one-plus-lambda",
                 scheduler=PBT(interval=2, population=4), budget=48, max_steps=6,
                 executor="inline", seed=0)
    assert study.clones == 0
