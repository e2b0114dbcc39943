"""The torch CMA-ES (optim/cmaes_torch.py) against pycma's formulas, and its contracts.

The reference comparison drives pycma's ``cma.CMAEvolutionStrategy`` with ``tell`` of
*our* samples and fitness; after every generation mean, step size and covariance
matrix must agree to float64 precision. pycma is set up as the plain CMA-ES that
ours implements (its defaults otherwise add features that are not update equations):

- ``CMA_mirrors=0``: no mirrored sampling (pycma mirrors for popsize < 6, which also
  changes its step-size damping through the number of mirrors);
- ``AdaptSigma=CMAAdaptSigmaCSA``: path-length control in every dimension (pycma
  switches to TPA from 300-D; ours keeps CSA, as the tutorial);
- ``tell(..., check_points=False)``: pycma shortens the told solutions that it did
  not sample itself when they are unusually long in Mahalanobis norm ("repair" of
  injected solutions); ours told its own samples, which pycma never repairs;
- the initial covariance set to the identity: pycma tilts C_0 by
  ``exp(1e-4 i / n)`` to avoid equal eigenvalues in the first decomposition.

Active CMA (negative weights, the default of both) and the passive update
(``active=False`` vs ``CMA_active=False``) are both compared; pycma's lazy
eigendecomposition count must match ours too. The separable variant (Ros & Hansen
2008) differs from pycma's ``CMA_diagonal`` (a multiplicative diagonal decoding), so it is
checked against a direct numpy transcription of the tutorial's equations.
"""

from __future__ import annotations

import math

import cma
import numpy as np
import pytest
import torch
from cma.sigma_adaptation import CMAAdaptSigmaCSA
from nondiff.optim import CMAESTorch, SepCMAESTorch, base, cmaes_torch, minimize, registry
from nondiff.optim.box_transform import BoxTransform
from nondiff.optim.cmaes_parameters import chi_n, strategy_parameters
from nondiff.optim.minimize import device_variant
from nondiff.problems.continuous import Ellipsoid, Rosenbrock, Sphere

from tests.conftest import roundtrip
from tests.host_reads import count_host_reads


def _pycma(x0: np.ndarray, sigma0: float, popsize: int, **options) -> cma.CMAEvolutionStrategy:
    es = cma.CMAEvolutionStrategy(x0, sigma0, {
        "popsize": popsize, "CMA_mirrors": 0, "AdaptSigma": CMAAdaptSigmaCSA,
        "verbose": -9, "seed": 1, **options})
    n = len(x0)
    es.sm.C, es.sm.B, es.sm.D = np.eye(n), np.eye(n), np.ones(n)  # C_0 = I (docstring)
    return es


