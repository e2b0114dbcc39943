"""Driving evotorch's own algorithms through our ask/tell protocol."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch
from evotorch.algorithms import PGPE, SNES, GeneticAlgorithm
from evotorch.operators import GaussianMutation, SimulatedBinaryCrossOver
from nondiff.optim import minimize
from nondiff.optim.backends.evotorch import EvoTorchAdapter


def sphere(x):
    return (x**2).sum(dim=1)


def test_snes_converges_and_matches_evotorchs_own_loop():
    import evotorch

    opt = EvoTorchAdapter(torch.ones(5, dtype=torch.float64), SNES, sigma0=0.5, popsize=10,
                          seed=4)
    for _ in range(30):
        x = opt.ask()
        opt.tell(x, sphere(x))

    # The same algorithm stepping in evotorch's own loop sees the same populations.
    problem = evotorch.Problem("min", sphere, solution_length=5, vectorized=True,
                               initial_bounds=(0.5, 1.5), dtype=torch.float64, seed=4)
    own = SNES(problem, popsize=10, stdev_init=0.5, center_init=torch.ones(5,
                                                                           dtype=torch.float64))
    for _ in range(30):
        own.step()
    assert torch.allclose(opt.recommend(), own.status["center"], rtol=1e-6, atol=1e-12)
    opt.close()


def test_minimize_with_adapter_reaches_the_optimum():
    opt = EvoTorchAdapter(np.full(4, 2.0), PGPE, sigma0=1.0, popsize=20, seed=1,
                          center_learning_rate=0.3, stdev_learning_rate=0.1)
    res = minimize(lambda x: float((x**2).sum()), optimizer=opt, budget=4000)
    assert res.f < 1e-2 < 16.0  # from f(x0) = 16
    assert res.evaluations == 4000
    assert isinstance(res.x, np.ndarray)
    opt.close()


def test_genetic_algorithm_with_several_batches_per_step():
    def make(problem):
        return GeneticAlgorithm(problem, popsize=16, operators=[
            SimulatedBinaryCrossOver(problem, tournament_size=4, cross_over_rate=1.0, eta=8),
            GaussianMutation(problem, stdev=0.1),
        ])

    opt = EvoTorchAdapter(torch.zeros(3, dtype=torch.float64), make, seed=0,
                          bounds=(-3.0, 3.0))
    sizes = []
    for _ in range(40):
        x = opt.ask()
        sizes.append(len(x))
        opt.tell(x, ((x - 1.0) ** 2).sum(dim=1))
    assert opt.best_f < 1e-2
    assert torch.all(opt.best_x.abs() <= 3.0)
    opt.close()


def test_wrong_use_is_explained():
    opt = EvoTorchAdapter(torch.zeros(3), SNES, popsize=8, seed=0)
    x = opt.ask()
    with pytest.raises(ValueError, match="not n=5"):
        opt.ask(5)
    with pytest.raises(ValueError, match="candidates that ask\\(\\) returned"):
        opt.tell(x + 1.0, sphere(x))
    opt.tell(x, sphere(x))
    with pytest.raises(ValueError, match="cannot restore"):
        EvoTorchAdapter(torch.zeros(3), SNES, popsize=8, seed=0).load_state_dict(
            opt.state_dict())
    opt.close()


def test_errors_inside_the_algorithm_reach_the_caller():
    def broken(problem):
        raise_in_step = SNES(problem, popsize=4, stdev_init=1.0)
        raise_in_step._step = lambda: (_ for _ in ()).throw(ArithmeticError("inside step"))
        return raise_in_step

    opt = EvoTorchAdapter(torch.zeros(2), broken, seed=0)
    with pytest.raises(RuntimeError, match="inside step"):
        opt.ask()
    opt.close()


def test_worker_thread_ends_with_the_adapter():
    before = threading.active_count()
    opt = EvoTorchAdapter(torch.zeros(2), SNES, popsize=4, seed=0)
    x = opt.ask()  # the worker now waits inside an evaluation
    assert threading.active_count() == before + 1
    del opt, x
    gc.collect()
    assert threading.active_count() == before
