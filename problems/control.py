"""Neuroevolution on gymnasium control tasks: a Problem over flat policy parameters.

Evolution strategies search the parameters of a policy network directly
(Salimans et al. 2017). :class:`ControlProblem` turns a gymnasium task and a
policy (linear, MLP or any ``nn.Module``) into a batched :class:`~nondiff.problems.base.Problem`
to maximize: ``problem(x)`` for ``x`` of shape ``(n, dim)`` returns the mean
return of each policy over ``episodes`` episodes. The whole population runs
together: every (policy, episode) pair is one row of a batched torch simulation
(:mod:`nondiff.problems.classic_control`), policies act in one stacked call
(:class:`~nondiff.problems.policies.StackedPolicy`), finished rows drop out. Any other
gymnasium id runs on gymnasium itself, one episode at a time
(``backend="gymnasium"``, also the reference the batched path is checked against).

Devices: by default (``device=None``) the batched simulation runs on the CPU and
drops finished rows from the batch as it goes. With ``device="cuda"`` (or any
torch device, ``"cpu"`` included) every row stays in place on that device until
the end: finished rows are masked (``torch.where``) and leave the batch only
every :data:`SYNC_EVERY` steps, so the step loop reads a value back to the host
once every ``SYNC_EVERY`` steps (to drop finished rows, or stop when every
episode has ended) instead of once per step. Both give the same returns and
episode lengths, bit for bit on the CPU (the observation statistics add the same
values in another order, so they agree to rounding).

Within a generation all policies face the same episodes (common random numbers:
the episode seeds of generation ``g`` come from ``SeedSequence([seed, g])``) and the
same frozen observation normalization; the observations seen update the running
statistics afterwards (Salimans et al., Sec. 2.4). For distributed evaluation the
problem follows :class:`nondiff.optim.evaluate.PopulationObjective`: the main process draws
the :meth:`~ControlProblem.generation_context`, any worker evaluates a chunk with
it, and the main process merges the chunks' statistics and step counts, so the
fitness of a policy never depends on where it ran. The fitness of one policy is

    F(theta) = (1 / E) sum_e sum_t r_t(theta, seed_e),  t < min(T, termination)   # Eq. (1)

Source: T. Salimans, J. Ho, X. Chen, S. Sidor, I. Sutskever, "Evolution Strategies as
a Scalable Alternative to Reinforcement Learning", arXiv:1703.03864, 2017.

Example:
    >>> import torch
    >>> from nondiff.problems.control import ControlProblem
    >>> problem = ControlProblem("CartPole-v1", policy="linear", episodes=2)
    >>> problem.dim
    10
    >>> returns = problem(torch.zeros(3, problem.dim))  # always pushes left: falls soon
    >>> returns.shape, bool((returns < 20).all()), problem.episodes
    (torch.Size([3]), True, 6)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from nondiff.problems.base import Problem, _count
from nondiff.problems.classic_control import ENVIRONMENTS, BatchedEnv, make_batched
from nondiff.problems.policies import RunningNorm, StackedPolicy, build_policy
from torch import nn

__all__ = ["POLICY_FORMAT", "SYNC_EVERY", "ControlProblem", "LoadedPolicy", "load_policy"]

POLICY_FORMAT = "nondiff-policy/1"
"""The ``format`` entry of policy files written by :meth:`ControlProblem.save_policy`."""

_BACKENDS = ("auto", "torch", "gymnasium")

SYNC_EVERY = 32
"""Steps between the host reads of the masked (``device=``) rollout, where finished
rows leave the batch and the loop stops once every episode has ended."""


def _device(device: str | torch.device | None, backend: str) -> torch.device | None:
    """``device`` checked: None, or a torch device this machine has (ValueError else)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be None, 'cpu', 'cuda', 'cuda:N' or a torch.device, "
                         f"got {device!r} ({error})") from error
    if backend != "torch":
        raise ValueError(f"device={device!r} needs the batched torch backend, but backend is "
                         f"{backend!r}; leave device=None for gymnasium environments")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device here; pass "
                         "device='cpu' or None")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} but this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    return dev