def _ellipsoid(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    return (10 ** (6 * np.arange(n) / (n - 1)) * x**2).sum(axis=1)


@pytest.mark.parametrize(("n", "popsize", "generations"), [(5, 8, 40), (12, 10, 30), (30, 64, 8)])
@pytest.mark.parametrize("active", [True, False])
def test_updates_equal_pycma(device, n, popsize, generations, active):
    x0 = np.linspace(-1.0, 2.0, n)
    ours = CMAESTorch(torch.tensor(x0, device=device), sigma0=0.7, popsize=popsize, seed=2,
                      active=active)
    es = _pycma(x0, 0.7, popsize, CMA_active=active)
    assert np.allclose(es.sp.weights, ours.params.weights, rtol=0, atol=1e-15)
    for _ in range(generations):
        x = ours.ask()
        f = _ellipsoid(x.cpu().numpy())
        es.ask()  # pycma's own samples are discarded: it learns from ours
        es.tell(list(x.cpu().numpy()), f.tolist(), check_points=False)
        ours.tell(x, f)
        st = ours.state
        np.testing.assert_allclose(st.mean.cpu().numpy(), es.mean, rtol=1e-12, atol=1e-14)
        assert st.sigma.item() == pytest.approx(es.sigma, rel=1e-12)
        c = st.cov.cpu().numpy()
        np.testing.assert_allclose(c, es.sm.C, rtol=1e-11, atol=1e-13 * np.abs(es.sm.C).max())
        np.testing.assert_allclose(st.pc.cpu().numpy(), es.pc, rtol=1e-10, atol=1e-13)
    assert st.decompositions == es.sm.count_eigen > 0  # the same lazy schedule


@pytest.mark.parametrize(("n", "popsize"), [(2, 6), (5, 4), (10, 10), (100, 256), (1000, 256)])
def test_parameters_equal_pycma(n, popsize):
    p = strategy_parameters(n, popsize)
    es = _pycma(np.zeros(n), 1.0, popsize)
    es.adapt_sigma.initialize(es)
    sm = es.sm.parameters(mueff=es.sp.weights.mueff, lam=es.sp.weights.lambda_)
    assert p.mu == es.sp.weights.mu
    np.testing.assert_allclose(p.weights, es.sp.weights, rtol=1e-13, atol=1e-16)
    for ours, theirs in [(p.mueff, es.sp.weights.mueff), (p.cs, es.adapt_sigma.cs),
                         (p.damps, es.adapt_sigma.damps), (p.cc, es.sp.cc), (p.c1, sm["c1"]),
                         (p.cmu, sm["cmu"]), (p.eigen_gap, es.sm.lazy_update_gap)]:
        assert ours == pytest.approx(theirs, rel=1e-13)
    assert chi_n(n) == pytest.approx(cma.utilities.math.Mh.chiN(n), rel=1e-12)


def test_separable_update_follows_the_tutorial_on_the_diagonal(device):
    """One sep-CMA update against the tutorial's equations written out in numpy, with
    the (n + 2) / 3 learning rates of Ros & Hansen (2008)."""
    n, lam = 7, 12
    opt = SepCMAESTorch(torch.full((n,), 0.5, dtype=torch.float64, device=device), sigma0=0.3,
                        popsize=lam, seed=4)
    for _ in range(3):  # leave the initial isotropic state
        x = opt.ask()
        opt.tell(x, _ellipsoid(x.cpu().numpy()))
    st = opt.state
    m, sigma, c = st.mean.cpu().numpy(), st.sigma.item(), st.cov.cpu().numpy().copy()
    pc, ps, g = st.pc.cpu().numpy().copy(), st.ps.cpu().numpy().copy(), st.generation + 1
    x = opt.ask()
    f = _ellipsoid(x.cpu().numpy())
    opt.tell(x, f)
    p = strategy_parameters(n, lam, diagonal=True)
    w = np.array(p.weights)
    xs = x.cpu().numpy()[np.argsort(f)]
    y = (xs - m) / sigma
    m_new = w[:p.mu] @ xs[:p.mu]
    ps = (1 - p.cs) * ps + math.sqrt(p.cs * (2 - p.cs) * p.mueff) * (m_new - m) / sigma / c**0.5
    hsig = (ps @ ps) / (1 - (1 - p.cs) ** (2 * g)) / n - 1 < 1 + 4 / (n + 1)
    pc = (1 - p.cc) * pc + hsig * math.sqrt(p.cc * (2 - p.cc) * p.mueff) * (m_new - m) / sigma
    wo = w * np.where(w < 0, n / (np.sqrt((y**2 / c).sum(axis=1)) + 1e-9) ** 2, 1.0)
    c1a = p.c1 * (1 - (1 - hsig) * p.cc * (2 - p.cc))
    c = (1 - c1a - p.cmu * w.sum()) * c + p.c1 * pc**2 + p.cmu * (wo @ y**2)
    sigma *= math.exp(min(1.0, p.cs / p.damps * (np.linalg.norm(ps) / p.chin - 1)))
    st = opt.state
    np.testing.assert_allclose(st.mean.cpu().numpy(), m_new, rtol=1e-13)
    np.testing.assert_allclose(st.cov.cpu().numpy(), c, rtol=1e-12)
    assert st.sigma.item() == pytest.approx(sigma, rel=1e-13)
    assert p.c1 == pytest.approx(strategy_parameters(n, lam).c1 * (n + 2) / 3, rel=1e-14)


@pytest.mark.parametrize(("problem", "covariance", "budget"), [
    (Sphere(5), "full", 3000), (Ellipsoid(6), "full", 8000), (Rosenbrock(5), "full", 12000),
    (Sphere(8), "diagonal", 4000), (Ellipsoid(8), "diagonal", 8000)])
def test_reaches_1e_8_on_small_functions(device, problem, covariance, budget):
    x0 = torch.full((problem.dim,), 3.0 if problem.name != "rosenbrock" else 0.0,
                    dtype=torch.float64, device=device)
    res = minimize(problem, x0, optimizer="cmaes-torch", budget=budget, sigma0=1.0,
                   vectorized=True, seed=5, target=problem.f_opt + 1e-8,
                   options={"covariance": covariance})
    assert res.f - problem.f_opt <= 1e-8, (res.f, res.evaluations, res.stop)
    assert res.x.device.type == torch.device(device).type


def test_float32_stays_float32_on_the_device(device):
    opt = CMAESTorch(torch.full((10,), 2.0, device=device), sigma0=1.0, seed=0)
    for _ in range(150):
        x = opt.ask()
        opt.tell(x, x.double().square().sum(1))
    st = opt.state
    assert x.dtype == torch.float32 and st.cov.dtype == torch.float32
    assert st.cov.device.type == st.eigvecs.device.type == torch.device(device).type
    assert opt.best_f < 1e-6


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_bounds_are_respected_and_the_optimum_on_the_bound_is_found(device, covariance):
    opt = CMAESTorch(torch.full((4,), 0.5, dtype=torch.float64, device=device), sigma0=0.5,
                     seed=1, bounds=(0.0, 1.0), covariance=covariance)
    for _ in range(200):
        x = opt.ask()
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        opt.tell(x, (x - 2.0).square().sum(1))  # optimum at the corner (1, 1, 1, 1)
    assert opt.best_f == pytest.approx(4.0, abs=1e-6)
    mean = opt.mean
    assert float(mean.min()) >= 0.0 and float(mean.max()) <= 1.0


def test_box_transform_is_pycmas():
    lower, upper = np.array([0.0, -1.0, -np.inf, 2.0]), np.array([1.0, 3.0, 5.0, np.inf])
    theirs = cma.BoundTransform([lower.tolist(), upper.tolist()])
    box = BoxTransform(torch.tensor(lower), torch.tensor(upper))
    x = np.random.default_rng(0).normal(0.0, 6.0, size=(200, 4))
    ours = box.transform(torch.tensor(x)).numpy()
    expected = np.array([theirs.repair(row.copy()) for row in x])
    np.testing.assert_allclose(ours, expected, rtol=1e-14, atol=1e-14)
    assert np.all((ours >= lower) & (ours <= upper))
    back = box.transform(box.inverse(torch.tensor(ours))).numpy()
    np.testing.assert_allclose(back, ours, rtol=1e-12, atol=1e-12)


def test_told_candidates_map_back_to_their_genotypes():
    """Candidates from ask() are learned from as the unbounded samples behind them;
    other candidates through the inverse transformation."""
    opt = CMAESTorch(np.full(3, 0.9), sigma0=2.0, seed=0, bounds=(0.0, 1.0))
    x = opt.ask()
    genotypes = opt.state.asked.clone()
    assert not torch.equal(genotypes, torch.as_tensor(x))  # some samples left the box
    assert torch.equal(opt._genotypes(torch.as_tensor(x)), genotypes)
    other = torch.as_tensor(x).clone()
    assert torch.allclose(opt._box.transform(opt._genotypes(other)), other)


@pytest.mark.parametrize("name", ["ipop-cmaes-torch", "bipop-sep-cmaes-torch"])
def test_restarts_grow_the_population(device, name):
    def rastrigin(x):
        return 10 * x.shape[1] + (x.square() - 10 * torch.cos(2 * math.pi * x)).sum(1)

    opt = registry.create(name, torch.full((4,), 3.0, dtype=torch.float64, device=device),
                          sigma0=2.0, seed=0, restarts=3)
    first = opt.popsize
    while not opt.stop():
        x = opt.ask()
        opt.tell(x, rastrigin(x))
    runs = opt.state.history
    assert len(runs) == opt.stop()["restarts"] >= 3
    assert max(run["popsize"] for run in runs) > first
    assert opt.best_f < 2.0


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_resume_between_ask_and_tell_is_bit_for_bit(device, covariance):
    def run(opt, generations):
        out = []
        for _ in range(generations):
            x = opt.ask()
            out.append(x.cpu().clone())
            opt.tell(x, (x.double() - 0.3).square().sum(1))
        return out

    def make():
        return CMAESTorch(torch.full((9,), 0.8, device=device), sigma0=0.4, seed=7,
                          bounds=(0.0, 1.0), covariance=covariance)

    opt = make()
    run(opt, 6)
    x = opt.ask()
    saved = roundtrip(opt.state_dict())  # mid-generation: the asked genotypes travel
    opt.tell(x, (x.double() - 0.3).square().sum(1))
    expected = run(opt, 12)
    resumed = make()
    resumed.load_state_dict(saved)
    resumed.tell(x, (x.double() - 0.3).square().sum(1))
    got = run(resumed, 12)
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
    assert resumed.state.decompositions == opt.state.decompositions


def test_edited_covariance_shape_is_refused():
    opt = CMAESTorch(np.zeros(4), seed=0)
    state = opt.state_dict()
    state["state"]["cov"] = torch.eye(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"cov has shape \(3, 4\), want \(4, 4\)"):
        CMAESTorch(np.zeros(4), seed=0).load_state_dict(state)


def test_a_broken_distribution_stops_the_run_instead_of_sampling_nan():
    opt = CMAESTorch(np.zeros(4), popsize=6, seed=0)
    x = opt.ask()
    opt.tell(x, (x**2).sum(1))
    opt.state.cov[0, 0] = math.nan  # as an overflow would leave it
    opt.state.since_eigen = 10**6  # a decomposition is due
    with pytest.raises(ValueError, match="nonfinite_state"):
        opt.ask()
    assert "nonfinite_state" in opt.stop()


def test_wrong_batch_size_is_refused():
    opt = CMAESTorch(np.zeros(4), popsize=6, seed=0)
    with pytest.raises(ValueError, match=r"needs n == popsize \(6\)"):
        opt.ask(4)
    x = opt.ask()
    with pytest.raises(ValueError, match="needs at least 6 candidates"):
        opt.tell(x[:5], np.zeros(5))
    assert opt.counters["iterations"] == 0


def test_minimize_picks_torch_cmaes_for_cuda_tensors(device):
    x0 = torch.zeros(3, device=device)
    expected = "cmaes-torch" if device == "cuda" else "cmaes"
    assert device_variant("cmaes", x0) == expected
    assert device_variant("bipop-sep-cmaes", x0) == (f"bipop-sep-{expected}")
    assert device_variant("cmaes", x0, {"integer_variables": [0]}) == "cmaes"  # pycma's
    assert device_variant("snes", x0) == "snes"
    res = minimize(lambda x: (x.double() ** 2).sum(1), x0 + 1, budget=200, vectorized=True,
                   seed=0)
    assert res.optimizer == expected


@pytest.mark.parametrize("cls", [CMAESTorch, SepCMAESTorch])
def test_generations_without_a_finite_value_do_not_look_converged(cls, device):
    opt = cls(torch.ones(5, dtype=torch.float64, device=device), seed=0)
    for _ in range(3):  # stand-ins of all-NaN generations are equal: no tolfun/flat stop
        x = opt.ask()
        opt.tell(x, torch.full((x.shape[0],), math.nan, device=device))
    assert opt.stop() == {} and opt.state.best_history == []
    x = opt.ask()
    f = x.square().sum(dim=1)
    f[0] = math.nan  # a NaN row ranks last; the history holds the best finite value
    opt.tell(x, f)
    assert opt.state.best_history == [pytest.approx(float(f[1:].min()))]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_before_anything_is_built(dtype):
    with pytest.raises(ValueError, match=r"x0 has dtype .*(float32 or float64|x0\.float\(\))"):
        CMAESTorch(torch.ones(3, dtype=dtype))


def _as_off_the_cpu(monkeypatch, device: str) -> None:
    """On the CPU, take the path GPUs take: edits seen by the version counter (a CPU
    tensor can be edited unseen through a numpy view, so the CPU compares values)."""
    if device == "cpu":
        monkeypatch.setattr(cmaes_torch, "_edits_seen", lambda x: True)
        monkeypatch.setattr(base, "_edits_seen", lambda x: True)  # tell's checks too


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
@pytest.mark.parametrize("bounds", [None, (0.0, 1.0)], ids=["unbounded", "bounded"])
def test_a_generation_reads_the_fitness_and_one_tensor_of_scalars(monkeypatch, device,
                                                                  covariance, bounds):
    """tell: the fitness and the stop-test scalars, bounds or not; ask: nothing, except
    when it decomposes C (one check of the eigenvalues; on the CPU numpy's eigh also
    takes C through .numpy(), a free read there)."""
    _as_off_the_cpu(monkeypatch, device)
    opt = CMAESTorch(torch.full((12,), 0.5, dtype=torch.float64, device=device), sigma0=0.3,
                     popsize=24, seed=0, bounds=bounds, covariance=covariance)
    reads = count_host_reads(monkeypatch)
    per_generation = []
    for _ in range(12):
        decompositions, before = opt.state.decompositions, reads[0]
        x = opt.ask()
        asked = reads[0] - before
        f = (x - 0.9).square().sum(dim=1)  # on the device; optimum inside the box
        before = reads[0]
        opt.tell(x, f)
        decomposed = opt.state.decompositions > decompositions
        per_generation.append((asked, reads[0] - before, decomposed))
    eigen_reads = 2 if device == "cpu" else 1
    assert all(told == 2 for _, told, _ in per_generation), per_generation
    assert all(asked == (eigen_reads if decomposed else 0)
               for asked, _, decomposed in per_generation), per_generation
    assert any(d for *_, d in per_generation) == (covariance == "full")


def test_bounded_tells_learn_the_same_without_comparing_values(monkeypatch, device):
    """The version counter recognizes the asked candidates as the value comparison
    did: the same run bit for bit, with a told copy and an edited tensor among them."""
    def run() -> list[torch.Tensor]:
        opt = CMAESTorch(torch.full((7,), 0.8, dtype=torch.float64, device=device),
                         sigma0=0.5, popsize=10, seed=3, bounds=(0.0, 1.0))
        out = []
        for g in range(10):
            x = opt.ask()
            out.append(x.clone())
            if g == 3:
                x = x.clone()  # another tensor with the same values: its genotypes
            elif g == 6:
                x[0] = 0.5  # edited in place: mapped back by the inverse
            opt.tell(x, (x - 0.9).square().sum(dim=1))
        return [*out, opt.state.mean.clone(), opt.state.cov.clone()]

    compared = run()
    _as_off_the_cpu(monkeypatch, device)
    counted = run()
    assert all(torch.equal(a, b) for a, b in zip(compared, counted, strict=True))
