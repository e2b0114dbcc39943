"""HybridTrainer: every structure optimizer that handles the space improves the loss;
resume equals an uninterrupted run; batched and serial evaluation agree; Decoupled engine."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import finite_state, native_names, plain_equal, roundtrip
from nondiff.hybrid.decoupled import Decoupled, Group
from nondiff.hybrid.structure import Choice, Gates, RealParam, get_structure, structure_space
from nondiff.hybrid.trainer import HybridTrainer
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gated_data(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """y depends on features 0..2; features 3..7 are loud noise a gate should close."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(4):
        x = torch.randn(64, 8, generator=g)
        x[:, 3:] *= 10.0
        y = x[:, :3].sum(dim=1, keepdim=True)
        x[:, 3:] += 10.0 * torch.randn(64, 5, generator=g)  # not predictive
        batches.append((x, y))
    return batches


class GatedLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates(8)
        self.linear = nn.Linear(8, 1)

    def forward(self, x):
        return self.linear(self.gates(x))


class ChoiceNet(nn.Module):
    """Of three ops only "tanh" passes the input on ("zero" and "one" are constant)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(2, 16)
        self.op = Choice({"zero": lambda h: 0 * h, "tanh": nn.Tanh(),
                          "one": torch.ones_like})
        self.out = nn.Linear(16, 1)
        self.scale = Choice({"one": nn.Identity(), "two": lambda h: 2 * h})  # either works

    def forward(self, x):
        return self.scale(self.out(self.op(self.inp(x))))


def choice_data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 2, generator=g)
    return [(x, x[:, :1] - 0.5 * x[:, 1:])]


def hybrid_loss(model, data) -> float:
    with torch.no_grad():
        return float(np.mean([nn.functional.mse_loss(model(x), y) for x, y in data]))


def adam(lr):
    return lambda params: torch.optim.Adam(params, lr=lr)


@pytest.mark.parametrize("name", native_names({"binary"}))
def test_every_binary_optimizer_closes_the_noise_gates(name: str) -> None:
    torch.manual_seed(0)
    model, data = GatedLinear(), gated_data()
    before = hybrid_loss(model, data)
    trainer = HybridTrainer(model, name, adam(0.05), loss=nn.functional.mse_loss, seed=0,
                            weight_step="best", search_compute=None)
    trainer.fit(data, epochs=12)
    gates = get_structure(model)["gates"]
    assert hybrid_loss(model, data) < 0.05 * before, f"{name} ended at gates {gates}"
    assert gates[:2].all() and gates[3:].sum() <= 2, f"{name} ended at gates {gates}"


@pytest.mark.parametrize("name", native_names({"categorical"}))
def test_every_categorical_optimizer_picks_the_working_op(name: str) -> None:
    torch.manual_seed(0)
    model, data = ChoiceNet(), choice_data()
    before = hybrid_loss(model, data)
    trainer = HybridTrainer(model, name, adam(0.03), loss=nn.functional.mse_loss, seed=0)
    trainer.fit(data, epochs=25)
    assert get_structure(model)["op"] == "tanh", name
    assert hybrid_loss(model, data) < 0.7 * before


def test_resume_equals_an_uninterrupted_run() -> None:
    def make():
        torch.manual_seed(0)
        model = ChoiceNet()
        return HybridTrainer(model, "reinforce", adam(0.03), loss=nn.functional.mse_loss,
                             structure_options={"popsize": 3}, seed=5)

    data = choice_data() * 3  # 3 batches an epoch
    straight = make()
    straight.fit(data, epochs=4)
    first = make()
    first.callbacks.append(lambda metrics, trainer: metrics["step"] == 7)  # stop mid-epoch
    first.fit(data, epochs=4)
    assert (first.epoch, first.batch_in_epoch) == (2, 1)
    state = roundtrip(first.state_dict())
    torch.manual_seed(123)  # the state carries the RNGs
    resumed = make()
    resumed.load_state_dict(state)
    resumed.fit(data, epochs=4)
    assert resumed.step_count == straight.step_count == 12
    assert plain_equal(resumed.state_dict(), straight.state_dict())


def test_warmup_steps_train_weights_without_asking() -> None:
    torch.manual_seed(0)
    model = ChoiceNet()
    seen = []
    trainer = HybridTrainer(model, "ga", loss=nn.functional.mse_loss, warmup_steps=5,
                            weight_step="sampled", reevaluate_incumbent=False,
                            callbacks=[lambda m, t: seen.append(get_structure(t.model))],
                            search_compute=None)
    trainer.fit(choice_data(), epochs=8)
    assert trainer.structure_optimizer.counters["iterations"] == 3
    assert trainer.forward_examples == 128 * (5 + 3 * (trainer.structure_optimizer.popsize + 1))
    assert len({s["op"] for s in seen[:5]}) > 1  # uniformly random structures
    with pytest.raises(ValueError, match="warmup_steps"):
        HybridTrainer(model, "ga", warmup_steps=-1)


def test_default_warmup_is_fair_and_the_ga_reevaluates_its_best() -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(ChoiceNet(), "ga", loss=nn.functional.mse_loss, warmup_steps=5,
                            search_compute=None)
    history = trainer.fit(choice_data(), epochs=8)
    popsize = trainer.structure_optimizer.popsize
    assert trainer.structure_optimizer.counters["iterations"] == 3
    # 5 warm-up steps; 3 generations, the last two with the GA's best re-evaluated
    assert trainer.forward_examples == 128 * (8 + 3 * popsize + 2)
    assert [m["fair_share"] for m in history[:5]] == [1.0] * 5


def test_batched_and_serial_evaluation_agree() -> None:
    torch.manual_seed(0)
    model = GatedLinear()
    x, y = gated_data()[0]
    space = structure_space(model)
    values = space.decode_batch(space.sample(np.random.default_rng(0), 5))
    batched = HybridTrainer(model, "ga", loss=nn.functional.mse_loss, batched=True)
    serial = HybridTrainer(model, "ga", loss=nn.functional.mse_loss, batched=False)
    assert np.allclose(batched.evaluate(values, x, y), serial.evaluate(values, x, y), rtol=1e-5)


def test_decoupled_engine_trains_the_weights() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    blocks = [Group([nn.Linear(4, 32), Choice({"relu": nn.ReLU(), "zero": lambda h: 0 * h})]),
              nn.Linear(32, 2)]
    engine = Decoupled(blocks, signal="synthetic", optimizer=adam(0.01), seed=0)
    trainer = HybridTrainer(engine, "reinforce", engine=engine,
                            structure_options={"popsize": 4, "lr": 0.3}, seed=0)
    history = trainer.fit([(x, y)], epochs=60)
    assert get_structure(engine) == {"blocks.0.1": "relu"}
    assert history[-1]["loss"] < 0.6 * history[0]["loss"]
    assert engine.accuracy(x, y) > 0.8


def test_bad_arguments_name_the_fix() -> None:
    with pytest.raises(ValueError, match="weight_step"):
        HybridTrainer(ChoiceNet(), "ga", weight_step="mean")
    HybridTrainer(ChoiceNet(), "cga")  # its choices through a binary code
    with_real = ChoiceNet()
    with_real.gain = RealParam(0.5, 2.0)
    with pytest.raises(ValueError, match=r"cga searches binary.*no binary code"):  # snes: yes
        HybridTrainer(with_real, "cga")
    with pytest.raises(ValueError, match="declares no structure"):
        HybridTrainer(nn.Linear(2, 2), "ga")
    with pytest.raises(ValueError, match="engine"):
        HybridTrainer(ChoiceNet(), "ga", engine="dni")


def test_data_without_pairs_is_refused_before_anything_changes() -> None:
    """A user's first mistakes with ``fit``'s data: an empty list (which counted epochs
    without a step, so a later fit with real data skipped them) and batches of inputs
    alone (Python's "too many values to unpack")."""
    trainer = HybridTrainer(GatedLinear(), "ga", adam(0.05), loss=nn.functional.mse_loss, seed=0)
    before = copy.deepcopy(trainer.state_dict())
    with pytest.raises(ValueError, match="data has no batches"):
        trainer.fit([], epochs=1)
    x, _ = gated_data()[0]
    with pytest.raises(ValueError, match=r"batch 0 is a Tensor of shape \(64, 8\)"):
        trainer.fit([x], epochs=1)
    with pytest.raises(ValueError, match="batch 0 is a tuple of length 3"):
        trainer.fit([(x, x, x)], epochs=1)
    assert plain_equal(trainer.state_dict(), before)
    assert trainer.epoch == 0 and trainer.step_count == 0


# -- non-finite losses ------------------------------------------------------------------

def nan_batches() -> tuple[list, list]:
    """Four clean batches of choice_data, and the same with a NaN example in batch 2."""
    x, y = choice_data()[0]
    clean = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 128, 32)]
    xb = clean[2][0].clone()
    xb[5, 1] = float("nan")
    return clean, [*clean[:2], (xb, clean[2][1]), clean[3]]


