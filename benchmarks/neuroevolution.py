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
4. Issue 19's table, ours alone: environment steps per second of whole generations
   (SNES ask, ControlProblem evaluation of every policy, tell; the device synchronized
   before each clock read) at popsizes 1k, 10k and 100k (``--steps-popsizes``), for the
   linear and the MLP policy, on policies near one that balances (so that episodes
   run long and the steps measure the simulation, not the resets); and the time to
   solve CartPole-v1 at popsize 1,000 with each policy. Target: on an H200, >= 2e7
   env steps/s at popsize 100k.

With ``--device cuda`` our side runs on the GPU: the search distribution and the
population live there (x0 on the device) and the batched problem steps every
environment and policy there (``ControlProblem(device=...)``); evotorch's runners
and the serial gymnasium reference stay on the CPU, as gymnasium does.

    OMP_NUM_THREADS=1 python -m nondiff.benchmarks.neuroevolution [--popsizes 20 50 200] [--seeds 5]
        [--quick] [--skip-ray] [--device cpu|cuda] [--steps-popsizes 1000 10000 100000]
        [--tables solve throughput ray steps]

``--quick`` on the CPU measures table 4 at popsizes 1k and 10k only (a generation of
10k policies near balancing took 0.7 s linear, 1.6 s MLP on a shared core; 100k take
ten times that, and four generations per row); on a GPU it keeps 100k.
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from nondiff.benchmarks.timing import machine, synchronize
from nondiff.optim import registry
from nondiff.optim.evaluate import RayEvaluator, VectorizedEvaluator
from nondiff.problems.control import ControlProblem
from nondiff.problems.policies import LinearPolicy

ENV = "CartPole-v1"
TABLES = ("solve", "throughput", "ray", "steps")
STEPS_POPSIZES = (1000, 10000, 100000)
STEPS_TARGET = 2e7  # env steps/s on an H200 at popsize 100k (issue 19)
POLICIES = ("linear", "mlp")


def _solved(check: ControlProblem, center: torch.Tensor) -> bool:
    return check.mean_return(center.to(torch.float32), episodes=10) >= 475


def _device(device: str | None) -> str | None:
    """None for the CPU default path, else the device ControlProblem steps on."""
    return None if device in (None, "cpu") else device


def solve_ours(seed: int, popsize: int, sigma: float, generations: int,
               device: str | None = None, policy: str = "linear") -> dict[str, float]:
    problem = ControlProblem(ENV, policy=policy, episodes=1, device=_device(device))
    check = ControlProblem(ENV, policy=policy, device=_device(device))
    x0 = problem.initial().to(device or "cpu")
    opt = registry.create("snes", x0, sigma0=sigma, popsize=popsize, seed=seed)
    evaluator, elapsed = VectorizedEvaluator(), 0.0
    for g in range(generations):
        synchronize(device or "cpu")
        began = time.perf_counter()
        x = opt.ask()
        opt.tell(x, -torch.as_tensor(evaluator(problem, x)))
        synchronize(device or "cpu")
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


def balancing_center(problem: ControlProblem) -> torch.Tensor:
    """Flat parameters of a policy of ``problem``'s kind that balances CartPole for long:
    it pushes toward ``theta + theta'`` (the MLP through one hidden unit)."""
    module = copy.deepcopy(problem.stack.module)
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        if isinstance(module, LinearPolicy):
            module.linear.weight[1, 2:4] = 1.0  # score of "push right": theta + theta'
        else:
            module.layers[0].weight[0, 2:4] = 1.0  # h_0 = act(theta + theta'), passed on
            for layer in module.layers[1:]:
                layer.weight[0 if layer is not module.layers[-1] else 1, 0] = 1.0
    return problem.stack.flatten(module)


def generation_steps(policy: str, popsize: int, generations: int, device: str,
                     sigma: float = 0.1) -> dict[str, float]:
    """Env steps/s over ``generations`` whole generations (SNES ask, evaluation of every
    policy, tell) after one warm-up generation; SNES centered on
    :func:`balancing_center` with stdev ``sigma``."""
    problem = ControlProblem(ENV, policy=policy, device=_device(device))
    center = balancing_center(problem).to(device)
    opt = registry.create("snes", center, sigma0=sigma, popsize=popsize, seed=0)

    def generation() -> None:
        x = opt.ask()
        opt.tell(x, -problem(x))  # the fitness stays on the device; tell reads it once

    generation()  # warm up: kernels, allocations
    synchronize(device)
    before = problem.env_steps
    began = time.perf_counter()
    for _ in range(generations):
        generation()
    synchronize(device)
    elapsed = time.perf_counter() - began
    steps = problem.env_steps - before
    return {"rate": steps / elapsed, "length": steps / (popsize * generations),
            "seconds": elapsed / generations, "dim": problem.dim}


