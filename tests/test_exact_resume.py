"""Checkpointed runs resume exactly, the problem's state included (issue 16.1).

A run of N generations and a run stopped after k generations then resumed from its
checkpoint by a fresh process, with fresh problem and optimizer objects, give the
same history, best point and value bit for bit. The problem's state (a
ControlProblem's generation counter, which seeds the episodes, its counters and
running observation statistics) travels in the checkpoint beside the optimizer's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from nondiff.optim import minimize, registry
from nondiff.optim.spaces import leaf_kinds
from nondiff.problems.control import ControlProblem

from nondiff import problems
from tests.conftest import native_names

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_RUN = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    from nondiff.optim import minimize
    from nondiff.problems.control import ControlProblem
    path, budget, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    device = sys.argv[6] if sys.argv[6] != "-" else None
    problem = ControlProblem(sys.argv[5], episodes=2, max_steps=60, obs_norm=True,
                             device=device)
    res = minimize(problem, problem.initial(), optimizer=sys.argv[4], budget=budget,
                   maximize=True, vectorized=True, sigma0=0.5, seed=7,
                   checkpoint=path if path != "-" else None, checkpoint_every=1)
    state = problem.state_dict()
    state["obs_norm"] = {k: (v.tolist() if isinstance(v, torch.Tensor) else v)
                         for k, v in state["obs_norm"].items()}
    json.dump({"history": res.history.tolist(), "x": res.x.tolist(), "f": res.f,
               "problem": state}, open(out, "w"))
""")


def _run(tmp_path, name: str, checkpoint: str, budget: int, optimizer: str, env: str,
         device: str = "-") -> dict:
    out = tmp_path / f"{name}.json"
    subprocess.run([sys.executable, "-c", _RUN, checkpoint, str(budget), str(out), optimizer,
                    env, device], check=True, timeout=300)
    return json.loads(out.read_text())


@pytest.mark.parametrize(("env", "optimizer"), [("Acrobot-v1", "snes"), ("Pendulum-v1", "cmaes"),
                                              ("Pendulum-v1", "cmaes-torch")])
def test_control_run_resumed_in_a_fresh_process_is_bit_identical(tmp_path, env, optimizer):
    dim = ControlProblem(env).dim
    popsize = registry.create(optimizer, np.zeros(dim), seed=0).popsize
    whole = _run(tmp_path, "whole", "-", 4 * popsize, optimizer, env)
    path = str(tmp_path / "run.pt")
    _run(tmp_path, "first", path, 2 * popsize, optimizer, env)  # stops after 2 generations
    resumed = _run(tmp_path, "resumed", path, 4 * popsize, optimizer, env)
    assert len(resumed["history"]) == 4
    assert resumed == whole  # history, x, f and the problem's state, exactly


def test_control_run_on_a_device_resumes_bit_identical(tmp_path, device):
    """The masked rollout of ``ControlProblem(device=...)`` resumes exactly too."""
    popsize = registry.create("snes", np.zeros(ControlProblem("CartPole-v1").dim),
                              seed=0).popsize
    whole = _run(tmp_path, "whole", "-", 4 * popsize, "snes", "CartPole-v1", device)
    path = str(tmp_path / "run.pt")
    _run(tmp_path, "first", path, 2 * popsize, "snes", "CartPole-v1", device)
    resumed = _run(tmp_path, "resumed", path, 4 * popsize, "snes", "CartPole-v1", device)
    assert len(resumed["history"]) == 4
    assert resumed == whole


def _problem(name: str):
    if name in problems.names("control"):
        return problems.get(name, max_steps=30, obs_norm=True)
    return problems.get(name, dim=10)


def _start(problem):
    if problem.space is not None:
        kinds = leaf_kinds(problem.space)
        return problem.space, native_names(kinds)[0]
    x0 = problem.initial() if hasattr(problem, "initial") else np.zeros(problem.dim)
    return x0, "snes"


@pytest.mark.parametrize("name", problems.names())
def test_every_registered_problem_resumes_exactly(tmp_path, name):
    """The contract over the registry: whatever state a problem keeps is checkpointed."""

    def run(budget, checkpoint=None):
        problem = _problem(name)
        x0, optimizer = _start(problem)
        popsize = registry.create(optimizer, x0, seed=0).popsize
        res = minimize(problem, x0, optimizer=optimizer, budget=budget * popsize,
                       maximize=problem.maximize, vectorized=True, seed=3,
                       checkpoint=checkpoint, checkpoint_every=1)
        return res, problem.state_dict()

    whole, state = run(5)
    path = tmp_path / "run.pt"
    run(2, path)
    resumed, resumed_state = run(5, path)
    assert np.array_equal(whole.history, resumed.history)
    assert whole.f == resumed.f
    assert repr(whole.x) == repr(resumed.x)
    assert state.keys() == resumed_state.keys()
    for key, value in state.items():
        other = resumed_state[key]
        if isinstance(value, dict):  # observation statistics
            assert all(torch.equal(torch.as_tensor(value[k]), torch.as_tensor(other[k]))
                       for k in value)
        else:
            assert value == other, key
