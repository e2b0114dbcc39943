"""Tests of optim.restarts: IPOP/BIPOP around every distribution-based optimizer.

Seeded and small (dimension 4-5, NaN or cheap objectives): well under a minute.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nondiff.optim import minimize, registry
from nondiff.optim.cmaes import CMAES
from nondiff.optim.restarts import VARIANTS, Restarts, restarted
from nondiff.optim.spaces import Integer, Product, Real

from tests.conftest import assert_same, roundtrip


def rastrigin(x):
    x = np.asarray(x, dtype=np.float64)
    return 10.0 * x.shape[-1] + (x**2 - 10.0 * np.cos(2 * np.pi * x)).sum(axis=-1)


def nan(x):
    return np.full(len(x), np.nan)


def trajectory(opt, f, generations):
    """Asks, metrics and stop reasons of ``generations`` generations."""
    out = []
    for _ in range(generations):
        x = opt.ask()
        metrics = opt.tell(x, f(x))
        x = x.numpy().copy() if isinstance(x, torch.Tensor) else np.array(x, copy=True)
        out.append((x, metrics, opt.stop()))
    return out


# ----- registry ---------------------------------------------------------------------------
def test_every_distribution_based_optimizer_has_both_variants():
    names = set(registry.names())
    for inner in ("cmaes", "sep-cmaes", "snes", "xnes", "pgpe", "openai-es", "cem"):
        assert {f"ipop-{inner}", f"bipop-{inner}"} <= names
    assert {cls.name for cls in VARIANTS} <= names
    opt = registry.create("bipop-xnes", np.zeros(4), sigma0=0.5, seed=0, eta_mu=0.9)
    assert (opt.strategy, opt.inner.name, opt.inner.eta_mu) == ("bipop", "xnes", 0.9)


def test_first_run_is_the_plain_optimizer():
    plain = registry.create("snes", np.full(5, 2.0), sigma0=1.0, seed=4)
    wrapped = registry.create("ipop-snes", np.full(5, 2.0), sigma0=1.0, seed=4)
    for _ in range(10):
        a, b = plain.ask(), wrapped.ask()
        assert np.array_equal(a, b)
        plain.tell(a, rastrigin(a))
        wrapped.tell(b, rastrigin(b))
    assert wrapped.best_f == plain.best_f and np.array_equal(wrapped.best_x, plain.best_x)


def test_minimize_by_name():
    res = minimize(lambda x: float(rastrigin(x)), np.full(4, 3.0), optimizer="bipop-snes",
                   sigma0=2.0, budget=3000, seed=1)
    assert res.optimizer == "bipop-snes" and res.evaluations <= 3000
    assert res.f < 5.0


# ----- restart triggers and population sizes -----------------------------------------------
def test_generic_stagnation_test_restarts_after_patience_generations():
    opt = registry.create("ipop-snes", np.zeros(5), seed=0, patience=5)
    p0 = opt.popsize
    trajectory(opt, nan, 4)  # no progress (NaN counts as inf), but the window is not full yet
    assert opt.state.run == 0 and opt.popsize == p0
    metrics = trajectory(opt, nan, 1)[0][1]
    assert opt.state.run == 1 and opt.popsize == 2 * p0  # decided in tell, before the next ask
    assert metrics["restarts"] == 1 and metrics["popsize"] == 2 * p0 and metrics["regime"] == 1
    assert opt.state.history == [{"regime": "first", "popsize": p0, "evaluations": 5 * p0,
                                  "stop": ["tolstagnation"]}]
    assert opt.ask().shape == (2 * p0, 5)


def test_generic_tolx_and_converged_runs_restart():
    # a run converged on the sphere (tolx or tolfun) restarts from a new random point
    opt = registry.create("ipop-xnes", np.full(4, 1.0), sigma0=0.5, seed=1, restarts=1)
    while opt.state.run == 0:
        x = opt.ask()
        opt.tell(x, (x**2).sum(axis=1))
    assert opt.state.history[0]["stop"][0] in ("tolfun", "tolx", "tolstagnation")
    assert opt.best_f < 1e-10
    assert not np.array_equal(opt.state.run_x0, np.full(4, 1.0))


def test_cmaes_uses_its_own_stop_criteria_only():
    opt = registry.create("ipop-cmaes", np.zeros(4), seed=0)
    assert opt.stagnation is False and registry.create("ipop-pgpe", np.zeros(4)).stagnation
    opt = registry.create("ipop-cmaes", np.zeros(4), seed=0, restarts=2,
                          options={"maxiter": 3})
    trajectory(opt, rastrigin, 9)
    assert [run["stop"] for run in opt.state.history] == [["maxiter"], ["maxiter"]]
    assert opt.stop() == {"maxiter": 3, "restarts": 2}


def test_ipop_doubles_the_population_and_stops_after_the_last_restart():
    opt = registry.create("ipop-pgpe", np.zeros(5), seed=2, restarts=3, patience=2)
    while not opt.stop():
        trajectory(opt, nan, 1)
    popsizes = [run["popsize"] for run in opt.state.history] + [opt.popsize]
    p0 = popsizes[0]
    assert popsizes == [p0, 2 * p0, 4 * p0, 8 * p0]
    assert opt.stop() == {"tolstagnation": 2, "restarts": 3}
    assert {run["regime"] for run in opt.state.history[1:]} == {"large"}


def test_bipop_interleaves_regimes_with_balanced_budgets():
    opt = registry.create("bipop-snes", np.zeros(5), seed=3, restarts=4, patience=3)
    p0 = opt.popsize
    while not opt.stop():
        trajectory(opt, nan, 1)
    runs = [*opt.state.history, {"regime": opt.state.regime, "popsize": opt.popsize,
                                 "evaluations": opt.state.run_evaluations}]
    assert runs[0]["regime"] == "first"
    small, large, k = runs[0]["evaluations"], 0, 0
    for run in runs[1:]:
        # Hansen (2009): large when the small regime used at least as much as the large one
        assert run["regime"] == ("large" if small >= max(1, large) else "small")
        if run["regime"] == "large":
            k += 1
            assert run["popsize"] == p0 * 2**k
            large += run["evaluations"]
        else:
            assert p0 <= run["popsize"] <= max(p0, p0 * 2**k // 2)
            assert run["evaluations"] <= 0.5 * large + run["popsize"]
            small += run["evaluations"]
    assert k == 4 and "small" in {run["regime"] for run in runs}
    assert opt.stop()["restarts"] == len(opt.state.history)


@pytest.mark.parametrize("name", ["bipop-pgpe", "bipop-openai-es", "bipop-cem", "bipop-xnes",
                                  "bipop-sep-cmaes"])
def test_bipop_runs_to_the_end_for_every_inner_optimizer(name):
    options = {"options": {"maxiter": 3}} if "cmaes" in name else {"patience": 3}
    opt = registry.create(name, np.zeros(5), seed=1, restarts=4, **options)
    while not opt.stop():
        trajectory(opt, nan, 1)
    runs = [*opt.state.history, {"regime": opt.state.regime, "popsize": opt.popsize}]
    assert {run["regime"] for run in runs} == {"first", "large", "small"}
    if name in ("bipop-pgpe", "bipop-openai-es"):  # mirrored sampling: even populations
        assert all(run["popsize"] % 2 == 0 for run in runs)
    assert opt.stop()["restarts"] == len(opt.state.history)


def test_restart_seeds_and_means_are_deterministic_and_distinct():
    a = registry.create("ipop-snes", np.zeros(4), seed=7, patience=2, bounds=(-3, 3))
    b = registry.create("ipop-snes", np.zeros(4), seed=7, patience=2, bounds=(-3, 3))
    seeds, means = set(), []
    for _ in range(3):
        assert_same(trajectory(a, nan, 3), trajectory(b, nan, 3))
        seeds.add(a.state.run_seed)
        means.append(a.state.run_x0)
    assert len(seeds) == 3 and a.inner.seed == a.state.run_seed
    assert all(np.all(np.abs(m) <= 3) for m in means)  # uniform in the box


# ----- the budget is never exceeded (issue 16.3) ----------------------------------------------
@pytest.mark.parametrize("name", ["ipop-cmaes", "bipop-cmaes", "ipop-snes", "bipop-snes"])
@pytest.mark.parametrize("budget", [100, 300, 1000, 2500])
def test_all_nan_objective_never_exceeds_the_budget(name, budget):
    calls = []

    def objective(x):
        calls.append(1)
        return float("nan")

    res = minimize(objective, np.zeros(5), optimizer=name, budget=budget, sigma0=1.0, seed=0)
    assert len(calls) == res.evaluations <= budget  # main before issue 16.3: 120 for 100
    assert res.nonfinite == res.evaluations
    assert res.stop.get("budget") == budget or res.stop.get("restarts") == 9


@pytest.mark.parametrize("name", ["ipop-cmaes", "bipop-cmaes", "bipop-sep-cmaes", "ipop-snes",
                                  "bipop-cem"])
def test_rastrigin_runs_never_exceed_the_budget(name):
    for seed in range(4):
        calls = []

        def objective(x, calls=calls):
            calls.append(len(x))
            return rastrigin(x)

        res = minimize(objective, np.full(5, 3.0), optimizer=name, budget=500, sigma0=2.0,
                       seed=seed, vectorized=True, options={"restarts": 20})
        assert sum(calls) == res.evaluations <= 500


# ----- checkpoints --------------------------------------------------------------------------
RESUME = {
    "ipop-snes": lambda: registry.create("ipop-snes", np.full(5, 2.0), sigma0=1.0, seed=11,
                                         patience=3),
    "bipop-xnes-torch": lambda: registry.create(
        "bipop-xnes", torch.full((5,), 2.0, dtype=torch.float64), sigma0=1.0, seed=11,
        patience=3, restarts=5),
    "bipop-cmaes": lambda: registry.create("bipop-cmaes", np.full(5, 2.0), sigma0=1.0, seed=11,
                                           restarts=6, options={"maxiter": 4}),
    "ipop-cem-bounded": lambda: registry.create("ipop-cem", np.full(5, 2.0), sigma0=1.0,
                                                seed=11, patience=3, bounds=(-5, 5)),
}


def stalling(x):  # improves for a while, then plateaus: restarts in both regimes
    return np.minimum(rastrigin(x), 20.0)


@pytest.mark.parametrize("at", [2, 3, 4, 5, 9])
@pytest.mark.parametrize("name", sorted(RESUME))
def test_resume_mid_restart_is_bit_for_bit(name, at):
    reference = RESUME[name]()
    trajectory(reference, nan, at)
    state = roundtrip(reference.state_dict())
    expected = trajectory(reference, stalling, 25)
    resumed = RESUME[name]()
    resumed.load_state_dict(state)
    assert resumed.state.run == state["state"]["runs"]["run"] and resumed.popsize == len(
        expected[0][0])
    assert_same(expected, trajectory(resumed, stalling, 25))
    assert resumed.state.run == reference.state.run >= 2
    assert np.array_equal(np.asarray(resumed.recommend()), np.asarray(reference.recommend()))


def test_resume_between_ask_and_tell_right_after_a_restart():
    reference = RESUME["ipop-snes"]()
    trajectory(reference, nan, 4)
    assert reference.state.run == 1
    x = reference.ask()
    state = roundtrip(reference.state_dict())
    reference.tell(x, rastrigin(x))
    expected = trajectory(reference, rastrigin, 10)
    resumed = RESUME["ipop-snes"]()
    resumed.load_state_dict(state)
    resumed.tell(x, rastrigin(x))
    assert_same(expected, trajectory(resumed, rastrigin, 10))


def test_minimize_checkpoint_resumes_across_restarts(tmp_path):
    def run(budget, path):
        return minimize(rastrigin, np.full(5, 3.0), optimizer="bipop-snes", sigma0=2.0,
                        budget=budget, seed=5, vectorized=True, checkpoint=path,
                        checkpoint_every=2, options={"patience": 5})

    run(600, tmp_path / "a.pt")
    resumed, straight = run(3000, tmp_path / "a.pt"), run(3000, tmp_path / "b.pt")
    assert np.array_equal(resumed.history, straight.history) and resumed.f == straight.f


def test_foreign_and_corrupted_states_are_refused():
    opt = RESUME["ipop-snes"]()
    trajectory(opt, nan, 5)
    state = opt.state_dict()
    with pytest.raises(ValueError, match="optimizer 'ipop-snes', not 'bipop-snes'"):
        registry.create("bipop-snes", np.full(5, 2.0), sigma0=1.0, seed=11).load_state_dict(state)
    with pytest.raises(ValueError, match=r"configuration.*patience"):
        registry.create("ipop-snes", np.full(5, 2.0), sigma0=1.0, seed=11).load_state_dict(state)
    target = RESUME["ipop-snes"]()
    trajectory(target, nan, 1)
    broken = {**state, "state": {**state["state"], "inner": {**state["state"]["inner"],
                                                             "optimizer": "xnes"}}}
    with pytest.raises(ValueError, match="not 'snes'"):
        target.load_state_dict(broken)
    assert target.state.run == 0 and target.counters["iterations"] == 1


# ----- constraints and spaces ---------------------------------------------------------------
def test_constraints_go_through_restarts():
    res = minimize(rastrigin, np.full(4, 3.0), optimizer="bipop-snes", sigma0=2.0, budget=4000,
                   seed=0, vectorized=True, constraints=lambda x: 0.5 - x[:, 0],
                   options={"patience": 20})
    assert res.feasible and res.x[0] >= 0.5
    res = minimize(rastrigin, np.full(4, 3.0), optimizer="ipop-cmaes", sigma0=2.0, budget=4000,
                   seed=0, vectorized=True, constraints=lambda x: 0.5 - x[:, 0])
    assert res.feasible and res.x[0] >= 0.5


def test_integer_leaves_of_a_space_stay_integral_after_restarts():
    space = Product({"n": Integer(-3, 3, size=2), "x": Real(-2.0, 2.0, size=3)})
    opt = registry.create("ipop-cmaes", space, sigma0=1.0, seed=5, options={"maxiter": 3})
    assert opt.space is space
    for _ in range(10):
        x = opt.ask()
        assert np.array_equal(x[:, :2], np.round(x[:, :2])) and np.all(np.abs(x) <= 3)
        opt.tell(x, rastrigin(x))
    assert opt.state.run >= 2 and opt.inner.integer_variables == (0, 1)
    space.decode(opt.recommend())


# ----- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"inner": "snes", "strategy": "lpop"}, "strategy must be 'ipop' or 'bipop', got 'lpop'"),
    ({"inner": "snes", "restarts": -1}, "restarts must be an integer >= 0, got -1"),
    ({"inner": "snes", "restarts": 1.5}, "restarts .* got 1.5"),
    ({"inner": "snes", "patience": 0}, "patience must be an integer >= 1"),
    ({"inner": "snes", "tolx": -1.0}, "tolx must be a finite number"),
    ({"inner": "snes", "stagnation": "yes"}, "stagnation must be True, False or None"),
    ({"inner": "ga"}, "inner must be a distribution-based optimizer .* got 'ga'"),
    ({"inner": "reinforce"}, "inner must be a distribution-based"),
    ({"inner": "ipop-snes"}, "inner must be a distribution-based"),
    ({"inner": dict}, "inner must be a distribution-based"),
    ({"inner": "snse"}, "unknown optimizer 'snse'; did you mean 'snes'"),
    ({"inner": "snes", "eta_mu": -1.0}, "eta_mu"),
    ({"inner": "cmaes", "covariance": "dense"}, "covariance must be"),
])
def test_bad_input_names_the_argument(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        Restarts(np.zeros(4), **kwargs)


def test_bad_input_through_the_registry():
    with pytest.raises(ValueError, match="eta_muu"):
        registry.create("ipop-snes", np.zeros(4), eta_muu=1.0)
    with pytest.raises(ValueError, match="strategy"):
        restarted(CMAES, "lpop")
    from nondiff.optim.ga import GeneticAlgorithm

    with pytest.raises(ValueError, match="distribution-based"):
        restarted(GeneticAlgorithm, "ipop")


def test_direct_construction_names_itself_after_strategy_and_inner():
    opt = Restarts(np.zeros(4), inner=CMAES, strategy="bipop", seed=0)
    assert opt.name == "bipop-cmaes" and opt.restarts == 9
    assert opt.config()["inner"] == "cmaes"
    # an inner option named like the wrapper's arguments passes through (PGPE's step rule)
    opt = registry.create("ipop-pgpe", np.zeros(4), seed=0, optimizer="adam")
    assert opt.inner.optimizer == "adam" and opt.config()["inner_config"]["optimizer"] == "adam"


def test_a_registered_variant_refuses_a_contradicting_strategy():
    opt = registry.create("bipop-snes", np.zeros(4), seed=0, strategy="bipop")
    assert opt.name == "bipop-snes" and opt.strategy == "bipop"
    with pytest.raises(ValueError, match=r"strategy='ipop' contradicts.*'ipop-snes'"):
        registry.create("bipop-snes", np.zeros(4), seed=0, strategy="ipop")
    ipop = registry.create("ipop-snes", np.zeros(4), seed=0)
    with pytest.raises(ValueError, match=r"optimizer .ipop-snes., not .bipop-snes."):
        registry.create("bipop-snes", np.zeros(4), seed=0).load_state_dict(ipop.state_dict())
