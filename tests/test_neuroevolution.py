"""The neuroevolution benchmark's issue-19 table (benchmarks/neuroevolution.py, table 4):
its policies near balancing run long episodes, whole generations count their steps,
and the MLP policy acts in one batched product per layer and step, whatever the
population (no Python loop over its members)."""

from __future__ import annotations

import pytest
import torch
from nondiff.benchmarks.neuroevolution import balancing_center, generation_steps
from nondiff.problems.control import ControlProblem

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("policy", ["linear", "mlp"])
def test_the_balancing_center_balances(policy):
    problem = ControlProblem("CartPole-v1", policy=policy)
    assert problem.mean_return(balancing_center(problem), episodes=5) > 150
    assert problem.mean_return(torch.zeros(problem.dim), episodes=5) < 20  # pushes left


def test_whole_generations_count_their_steps(device):
    row = generation_steps("linear", 40, 1, device)
    assert row["dim"] == 10
    assert 100 < row["length"] <= 500  # near balancing: long episodes, capped by the limit
    assert row["rate"] > 0 and row["seconds"] > 0


@pytest.mark.parametrize("hidden", [(8,), (8, 6)])
def test_mlp_policy_steps_in_one_batched_product_per_layer(monkeypatch, device, hidden):
    calls = [0]
    original = torch.baddbmm

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "baddbmm", counted)
    steps, per_population = 12, []
    for n in (3, 60):
        problem = ControlProblem("CartPole-v1", policy="mlp", hidden=hidden, max_steps=steps,
                                 device=device)
        center = balancing_center(problem)
        calls[0] = 0
        problem(center + 0.01 * torch.randn(n, problem.dim,
                                            generator=torch.Generator().manual_seed(n)))
        per_population.append(calls[0])
    assert per_population == [steps * (len(hidden) + 1)] * 2
