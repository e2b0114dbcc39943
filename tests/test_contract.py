"""Contract tests every registered optimizer must pass (parametrized over the registry,
and over each optimizer's configurations of tests/optimizer_infos.py: ``optimizer_case``)."""

from __future__ import annotations

import dataclasses
import inspect
import math

import numpy as np
import pytest
import torch
from nondiff.optim import BaseOptimizer, registry
from nondiff.optim.spaces import Product

from tests.conftest import (
    EXAMPLE_LEAVES,
    OPTIMIZER_NAMES,
    ask_tell_run,
    default_x0,
    example_space,
    handles_real,
    make,
    real_only,
    roundtrip,
    sphere,
)
from tests.optimizer_infos import OPTIMIZER_INFOS, error_cases


def _run(opt, generations):
    return ask_tell_run(opt, generations, sphere)


def test_ask_numpy_shape_and_dtype(optimizer_case):
    name, case = optimizer_case
    opt = make(name, **case.kwargs)
    x = opt.ask()
    assert isinstance(x, np.ndarray)
    assert x.dtype == np.float64
    assert x.shape == (opt.popsize, opt.dim)
    assert np.all(np.isfinite(x))


def test_ask_torch_keeps_dtype_and_device(optimizer_case):
    name, case = optimizer_case
    real_only(name)
    opt = make(name, x0=torch.full((6,), 0.5, dtype=torch.float32), **case.kwargs)
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


def test_nonfinite_fitness_ranks_worst_and_is_counted(optimizer_case):
    name, case = optimizer_case
    opt = make(name, **{**case.kwargs, "popsize": 4})
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


def test_same_seed_same_trajectory(optimizer_case):
    name, case = optimizer_case
    a = _run(make(name, seed=11, **case.kwargs), 4)
    b = _run(make(name, seed=11, **case.kwargs), 4)
    c = _run(make(name, seed=12, **case.kwargs), 4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c, strict=True))


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_state_dict_resume_is_bit_for_bit(optimizer_case, library):
    name, case = optimizer_case
    real_only(name)
    x0 = np.full(6, 0.5) if library == "numpy" else torch.full((6,), 0.5, dtype=torch.float64)
    uninterrupted = make(name, x0=x0, **case.kwargs)
    _run(uninterrupted, 5)
    saved = roundtrip(uninterrupted.state_dict())
    expected = _run(uninterrupted, 8)

    resumed = make(name, x0=x0, **case.kwargs)
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


def test_asks_decode_in_the_space_and_resume_bit_for_bit(optimizer_case):
    optimizer_name, case = optimizer_case
    if "bounds" in case.kwargs:
        pytest.skip("a space brings its own bounds")
    space = example_space(optimizer_name)
    opt = make(optimizer_name, x0=space, **case.kwargs)
    assert opt.space is space and opt.dim == space.size
    for _ in range(3):
        x = opt.ask()
        assert x.shape == (opt.popsize, space.size)
        space.decode_batch(x)  # raises if any candidate lies outside the space
        opt.tell(x, sphere(x - 1.0))
    space.decode(opt.recommend())
    saved = roundtrip(opt.state_dict())
    expected = _run(opt, 5)
    resumed = make(optimizer_name, x0=space, **case.kwargs)
    resumed.load_state_dict(saved)
    got = _run(resumed, 5)
    assert all(np.array_equal(p, q) for p, q in zip(expected, got, strict=True))


def test_unsupported_space_names_the_optimizers_that_handle_it(optimizer_name):
    missing = [k for k in EXAMPLE_LEAVES if k not in registry.supported_kinds(optimizer_name)]
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


def test_best_x_and_recommend_are_copies(optimizer_case):
    name, case = optimizer_case
    opt = make(name, **case.kwargs)
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


# ----- configurations (tests/optimizer_infos.py) -------------------------------------
def test_every_optimizer_has_configurations_and_error_inputs():
    missing = sorted(set(OPTIMIZER_NAMES) - set(OPTIMIZER_INFOS))
    assert not missing, f"add {missing} to tests/optimizer_infos.py"
    assert set(OPTIMIZER_INFOS) <= set(OPTIMIZER_NAMES)  # no stale entries
    for info in OPTIMIZER_INFOS.values():
        assert info.inputs and info.error_inputs, info.name
        assert len({case.desc for case in info.inputs}) == len(info.inputs), info.name


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_option_is_exercised(name):
    """Each option besides the common ones appears in a configuration or an error input."""
    info = OPTIMIZER_INFOS.get(name)
    assert info is not None, f"add {name} to tests/optimizer_infos.py"
    used = {key for case in (*info.inputs, *info.error_inputs) for key in case.kwargs}
    unused = set(registry.options(name)) - {"sigma0", "popsize", "seed", "bounds"} - used
    assert not unused, f"{name}: no configuration sets {sorted(unused)}"


