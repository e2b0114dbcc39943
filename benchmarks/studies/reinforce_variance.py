"""Variance of REINFORCE gradient estimates: RLOO vs moving average vs no baseline.

For three small problems whose exact gradient of E[loss] is known by enumeration
(a 3 x 4 categorical with a loss table, a 10-bit Bernoulli with a shifted OneMax
loss, a Plackett-Luce over 5 items with the number of inversions), many
independent batches are drawn from one fixed distribution; each baseline's
estimate is compared with the exact gradient (bias, in units of its standard
error) and its total variance is reported relative to no baseline. The moving
average is the one REINFORCE keeps: an exponential average (decay 0.9) of the mean
loss of earlier batches.

    python -m nondiff.benchmarks.studies.reinforce_variance [--batches 4000] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Sequence

import torch
from nondiff.optim.distributions import Bernoulli, Categorical, PlackettLuce, SearchDistribution
from nondiff.optim.reinforce import score_function_gradient

Case = tuple[str, SearchDistribution, Callable[[torch.Tensor], torch.Tensor], torch.Tensor]


def _exact_gradient(dist: SearchDistribution, loss: Callable, support: torch.Tensor):
    """d E[loss] / d params by enumerating ``support`` and autograd."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in dist.parameters().items()}
    view = type(dist)(*params.values())
    expected = (view.log_prob(support).exp() * loss(support)).sum()
    return {k: g for k, g in zip(params, torch.autograd.grad(expected, list(params.values())),
                                  strict=True)}


def cases() -> list[Case]:
    gen = torch.Generator().manual_seed(0)
    table = torch.rand(3, 4, generator=gen, dtype=torch.float64) + 2.0  # losses in [2, 3]
    cat = Categorical(torch.randn(3, 4, generator=gen, dtype=torch.float64))
    grid = torch.tensor(list(itertools.product(range(4), repeat=3)), dtype=torch.float64)

    def table_loss(x: torch.Tensor) -> torch.Tensor:
        return table[torch.arange(3), x.long()].sum(1)

    bern = Bernoulli(torch.randn(10, generator=gen, dtype=torch.float64))
    bits = torch.tensor(list(itertools.product((0, 1), repeat=10)), dtype=torch.float64)

    def onemax_loss(x: torch.Tensor) -> torch.Tensor:
        return 20.0 - x.sum(1)

    pl = PlackettLuce(torch.randn(5, generator=gen, dtype=torch.float64))
    perms = torch.tensor(list(itertools.permutations(range(5))), dtype=torch.float64)

    def inversions(x: torch.Tensor) -> torch.Tensor:
        return (x[:, :, None] > x[:, None, :]).triu(1).sum((1, 2)).to(x.dtype)

    return [("categorical 3x4 table", cat, table_loss, grid),
            ("bernoulli 10, onemax", bern, onemax_loss, bits),
            ("plackett-luce 5, inversions", pl, inversions, perms)]


def estimates(dist: SearchDistribution, loss: Callable, baseline: str, batches: int,
              batch_size: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    rows, average, steps = [], 0.0, 0
    for _ in range(batches):
        x = dist.sample(batch_size, gen)
        f = loss(x)
        b: str | float = baseline
        if baseline == "moving-average":
            b = "none" if steps == 0 else average / (1 - 0.9**steps)
            average, steps = 0.9 * average + 0.1 * float(f.mean()), steps + 1
        grads = score_function_gradient(dist, x, f, b)
        rows.append(torch.cat([g.reshape(-1) for g in grads.values()]))
    return torch.stack(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    print(f"{args.batches} batches of {args.batch_size}; variance = trace of the covariance "
          "of the estimates; bias = max |mean - exact| / standard error")
    print(f"{'problem':<30}{'baseline':<16}{'variance':>12}{'ratio to none':>15}{'bias (SE)':>11}")
    for name, dist, loss, support in cases():
        exact = torch.cat([g.reshape(-1) for g in _exact_gradient(dist, loss, support).values()])
        variance = {}
        for baseline in ("none", "moving-average", "rloo"):
            est = estimates(dist, loss, baseline, args.batches, args.batch_size, seed=1)
            variance[baseline] = float(est.var(0).sum())
            se = est.std(0) / args.batches**0.5
            bias = float(((est.mean(0) - exact).abs() / se.clamp_min(1e-12)).max())
            print(f"{name:<30}{baseline:<16}{variance[baseline]:>12.4g}"
                  f"{variance[baseline] / variance['none']:>15.4f}{bias:>11.2f}")
        print()


if __name__ == "__main__":
    main()
