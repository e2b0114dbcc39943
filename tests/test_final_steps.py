"""The final phase of fit (``final_steps``): the last steps train the recommended
structure alone, ask nothing of the structure optimizer and cost one forward pass of the
batch each; bad values are refused before anything changes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from nondiff.hybrid.structure import Choice, Gates
from nondiff.hybrid.trainer import HybridTrainer
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates(4)
        self.hidden = nn.Linear(4, 8)
        self.act = Choice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "identity": nn.Identity()})
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.act(self.hidden(self.gates(x))))


def data(device, batches: int = 5, rows: int = 16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batches * rows, 4, generator=g)
    y = (x[:, 0] * x[:, 1] > 0).long()
    return [(x[i:i + rows].to(device), y[i:i + rows].to(device))
            for i in range(0, len(y), rows)]


@pytest.mark.parametrize("search_compute,final", [(None, 4), ("shared", 0.2), (1.0, 3)])
def test_the_last_steps_train_the_recommended_structure_alone(device, search_compute,
                                                              final) -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), "ga", seed=0, search_compute=search_compute,
                            final_steps=final, structure_options={"popsize": 4})
    seen = []

    def record(metrics, trainer):
        seen.append((trainer.structure_optimizer.counters["iterations"],
                     trainer.forward_examples, trainer.structure(current=True),
                     trainer.recommended()))

    trainer.callbacks.append(record)
    history = trainer.fit(data(device), epochs=4)
    steps = round(final * 20) if isinstance(final, float) else final
    assert [m.get("final", 0.0) for m in history] == [0.0] * (20 - steps) + [1.0] * steps
    last = seen[-steps - 1:]
    assert len({iterations for iterations, *_ in last}) == 1  # no tell in the final phase
    assert [b - a for (_, a, *_), (_, b, *_) in itertools.pairwise(last)] == [16] * steps
    for _, _, current, recommended in last[1:]:
        assert current["act"] == recommended["act"]
        assert (current["gates"] == recommended["gates"]).all()
    assert all(math.isnan(m["fitness_best"]) for m in history[-steps:])


@pytest.mark.parametrize("value", [-1, 1.0, 1.5, math.nan, True, "0.1"])
def test_a_bad_final_steps_names_the_argument_value_and_fix(value) -> None:
    torch.manual_seed(0)
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"final_steps must be .* got .*; e\.g\. 0\.1"):
        HybridTrainer(model, "ga", final_steps=value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
