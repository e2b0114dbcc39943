"""What strict MKL reproducibility costs: matrix products and a training step with
``MKL_CBWR=AUTO,STRICT`` (the default ``import nondiff`` sets) against MKL's default.

MKL (the BLAS of torch's x86 builds) picks kernels by memory alignment, so a tensor
unpickled in a worker or loaded from a checkpoint can give a product that differs in
the last bit from the same product in the parent: ``fit_parallel``'s sync mode and
bit-for-bit resumes then drift. Strict conditional numerical reproducibility removes
that. ``MKL_CBWR`` is read once per process, so each setting runs in its own
subprocess; the two alternate for ``--rounds`` rounds and the median is printed with
the ratio and the machine.

    python -m nondiff.benchmarks.mkl_reproducibility [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

WORKLOADS = {  # name: (rows, inner, cols) of a float32 product, or an MLP step
    "matmul 256x1024 @ 1024x1024": (256, 1024, 1024),
    "matmul 64x128 @ 128x128": (64, 128, 128),
    "mlp step 6 x 1024, batch 256": None,
}

_CHILD = r"""
import json, sys, time
import torch
from torch import nn
torch.set_num_threads(int(sys.argv[1]))
torch.manual_seed(0)
out = {}
def timed(step, calls):
    for _ in range(3):
        step()
    began = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - began) / calls
for name, shape in json.loads(sys.argv[2]).items():
    if shape is None:
        model = nn.Sequential(*[m for _ in range(6) for m in (nn.LazyLinear(1024), nn.ReLU())],
                              nn.LazyLinear(10))
        x, y = torch.randn(256, 40), torch.randint(0, 10, (256,))
        model(x)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        def step():
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        out[name] = timed(step, 20)
    else:
        a, b = torch.randn(shape[0], shape[1]), torch.randn(shape[1], shape[2])
        out[name] = timed(lambda: a @ b, 200)
print(json.dumps(out))
"""


def _measure(strict: bool, threads: int) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("MKL_CBWR", None)
    if strict:
        env["MKL_CBWR"] = "AUTO,STRICT"
    done = subprocess.run([sys.executable, "-c", _CHILD, str(threads), json.dumps(WORKLOADS)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    samples: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for strict in (False, True):
            samples[strict].append(_measure(strict, args.threads))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.threads} torch thread(s), {args.rounds} interleaved rounds (median)")
    print(f"{'workload':<32}{'MKL default':>14}{'AUTO,STRICT':>14}{'strict/default':>16}")
    for name in WORKLOADS:
        default = statistics.median(s[name] for s in samples[False])
        strict = statistics.median(s[name] for s in samples[True])
        print(f"{name:<32}{default * 1e3:>11.3f} ms{strict * 1e3:>11.3f} ms"
              f"{strict / default:>15.2f}x")


if __name__ == "__main__":
    main()
