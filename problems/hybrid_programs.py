"""Visual program induction: read digit images, run an unknown program, match the output.

A sequence of :data:`ITEMS` digit images (scikit-learn's digits) passes through one
perception MLP to digits; a two-token :class:`~nondiff.hybrid.structure.Program` over the list
DSL :data:`DSL` (sort, reverse, cumulative sum, running max, add one, filter even)
maps them to an output list. Only the output lists are labeled: neither the digits
nor the program are known. :class:`~nondiff.hybrid.trainer.HybridTrainer` searches the program
(REINFORCE over the 36 token pairs by default) on the fitness

    F(program) = 1 - mean_positions 1[program(argmax digits) = output]           # Eq. (1)

with the shared perception weights, while the perception trains under a sampled
program by the RLOO score-function gradient of the same per-position match on digit
sequences sampled from its softmaxes (:func:`nondiff.hybrid.estimators.score_function_surrogate`).
A program is *recovered* when it computes the true program's output on every held-out
sequence of true digits (equivalent programs count).

Sources: the neuro-symbolic setting of Andreas et al., "Neural module networks",
CVPR 2016, and Gaunt et al., "Differentiable programs with neural libraries", ICML
2017 (perception learned through a program from end-to-end labels).

Example:
    >>> import torch
    >>> from nondiff.problems.hybrid_programs import DSL, run_program
    >>> run_program(("sort", "cumsum"), torch.tensor([[3, 1, 2, 0]])).tolist()
    [[0, 1, 3, 6]]
    >>> run_program(("filter-even", "reverse"), torch.tensor([[3, 4, 2, 7]])).tolist()
    [[-1, -1, 2, 4]]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from nondiff.hybrid.estimators import sample_categorical, score_function_surrogate
from nondiff.hybrid.structure import Program
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.problems.learning import digits
from torch import nn

__all__ = ["DSL", "ITEMS", "TARGETS", "ProgramModel", "run_program", "train_programs"]

ITEMS = 4


def _filter_even(x: torch.Tensor) -> torch.Tensor:
    """Keep the even entries in order, then pad with -1."""
    even = (x % 2 == 0) & (x >= 0)
    order = torch.sort((~even).long(), dim=1, stable=True).indices
    kept = x.gather(1, order)
    return torch.where(even.gather(1, order), kept, torch.full_like(kept, -1))


DSL = {
    "sort": lambda x: x.sort(dim=1).values,
    "reverse": lambda x: x.flip(1),
    "cumsum": lambda x: x.cumsum(1),
    "max-scan": lambda x: x.cummax(1).values,
    "add1": lambda x: x + 1,
    "filter-even": _filter_even,
}
"""The list DSL: each token maps ``(batch, items)`` int tensors to the same shape."""

TARGETS = (("sort", "reverse"), ("cumsum", "reverse"), ("add1", "sort"),
           ("reverse", "max-scan"))
"""The true programs of the benchmark (the last loses information: the running max of a
list hides most of its digits, so the perception gets little signal)."""


def run_program(program: Sequence[str], x: torch.Tensor) -> torch.Tensor:
    """Apply the tokens of ``program`` to ``x`` left to right."""
    for token in program:
        x = DSL[token](x)
    return x


class ProgramModel(nn.Module):
    """Perception MLP per image, then a searched :class:`Program` on the argmax digits.

    ``forward(x)`` with ``x`` of shape ``(batch, items, 64)`` returns
    ``(logits (batch, items, 10), output list (batch, items))``.
    """

    def __init__(self, hidden: int = 128, length: int = 2) -> None:
        super().__init__()
        self.perception = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        self.program = Program(DSL, length)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.perception(x)
        return logits, self.program(logits.argmax(-1))


def mismatch(output: tuple[torch.Tensor, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Eq. (1): the fraction of output positions that differ."""
    return (output[1] != y).float().mean()


