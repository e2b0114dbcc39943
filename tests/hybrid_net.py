"""A small structured model and data shared by the trainer's schedule tests (search
compute, shared fitness, final steps): 4 gated inputs of which 0 and 1 matter (their
product's sign is the class, so a linear model cannot solve it) and a Choice of
activation that includes the identity."""

from __future__ import annotations

import torch
from nondiff.hybrid.structure import Choice, Gates
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates(4)
        self.hidden = nn.Linear(4, 8)
        self.act = Choice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "identity": nn.Identity()})
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.act(self.hidden(self.gates(x))))


def data(device, batches: int = 6, rows: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``batches`` batches of ``rows`` rows on ``device``, the same for every call."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batches * rows, 4, generator=g)
    y = (x[:, 0] * x[:, 1] > 0).long()
    return [(x[i:i + rows].to(device), y[i:i + rows].to(device))
            for i in range(0, len(y), rows)]


def straight_and_resumed(make, data, epochs: int, stop):
    """``(straight, first, resumed)``: a trainer from ``make()`` fit ``epochs`` without a
    break; one stopped by the callback ``stop(metrics, trainer)``; and a fresh one (under
    another global torch seed) loaded from the stopped one's state dict, after a round
    trip through ``torch.save``, then fit to the end. Exact resume means ``resumed`` ends
    with ``straight``'s state."""
    from conftest import roundtrip

    straight = make()
    straight.fit(data, epochs=epochs)
    first = make()
    first.callbacks.append(stop)
    first.fit(data, epochs=epochs)
    state = roundtrip(first.state_dict())
    torch.manual_seed(123)
    resumed = make()
    resumed.load_state_dict(state)
    resumed.fit(data, epochs=epochs)
    return straight, first, resumed
