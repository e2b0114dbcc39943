"""Default settings converge: every registry optimizer of real vectors reaches f <= 1e-8
on sphere-10D from x0 = 2 * ones, sigma0 = 1 within 200,000 evaluations (issue 16,
item 10), except OpenAI-ES, whose fixed sigma (Salimans et al. 2017) leaves a noise
floor; its test asserts that documented behaviour and the documented schedule."""

from __future__ import annotations

import numpy as np
import pytest
from nondiff.optim import minimize, registry

from nondiff import optim  # noqa: F401  (registers every optimizer)

BUDGET = 200_000
TARGET = 1e-8
FIXED_SIGMA = ("openai-es",)  # documented exception, see optim/es.py (OpenAIES)


def sphere(x):
    return (x**2).sum(axis=1)


def run(name: str, budget: int = BUDGET, **options):
    return minimize(sphere, np.full(10, 2.0), optimizer=name, budget=budget, sigma0=1.0,
                    seed=0, vectorized=True, target=TARGET, options=options or None)


REAL_OPTIMIZERS = registry.names_supporting({"real"})


def test_the_real_vector_optimizers_are_all_covered():
    assert {"cmaes", "openai-es", "pgpe", "reinforce", "snes"} <= set(REAL_OPTIMIZERS)


def fixed_sigma(name: str) -> bool:
    """OpenAI-ES and its restart variants (each run keeps the fixed sigma)."""
    inner = getattr(registry.get(name), "inner_class", None)
    return name in FIXED_SIGMA or (inner is not None and inner.name in FIXED_SIGMA)


@pytest.mark.parametrize("name", [n for n in REAL_OPTIMIZERS if not fixed_sigma(n)])
def test_defaults_reach_1e8_on_sphere_10d(name):
    res = run(name)
    assert res.f <= TARGET, (name, res.f, res.evaluations)
    assert res.evaluations <= BUDGET


def test_pgpe_and_reinforce_need_their_new_defaults():
    """The defaults before issue 16 stalled (f = 0.0124 and 9.3e-6 after 200,000)."""
    assert run("pgpe", 50_000, optimizer="clipup").f > 1e-4  # ClipUp's fixed step length
    old = run("reinforce", 50_000, shaping=None, mean_units="absolute", mean_lr=0.1,
              log_std_lr=0.1)
    assert old.f > 1e-6  # absolute Adam steps on the mean, raw losses


def test_openai_es_keeps_sigma_fixed_and_its_samples_stall_at_the_noise_floor():
    from nondiff.optim.es import OpenAIES

    opt = OpenAIES(np.full(10, 2.0), sigma0=1.0, seed=0)
    sigmas, best = set(), np.inf
    for _ in range(1000):
        x = opt.ask()
        f = sphere(np.asarray(x))
        best = min(best, float(f.min()))
        sigmas.add(opt.tell(x, f)["sigma"])
    assert sigmas == {1.0}  # Salimans et al.: sigma is a fixed hyperparameter
    assert best > 1e-2  # samples stay about sigma * sqrt(d) from the mean
    assert float((opt.recommend() ** 2).sum()) < 1e-2  # while the mean gets close


@pytest.mark.slow
def test_openai_es_with_the_documented_schedule_reaches_1e8():
    res = run("openai-es", sigma_decay=0.999, lr_decay=0.999)
    assert res.f <= TARGET, res.f