@dataclass
class _GymTask:
    """What the policy must know of a gymnasium-only task."""

    env_id: str
    obs_dim: int
    discrete: bool
    policy_outputs: int
    action_low: np.ndarray | None
    action_high: np.ndarray | None
    max_episode_steps: int


def _gym_task(env_id: str) -> _GymTask:
    import gymnasium as gym

    try:
        env = gym.make(env_id)
    except Exception as error:  # unknown id, missing extra (Box2D, MuJoCo)
        raise ValueError(f"gymnasium cannot make {env_id!r} ({type(error).__name__}: "
                         f"{error}); check the id or install its extra") from error
    obs, act = env.observation_space, env.action_space
    steps = env.spec.max_episode_steps if env.spec is not None else None
    env.close()
    if not isinstance(obs, gym.spaces.Box) or len(obs.shape) != 1:
        raise ValueError(f"{env_id!r} has observations {obs}; a flat Box is needed")
    if isinstance(act, gym.spaces.Discrete):
        return _GymTask(env_id, obs.shape[0], True, int(act.n), None, None, steps or 1000)
    if isinstance(act, gym.spaces.Box) and len(act.shape) == 1:
        return _GymTask(env_id, obs.shape[0], False, act.shape[0], act.low, act.high,
                        steps or 1000)
    raise ValueError(f"{env_id!r} has actions {act}; Discrete or a flat Box is needed")


