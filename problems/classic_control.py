"""Gymnasium's classic-control dynamics, batched in torch: many episodes step as one.

Each environment is a pure function of a ``(k, state_dim)`` float64 state tensor:
:meth:`BatchedEnv.reset` draws the initial states exactly as gymnasium's
``env.reset(seed=s)`` does (the same numpy generator, ``default_rng(s)``, the same
draws), :meth:`BatchedEnv.observe` returns the float32 observations gymnasium
returns, and :meth:`BatchedEnv.step` advances every row by one step. The formulas
are gymnasium 1.x's (tests/test_classic_control.py checks them step for step
against ``gymnasium.make(env_id)``):

CartPole-v1 (Barto, Sutton & Anderson 1983; Florian 2007's corrected equations),
force ``F = +-10``, Euler step ``tau = 0.02``:

    temp = (F + m_p l theta'^2 sin theta) / (m_c + m_p)                       # Eq. (1)
    theta'' = (g sin theta - cos theta temp)
              / (l (4/3 - m_p cos^2 theta / (m_c + m_p)))                      # Eq. (2)
    x'' = temp - m_p l theta'' cos theta / (m_c + m_p)                         # Eq. (3)

Acrobot-v1 (Sutton 1996; Sutton & Barto 1998, the "book" dynamics): RK4 over one
step of 0.2 s, angles wrapped to [-pi, pi], velocities bounded; Pendulum-v1:
``theta'' = 3 g / (2 l) sin theta + 3 / (m l^2) u`` (Eq. (4)), cost
``angle^2 + 0.1 theta'^2 + 0.001 u^2`` (Eq. (5)); MountainCarContinuous-v0 (Moore
1990): ``v += 0.0015 F - 0.0025 cos(3 x)`` (Eq. (6)), reward 100 at the goal
minus ``0.1 a^2`` (Eq. (7)).

Time limits (gymnasium's ``TimeLimit``) are not applied here: the rollout loop of
:mod:`nondiff.problems.control` stops at :attr:`BatchedEnv.max_episode_steps`.

Devices: the step functions run on the device of the state tensor (constants enter
as Python scalars, never as CPU tensors copied per step), and no step reads a value
back to the host except Acrobot's angle wrap on the CPU, where the read is free;
on other devices the wrap takes a fixed number of masked passes (:func:`_wrap`).

Example:
    >>> import torch
    >>> from nondiff.problems.classic_control import make_batched
    >>> env = make_batched("CartPole-v1")
    >>> state = env.reset([0, 1, 2])
    >>> obs = env.observe(state)
    >>> obs.shape, obs.dtype
    (torch.Size([3, 4]), torch.float32)
    >>> state, reward, terminated = env.step(state, torch.tensor([0, 1, 1]))
    >>> reward.tolist(), terminated.tolist()
    ([1.0, 1.0, 1.0], [False, False, False])
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

__all__ = ["ENVIRONMENTS", "Acrobot", "BatchedEnv", "CartPole", "MountainCarContinuous",
           "Pendulum", "make_batched"]

_F64 = torch.float64


def _f32(value: float) -> torch.Tensor:
    """A Python float as numpy 2 meets it beside float32 values: rounded to float32."""
    return torch.tensor(value, dtype=torch.float32)


def _seeds(seeds: Sequence[int]) -> list[int]:
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"episode seeds must be non-negative integers, got {s!r}")
        out.append(int(s))
    if not out:
        raise ValueError("reset needs at least one episode seed, got an empty sequence")
    return out


class BatchedEnv(ABC):
    """A classic-control task as pure batched functions of a float64 state tensor.

    Class attributes: ``env_id`` (gymnasium's id), ``obs_dim``, ``state_dim``,
    ``max_episode_steps`` (gymnasium's time limit), ``discrete`` with
    ``num_actions``, or continuous with ``action_low``/``action_high`` of
    ``act_dim`` entries. ``policy_outputs`` is what a policy must emit: one score
    per discrete action (the argmax acts) or one value per action dimension
    (clipped into the action box).
    """

    env_id: ClassVar[str]
    obs_dim: ClassVar[int]
    state_dim: ClassVar[int]
    max_episode_steps: ClassVar[int]
    discrete: ClassVar[bool]
    num_actions: ClassVar[int] = 0
    act_dim: ClassVar[int] = 0
    action_low: ClassVar[float] = 0.0
    action_high: ClassVar[float] = 0.0

    @property
    def policy_outputs(self) -> int:
        return self.num_actions if self.discrete else self.act_dim

    def reset(self, seeds: Sequence[int]) -> torch.Tensor:
        """Initial states ``(len(seeds), state_dim)``, as ``env.reset(seed=s)`` draws them."""
        rows = [self._reset_one(np.random.default_rng(s)) for s in _seeds(seeds)]
        return torch.as_tensor(np.stack(rows), dtype=_F64)

    @abstractmethod
    def _reset_one(self, rng: np.random.Generator) -> np.ndarray:
        """One initial state from gymnasium's generator, with gymnasium's draws."""

    @abstractmethod
    def observe(self, state: torch.Tensor) -> torch.Tensor:
        """float32 observations ``(k, obs_dim)`` of states ``(k, state_dim)``."""

    @abstractmethod
    def step(self, state: torch.Tensor, action: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Next states, float64 rewards ``(k,)`` and terminated flags ``(k,)``."""

    def action(self, output: torch.Tensor) -> torch.Tensor:
        """The action of policy outputs ``(k, policy_outputs)``: argmax for discrete
        tasks (int64 ``(k,)``), else clipped into the box (float32 ``(k, act_dim)``)."""
        if self.discrete:
            return output.argmax(dim=-1)
        return output.to(torch.float32).clamp(self.action_low, self.action_high)

    def state_of(self, env: Any) -> torch.Tensor:
        """The state ``(1, state_dim)`` of a gymnasium environment of this task."""
        return torch.as_tensor(np.asarray(env.unwrapped.state, dtype=np.float64),
                               dtype=_F64).reshape(1, self.state_dim)


class CartPole(BatchedEnv):
    """CartPole-v1: reward 1 per step, 500 steps at most; Eqs. (1)-(3)."""

    env_id = "CartPole-v1"
    obs_dim = state_dim = 4
    max_episode_steps = 500
    discrete = True
    num_actions = 2
    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    theta_threshold = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    def _reset_one(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(low=-0.05, high=0.05, size=(4,))

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        return state.to(torch.float32)

    def step(self, state, action):
        _, x_dot, theta, theta_dot = state.unbind(dim=1)
        total_mass = self.masspole + self.masscart
        polemass_length = self.masspole * self.length
        force = torch.where(action == 1, self.force_mag, -self.force_mag)  # exact in float32
        costheta, sintheta = torch.cos(theta), torch.sin(theta)
        temp = (force + polemass_length * theta_dot.square() * sintheta) / total_mass  # Eq. (1)
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta.square() / total_mass))  # Eq. (2)
        xacc = temp - polemass_length * thetaacc * costheta / total_mass  # Eq. (3)
        new = state + self.tau * torch.stack((x_dot, xacc, theta_dot, thetaacc), dim=1)
        terminated = (new[:, 0].abs() > self.x_threshold) | (
            new[:, 2].abs() > self.theta_threshold)  # |x| > 2.4 or |theta| > 12 deg
        return new, torch.ones_like(x_dot), terminated


_WRAP_PASSES = 4
"""Masked passes of :func:`_wrap` off the CPU: exact for angles within
``[low - 4 w, high + 4 w]`` (w = 2 pi), far beyond one Acrobot step (the angles move
by at most dt times the bounded velocities, about 6 rad)."""


def _wrap(x: torch.Tensor, low: float, high: float, passes: int | None = None) -> torch.Tensor:
    """gymnasium's ``wrap``: add or subtract the range width until inside.

    ``passes=None`` loops until every entry is inside (one host read per pass);
    an integer takes that many masked passes without reading anything back, which
    gives the same numbers whenever that many suffice, and maps what is still
    outside by a remainder (never reached by Acrobot's dynamics).
    """
    diff = high - low
    if passes is None:
        while bool((x > high).any()):
            x = torch.where(x > high, x - diff, x)
        while bool((x < low).any()):
            x = torch.where(x < low, x + diff, x)
        return x
    for _ in range(passes):
        x = torch.where(x > high, x - diff, x)
    for _ in range(passes):
        x = torch.where(x < low, x + diff, x)
    outside = (x > high) | (x < low)
    return torch.where(outside, low + _python_mod(x - low, diff), x)


class Acrobot(BatchedEnv):
    """Acrobot-v1: reward -1 per step until the tip rises one link above the base."""

    env_id = "Acrobot-v1"
    obs_dim, state_dim = 6, 4
    max_episode_steps = 500
    discrete = True
    num_actions = 3
    dt = 0.2
    link_length_1 = link_mass_1 = link_mass_2 = link_moi = 1.0
    link_com_1 = link_com_2 = 0.5
    max_vel_1, max_vel_2 = 4 * math.pi, 9 * math.pi

    def _reset_one(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(low=-0.1, high=0.1, size=(4,)).astype(np.float32)

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        t1, t2 = state[:, 0], state[:, 1]
        return torch.stack((torch.cos(t1), torch.sin(t1), torch.cos(t2), torch.sin(t2),
                            state[:, 2], state[:, 3]), dim=1).to(torch.float32)

    def _dsdt(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        m1, m2, l1 = self.link_mass_1, self.link_mass_2, self.link_length_1
        lc1, lc2, i1, i2, g = self.link_com_1, self.link_com_2, self.link_moi, self.link_moi, 9.8
        theta1, theta2, dtheta1, dtheta2 = s.unbind(dim=1)
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * torch.cos(theta2)) + i1 + i2
        d2 = m2 * (lc2**2 + l1 * lc2 * torch.cos(theta2)) + i2
        phi2 = m2 * lc2 * g * torch.cos(theta1 + theta2 - math.pi / 2.0)
        phi1 = (-m2 * l1 * lc2 * dtheta2**2 * torch.sin(theta2)
                - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * torch.sin(theta2)
                + (m1 * lc1 + m2 * l1) * g * torch.cos(theta1 - math.pi / 2) + phi2)
        ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * torch.sin(theta2) - phi2
                    ) / (m2 * lc2**2 + i2 - d2**2 / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2), dim=1)

    def step(self, state, action):
        torque = (action.to(_F64) - 1.0)  # actions 0, 1, 2 -> torques -1, 0, +1
        dt, dt2 = self.dt, self.dt / 2.0
        k1 = self._dsdt(state, torque)  # classic RK4 over one step
        k2 = self._dsdt(state + dt2 * k1, torque)
        k3 = self._dsdt(state + dt2 * k2, torque)
        k4 = self._dsdt(state + dt * k3, torque)
        ns = state + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        passes = None if state.device.type == "cpu" else _WRAP_PASSES  # no host read per step
        new = torch.stack((_wrap(ns[:, 0], -math.pi, math.pi, passes),
                           _wrap(ns[:, 1], -math.pi, math.pi, passes),
                           ns[:, 2].clamp(-self.max_vel_1, self.max_vel_1),
                           ns[:, 3].clamp(-self.max_vel_2, self.max_vel_2)), dim=1)
        terminated = -torch.cos(new[:, 0]) - torch.cos(new[:, 1] + new[:, 0]) > 1.0
        reward = torch.where(terminated, 0.0, -1.0).to(_F64)
        return new, reward, terminated


