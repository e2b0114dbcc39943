"""minimize(): budget, stopping, callbacks, maximize, vectorized calls and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nondiff.optim import load_checkpoint, minimize
from nondiff.optim.spaces import Space

from tests.conftest import example_space, handles_real, sphere


class _Interrupt(Exception):
    pass


def test_budget_is_never_exceeded_and_history_is_monotone():
    res = minimize(sphere, np.ones(4), optimizer="snes", budget=203, seed=0, vectorized=True)
    assert res.evaluations <= 203
    assert res.evaluations > 203 - 10  # stopped within one generation of the budget
    assert "budget" in res.stop
    assert res.history.shape == (res.iterations, 2)
    assert np.all(np.diff(res.history[:, 1]) <= 0)
    assert res.history[-1, 1] == res.f
    assert res.f == pytest.approx(float(sphere(res.x)))


def test_vectorized_and_pointwise_agree():
    a = minimize(sphere, np.ones(3), optimizer="cmaes", budget=300, seed=5, vectorized=True)
    b = minimize(lambda x: float((x**2).sum()), np.ones(3), optimizer="cmaes", budget=300, seed=5)
    assert np.array_equal(a.history, b.history)
    assert np.array_equal(a.x, b.x)


def test_maximize_returns_user_values():
    res = minimize(lambda x: -float(((x - 2.0) ** 2).sum()), np.zeros(2), optimizer="cmaes",
                   budget=600, seed=1, maximize=True)
    assert res.f > -1e-6
    assert res.f <= 0.0
    assert np.allclose(res.x, 2.0, atol=1e-3)
    assert np.all(np.diff(res.history[:, 1]) >= 0)


def test_target_and_callback_stop_early():
    res = minimize(sphere, np.ones(5), optimizer="cmaes", budget=100_000, target=1e-3,
                   vectorized=True, seed=2)
    assert res.stop == {"target": 1e-3}
    assert res.f <= 1e-3
    seen = []
    res = minimize(sphere, np.ones(5), optimizer="cmaes", budget=100_000, vectorized=True,
                   seed=2, callbacks=[lambda m, opt: seen.append(m["iteration"]) or len(seen) == 3])
    assert res.stop == {"callback": True}
    assert res.iterations == 3


def test_torch_objective_gets_torch_candidates():
    seen_types = set()

    def fn(x):
        seen_types.add(type(x))
        return (x**2).sum(dim=1)

    res = minimize(fn, torch.ones(4, dtype=torch.float32), optimizer="pgpe", budget=400,
                   vectorized=True, seed=0)
    assert seen_types == {torch.Tensor}
    assert isinstance(res.x, torch.Tensor) and res.x.dtype == torch.float32


def test_nan_objective_never_crashes():
    def fn(x):
        value = float((x**2).sum())
        return np.nan if x[0] > 0.5 else value

    res = minimize(fn, np.zeros(3), optimizer="cmaes", budget=500, seed=0)
    assert res.nonfinite > 0
    assert np.isfinite(res.f)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"budget": 0}, "budget"),
        ({"budget": 3}, "smaller than one generation"),
        ({"optimizer": "cmaess"}, "did you mean 'cmaes'"),
        ({"optimizer": 3}, "optimizer must be"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"options": {"popsizee": 4}}, "popsize"),
    ],
)
def test_bad_arguments_are_named(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        minimize(sphere, np.ones(3), vectorized=True, **kwargs)


def test_objective_with_wrong_output_shape():
    with pytest.raises(ValueError, match="vectorized=True"):
        minimize(lambda x: np.ones(2), np.ones(3), budget=100)
    with pytest.raises(ValueError, match=r"must return shape \("):
        minimize(lambda x: np.ones(2), np.ones(3), vectorized=True, budget=100)


def test_instance_with_construction_arguments_is_refused():
    from nondiff.optim import registry

    opt = registry.create("cmaes", np.ones(3), seed=0)
    with pytest.raises(ValueError, match="x0, seed"):
        minimize(sphere, np.ones(3), optimizer=opt, seed=1)


def test_progress_bar_silent_when_not_a_terminal(capsys):
    minimize(sphere, np.ones(3), optimizer="cmaes", budget=100, vectorized=True, seed=0)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_bar_when_asked(capsys):
    minimize(sphere, np.ones(3), optimizer="cmaes", budget=100, vectorized=True, seed=0,
             progress=True)
    assert "eval" in capsys.readouterr().err


def test_checkpoint_resume_continues_bit_for_bit(tmp_path, optimizer_name):
    x0 = np.ones(5) if handles_real(optimizer_name) else example_space(optimizer_name)
    fn = lambda x: (x**2).sum(axis=1) + np.sin(5 * x).sum(axis=1)  # noqa: E731
    common = dict(optimizer=optimizer_name, budget=1000, vectorized=True, seed=9, sigma0=0.5)
    full = minimize(fn, x0, **common)
    assert full.iterations > 17

    path = tmp_path / "run.ckpt"
    calls = []

    def interrupt(metrics, opt):
        calls.append(1)
        if len(calls) == 17:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        minimize(fn, x0, checkpoint=path, checkpoint_every=5, callbacks=[interrupt], **common)
    saved = load_checkpoint(path)
    assert saved["history"].shape[0] == 15
    resumed = minimize(fn, x0, checkpoint=path, checkpoint_every=5, **common)
    assert np.array_equal(resumed.history, full.history)
    encode = x0.encode if isinstance(x0, Space) else np.asarray
    assert np.array_equal(encode(resumed.x), encode(full.x))
    assert resumed.stop == full.stop
    # A finished checkpoint returns at once with the same result.
    again = minimize(fn, x0, checkpoint=path, **common)
    assert again.evaluations == full.evaluations and again.f == full.f


def test_checkpoint_reuses_saved_seed(tmp_path):
    path = tmp_path / "run.ckpt"
    first = minimize(sphere, np.ones(3), optimizer="snes", budget=300, vectorized=True,
                     checkpoint=path)
    assert load_checkpoint(path) is not None
    again = minimize(sphere, np.ones(3), optimizer="snes", budget=300, vectorized=True,
                     checkpoint=path)
    assert again.f == first.f


def test_corrupt_checkpoint_is_reported_with_the_fix(tmp_path):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="delete it to start afresh"):
        minimize(sphere, np.ones(3), budget=100, vectorized=True, checkpoint=path)
    torch.save({"something": 1}, path)
    with pytest.raises(ValueError, match="not a nondiff checkpoint"):
        minimize(sphere, np.ones(3), budget=100, vectorized=True, checkpoint=path)


def test_half_open_bounds_give_a_finite_default_step_size():
    res = minimize(sphere, np.full(2, 3.0), optimizer="snes", bounds=(1.0, np.inf), budget=400,
                   vectorized=True, seed=0)
    assert np.allclose(res.x, 1.0, atol=1e-3)  # the optimum on the box, not at the origin


@pytest.mark.parametrize("bounds", [5, (1.0,), (0.0, 1.0, 2.0)])
def test_malformed_bounds_are_named(bounds):
    with pytest.raises(ValueError, match="bounds must be a pair"):
        minimize(sphere, np.ones(2), optimizer="snes", bounds=bounds, budget=100)
