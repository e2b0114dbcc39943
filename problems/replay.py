"""``nondiff replay``: run a saved policy, print its returns, optionally render a GIF/MP4.

    nondiff replay --policy best.pt [--episodes 10] [--seed 0] [--render out.gif]

The policy file is what :meth:`nondiff.problems.control.ControlProblem.save_policy` writes
(a plain ``state_dict`` with the env id, policy spec and observation statistics).
Episodes run on gymnasium itself when it is installed (``--backend gymnasium``,
the default), else on the batched torch dynamics, which match it step for step.
Frames come from gymnasium's ``rgb_array`` renderer when pygame is installed, else
from a small Pillow drawing of the classic-control state; ``.gif`` needs Pillow,
``.mp4`` needs imageio with ffmpeg.

Example:
    >>> import argparse
    >>> from nondiff.problems import replay
    >>> commands = argparse.ArgumentParser(prog="nondiff").add_subparsers(dest="command")
    >>> parser = replay.add_parser(commands)
    >>> parser.parse_args(["--policy", "best.pt"]).episodes
    10
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nondiff.problems.classic_control import ENVIRONMENTS, make_batched
from nondiff.problems.control import LoadedPolicy, load_policy
from nondiff.problems.policies import RunningNorm


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``replay`` command to an argparse subparsers object."""
    parser = commands.add_parser(
        "replay", help="run a saved control policy, print its mean return, optionally render")
    parser.add_argument("--policy", required=True, help="a file written by save_policy")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="episode seeds seed, seed+1, ...")
    parser.add_argument("--backend", choices=("gymnasium", "torch"), default=None,
                        help="gymnasium (default when installed) or the batched torch dynamics")
    parser.add_argument("--render", metavar="OUT", help="write the first episode to .gif/.mp4")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler of ``nondiff replay``: print each episode's return and the mean."""
    if args.episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {args.episodes}")
    if args.seed < 0:
        raise ValueError(f"--seed must be non-negative, got {args.seed}")
    loaded = load_policy(args.policy)
    backend = args.backend or ("gymnasium" if importlib.util.find_spec("gymnasium") else "torch")
    returns, lengths = episode_returns(loaded, args.episodes, args.seed, backend)
    print(f"policy   {args.policy}  ({loaded.env_id}, {backend})")
    for i, (ret, steps) in enumerate(zip(returns, lengths, strict=True)):
        print(f"episode {i:>3}  seed {args.seed + i:<6} return {ret:10.2f}  steps {steps}")
    print(f"mean return {float(np.mean(returns)):.2f} over {args.episodes} episodes")
    if args.render:
        frames = render(loaded, args.seed)
        save_frames(frames, args.render, fps=30)
        print(f"rendered {len(frames)} frames to {args.render}")
    return 0


def episode_returns(loaded: LoadedPolicy, episodes: int, seed: int, backend: str
                    ) -> tuple[list[float], list[int]]:
    """Returns and lengths of ``episodes`` episodes with seeds ``seed, seed + 1, ...``."""
    problem = loaded.problem(backend=backend)
    norm = None if loaded.obs_norm is None else loaded.obs_norm.transform()
    returns, lengths, _ = problem.rollout(loaded.parameters()[None],
                                          list(range(seed, seed + episodes)), norm)
    return returns[0].tolist(), lengths[0].tolist()


def render(loaded: LoadedPolicy, seed: int) -> list[np.ndarray]:
    """RGB frames ``(H, W, 3)`` uint8 of one episode (gymnasium's renderer if pygame is
    installed, else a Pillow drawing of the batched state)."""
    if importlib.util.find_spec("pygame") is not None:
        return _render_gymnasium(loaded, seed)
    if loaded.env_id not in ENVIRONMENTS:
        raise ValueError(f"rendering {loaded.env_id} needs pygame: pip install "
                         "'nondiff[render]'")
    env = make_batched(loaded.env_id)
    norm = None if loaded.obs_norm is None else loaded.obs_norm.transform()
    state, frames = env.reset([seed]), []
    with torch.no_grad():
        for _ in range(loaded.max_steps):
            frames.append(_draw(loaded.env_id, state[0].tolist()))
            obs = env.observe(state)
            if norm is not None:
                obs = RunningNorm.apply(obs, norm)
            state, _, terminated = env.step(state, env.action(loaded.module(obs)))
            if bool(terminated[0]):
                break
    frames.append(_draw(loaded.env_id, state[0].tolist()))
    return frames


