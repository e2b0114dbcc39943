"""ControlProblem on a device: the masked rollout agrees with the default one, reads
nothing back per step, keeps its fitness on the candidates' device (issue 19.2)."""

from __future__ import annotations

import math

import pytest
import torch
from nondiff.problems import control
from nondiff.problems.classic_control import ENVIRONMENTS, _wrap
from nondiff.problems.control import SYNC_EVERY, ControlProblem
from torch import nn

from tests.host_reads import count_host_reads

ENV_IDS = sorted(ENVIRONMENTS)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def population(dim: int, n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def assert_agree(ours: torch.Tensor, reference: torch.Tensor, device: str) -> None:
    """Bit for bit on the CPU; on CUDA the transcendental functions may differ in the
    last bit, so returns agree to float tolerance."""
    assert ours.device.type == torch.device(device).type
    if device == "cpu":
        assert torch.equal(ours, reference)
    else:
        torch.testing.assert_close(ours.cpu(), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("policy", ["linear", "mlp"])
def test_device_rollout_equals_default_rollout(device, env_id, policy) -> None:
    """Two generations with observation normalization: returns, lengths, step counts
    and the statistics the second generation normalizes with (each problem its own)."""
    kwargs = {"policy": policy, "hidden": (8,), "episodes": 3, "obs_norm": True,
              "max_steps": 150}
    default = ControlProblem(env_id, **kwargs)
    ours = ControlProblem(env_id, device=device, **kwargs)
    x = population(default.dim, 12, seed=3)
    for _ in range(2):
        context = default.generation_context()
        twin = ours.generation_context()
        assert twin["seeds"] == context["seeds"]
        assert all(torch.equal(a, b) for a, b in zip(twin["norm"][:2], context["norm"][:2],
                                                     strict=True))
        ref_returns, ref_lengths, ref_stats = default.rollout(x, context["seeds"],
                                                              context["norm"], collect=True)
        returns, lengths, stats = ours.rollout(x, context["seeds"], context["norm"],
                                               collect=True)
        assert_agree(returns, ref_returns, device)
        assert stats[1].device.type == "cpu"  # statistics come home once, at the end
        if device == "cpu":
            assert torch.equal(lengths, ref_lengths) and stats[0] == ref_stats[0]
        # the sums add the same float64 values in another order (masked rows add zeros)
        tol = {"rtol": 1e-12, "atol": 1e-9} if device == "cpu" else {"rtol": 1e-5, "atol": 1e-3}
        for a, b in zip(stats[1:], ref_stats[1:], strict=True):
            torch.testing.assert_close(a, b, **tol)
        for problem, s in ((default, ref_stats), (ours, stats)):
            problem.obs_norm.merge(s)
    assert len(set(ref_returns.flatten().tolist())) > 1 or env_id == "Acrobot-v1"


def test_lengths_and_counters_through_the_problem_call(device) -> None:
    default = ControlProblem("CartPole-v1", episodes=2)
    ours = ControlProblem("CartPole-v1", episodes=2, device=device)
    x = population(default.dim, 30, seed=5, scale=0.3)
    assert_agree(ours(x), default(x), device)
    assert ours.env_steps == default.env_steps and ours.episodes == default.episodes == 60
    on_device = ours(x.to(device))  # the fitness follows the candidates
    assert on_device.device.type == torch.device(device).type
    assert on_device.dtype == torch.float64


class Scaled(nn.Module):
    """A custom policy with a buffer: it runs through vmap on a copy on the device."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)
        self.register_buffer("scale", torch.tensor([2.0]))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.linear(obs) * self.scale


def test_custom_module_with_buffer_on_the_device(device) -> None:
    module = Scaled()
    default = ControlProblem("Pendulum-v1", policy=module, max_steps=50)
    ours = ControlProblem("Pendulum-v1", policy=module, max_steps=50, device=device)
    assert module.scale.device.type == "cpu"  # the user's module is not moved
    x = population(default.dim, 6, seed=1)
    assert_agree(ours(x), default(x), device)


def _count_host_reads(monkeypatch) -> list[int]:
    """Host reads, and the calls whose result's shape depends on values (nonzero)."""
    return count_host_reads(monkeypatch, also=("nonzero",))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_device_rollout_reads_back_only_every_sync_every_steps(monkeypatch, device,
                                                               env_id) -> None:
    steps = 4 * SYNC_EVERY
    default = ControlProblem(env_id, max_steps=steps)
    ours = ControlProblem(env_id, max_steps=steps, device=device)
    x = torch.zeros(6, ours.dim)  # zero policies: CartPole falls soon, Pendulum never ends
    if env_id == "CartPole-v1":  # half of them balance (push toward theta + theta')
        x[3:, 6] = x[3:, 7] = 1.0
    reads = _count_host_reads(monkeypatch)
    ours.rollout(x, [0, 1])
    assert reads[0] <= 2 * (steps // SYNC_EVERY)  # (which rows go on, which finished)
    reads[0] = 0
    default.rollout(x, [0, 1])  # the dropping rollout reads every step: the test can fail
    assert reads[0] >= min(steps, 3 * SYNC_EVERY)


def test_wrap_in_fixed_passes_equals_the_loop() -> None:
    x = torch.linspace(-30.0, 30.0, 10_001, dtype=torch.float64)
    x = torch.cat([x, torch.tensor([math.pi, -math.pi, 3 * math.pi + 1e-9, 1e3, -1e3],
                                   dtype=torch.float64)])
    loop = _wrap(x, -math.pi, math.pi)
    passes = _wrap(x, -math.pi, math.pi, passes=4)
    inside = x.abs() < 28.0
    assert torch.equal(passes[inside], loop[inside])  # exact where four passes suffice
    assert bool(((passes >= -math.pi) & (passes <= math.pi)).all())  # and inside elsewhere
    torch.testing.assert_close(passes, loop, rtol=0, atol=1e-9)


def test_bad_device_is_named() -> None:
    with pytest.raises(ValueError, match="device"):
        ControlProblem("CartPole-v1", device="no-such-device")
    with pytest.raises(ValueError, match="backend"):
        ControlProblem("CartPole-v1", backend="gymnasium", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            ControlProblem("CartPole-v1", device="cuda")
    assert ControlProblem("CartPole-v1", device=torch.device("cpu")).device == torch.device("cpu")
    assert control.SYNC_EVERY == SYNC_EVERY
