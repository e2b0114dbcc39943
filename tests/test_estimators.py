"""Estimators across hard ops (straight-through, Gumbel-softmax, score function) and the
learned loss critic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nondiff.hybrid.critic import LossCritic
from nondiff.hybrid.estimators import (
    gumbel_softmax,
    sample_categorical,
    score_function_surrogate,
    straight_through_argmax,
    straight_through_round,
)
from nondiff.optim.distributions import Categorical
from nondiff.optim.reinforce import score_function_gradient

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_straight_through_argmax_is_one_hot_with_the_softmax_gradient() -> None:
    logits = torch.tensor([[0.5, 2.0, -1.0], [3.0, 0.0, 0.0]], requires_grad=True)
    weights = torch.tensor([1.0, -2.0, 0.5])
    y = straight_through_argmax(logits)
    assert y.tolist() == [[0, 1, 0], [1, 0, 0]]
    (y * weights).sum().backward()
    reference = logits.detach().clone().requires_grad_(True)
    (reference.softmax(-1) * weights).sum().backward()
    assert torch.allclose(logits.grad, reference.grad)


def test_straight_through_round_passes_the_gradient() -> None:
    x = torch.tensor([0.4, 1.6], requires_grad=True)
    y = straight_through_round(x)
    (3 * y).sum().backward()
    assert y.tolist() == [0.0, 2.0] and x.grad.tolist() == [3.0, 3.0]


def test_gumbel_softmax_samples_follow_the_softmax() -> None:
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).expand(20000, 3)
    g = torch.Generator().manual_seed(0)
    hard = gumbel_softmax(logits, tau=0.5, hard=True, generator=g)
    assert torch.allclose(hard.sum(-1), torch.ones(20000))
    assert np.allclose(hard.mean(0).numpy(), [0.6, 0.3, 0.1], atol=0.015)
    soft = gumbel_softmax(logits, tau=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(soft.argmax(-1), hard.argmax(-1))  # the same noise, seeded
    with pytest.raises(ValueError, match="tau"):
        gumbel_softmax(logits, tau=0.0)


def test_score_function_surrogate_matches_optim_reinforce() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 4, dtype=torch.float64, requires_grad=True)
    samples = sample_categorical(logits, 16, torch.Generator().manual_seed(1))
    losses = (samples.to(torch.float64) - 2.0) ** 2
    score_function_surrogate(logits, samples, losses).backward()
    dist = Categorical(logits.detach().clone())
    ours = score_function_gradient(dist, samples.to(torch.float64), losses[:, 0], "rloo")
    assert torch.allclose(logits.grad, ours["logits"])


def test_score_function_surrogate_is_unbiased() -> None:
    logits = torch.tensor([[0.2, -0.5, 1.0]], dtype=torch.float64, requires_grad=True)
    values = torch.tensor([1.0, 4.0, -2.0], dtype=torch.float64)
    (logits.softmax(-1) * values).sum().backward()  # exact gradient of E[f]
    exact = logits.grad.clone()
    logits.grad = None
    big = logits.expand(4000, 3)  # 4000 independent copies of the example
    samples = sample_categorical(big, 4, torch.Generator().manual_seed(0))
    score_function_surrogate(big, samples, values[samples]).backward()
    assert torch.allclose(logits.grad / 4000 * 4000, exact, atol=0.05)
    with pytest.raises(ValueError, match="rloo"):
        score_function_surrogate(big, samples[:1], values[samples[:1]])


def test_critic_gradient_points_downhill_across_rounding() -> None:
    """Hard op: round each of 3 coordinates; loss: squared distance of the rounded point to
    a target. The critic learns from rounded noisy points; descending its gradient at the
    unrounded point reaches the target, where the true gradient is zero everywhere."""
    torch.manual_seed(0)
    target = torch.tensor([2.0, -1.0, 0.0])
    critic = LossCritic(3, hidden=64, lr=3e-3)
    z = torch.tensor([[-2.0, 2.0, 2.6]])
    start = float(((z.round() - target) ** 2).sum())
    cosines = []
    for _ in range(150):
        explore = z + torch.randn(64, 3)  # the hard op's inputs, spread around z
        hard = explore.round()
        critic.update(hard, ((hard - target) ** 2).sum(1))
        g = critic.gradient(z)
        if float((z - target).norm()) > 1.0:  # far from the target: compare directions
            cosines.append(float(torch.cosine_similarity(g, z - target).squeeze()))
        z = z - 0.05 * g
    end = float(((z.round() - target) ** 2).sum())
    assert start > 20 and end == 0.0
    assert np.mean(cosines[20:]) > 0.5


def test_critic_with_context_and_bad_input() -> None:
    critic = LossCritic(4, context=2)
    with pytest.raises(ValueError, match="context"):
        critic(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="features"):
        critic(torch.zeros(3, 5), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="hidden"):
        LossCritic(4, hidden=0)
    z = torch.zeros(3, 4, requires_grad=True)
    predicted = critic.backward(z * 2, torch.ones(3, 2))
    assert predicted.shape == (3,) and z.grad is not None and z.grad.shape == (3, 4)
