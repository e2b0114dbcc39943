"""The ES keep the noise of their last ask and read nothing back to the host in ask
(issue 19.4): the kept-noise sums equal the recomputed ones, edited candidates are
never learned from stale noise, ClipUp steps without reading its norms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nondiff.optim import base, registry
from nondiff.optim.distributions import IsotropicGaussian, SeparableGaussian
from nondiff.optim.steps import ClipUp

from tests.host_reads import count_host_reads

ES = ["snes", "pgpe", "openai-es", "cem"]


def sphere(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(dim=1)


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("family", ["isotropic", "separable"])
def test_sums_of_kept_noise_equal_sums_recomputed_from_candidates(device, antithetic, family):
    gen = torch.Generator(device=device).manual_seed(0)
    mean = torch.linspace(-1, 1, 7, dtype=torch.float64, device=device)
    dist = IsotropicGaussian(mean, 0.3) if family == "isotropic" else SeparableGaussian(
        mean, torch.linspace(0.1, 2.0, 7, dtype=torch.float64, device=device))
    x, z = dist.sample_with_noise(10, gen, antithetic=antithetic)
    again = dist.sample(10, torch.Generator(device=device).manual_seed(0), antithetic=antithetic)
    assert torch.equal(x, again)  # the same candidates as sample() draws
    assert z.shape == (5 if antithetic else 10, 7)
    w = torch.linspace(-1, 1, 10, dtype=torch.float64, device=device)
    first, second = dist.noise_sums(x, w)
    kept_first, kept_second = dist.noise_sums_of(z, w, antithetic=antithetic)
    torch.testing.assert_close(kept_first, first, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kept_second, second, rtol=1e-12, atol=1e-12)


def _opt(name: str, device: str):
    return registry.create(name, torch.full((8,), 0.5, dtype=torch.float64, device=device),
                           sigma0=0.5, popsize=10, seed=3)


@pytest.mark.parametrize("name", ES)
def test_kept_noise_path_agrees_with_the_recomputing_path(device, name):
    told_asked, told_copy = _opt(name, device), _opt(name, device)
    for g in range(5):
        x, y = told_asked.ask(), told_copy.ask()
        assert torch.equal(x, y) if g == 0 else torch.allclose(x, y, rtol=1e-10, atol=1e-12)
        told_asked.tell(x, sphere(x))  # the asked tensor: kept noise
        told_copy.tell(y.clone(), sphere(y))  # another tensor: noise recomputed
    torch.testing.assert_close(told_asked.recommend(), told_copy.recommend(),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["snes", "pgpe", "openai-es"])
def test_candidates_edited_in_place_are_learned_from_not_the_kept_noise(device, name):
    edited, fresh = _opt(name, device), _opt(name, device)
    x, y = edited.ask(), fresh.ask()
    x[0] += 1.0  # the user moves a candidate before telling it
    y = y.clone()
    y[0] += 1.0
    edited.tell(x, sphere(x))
    fresh.tell(y, sphere(y))  # a new tensor: learned from the candidates themselves
    assert torch.equal(edited.recommend(), fresh.recommend())


@pytest.mark.parametrize("name", ["snes", "pgpe", "openai-es"])
def test_cpu_candidates_edited_through_a_numpy_view_are_learned_from(name):
    edited, fresh = _opt(name, "cpu"), _opt(name, "cpu")
    x, y = edited.ask(), fresh.ask()
    np.asarray(x)[0] += 1.0  # a numpy view's write does not bump the version counter
    y = y.clone()
    y[0] += 1.0
    edited.tell(x, sphere(x))
    fresh.tell(y, sphere(y))
    assert torch.equal(edited.recommend(), fresh.recommend())


@pytest.mark.parametrize("name", ES)
def test_ask_reads_nothing_back(monkeypatch, device, name):
    opt = _opt(name, device)
    x = opt.ask()
    opt.tell(x, sphere(x))
    reads = count_host_reads(monkeypatch)
    opt.ask()
    assert reads[0] == 0


def _bounded(name: str, device: str, half_width: float):
    return registry.create(name, torch.full((8,), 0.5, dtype=torch.float64, device=device),
                           sigma0=0.5, popsize=10, seed=3,
                           bounds=(0.5 - half_width, 0.5 + half_width))


@pytest.mark.parametrize("name", ES)
@pytest.mark.parametrize("half_width", [100.0, 0.4], ids=["inside", "clipped"])
def test_bounded_ask_reads_nothing_back_and_learns_as_the_checked_path(monkeypatch, device,
                                                                       name, half_width):
    """Off the CPU, ask clips without looking; tell reads whether a sample left the box
    (one value beside the fitness) and learns exactly as the CPU's checked path, edited
    candidates included. On the CPU the lazy path is taken by patching the test of it."""
    def run(lazy: bool) -> tuple[list[torch.Tensor], list[int]]:
        with monkeypatch.context() as patch:
            if lazy:
                patch.setattr(base, "_edits_seen", lambda x: True)
            opt = _bounded(name, device, half_width)
            reads, out, asked = count_host_reads(patch), [], []
            for g in range(6):
                before = reads[0]
                x = opt.ask()
                asked.append(reads[0] - before)
                out.append(x.clone())
                if g == 2:
                    x[0] = 0.5  # edited in place (inside the box): learned from as told
                elif g == 4:
                    x = x.clone()  # a copy: learned from its values
                opt.tell(x, sphere(x))
            return [*out, opt.recommend()], asked

    checked, _ = run(lazy=False)
    lazy, asked = run(lazy=True)
    assert asked == [0] * 6
    assert all(torch.equal(a, b) for a, b in zip(checked, lazy, strict=True))


def test_bounded_tell_reads_one_value_more_than_unbounded(monkeypatch, device):
    monkeypatch.setattr(base, "_edits_seen", lambda x: True)
    counts = []
    for opt in (_opt("snes", device), _bounded("snes", device, 100.0)):
        x = opt.ask()
        reads = count_host_reads(monkeypatch)
        opt.tell(x, sphere(x))
        counts.append(reads[0])
        monkeypatch.undo()
        monkeypatch.setattr(base, "_edits_seen", lambda x: True)
    assert counts[1] == counts[0] + 1


def test_clipup_steps_without_reading_its_norms(monkeypatch, device):
    step = ClipUp(lr=0.1)
    state = step.init(torch.zeros(3, device=device))
    reads = count_host_reads(monkeypatch)
    for grad in ([3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [float("nan"), 1.0, 0.0]):
        delta = step.update(torch.tensor(grad, device=device), state)
    assert reads[0] == 0
    monkeypatch.undo()
    assert bool(torch.isfinite(delta).all())  # zero and NaN gradients add nothing
    assert float(torch.linalg.vector_norm(delta)) <= 0.2 + 1e-7  # the speed limit


@pytest.mark.parametrize("k", [1, 2, 7])
def test_cem_elite_moments_fused_or_not_agree(device, k):
    from nondiff.optim.cem import elite_moments

    elites = torch.randn(k, 5, dtype=torch.float64, device=device,
                         generator=torch.Generator(device=device).manual_seed(k))
    expected_var = elites.var(dim=0) if k > 1 else torch.zeros(5, dtype=torch.float64,
                                                                   device=device)
    for fused in (True, False):
        mean, var = elite_moments(elites.clone(), fused=fused)
        torch.testing.assert_close(mean, elites.mean(dim=0))
        torch.testing.assert_close(var, expected_var)


@pytest.mark.parametrize("name", ["snes", "pgpe"])
def test_inference_mode_asks_and_tells_by_recomputing(device, name):
    """Inference tensors keep no version counter: the noise is then recomputed."""
    plain, inference = _opt(name, device), _opt(name, device)
    x = plain.ask()
    plain.tell(x.clone(), sphere(x))
    with torch.inference_mode():
        y = inference.ask()
        inference.tell(y, sphere(y))
    assert torch.equal(plain.recommend(), inference.recommend())