def _python_mod(a: torch.Tensor, b: float) -> torch.Tensor:
    """``a % b`` for ``b > 0`` as numpy computes it (fmod, then shifted into [0, b))."""
    m = torch.fmod(a, b)
    return torch.where(m < 0, m + b, m)


class Pendulum(BatchedEnv):
    """Pendulum-v1: swing up and balance; never terminates, 200 steps; Eqs. (4)-(5)."""

    env_id = "Pendulum-v1"
    obs_dim, state_dim = 3, 2
    max_episode_steps = 200
    discrete = False
    act_dim = 1
    action_low, action_high = -2.0, 2.0
    max_speed, g, m, length, dt = 8.0, 10.0, 1.0, 1.0, 0.05

    def _reset_one(self, rng: np.random.Generator) -> np.ndarray:
        high = np.array([np.pi, 1.0])
        return rng.uniform(low=-high, high=high)

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        th = state[:, 0]
        return torch.stack((torch.cos(th), torch.sin(th), state[:, 1]), dim=1).to(torch.float32)

    def step(self, state, action):
        th, thdot = state[:, 0], state[:, 1]
        u = action.reshape(-1).to(torch.float32).clamp(-self.max_torque, self.max_torque)
        angle = _python_mod(th + math.pi, 2 * math.pi) - math.pi
        costs = angle**2 + 0.1 * thdot**2 + _f32(0.001) * (u**2)  # Eq. (5), in float32
        accel = (3 * self.g / (2 * self.length) * torch.sin(th)
                 + 3.0 / (self.m * self.length**2) * u)
        newthdot = (thdot + accel * self.dt).clamp(-self.max_speed, self.max_speed)  # Eq. (4)
        newth = th + newthdot * self.dt
        return torch.stack((newth, newthdot), dim=1), -costs, torch.zeros_like(th, dtype=bool)

    @property
    def max_torque(self) -> float:
        return self.action_high


