"""Generations per second of our ES against evotorch's, and the memory bandwidth they reach.

A vectorized sphere ``f(x) = |x|^2`` (one read of each row) in float32 on
``--device``, dim 100,000, popsize 1,000 by default (the issue's GPU setting is
``--dim 1000000 --device cuda``). Each generation asks, evaluates the whole
population in one call and tells; the libraries alternate in rounds and the
medians are compared (target: ours >= 2x evotorch at dim 1e6, popsize 1000 on
a GPU; >= 1x everywhere for CEM). Pairs: SNES/SNES, PGPE/PGPE (ClipUp, both
sides), CEM/CEM (elite fraction 0.5), XNES/XNES (full covariance: only at small
dims), OpenAI-ES / evotorch's PGPE with Adam and a fixed stdev (evotorch has no
OpenAI-ES; that PGPE is the same update: symmetric samples, centered ranks, Adam).

Memory model. On a GPU a generation of these ES is bound by memory traffic over
the ``(n, d)`` sample matrix (``n`` popsize, ``d`` dim, ``b`` bytes per
number). At the least the optimizer writes the samples once (ask) and reads
them once (tell), and reads and writes its ``(d,)`` mean and stdev:

    B_min = (2 n d + 6 d) b   bytes per generation                       # Eq. (1)

(the objective's own read of the samples is the problem's and not counted, so
the fraction below is a lower bound of what the loop moves). The script
measures the device's copy bandwidth ``W`` with a large device-to-device copy
(read + write of a tensor; H200: about 4.3 TB/s) and prints, per library,
``B_min * (gen/s) / W``: the fraction of the bandwidth a generation would use if
it moved only ``B_min``.

    python -m nondiff.benchmarks.es_speed [--device cpu|cuda] [--dim 100000]
        [--popsize 1000] [--algorithms snes pgpe cem openai-es] [--repeats 3] [--sums]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from nondiff.benchmarks.timing import interleaved, machine, synchronize
from nondiff.optim import registry

ALGORITHMS = ("snes", "pgpe", "cem", "openai-es", "xnes")
BYTES = 4  # float32


def sphere(x: torch.Tensor) -> torch.Tensor:
    """``|x_i|^2`` of each row in one read (``(x * x).sum(1)`` and ``vecdot`` write and
    read an ``(n, d)`` product first: 15x slower on the CPU, measured)."""
    return torch.linalg.vector_norm(x, dim=1).square()


def minimal_bytes(dim: int, popsize: int) -> int:
    """Eq. (1): the sample matrix written and read once, mean and stdev read and written."""
    return (2 * popsize * dim + 6 * dim) * BYTES


def copy_bandwidth(device: str, nbytes: int, repeats: int = 5) -> float:
    """Device-to-device copy bandwidth in bytes/s: ``2 * nbytes`` (read + write) per copy,
    median of ``repeats`` copies after a warm-up."""
    src = torch.ones(nbytes // BYTES, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    synchronize(device)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        times.append(time.perf_counter() - began)
    return 2 * nbytes / statistics.median(times)


def evotorch_step(ours: str, dim: int, popsize: int, device: str) -> Callable[[], None]:
    import evotorch
    from evotorch import algorithms

    logging.getLogger("evotorch").setLevel(logging.WARNING)
    problem = evotorch.Problem("min", sphere, solution_length=dim, initial_bounds=(-1.0, 1.0),
                               vectorized=True, dtype=torch.float32, device=device, seed=0)
    if ours == "pgpe":
        searcher = algorithms.PGPE(problem, popsize=popsize, center_learning_rate=0.5,
                                   stdev_learning_rate=0.1, stdev_init=1.0, optimizer="clipup")
    elif ours == "openai-es":
        searcher = algorithms.PGPE(problem, popsize=popsize, center_learning_rate=0.01,
                                   stdev_learning_rate=0.0, stdev_init=1.0, optimizer="adam")
    elif ours == "cem":
        searcher = algorithms.CEM(problem, popsize=popsize, parenthood_ratio=0.5,
                                  stdev_init=1.0)
    elif ours == "xnes":
        searcher = algorithms.XNES(problem, popsize=popsize, stdev_init=1.0)
    else:
        searcher = algorithms.SNES(problem, popsize=popsize, stdev_init=1.0)
    return searcher.step


OUR_OPTIONS = {"pgpe": {"center_lr": 0.5, "stdev_lr": 0.1, "optimizer": "clipup"},
               "openai-es": {"lr": 0.01}, "cem": {"elite_frac": 0.5, "smoothing": 1.0}}


def our_step(name: str, dim: int, popsize: int, device: str) -> Callable[[], None]:
    opt = registry.create(name, torch.zeros(dim, dtype=torch.float32, device=device),
                          sigma0=1.0, popsize=popsize, seed=0, **OUR_OPTIONS.get(name, {}))

    def step() -> None:
        x = opt.ask()
        opt.tell(x, sphere(x))

    return step


def table_sums(dim: int, popsize: int, device: str, repeats: int) -> None:
    """The weighted noise sums of a tell, recomputed from the candidates (the path of
    any tensor but the one ask returned) against read from the noise ask kept."""
    from nondiff.optim.distributions import SeparableGaussian

    gen = torch.Generator(device=device).manual_seed(0)
    mean = torch.zeros(dim, device=device)
    dist = SeparableGaussian(mean, torch.ones(dim, device=device))
    w = torch.linspace(-0.5, 0.5, popsize, device=device)
    work = torch.empty(popsize, dim, device=device)
    print(f"\ntell's sums (sum w z, sum w z^2) over ({popsize}, {dim}): seconds per call")
    print(f"{'sampling':>10} {'recomputed':>11} {'kept noise':>11} {'speed-up':>9}")
    for antithetic in (False, True):
        x, z = dist.sample_with_noise(popsize, gen, antithetic)
        keep = z.clone()

        def recomputed(x=x) -> float:
            began = time.perf_counter()
            dist.noise_sums(x, w, work)
            synchronize(device)
            return time.perf_counter() - began

        def kept(keep=keep, z=z, antithetic=antithetic) -> float:
            z.copy_(keep)  # (the sums consume the noise; the copy is not timed)
            synchronize(device)
            began = time.perf_counter()
            dist.noise_sums_of(z, w, antithetic)
            synchronize(device)
            return time.perf_counter() - began

        times = interleaved({"recomputed": recomputed, "kept": kept}, repeats)
        print(f"{'mirrored' if antithetic else 'plain':>10} {times['recomputed']:>11.4f} "
              f"{times['kept']:>11.4f} {times['recomputed'] / times['kept']:>8.2f}x")
        del x, z, keep


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dim", type=int, default=100_000)
    parser.add_argument("--popsize", type=int, default=1000)
    parser.add_argument("--algorithms", nargs="+", default=["snes", "pgpe", "cem", "openai-es"],
                        choices=ALGORITHMS)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sums", action="store_true",
                        help="also time tell's noise sums: recomputed vs kept noise")
    args = parser.parse_args(argv)
    dev = args.device
    print(machine(dev))
    matrix = args.popsize * args.dim * BYTES
    bandwidth = copy_bandwidth(dev, min(max(matrix, 2**26), 2**30))
    need = minimal_bytes(args.dim, args.popsize)
    print(f"dim {args.dim}, popsize {args.popsize}, float32; medians of {args.repeats} "
          f"interleaved rounds of {args.generations} generations")
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s (device-to-device, read + write; H200 "
          f"about 4300); minimal bytes per generation (2 n d + 6 d) * 4 = {need / 1e9:.3f} GB")
    print(f"{'algorithm':>10} {'evotorch gen/s':>15} {'ours gen/s':>11} {'ratio':>7} "
          f"{'bw evotorch':>12} {'bw ours':>8}  target >= 2x on a GPU at dim 1e6")
    for name in args.algorithms:
        if name == "xnes" and args.dim > 2000:
            print(f"{name:>10}  skipped: full covariance, d^2 = {args.dim**2:.1e} numbers")
            continue
        steps = {"evotorch": evotorch_step(name, args.dim, args.popsize, dev),
                 "ours": our_step(name, args.dim, args.popsize, dev)}
        for step in steps.values():  # warm up allocations
            step()
        synchronize(dev)

        def timed(step: Callable[[], None]) -> float:
            began = time.perf_counter()
            for _ in range(args.generations):
                step()
            synchronize(dev)
            return (time.perf_counter() - began) / args.generations

        times = interleaved({k: (lambda s=s: timed(s)) for k, s in steps.items()}, args.repeats)
        ratio = times["evotorch"] / times["ours"]
        fraction = {k: need / t / bandwidth for k, t in times.items()}
        print(f"{name:>10} {1 / times['evotorch']:>15.2f} {1 / times['ours']:>11.2f} "
              f"{ratio:>7.3f} {fraction['evotorch']:>12.1%} {fraction['ours']:>8.1%}")
        del steps
    if args.sums:
        table_sums(args.dim, args.popsize, dev, max(args.repeats, 5))


if __name__ == "__main__":
    main()
