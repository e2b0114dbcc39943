"""The batched torch dynamics match gymnasium's step for step (same start, same actions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nondiff.problems.classic_control import ENVIRONMENTS, make_batched

gym = pytest.importorskip("gymnasium")

ENV_IDS = sorted(ENVIRONMENTS)


def _actions(env_id: str, obs: np.ndarray, rng: np.random.Generator, t: int):
    """Random actions, with stretches of a heuristic controller so that episodes also end
    by termination (not only by the time limit); continuous ones also leave the box."""
    if env_id == "CartPole-v1":
        return int(obs[2] + obs[3] > 0) if t % 7 else int(rng.integers(2))
    if env_id == "Acrobot-v1":
        return int(np.sign(obs[5]) + 1) if t % 5 else int(rng.integers(3))
    if env_id == "MountainCarContinuous-v0":  # pump energy: push along the velocity
        return (np.sign(obs[1:2]) * rng.uniform(0.5, 1.5)).astype(np.float32)
    return rng.uniform(-2.5, 2.5, size=(1,)).astype(np.float32)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_dynamics_match_gymnasium_step_for_step(env_id: str) -> None:
    """From gymnasium's state at every step, one step with the same action gives the same
    observation (to float32 rounding), reward and termination. Most steps agree bit for
    bit; torch's and libm's sin/cos (and numpy's float32 ``u**2`` in Pendulum's cost)
    may differ in the last bit."""
    batched, env = make_batched(env_id), gym.make(env_id)
    assert batched.max_episode_steps == env.spec.max_episode_steps
    assert batched.obs_dim == env.observation_space.shape[0]
    rng = np.random.default_rng(0)
    steps = terminations = identical = 0
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        state = batched.reset([seed])
        assert np.array_equal(batched.observe(state)[0].numpy(), obs)  # same initial state
        assert torch.equal(state, batched.state_of(env))
        while True:
            action = _actions(env_id, obs, rng, steps)
            state = batched.state_of(env)
            obs, reward, terminated, truncated, _ = env.step(action)
            state, r, term = batched.step(state, torch.as_tensor(np.atleast_1d(action)))
            ours = batched.observe(state)[0].numpy()
            steps += 1
            identical += np.array_equal(ours, obs)
            np.testing.assert_allclose(ours, obs, rtol=1e-6, atol=1e-6)
            assert float(r[0]) == pytest.approx(reward, rel=1e-12, abs=1e-9)
            assert bool(term[0]) == terminated
            if terminated or truncated:
                terminations += terminated
                break
    assert terminations >= (0 if env_id == "Pendulum-v1" else 1)
    assert steps >= 3 * (200 if env_id == "Pendulum-v1" else 10)
    assert identical >= 0.99 * steps


def test_whole_episodes_match_gymnasium_bit_for_bit() -> None:
    """CartPole, Pendulum and MountainCar episodes open loop, from the same seed with the
    same actions, give identical observations all the way."""
    for env_id in ("CartPole-v1", "Pendulum-v1", "MountainCarContinuous-v0"):
        batched, env = make_batched(env_id), gym.make(env_id)
        rng = np.random.default_rng(1)
        obs, _ = env.reset(seed=7)
        state = batched.reset([7])
        for t in range(batched.max_episode_steps):
            action = _actions(env_id, obs, rng, t)
            obs, _, terminated, truncated, _ = env.step(action)
            state, _, term = batched.step(state, torch.as_tensor(np.atleast_1d(action)))
            assert np.array_equal(batched.observe(state)[0].numpy(), obs), (env_id, t)
            assert bool(term[0]) == terminated
            if terminated or truncated:
                break


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_rows_step_independently(env_id: str) -> None:
    """A batch of rows gives each row what it would alone (same start, same action)."""
    env = make_batched(env_id)
    state = env.reset(list(range(8)))
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = torch.randn(8, env.policy_outputs, generator=gen)
        action = env.action(out)
        together = env.step(state, action)
        for i in range(8):
            alone = env.step(state[i:i + 1], action[i:i + 1])
            for a, b in zip(together, alone, strict=True):
                assert torch.equal(a[i:i + 1], b)
        state = together[0]


def test_actions_argmax_and_clip() -> None:
    cart, pendulum = make_batched("CartPole-v1"), make_batched("Pendulum-v1")
    assert cart.action(torch.tensor([[0.1, 0.3], [2.0, -1.0]])).tolist() == [1, 0]
    assert pendulum.action(torch.tensor([[5.0], [-0.5], [-9.0]])).flatten().tolist() == \
        [2.0, -0.5, -2.0]


def test_bad_input_names_the_value() -> None:
    with pytest.raises(ValueError, match="LunarLander-v3"):
        make_batched("LunarLander-v3")
    with pytest.raises(ValueError, match="-1"):
        make_batched("CartPole-v1").reset([0, -1])
    with pytest.raises(ValueError, match="empty"):
        make_batched("CartPole-v1").reset([])
