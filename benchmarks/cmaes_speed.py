"""CMA-ES speed: ours in torch against evotorch's CMAES and pycma, plus equal quality.

Generations per second and peak memory at popsize 256 and several dimensions, for

- ``ours``: ``cmaes-torch`` (:mod:`nondiff.optim.cmaes_torch`), on ``--device``;
- ``evotorch``: ``evotorch.algorithms.CMAES`` (its defaults: active, lazy
  decomposition ``limit_C_decomposition``), on ``--device``;
- ``pycma``: ``cmaes``, our wrapper of pycma (numpy, CPU, float64: always).

Each loop asks, evaluates the sphere on the whole population in one call and tells.
Rounds alternate between the libraries (medians compared); every round runs at least
the generations between two eigendecompositions, so their cost is included. Peak
memory is measured per library in a fresh process: ``torch.cuda.max_memory_allocated``
on the GPU, the growth of the peak resident set size (``ru_maxrss``) on the CPU.
Targets (issue 19): ours >= 1.0x evotorch on the GPU; on the CPU >= 1.0x the faster
of pycma and evotorch at every size. ``--isolated`` instead runs each library alone in
a fresh process for one decomposition period (generation 0, then the ``eigen_gap``
generations that include one decomposition), gen/s and peak memory from that one run:
for dimensions where a period takes minutes (10,000 on one CPU core). On the CPU its
ratios compare generations per second of process CPU time (``gen/CPU-s``; pin one
thread): runs at different times on a shared machine see different loads.

The equal-quality check runs ours and pycma with default population sizes on
shifted and rotated sphere, ellipsoid and Rosenbrock (``--quality-dim``, BBOB
setup: x0 uniform in [-4, 4]^d, sigma0 = 2) to the target ``f_opt + 1e-8`` and
compares the evaluations each needs.

    python -m nondiff.benchmarks.cmaes_speed [--device cpu|cuda] [--dims 100 1000 3000]
        [--popsize 256] [--rounds 5] [--seconds 2] [--dtype float64] [--quality-dim 100]
        [--no-quality] [--no-memory] [--isolated]

On a machine shared with other jobs, pin every library to one thread
(``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1``): multithreaded
LAPACK under contention is many times slower and swamps the comparison.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from nondiff.benchmarks.timing import interleaved
from nondiff.optim import minimize, registry
from nondiff.optim.cmaes_parameters import strategy_parameters
from nondiff.problems.continuous import Ellipsoid, Rosenbrock, Sphere

LIBRARIES = ("ours", "evotorch", "pycma")
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def sphere(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(dim=1)


def make_step(library: str, dim: int, popsize: int, device: str,
              dtype: torch.dtype) -> Callable[[], None]:
    """One generation (ask, evaluate, tell) of ``library``, ready to call."""
    if library == "ours":
        opt = registry.create("cmaes-torch", torch.zeros(dim, dtype=dtype, device=device),
                              sigma0=1.0, popsize=popsize, seed=0)

        def step() -> None:
            x = opt.ask()
            opt.tell(x, sphere(x))

        return step
    if library == "pycma":
        wrapped = registry.create("cmaes", np.zeros(dim), sigma0=1.0, popsize=popsize, seed=0)

        def step() -> None:
            x = wrapped.ask()
            wrapped.tell(x, np.einsum("ij,ij->i", x, x))

        return step
    import evotorch
    from evotorch.algorithms import CMAES

    logging.getLogger("evotorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="evotorch")  # its copy-construct warning
    problem = evotorch.Problem("min", sphere, solution_length=dim, initial_bounds=(-1.0, 1.0),
                               vectorized=True, dtype=dtype, device=device, seed=0)
    searcher = CMAES(problem, stdev_init=1.0, popsize=popsize,
                     center_init=torch.zeros(dim, dtype=dtype))
    return searcher.step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def evotorch_fits(dim: int, popsize: int, device: str, dtype: torch.dtype) -> tuple[bool, float]:
    """Whether evotorch's CMAES fits in half the free memory: its rank-mu update builds
    the ``(popsize, dim, dim)`` batch of outer products (about 18 GB in float64 at dim
    3000, popsize 256). Returns (fits, bytes needed)."""
    need = float(popsize * dim * dim * torch.finfo(dtype).bits // 8)
    if device.startswith("cuda"):
        free = float(torch.cuda.mem_get_info(device)[0])
    else:
        try:
            with open("/proc/meminfo") as info:
                free = next(float(line.split()[1]) * 1024 for line in info
                            if line.startswith("MemAvailable:"))
        except (OSError, StopIteration):
            return True, need
    return need < 0.5 * free, need


def speed(dim: int, popsize: int, device: str, dtype: torch.dtype, rounds: int,
          libraries: Sequence[str], seconds: float = 2.0,
          ) -> tuple[dict[str, float], dict[str, int]]:
    """Median generations per second of each library (interleaved rounds), and the
    generations per round: whole decomposition periods, about ``seconds`` each."""
    gap = math.ceil(strategy_parameters(dim, popsize).eigen_gap)
    steps, generations = {}, {}
    for library in libraries:
        steps[library] = step = make_step(library, dim, popsize, device, dtype)
        step()  # first call: allocations, kernels
        _sync(device)
        began = time.perf_counter()
        for _ in range(gap):  # one decomposition period
            step()
        _sync(device)
        elapsed = (time.perf_counter() - began) / gap
        generations[library] = gap * max(1, round(seconds / (elapsed * gap)))

    def measure(library: str) -> Callable[[], float]:
        step, count = steps[library], generations[library]

        def run() -> float:
            _sync(device)
            began = time.perf_counter()
            for _ in range(count):
                step()
            _sync(device)
            return (time.perf_counter() - began) / count
        return run

    medians = interleaved({k: measure(k) for k in steps}, rounds)
    return {k: 1.0 / v for k, v in medians.items()}, generations


def _peak_rss() -> float:
    """Peak resident set size in bytes (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _current_rss() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return float(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return _peak_rss()


def probe(library: str, dim: int, popsize: int, device: str, dtype: str) -> dict[str, float]:
    """Peak memory of ``library`` over a decomposition period (run in a fresh process):
    the peak resident set size above the resident size before (the peak is reset
    through ``/proc/self/clear_refs`` where Linux allows it); and the generations per
    second of that period (what ``--isolated`` reports)."""
    step = make_step(library, 8, popsize, device, DTYPES[dtype])  # imports, kernels, pools
    step()
    _sync(device)
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset the peak resident set size (Linux >= 4.0)
    except OSError:
        pass
    before = _current_rss()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    step = make_step(library, dim, popsize, device, DTYPES[dtype])
    gap = math.ceil(strategy_parameters(dim, popsize).eigen_gap)
    step()  # generation 0: no decomposition due yet
    _sync(device)
    began, cpu_began = time.perf_counter(), time.process_time()
    for _ in range(gap):  # one decomposition period: exactly one decomposition
        step()
    _sync(device)
    out = {"rss": max(0.0, _peak_rss() - before), "rate": gap / (time.perf_counter() - began),
           "cpu_rate": gap / (time.process_time() - cpu_began)}
    if device.startswith("cuda"):
        out["cuda"] = float(torch.cuda.max_memory_allocated() - base)
    return out


def memory(library: str, dim: int, popsize: int, device: str, dtype: str) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-m", "nondiff.benchmarks.cmaes_speed", "--probe", library, str(dim),
         str(popsize), device, dtype], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def quality(dim: int, device: str, seeds: int, budget: int) -> None:
    """Evaluations to reach f_opt + 1e-8: ours vs pycma, default population sizes."""
    print(f"\nequal quality, dim {dim}, target f_opt + 1e-8, budget {budget}, BBOB setup "
          "(instance 1: shifted and rotated; x0 uniform in [-4, 4]^d, sigma0 = 2)")
    print(f"{'function':>11} {'seed':>4} {'pycma evals':>12} {'pycma f-fopt':>13} "
          f"{'ours evals':>11} {'ours f-fopt':>12} {'evals ratio':>12}")
    for cls in (Sphere, Ellipsoid, Rosenbrock):
        for seed in range(seeds):
            problem = cls(dim, instance=1)
            x0 = np.random.default_rng(seed).uniform(-4, 4, dim)
            runs = {}
            for name, start in (("cmaes", x0),
                                ("cmaes-torch", torch.tensor(x0, device=device))):
                res = minimize(problem, start, optimizer=name, budget=budget, sigma0=2.0,
                               vectorized=True, seed=seed, target=problem.f_opt + 1e-8)
                runs[name] = (res.evaluations, res.f - problem.f_opt)
            (pe, pf), (oe, of) = runs["cmaes"], runs["cmaes-torch"]
            print(f"{problem.name:>11} {seed:>4} {pe:>12} {pf:>13.2e} {oe:>11} {of:>12.2e} "
                  f"{oe / pe:>12.2f}")


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import cma
    try:
        import evotorch
        evo = evotorch.__version__
    except ImportError:
        evo = "not installed"
    threads = {k: os.environ.get(k, "-") for k in
               ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    lines = [f"machine: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
             + ", ".join(f"{k}={v}" for k, v in threads.items()),
             f"torch {torch.__version__}, pycma {cma.__version__}, evotorch {evo}, "
             f"numpy {np.__version__}"]
    if device.startswith("cuda"):
        lines.append(f"device: {torch.cuda.get_device_name(device)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (ours and evotorch)")
    parser.add_argument("--dims", type=int, nargs="+", default=[100, 1000, 3000])
    parser.add_argument("--popsize", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="about this long per library and round")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float64",
                        help="of ours and evotorch (pycma: float64)")
    parser.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--quality-dim", type=int, default=100)
    parser.add_argument("--quality-seeds", type=int, default=1)
    parser.add_argument("--quality-budget", type=int, default=600_000)
    parser.add_argument("--isolated", action="store_true",
                        help="each library alone in a fresh process for one decomposition "
                             "period: gen/s and peak memory of the same run (no interleaved "
                             "rounds; for sizes where a period takes minutes, e.g. dim 10000)")
    parser.add_argument("--probe", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:  # child process of memory()
        library, dim, popsize, device, dtype = args.probe
        print(json.dumps(probe(library, int(dim), int(popsize), device, dtype)))
        return
    print(machine(args.device))
    print(f"device {args.device}, popsize {args.popsize}, {args.dtype} (pycma float64), "
          + ("each library alone in a fresh process, one decomposition period"
             if args.isolated else f"{args.rounds} interleaved rounds, medians"))
    for dim in args.dims:
        libs = list(args.libraries)
        if "evotorch" in libs:
            fits, need = evotorch_fits(dim, args.popsize, args.device, DTYPES[args.dtype])
            if not fits:
                libs.remove("evotorch")
                print(f"\ndim {dim}: evotorch skipped: its (popsize, dim, dim) outer products "
                      f"need {need / 2**30:.1f} GiB, more than half the free memory")
        if args.isolated:
            mem = {lib: memory(lib, dim, args.popsize, args.device, args.dtype) for lib in libs}
            rates = {lib: mem[lib]["rate"] for lib in libs}
            cpu_rates = {lib: mem[lib]["cpu_rate"] for lib in libs}
            gap = math.ceil(strategy_parameters(dim, args.popsize).eigen_gap)
            generations = dict.fromkeys(libs, gap)
        else:
            rates, generations = speed(dim, args.popsize, args.device, DTYPES[args.dtype],
                                       args.rounds, libs, args.seconds)
            mem = {} if args.no_memory else {
                lib: memory(lib, dim, args.popsize, args.device, args.dtype) for lib in libs}
        print(f"\ndim {dim}")
        print(f"{'library':>9} {'gen/round':>9} {'gen/s':>9}"
              + (f" {'gen/CPU-s':>9}" if args.isolated else "") + f" {'peak RSS MB':>12}"
              + (f" {'peak CUDA MB':>13}" if args.device.startswith("cuda") else ""))
        for lib in libs:
            row = f"{lib:>9} {generations[lib]:>9} {rates[lib]:>9.4f}"
            if args.isolated:
                row += f" {cpu_rates[lib]:>9.4f}"
            if lib in mem:
                row += f" {mem[lib]['rss'] / 2**20:>12.1f}"
                if "cuda" in mem[lib]:
                    row += f" {mem[lib]['cuda'] / 2**20:>13.1f}"
            print(row)
        if args.isolated and not args.device.startswith("cuda"):
            # runs at different times on a shared machine: their wall times compare the
            # load; one thread each, the CPU time is the work (the ratios below use it)
            for lib in libs:
                if lib != "ours":
                    print(f"wall-time ratio ours / {lib}: {rates['ours'] / rates[lib]:.2f}")
            rates = cpu_rates
        if "ours" in libs:
            others = [lib for lib in libs if lib != "ours"]
            for lib in others:
                print(f"ratio ours / {lib}: {rates['ours'] / rates[lib]:.2f}")
            if args.device.startswith("cuda"):
                others = [lib for lib in others if lib == "evotorch"]  # the GPU target
            if others:
                fastest = max(others, key=lambda lib: rates[lib])
                ratio = rates["ours"] / rates[fastest]
                print(f"ratio ours / fastest other ({fastest}): {ratio:.2f}  "
                      f"{'ok' if ratio >= 1.0 else 'MISSED'} (target >= 1.0)")
    if not args.no_quality:
        quality(args.quality_dim, args.device, args.quality_seeds, args.quality_budget)


if __name__ == "__main__":
    main()
