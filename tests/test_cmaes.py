"""Tests of optim.cmaes (pycma behind the protocol) and its pickle-free checkpoints.

Seeded and small: the file runs in well under a minute on two cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cma
import numpy as np
import pytest
import torch
from nondiff.optim import registry
from nondiff.optim.backends.pycma_options import QuietTPA
from nondiff.optim.cmaes import CMAES, SepCMAES
from nondiff.optim.restarts import BIPOPCMAES, IPOPCMAES
from nondiff.optim.spaces import Binary, Categorical, Integer, Product

from tests.conftest import assert_same, plain_equal, roundtrip


def sphere(x):
    return (np.asarray(x, dtype=np.float64) ** 2).sum(axis=1)


def rosenbrock(x):
    x = np.asarray(x, dtype=np.float64)
    return (100.0 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1.0 - x[:, :-1]) ** 2).sum(axis=1)


def rastrigin(x):
    x = np.asarray(x, dtype=np.float64)
    return 10.0 * x.shape[1] + (x**2 - 10.0 * np.cos(2 * np.pi * x)).sum(axis=1)


def ellipsoid(x):  # separable, condition number 1e6
    x = np.asarray(x, dtype=np.float64)
    return (1e6 ** (np.arange(x.shape[1]) / (x.shape[1] - 1)) * x**2).sum(axis=1)


def minimize(opt, f, budget, target=-np.inf):
    """Plain ask/tell loop until stop(), the budget, or f < target."""
    while not opt.stop() and opt.counters["evaluations"] < budget and opt.best_f >= target:
        x = opt.ask()
        opt.tell(x, f(x))
    return opt




def trajectory(opt, f, generations):
    """Asks, metrics and stop reasons of ``generations`` generations."""
    out = []
    for _ in range(generations):
        x = opt.ask()
        metrics = opt.tell(x, f(x))
        x = x.numpy() if isinstance(x, torch.Tensor) else x
        out.append((np.array(x, dtype=np.float64, copy=True), metrics, opt.stop()))
    return out




# ----- convergence ---------------------------------------------------------------------
def test_sphere_10d_reaches_1e_8_within_2500_evaluations():
    opt = minimize(CMAES(np.full(10, 3.0), sigma0=2.0, seed=0), sphere, 2500, target=1e-8)
    assert opt.best_f < 1e-8


def test_rosenbrock_10d_reaches_1e_8_within_10000_evaluations_on_4_of_5_seeds():
    hits = 0
    for seed in range(5):
        opt = minimize(CMAES(np.zeros(10), sigma0=0.2, seed=seed), rosenbrock, 10_000,
                       target=1e-8)
        hits += opt.best_f < 1e-8 and opt.counters["evaluations"] <= 10_000
    assert hits >= 4


def test_sep_cmaes_beats_full_on_separable_ellipsoid():
    x0 = np.full(20, 1.0)
    sep = minimize(SepCMAES(x0, sigma0=1.0, seed=1), ellipsoid, 30_000, target=1e-8)
    full = minimize(CMAES(x0, sigma0=1.0, seed=1), ellipsoid, 30_000, target=1e-8)
    assert sep.es.opts["CMA_diagonal"] is True and full.es.opts["CMA_diagonal"] is False
    assert sep.best_f < 1e-8
    assert sep.counters["evaluations"] < 0.5 * full.counters["evaluations"]


def test_bipop_restarts_on_rastrigin_10d_and_beats_a_single_run():
    # A single run stops (tolfun) after ~3,500 evaluations at f = 12-15; BIPOP with a
    # 30,000-evaluation budget gets below 6 (x0 as in BBOB: uniform in [-4, 4]^10).
    for seed in (0, 1):
        x0 = np.random.default_rng(seed).uniform(-4, 4, 10)
        single = minimize(CMAES(x0, 2.0, seed=seed), rastrigin, 30_000)
        bipop = minimize(BIPOPCMAES(x0, 2.0, seed=seed), rastrigin, 30_000)
        regimes = [run["regime"] for run in bipop.state.history]
        assert {"first", "large", "small"} <= set(regimes)  # both regimes ran
        assert single.stop() and single.best_f > 10.0
        assert bipop.best_f < 6.0


def test_ipop_doubles_the_population_at_each_restart():
    opt = IPOPCMAES(np.zeros(5), 1.0, seed=2, restarts=3, options={"maxiter": 5})
    minimize(opt, rastrigin, 10**6)
    popsizes = [run["popsize"] for run in opt.state.history] + [opt.popsize]
    assert popsizes == [8, 16, 32, 64]
    assert opt.stop() == {"maxiter": 5, "restarts": 3}


def test_bipop_small_runs_stay_within_half_the_large_budget():
    opt = BIPOPCMAES(np.zeros(5), 1.0, seed=3, restarts=4, options={"maxiter": 20})
    minimize(opt, rastrigin, 10**6)
    large = 0
    for run in opt.state.history:
        if run["regime"] == "large":
            assert run["popsize"] in (16, 32, 64, 128)
            large += run["evaluations"]
        elif run["regime"] == "small":
            assert 8 <= run["popsize"] <= 64
            assert run["evaluations"] <= 0.5 * large + run["popsize"]
    assert opt.stop()["restarts"] == len(opt.state.history)


# ----- bounds, integers, stop reasons ------------------------------------------------------
@pytest.mark.parametrize("cls", [CMAES, SepCMAES, BIPOPCMAES])
def test_every_candidate_respects_bounds(cls):
    lower, upper = np.array([-1.0, 0.0, 2.0, -5.0]), np.array([1.0, 0.5, 3.0, np.inf])
    opt = cls(np.array([0.9, 0.1, 2.5, 0.0]), 1.0, seed=4, bounds=(lower, upper),
              options={"maxiter": 15} if cls is BIPOPCMAES else None)
    for _ in range(80):
        x = opt.ask()
        assert np.all(x >= lower) and np.all(x <= upper)
        opt.tell(x, sphere(x - 10.0))
    mean = opt.mean
    assert np.all(mean >= lower) and np.all(mean <= upper)


def test_integer_variables_are_integral_and_optimized():
    target = np.array([2.0, 0.3, -0.7, -3.0, 1.1])
    opt = CMAES(np.zeros(5), 1.0, seed=5, bounds=(-5, 5), integer_variables=[0, 3])
    while opt.best_f > 1e-9 and opt.counters["evaluations"] < 5000:
        x = opt.ask()
        assert np.array_equal(x[:, [0, 3]], np.round(x[:, [0, 3]]))
        assert np.all(np.abs(x) <= 5)
        opt.tell(x, sphere(x - target))
    assert opt.best_f < 1e-9
    assert opt.best_x[0] == 2.0 and opt.best_x[3] == -3.0


def test_integer_leaves_of_a_space_become_integer_variables():
    from nondiff.optim.spaces import Integer, Product, Real

    space = Product({"n": Integer(-3, 3, size=2), "x": Real(-2.0, 2.0, size=3)})
    opt = CMAES(space, 1.0, seed=5)
    assert opt.integer_variables == (0, 1)
    for _ in range(40):
        x = opt.ask()
        assert np.array_equal(x[:, :2], np.round(x[:, :2])) and np.all(np.abs(x) <= 3)
        opt.tell(x, sphere(x - np.array([2.0, -1.0, 0.5, 0.5, 0.5])))
    assert space.decode(opt.recommend())["n"].tolist() == [2, -1]


def test_pycma_stop_reason_surfaces_in_stop():
    opt = minimize(CMAES(np.ones(4), 1.0, seed=6), sphere, 10**5)
    assert opt.stop() == {"tolfun": 1e-11}
    opt = minimize(IPOPCMAES(np.ones(4), 1.0, seed=6, restarts=2), sphere, 10**5)
    assert opt.stop() == {"tolfun": 1e-11, "restarts": 2}
    assert [run["stop"] for run in opt.state.history] == [["tolfun"], ["tolfun"]]
    # ftarget ends the sequence: no restart although restarts are left
    opt = minimize(IPOPCMAES(np.ones(4), 1.0, seed=6, options={"ftarget": 1e-6}), sphere, 10**5)
    assert set(opt.stop()) == {"ftarget", "restarts"} and opt.stop()["restarts"] == 0


def test_tell_metrics_and_ask_size():
    opt = CMAES(np.ones(6), 0.5, seed=7)
    x = opt.ask()
    metrics = opt.tell(x, sphere(x))
    assert {"sigma", "popsize", "condition"} <= set(metrics)
    assert metrics["popsize"] == 9 and metrics["condition"] >= 1.0
    with pytest.raises(ValueError, match=r"needs n == popsize \(9\), got n=4"):
        opt.ask(4)


def test_trajectory_equals_raw_pycma_with_the_same_generator():
    x0, seed = np.full(8, 0.5), 8
    rng = np.random.Generator(np.random.PCG64(seed))
    es = cma.CMAEvolutionStrategy(x0, 0.4, {"popsize": 10, "verbose": -9, "seed": np.nan,
                                            "randn": lambda *s: rng.standard_normal(s)})
    opt = CMAES(x0, 0.4, popsize=10, seed=seed)
    for _ in range(60):
        raw, ours = np.asarray(es.ask()), opt.ask()
        assert np.array_equal(raw, ours)
        es.tell(raw, rosenbrock(raw))
        opt.tell(ours, rosenbrock(ours))


# ----- global numpy RNG and files ---------------------------------------------------------
def _global_state():
    _, key, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    return key.copy(), pos, has_gauss, gauss


@pytest.mark.parametrize("make", [
    lambda: CMAES(np.ones(6), 0.5, seed=1),
    lambda: SepCMAES(np.ones(6), 0.5, seed=1, bounds=(-2, 2)),
    lambda: CMAES(np.ones(6), 0.5, seed=1, bounds=(-4, 4), integer_variables=[1, 2]),
    lambda: CMAES(np.ones(6), 0.5, seed=1, integer_variables=[0]),
    lambda: CMAES(np.ones(6), 0.5, seed=1, popsize=5, options={"CMA_mirrormethod": 0}),
    lambda: BIPOPCMAES(np.ones(6), 0.5, seed=1, restarts=3, options={"maxiter": 6}),
    lambda: CMAES(np.ones(300), 0.5, seed=1),  # pycma switches to TPA from dimension 300
])
def test_global_numpy_rng_is_neither_read_nor_written(make):
    np.random.seed(123)  # noqa: NPY002
    before = _global_state()
    opt = make()
    if opt.dim >= 300:
        assert isinstance(opt.es.adapt_sigma, QuietTPA)
    generations = 5 if opt.dim >= 300 else 25  # TPA's self-check drew from generation 4 on
    first = trajectory(opt, rastrigin, generations)
    state = roundtrip(opt.state_dict())
    opt2 = make()
    opt2.load_state_dict(state)
    trajectory(opt2, rastrigin, 2)
    after = _global_state()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    if opt.dim < 300:
        np.random.seed(999)  # noqa: NPY002 (another global state: same trajectory)
        assert_same(first, trajectory(make(), rastrigin, generations))


def test_no_files_are_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    minimize(IPOPCMAES(np.ones(4), 1.0, seed=1, restarts=2), sphere, 10**5)
    assert list(tmp_path.iterdir()) == []


# ----- checkpoints -----------------------------------------------------------------------
RESUME_CONFIGS = {
    "full": lambda: CMAES(np.full(8, 0.5), 0.3, seed=11),
    "diagonal": lambda: SepCMAES(np.full(8, 0.5), 0.3, seed=11),
    "bounded": lambda: CMAES(np.full(8, 0.5), 0.3, seed=11, bounds=(0.0, 1.0)),
    "integer": lambda: CMAES(np.full(8, 0.0), 2.0, seed=11, bounds=(-5, 5),
                             integer_variables=[0, 5, 7]),
    "bipop": lambda: BIPOPCMAES(np.full(8, 0.5), 0.3, seed=11, restarts=6,
                                options={"maxiter": 7}),
    "float32": lambda: CMAES(torch.full((8,), 0.5, dtype=torch.float32), 0.3, seed=11),
}


@pytest.mark.parametrize("name", sorted(RESUME_CONFIGS))
def test_resume_is_bit_for_bit(name):
    make = RESUME_CONFIGS[name]
    reference = make()
    trajectory(reference, rastrigin, 10)
    state = roundtrip(reference.state_dict())
    expected = trajectory(reference, rastrigin, 35)
    resumed = make()
    resumed.load_state_dict(state)
    assert_same(expected, trajectory(resumed, rastrigin, 35))
    if name == "bipop":  # restarts of both regimes happened after the resume point
        assert {run["regime"] for run in resumed.state.history[1:]} >= {"small", "large"}


@pytest.mark.parametrize("at", [6, 7, 8, 14, 15])
def test_bipop_resume_at_restart_boundaries(at):
    make = RESUME_CONFIGS["bipop"]
    reference = make()
    trajectory(reference, rastrigin, at)
    state = roundtrip(reference.state_dict())
    expected = trajectory(reference, rastrigin, 20)
    resumed = make()
    resumed.load_state_dict(state)
    assert_same(expected, trajectory(resumed, rastrigin, 20))


@pytest.mark.parametrize("name", ["integer", "float32", "bipop"])
def test_resume_between_ask_and_tell(name):
    make = RESUME_CONFIGS[name]
    reference = make()
    trajectory(reference, rastrigin, 9)
    x = reference.ask()
    state = roundtrip(reference.state_dict())
    reference.tell(x, rastrigin(x))
    expected = trajectory(reference, rastrigin, 25)
    resumed = make()
    resumed.load_state_dict(state)
    resumed.tell(x, rastrigin(x))
    assert_same(expected, trajectory(resumed, rastrigin, 25))


def test_resume_in_another_process_with_other_hash_salt(tmp_path):
    make = RESUME_CONFIGS["integer"]
    reference = make()
    trajectory(reference, rastrigin, 9)
    x = reference.ask()
    torch.save(reference.state_dict(), tmp_path / "state.pt")
    np.save(tmp_path / "x.npy", x)
    reference.tell(x, rastrigin(x))
    expected = np.stack([t[0] for t in trajectory(reference, rastrigin, 15)])
    script = f"""
