"""HybridTrainer.retrain (nondiff.hybrid.retrain): the found structure trained alone from
the starting weights, as a plain loop would, on every device present."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import plain_equal, roundtrip
from nondiff.hybrid.batches import epoch_seed
from nondiff.hybrid.decoupled import Decoupled
from nondiff.hybrid.nonfinite import NonFiniteError
from nondiff.hybrid.structure import Choice, Gates, get_structure, set_structure
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.optim.checkpoint import CHECKSUM_KEY, seal
from torch import nn
from torch.utils.data import TensorDataset

KNOWN = {"gates": np.array([0, 1, 0, 1, 0, 0], dtype=bool), "act": "relu"}


class Net(nn.Module):
    """Gates on 6 inputs, a hidden layer, an activation choice (few-shot split by
    default), two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates(6)
        self.hidden = nn.Linear(6, 16)
        self.act = Choice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "none": nn.Identity()})
        self.out = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(self.gates(x))))


def _data(device: str = "cpu") -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(192, 6, generator=g)
    y = (x[:, 1] * x[:, 3] > 0).long()
    return TensorDataset(x.to(device), y.to(device))


def same_state(a: nn.Module, b: nn.Module) -> bool:
    """The same parameters and buffers, bit for bit (the declarations' extra state aside)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa
                                          if isinstance(sa[k], torch.Tensor))


def _trainer(device: str, optimizer: object = None, **options: object) -> HybridTrainer:
    torch.manual_seed(0)
    model = Net().to(device)
    make = optimizer or (lambda p: torch.optim.Adam(p, lr=0.01))
    return HybridTrainer(model, "ga", make, seed=0, progress=False,
                         structure_options={"popsize": 4}, **options)


def _plain_loop(device: str, epochs: int) -> nn.Module:
    """The known structure trained alone: same initial weights, data order, optimizer."""
    torch.manual_seed(0)
    model = Net().to(device)
    set_structure(model, KNOWN)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    rows = _data(device)
    for epoch in range(epochs):
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(
            epoch_seed(0, epoch)))
        for start in range(0, len(rows), 32):
            x, y = rows[order[start:start + 32]]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model


@pytest.mark.parametrize("total_steps", [None, 1000], ids=["search-over", "mid-search"])
def test_retrain_is_the_structure_trained_alone(device: str, total_steps: int | None) -> None:
    trainer = _trainer(device, total_steps=total_steps)  # 1000: the few-shot copies live
    trainer.fit(_data(device), epochs=3, batch_size=32)
    assert (trainer.split is not None and not trainer.split.get("done")) == bool(total_steps)
    searched = trainer.forward_examples
    steps = trainer.retrain(_data(device), epochs=2, batch_size=32, structure=KNOWN)
    alone = _plain_loop(device, epochs=2)
    assert len(steps) == 12 and [s["retrain_step"] for s in steps] == list(range(1, 13))
    assert same_state(trainer.model, alone)
    assert get_structure(trainer.model)["act"] == "relu"
    assert trainer.split is None  # the few-shot copies went
    assert trainer.forward_examples == searched + 2 * 192
    assert next(trainer.model.parameters()).device.type == device


def test_retrain_defaults_to_the_recommended_structure_and_restores_settings() -> None:
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = HybridTrainer(model, "ga", opt, seed=0, progress=False,
                            structure_options={"popsize": 4})
    trainer.fit(_data(), epochs=2, batch_size=32)
    opt.param_groups[0]["lr"] = 1e-9  # as a scheduler would have left it
    found = trainer.recommended()
    trainer.retrain(_data(), epochs=1, batch_size=32)
    assert opt.param_groups[0]["lr"] == 0.1  # the settings it was built with
    assert get_structure(model)["act"] == found["act"]
    assert np.array_equal(get_structure(model)["gates"], found["gates"])


def test_bad_retrain_arguments_change_nothing() -> None:
    trainer = _trainer("cpu")
    trainer.fit(_data(), epochs=1, batch_size=32)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()
              if isinstance(v, torch.Tensor)}
    split = trainer.split
    lr, moments = trainer.weight_optimizer.param_groups[0]["lr"], \
        len(trainer.weight_optimizer.state)
    for kwargs, words in (({"epochs": 0}, "epochs must be an int >= 1"),
                          ({"epochs": 1.5}, "epochs must be"),
                          ({"epochs": 1, "batch_size": 0}, "batch_size must be"),
                          ({"epochs": 1, "seed": -1}, "seed must be"),
                          ({"epochs": 1, "seed": "a"}, "seed must be"),
                          ({"epochs": 1, "structure": {"gates": KNOWN["gates"]}}, "act"),
                          ({"epochs": 1, "structure": {**KNOWN, "act": "gelu"}}, "gelu")):
        with pytest.raises(ValueError, match=words):
            trainer.retrain(_data(), **kwargs)
    with pytest.raises(ValueError, match="no batches"):
        trainer.retrain([], epochs=1)
    with pytest.raises(ValueError, match="pair"):
        trainer.retrain([(torch.zeros(2, 6),)], epochs=1)
    trainer.weight_optimizer.add_param_group({"params": [nn.Parameter(torch.zeros(1))]})
    with pytest.raises(ValueError, match="2 parameter groups"):
        trainer.retrain(_data(), epochs=1)
    trainer.weight_optimizer.param_groups.pop()
    trainer.model.extra = nn.Linear(2, 2)  # a module added since: its weights have no start
    with pytest.raises(ValueError, match="changed since the trainer was made"):
        trainer.retrain(_data(), epochs=1)
    del trainer.model.extra
    after = trainer.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert trainer.split is split and moments > 0
    assert trainer.weight_optimizer.param_groups[0]["lr"] == lr
    assert len(trainer.weight_optimizer.state) == moments


def test_retrain_refuses_a_decoupled_engine() -> None:
    engine = Decoupled([nn.Sequential(Gates(4), nn.Linear(4, 8)), nn.Linear(8, 2)],
                       signal="synthetic", seed=0)
    trainer = HybridTrainer(engine, "ga", engine=engine, progress=False,
                            structure_options={"popsize": 4})
    with pytest.raises(ValueError, match="engine='backprop'"):
        trainer.retrain([(torch.zeros(4, 4), torch.zeros(4, dtype=torch.long))], epochs=1)


def test_a_resumed_trainer_retrains_from_the_stored_start() -> None:
    first = _trainer("cpu")
    first.fit(_data(), epochs=3, batch_size=32)
    state = roundtrip(first.state_dict())
    torch.manual_seed(1)  # other starting weights: the state's are the ones that count
    second = HybridTrainer(Net(), "ga", lambda p: torch.optim.Adam(p, lr=0.01), seed=0,
                           progress=False, structure_options={"popsize": 4})
    second.load_state_dict(state)
    first.retrain(_data(), epochs=1, batch_size=32, structure=KNOWN)
    second.retrain(_data(), epochs=1, batch_size=32, structure=KNOWN)
    assert same_state(first.model, second.model)


def test_a_state_without_starting_weights_keeps_the_trainers_own() -> None:
    trainer = _trainer("cpu")
    state = trainer.state_dict()
    start = trainer.initial_model
    older = {k: v for k, v in state.items() if k not in ("initial", CHECKSUM_KEY)}
    trainer.load_state_dict(seal(older))
    assert trainer.initial_model is start


@pytest.mark.parametrize("initial, words", [
    ({"model": {"other.weight": torch.zeros(1)}, "optimizer": None}, "initial weights"),
    ("shapes", "initial weights"), ({"model": None, "optimizer": None}, "optimizer settings"),
    ({"model": None}, "initial entry"), ("params", "optimizer settings")])
def test_a_state_with_other_starting_weights_is_refused_whole(initial, words: str) -> None:
    donor = _trainer("cpu")
    donor.fit(_data(), epochs=2, batch_size=32)
    state = {k: v for k, v in donor.state_dict().items() if k != CHECKSUM_KEY}
    if initial == "shapes":
        initial = {"model": {k: (v[:1] if isinstance(v, torch.Tensor) and v.dim() else v)
                             for k, v in state["initial"]["model"].items()},
                   "optimizer": state["initial"]["optimizer"]}
    elif initial == "params":  # settings that would replace the optimizer's parameters
        initial = {"model": state["initial"]["model"],
                   "optimizer": [{**state["initial"]["optimizer"][0], "params": [0]}]}
    state["initial"] = initial
    trainer = _trainer("cpu")
    before = trainer.state_dict()
    with pytest.raises(ValueError, match=words):
        trainer.load_state_dict(seal(state))
    assert plain_equal(trainer.state_dict(), before)


def test_a_callback_of_the_retraining_stops_it_and_the_trainers_see_none() -> None:
    seen, fitted = [], []
    trainer = _trainer("cpu", callbacks=[lambda m, t: fitted.append(m["step"])])
    trainer.fit(_data(), epochs=1, batch_size=32)
    count = len(fitted)
    steps = trainer.retrain(_data(), epochs=2, batch_size=32, structure=KNOWN,
                            callbacks=[lambda m, t: seen.append(m) or m["retrain_step"] >= 3])
    assert len(steps) == 3 and seen == steps and len(fitted) == count


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_a_non_finite_loss_in_the_retraining_follows_the_policy(policy: str) -> None:
    trainer = _trainer("cpu", on_nonfinite=policy)
    trainer.fit(_data(), epochs=2, batch_size=32)
    x, y = _data().tensors
    bad = x[:32].clone()
    bad[0, 1] = float("nan")
    rows = [(x[:32], y[:32]), (bad, y[:32]), (x[32:64], y[32:64])]
    if policy == "raise":
        with pytest.raises(NonFiniteError) as caught:
            trainer.retrain(rows, epochs=1, structure=KNOWN)
        assert (caught.value.step, caught.value.epoch) == (1, 0)
    else:
        skipped = trainer.skipped_steps
        steps = trainer.retrain(rows, epochs=1, structure=KNOWN)
        assert [s["skipped"] for s in steps] == [0.0, 1.0, 0.0]
        assert trainer.skipped_steps == skipped + 1
        assert all(bool(torch.isfinite(p).all()) for p in trainer.model.parameters())


def test_a_decoupled_trainer_keeps_no_starting_weights() -> None:
    engine = Decoupled([nn.Sequential(Gates(4), nn.Linear(4, 8)), nn.Linear(8, 2)],
                       signal="synthetic", seed=0)
    trainer = HybridTrainer(engine, "ga", engine=engine, progress=False,
                            structure_options={"popsize": 4})
    assert trainer.initial_model is None
    state = {k: v for k, v in trainer.state_dict().items() if k != CHECKSUM_KEY}
    state["initial"] = {"model": {k: v.clone() if isinstance(v, torch.Tensor) else v
                                  for k, v in engine.state_dict().items()}, "optimizer": None}
    trainer.load_state_dict(seal(state))  # one saved with them: none kept either
    assert trainer.initial_model is None


def test_a_one_row_batch_under_a_batch_norm_is_refused_up_front() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Gates(6), nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    trainer = HybridTrainer(model, "ga", lambda p: torch.optim.SGD(p, lr=0.1),
                            progress=False, structure_options={"popsize": 4})
    x, y = _data().tensors
    start = {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    with pytest.raises(ValueError, match="batch 1 of each epoch has 1 row"):
        trainer.retrain([(x[:8], y[:8]), (x[8:9], y[8:9])], epochs=1)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in start.items())


def test_a_lazy_model_not_yet_run_says_how_to_retrain() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Gates(6), nn.LazyLinear(2))
    trainer = HybridTrainer(model, "ga", lambda p: torch.optim.SGD(p, lr=0.1), progress=False,
                            structure_options={"popsize": 4})
    rows = [(torch.randn(8, 6), torch.zeros(8, dtype=torch.long))]
    with pytest.raises(ValueError, match="run the model on one batch before"):
        trainer.retrain(rows, epochs=1)
    model(rows[0][0])  # made: a trainer built now keeps them
    assert HybridTrainer(model, "ga", progress=False).initial_model is not None
    state = roundtrip(trainer.state_dict())  # the first one's None travels through
    trainer.load_state_dict(state)
    assert trainer.initial_model is None
