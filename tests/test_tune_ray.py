"""Trials on Ray actors give the study worker processes give (timings aside)."""

from __future__ import annotations

import pytest
from nondiff.hybrid.tune.space import study_space
from nondiff.optim import registry

import tests.tune_helpers
from nondiff.tune import tune
from tests.tune_helpers import SPACE, train


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # the actors cannot import tests/: send the training loop's module by value
    ray.cloudpickle.register_pickle_by_value(tests.tune_helpers)
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(tests.tune_helpers)
    ray.shutdown()


def test_ray_equals_the_process_pool(ray_instance) -> None:
    # two whole CMA-ES populations of 3-step trials, run two at a time: the budget ends
    # with a population, not with trials under way (which of those the end of the
    # budget cuts, at which step, depends on timing when several run at once)
    popsize = registry.create("cmaes", study_space(SPACE), seed=4).popsize
    settings = {"optimizer": "cmaes", "scheduler": None, "budget": 2 * popsize * 3,
                "max_steps": 3, "parallel": 2, "seed": 4}
    pool = tune(train, SPACE, executor="process", **settings)
    actors = tune(train, SPACE, executor="ray", **settings)
    assert len(pool.trials) == 2 * popsize
    assert [(t.config, t.curve, t.state) for t in actors.trials] == \
        [(t.config, t.curve, t.state) for t in pool.trials]
    assert (actors.best_config, actors.best_metric) == (pool.best_config, pool.best_metric)
    assert ray_instance.is_initialized()  # joined, not ours to shut down
