"""Visual program induction: read digit images, run an unknown program, match the output.

A sequence of :data:`ITEMS` digit images (scikit-learn's digits) passes through one
perception MLP to digits; a two-token :class:`~nondiff.hybrid.structure.Program` over the list
DSL :data:`DSL` (sort, reverse, cumulative sum, running max, add one, filter even)
maps them to an output list (:class:`ProgramModel`). Only the output lists are
labeled (:class:`Sequences`): neither the digits nor the program are known. The
structure fitness of a program is

    F(program) = 1 - mean_positions 1[program(argmax digits) = output]           # Eq. (1)

(:func:`mismatch`). A program is *recovered* when it computes the true program's output
on every held-out sequence of true digits (equivalent programs count). Searching the
program while the perception trains is the experiment of ``python -m
nondiff.benchmarks.hybrid_tasks programs`` (:mod:`nondiff.benchmarks.hybrid_tasks.programs`).

Sources: the neuro-symbolic setting of Andreas et al., "Neural module networks",
CVPR 2016, and Gaunt et al., "Differentiable programs with neural libraries", ICML
2017 (perception learned through a program from end-to-end labels).

Example:
    >>> import torch
    >>> from nondiff.problems.hybrid.programs import DSL, run_program
    >>> run_program(("sort", "cumsum"), torch.tensor([[3, 1, 2, 0]])).tolist()
    [[0, 1, 3, 6]]
    >>> run_program(("filter-even", "reverse"), torch.tensor([[3, 4, 2, 7]])).tolist()
    [[-1, -1, 2, 4]]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from nondiff.hybrid.structure import Program
from nondiff.problems.learning import digits
from torch import nn

__all__ = ["DSL", "ITEMS", "TARGETS", "ProgramModel", "Sequences", "mismatch", "run_program"]

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


class Sequences:
    """Digit-image sequences labeled with the target program's outputs.

    ``device``: where the images live (put them on the model's device); the order is
    drawn on the CPU, the same on every device.
    """

    def __init__(self, target: Sequence[str], seed: int = 0, repeats: int = 2, *,
                 device: torch.device | str = "cpu") -> None:
        self.data, self.target = digits(seed=seed, device=device), tuple(target)
        self.seed, self.repeats = seed, repeats
        n = len(self.data.y_test) // ITEMS * ITEMS
        self.test_digits = self.data.y_test[:n].reshape(-1, ITEMS)
        self.test_x = self.data.x_test[:n].reshape(-1, ITEMS, 64)
        self.test_y = run_program(self.target, self.test_digits)

    def batches(self, batch_size: int, seed: int = 0, epoch: int = 0
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        n = len(self.data.y_train) // ITEMS * ITEMS
        index = torch.cat([torch.randperm(len(self.data.y_train), generator=g)[:n]
                           for _ in range(self.repeats)]).reshape(-1, ITEMS)
        index = index.to(self.data.device)
        for start in range(0, len(index), batch_size):
            rows = index[start:start + batch_size]
            yield self.data.x_train[rows], run_program(self.target, self.data.y_train[rows])

    def num_batches(self, batch_size: int) -> int:
        return -(-(len(self.data.y_train) // ITEMS * self.repeats) // batch_size)
