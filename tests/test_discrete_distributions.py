"""Discrete and product search distributions: sampling, log-probabilities, scores, entropy."""

from __future__ import annotations

import itertools
import math

import nondiff.optim.distributions.discrete as dd
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nondiff.optim.distributions import (
    Bernoulli,
    Categorical,
    LogStdGaussian,
    PlackettLuce,
    ProductDistribution,
    SeparableGaussian,
    distribution_for,
)
from nondiff.optim.spaces import Binary, Integer, Permutation, Product, Real
from nondiff.optim.spaces import Categorical as CategoricalSpace

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rebuild(dist, params):
    """The same distribution over other parameter tensors (for autograd)."""
    if isinstance(dist, Bernoulli):
        return Bernoulli(params["logits"])
    if isinstance(dist, Categorical):
        return Categorical(params["logits"], dist.cardinalities)
    if isinstance(dist, PlackettLuce):
        return PlackettLuce(params["scores"])
    if isinstance(dist, LogStdGaussian):
        return LogStdGaussian(params["mean"], params["log_std"], dist.low, dist.high)
    return ProductDistribution(dist.space, params)


def autograd_of(dist, fn):
    """Gradients of ``fn(distribution)`` w.r.t. every parameter, by autograd."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in dist.parameters().items()}
    grads = torch.autograd.grad(fn(rebuild(dist, leaves)), list(leaves.values()),
                                allow_unused=True)
    return {k: torch.zeros_like(v) if g is None else g
            for (k, v), g in zip(leaves.items(), grads, strict=True)}


def mixed_space() -> Product:
    return Product(r=Real(-1.0, 1.0, size=2), c=CategoricalSpace("abc"), i=Integer(3, 6, size=2),
                   b=Binary(3), p=Permutation(4))


def examples() -> list:
    g = gen(1)
    space = mixed_space()
    product = distribution_for(space)
    for v in product.parameters().values():
        v.add_(0.5 * torch.randn(v.shape, generator=g, dtype=F64))
    return [
        Bernoulli(torch.randn(5, generator=g, dtype=F64)),
        Categorical(torch.randn(3, 4, generator=g, dtype=F64), cardinalities=[4, 2, 3]),
        PlackettLuce(torch.randn(5, generator=g, dtype=F64)),
        LogStdGaussian(torch.randn(3, generator=g, dtype=F64), torch.zeros(3, dtype=F64),
                       torch.tensor([-0.3, -9.0, -1.0], dtype=F64),
                       torch.tensor([0.3, 9.0, 1.0], dtype=F64)),
        product,
    ]


@pytest.mark.parametrize("dist", examples(), ids=lambda d: type(d).__name__)
def test_score_matches_autograd_of_log_prob(dist):
    x = dist.sample(7, gen(2))
    if isinstance(dist, LogStdGaussian):  # make sure some samples sit on the bounds
        assert bool((x == dist.low).any()) and bool((x == dist.high).any())
    score = dist.score(x)
    for i in range(x.shape[0]):
        expected = autograd_of(dist, lambda d, i=i: d.log_prob(x[i:i + 1]).sum())
        for k, v in expected.items():
            torch.testing.assert_close(score[k][i], v, rtol=1e-9, atol=1e-12)
    w = torch.randn(x.shape[0], generator=gen(3), dtype=F64)
    fast = dist.grad(x, w)  # the specialised paths agree with sum_i w_i score_i
    for k, v in score.items():
        torch.testing.assert_close(fast[k], torch.tensordot(w, v, dims=1))


@pytest.mark.parametrize("dist", examples(), ids=lambda d: type(d).__name__)
def test_entropy_grad_matches_autograd_of_entropy(dist):
    x = dist.sample(5, gen(4))
    expected = autograd_of(dist, lambda d: d.entropy())
    got = dist.entropy_grad(x)
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=1e-9, atol=1e-12)


@given(st.lists(st.floats(-4, 4), min_size=1, max_size=7), st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_plackett_luce_score_property(scores, seed):
    dist = PlackettLuce(torch.tensor(scores, dtype=F64))
    x = dist.sample(3, gen(seed))
    score = dist.score(x)["scores"]
    torch.testing.assert_close(score.sum(1), torch.zeros(3, dtype=F64), atol=1e-9, rtol=0)
    for i in range(3):
        expected = autograd_of(dist, lambda d, i=i: d.log_prob(x[i:i + 1]).sum())["scores"]
        torch.testing.assert_close(score[i], expected, rtol=1e-9, atol=1e-12)


def test_plackett_luce_probabilities_of_all_permutations_sum_to_one():
    dist = PlackettLuce(torch.tensor([1.5, -0.3, 0.7, 0.0], dtype=F64))
    perms = torch.tensor(list(itertools.permutations(range(4))), dtype=F64)
    p = dist.log_prob(perms).exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    first = torch.softmax(dist.scores, 0)  # the first item is drawn with softmax(scores)
    for item in range(4):
        assert float(p[perms[:, 0] == item].sum()) == pytest.approx(float(first[item]))
    s = dist.scores.exp()  # the textbook product formula
    for row, prob in zip(perms.long(), p, strict=True):
        expected = math.prod(float(s[row[t]] / s[row[t:]].sum()) for t in range(4))
        assert float(prob) == pytest.approx(expected, rel=1e-12)


def _check_frequencies(samples: torch.Tensor, probs: torch.Tensor) -> None:
    """Empirical frequencies within 4.5 standard errors of the probabilities."""
    n = samples.shape[0]
    freq = samples.mean(0)
    se = (probs * (1 - probs) / n).sqrt()
    assert bool(((freq - probs).abs() <= 4.5 * se + 1e-12).all()), (freq, probs)


def test_sample_frequencies_match_probabilities():
    n = 20_000
    bern = Bernoulli(torch.tensor([-2.0, 0.0, 0.5, 3.0], dtype=F64))
    _check_frequencies(bern.sample(n, gen(5)), torch.sigmoid(bern.logits))

    cat = Categorical(torch.tensor([[0.0, 1.0, -1.0, 2.0], [0.3, -0.2, 5.0, 5.0],
                                    [1.0, 1.0, 1.0, 9.0]], dtype=F64), cardinalities=[4, 2, 3])
    x = cat.sample(n, gen(6)).long()
    onehot = torch.nn.functional.one_hot(x, 4).to(F64)  # (n, d, k)
    probs = cat.probs()
    assert float(probs[1, 2:].sum()) == 0.0 and float(probs[2, 3]) == 0.0  # masked
    assert bool((x < cat.cardinalities).all())  # masked classes are never drawn
    _check_frequencies(onehot.reshape(n, -1), probs.reshape(-1))

    pl = PlackettLuce(torch.tensor([1.0, 0.0, -0.5], dtype=F64))
    perms = torch.tensor(list(itertools.permutations(range(3))), dtype=F64)
    x = pl.sample(n, gen(7))
    hits = (x[:, None, :] == perms[None]).all(2).to(F64)  # (n, 6) indicator per permutation
    assert bool((hits.sum(1) == 1).all())  # every sample is a permutation
    _check_frequencies(hits, pl.log_prob(perms).exp())


def _enumerated_entropy(dist, support: torch.Tensor) -> float:
    lp = dist.log_prob(support)
    return float(-(lp.exp() * lp).sum())


def test_entropy_matches_enumeration():
    bern = Bernoulli(torch.tensor([-1.0, 0.2, 2.5], dtype=F64))
    bits = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=F64)
    assert float(bern.entropy()) == pytest.approx(_enumerated_entropy(bern, bits), rel=1e-12)

    cat = Categorical(torch.tensor([[0.0, 1.0, -1.0], [0.3, -0.2, 7.0]], dtype=F64),
                      cardinalities=[3, 2])
    grid = torch.tensor([[a, b] for a in range(3) for b in range(2)], dtype=F64)
    assert float(cat.entropy()) == pytest.approx(_enumerated_entropy(cat, grid), rel=1e-12)

    pl = PlackettLuce(torch.tensor([0.4, -1.0, 2.0, 0.1, 0.0], dtype=F64))
    perms = torch.tensor(list(itertools.permutations(range(5))), dtype=F64)
    exact = _enumerated_entropy(pl, perms)
    assert float(pl.entropy()) == pytest.approx(exact, rel=1e-12)
    assert float(PlackettLuce(torch.zeros(5, dtype=F64)).entropy()) == pytest.approx(
        math.log(120))

    space = Product(c=CategoricalSpace("abc"), b=Binary(3), p=Permutation(3))
    product = distribution_for(space)
    assert float(product.entropy()) == pytest.approx(math.log(3) + 3 * math.log(2) + math.log(6))


def test_plackett_luce_monte_carlo_entropy_for_many_items(monkeypatch):
    pl = PlackettLuce(torch.tensor([0.4, -1.0, 2.0, 0.1, 0.0], dtype=F64))
    exact = float(pl.entropy())
    exact_grad = pl.entropy_grad()["scores"]
    big = PlackettLuce(torch.zeros(9, dtype=F64))
    with pytest.raises(ValueError, match="generator"):
        big.entropy()
    monkeypatch.setattr(dd, "EXACT_ENTROPY_MAX_N", 3)  # force the Monte-Carlo paths
    monkeypatch.setattr(dd, "EXACT_ENTROPY_GRAD_MAX_N", 3)
    samples = 20_000
    estimate = float(pl.entropy(gen(8), samples=samples))
    lp = pl.log_prob(pl.sample(samples, gen(9)))
    assert abs(estimate - exact) < 4.5 * float(lp.std()) / math.sqrt(samples)
    # the sample-based entropy gradient (leave-one-out baseline) is unbiased
    estimates = torch.stack([pl.entropy_grad(pl.sample(16, g))["scores"]
                             for g in [gen(100 + r) for r in range(1500)]])
    se = estimates.std(0) / math.sqrt(estimates.shape[0])
    assert bool(((estimates.mean(0) - exact_grad).abs() <= 4.5 * se).all())
    with pytest.raises(ValueError, match="2"):
        pl.entropy_grad(None)


def test_natural_gradients_solve_the_fisher_system():
    x_b = Bernoulli(torch.tensor([0.3, -1.0], dtype=F64))
    x = x_b.sample(16, gen(10))
    w = torch.randn(16, generator=gen(11), dtype=F64)
    p = torch.sigmoid(x_b.logits)
    torch.testing.assert_close(p * (1 - p) * x_b.natural_grad(x, w)["logits"],
                               x_b.grad(x, w)["logits"])
    cat = Categorical(torch.tensor([[0.0, 1.0, -1.0], [0.3, -0.2, 0.0]], dtype=F64),
                      cardinalities=[3, 2])
    x = cat.sample(16, gen(12))
    nat, g, probs = cat.natural_grad(x, w)["logits"], cat.grad(x, w)["logits"], cat.probs()
    for j in range(2):
        fisher = torch.diag(probs[j]) - torch.outer(probs[j], probs[j])
        torch.testing.assert_close(fisher @ nat[j], g[j])
    pl = PlackettLuce(torch.tensor([0.5, 0.0, -0.5, 1.0], dtype=F64))
    x = pl.sample(16, gen(13))
    s = pl.score(x)["scores"]
    fisher = s.T @ s / 16
    torch.testing.assert_close(fisher @ pl.natural_grad(x, w)["scores"], w @ s)
    product = distribution_for(mixed_space())
    x = product.sample(16, gen(14))
    assert set(product.natural_grad(x, w)) == set(product.parameters())


def test_product_samples_decode_and_compose():
    space = mixed_space()
    dist = distribution_for(space, sigma0=0.7)
    assert sorted(dist.parameters()) == ["b.logits", "c.logits", "i.logits", "p.scores",
                                         "r.log_std", "r.mean"]
    assert dist.parameters()["i.logits"].shape == (2, 4)
    x = dist.sample(200, gen(15))
    assert x.shape == (200, space.size) and x.dtype == F64
    values = space.decode_batch(x)  # raises if any row is not a valid encoding
    assert all(3 <= v for value in values for v in value["i"])
    assert {int(v) for row in x[:, 3:5] for v in row} == {3, 4, 5, 6}
    assert float(x[:, :2].min()) >= -1.0 and float(x[:, :2].max()) <= 1.0
    leaf_sum = sum(d.log_prob(x[:, sl] - off) for _, d, sl, off in dist.leaves)
    torch.testing.assert_close(dist.log_prob(x), leaf_sum)
    space.decode(dist.mode())
    bare = distribution_for(Integer(-2, 2, size=3))
    assert sorted(bare.parameters()) == ["logits"]
    assert set(bare.sample(50, gen(16)).unique().tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}
    mean = distribution_for(Real(size=3), mean=np.array([1.0, 2.0, 3.0]), sigma0=0.1)
    assert mean.mode().tolist() == [1.0, 2.0, 3.0]
    torch.testing.assert_close(mean.gaussians()[1], torch.full((3,), 0.1, dtype=F64))


def test_gaussian_samples_and_censoring():
    dist = LogStdGaussian(torch.tensor([0.0, 2.0], dtype=F64),
                          torch.log(torch.tensor([1.0, 0.5], dtype=F64)))
    x = dist.sample(4000, gen(17), antithetic=True)
    torch.testing.assert_close(x[:2000] + x[2000:], torch.tensor([0.0, 4.0], dtype=F64)
                               .expand(2000, 2))
    assert x.std(0).tolist() == pytest.approx([1.0, 0.5], rel=0.05)
    sep = SeparableGaussian(dist.mean, dist.log_std.exp())  # agrees with the shared Gaussian
    torch.testing.assert_close(dist.log_prob(x), sep.log_prob(x))
    censored = LogStdGaussian(torch.zeros(1, dtype=F64), torch.zeros(1, dtype=F64),
                              torch.tensor([0.0], dtype=F64))
    y = censored.sample(4000, gen(18))
    assert float((y == 0).to(F64).mean()) == pytest.approx(0.5, abs=0.04)
    assert float(censored.log_prob(torch.zeros(1, 1, dtype=F64))) == pytest.approx(math.log(0.5))


def test_validation_errors_are_named():
    with pytest.raises(ValueError, match="logits"):
        Bernoulli(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="logits"):
        Categorical(torch.zeros(3))
    with pytest.raises(ValueError, match="cardinalities"):
        Categorical(torch.zeros(2, 3), cardinalities=[4, 1])
    with pytest.raises(ValueError, match="scores"):
        PlackettLuce(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="log_std"):
        LogStdGaussian(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="antithetic"):
        Bernoulli(torch.zeros(2)).sample(4, gen(), antithetic=True)
    with pytest.raises(ValueError, match="n must be"):
        PlackettLuce(torch.zeros(3)).sample(0, gen())
    with pytest.raises(ValueError, match="weights"):
        Bernoulli(torch.zeros(2)).grad(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="sigma0"):
        distribution_for(Real(size=2), sigma0=0.0)
    with pytest.raises(ValueError, match="params"):
        ProductDistribution(Binary(3), {"scores": torch.zeros(3)})


def test_float32_parameters_stay_float32():
    dist = distribution_for(Product(b=Binary(3), p=Permutation(3), r=Real(size=2)),
                            dtype=torch.float32)
    x = dist.sample(4, gen(19))
    assert x.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in dist.grad(x, torch.ones(4)).values())
