"""Environment steps per second of the batched control problems, by path and device.

One generation evaluates ``N`` policies (linear or MLP, one episode each, so ``N``
environments step together) of :class:`~nondiff.problems.control.ControlProblem`:

- ``default``: the CPU rollout that drops finished rows (``device=None``);
- ``masked``: every row in place on ``--device``, finished rows masked, no host
  read per step (``device=...``; bit-identical returns on the CPU);
- ``gymnasium vector``: gymnasium's own numpy ``CartPoleVectorEnv`` with random
  actions (no policy), CartPole only: the numpy reference.

Steps counted are environment steps of unfinished episodes (what the problem
counts as ``env_steps``), so rows the masked path carries after their episode
ended cost time but add nothing. Paths alternate in rounds; medians are printed
with the published anchor: gymnax CartPole-v1 at about 2e7 env steps/s (random
policy, 2,000 environments, one A100; R. T. Lange, "gymnax: A JAX-based
Reinforcement Learning Environment Library", 2022).

    python -m nondiff.benchmarks.control_speed [--env CartPole-v1] [--envs 2000]
        [--policy linear|mlp] [--device cpu|cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from nondiff.benchmarks.timing import interleaved, machine, synchronize
from nondiff.problems.classic_control import ENVIRONMENTS
from nondiff.problems.control import ControlProblem

ANCHOR_STEPS_PER_S = 2e7
ANCHOR = ("gymnax CartPole-v1 ~2e7 env steps/s (random policy, 2,000 envs, A100; "
          "published, not run here)")


def population(problem: ControlProblem, n: int, policy: str) -> torch.Tensor:
    """Random policies; for CartPole's linear policy pushed toward balancing (push
    right when ``theta + theta'`` > 0) so that episodes last long."""
    x = 0.5 * torch.randn(n, problem.dim, generator=torch.Generator().manual_seed(0))
    if problem.env_id == "CartPole-v1" and policy == "linear":
        x[:, 6] += 1.0
        x[:, 7] += 1.0
    return x


def problem_rate(problem: ControlProblem, x: torch.Tensor) -> Callable[[], float]:
    """A measurement: env steps/s of one generation (fitness back on the host)."""

    def measure() -> float:
        before = problem.env_steps
        began = time.perf_counter()
        problem(x)
        return (problem.env_steps - before) / (time.perf_counter() - began)

    return measure


def gymnasium_vector_rate(n: int, steps: int) -> Callable[[], float] | None:
    """A measurement of gymnasium's numpy CartPoleVectorEnv, random actions, autoreset."""
    try:
        from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
    except ImportError:
        return None
    env = CartPoleVectorEnv(num_envs=n)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 2, size=n) for _ in range(steps)]

    def measure() -> float:
        began = time.perf_counter()
        for a in actions:
            env.step(a)
        return n * steps / (time.perf_counter() - began)

    return measure


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1", choices=sorted(ENVIRONMENTS))
    parser.add_argument("--envs", type=int, nargs="+", default=[2000])
    parser.add_argument("--policy", default="linear", choices=["linear", "mlp"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(machine(args.device))
    print(f"{args.env}, {args.policy} policy, 1 episode per policy; medians of "
          f"{args.repeats} interleaved rounds; env steps/s (higher is better)")
    print(f"anchor: {ANCHOR}")
    print(f"{'envs':>8} {'path':<28} {'steps/gen':>10} {'env steps/s':>12} {'vs default':>10} "
          f"{'vs anchor':>10}")
    for n in args.envs:
        problems = {"default (cpu, drops rows)": ControlProblem(args.env, policy=args.policy),
                    f"masked ({args.device})": ControlProblem(args.env, policy=args.policy,
                                                              device=args.device)}
        x = population(problems["default (cpu, drops rows)"], n, args.policy)
        runs = {name: problem_rate(p, x) for name, p in problems.items()}
        if args.env == "CartPole-v1":
            vector = gymnasium_vector_rate(n, steps=200)
            if vector is not None:
                runs["gymnasium vector (numpy)"] = vector
        for run in runs.values():  # warm up (kernels, allocations)
            run()
        synchronize(args.device)
        rates = interleaved(runs, args.repeats)
        steps = {name: p.env_steps // (args.repeats + 1) for name, p in problems.items()}
        base = rates["default (cpu, drops rows)"]
        for name, rate in rates.items():
            per_gen = f"{steps[name]:>10}" if name in steps else f"{'-':>10}"
            print(f"{n:>8} {name:<28} {per_gen} {rate:>12.3g} {rate / base:>9.2f}x "
                  f"{rate / ANCHOR_STEPS_PER_S:>9.2e}x")


if __name__ == "__main__":
    main()
