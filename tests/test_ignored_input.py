"""A found structure under which the model ignores its input is detected and named
(hybrid/ignored_input.py), on every device present."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from nondiff.hybrid.ignored_input import LEAST_ROWS, ignored_input_message, ignores_input
from nondiff.hybrid.structure import Choice, Gates, set_structure
from nondiff.hybrid.trainer import HybridTrainer
from torch import nn


class TwoHeads(nn.Module):
    """Returns a tuple: logits and a second tensor, both from the gated input."""

    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates(3)
        self.a, self.b = nn.Linear(3, 2), nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.gates(x)
        return self.a(h), self.b(h)


def test_ignores_input_tells_a_cut_off_model_from_one_that_reads_its_input(device):
    torch.manual_seed(0)
    model = nn.Sequential(Gates(3), nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model.to(device).train()
    x = torch.randn(16, 3, device=device)
    assert not ignores_input(model, x)
    set_structure(model, {"0": [False, True, False]})
    assert not ignores_input(model, x)  # one input still read
    set_structure(model, {"0": [False, False, False]})
    assert ignores_input(model, x)
    assert model.training  # the mode is put back
    tuple_model = TwoHeads().to(device)
    assert not ignores_input(tuple_model, x)
    set_structure(tuple_model, {"gates": [False] * 3})
    assert ignores_input(tuple_model, x)


def test_ignores_input_says_false_where_it_cannot_tell_and_refuses_bad_rows():
    model = nn.Sequential(Gates(3), nn.Linear(3, 2))
    set_structure(model, {"0": [False] * 3})
    assert not ignores_input(model, torch.randn(LEAST_ROWS - 1, 3))  # too few rows
    assert not ignores_input(model, torch.ones(16, 3))  # rows all alike
    assert not ignores_input(model, [torch.randn(16, 3)])  # not a tensor
    assert ignores_input(model, torch.randn(LEAST_ROWS, 3))
    for rows in (1, LEAST_ROWS - 1, -1, 8.0, True):
        with pytest.raises(ValueError, match=f"rows must be an int >= {LEAST_ROWS}.*{rows!r}"):
            ignores_input(model, torch.randn(16, 3), rows=rows)


def test_small_but_distinct_outputs_are_not_the_same():
    """Rounding, not closeness: outputs of 1e-7 that differ, or a confident softmax's
    probabilities of 1e-18 and 1e-35, still tell the rows apart."""
    x = torch.randn(16, 1)
    tiny = nn.Linear(1, 1)
    with torch.no_grad():
        tiny.weight.fill_(1e-7)
        tiny.bias.zero_()
    assert not ignores_input(tiny, x)
    confident = nn.Sequential(nn.Linear(1, 2), nn.Softmax(dim=1))
    with torch.no_grad():
        confident[0].weight.copy_(torch.tensor([[0.0], [-80.0]]))
        confident[0].bias.copy_(torch.tensor([0.0, -10.0]))
    assert not ignores_input(confident, x.abs() + 0.5)


def test_the_input_follows_the_model_and_eval_mode_counts(device):
    """x on the CPU, the model on the device; a dropout that would scatter a constant
    output in training mode is off, as the check runs in eval mode."""
    model = nn.Sequential(Gates(3), nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)).to(device)
    set_structure(model, {"0": [False] * 3})
    model.train()
    assert ignores_input(model, torch.randn(16, 3))  # the CPU rows moved to the model
    assert model.training


def test_a_choice_that_reads_no_input_is_caught_too():
    zeroed = nn.Linear(4, 4)
    nn.init.zeros_(zeroed.weight)
    nn.init.zeros_(zeroed.bias)
    model = nn.Sequential(nn.Linear(3, 4), Choice(nn.Tanh(), zeroed), nn.Linear(4, 2))
    x = torch.randn(8, 3)
    assert not ignores_input(model, x)
    set_structure(model, {"1": 1})  # the branch that multiplies by zero
    assert ignores_input(model, x)


def _product_task(device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g).to(device)
    y = (x[:, 0] * x[:, 1] > 0).long()
    return [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]


def test_fit_warns_when_the_cost_closes_every_gate(device):
    torch.manual_seed(0)
    model = nn.Sequential(Gates(4), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).to(device)
    trainer = HybridTrainer(model, "ga", seed=0, cost_start=0.3, cost_weight=10.0,
                            structure_cost=lambda s: float(np.sum(s["0"])))  # not withheld
    with pytest.warns(UserWarning, match="same output.*smaller cost_weight"):
        trainer.fit(_product_task(device), epochs=6)
    assert not trainer.structure()["0"].any()


def test_fit_does_not_warn_when_the_structure_reads_the_input(device):
    """Also not when the epoch ends with a short batch of two equal rows: the check
    runs on the latest of the largest batches."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), Choice(nn.ReLU(), nn.Tanh()),
                          nn.Linear(8, 2)).to(device)
    trainer = HybridTrainer(model, "ga", seed=0)
    tail = torch.ones(2, 4, device=device)
    batches = [*_product_task(device), (tail, torch.zeros(2, dtype=torch.long, device=device))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(batches, epochs=3)


def test_the_message_names_the_structure_and_what_to_try():
    message = ignored_input_message({"gates": np.zeros(20, bool), "act": "relu"}, cost=False)
    assert "gates=none open, act='relu'" in message and "more epochs" in message
    assert "gates=open [2]" in ignored_input_message({"gates": [False, False, True]}, False)
    many = {f"choice{i}": "identity" for i in range(40)}
    assert "choice39" not in ignored_input_message(many, cost=False)  # cut short
    assert "cost_weight" in ignored_input_message({"g": [False]}, cost=True)
