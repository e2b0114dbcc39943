"""Contract tests every registered optimizer must pass (parametrized over the registry)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nondiff.optim import registry
from nondiff.optim.spaces import Product

from tests.conftest import EXAMPLE_LEAVES, example_space, make, real_only, roundtrip, sphere


def _run(opt, generations):
    asked = []
    for _ in range(generations):
        x = opt.ask()
        asked.append(np.array(x, copy=True) if isinstance(x, np.ndarray) else x.clone().numpy())
        opt.tell(x, sphere(x))
    return asked


def test_ask_numpy_shape_and_dtype(optimizer_name):
    opt = make(optimizer_name)
    x = opt.ask()
    assert isinstance(x, np.ndarray)
    assert x.dtype == np.float64
    assert x.shape == (opt.popsize, opt.dim)
    assert np.all(np.isfinite(x))


def test_ask_torch_keeps_dtype_and_device(optimizer_name):
    real_only(optimizer_name)
    opt = make(optimizer_name, x0=torch.full((6,), 0.5, dtype=torch.float32))
    x = opt.ask()
    assert isinstance(x, torch.Tensor)
    assert x.dtype == torch.float32
    assert x.device == torch.device("cpu")
    assert tuple(x.shape) == (opt.popsize, 6)
    metrics = opt.tell(x, sphere(x))
    assert metrics["evaluations"] == opt.popsize
    assert isinstance(opt.recommend(), torch.Tensor)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"sigma0": 0.0}, "sigma0"),
        ({"sigma0": -1.0}, "sigma0"),
        ({"sigma0": math.nan}, "sigma0"),
        ({"popsize": 0}, "popsize"),
        ({"popsize": 2.5}, "popsize"),
        ({"seed": -1}, "seed"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_invalid_configuration_is_named(optimizer_name, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        make(optimizer_name, **kwargs)


@pytest.mark.parametrize("x0", [np.zeros((2, 3)), np.array([]), np.array([0.0, np.nan])])
def test_invalid_x0(optimizer_name, x0):
    real_only(optimizer_name)
    with pytest.raises(ValueError, match="x0"):
        make(optimizer_name, x0=x0)


def test_tell_validates_shapes(optimizer_name):
    opt = make(optimizer_name)
    x = opt.ask()
    f = sphere(x)
    with pytest.raises(ValueError, match="fitness must have shape"):
        opt.tell(x, f[:-1])
    with pytest.raises(ValueError, match="fitness must have shape"):
        opt.tell(x, np.stack([f, f], axis=1))
    with pytest.raises(ValueError, match=rf"candidates must have shape \(n, {opt.dim}\)"):
        opt.tell(x[:, :-1], f)
    with pytest.raises(ValueError, match=r"candidates must have shape"):
        opt.tell(x[0], f[:1])
    with pytest.raises(ValueError, match="numeric"):
        opt.tell(x, ["a"] * len(f))
    assert opt.counters["iterations"] == 0  # rejected tells change nothing


def test_nonfinite_fitness_ranks_worst_and_is_counted(optimizer_name):
    opt = make(optimizer_name, popsize=4)
    x = opt.ask()
    f = sphere(x)
    f[0], f[1] = np.nan, -np.inf
    metrics = opt.tell(x, f)
    assert metrics["nonfinite"] == 2
    assert math.isfinite(opt.best_f)
    assert opt.best_f == pytest.approx(float(np.min(f[2:])))
    x = opt.ask()
    assert np.all(np.isfinite(x))
    metrics = opt.tell(x, np.full(len(x), np.nan))
    assert metrics["nonfinite"] == len(x)
    assert opt.counters["nonfinite"] == len(x) + 2
    assert np.all(np.isfinite(opt.ask()))


def test_same_seed_same_trajectory(optimizer_name):
    a = _run(make(optimizer_name, seed=11), 4)
    b = _run(make(optimizer_name, seed=11), 4)
    c = _run(make(optimizer_name, seed=12), 4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c, strict=True))


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_state_dict_resume_is_bit_for_bit(optimizer_name, library):
    real_only(optimizer_name)
    x0 = np.full(6, 0.5) if library == "numpy" else torch.full((6,), 0.5, dtype=torch.float64)
    uninterrupted = make(optimizer_name, x0=x0)
    _run(uninterrupted, 5)
    saved = roundtrip(uninterrupted.state_dict())
    expected = _run(uninterrupted, 8)

    resumed = make(optimizer_name, x0=x0)
    resumed.load_state_dict(saved)
    assert resumed.counters == {**saved["counters"]}
    got = _run(resumed, 8)
    assert all(np.array_equal(p, q) for p, q in zip(expected, got, strict=True))
    assert resumed.best_f == uninterrupted.best_f
    assert np.array_equal(np.asarray(resumed.recommend()), np.asarray(uninterrupted.recommend()))


def test_load_state_dict_rejects_foreign_states(optimizer_name):
    opt = make(optimizer_name)
    _run(opt, 2)
    state = opt.state_dict()
    other_name = next(n for n in registry.names() if n != optimizer_name)
    with pytest.raises(ValueError, match="optimizer"):
        make(other_name).load_state_dict(state)
    with pytest.raises(ValueError, match="configuration"):
        make(optimizer_name, popsize=opt.popsize + 2).load_state_dict(state)
    with pytest.raises(ValueError, match="unknown keys"):
        make(optimizer_name).load_state_dict({**state, "bogus": 1})
    with pytest.raises(ValueError, match="missing keys"):
        make(optimizer_name).load_state_dict({k: v for k, v in state.items() if k != "rng"})


def test_bounds_are_respected(optimizer_name):
    real_only(optimizer_name)
    opt = make(optimizer_name, bounds=(0.0, 1.0))
    for _ in range(3):
        x = opt.ask()
        assert x.min() >= 0.0 and x.max() <= 1.0
        opt.tell(x, sphere(x - 2.0))


def test_extra_keywords_are_accepted(optimizer_name):
    opt = make(optimizer_name)
    x = opt.ask()
    metrics = opt.tell(x, sphere(x), some_extra_data=np.zeros(len(x)))
    assert metrics["iteration"] == 1


def test_stop_is_empty_while_running(optimizer_name):
    opt = make(optimizer_name)
    _run(opt, 2)
    assert opt.stop() == {}


def test_asks_decode_in_the_space_and_resume_bit_for_bit(optimizer_name):
    space = example_space(optimizer_name)
    opt = make(optimizer_name, x0=space)
    assert opt.space is space and opt.dim == space.size
    for _ in range(3):
        x = opt.ask()
        assert x.shape == (opt.popsize, space.size)
        space.decode_batch(x)  # raises if any candidate lies outside the space
        opt.tell(x, sphere(x - 1.0))
    space.decode(opt.recommend())
    saved = roundtrip(opt.state_dict())
    expected = _run(opt, 5)
    resumed = make(optimizer_name, x0=space)
    resumed.load_state_dict(saved)
    got = _run(resumed, 5)
    assert all(np.array_equal(p, q) for p, q in zip(expected, got, strict=True))


def test_unsupported_space_names_the_optimizers_that_handle_it(optimizer_name):
    missing = [k for k in EXAMPLE_LEAVES if k not in registry.get(optimizer_name).supported_spaces]
    if not missing:
        pytest.skip(f"{optimizer_name} handles every kind of space")
    able = registry.names_supporting({missing[0]})
    with pytest.raises(ValueError, match=missing[0]) as error:
        make(optimizer_name, x0=Product(x=EXAMPLE_LEAVES[missing[0]]))
    assert all(name in str(error.value) for name in able)


def test_optimum_on_the_bound_keeps_the_search_finite(optimizer_name):
    real_only(optimizer_name)
    opt = make(optimizer_name, bounds=(-1.0, 1.0))
    first = None
    for _ in range(40):
        x = opt.ask()
        opt.tell(x, sphere(x - 2.0))  # the optimum lies outside: at the corner (1, ..., 1)
        first = opt.best_f if first is None else first
    assert np.all(np.isfinite(np.asarray(opt.recommend())))
    assert "nonfinite_state" not in opt.stop()
    assert opt.best_f < first
    assert np.all(np.asarray(opt.best_x) <= 1.0)


def test_x0_that_requires_grad_is_neither_aliased_nor_tracked(optimizer_name):
    real_only(optimizer_name)
    x0 = torch.full((6,), 0.5, dtype=torch.float64, requires_grad=True)
    opt = make(optimizer_name, x0=x0)
    for _ in range(3):
        x = opt.ask()
        assert not x.requires_grad and x.grad_fn is None
        opt.tell(x, sphere(x))
    assert torch.equal(x0.detach(), torch.full((6,), 0.5, dtype=torch.float64))
    assert not opt.recommend().requires_grad


def test_best_x_and_recommend_are_copies(optimizer_name):
    opt = make(optimizer_name)
    x = opt.ask()
    opt.tell(x, sphere(x))
    best, recommended = opt.best_x, opt.recommend()
    kept_best, kept_recommended = np.array(best, copy=True), np.array(recommended, copy=True)
    best[...] = 7.0
    recommended[...] = 7.0
    assert np.array_equal(np.asarray(opt.best_x), kept_best)
    assert np.array_equal(np.asarray(opt.recommend()), kept_recommended)


def test_failed_load_leaves_the_optimizer_unchanged(optimizer_name):
    opt = make(optimizer_name)
    _run(opt, 2)
    state = opt.state_dict()
    target = make(optimizer_name)
    _run(target, 1)
    before_counters, before_best = dict(target.counters), target.best_f
    broken = {**state, "state": "not a state"}
    with pytest.raises(ValueError):
        target.load_state_dict(broken)
    assert target.counters == before_counters and target.best_f == before_best
    twin = make(optimizer_name)
    _run(twin, 1)
    assert all(np.array_equal(p, q) for p, q in zip(_run(twin, 3), _run(target, 3), strict=True))


def test_nonfinite_candidates_are_refused(optimizer_name):
    opt = make(optimizer_name, popsize=4)
    x = np.array(opt.ask(), copy=True)
    x[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"rows \[1\] contain NaN or inf"):
        opt.tell(x, np.zeros(len(x)))
    assert opt.counters["iterations"] == 0


def test_seed_out_of_range_is_named(optimizer_name):
    with pytest.raises(ValueError, match="seed"):
        make(optimizer_name, seed=2**64)


def test_bounded_run_resumes_bit_for_bit(optimizer_name):
    real_only(optimizer_name)

    def run(opt, generations):
        asked = []
        for _ in range(generations):
            x = opt.ask()
            asked.append(np.array(x, copy=True))
            opt.tell(x, sphere(x - 2.0))  # the optimum lies outside the box
        return asked

    opt = make(optimizer_name, bounds=(0.0, 1.0))
    run(opt, 4)
    saved = roundtrip(opt.state_dict())
    expected = run(opt, 6)
    resumed = make(optimizer_name, bounds=(0.0, 1.0))
    resumed.load_state_dict(saved)
    assert all(np.array_equal(p, q) for p, q in zip(expected, run(resumed, 6), strict=True))