class MountainCarContinuous(BatchedEnv):
    """MountainCarContinuous-v0: reach x >= 0.45; 999 steps; Eqs. (6)-(7)."""

    env_id = "MountainCarContinuous-v0"
    obs_dim = state_dim = 2
    max_episode_steps = 999
    discrete = False
    act_dim = 1
    action_low, action_high = -1.0, 1.0
    min_position, max_position, max_speed, goal_position, power = -1.2, 0.6, 0.07, 0.45, 0.0015

    def _reset_one(self, rng: np.random.Generator) -> np.ndarray:
        return np.array([rng.uniform(low=-0.6, high=-0.4), 0])

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        return state.to(torch.float32)

    def step(self, state, action):
        # gymnasium computes in numpy scalars: float64 on the first step (the reset
        # state is float64), float32 afterwards (it stores the state as float32), with
        # Python floats promoted weakly (NEP 50); the state dtype here tells which.
        wide = state.dtype == _F64
        a = action.reshape(-1).to(torch.float32)
        position, velocity = state[:, 0], state[:, 1]
        clipped = (a < self.action_low) | (a > self.action_high)
        gravity = 0.0025 * torch.cos((3 * position).to(_F64))  # math.cos: in double
        inside = (a * _f32(self.power) - gravity.to(torch.float32)).to(state.dtype)  # float32
        outside = a.clamp(self.action_low, self.action_high).to(_F64) * self.power - gravity
        velocity = velocity + torch.where(clipped, outside.to(state.dtype), inside)  # Eq. (6)
        if wide:  # numpy adds float64 + float32 in float64; afterwards float32 + float32
            velocity = velocity.to(_F64)
        velocity = velocity.clamp(-self.max_speed, self.max_speed)
        position = (position + velocity).clamp(self.min_position, self.max_position)
        velocity = torch.where((position == self.min_position) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= 0)
        reward = torch.where(terminated, 100.0, 0.0).to(_F64) - a.to(_F64) ** 2 * 0.1  # Eq. (7)
        return torch.stack((position, velocity), dim=1).to(torch.float32), reward, terminated

    def state_of(self, env: Any) -> torch.Tensor:
        state = np.asarray(env.unwrapped.state)  # float64 after reset, float32 after a step
        return torch.as_tensor(state).reshape(1, self.state_dim)


ENVIRONMENTS: dict[str, type[BatchedEnv]] = {
    cls.env_id: cls for cls in (CartPole, Acrobot, Pendulum, MountainCarContinuous)}
"""The gymnasium ids with a batched torch implementation here."""


def make_batched(env_id: str) -> BatchedEnv:
    """The batched torch implementation of gymnasium's ``env_id``.

    Raises:
        ValueError: no batched implementation of ``env_id`` (names those there are).
    """
    if env_id not in ENVIRONMENTS:
        raise ValueError(f"no batched torch implementation of {env_id!r}; those there are: "
                         f"{sorted(ENVIRONMENTS)} (other gymnasium ids run with "
                         "backend='gymnasium')")
    return ENVIRONMENTS[env_id]()