def test_configuration_is_recorded_and_checked_on_load(optimizer_case):
    name, case = optimizer_case
    if not case.kwargs:
        pytest.skip("the default configuration")
    opt = make(name, **case.kwargs)
    _run(opt, 2)
    state = roundtrip(opt.state_dict())
    default = make(name)
    if default.config() != opt.config():  # bounds are recorded by CMA-ES only
        with pytest.raises(ValueError, match="another configuration"):
            default.load_state_dict(state)
    twin = make(name, **case.kwargs)
    twin.load_state_dict(state)
    assert all(np.array_equal(p, q) for p, q in zip(_run(opt, 3), _run(twin, 3), strict=True))
    fields = [f.name for f in dataclasses.fields(type(opt).Hyperparameters)]
    if set(case.kwargs) & set(fields):
        assert opt.hparams != default.hparams
        assert opt.hparams.config() != default.hparams.config()  # config() records it
        assert opt.hparams.config().items() <= opt.config().items()
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(opt.hparams, fields[0], None)


def test_sphere_progress(optimizer_case):
    """A few generations improve on the first one (the real sphere, or its discrete
    analogue: distance to the all-ones encoding)."""
    name, case = optimizer_case
    if not case.progress:
        pytest.skip("no progress expected in a few generations")
    opt = make(name, **case.kwargs)
    shift = 0.0 if handles_real(name) else 1.0
    x = opt.ask()
    opt.tell(x, sphere(x - shift))
    first = opt.best_f
    for _ in range(30):
        x = opt.ask()
        opt.tell(x, sphere(x - shift))
    if handles_real(name):
        assert opt.best_f < 0.5 * first
        assert float(sphere(np.asarray(opt.recommend()))) < float(sphere(np.full(6, 0.5)))
    else:
        assert opt.best_f < first


@pytest.mark.parametrize(("name", "case"), error_cases(OPTIMIZER_NAMES),
                         ids=[f"{n}-{c.desc}" for n, c in error_cases(OPTIMIZER_NAMES)])
def test_error_inputs_raise_before_anything_is_built(name, case, monkeypatch):
    cls = registry.get(name)
    built = []
    monkeypatch.setattr(cls, "_init_state", lambda self, x0: built.append(x0))
    monkeypatch.setattr(cls, "_init_rng", lambda self: built.append("rng"))
    with pytest.raises(ValueError, match=case.match):
        make(name, **case.kwargs)
    assert built == [], "the error came after the optimizer started building its state"


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_signature_lists_the_hyperparameters(name):
    cls = registry.get(name)
    fields = dataclasses.fields(cls.Hyperparameters)
    if not fields:
        pytest.skip(f"{name} keeps its own constructor")
    params = inspect.signature(cls).parameters
    assert list(params)[:5] == ["x0", "sigma0", "popsize", "seed", "bounds"]
    keyword = {p.name: p.default for p in params.values() if p.kind == p.KEYWORD_ONLY}
    declared = {f.name: f.default for f in fields}
    if cls.__init__ is BaseOptimizer.__init__:  # the generated signature: exactly the fields
        assert keyword == declared
    else:  # an own constructor (the restart wrapper: also `inner`) lists every field
        assert declared.items() <= keyword.items()
    opt = make(name)
    for f in fields:  # readable as attributes of the optimizer (unless a method's name)
        if not hasattr(cls, f.name):
            assert getattr(opt, f.name) == getattr(opt.hparams, f.name)


def test_unknown_option_suggests_the_closest(optimizer_name):
    options = [o for o in registry.options(optimizer_name) if len(o) > 4]
    with pytest.raises(ValueError, match=rf"did you mean '{options[0]}'") as error:
        make(optimizer_name, **{options[0] + "x": 1})
    assert repr(options[0] + "x") in str(error.value)
    cls = registry.get(optimizer_name)
    if dataclasses.fields(cls.Hyperparameters):  # the class itself says the same
        with pytest.raises(ValueError, match=rf"unknown option.*did you mean '{options[0]}'"):
            cls(default_x0(optimizer_name), **{options[0] + "x": 1})