def make_loss(model: ProgramModel, samples: int, generator: torch.Generator):
    """The perception's surrogate loss under the model's current program."""

    def loss(output: tuple[torch.Tensor, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        logits = output[0].reshape(-1, 10)
        draws = sample_categorical(logits, samples, generator)  # (n, batch * items)
        batch = y.shape[0]
        lists = draws.reshape(samples * batch, -1)
        program = model.program.value
        outputs = model.program.run(program, lists).reshape(samples, batch, -1)
        errors = (outputs != y[None]).float().mean(2)  # (n, batch)
        per_item = errors.repeat_interleave(ITEMS, dim=1)
        return score_function_surrogate(logits, draws, per_item) * ITEMS
    return loss


class Sequences:
    """Digit-image sequences labeled with the target program's outputs."""

    def __init__(self, target: Sequence[str], seed: int = 0, repeats: int = 2) -> None:
        self.data, self.target = digits(seed=seed), tuple(target)
        self.seed, self.repeats = seed, repeats
        n = len(self.data.y_test) // ITEMS * ITEMS
        self.test_digits = self.data.y_test[:n].reshape(-1, ITEMS)
        self.test_x = self.data.x_test[:n].reshape(-1, ITEMS, 64)
        self.test_y = run_program(self.target, self.test_digits)

    def batches(self, batch_size: int, seed: int = 0, epoch: int = 0):
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        n = len(self.data.y_train) // ITEMS * ITEMS
        index = torch.cat([torch.randperm(len(self.data.y_train), generator=g)[:n]
                           for _ in range(self.repeats)]).reshape(-1, ITEMS)
        for start in range(0, len(index), batch_size):
            rows = index[start:start + batch_size]
            yield self.data.x_train[rows], run_program(self.target, self.data.y_train[rows])

    def num_batches(self, batch_size: int) -> int:
        return -(-(len(self.data.y_train) // ITEMS * self.repeats) // batch_size)


def train_programs(target: Sequence[str], seed: int = 0, epochs: int = 30,
                   optimizer: str = "reinforce", batch_size: int = 32, samples: int = 8,
                   options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Search the program and train the perception from outputs only; evaluate both."""
    data = Sequences(target, seed)
    torch.manual_seed(seed)
    model = ProgramModel()
    g = torch.Generator().manual_seed(seed + 1)
    trainer = HybridTrainer(model, optimizer, lambda p: torch.optim.Adam(p, lr=3e-3),
                            loss=make_loss(model, samples, g), fitness=mismatch,
                            structure_options=options, seed=seed)
    start = time.perf_counter()
    trainer.fit(data, epochs=epochs, batch_size=batch_size, seed=seed)
    found = tuple(model.program.value)
    with torch.no_grad():
        logits, out = model(data.test_x)
    same = bool((run_program(found, data.test_digits) == data.test_y).all())
    return {"seed": seed, "target": tuple(target), "found": found, "recovered": same,
            "output_accuracy": float((out == data.test_y).all(1).float().mean()),
            "digit_accuracy": float((logits.argmax(-1) == data.test_digits).float().mean()),
            "seconds": time.perf_counter() - start}


def run_benchmark(seeds: int, quick: bool = False) -> list[dict[str, Any]]:
    """The program-induction part of ``nondiff.benchmarks.hybrid_tasks``: every target x seed."""
    epochs = 5 if quick else 10
    rows = []
    for target in TARGETS:
        for seed in range(seeds):
            rows.append(train_programs(target, seed, epochs))
            row = rows[-1]
            print(f"  programs {'-'.join(target):18s} seed {seed} found {row['found']} "
                  f"recovered {row['recovered']} output acc {row['output_accuracy']:.3f}",
                  flush=True)
    print(f"\nVisual program induction ({seeds} seeds, {epochs} epochs, REINFORCE over "
          f"{len(DSL)}^2 programs; output acc: whole list exact, held-out sequences)")
    print(f"{'target':20s} {'recovered':>10s} {'output acc %':>14s} {'digit acc %':>12s} "
          f"{'seconds':>8s}")
    for target in [*TARGETS, None]:
        mine = [r for r in rows if target is None or r["target"] == tuple(target)]
        acc = np.array([r["output_accuracy"] for r in mine])
        spread = f" ± {100 * acc.std():4.1f}" if len(acc) > 1 else ""
        name = "all" if target is None else "-".join(target)
        print(f"{name:20s} {sum(r['recovered'] for r in mine):>5d} / {len(mine):<3d} "
              f"{100 * acc.mean():6.1f}{spread:>7s} "
              f"{100 * np.mean([r['digit_accuracy'] for r in mine]):12.1f} "
              f"{np.mean([r['seconds'] for r in mine]):8.1f}")
    return rows