def table_steps(sizes: Sequence[int], generations: int, device: str, seeds: int,
                solve_popsize: int = 1000, solve_generations: int = 50,
                solve_sigma: float = 0.5) -> None:
    print(f"\n4. Whole generations on {ENV} (SNES ask -> ControlProblem evaluation on "
          f"{device} -> tell), {generations} generation(s) after a warm-up, policies around "
          "one that balances (stdev 0.1)")
    print("target: on an H200: >= 2e7 env steps/s at popsize 100k "
          f"(this run: {device})")
    print(f"{'policy':<12} {'popsize':>8} {'env steps/s':>12} {'mean ep. len':>13} "
          f"{'s/generation':>13}")
    for policy in POLICIES:
        for n in sizes:
            r = generation_steps(policy, n, generations, device)
            label = f"{policy} ({r['dim']})"
            verdict = ""
            if n == 100_000 and torch.device(device).type == "cuda":
                verdict = f"  {'ok' if r['rate'] >= STEPS_TARGET else 'MISSED'} (target 2e7)"
            print(f"{label:<12} {n:>8} {r['rate']:>12.3e} {r['length']:>13.1f} "
                  f"{r['seconds']:>13.3f}{verdict}")
    print(f"\nTime to solve {ENV} at popsize {solve_popsize} (ours: SNES from zero, stdev0 "
          f"{solve_sigma}, 1 episode/policy, mean return >= 475 over 10 episodes of the center "
          f"checked outside the timed part, <= {solve_generations} generations, {seeds} "
          "seed(s), medians)")
    print(f"{'policy':<12} {'solved':>6} {'gens':>6} {'env steps':>10} {'time s':>8} "
          f"{'steps/s':>10}")
    for policy in POLICIES:
        results = [solve_ours(seed, solve_popsize, solve_sigma, solve_generations, device,
                              policy) for seed in range(seeds)]
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(f"{policy:<12} {sum(r['solved'] for r in results):>3}/{seeds:<2} "
              f"{med['gens']:>6.1f} {med['steps']:>10.0f} {med['time']:>8.2f} "
              f"{med['steps'] / med['time']:>10.3e}")


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
    parser.add_argument("--steps-popsizes", type=int, nargs="+", default=None,
                        help=f"popsizes of table 4 (default {list(STEPS_POPSIZES)}; "
                             "--quick on the CPU: 1000 10000)")
    parser.add_argument("--steps-generations", type=int, default=None,
                        help="timed generations per row of table 4 (default 3, --quick 2)")
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES),
                        help="which tables to run (default: all)")
    args = parser.parse_args(argv)
    if args.device != "cpu" and torch.device(args.device).type == "cuda" \
            and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here; use --device cpu")
    torch.set_num_threads(1)
    print(machine(args.device))
    seeds = 1 if args.quick else args.seeds
    if "solve" in args.tables:
        summary = {n: table_solve(n, seeds, args.sigma, args.generations, args.device)
                   for n in args.popsizes}
        print("\nSolve time ratio evotorch / ours by popsize (steps/s ratio in brackets; "
              "target >= 5x):")
        for n, ratios in summary.items():
            print(f"  popsize {n:>4}: " + ", ".join(f"{name} {t:.1f}x ({v:.1f}x)"
                                                    for name, (t, v) in ratios.items()))
    if "throughput" in args.tables:
        table_throughput((10, 50, 200) if args.quick else (10, 50, 200, 1000),
                         serial_policies=5 if args.quick else 20, device=args.device)
    if "ray" in args.tables and not args.skip_ray:
        table_ray(repeats=2 if args.quick else 5)
    if "steps" in args.tables:
        sizes = args.steps_popsizes or (
            STEPS_POPSIZES[:2] if args.quick and args.device == "cpu" else STEPS_POPSIZES)
        generations = args.steps_generations or (2 if args.quick else 3)
        table_steps(sizes, generations, args.device, seeds,
                    solve_generations=args.generations)


if __name__ == "__main__":
    main()
