"""LossCritic exploration: the balanced default explores every output of a collapsed
policy (sampling the policy shows one), so the critic learns a sparse 0/1 loss."""

from __future__ import annotations

import pytest
import torch
from nondiff.hybrid.critic import LossCritic
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K = 5


def collapsed(batch: int = 256) -> torch.Tensor:
    """A policy that puts 99.95 % on output 0 in every row."""
    logits = torch.zeros(batch, K)
    logits[:, 0] = 9.0
    return logits.softmax(1)


def counts(critic: LossCritic, probs: torch.Tensor, samples: int = 4) -> torch.Tensor:
    draws = critic.explore(probs, samples, torch.Generator().manual_seed(0))
    assert draws.shape == (samples, probs.shape[0])
    return torch.bincount(draws.flatten(), minlength=K)


def test_balanced_explores_every_output_where_the_policy_collapses() -> None:
    probs = collapsed()
    uniform = 4 * 256 / K
    balanced = counts(LossCritic(K), probs)
    assert ((balanced > uniform / 2) & (balanced < uniform * 2)).all(), balanced
    policy = counts(LossCritic(K, exploration="policy"), probs)
    assert policy[0] > 0.9 * policy.sum() and (policy[1:] < uniform / 5).all(), policy


def test_balanced_is_on_policy_when_the_policy_uses_every_output_equally() -> None:
    labels = torch.arange(250) % K
    probs = (8.0 * nn.functional.one_hot(labels, K)).softmax(1)  # confident, balanced
    draws = LossCritic(K).explore(probs, 4, torch.Generator().manual_seed(0))
    assert (draws == labels).float().mean() > 0.95


@pytest.mark.parametrize("exploration", ["balanced", "policy"])
def test_only_balanced_exploration_finds_the_rewarded_output(exploration) -> None:
    """A sparse 0/1 loss: 0 for output 3, 1 otherwise; the policy sits on output 0. The
    critic's synthetic gradient (of its multilinear extension, Eq. 3) at the policy
    must point to output 3: it does when exploring balanced; sampling the policy, the
    critic has (almost) only ever seen output 0 and cannot tell 3 from the rest."""
    torch.manual_seed(0)
    critic = LossCritic(K, hidden=32, lr=1e-2, exploration=exploration)
    g = torch.Generator().manual_seed(1)
    probs = collapsed(64)
    for _ in range(150):
        a = critic.explore(probs, 1, g)[0]
        critic.update(nn.functional.one_hot(a, K).float(), (a != 3).float())
    p = probs[:1].clone().requires_grad_(True)
    critic.expected([p]).sum().backward()
    others = torch.cat([p.grad[0, :3], p.grad[0, 4:]])
    margin = float(others.min() - p.grad[0, 3])  # > 0: descending raises output 3
    table = critic(torch.eye(K)).detach()
    if exploration == "balanced":
        assert margin > 0.9 and table[3] < 0.1 and (table[[0, 1, 2, 4]] > 0.9).all(), table
    else:  # output 3 seen once in 9600 draws: its loss estimate stays far from 0
        assert margin < 0.5 and table[3] > 0.3, table


def test_bad_exploration_arguments_name_the_fix() -> None:
    with pytest.raises(ValueError, match=r"exploration must be one of .*'uniform'"):
        LossCritic(K, exploration="uniform")
    critic = LossCritic(K)
    with pytest.raises(ValueError, match="samples must be a positive integer, got 0"):
        critic.explore(collapsed(), 0)
    with pytest.raises(ValueError, match=r"\(batch, k\).*\(5,\)"):
        critic.explore(torch.ones(5))
    with pytest.raises(ValueError, match="finite, non-negative"):
        critic.explore(torch.full((3, K), float("nan")))
    with pytest.raises(ValueError, match="finite, non-negative"):
        critic.explore(torch.zeros(3, K))
