"""Constraints ``g(x) <= 0``: CMA-ES's augmented Lagrangian (pycma's
``ConstrainedFitnessAL``) and the base's feasibility-first ranking for the others.

Seeded and small: the file runs in about 15 s on two cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nondiff.optim import minimize
from nondiff.optim.cmaes import CMAES
from nondiff.optim.restarts import BIPOPCMAES
from nondiff.optim.spaces import Binary

from nondiff import problems
from tests.conftest import assert_same, plain_equal, roundtrip

# 5-D sphere with one linear constraint a.x >= b, active at the optimum:
# min |x|^2 s.t. a.x >= b has the analytic optimum x* = b a / |a|^2, f* = b^2 / |a|^2.
A = np.array([1.0, 2.0, -1.0, 0.5, 3.0])
B = 2.0
X_STAR = B * A / (A @ A)
F_STAR = B**2 / (A @ A)
X0 = np.full(5, -1.0)  # infeasible (a.x0 = -5.5): the find-feasible phase runs first


def sphere(x):
    return (np.asarray(x, dtype=np.float64) ** 2).sum(axis=1)


def linear_constraint(x):
    return B - np.asarray(x, dtype=np.float64) @ A


# 8-D multimodal problem with two constraints, (n, 2): one active, one inactive
A8 = np.linspace(0.5, 2.0, 8)


def rastrigin(x):
    x = np.asarray(x, dtype=np.float64)
    return 10.0 * x.shape[1] + (x**2 - 10.0 * np.cos(2 * np.pi * x)).sum(axis=1)


def two_constraints(x):
    x = np.asarray(x, dtype=np.float64)
    return np.stack([1.0 - x @ A8, x[:, 0] - 3.0], axis=1)




def run_of(opt):
    """The CMAES run itself (the current run of a restarts wrapper)."""
    return getattr(opt, "inner", opt)


def trajectory(opt, generations):
    out = []
    for _ in range(generations):
        x = opt.ask()
        metrics = opt.tell(x, rastrigin(x), constraints=two_constraints(x))
        out.append((np.array(x, copy=True), metrics, opt.stop()))
    return out




# ----- convergence ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cmaes", "sep-cmaes", "ipop-cmaes", "bipop-cmaes"])
def test_augmented_lagrangian_reaches_the_boundary_optimum(name):
    seen = []
    res = minimize(sphere, X0, optimizer=name, sigma0=0.5, budget=3000, seed=0,
                   vectorized=True, constraints=linear_constraint,
                   callbacks=[lambda metrics, opt: seen.append(metrics)])
    assert res.feasible and res.violation == 0.0
    assert linear_constraint(res.x[None])[0] <= 0
    assert np.linalg.norm(res.x - X_STAR) < 1e-4  # budget: 3000 evaluations (~1200 used)
    assert abs(res.f - F_STAR) < 1e-6
    assert seen[0]["feasible_found"] == 0.0 and seen[-1]["feasible_found"] == 1.0
    assert seen[0]["al_mu"] == 0.0 and seen[-1]["al_mu"] > 0 and seen[-1]["al_lambda"] > 0


def test_feasibility_first_without_own_handling_returns_a_feasible_point():
    res = minimize(sphere, X0, optimizer="snes", sigma0=0.5, budget=3000, seed=0,
                   vectorized=True, constraints=linear_constraint)
    assert res.feasible and linear_constraint(res.x[None])[0] <= 0
    assert np.linalg.norm(res.x - X_STAR) < 0.1  # feasible, but far less precise


def test_knapsack_is_solved_feasibly_near_the_dynamic_programming_optimum():
    problem = problems.get("knapsack", dim=20)
    res = minimize(problem, Binary(20), optimizer="cmaes", maximize=True,
                   constraints=problem.constraints, vectorized=True, budget=2000, seed=0)
    chosen = res.x.astype(np.float64)
    assert res.feasible and float(chosen @ problem.weights.numpy()) <= problem.capacity
    assert res.f >= 0.98 * problem.f_opt  # f_opt = 822 exactly (DP); within 2 %
    assert res.f == float(chosen @ problem.values.numpy())


# ----- checkpoints ---------------------------------------------------------------------
RESUME = {
    "cmaes": lambda: CMAES(np.full(8, -1.0), 0.3, seed=11),
    "bipop-cmaes": lambda: BIPOPCMAES(np.full(8, -1.0), 0.3, seed=11, restarts=6,
                                      options={"maxiter": 7}),
}


@pytest.mark.parametrize("at", [3, 12])  # while finding a feasible point; AL running
@pytest.mark.parametrize("name", sorted(RESUME))
def test_resume_is_bit_for_bit(name, at):
    reference = RESUME[name]()
    trajectory(reference, at)
    assert run_of(reference).state.al.finding_feasible == (at == 3)
    state = roundtrip(reference.state_dict())
    expected = trajectory(reference, 30)
    resumed = RESUME[name]()
    resumed.load_state_dict(state)
    assert_same(expected, trajectory(resumed, 30))
    a, b = run_of(reference).state.al, run_of(resumed).state.al
    assert np.array_equal(a.al.lam, b.al.lam) and np.array_equal(a.al.mu, b.al.mu)
    assert b.al.g_history.maxlen == a.al.g_history.maxlen == 8 + 20  # pycma's dimension + 20
    assert len(b.al.g_history) == len(a.al.g_history) and all(
        np.array_equal(u, v) for u, v in zip(a.al.g_history, b.al.g_history, strict=True))
    if name == "bipop-cmaes":  # restarts of both regimes happened after the resume point
        assert {run["regime"] for run in resumed.state.history[1:]} >= {"small", "large"}


@pytest.mark.parametrize("name", sorted(RESUME))
def test_resume_between_ask_and_tell(name):
    reference = RESUME[name]()
    trajectory(reference, 9)
    x = reference.ask()
    state = roundtrip(reference.state_dict())
    reference.tell(x, rastrigin(x), constraints=two_constraints(x))
    expected = trajectory(reference, 20)
    resumed = RESUME[name]()
    resumed.load_state_dict(state)
    resumed.tell(x, rastrigin(x), constraints=two_constraints(x))
    assert_same(expected, trajectory(resumed, 20))


def test_minimize_checkpoint_resumes_a_constrained_run(tmp_path):
    def run(budget, path):
        return minimize(rastrigin, np.full(8, -1.0), optimizer="bipop-cmaes", sigma0=0.3,
                        budget=budget, seed=5, vectorized=True, constraints=two_constraints,
                        checkpoint=path, checkpoint_every=3)

    run(400, tmp_path / "a.pt")  # interrupted, then resumed from the file
    resumed, straight = run(1500, tmp_path / "a.pt"), run(1500, tmp_path / "b.pt")
    assert np.array_equal(resumed.x, straight.x) and resumed.f == straight.f
    assert np.array_equal(resumed.history, straight.history)
    assert resumed.feasible and straight.feasible


def test_checkpoints_without_constraint_state_still_load():
    opt = CMAES(np.ones(5), 0.5, seed=3)
    x = opt.ask()
    opt.tell(x, sphere(x))
    state = opt.state_dict()
    assert state["state"]["constraints"] == 0 and state["state"]["al"] is None
    old = {**state, "state": {k: v for k, v in state["state"].items()
                              if k not in ("constraints", "al")}}
    twin = CMAES(np.ones(5), 0.5, seed=3)
    twin.load_state_dict(roundtrip(old))
    assert np.array_equal(twin.ask(), opt.ask())


# ----- restarts and errors ---------------------------------------------------------------
def test_restarts_keep_the_augmented_lagrangian():
    opt = RESUME["bipop-cmaes"]()
    trajectory(opt, 6)
    cfun, count = opt.inner.state.al, opt.inner.state.al.al.count
    assert opt.state.run == 0
    trajectory(opt, 1)  # the tell of the 8th generation restarts
    assert opt.state.run == 1
    assert opt.inner.state.al is cfun and cfun.al.count == count + 1  # as cma.fmin_con2
    assert opt.inner.es.opts["tolstagnation"] == 0  # as cma.fmin_con2
    trajectory(opt, 3)
    assert opt.inner.state.al is cfun and cfun.al.count == count + 4  # one update a generation


@pytest.mark.parametrize("bad", [
    lambda n: np.zeros(n + 1),
    lambda n: np.zeros((n, 2, 1)),
    lambda n: np.zeros((n - 1, 2)),
])
@pytest.mark.parametrize("name", ["cmaes", "snes"])
def test_constraints_of_wrong_shape_raise_the_base_error(name, bad):
    from nondiff.optim import registry

    opt = registry.create(name, np.zeros(4), sigma0=0.5, seed=0)
    x = opt.ask()
    with pytest.raises(ValueError, match="constraints must have shape"):
        opt.tell(x, sphere(x), constraints=bad(len(x)))
    assert opt.counters["iterations"] == 0


@pytest.mark.parametrize(("first", "then", "fragment"), [
    (np.zeros, lambda n: None, "told 1 constraint value.* now none"),
    (lambda n: None, np.zeros, "told no constraints, now 1"),
    (np.zeros, lambda n: np.zeros((n, 2)), "told 1 constraint value.* now 2"),
    (np.zeros, lambda n: np.zeros((n, 0)), r"shape \(n, 0\)"),
])
def test_switching_between_constrained_and_unconstrained_raises(first, then, fragment):
    opt, twin = CMAES(np.ones(4), 0.5, seed=1), CMAES(np.ones(4), 0.5, seed=1)
    for o in (opt, twin):
        x = o.ask()
        o.tell(x, sphere(x), constraints=first(len(x)))
    x = opt.ask()
    with pytest.raises(ValueError, match=fragment):
        opt.tell(x, sphere(x), constraints=then(len(x)))
    twin.ask()
    opt.tell(x, sphere(x), constraints=first(len(x)))  # unchanged: the run goes on
    twin.tell(x, sphere(x), constraints=first(len(x)))
    assert np.array_equal(opt.ask(), twin.ask())


def test_non_finite_constraint_values_rank_worst_and_keep_the_coefficients_finite():
    opt = CMAES(X0, 0.5, seed=2)
    for _ in range(60):
        x = opt.ask()
        g = linear_constraint(x)
        g[0], g[1] = np.nan, np.inf
        metrics = opt.tell(x, sphere(x), constraints=g)
    assert metrics["feasible_found"] == 1.0
    assert np.isfinite(metrics["al_lambda"]) and np.isfinite(metrics["al_mu"])
    assert opt.best_violation == 0.0 and linear_constraint(opt.best_x[None])[0] <= 0


def test_constrained_runs_write_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    minimize(sphere, X0, optimizer="cmaes", sigma0=0.5, budget=500, seed=0, vectorized=True,
             constraints=linear_constraint)
    assert list(tmp_path.iterdir()) == []


def test_torch_candidates_and_constraints():
    opt = CMAES(torch.full((5,), -1.0, dtype=torch.float32), 0.5, seed=4)
    for _ in range(150):
        x = opt.ask()
        opt.tell(x, (x.double() ** 2).sum(dim=1), constraints=B - x.double() @ torch.from_numpy(A))
    best = opt.best_x
    assert isinstance(best, torch.Tensor) and best.dtype == torch.float32
    assert opt.best_violation == 0.0 and np.linalg.norm(best.numpy() - X_STAR) < 1e-3


def test_find_feasible_first_can_be_turned_off_and_is_configuration():
    opt = CMAES(X0, 0.5, seed=0, find_feasible_first=False)
    x = opt.ask()
    metrics = opt.tell(x, sphere(x), constraints=linear_constraint(x))
    assert not opt.state.al.finding_feasible and metrics["feasible_found"] == 0.0
    assert opt.config()["find_feasible_first"] is False
    assert "find_feasible_first" not in CMAES(X0, 0.5, seed=0).config()  # default: as before
    with pytest.raises(ValueError, match=r"configuration.*find_feasible_first"):
        CMAES(X0, 0.5, seed=0).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="find_feasible_first must be True or False"):
        CMAES(X0, 0.5, find_feasible_first="yes")


def test_constrained_state_dict_is_deterministic_and_plain():
    a, b = RESUME["bipop-cmaes"](), RESUME["bipop-cmaes"]()
    trajectory(a, 15)
    trajectory(b, 15)

    sa = a.state_dict()
    run = sa["state"]["inner"]["state"]  # the current CMAES run's own state dict
    assert run["constraints"] == 2 and run["al"] is not None
    assert plain_equal(sa, b.state_dict())  # no paths, clocks or process-dependent content
    assert plain_equal(roundtrip(sa), sa)


@pytest.mark.parametrize(("corrupt", "fragment"), [
    (lambda s: {**s, "al": None}, "constraints and al disagree"),
    (lambda s: {**s, "constraints": 0}, "constraints and al disagree"),
    (lambda s: {**s, "al": {**s["al"], "nodes": [{**s["al"]["nodes"][0], "module": "os"}]}},
     "does not match"),
])
def test_corrupted_constraint_state_raises_and_leaves_the_optimizer_unchanged(corrupt, fragment):
    source = RESUME["cmaes"]()
    trajectory(source, 8)
    state = roundtrip(source.state_dict())
    state["state"] = corrupt(state["state"])
    target, twin = RESUME["cmaes"](), RESUME["cmaes"]()
    trajectory(target, 2)
    trajectory(twin, 2)
    with pytest.raises(ValueError, match=fragment):
        target.load_state_dict(state)
    assert_same(trajectory(twin, 5), trajectory(target, 5))


def test_snapshot_keeps_deques_and_defaultdicts():
    from collections import defaultdict, deque

    from cma.constraints_handler import DequeCDF
    from cma.optimization_tools import BestSolution2
    from nondiff.optim.backends.pycma_state import restore, snapshot

    def build():
        obj = BestSolution2()
        obj.queue, obj.cdf, obj.table = deque(maxlen=3), DequeCDF(maxlen=2), defaultdict(list)
        return obj

    obj = build()
    obj.queue.extend([1.0, np.arange(2.0), "x", 4])
    obj.cdf.extend([[0.5], [-1.0], [2.0]])
    obj.table["a"].append(obj.queue)  # shared, not copied
    copy = restore(roundtrip(snapshot(obj)), build())
    assert type(copy.queue) is deque and copy.queue.maxlen == 3
    assert len(copy.queue) == 3
    assert np.array_equal(copy.queue[0], np.arange(2.0)) and list(copy.queue)[1:] == ["x", 4]
    assert type(copy.cdf) is DequeCDF and copy.cdf.maxlen == 2 and list(copy.cdf) == [[-1.0], [2.0]]
    assert copy.cdf.cdf(0) == obj.cdf.cdf(0)
    assert type(copy.table) is defaultdict and copy.table.default_factory is list
    assert copy.table["a"][0] is copy.queue and copy.table["b"] == []