def test_a_nan_loss_stops_the_trainer_before_the_weights_change() -> None:
    clean, bad = nan_batches()
    torch.manual_seed(0)
    model = ChoiceNet()
    states = []
    trainer = HybridTrainer(model, "reinforce", adam(0.01), loss=nn.functional.mse_loss,
                            seed=0, callbacks=[lambda m, t: states.append(
                                copy.deepcopy(t.model.state_dict()))], search_compute=None)
    trainer.fit(clean, epochs=1)
    with pytest.raises(FloatingPointError) as info:
        trainer.fit(bad, epochs=2)  # epoch 1, its batch 2: step 4 + 2
    message = str(info.value)
    assert "non-finite loss at step 6, epoch 1, structure {'op': " in message, message
    assert info.value.structure == trainer.structure(current=True)
    assert trainer.step_count == 6 and len(states) == 6
    assert plain_equal(dict(model.state_dict()), dict(states[-1]))
    assert finite_state(model)


def test_a_nan_loss_in_a_decoupled_engine_names_the_block() -> None:
    _, bad = nan_batches()
    torch.manual_seed(0)
    blocks = [Group([nn.Linear(2, 16), Choice({"tanh": nn.Tanh(), "zero": lambda h: 0 * h})]),
              nn.Linear(16, 1)]
    engine = Decoupled(blocks, signal="synthetic", loss=nn.functional.mse_loss, seed=0)
    trainer = HybridTrainer(engine, "reinforce", engine=engine, seed=0)
    with pytest.raises(FloatingPointError, match=r"at step 2, epoch 0, block 0, structure"):
        trainer.fit(bad, epochs=1)
    assert finite_state(engine)


def test_skip_leaves_out_nan_steps_and_reports_them() -> None:
    _, bad = nan_batches()
    torch.manual_seed(0)
    trainer = HybridTrainer(ChoiceNet(), "reinforce", adam(0.01), loss=nn.functional.mse_loss,
                            seed=0, on_nonfinite="skip", search_compute=None)
    history = trainer.fit(bad, epochs=3)
    skipped = [m["skipped"] for m in history]  # where the structure let the NaN through
    assert skipped == [float(not np.isfinite(m["loss"])) for m in history]
    assert skipped[2] == 1.0 and not any(skipped[i] for i in range(12) if i % 4 != 2)
    assert trainer.skipped_steps == sum(skipped) and trainer.step_count == 12
    assert finite_state(trainer.model)
    assert roundtrip(trainer.state_dict())["counters"]["skipped_steps"] == sum(skipped)
