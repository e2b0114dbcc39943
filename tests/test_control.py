"""Control problems: batched evaluation, policies, normalization, solving, policies out."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from nondiff.optim import registry
from nondiff.problems.control import ControlProblem, load_policy
from nondiff.problems.policies import LinearPolicy, MLPPolicy, RunningNorm, StackedPolicy
from torch import nn

from nondiff import cli, problems

ENV_IDS = ["CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCarContinuous-v0"]


def population(problem: ControlProblem, n: int, seed: int = 0, scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, problem.dim, generator=gen)


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("policy", ["linear", "mlp"])
def test_batched_returns_equal_each_policy_alone(env_id: str, policy: str) -> None:
    problem = ControlProblem(env_id, policy=policy, hidden=(8,), episodes=3, max_steps=100)
    x = population(problem, 6)
    seeds = [11, 12, 13]
    together, lengths, _ = problem.rollout(x, seeds)
    for i in range(6):
        alone, alone_len, _ = problem.rollout(x[i:i + 1], seeds)
        assert torch.equal(together[i:i + 1], alone) and torch.equal(lengths[i:i + 1], alone_len)
    for j, seed in enumerate(seeds):  # and one episode at a time
        single, _, _ = problem.rollout(x[:1], [seed])
        assert float(single) == float(together[0, j])
    if env_id != "Acrobot-v1":  # (random policies never swing the acrobot up)
        assert len(set(together.flatten().tolist())) > 1  # not all alike


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_batched_returns_equal_serial_gymnasium(env_id: str) -> None:
    """Same seeds, same policies: the batched torch rollout and gymnasium agree, with
    observation normalization and its statistics too."""
    batched = ControlProblem(env_id, policy="mlp", hidden=(8,), episodes=2, obs_norm=True,
                             max_steps=120)
    serial = ControlProblem(env_id, policy="mlp", hidden=(8,), episodes=2, obs_norm=True,
                            max_steps=120, backend="gymnasium")
    x = population(batched, 4, seed=1)
    for _ in range(2):  # the second generation normalizes with the first's statistics
        np.testing.assert_allclose(batched(x).numpy(), serial(x).numpy(), rtol=1e-9)
    assert batched.env_steps == serial.env_steps and batched.episodes == serial.episodes == 16
    assert batched.obs_norm.count == serial.obs_norm.count == batched.env_steps
    torch.testing.assert_close(batched.obs_norm.sum, serial.obs_norm.sum)


def test_vmap_path_equals_batched_matmul_path() -> None:
    for module in (LinearPolicy(4, 2), MLPPolicy(4, 3, hidden=(8, 5), activation="relu")):
        fast, generic = StackedPolicy(module), StackedPolicy(module, use_vmap=True)
        flat = torch.randn(7, fast.dim, generator=torch.Generator().manual_seed(0))
        obs = torch.randn(7, 4, generator=torch.Generator().manual_seed(1))
        params = fast.unflatten(flat)
        torch.testing.assert_close(fast(params, obs), generic(params, obs))
        row = fast.module_of(flat[3])  # and the module itself, row by row
        torch.testing.assert_close(row(obs[3:4]), fast(params, obs)[3:4])


class Residual(nn.Module):
    """A custom policy: not one of ours, so it runs through vmap(functional_call)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.b(obs + torch.tanh(self.a(obs)))


def test_any_module_as_policy_and_saved_custom_policy(tmp_path) -> None:
    problem = ControlProblem("CartPole-v1", policy=Residual(), episodes=2)
    assert problem.dim == 4 * 4 + 4 + 4 * 2 + 2
    x = population(problem, 5)
    f = problem(x)
    assert f.shape == (5,) and bool((f >= 1).all())
    path = tmp_path / "custom.pt"
    problem.save_policy(path, x[2])
    with pytest.raises(ValueError, match="module="):
        load_policy(path)
    loaded = load_policy(path, module=Residual())
    assert torch.equal(loaded.parameters(), x[2])


def test_running_norm_matches_numpy_statistics() -> None:
    obs = torch.randn(500, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor(
        [1.0, 10.0, 0.01]) + torch.tensor([5.0, -2.0, 0.0])
    norm = RunningNorm(3)
    assert torch.equal(norm.normalize(obs[:2]), obs[:2].clamp(-5, 5))  # identity before data
    for chunk in obs.split(128):
        norm.update(chunk)
    data = obs.double().numpy()
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-10)
    std = np.sqrt(np.maximum(data.var(0), 1e-2))  # Eq. (1): floor on the variance
    np.testing.assert_allclose(norm.std.numpy(), std, rtol=1e-8)
    z = norm.normalize(obs)
    assert float(z.abs().max()) <= 5.0
    again = RunningNorm.from_state_dict(norm.state_dict())
    assert torch.equal(again.normalize(obs), z)


