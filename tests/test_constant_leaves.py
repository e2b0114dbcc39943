"""One-value leaves are constants: zero coordinates, decoded to their value, invisible to
optimizers; a space of nothing but constants is refused (issue 16.8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nondiff.hybrid.structure import (
    Choice,
    Gates,
    IntParam,
    Program,
    batched_structures,
    get_structure,
    set_structure,
    structure_space,
)
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.optim import minimize, registry
from nondiff.optim.spaces import (
    Binary,
    Categorical,
    Integer,
    Permutation,
    Product,
    Real,
    leaf_kinds,
)
from torch import nn

CONSTANTS = [
    (Integer(3, 3), 3),
    (Integer(-1, -1, size=3), np.array([-1, -1, -1])),
    (Categorical(["x"]), "x"),
    (Categorical([("a", 1)], size=2), [("a", 1), ("a", 1)]),
    (Permutation(1), np.array([0])),
    (Permutation(0), np.array([], dtype=np.int64)),
    (Binary(0), np.array([], dtype=bool)),
]


def _same(a, b) -> bool:
    if isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and a.dtype.kind == b.dtype.kind \
            and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize(("space", "value"), CONSTANTS, ids=repr)
def test_a_one_value_leaf_encodes_to_nothing_and_decodes_to_its_value(space, value):
    assert space.size == 0 and space.is_constant
    lower, upper = space.bounds()
    assert lower.shape == upper.shape == (0,)
    assert space.encode(value).shape == (0,)
    assert _same(space.decode(np.empty(0)), value)
    assert _same(space.decode(space.encode(value)), value)
    assert space.sample(np.random.default_rng(0), 4).shape == (4, 0)
    assert space.initial().shape == (0,)
    assert all(_same(v, value) for v in space.decode_batch(np.empty((3, 0))))
    assert list(space.leaves()) == [] and leaf_kinds(space) == set()
    assert [leaf for _, leaf, _ in space.leaves(constants=True)] == [space]
    with pytest.raises(ValueError, match="shape"):
        space.decode([0.0])  # the encoding has no coordinate to give


@pytest.mark.parametrize(("space", "other"), [
    (Integer(3, 3), 4), (Categorical(["x"]), "y"), (Permutation(1), [1]), (Binary(0), [1]),
    (Integer(3, 3, size=2), [3]),
], ids=repr)
def test_a_constant_refuses_any_other_value(space, other):
    with pytest.raises(ValueError):
        space.encode(other)
    assert not space.contains(other)


def test_a_product_skips_its_constant_leaves():
    space = Product(w=Real(-1, 1), c=Categorical(["x"]),
                    inner=Product(k=Integer(2, 2, size=2), m=Binary(3)))
    assert space.size == 4 and leaf_kinds(space) == {"real", "binary"}
    assert [(name, part) for name, _, part in space.leaves()] == [
        ("w", slice(0, 1)), ("inner.m", slice(1, 4))]
    assert [(name, part) for name, _, part in space.leaves(constants=True)] == [
        ("w", slice(0, 1)), ("c", slice(1, 1)), ("inner.k", slice(1, 1)),
        ("inner.m", slice(1, 4))]
    value = {"w": 0.25, "c": "x", "inner": {"k": [2, 2], "m": [True, False, True]}}
    encoded = space.encode(value)
    assert np.array_equal(encoded, [0.25, 1.0, 0.0, 1.0])
    decoded = space.decode(encoded)
    assert decoded["c"] == "x" and decoded["inner"]["k"].tolist() == [2, 2]
    assert space.sample(np.random.default_rng(0), 5).shape == (5, 4)
    lower, upper = space.bounds()
    assert np.array_equal(lower, [-1, 0, 0, 0]) and np.array_equal(upper, [1, 1, 1, 1])


# each registry optimizer gets the first space whose searched kinds it handles; every
# space carries constant leaves of several kinds beside the searched ones
_FIXED = {"c": Categorical(["x"]), "k": Integer(3, 3, size=2), "p": Permutation(1),
          "b": Binary(0)}
_SPACES = [
    ({"w": Real(-2.0, 2.0, size=2)}, lambda v: float(((v["w"] - 0.5) ** 2).sum()), 0.05),
    ({"m": Binary(6)}, lambda v: float((~v["m"]).sum()), 0.0),
    ({"op": Categorical(["a", "b", "c"]), "d": Integer(0, 5)},
     lambda v: float(v["op"] != "b") + abs(v["d"] - 4), 0.0),
    ({"perm": Permutation(5)},
     lambda v: float(np.abs(v["perm"] - np.arange(5)).sum()), 4.0),
]


def _problem(name: str):
    for searched, fn, tolerance in _SPACES:
        space = Product({**searched, **_FIXED})
        if leaf_kinds(space) <= registry.get(name).supported_spaces:
            return space, fn, tolerance
    return None


@pytest.mark.parametrize("name", registry.names())
def test_every_optimizer_searches_around_constant_leaves(name):
    problem = _problem(name)
    if problem is None:
        pytest.skip(f"{name} handles none of the test spaces")
    space, fn, tolerance = problem
    seen = []

    def objective(value):
        seen.append(value)
        return fn(value)

    res = minimize(objective, space, optimizer=name, budget=600, seed=0)
    assert res.f <= tolerance, (name, res.f)
    for value in [res.x, *seen]:
        assert value["c"] == "x" and value["k"].tolist() == [3, 3]
        assert value["p"].tolist() == [0] and value["b"].shape == (0,)


def test_the_searched_dimension_leaves_out_the_constants():
    opt = registry.create("cmaes", Product(w=Real(0, 1, size=3), c=Categorical(["x"])), seed=0)
    assert opt.dim == 3 and opt.ask().shape == (opt.popsize, 3)


@pytest.mark.parametrize("space", [
    Categorical(["x"]), Integer(3, 3), Product(k=Integer(2, 2), c=Categorical(["x"])),
], ids=repr)
def test_a_space_of_constants_only_is_refused_before_any_evaluation(space):
    def never(value):
        raise AssertionError("evaluated")

    with pytest.raises(ValueError, match=r"nothing to search.*constant.*space\.decode"):
        minimize(never, space, optimizer="cmaes", budget=100)
    with pytest.raises(ValueError, match="nothing to search"):
        registry.create("ga", space)


# ----- hybrid: constant declarations ------------------------------------------------
class ConstNet(nn.Module):
    """One searched Choice (only "tanh" passes the input on) beside constant declarations."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(2, 16)
        self.op = Choice({"zero": lambda h: 0 * h, "tanh": nn.Tanh()})
        self.fixed = Choice({"identity": nn.Identity()})
        self.repeat = IntParam(1, 1)  # a hyperparameter read outside forward
        self.prog = Program({"neg2": lambda h: -2 * h}, length=2)  # applied twice: x4
        self.gates = Gates(0, dim=0)  # gates nothing: runs on an empty tensor
        self.out = nn.Linear(16, 1)

    def forward(self, x):
        h = self.out(self.fixed(self.op(self.inp(x))))
        return 0.25 * self.prog(h) + self.gates(x.new_zeros(0)).sum()


