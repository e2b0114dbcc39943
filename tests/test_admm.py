"""Nonconvex ADMM (optim.admm) against brute-force optima of small problems."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from nondiff.optim.admm import ADMM
from nondiff.optim.projections import Binary, IntegerBox, Permutations, Sparse
from nondiff.problems.miqp import MIQP, IntegerLeastSquares, round_relaxation

from tests.conftest import plain_equal, roundtrip


def _hit(f, f_opt):
    return abs(f - f_opt) <= 1e-6 * max(1.0, abs(f_opt))


@pytest.mark.parametrize("cls", [MIQP, IntegerLeastSquares])
def test_finds_brute_force_optimum_on_most_seeds_and_is_always_feasible(cls):
    hits = raw_hits = rounding_hits = 0
    for seed in range(10):
        p = cls(seed=seed, **({"n_int": 6} if cls is MIQP else {"n": 6, "m": 9}))
        res = ADMM(p.constraint_set, P=p.P, q=p.q, c=p.c, restarts=4, max_iter=100,
                   seed=seed).solve()
        assert res.feasible and p.constraint_set.contains(res.x)
        assert res.f == pytest.approx(float(p(res.x)))
        assert res.f >= p.f_opt - 1e-9
        hits += _hit(res.f, p.f_opt)
        raw = ADMM(p.constraint_set, P=p.P, q=p.q, c=p.c, restarts=4, max_iter=100, polish=False,
                   seed=seed).solve()
        assert raw.feasible
        raw_hits += _hit(raw.f, p.f_opt)
        rounding_hits += _hit(round_relaxation(p)[1], p.f_opt)
    assert hits >= 9 and hits >= rounding_hits
    assert raw_hits >= 4  # without the polish, ADMM alone still finds many optima
    if cls is IntegerLeastSquares:  # relax-and-round often misses these
        assert hits > rounding_hits


def test_stop_reports_residuals_and_rho_schedule():
    p = MIQP(n_int=5, n_cont=1, seed=1)
    opt = ADMM(p.constraint_set, P=p.P, q=p.q, rho=0.5, rho_growth=1.2, rho_max=4.0,
               max_iter=50, restarts=2, seed=0)
    rhos = []
    while not opt.stop():
        assert opt.stop() == {}
        rhos.append(opt.step()["rho"])
    assert rhos[:3] == pytest.approx([0.5, 0.6, 0.72]) and max(rhos) <= 4.0
    reasons = opt.stop()
    assert reasons["restarts"] == 2 and 0 <= reasons["converged"] <= 2
    assert {"primal_residual", "dual_residual"} <= set(reasons)
    with pytest.raises(ValueError, match="finished"):
        opt.step()


def _trajectory(opt, steps):
    out = []
    for _ in range(steps):
        if opt.stop():
            break
        m = opt.step()
        out.append((opt.state.z.copy(), m))
    return out


@pytest.mark.parametrize("x_update", ["quadratic", "snes"])
def test_state_dict_resume_is_bit_for_bit(x_update):
    p = MIQP(n_int=4, n_cont=1, seed=2)
    kw = dict(P=p.P, q=p.q, restarts=3, max_iter=8, rho_growth=1.1, seed=5,
              x_update=x_update, inner_steps=3, inner_popsize=6)
    full = ADMM(p.constraint_set, **kw)
    first = _trajectory(full, 11)
    state = roundtrip(full.state_dict())
    rest = _trajectory(full, 40)
    again = ADMM(p.constraint_set, **kw)
    again.load_state_dict(state)
    assert plain_equal(again.state_dict(), state)
    resumed = _trajectory(again, 40)
    assert len(first) == 11 and len(rest) == len(resumed)
    for (za, ma), (zb, mb) in zip(rest, resumed, strict=True):
        assert np.array_equal(za, zb) and ma == mb
    assert again.solve().f == full.solve().f


def test_load_rejects_foreign_states():
    p = MIQP(n_int=3, n_cont=0, seed=0)
    opt = ADMM(p.constraint_set, P=p.P, q=p.q, seed=0)
    state = opt.state_dict()
    with pytest.raises(ValueError, match="configuration"):
        ADMM(p.constraint_set, P=p.P, q=p.q, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="keys"):
        opt.load_state_dict({**state, "extra": 1})


def test_gradient_x_update_binary_quartic_with_autograd_and_user_gradient():
    rng = np.random.default_rng(0)
    t, W = rng.normal(size=6), rng.normal(size=(6, 6)) / 3

    def f(x):  # nonquadratic: sum (Wx - t)^4 + |x|^2 / 2, numpy or torch
        lib = torch if isinstance(x, torch.Tensor) else np
        r = (torch.as_tensor(W) @ x if lib is torch else W @ x) - (
            torch.as_tensor(t) if lib is torch else t)
        return (r**4).sum() + 0.5 * (x**2).sum()

    def grad(x):
        r = W @ x - t
        return 4 * W.T @ r**3 + x

    brute = min(float(f(np.array(b, dtype=float))) for b in itertools.product([-1, 1], repeat=6))
    kw = dict(dim=6, inner_steps=10, rho_growth=1.1, max_iter=60, restarts=3, seed=0)
    auto = ADMM(Binary(), f, polish=False, **kw).solve()
    user = ADMM(Binary(), f, gradient=grad, polish=False, **kw).solve()
    assert auto.f == pytest.approx(user.f) and auto.feasible
    polished = ADMM(Binary(), f, gradient=grad, **kw).solve()
    assert polished.f == pytest.approx(brute)


def test_sparse_least_squares_and_black_box_inner_optimizer():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(10, 6))
    b = A @ np.array([0, 2.0, 0, 0, -1.5, 0]) + 0.1 * rng.normal(size=10)
    brute = min(np.linalg.lstsq(A[:, list(s)], b, rcond=None)[1].sum()
                for s in itertools.combinations(range(6), 2))
    res = ADMM(Sparse(2), P=2 * A.T @ A, q=-2 * A.T @ b, c=b @ b, restarts=3, seed=0).solve()
    assert np.count_nonzero(res.x) <= 2 and res.f <= brute + 1e-3
    # the same x-update by a black-box optimizer of the registry (no gradients)
    box = ADMM(IntegerBox(-3, 3), lambda x: float(((A @ x - b) ** 2).sum()), dim=6,
               x_update="cmaes", inner_steps=10, inner_sigma=0.5, restarts=2, max_iter=30,
               seed=0).solve()
    assert box.feasible and box.f == pytest.approx(float(((A @ box.x - b) ** 2).sum()))
    assert box.x[1] == 2.0 and box.x[4] in (-1.0, -2.0)


def test_permutations_quadratic_assignment():
    rng = np.random.default_rng(3)
    n = 4
    F, D = rng.integers(0, 5, (n, n)).astype(float), rng.integers(0, 5, (n, n)).astype(float)

    def qap(x):  # trace(F X D X'), X a permutation matrix
        X = x.reshape(n, n)
        return torch.trace(torch.as_tensor(F) @ X @ torch.as_tensor(D) @ X.T)

    brute = min(float(qap(torch.eye(n, dtype=torch.float64)[list(p)].reshape(-1)))
                for p in itertools.permutations(range(n)))
    res = ADMM(Permutations(n), qap, dim=n * n, inner_steps=10, rho_growth=1.1, max_iter=60,
               restarts=4, seed=0).solve()
    assert Permutations(n).contains(res.x) and res.f == pytest.approx(brute)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({}, "dimension"),
    ({"P": np.eye(2), "q": np.zeros(3)}, "q must have shape"),
    ({"P": np.eye(2), "rho": 0.0}, "rho"),
    ({"P": np.eye(2), "rho_growth": 0.5}, "rho_growth"),
    ({"P": np.eye(2), "restarts": 0}, "restarts"),
    ({"P": np.eye(2), "x_update": "nope"}, "nope"),
    ({"dim": 2, "x_update": "quadratic"}, "needs P"),
    ({"P": np.eye(2), "x0": [0.0, np.nan]}, "x0"),
])
def test_bad_configuration_is_named(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        ADMM(IntegerBox(-2, 2), **kwargs)