def test_counters_and_common_random_numbers() -> None:
    problem = ControlProblem("CartPole-v1", episodes=4)
    x = population(problem, 3)
    first = problem(x)
    assert problem.episodes == 12 and problem.generation == 1
    assert problem.env_steps == int(problem.rollout(x, problem_seeds(0, 4))[1].sum())
    assert problem.evaluations == 3
    twin = ControlProblem("CartPole-v1", episodes=4)
    assert torch.equal(twin(x), first)  # the same generation, the same episodes


def problem_seeds(generation: int, episodes: int, instance: int = 0) -> list[int]:
    return [int(s) for s in np.random.SeedSequence([instance, generation]).generate_state(
        episodes, dtype=np.uint32)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_solved_by_snes(seed: int) -> None:
    """Budget: popsize 50, at most 20 generations (1,000 policies, one episode each).
    Solved: mean return >= 475 over 10 evaluation episodes (seeds apart from training)."""
    problem = ControlProblem("CartPole-v1", policy="linear", episodes=1)
    opt = registry.create("snes", problem.initial(), sigma0=0.5, popsize=50, seed=seed)
    solved = None
    for generation in range(20):
        x = opt.ask()
        f = problem(x)
        opt.tell(x, -f)
        if float(f.max()) >= 475:
            best = max((opt.recommend(), x[int(f.argmax())]), key=problem.mean_return)
            if problem.mean_return(best) >= 475:
                solved = generation + 1
                break
    assert solved is not None, f"seed {seed}: not solved in 20 generations"
    assert problem.env_steps < 20 * 50 * 500


def test_policy_file_roundtrip_and_replay(tmp_path, capsys) -> None:
    problem = ControlProblem("CartPole-v1", policy="mlp", hidden=(6,), obs_norm=True)
    x = population(problem, 4, scale=0.5)
    problem(x)  # statistics to save
    path = tmp_path / "best.pt"
    problem.save_policy(path, x[1])
    payload = torch.load(path, weights_only=True)  # plain tensors, no code
    assert payload["env_id"] == "CartPole-v1" and payload["policy"]["kind"] == "mlp"
    assert set(payload["state_dict"]) == {"layers.0.weight", "layers.0.bias",
                                          "layers.1.weight", "layers.1.bias"}
    loaded = load_policy(path)
    assert torch.equal(loaded.parameters(), x[1])
    assert loaded.obs_norm.count == problem.obs_norm.count
    expected = problem.rollout(x[1:2], [0, 1, 2], problem.obs_norm.transform())[0]
    gif = tmp_path / "episode.gif"
    assert cli.main(["replay", "--policy", str(path), "--episodes", "3",
                     "--render", str(gif)]) == 0
    out = capsys.readouterr().out
    assert f"mean return {float(expected.mean()):.2f} over 3 episodes" in out
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames > 1 and image.size == (400, 300)
    assert cli.main(["replay", "--policy", str(tmp_path / "missing.pt")]) == 2


def test_registry_and_bad_input(tmp_path: Path) -> None:
    assert {"cartpole-v1", "acrobot-v1", "pendulum-v1", "mountaincarcontinuous-v0"} <= set(
        problems.names("control"))
    problem = problems.get("CartPole-v1", policy="mlp", hidden=(4,), instance=2)
    assert problem.dim == 4 * 4 + 4 + 4 * 2 + 2 and problem.maximize and problem.instance == 2
    with pytest.raises(ValueError, match="dim"):
        problems.get("cartpole-v1", dim=10)
    for kwargs, word in [({"episodes": 0}, "episodes"), ({"backend": "jax"}, "backend"),
                         ({"policy": "lstm"}, "lstm"), ({"max_steps": 0}, "max_steps"),
                         ({"instance": -1}, "instance")]:
        with pytest.raises(ValueError, match=word):
            ControlProblem("CartPole-v1", **kwargs)
    with pytest.raises(ValueError, match="NoSuchEnv"):
        ControlProblem("NoSuchEnv-v0")
    with pytest.raises(ValueError, match=r"\(n, 10\)"):
        problem = ControlProblem("CartPole-v1")
        problem.rollout(torch.zeros(2, 3), [0])
    with pytest.raises(ValueError, match="not a nondiff-policy"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "not_a_policy.pt")
        load_policy(tmp_path / "not_a_policy.pt")
    clone = copy.deepcopy(problem)  # picklable for worker processes
    assert clone.dim == problem.dim