def test_constant_declarations_take_no_coordinate():
    model = ConstNet()
    space = structure_space(model)
    assert space.size == 1 and leaf_kinds(space) == {"categorical"}
    assert get_structure(model)["fixed"] == "identity" and model.fixed.index == 0
    assert get_structure(model)["prog"] == ["neg2", "neg2"]
    set_structure(model, {**get_structure(model), "op": "tanh"})
    assert model.op.value == "tanh" and model.fixed.value == "identity"
    state = model.state_dict()
    clone = ConstNet()
    clone.load_state_dict(state)
    assert get_structure(clone)["op"] == "tanh" and clone.repeat.value == 1
    x = torch.randn(3, 2)
    values = [{**get_structure(model), "op": op} for op in ("zero", "tanh")]
    with torch.no_grad(), batched_structures(model, values, 3):
        batched = model(x.repeat(2, 1))
    set_structure(model, values[1])
    with torch.no_grad():
        assert torch.allclose(batched[3:], model(x))


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", ["ga", "reinforce"])
def test_hybrid_trainer_fits_a_model_with_constant_declarations(name):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 2, generator=g)
    data = [(x, x[:, :1] - 0.5 * x[:, 1:])]
    model = ConstNet()

    def loss_now():
        with torch.no_grad():
            return float(nn.functional.mse_loss(model(x), data[0][1]))

    before = loss_now()
    trainer = HybridTrainer(model, name, lambda p: torch.optim.Adam(p, lr=0.03),
                            loss=nn.functional.mse_loss, seed=0)
    assert trainer.structure_optimizer.dim == 1
    trainer.fit(data, epochs=25)
    structure = get_structure(model)
    assert structure["op"] == "tanh", name
    assert structure["fixed"] == "identity" and structure["repeat"] == 1
    assert structure["prog"] == ["neg2", "neg2"]
    assert loss_now() < 0.7 * before


def test_a_model_of_constant_declarations_only_is_refused():
    model = nn.Sequential(nn.Linear(2, 2), Choice({"only": nn.Identity()}))
    with pytest.raises(ValueError, match="nothing to search"):
        HybridTrainer(model, "ga", loss=nn.functional.mse_loss)