class ControlProblem(Problem):
    """Mean episode return of policies with flat parameters ``x``: Eq. (1), maximized.

    Args:
        env_id: a gymnasium id, e.g. ``"CartPole-v1"``.
        policy: ``"linear"``, ``"mlp"`` or an ``nn.Module`` mapping a batch of
            observations to one score per discrete action (the argmax acts) or one
            value per action dimension (clipped into the action box).
        hidden, activation: widths and activation of the ``"mlp"`` policy.
        episodes: episodes per policy and generation (shared by all policies).
        max_steps: cap on episode length (default: gymnasium's time limit).
        obs_norm: normalize observations with running statistics.
        backend: ``"torch"`` (batched dynamics; the four classic-control tasks),
            ``"gymnasium"`` (one gymnasium env, serially) or ``"auto"``.
        instance: seed of the episode seeds (0: canonical).
        device: None (default): the batched CPU simulation that drops finished rows;
            a torch device (``"cuda"``, ``"cpu"``, ...): every environment and the
            stacked policies run there, finished rows masked, no per-step host read
            (returns equal the default's; bit for bit on the CPU). Fitness comes back
            on the device of the candidates.

    Attributes:
        episodes, env_steps: episodes run and environment steps taken (budgets).
        generation: generations evaluated (the next context's index).
    """

    name = "control"
    maximize = True

    def __init__(self, env_id: str = "CartPole-v1", policy: str | nn.Module = "linear", *,
                 hidden: Sequence[int] = (16,), activation: str = "tanh", episodes: int = 1,
                 max_steps: int | None = None, obs_norm: bool = False, backend: str = "auto",
                 instance: int = 0, device: str | torch.device | None = None) -> None:
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {list(_BACKENDS)}, got {backend!r}")
        if backend == "auto":
            backend = "torch" if env_id in ENVIRONMENTS else "gymnasium"
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
        if isinstance(instance, bool) or not isinstance(instance, int) or instance < 0:
            raise ValueError(f"instance must be a non-negative integer, got {instance!r}")
        self.device = _device(device, backend)
        task: BatchedEnv | _GymTask = make_batched(env_id) if backend == "torch" \
            else _gym_task(env_id)
        self.env_id, self.backend, self.task = env_id, backend, task
        obs_dim = task.obs_dim
        if isinstance(policy, nn.Module):
            module = policy
        else:
            module = build_policy(policy, obs_dim, task.policy_outputs, hidden=hidden,
                                  activation=activation)
        self.stack = StackedPolicy(module)
        # the device path evaluates a copy of the module there (its buffers, vmap)
        self._device_stack = None if self.device is None else StackedPolicy(
            copy.deepcopy(module).to(self.device), use_vmap=not self.stack._fast)
        super().__init__(self.stack.dim)
        self.name = env_id
        self.instance = instance
        limit = task.max_episode_steps
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(
                max_steps, int) or max_steps < 1):
            raise ValueError(f"max_steps must be a positive integer or None, got {max_steps!r}")
        self.max_steps = limit if max_steps is None else min(max_steps, limit)
        self.n_episodes = episodes
        self.obs_norm = RunningNorm(obs_dim) if obs_norm else None
        self.episodes = 0
        self.env_steps = 0
        self.generation = 0
        self._gym_env: Any = None

    # ----- pickling: workers get the configuration, not warm gymnasium envs --------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_gym_env"] = None
        return state

    # ----- state: generation (the episode seeds), counters, observation statistics ---
    def state_dict(self) -> dict[str, Any]:
        """Generation counter (it seeds the next episodes), episode and step counters
        and the running observation statistics: what a checkpoint must hold for a
        resumed run to face the same episodes with the same normalization."""
        return {**super().state_dict(), "generation": self.generation,
                "episodes": self.episodes, "env_steps": self.env_steps,
                "obs_norm": None if self.obs_norm is None else self.obs_norm.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_state(state, {"evaluations", "generation", "episodes", "env_steps",
                                  "obs_norm"})
        counts = {key: _count(state, key) for key in ("evaluations", "generation", "episodes",
                                                      "env_steps")}
        saved = state["obs_norm"]
        if (saved is None) != (self.obs_norm is None):
            raise ValueError(f"the state was saved with obs_norm={saved is not None}, this "
                             f"problem has obs_norm={self.obs_norm is not None}; construct it "
                             "as the saved one was")
        norm = None if saved is None else RunningNorm.from_state_dict(saved)
        if norm is not None and (norm.obs_dim != self.obs_norm.obs_dim or norm.count < 0
                                 or not bool(torch.isfinite(norm.sum).all())):
            raise ValueError(f"saved observation statistics are damaged or of another task "
                             f"(obs_dim {norm.obs_dim}, count {norm.count})")
        self.evaluations, self.generation = counts["evaluations"], counts["generation"]
        self.episodes, self.env_steps = counts["episodes"], counts["env_steps"]
        self.obs_norm = norm

    def initial(self) -> torch.Tensor:
        """A starting center for the search: all parameters zero, ``(dim,)`` float32."""
        return torch.zeros(self.dim, dtype=torch.float32)

    # ----- the PopulationObjective protocol (optim.evaluate) ----------------------
    def generation_context(self) -> dict[str, Any]:
        """Episode seeds and frozen normalization of the next generation (main process)."""
        seeds = np.random.SeedSequence([self.instance, self.generation]).generate_state(
            self.n_episodes, dtype=np.uint32)
        self.generation += 1
        return {"seeds": [int(s) for s in seeds],
                "norm": None if self.obs_norm is None else self.obs_norm.transform()}

    def evaluate_chunk(self, x: torch.Tensor, context: dict[str, Any]
                       ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Fitness of rows ``x`` under ``context`` (pure: any process gives the same)."""
        x = torch.as_tensor(x)
        returns, lengths, stats = self.rollout(x, context["seeds"], context["norm"],
                                               collect=self.obs_norm is not None)
        aux = {"episodes": returns.numel(), "steps": int(lengths.sum()), "stats": stats}
        return returns.mean(dim=1), aux

    def merge_results(self, extras: Sequence[dict[str, Any]]) -> None:
        """Count the chunks' episodes and steps; add their observations to the statistics."""
        for aux in extras:
            self.episodes += aux["episodes"]
            self.env_steps += aux["steps"]
            if self.obs_norm is not None and aux["stats"] is not None:
                self.obs_norm.merge(aux["stats"])

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        fitness, aux = self.evaluate_chunk(x, self.generation_context())
        self.merge_results([aux])
        return fitness.to(device=x.device, dtype=torch.float64)

    # ----- rollouts ----------------------------------------------------------------
    def rollout(self, x: torch.Tensor, seeds: Sequence[int],
                norm: tuple[torch.Tensor, torch.Tensor, float] | None = None,
                collect: bool = False) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Run every policy of ``x`` ``(n, dim)`` on the episodes of ``seeds``.

        Returns:
            returns ``(n, len(seeds))`` float64, episode lengths ``(n, len(seeds))``
            int64 (both on :attr:`device`, the CPU by default), and ``(count, sum,
            sumsq)`` of the raw observations acted on, on the CPU (None unless
            ``collect``).
        """
        if type(x) is not torch.Tensor:  # e.g. evotorch's read-only tensors
            x = torch.as_tensor(x).as_subclass(torch.Tensor)
        if x.ndim == 1:
            x = x[None]
        if self.device is not None:
            params = self._device_stack.unflatten(x.to(self.device))
            return self._rollout_masked(params, list(seeds), norm, collect)
        params = self.stack.unflatten(x)
        if self.backend == "torch":
            return self._rollout_torch(params, list(seeds), norm, collect)
        return self._rollout_gymnasium(params, list(seeds), norm, collect)

    @torch.no_grad()
    def _rollout_torch(self, params, seeds, norm, collect):
        env: BatchedEnv = self.task
        n, e = next(iter(params.values())).shape[0], len(seeds)
        rows = n * e  # row r: policy r // e on episode seeds[r % e]
        params = {k: v.repeat_interleave(e, dim=0) for k, v in params.items()}
        state = env.reset(seeds).repeat(n, 1)
        returns = torch.zeros(rows, dtype=torch.float64)
        lengths = torch.full((rows,), self.max_steps, dtype=torch.int64)
        active = torch.arange(rows)
        running = torch.zeros(rows, dtype=torch.float64)  # returns of the active rows
        stats = None
        for t in range(self.max_steps):
            obs = env.observe(state)
            if collect:
                step_stats = RunningNorm.stats(obs)
                stats = step_stats if stats is None else tuple(a + b for a, b in
                                                               zip(stats, step_stats, strict=True))
            if norm is not None:
                obs = RunningNorm.apply(obs, norm)
            action = env.action(self.stack(params, obs))
            state, reward, terminated = env.step(state, action)
            running += reward
            if bool(terminated.any()):  # finished episodes leave the batch
                ended = terminated.nonzero().squeeze(1)
                returns[active[ended]] = running[ended]
                lengths[active[ended]] = t + 1
                keep = (~terminated).nonzero().squeeze(1)
                active, state, running = active[keep], state[keep], running[keep]
                if keep.numel() == 0:
                    break
                params = {k: v[keep] for k, v in params.items()}
        returns[active] = running
        return returns.reshape(n, e), lengths.reshape(n, e), stats

    @torch.no_grad()
    def _rollout_masked(self, params, seeds, norm, collect):
        """The rollout of :meth:`_rollout_torch` on :attr:`device` without a host read
        per step: finished rows are frozen by masks and leave the batch only every
        :data:`SYNC_EVERY` steps, at the one read that also stops the loop when
        every episode has ended."""
        env, dev, stack = self.task, self.device, self._device_stack
        n, e = next(iter(params.values())).shape[0], len(seeds)
        rows = n * e  # row r: policy r // e on episode seeds[r % e]
        params = {k: v.repeat_interleave(e, dim=0) for k, v in params.items()}
        state = env.reset(seeds).to(dev).repeat(n, 1)
        out_returns = torch.zeros(rows, dtype=torch.float64, device=dev)
        out_lengths = torch.full((rows,), self.max_steps, dtype=torch.int64, device=dev)
        index = torch.arange(rows, device=dev)  # the original row of each batch row
        returns = torch.zeros(rows, dtype=torch.float64, device=dev)
        lengths = torch.full((rows,), self.max_steps, dtype=torch.int64, device=dev)
        done = torch.zeros(rows, dtype=torch.bool, device=dev)
        if norm is not None:
            norm = (norm[0].to(dev), norm[1].to(dev), norm[2])
        stats = None
        if collect:
            stats = (torch.zeros((), dtype=torch.float64, device=dev),
                     torch.zeros(env.obs_dim, dtype=torch.float64, device=dev),
                     torch.zeros(env.obs_dim, dtype=torch.float64, device=dev))
        for t in range(self.max_steps):
            obs = env.observe(state)
            if collect:  # the observations of unfinished rows only
                live = (~done).unsqueeze(1)
                seen = torch.where(live, obs.to(torch.float64), 0.0)
                stats[0].add_(live.sum())
                stats[1].add_(seen.sum(dim=0))
                stats[2].add_(seen.square().sum(dim=0))
            if norm is not None:
                obs = RunningNorm.apply(obs, norm)
            action = env.action(stack(params, obs))
            new, reward, terminated = env.step(state, action)
            returns.add_(torch.where(done, 0.0, reward))
            ended = terminated & ~done
            lengths = torch.where(ended, t + 1, lengths)
            done = done | terminated
            # finished rows keep their last state (the dtype follows the step's:
            # MountainCar's state turns float32 after the first step)
            state = torch.where(done.unsqueeze(1), state.to(new.dtype), new)
            if (t + 1) % SYNC_EVERY == 0:  # the only host read: stop, or drop finished rows
                keep = (~done).nonzero().squeeze(1)
                if keep.numel() < done.numel():
                    finished = done.nonzero().squeeze(1)
                    out_returns[index[finished]] = returns[finished]
                    out_lengths[index[finished]] = lengths[finished]
                    index, state, done = index[keep], state[keep], done[keep]
                    returns, lengths = returns[keep], lengths[keep]
                    if keep.numel() == 0:
                        break
                    params = {k: v[keep] for k, v in params.items()}
        out_returns[index] = returns
        out_lengths[index] = lengths
        if stats is not None:
            stats = (float(stats[0]), stats[1].cpu(), stats[2].cpu())
        return out_returns.reshape(n, e), out_lengths.reshape(n, e), stats

    def _env(self) -> Any:
        if self._gym_env is None:  # kept warm between generations
            import gymnasium as gym

            self._gym_env = gym.make(self.env_id, max_episode_steps=self.max_steps)
        return self._gym_env

    def _rollout_gymnasium(self, params, seeds, norm, collect):
        task, env = self.task, self._env()
        n, e = next(iter(params.values())).shape[0], len(seeds)
        returns = torch.zeros(n, e, dtype=torch.float64)
        lengths = torch.zeros(n, e, dtype=torch.int64)
        seen: list[np.ndarray] = []
        for i in range(n):
            one = {k: v[i:i + 1] for k, v in params.items()}
            for j, seed in enumerate(seeds):
                obs, _ = env.reset(seed=seed)
                total, steps = 0.0, 0
                while True:
                    if collect:
                        seen.append(obs)
                    o = torch.as_tensor(obs, dtype=torch.float32)[None]
                    if norm is not None:
                        o = RunningNorm.apply(o, norm)
                    out = self.stack(one, o)[0]
                    if task.discrete:
                        action: Any = int(out.argmax())
                    else:
                        low, high = (torch.as_tensor(b, dtype=torch.float32)
                                     for b in (task.action_low, task.action_high))
                        action = torch.minimum(torch.maximum(out.float(), low), high).numpy()
                    obs, reward, terminated, truncated, _ = env.step(action)
                    total += float(reward)
                    steps += 1
                    if terminated or truncated:
                        break
                returns[i, j], lengths[i, j] = total, steps
        stats = RunningNorm.stats(torch.as_tensor(np.stack(seen))) if collect and seen else None
        return returns, lengths, stats

    def mean_return(self, x: Any, episodes: int = 10, seed: int = 2**31 - 1) -> float:
        """Mean return of one policy ``(dim,)`` over ``episodes`` evaluation episodes
        (seeds apart from training's; frozen normalization; nothing counted)."""
        seeds = np.random.SeedSequence([self.instance, seed]).generate_state(episodes,
                                                                            dtype=np.uint32)
        x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(
            x, torch.Tensor) else x).reshape(1, self.dim)
        norm = None if self.obs_norm is None else self.obs_norm.transform()
        returns, _, _ = self.rollout(x, [int(s) for s in seeds], norm)
        return float(returns.mean())

    # ----- policies out ---------------------------------------------------------------
    def save_policy(self, path: str | os.PathLike[str], x: Any) -> None:
        """Write policy ``x`` ``(dim,)`` as a plain ``state_dict`` plus what rebuilds it:
        env id, policy spec, observation statistics, step cap (plain tensors and
        values: ``torch.load(weights_only=True)`` reads it)."""
        flat = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        module = self.stack.module
        spec = module.spec() if hasattr(module, "spec") else {
            "kind": "custom", "class": f"{type(module).__module__}.{type(module).__qualname__}"}
        payload = {"format": POLICY_FORMAT, "env_id": self.env_id, "policy": spec,
                   "state_dict": self.stack.state_dict_of(flat.reshape(-1)),
                   "obs_norm": None if self.obs_norm is None else self.obs_norm.state_dict(),
                   "max_steps": self.max_steps}
        torch.save(payload, path)


@dataclass
class LoadedPolicy:
    """A policy file read back: the task, the module, its observation statistics."""

    env_id: str
    module: nn.Module
    obs_norm: RunningNorm | None
    max_steps: int

    def problem(self, backend: str = "auto", episodes: int = 1,
                device: str | torch.device | None = None) -> ControlProblem:
        """A :class:`ControlProblem` of this task and policy with the saved statistics."""
        problem = ControlProblem(self.env_id, policy=self.module, episodes=episodes,
                                 max_steps=self.max_steps, obs_norm=self.obs_norm is not None,
                                 backend=backend, device=device)
        problem.obs_norm = self.obs_norm
        return problem

    def parameters(self) -> torch.Tensor:
        """The policy's flat parameter vector ``(dim,)``."""
        return StackedPolicy(self.module).flatten()


def load_policy(path: str | os.PathLike[str], module: nn.Module | None = None) -> LoadedPolicy:
    """Read a file of :meth:`ControlProblem.save_policy` (no code is unpickled).

    Args:
        path: the file.
        module: an instance of the policy's class; needed for custom ``nn.Module``
            policies (linear and MLP policies are rebuilt from the file).

    Raises:
        ValueError: not a policy file, or a custom policy without ``module``.
    """
    try:
        payload = torch.load(path, weights_only=True)
    except Exception as error:
        raise ValueError(f"cannot read policy file {str(path)!r} ({type(error).__name__}: "
                         f"{error}); pass a file written by save_policy") from error
    if not isinstance(payload, dict) or payload.get("format") != POLICY_FORMAT:
        raise ValueError(f"{str(path)!r} is not a {POLICY_FORMAT} file; pass a file written by "
                         "ControlProblem.save_policy")
    spec = dict(payload["policy"])
    if spec["kind"] == "custom":
        if module is None:
            raise ValueError(f"{str(path)!r} holds a custom policy ({spec['class']}); pass "
                             "module= an instance of that class to load it into")
    elif module is None:
        module = build_policy(spec["kind"], spec["obs_dim"], spec["act_dim"],
                              hidden=spec.get("hidden", (16,)),
                              activation=spec.get("activation", "tanh"), bias=spec["bias"])
    module.load_state_dict(payload["state_dict"])
    norm = None if payload["obs_norm"] is None else RunningNorm.from_state_dict(
        payload["obs_norm"])
    return LoadedPolicy(payload["env_id"], module, norm, int(payload["max_steps"]))


def _factory(env_id: str):
    def make(instance: int = 0, dim: int | None = None, **kwargs: Any) -> ControlProblem:
        if dim is not None:
            raise ValueError(f"the dimension of {env_id} follows from its policy; pass "
                             f"policy='linear'|'mlp' and hidden=..., not dim={dim!r}")
        return ControlProblem(env_id, instance=instance, **kwargs)

    return make


def control_problems() -> dict[str, Any]:
    """Registry factories: the batched classic-control tasks, and LunarLander-v3 when
    gymnasium's Box2D extra is installed."""
    ids = list(ENVIRONMENTS)
    try:
        import Box2D  # noqa: F401

        ids.append("LunarLander-v3")
    except ImportError:
        pass
    return {env_id: _factory(env_id) for env_id in ids}
