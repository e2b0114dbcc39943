"""Tests of the torch ES family: shaping, distributions, steps, OpenAI-ES, PGPE,
SNES, XNES and CEM. Seeded and small; the whole file runs in well under a minute."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from conftest import plain_equal
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from nondiff.optim import registry
from nondiff.optim.cem import CEM
from nondiff.optim.distributions import FullGaussian, IsotropicGaussian, SeparableGaussian
from nondiff.optim.es import PGPE, OpenAIES
from nondiff.optim.nes import SNES, XNES
from nondiff.optim.shaping import centered_ranks, nes_utilities, normalized, shape
from nondiff.optim.spaces import Product, Real
from nondiff.optim.steps import SGD, Adam, ClipUp, make_step

F64 = torch.float64


def sphere(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(dim=1)


def run(opt, objective, generations: int, target: float = -math.inf) -> dict:
    metrics: dict = {}
    for _ in range(generations):
        x = opt.ask()
        metrics = opt.tell(x, objective(x))
        if metrics["best_f"] < target:
            break
    return metrics


# ----- convergence: each optimizer reaches f < 1e-8 on the 10-D sphere ------------
# Budgets are generations (evaluations = generations * popsize). Hyperparameters
# beyond the defaults, and why:
#   OpenAI-ES: sigma and lr decay geometrically (0.97), since a fixed sigma and a
#              fixed Adam step cannot resolve ||x|| < 1e-4; sigma0=0.3, lr=0.1.
#   PGPE:      ClipUp moves the center by up to 2 * center_lr per generation, so
#              center_lr decays too (lr_decay=0.97); sigma0=0.5, center_lr=0.2.
#   SNES, XNES, CEM: defaults (CEM's default popsize for d=10 is 100).
CONVERGENCE = [
    ("openai-es", lambda x0: OpenAIES(x0, 0.3, lr=0.1, sigma_decay=0.97, lr_decay=0.97,
                                      seed=1), 400),
    ("pgpe", lambda x0: PGPE(x0, 0.5, center_lr=0.2, lr_decay=0.97, seed=1), 1200),
    ("snes", lambda x0: SNES(x0, 1.0, seed=1), 300),
    ("xnes", lambda x0: XNES(x0, 1.0, seed=1), 900),
    ("cem", lambda x0: CEM(x0, 1.0, seed=1), 80),
]


@pytest.mark.parametrize(("name", "make", "budget"), CONVERGENCE, ids=[c[0] for c in CONVERGENCE])
def test_reaches_1e_8_on_sphere_10d(name, make, budget):
    opt = make(torch.ones(10, dtype=F64))
    assert opt.name == name
    metrics = run(opt, sphere, budget, target=1e-8)
    assert metrics["best_f"] < 1e-8, (name, metrics)
    assert metrics["iteration"] <= budget


def test_snes_numpy_x0_float32_and_mean_recommendation():
    opt = SNES(np.ones(5, dtype=np.float32), sigma0=1.0, seed=0)
    for _ in range(300):
        x = opt.ask()
        assert isinstance(x, np.ndarray) and x.dtype == np.float32
        opt.tell(x, (x.astype(np.float64) ** 2).sum(axis=1))
    rec = opt.recommend()
    assert isinstance(rec, np.ndarray) and float((rec.astype(np.float64) ** 2).sum()) < 1e-6
    np.testing.assert_array_equal(rec, opt.state.mean.numpy())


def test_xnes_beats_snes_on_rotated_ellipsoid():
    d = 8
    gen = torch.Generator().manual_seed(3)
    rot, _ = torch.linalg.qr(torch.randn(d, d, dtype=F64, generator=gen))
    weights = 10.0 ** (6 * torch.arange(d, dtype=F64) / (d - 1))  # condition number 1e6

    def ellipsoid(x):
        return ((x @ rot.T) ** 2 * weights).sum(dim=1)

    x0 = torch.ones(d, dtype=F64)
    xnes = run(XNES(x0, 1.0, seed=0), ellipsoid, 600)["best_f"]
    snes = run(SNES(x0, 1.0, seed=0), ellipsoid, 600)["best_f"]
    assert xnes < 1e-6 and snes > 1.0, (xnes, snes)


def test_xnes_keeps_det_b_one():
    opt = XNES(torch.zeros(4, dtype=F64), seed=0)
    run(opt, lambda x: sphere(x * torch.tensor([1.0, 10.0, 100.0, 1.0], dtype=F64)), 50)
    assert abs(float(torch.linalg.det(opt.state.b)) - 1.0) < 1e-8


# ----- update formulas, checked by hand on one generation --------------------------
def test_snes_update_matches_formula():
    opt = SNES(torch.zeros(6, dtype=F64), 0.5, popsize=8, seed=2)
    mean0, stdev0 = opt.state.mean.clone(), opt.state.stdev.clone()
    x = opt.ask()
    f = sphere(x - 1)
    opt.tell(x, f)
    u = torch.as_tensor(nes_utilities(f.numpy()), dtype=F64)
    z = (x - mean0) / stdev0
    torch.testing.assert_close(opt.state.mean, mean0 + opt.eta_mu * stdev0 * (u @ z))
    expected = stdev0 * torch.exp(opt.eta_sigma / 2 * (u @ (z * z - 1)))
    torch.testing.assert_close(opt.state.stdev, expected)
    assert opt.eta_sigma == pytest.approx((3 + math.log(6)) / (5 * math.sqrt(6)))


def test_pgpe_update_matches_sehnke_symmetric_estimates():
    opt = PGPE(torch.zeros(5, dtype=F64), 0.5, popsize=6, optimizer="sgd", center_lr=0.1,
               momentum=0.0, stdev_lr=0.05, stdev_max_change=None, seed=3)
    mean0, stdev0 = opt.state.mean.clone(), opt.state.stdev.clone()
    x = opt.ask()
    eps = x[:3] - mean0
    torch.testing.assert_close(x[3:] - mean0, -eps)  # mirrored halves
    f = sphere(x - 1)
    opt.tell(x, f)
    u = torch.as_tensor(centered_ranks(f.numpy()), dtype=F64)
    up, um = u[:3], u[3:]
    grad_mean = ((up - um) / 2) @ eps / 3  # average over the 3 directions
    grad_stdev = ((up + um) / 2) @ ((eps**2 - stdev0**2) / stdev0) / 3
    torch.testing.assert_close(opt.state.mean, mean0 + 0.1 * grad_mean)
    torch.testing.assert_close(opt.state.stdev, stdev0 + 0.05 * grad_stdev)


def test_pgpe_stdev_change_is_clamped():
    opt = PGPE(torch.zeros(3, dtype=F64), 1.0, popsize=4, stdev_lr=100.0,
               stdev_max_change=0.2, seed=0)
    x = opt.ask()
    opt.tell(x, sphere(x))
    ratio = opt.state.stdev / 1.0
    assert bool(((ratio >= 0.8 - 1e-12) & (ratio <= 1.2 + 1e-12)).all())
    assert bool(((ratio - 0.8).abs() < 1e-12).any() or ((ratio - 1.2).abs() < 1e-12).any())


def test_openai_es_weight_decay_on_flat_fitness_and_decays():
    opt = OpenAIES(torch.ones(4, dtype=F64), 0.1, popsize=6, lr=0.01, weight_decay=0.5,
                   sigma_decay=0.5, sigma_min=0.02, lr_decay=0.5, seed=0)
    x = opt.ask()
    metrics = opt.tell(x, np.zeros(6))  # ties: zero utilities, only the L2 term acts
    assert metrics["grad_norm"] == pytest.approx(0.5 * 2.0)  # |0.5 * ones(4)|
    torch.testing.assert_close(opt.state.mean, torch.full((4,), 0.99, dtype=F64))
    for _ in range(5):
        x = opt.ask()
        opt.tell(x, np.zeros(6))
    assert opt.state.sigma == 0.02 and opt.state.lr == pytest.approx(0.01 * 0.5**6)


def test_cem_refits_elites_with_smoothing_and_noise():
    opt = CEM(torch.zeros(3, dtype=F64), 1.0, popsize=10, elite_frac=0.3, smoothing=0.5,
              extra_noise=0.25, noise_decay=0.5, seed=0)
    x = opt.ask()
    f = sphere(x - 2)
    opt.tell(x, f)
    elites = x[torch.argsort(f)[:3]]
    var = elites.var(dim=0) + 0.25
    torch.testing.assert_close(opt.state.mean, 0.5 * elites.mean(0))
    torch.testing.assert_close(opt.state.stdev, 0.5 * var.sqrt() + 0.5)
    assert opt.state.extra_noise == 0.125 and opt.num_elites(10) == 3 and opt.num_elites(4) == 2


def test_tell_uses_the_candidates_given_not_a_cache():
    """Telling a copy (numpy) or a float64 version gives the same update as the asked tensor."""
    a = SNES(torch.zeros(5, dtype=F64), seed=4)
    b = SNES(torch.zeros(5, dtype=F64), seed=4)
    xa, xb = a.ask(), b.ask()
    a.tell(xa, sphere(xa - 1))
    b.tell(xb.numpy().copy(), sphere(xb - 1).numpy())
    torch.testing.assert_close(a.state.mean, b.state.mean, rtol=0, atol=0)
    c = SNES(torch.zeros(5, dtype=F64), seed=4)
    xc = c.ask()
    other = xc.clone()
    other[0] += 3.0  # not what ask returned: the update must follow these candidates
    c.tell(other, sphere(other - 1))
    assert not torch.equal(c.state.mean, a.state.mean)


# ----- state, stop, non-finite fitness ---------------------------------------------
FACTORIES = {
    "openai-es": lambda x0: OpenAIES(x0, 0.5, lr=0.05, sigma_decay=0.99, seed=7),
    "pgpe": lambda x0: PGPE(x0, 0.5, lr_decay=0.99, seed=7),
    "pgpe-adam": lambda x0: PGPE(x0, 0.5, optimizer="adam", center_lr=0.05, seed=7),
    "snes": lambda x0: SNES(x0, 0.5, seed=7),
    "xnes": lambda x0: XNES(x0, 0.5, seed=7),
    "cem": lambda x0: CEM(x0, 0.5, extra_noise=0.1, noise_decay=0.9, seed=7),
}


@pytest.mark.parametrize("key", list(FACTORIES))
def test_state_dict_round_trip_continues_identically(key):
    x0 = torch.linspace(-1, 1, 6, dtype=torch.float32)
    first = FACTORIES[key](x0)
    run(first, sphere, 4)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = FACTORIES[key](x0)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(4):
        xa, xb = first.ask(), second.ask()
        assert torch.equal(xa, xb)
        ma, mb = first.tell(xa, sphere(xa)), second.tell(xb, sphere(xb))
        assert ma == mb
    assert torch.equal(first.recommend(), second.recommend())


@pytest.mark.parametrize("key", list(FACTORIES))
def test_nonfinite_fitness_is_ranked_worst(key):
    opt = FACTORIES[key](torch.zeros(4, dtype=F64))
    x = opt.ask()
    f = sphere(x - 1)
    f[0], f[1] = float("nan"), float("inf")
    metrics = opt.tell(x, f)
    assert metrics["nonfinite"] == 2.0
    assert bool(torch.isfinite(opt.recommend()).all()) and opt.stop() == {}
    assert "sigma" in metrics and metrics["sigma"] > 0


@pytest.mark.parametrize("key", list(FACTORIES))
def test_config_holds_hyperparameters_and_recommend_is_a_copy(key):
    opt = FACTORIES[key](torch.zeros(4, dtype=F64))
    cfg = opt.config()
    assert {"dim", "sigma0", "popsize", "seed"} <= set(cfg)
    assert len(cfg) > 4
    rec = opt.recommend()
    rec += 1.0
    assert torch.equal(opt.state.mean, torch.zeros(4, dtype=F64))


def test_stop_when_sampling_has_no_effect():
    opt = CEM(torch.full((3,), 1.0, dtype=F64), 1.0, popsize=4, seed=0)
    assert opt.stop() == {}
    opt.state.stdev[1] = 1e-300  # one coordinate no longer moves (pycma: any)
    assert "noeffectcoord" in opt.stop()
    opt.state.mean[0] = float("nan")
    assert opt.stop() == {"nonfinite_state": True}


# ----- hyperparameter validation ---------------------------------------------------
BAD = [
    (OpenAIES, {"lr": 0.0}, "lr"),
    (OpenAIES, {"lr": -1.0}, "lr"),
    (OpenAIES, {"popsize": 7}, "popsize must be even"),
    (OpenAIES, {"sigma_decay": 0.0}, "sigma_decay"),
    (OpenAIES, {"sigma_decay": 1.5}, "sigma_decay"),
    (OpenAIES, {"sigma_min": -0.1}, "sigma_min"),
    (OpenAIES, {"weight_decay": -1.0}, "weight_decay"),
    (OpenAIES, {"lr_decay": float("nan")}, "lr_decay"),
    (OpenAIES, {"betas": (0.9, 1.0)}, "betas"),
    (OpenAIES, {"antithetic": "yes"}, "antithetic"),
    (OpenAIES, {"shaping": "fancy"}, "fitness shaping method 'fancy'"),
    (PGPE, {"center_lr": 0.0}, "lr"),
    (PGPE, {"stdev_lr": -0.1}, "stdev_lr"),
    (PGPE, {"stdev_max_change": 0.0}, "stdev_max_change"),
    (PGPE, {"stdev_max_change": 1.5}, "stdev_max_change"),
    (PGPE, {"optimizer": "rmsprop"}, "optimizer must be one of 'clipup', 'adam', 'sgd'"),
    (PGPE, {"optimizer": "adam", "max_speed": 1.0}, "max_speed"),
    (PGPE, {"max_speed": 0.0}, "max_speed"),
    (PGPE, {"momentum": 1.0}, "momentum"),
    (PGPE, {"popsize": 5}, "popsize must be even"),
    (SNES, {"eta_mu": 0.0}, "eta_mu"),
    (SNES, {"eta_sigma": -1.0}, "eta_sigma"),
    (SNES, {"popsize": 1}, "popsize must be at least 2"),
    (SNES, {"antithetic": True, "popsize": 5}, "popsize must be even"),
    (XNES, {"eta_b": 0.0}, "eta_b"),
    (XNES, {"eta_sigma": float("inf")}, "eta_sigma"),
    (CEM, {"elite_frac": 0.0}, "elite_frac"),
    (CEM, {"elite_frac": 1.5}, "elite_frac"),
    (CEM, {"smoothing": 0.0}, "smoothing"),
    (CEM, {"extra_noise": -1.0}, "extra_noise"),
    (CEM, {"noise_decay": 2.0}, "noise_decay"),
    (CEM, {"stdev_min": -1.0}, "stdev_min"),
    (CEM, {"sigma0": 0.0}, "sigma0"),
]


@pytest.mark.parametrize(("cls", "kwargs", "match"), BAD,
                         ids=[f"{c.name}-{'-'.join(k)}" for c, k, _ in BAD])
def test_bad_hyperparameters_raise_named_value_error(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(np.zeros(4), **kwargs)


@pytest.mark.parametrize("cls", [OpenAIES, PGPE])
def test_antithetic_ask_rejects_odd_n(cls):
    opt = cls(np.zeros(3), seed=0)
    with pytest.raises(ValueError, match="even"):
        opt.ask(5)
    assert opt.ask(4).shape == (4, 3)


# ----- fitness shaping -------------------------------------------------------------
SHAPINGS = [centered_ranks, nes_utilities, normalized]
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(f=arrays(np.float64, st.integers(1, 40), elements=finite), seed=st.integers(0, 2**16))
def test_shaping_properties(f, seed):
    perm = np.random.default_rng(seed).permutation(f.size)
    for fn in SHAPINGS:
        u = fn(f)
        assert u.shape == f.shape and u.dtype == np.float64
        assert abs(u.sum()) < 1e-9 * max(1.0, np.abs(u).sum())
        np.testing.assert_allclose(fn(f[perm]), u[perm], rtol=1e-12, atol=1e-12)  # ties
        for i in range(f.size):
            for j in range(f.size):
                if f[i] < f[j]:
                    assert u[i] >= u[j]  # order preserving (lower fitness, higher utility)
                    if fn is centered_ranks:  # strict (normalized: up to rounding)
                        assert u[i] > u[j]
                elif f[i] == f[j]:
                    assert u[i] == u[j]


def test_shaping_known_values():
    np.testing.assert_allclose(centered_ranks([3.0, 1.0, 2.0]), [-0.5, 0.5, 0.0])
    np.testing.assert_allclose(centered_ranks([1.0, 1.0, 5.0]), [0.25, 0.25, -0.5])
    raw = np.maximum(0, np.log(3) - np.log([1, 2, 3, 4]))
    expected = raw / raw.sum() - 0.25
    np.testing.assert_allclose(nes_utilities([4.0, 1.0, 3.0, 2.0]), expected[[3, 0, 2, 1]])
    f = np.array([1.0, 2.0, 6.0])
    np.testing.assert_allclose(normalized(f), (f.mean() - f) / f.std())
    np.testing.assert_allclose(normalized([2.0, 2.0]), [0.0, 0.0])
    np.testing.assert_allclose(shape(torch.tensor([2.0, 1.0]), "centered"), [-0.5, 0.5])
    np.testing.assert_allclose(shape([2.0, 0.0], "baseline"), [-1.0, 1.0])


def test_shaping_errors():
    with pytest.raises(ValueError, match="unknown fitness shaping method 'rank'"):
        shape([1.0, 2.0], "rank")
    with pytest.raises(ValueError, match="NaN or inf"):
        centered_ranks([1.0, float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        nes_utilities(np.zeros((2, 2)))


# ----- distributions ---------------------------------------------------------------
def _distributions():
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    stdev = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    scale = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.4, 1.5]], dtype=F64)
    scale = scale @ torch.linalg.qr(torch.randn(3, 3, dtype=F64,
                                                generator=torch.Generator().manual_seed(0)))[0]
    return [
        (IsotropicGaussian(mean, 0.7), 0.49 * torch.eye(3, dtype=F64)),
        (SeparableGaussian(mean, stdev), torch.diag(stdev**2)),
        (FullGaussian(mean, scale), scale @ scale.T),
    ]


DIST_IDS = ["isotropic", "separable", "full"]


@pytest.mark.parametrize("which", range(3), ids=DIST_IDS)
def test_distribution_moments_and_log_prob(which):
    dist, cov = _distributions()[which]
    gen = torch.Generator().manual_seed(1)
    x = dist.sample(40000, gen)
    assert x.shape == (40000, 3) and x.dtype == F64
    torch.testing.assert_close(x.mean(0), dist.mean, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.08, rtol=0.03)
    ref = torch.distributions.MultivariateNormal(dist.mean, covariance_matrix=cov)
    torch.testing.assert_close(dist.log_prob(x[:50]), ref.log_prob(x[:50]))


@pytest.mark.parametrize("which", range(3), ids=DIST_IDS)
def test_antithetic_pairs_mirror(which):
    dist, _ = _distributions()[which]
    x = dist.sample(10, torch.Generator().manual_seed(2), antithetic=True)
    torch.testing.assert_close(x[:5] - dist.mean, -(x[5:] - dist.mean))
    with pytest.raises(ValueError, match="even"):
        dist.sample(7, torch.Generator(), antithetic=True)


@pytest.mark.parametrize("which", range(3), ids=DIST_IDS)
def test_score_and_grad_match_autograd(which):
    dist, cov = _distributions()[which]
    x = dist.sample(7, torch.Generator().manual_seed(3))
    w = torch.linspace(-1, 1, 7, dtype=F64)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in dist.parameters().items()}
    leaf = type(dist)(*params.values())
    (w @ leaf.log_prob(x)).backward()
    grads = dist.grad(x, w)
    for k, p in params.items():
        torch.testing.assert_close(grads[k], p.grad)
    scores = dist.score(x)
    for k in params:
        torch.testing.assert_close(torch.tensordot(w, scores[k], dims=1), grads[k])
    # natural gradient of the mean = Sigma @ vanilla gradient (inverse Fisher)
    natural = dist.natural_grad(x, w)
    torch.testing.assert_close(natural["mean"], cov @ grads["mean"])


def test_natural_log_cov_gradients_are_consistent():
    mean = torch.zeros(3, dtype=F64)
    stdev = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    x = SeparableGaussian(mean, stdev).sample(9, torch.Generator().manual_seed(5))
    w = torch.randn(9, dtype=F64, generator=torch.Generator().manual_seed(6))
    full = FullGaussian(mean, torch.diag(stdev)).natural_grad(x, w)["log_cov"]
    sep = SeparableGaussian(mean, stdev).natural_grad(x, w)["log_cov"]
    torch.testing.assert_close(sep, torch.diagonal(full))
    iso_full = FullGaussian(mean, 0.8 * torch.eye(3, dtype=F64)).natural_grad(x, w)["log_cov"]
    iso = IsotropicGaussian(mean, 0.8).natural_grad(x, w)["log_cov"]
    torch.testing.assert_close(iso, torch.trace(iso_full) / 3)


# ----- first-order steps -----------------------------------------------------------
def _gradients(n=25, d=4):
    gen = torch.Generator().manual_seed(8)
    return [torch.randn(d, dtype=F64, generator=gen) * (1 + i % 3) for i in range(n)]


def _torch_trajectory(make_opt, grads):
    p = torch.nn.Parameter(torch.linspace(-1, 1, 4, dtype=F64))
    opt = make_opt([p])
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def _our_trajectory(step, grads):
    p = torch.linspace(-1, 1, 4, dtype=F64)
    state = step.init(p)
    for g in grads:
        p += step.update(g, state)
    return p


def test_adam_matches_torch_optim_adam():
    grads = _gradients()
    ours = _our_trajectory(Adam(lr=0.05, betas=(0.8, 0.99), eps=1e-6), grads)
    ref = _torch_trajectory(lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.8, 0.99),
                                                        eps=1e-6), grads)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_torch_optim_sgd(momentum, nesterov):
    grads = _gradients()
    ours = _our_trajectory(SGD(lr=0.03, momentum=momentum, nesterov=nesterov), grads)
    ref = _torch_trajectory(lambda ps: torch.optim.SGD(ps, lr=0.03, momentum=momentum,
                                                       nesterov=nesterov), grads)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(scales=st.lists(st.floats(1e-8, 1e8), min_size=1, max_size=30),
       lr=st.floats(1e-4, 10.0), momentum=st.floats(0.0, 0.99),
       lr_factor=st.floats(0.01, 1.0), seed=st.integers(0, 1000))
def test_clipup_never_exceeds_max_speed(scales, lr, momentum, lr_factor, seed):
    step = ClipUp(lr=lr, momentum=momentum)
    assert step.max_speed == 2 * lr
    gen = torch.Generator().manual_seed(seed)
    state = step.init(torch.zeros(5, dtype=F64))
    for i, s in enumerate(scales):
        g = torch.randn(5, dtype=F64, generator=gen) * s
        call_lr = lr * lr_factor if i % 2 else None
        delta = step.update(g, state, lr=call_lr)
        limit = step.max_speed * (lr_factor if i % 2 else 1.0)
        assert float(delta.norm()) <= limit * (1 + 1e-9)


def test_clipup_first_step_is_normalized_descent():
    step = ClipUp(lr=0.1, momentum=0.9, max_speed=1.0)
    state = step.init(torch.zeros(2, dtype=F64))
    delta = step.update(torch.tensor([3.0, 4.0], dtype=F64), state)
    torch.testing.assert_close(delta, torch.tensor([-0.06, -0.08], dtype=F64))
    assert torch.equal(step.update(torch.zeros(2, dtype=F64), state), 0.9 * delta)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: Adam(lr=0.0), "lr"),
    (lambda: Adam(betas=(1.0, 0.9)), r"betas\[0\]"),
    (lambda: Adam(betas=0.9), "betas must be a pair"),
    (lambda: Adam(eps=0.0), "eps"),
    (lambda: SGD(lr=float("inf")), "lr"),
    (lambda: SGD(momentum=-0.1), "momentum"),
    (lambda: SGD(nesterov=True), "nesterov"),
    (lambda: ClipUp(max_speed=-1.0), "max_speed"),
    (lambda: ClipUp(momentum=1.0), "momentum"),
    (lambda: make_step("lbfgs"), "unknown step 'lbfgs'"),
])
def test_step_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_pgpe_step_names_are_case_insensitive_and_momentum_is_not_dropped():
    opt = PGPE(torch.zeros(4), optimizer="SGD", momentum=0.5, seed=0)
    assert opt.optimizer == "sgd" and opt.step.momentum == 0.5
    with pytest.raises(ValueError, match="momentum applies to"):
        PGPE(torch.zeros(4), optimizer="adam", momentum=0.5, seed=0)


def test_mirrored_sampling_rounds_the_default_popsize_up_to_even():
    dim = 6  # 4 + floor(3 ln 6) = 9
    assert SNES(np.zeros(dim), seed=0).popsize == 9
    opt = SNES(np.zeros(dim), antithetic=True, seed=0)
    assert opt.popsize == 10
    x = opt.ask()
    np.testing.assert_allclose(x[:5] + x[5:], 2 * opt.state.mean.expand(5, dim).numpy())


def test_xnes_learns_the_same_from_a_copy_of_the_clipped_candidates():
    """A copy of the clipped candidates is no sample of the distribution (every row on one
    face of the box): told as such, xNES' step size overflowed at generation 8. The copy
    is recognized and learned from the samples, as the array ask() returned."""
    space = Product({"a": Real(-1.0, 1.0), "b": Real(0.0, 2.0)})
    runs = []
    for copy in (False, True):
        opt = registry.create("xnes", space, seed=0)
        for _ in range(40):
            x = opt.ask()
            told = np.array(x, copy=True) if copy else x
            opt.tell(told, (told**2).sum(axis=1))
        runs.append((opt.state.sigma, opt.recommend()))
    assert runs[0][0] == runs[1][0]
    assert np.array_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("make", [SNES, XNES], ids=["snes", "xnes"])
def test_a_step_size_update_that_leaves_the_floats_is_refused_unchanged(make):
    """Far-off told points (no samples of the search distribution) used to overflow xNES
    (OverflowError) and make SNES's stdev inf silently, so its next ask sampled inf/NaN."""
    opt = make(np.zeros(2), sigma0=1e-3, seed=0)
    x = opt.ask()
    far = 1e6 * np.arange(x.size, dtype=float).reshape(x.shape)  # no samples of N(0, 1e-6 I)
    before = opt.state_dict()
    with pytest.raises(ValueError, match="step size update"):
        opt.tell(far, -np.arange(len(far), dtype=float))
    assert plain_equal(before, opt.state_dict())
