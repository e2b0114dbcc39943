"""Structure declarations: collection on nested modules, set/get, round trips, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nondiff.hybrid.structure import (
    Choice,
    Gates,
    IntParam,
    Program,
    RealParam,
    StructureBatchError,
    batched_structures,
    get_structure,
    set_structure,
    structure_space,
)
from nondiff.optim.spaces import Binary, Categorical, Integer, Real
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DSL = {"rev": lambda x: x.flip(1), "sort": lambda x: x.sort(dim=1).values,
       "inc": lambda x: x + 1}


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.op = Choice({"relu": nn.Sequential(nn.Linear(4, 4), nn.ReLU()),
                          "tanh": nn.Sequential(nn.Linear(4, 4), nn.Tanh()),
                          "skip": nn.Identity()})
        self.gates = Gates(4)

    def forward(self, x):
        return self.gates(self.op(x))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.act = Choice(torch.relu, torch.tanh)
        self.depth = IntParam(1, 3)
        self.lr = RealParam(1e-4, 1e-1, log=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(self.act(x))


def test_collects_nested_declarations_by_path() -> None:
    space = structure_space(Net())
    assert list(space.spaces) == ["blocks.0.op", "blocks.0.gates", "blocks.1.op",
                                  "blocks.1.gates", "act", "depth", "lr"]
    assert isinstance(space["blocks.1.op"], Categorical)
    assert space["blocks.1.op"].choices == ["relu", "tanh", "skip"]
    assert isinstance(space["blocks.0.gates"], Binary) and space["blocks.0.gates"].size == 4
    assert isinstance(space["depth"], Integer) and isinstance(space["lr"], Real)
    assert space.size == 1 + 4 + 1 + 4 + 1 + 1 + 1


def test_parameters_are_weights_only() -> None:
    net = Net()
    names = [name for name, _ in net.named_parameters()]
    # every option's weights count (2 linears per block), nothing of the structure
    assert len(names) == 2 * 2 * 2 + 2
    assert all("weight" in n or "bias" in n for n in names)


def test_set_and_get_structure_round_trip() -> None:
    net = Net()
    value = {"blocks.0.op": "skip", "blocks.0.gates": [1, 0, 0, 1], "blocks.1.op": "tanh",
             "blocks.1.gates": [0, 1, 1, 1], "act": 1, "depth": 3, "lr": 0.01}
    set_structure(net, value)
    got = get_structure(net)
    assert got["blocks.0.op"] == "skip" and got["act"] == 1 and got["depth"] == 3
    assert got["blocks.0.gates"].tolist() == [True, False, False, True]
    assert got["lr"] == pytest.approx(0.01)
    space = structure_space(net)
    assert np.array_equal(space.encode(got), space.encode(value))
    assert net.blocks[1].op.chosen is net.blocks[1].op.options[1]


def test_structure_travels_in_state_dict_and_weights_are_untouched() -> None:
    torch.manual_seed(0)
    net = Net()
    weights = {k: v.clone() for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)}
    space = structure_space(net)
    value = space.decode(space.sample(np.random.default_rng(1), 1)[0])
    set_structure(net, value)
    after = {k: v for k, v in net.state_dict().items() if isinstance(v, torch.Tensor)}
    assert weights.keys() == after.keys()
    assert all(torch.equal(weights[k], after[k]) for k in weights)
    other = Net()
    other.load_state_dict(net.state_dict())
    assert np.array_equal(space.encode(get_structure(other)), space.encode(value))


def test_forward_follows_the_structure() -> None:
    torch.manual_seed(0)
    net = Block()
    x = torch.randn(5, 4)
    set_structure(net, {"op": "skip", "gates": [1, 1, 0, 0]})
    assert torch.equal(net(x), x * torch.tensor([1.0, 1, 0, 0]))
    set_structure(net, {"op": "relu", "gates": [1, 1, 1, 1]})
    assert torch.equal(net(x), net.op.options[0](x))


def test_bad_values_raise_and_change_nothing() -> None:
    net = Net()
    before = structure_space(net).encode(get_structure(net))
    with pytest.raises(ValueError, match="misses"):
        set_structure(net, {"act": 0})
    bad = {**get_structure(net), "blocks.0.op": "conv"}
    with pytest.raises(ValueError, match="conv"):
        set_structure(net, bad)
    assert np.array_equal(structure_space(net).encode(get_structure(net)), before)
    with pytest.raises(ValueError, match="declares no structure"):
        structure_space(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="at least one option"):
        Choice()
    with pytest.raises(ValueError, match="length"):
        Program(DSL, 0)


def test_program_runs_its_tokens_in_order() -> None:
    prog = Program(DSL, 2, default=["sort", "rev"])
    x = torch.tensor([[3, 1, 2]])
    assert prog(x).tolist() == [[3, 2, 1]]
    prog.value = ["inc", "inc"]
    assert prog(x).tolist() == [[5, 3, 4]]
    assert structure_space(prog)["root"].size == 2


def test_batched_forward_equals_one_pass_per_structure() -> None:
    torch.manual_seed(0)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()
            self.prog = Program(DSL, 2)

        def forward(self, x):
            return self.prog(self.block(x))

    model = Model()
    space = structure_space(model)
    values = space.decode_batch(space.sample(np.random.default_rng(0), 6))
    x = torch.randn(7, 4)
    single = []
    for value in values:
        set_structure(model, value)
        single.append(model(x))
    with batched_structures(model, values, 7):
        batched = model(x.repeat(6, 1))
    assert torch.allclose(batched, torch.cat(single), atol=1e-6)


def test_reading_a_value_inside_a_batch_raises() -> None:
    net = Net()
    values = [get_structure(net)] * 2
    with batched_structures(net, values, 3), pytest.raises(StructureBatchError):
        _ = net.depth.value
    assert net.depth.value == 1  # and outside it works again