def _render_gymnasium(loaded: LoadedPolicy, seed: int) -> list[np.ndarray]:
    import gymnasium as gym

    env = gym.make(loaded.env_id, render_mode="rgb_array", max_episode_steps=loaded.max_steps)
    problem = loaded.problem(backend="gymnasium")
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    while True:
        o = torch.as_tensor(obs, dtype=torch.float32)[None]
        if loaded.obs_norm is not None:
            o = loaded.obs_norm.normalize(o)
        with torch.no_grad():
            out = loaded.module(o)[0]
        task = problem.task
        action = int(out.argmax()) if task.discrete else np.clip(
            out.numpy(), task.action_low, task.action_high).astype(np.float32)
        obs, _, terminated, truncated, _ = env.step(action)
        frames.append(env.render())
        if terminated or truncated:
            env.close()
            return frames


def _draw(env_id: str, s: list[float], size: tuple[int, int] = (400, 300)) -> np.ndarray:
    """A plain drawing of one classic-control state (no pygame needed)."""
    from PIL import Image, ImageDraw

    w, h = size
    image = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(image)
    if env_id == "CartPole-v1":
        scale, y = w / 4.8, h * 0.7
        cx = w / 2 + s[0] * scale
        d.line([(0, y), (w, y)], fill="black")
        d.rectangle([cx - 25, y - 15, cx + 25, y + 15], fill="black")
        tip = (cx + scale * math.sin(s[2]), y - scale * math.cos(s[2]))
        d.line([(cx, y), tip], fill=(202, 152, 101), width=8)
    elif env_id == "Acrobot-v1":
        scale, base = h / 5.0, (w / 2, h / 2)
        p1 = (base[0] + scale * math.sin(s[0]), base[1] + scale * math.cos(s[0]))
        p2 = (p1[0] + scale * math.sin(s[0] + s[1]), p1[1] + scale * math.cos(s[0] + s[1]))
        d.line([(0, base[1] - scale), (w, base[1] - scale)], fill="black")
        d.line([base, p1, p2], fill=(0, 204, 204), width=8)
    elif env_id == "Pendulum-v1":
        c, r = (w / 2, h / 2), h / 3
        d.line([c, (c[0] + r * math.sin(s[0]), c[1] - r * math.cos(s[0]))],
               fill=(204, 77, 77), width=12)
    else:  # MountainCarContinuous-v0
        xs = np.linspace(-1.2, 0.6, 100)
        pts = [((x + 1.2) / 1.8 * w, h - (np.sin(3 * x) * 0.45 + 0.55) * h * 0.8) for x in xs]
        d.line(pts, fill="black", width=2)
        car = ((s[0] + 1.2) / 1.8 * w, h - (math.sin(3 * s[0]) * 0.45 + 0.55) * h * 0.8)
        d.ellipse([car[0] - 8, car[1] - 16, car[0] + 8, car[1]], fill="black")
        flag = (0.45 + 1.2) / 1.8 * w
        d.line([(flag, h * 0.1), (flag, h * 0.25)], fill=(204, 204, 0), width=3)
    return np.asarray(image)


def save_frames(frames: list[np.ndarray], path: str, fps: int = 30) -> None:
    """Write frames to ``.gif`` (Pillow) or ``.mp4`` (imageio with ffmpeg)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:],
                       duration=max(1, round(1000 / fps)), loop=0)
    elif suffix == ".mp4":
        try:
            import imageio.v2 as imageio
        except ImportError as error:
            raise ValueError("writing .mp4 needs imageio with ffmpeg (pip install "
                             "'imageio[ffmpeg]'); or render to a .gif") from error
        imageio.mimsave(path, frames, fps=fps)
    else:
        raise ValueError(f"--render must end in .gif or .mp4, got {path!r}")