import numpy as np, torch
from nondiff.optim.cmaes import CMAES
from tests.test_cmaes import rastrigin, RESUME_CONFIGS
opt = RESUME_CONFIGS["integer"]()
opt.load_state_dict(torch.load({str(tmp_path / 'state.pt')!r}, weights_only=True))
x = np.load({str(tmp_path / 'x.npy')!r})
opt.tell(x, rastrigin(x))
asks = []
for _ in range(15):
    x = opt.ask(); asks.append(x); opt.tell(x, rastrigin(x))
np.save({str(tmp_path / 'asks.npy')!r}, np.stack(asks))
"""
    salt = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONHASHSEED": salt, "PYTHONPATH": root}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=root, timeout=120)
    assert np.array_equal(np.load(tmp_path / "asks.npy"), expected)


def test_state_dict_is_deterministic_and_plain():
    a, b = CMAES(np.ones(5), 0.5, seed=3), CMAES(np.ones(5), 0.5, seed=3)
    trajectory(a, rastrigin, 12)
    trajectory(b, rastrigin, 12)
    sa, sb = a.state_dict(), b.state_dict()

    assert plain_equal(sa, sb)  # no wall-clock or process-dependent content
    assert plain_equal(roundtrip(sa), sa)


def _corrupt_class(state):
    nodes = state["state"]["es"]["nodes"]
    i = next(i for i, n in enumerate(nodes) if n["t"] == "obj" and i != 0)
    nodes[i] = {**nodes[i], "module": "os", "qualname": "system"}
    return state


def _corrupt_array(state):
    nodes = state["state"]["es"]["nodes"]
    i = next(i for i, n in enumerate(nodes) if n["t"] == "ndarray")
    nodes[i] = {**nodes[i], "data": [1.0, 2.0]}
    return state


def _corrupt_path(state):
    nodes = state["state"]["es"]["nodes"]
    i = next(i for i, n in enumerate(nodes) if n["t"] == "fresh")
    nodes[i] = {"t": "fresh", "path": [["a", "no_such_attribute"]]}
    return state


@pytest.mark.parametrize(("corrupt", "fragment"), [
    (_corrupt_class, "allow-list"),
    (_corrupt_array, "corrupted"),
    (_corrupt_path, "freshly constructed"),
    (lambda s: {**s, "state": {**s["state"], "es": {"nodes": []}}}, "not a pycma snapshot"),
    (lambda s: {**s, "state": {k: v for k, v in s["state"].items() if k != "legacy_rng"}},
     "not a CMAES state"),
])
def test_corrupted_state_raises_and_leaves_the_optimizer_unchanged(corrupt, fragment):
    source = CMAES(np.ones(5), 0.5, seed=3)
    trajectory(source, rastrigin, 5)
    state = corrupt(roundtrip(source.state_dict()))
    target, twin = CMAES(np.ones(5), 0.5, seed=3), CMAES(np.ones(5), 0.5, seed=3)
    trajectory(target, rastrigin, 2)
    trajectory(twin, rastrigin, 2)
    with pytest.raises(ValueError, match=fragment):
        target.load_state_dict(state)
    assert_same(trajectory(twin, rastrigin, 5), trajectory(target, rastrigin, 5))


def test_foreign_states_are_refused():
    state = CMAES(np.ones(5), 0.5, seed=3).state_dict()
    with pytest.raises(ValueError, match="optimizer 'cmaes', not 'sep-cmaes'"):
        SepCMAES(np.ones(5), 0.5, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match=r"configuration.*options"):
        CMAES(np.ones(5), 0.5, seed=3, options={"tolfun": 1e-12}).load_state_dict(state)
    with pytest.raises(ValueError, match=r"configuration.*integer_variables"):
        CMAES(np.ones(5), 0.5, seed=3, integer_variables=[1]).load_state_dict(state)
    with pytest.raises(ValueError, match="optimizer 'cmaes', not 'ipop-cmaes'"):
        IPOPCMAES(np.ones(5), 0.5, seed=3).load_state_dict(state)


# ----- configuration ---------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"covariance": "dense"}, "covariance must be 'full' or 'diagonal', got 'dense'"),
    ({"integer_variables": [6]}, r"integer_variables \[6\] out of range"),
    ({"integer_variables": [-1]}, "integer_variables .* got -1"),
    ({"integer_variables": [1, 1]}, "duplicates"),
    ({"integer_variables": "01"}, "sequence of indices"),
    ({"integer_variables": [0], "bounds": (-0.3, 5)}, "integer variable 0 has bound -0.3"),
    ({"options": {"tol_fun": 1e-9}}, "unknown pycma option 'tol_fun'; did you mean 'tolfun'"),
    ({"options": {"Tolx": 1e-9}}, "'tolx'"),
    ({"options": {"popsize": 5}}, "'popsize' is set by CMAES; use the popsize= argument"),
    ({"options": {"timeout": 60}}, "'timeout' .* wall-clock"),
    ({"options": {"randn": np.random.randn}}, "'randn' is set by CMAES"),
    ({"options": ["tolfun"]}, "options must be a dict"),
    ({"options": {"CMA_mirrors": 8}, "popsize": 10}, "pycma rejected the configuration"),
    ({"popsize": 1}, "popsize >= 2"),
])
def test_configuration_errors_name_the_bad_value(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        CMAES(np.zeros(6), 1.0, seed=0, **kwargs)


def test_registry_variants_and_config():
    assert (CMAES.name, SepCMAES.name, IPOPCMAES.name, BIPOPCMAES.name) == (
        "cmaes", "sep-cmaes", "ipop-cmaes", "bipop-cmaes")
    sep, ipop, bipop = (cls(np.zeros(3), seed=0) for cls in (SepCMAES, IPOPCMAES, BIPOPCMAES))
    assert sep.covariance == "diagonal" and not hasattr(sep, "restarts")
    assert (ipop.restarts, ipop.strategy, type(ipop.inner)) == (9, "ipop", CMAES)
    assert (bipop.restarts, bipop.strategy, type(bipop.inner)) == (9, "bipop", CMAES)
    config = CMAES(np.zeros(3), 0.7, seed=0, bounds=(-1, 1), integer_variables=[2],
                   options={"tolfun": 1e-9, "CMA_eigenmethod": np.linalg.eigh}).config()
    assert config["bounds"] == [[-1.0] * 3, [1.0] * 3] and config["integer_variables"] == [2]
    assert config["options"]["tolfun"] == 1e-9
    assert config["options"]["CMA_eigenmethod"].startswith("<numpy")
    assert {"covariance", "sigma0", "popsize", "seed"} <= set(config)


@pytest.mark.parametrize("name", ["cmaes", "sep-cmaes", "ipop-cmaes"])
@pytest.mark.parametrize("space, best", [
    (Product(a=Integer(0, 7)), {"a": 5}),
    (Product(a=Categorical(["x", "y"])), {"a": "y"}),
    (Product(a=Binary(1)), {"a": np.array([True])}),
])
def test_a_single_discrete_variable_is_searched(name, space, best) -> None:
    """pycma 4.x fails on one integer variable; the wrapper runs a one-variable search in
    dimension 2 with a free coordinate no fitness reads, so a model with one IntParam,
    one gate or one two-way Choice is searched like any other."""
    target = space.encode(best)
    opt = registry.create(name, space, seed=0)
    for _ in range(30):
        x = np.asarray(opt.ask())
        assert x.shape[1] == 1
        opt.tell(x, np.abs(x - target).sum(axis=1))
    found = space.decode(np.asarray(opt.recommend()))
    assert {k: np.asarray(v).tolist() for k, v in found.items()} == \
        {k: np.asarray(v).tolist() for k, v in best.items()}


def test_one_bounded_variable_is_searched_and_resumes_exactly():
    """One bounded real (pycma 4.x: "not yet initialized" in dimension 1) is searched
    through the padding coordinate, whose last ask is in the checkpoint."""
    def f(x):
        return (np.asarray(x)[:, 0] - 0.8) ** 2

    def make():
        return registry.create("cmaes", np.zeros(1), bounds=(np.zeros(1) - 1, np.ones(1)),
                               seed=3)

    straight, first = make(), make()
    for opt in (straight, first):
        for _ in range(5):
            x = opt.ask()
            opt.tell(x, f(x))
    asked = first.ask()
    resumed = make()
    resumed.load_state_dict(roundtrip(first.state_dict()))
    straight_x = straight.ask()
    np.testing.assert_array_equal(asked, straight_x)
    for opt in (straight, resumed):  # told what was asked before the checkpoint
        opt.tell(straight_x, f(straight_x))
        for _ in range(20):
            x = opt.ask()
            opt.tell(x, f(x))
    np.testing.assert_array_equal(resumed.recommend(), straight.recommend())
    assert abs(float(straight.recommend()[0]) - 0.8) < 1e-3
