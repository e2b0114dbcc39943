"""Neuroevolution speed: CartPole-v1 with batched policies, ours against evotorch.

Three tables, one run:

1. Time and environment steps to solve CartPole-v1 (mean return >= 475 over 10
   evaluation episodes of the search center, checked after every generation outside
   the timed part), SNES with the same popsize, initial stdev, learning rates and
   linear policy: ours (batched torch dynamics, stacked policies) against evotorch's
   GymNE (serial gymnasium) and VecGymNE (gymnasium vector envs), by popsize (a
   batched step costs about the same for 10 or 200 rows, so the lead grows with the
   population). Target: ours >= 5x faster in wall time.
2. Environment steps per second of the batched evaluator against serial gymnasium
   stepping (one policy call and one ``env.step`` per step), by population size, on
   policies that balance for long (near ``push toward theta + theta'``).
3. Ray: one generation on 1 and 2 actors (scaling) for a small and a large batched
   population and for serial gymnasium stepping, and the per-generation overhead
   (a generation of near-zero work on Ray against in-process).

With ``--device cuda`` our side runs on the GPU: the search distribution and the
population live there (x0 on the device) and the batched problem steps every
environment and policy there (``ControlProblem(device=...)``); evotorch's runners
and the serial gymnasium reference stay on the CPU, as gymnasium does.

    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.neuroevolution [--popsizes 20 50 200] [--seeds 5]
        [--quick] [--skip-ray] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from nondiff.benchmarks.timing import machine
from nondiff.optim import registry
from nondiff.optim.evaluate import RayEvaluator, VectorizedEvaluator
from nondiff.problems.control import ControlProblem

ENV = "CartPole-v1"


def _solved(check: ControlProblem, center: torch.Tensor) -> bool:
    return check.mean_return(center.to(torch.float32), episodes=10) >= 475


def _device(device: str | None) -> str | None:
    """None for the CPU default path, else the device ControlProblem steps on."""
    return None if device in (None, "cpu") else device


def solve_ours(seed: int, popsize: int, sigma: float, generations: int,
               device: str | None = None) -> dict[str, float]:
    problem = ControlProblem(ENV, policy="linear", episodes=1, device=_device(device))
    check = ControlProblem(ENV, policy="linear", device=_device(device))
    x0 = problem.initial().to(device or "cpu")
    opt = registry.create("snes", x0, sigma0=sigma, popsize=popsize, seed=seed)
    evaluator, elapsed = VectorizedEvaluator(), 0.0
    for g in range(generations):
        began = time.perf_counter()
        x = opt.ask()
        opt.tell(x, -torch.as_tensor(evaluator(problem, x)))
        elapsed += time.perf_counter() - began
        if _solved(check, opt.recommend()):
            return {"solved": 1, "gens": g + 1, "steps": problem.env_steps, "time": elapsed}
    return {"solved": 0, "gens": generations, "steps": problem.env_steps, "time": elapsed}


def solve_evotorch(kind: str, seed: int, popsize: int, sigma: float, generations: int,
                   eta_sigma: float) -> dict[str, float]:
    from evotorch.algorithms import SNES
    from evotorch.neuroevolution import GymNE, VecGymNE

    logging.getLogger("evotorch").setLevel(logging.WARNING)
    torch.manual_seed(seed)
    cls = GymNE if kind == "GymNE" else VecGymNE
    problem = cls(ENV, "Linear(obs_length, act_length)", num_episodes=1)
    searcher = SNES(problem, popsize=popsize, stdev_init=sigma, center_init=0.0,
                    center_learning_rate=1.0, stdev_learning_rate=eta_sigma)
    check = ControlProblem(ENV, policy="linear")
    elapsed = 0.0
    for g in range(generations):
        began = time.perf_counter()
        searcher.step()
        elapsed += time.perf_counter() - began
        if _solved(check, searcher.status["center"].detach().cpu()):
            return {"solved": 1, "gens": g + 1, "steps": problem.interaction_count,
                    "time": elapsed}
    return {"solved": 0, "gens": generations, "steps": problem.interaction_count, "time": elapsed}


def table_solve(popsize: int, seeds: int, sigma: float, generations: int,
                device: str | None = None) -> dict[str, tuple[float, float]]:
    """Print the solve table of one popsize; return ``{runner: (time ratio, steps/s
    ratio)}`` of each evotorch runner against ours."""
    dim = ControlProblem(ENV).dim
    eta_sigma = registry.create("snes", torch.zeros(dim), popsize=popsize).eta_sigma
    runs: dict[str, Callable[[int], dict[str, float]]] = {
        "ours (batched)": lambda s: solve_ours(s, popsize, sigma, generations, device),
        "evotorch GymNE": lambda s: solve_evotorch("GymNE", s, popsize, sigma, generations,
                                                   eta_sigma),
        "evotorch VecGymNE": lambda s: solve_evotorch("VecGymNE", s, popsize, sigma,
                                                      generations, eta_sigma),
    }
    print(f"\n1. Solve {ENV}: SNES, popsize {popsize}, stdev0 {sigma}, linear policy "
          f"({dim} parameters), 1 episode/policy, <= {generations} generations, {seeds} seeds")
    print(f"{'runner':<18} {'solved':>6} {'gens':>6} {'env steps':>10} {'time s':>8} "
          f"{'steps/s':>10}  (medians)")
    medians = {}
    for name, run in runs.items():
        results = [run(seed) for seed in range(seeds)]
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        med["solved"] = sum(r["solved"] for r in results)
        medians[name] = med
        print(f"{name:<18} {int(med['solved']):>3}/{seeds:<2} {med['gens']:>6.1f} "
              f"{med['steps']:>10.0f} {med['time']:>8.2f} {med['steps'] / med['time']:>10.0f}")
    ours = medians["ours (batched)"]
    ratios = {}
    for name in ("evotorch GymNE", "evotorch VecGymNE"):
        ratio = medians[name]["time"] / ours["time"]
        speed = (ours["steps"] / ours["time"]) / (medians[name]["steps"] / medians[name]["time"])
        ratios[name] = (ratio, speed)
        print(f"time ratio {name} / ours = {ratio:.1f}x  (target >= 5x: "
              f"{'ok' if ratio >= 5 else 'MISSED'}); env steps ratio "
              f"{medians[name]['steps'] / ours['steps']:.2f}; steps/s ours / theirs {speed:.1f}x")
    return ratios


def balancing_population(problem: ControlProblem, n: int) -> torch.Tensor:
    x = 0.1 * torch.randn(n, problem.dim, generator=torch.Generator().manual_seed(0))
    x[:, 6] += 1.0
    x[:, 7] += 1.0
    return x


def steps_per_second(problem: ControlProblem, x: torch.Tensor) -> float:
    before = problem.env_steps
    began = time.perf_counter()
    problem(x)
    return (problem.env_steps - before) / (time.perf_counter() - began)


def table_throughput(sizes: Sequence[int], serial_policies: int, device: str | None = None
                     ) -> None:
    print(f"\n2. Environment steps/s on {ENV}: batched torch ({device or 'cpu'}) vs serial "
          f"gymnasium (serial measured on {serial_policies} policies: its rate does not "
          "depend on n)")
    serial = ControlProblem(ENV, backend="gymnasium")
    serial_rate = steps_per_second(serial, balancing_population(serial, serial_policies))
    print(f"{'popsize':>8} {'batched steps/s':>16} {'serial steps/s':>15} {'ratio':>8}")
    for n in sizes:
        batched = ControlProblem(ENV, device=_device(device))
        x = balancing_population(batched, n).to(device or "cpu")
        steps_per_second(batched, x[:2])  # warm up
        rate = steps_per_second(batched, x)
        print(f"{n:>8} {rate:>16.0f} {serial_rate:>15.0f} {rate / serial_rate:>7.1f}x")


RAY_WORKLOADS = (  # (label, policies, episodes each, backend)
    ("batched, small population", 100, 4, "torch"),
    ("batched, large population", 5000, 4, "torch"),
    ("serial gymnasium", 40, 1, "gymnasium"),
)


def _generation_time(evaluate: Callable[..., object], args: tuple, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        evaluate(*args)
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def table_ray(repeats: int, workloads: Sequence[tuple[str, int, int, str]] = RAY_WORKLOADS
              ) -> None:
    import ray

    print(f"\n3. Ray on this machine: one {ENV} generation in-process and on 1 and 2 actors "
          f"(median of {repeats}), by workload")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        for label, policies, episodes, backend in workloads:
            problem = ControlProblem(ENV, episodes=episodes, backend=backend)
            x = balancing_population(problem, policies)
            problem(x)  # warm up
            times = {"local": _generation_time(problem, (x,), repeats)}
            for workers in (1, 2):
                evaluator = RayEvaluator(num_workers=workers)
                evaluator(problem, x)  # start the actors, ship the problem
                times[workers] = _generation_time(evaluator, (problem, x), repeats)
                evaluator.close()
            rows.append((f"{label} ({policies} x {episodes} ep)", times))
        tiny = ControlProblem(ENV, max_steps=1)
        small = balancing_population(tiny, 2)
        evaluator = RayEvaluator(num_workers=2)
        evaluator(tiny, small)
        overhead = _generation_time(evaluator, (tiny, small), 20)
        in_process = _generation_time(tiny, (small,), 20)
        evaluator.close()
    finally:
        ray.shutdown()
    print(f"{'workload':<42} {'in-process':>10} {'1 actor':>8} {'2 actors':>9} "
          f"{'2 vs 1':>7}  (s/generation)")
    for label, t in rows:
        print(f"{label:<42} {t['local']:>10.3f} {t[1]:>8.3f} {t[2]:>9.3f} "
              f"{t[1] / t[2]:>6.2f}x")
    print("(ideal 2 vs 1 on 2 idle cores: 2x; a batched generation costs about one "
          "policy call and env step per time step whatever the rows, so halving the rows "
          "saves little until the population is large)")
    print(f"Ray overhead per generation: {1e3 * (overhead - in_process):.1f} ms "
          f"(Ray {1e3 * overhead:.1f} ms vs in-process {1e3 * in_process:.1f} ms on a "
          "1-step generation)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--popsizes", type=int, nargs="+", default=[20, 50, 200])
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--generations", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="fewer sizes, seeds and repeats")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--device", default="cpu", help="our side's device: cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(machine(args.device))
    seeds = 1 if args.quick else args.seeds
    summary = {n: table_solve(n, seeds, args.sigma, args.generations, args.device)
               for n in args.popsizes}
    print("\nSolve time ratio evotorch / ours by popsize (steps/s ratio in brackets; "
          "target >= 5x):")
    for n, ratios in summary.items():
        print(f"  popsize {n:>4}: " + ", ".join(f"{name} {t:.1f}x ({v:.1f}x)"
                                                for name, (t, v) in ratios.items()))
    table_throughput((10, 50, 200) if args.quick else (10, 50, 200, 1000),
                     serial_policies=5 if args.quick else 20, device=args.device)
    if not args.skip_ray:
        table_ray(repeats=2 if args.quick else 5)


if __name__ == "__main__":
    main()
