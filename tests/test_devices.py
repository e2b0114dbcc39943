"""Every hybrid part runs on the device of the model's parameters (issue 19, items 1 and 5).

Each test runs once per device of ``conftest.DEVICES`` (the CPU, and CUDA where present;
the run's header and summary say which). The datasets stay on the CPU unless a test
says otherwise: the batches must follow the model, not the other way round.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from nondiff.hybrid.critic import LossCritic
from nondiff.hybrid.decoupled import SIGNALS, Decoupled, Group
from nondiff.hybrid.devices import device_of, draw_on, to_device
from nondiff.hybrid.estimators import (
    gumbel_softmax,
    sample_categorical,
    score_function_surrogate,
    straight_through_argmax,
    straight_through_round,
)
from nondiff.hybrid.quantize import ADMMQuantizer, quantized_weights
from nondiff.hybrid.structure import Choice, Gates, batched_structures, set_structure
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.problems.hybrid import (
    DigitArithmetic,
    ProgramModel,
    SearchNet,
    Sequences,
    mismatch,
    perception_net,
    relaxed_pair_loss,
    search_split,
)
from nondiff.problems.learning import accuracy, digits, mnist1d
from nondiff.problems.quantized import mlp, validation_split
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def on(tensor: torch.Tensor, device: str) -> bool:
    return tensor.device.type == torch.device(device).type


def small(ds, n: int = 256):
    """The first ``n`` training examples of ``ds`` (one short epoch)."""
    return dataclasses.replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n])


class Net(nn.Module):
    """The README's hybrid model: pixel gates, a hidden layer, an activation choice."""

    def __init__(self) -> None:
        super().__init__()
        self.select = Gates(64)
        self.hidden = nn.Linear(64, 32)
        self.act = Choice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "none": nn.Identity()})
        self.out = nn.Linear(32, 10)

    def forward(self, x):
        return self.out(self.act(self.hidden(self.select(x))))


def assert_inputs_on_model_device(model: nn.Module) -> list[int]:
    """Forward pre-hooks on every submodule: each tensor input is on the model's device.

    Returns a list that counts the checked calls (so a test can see the hooks ran)."""
    where, calls = device_of(model), []

    def hook(module, args):
        for a in args:
            if isinstance(a, torch.Tensor):
                assert a.device == where, f"{type(module).__name__} got {a.device}, not {where}"
        calls.append(1)

    for module in model.modules():
        module.register_forward_pre_hook(hook)
    return calls


# ----- the helpers ----------------------------------------------------------------------
def test_device_of_reads_parameters_then_buffers_then_defaults_to_cpu(device) -> None:
    assert device_of(nn.Linear(2, 2).to(device)).type == device
    assert device_of(nn.BatchNorm1d(3, affine=False).to(device)).type == device  # buffers
    assert device_of(nn.ReLU()) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"nn\.Module"):
        device_of(torch.ones(2))


def test_to_device_moves_nested_batches_and_keeps_others(device) -> None:
    batch = {"x": torch.ones(2), "pair": (torch.zeros(1), [torch.ones(3)]), "n": 3}
    moved = to_device(batch, device)
    assert on(moved["x"], device) and on(moved["pair"][0], device)
    assert on(moved["pair"][1][0], device) and moved["n"] == 3
    same = torch.ones(2, device=device)
    assert to_device(same, device) is same  # no copy when already there


def test_draw_on_keeps_a_cpu_generator_stream(device) -> None:
    cpu = torch.rand(5, generator=torch.Generator().manual_seed(3))
    drawn = draw_on(torch.device(device), torch.Generator().manual_seed(3),
                    lambda d: torch.rand(5, generator=torch.Generator().manual_seed(3),
                                         device=d))
    assert on(drawn, device) and torch.equal(drawn.cpu(), cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_to_device_copies_pinned_batches() -> None:
    x = torch.ones(4).pin_memory()
    assert to_device(x, "cuda").device.type == "cuda"


# ----- datasets ---------------------------------------------------------------------------
@pytest.mark.parametrize("make", [digits, lambda device: mnist1d(n=200, device=device)],
                         ids=["digits", "mnist1d"])
def test_datasets_are_built_on_the_device_with_the_same_values(make, device) -> None:
    here = make(device=device) if make is digits else make(device)
    cpu = make(device="cpu") if make is digits else make("cpu")
    for name in ("x_train", "y_train", "x_test", "y_test"):
        tensor = getattr(here, name)
        assert on(tensor, device), name
        assert torch.equal(tensor.cpu(), getattr(cpu, name)), name
    (x, y), (xc, yc) = next(here.batches(32, seed=1)), next(cpu.batches(32, seed=1))
    assert on(x, device) and torch.equal(x.cpu(), xc) and torch.equal(y.cpu(), yc)


def test_batches_go_where_they_are_asked(device) -> None:
    x, y = next(digits().batches(16, device=device))
    assert on(x, device) and on(y, device)
    assert digits().to(device).device.type == device


def test_accuracy_follows_the_model(device) -> None:
    ds = digits()
    model = nn.Linear(64, 10).to(device)
    assert 0.0 <= accuracy(model, ds.x_test, ds.y_test) <= 1.0  # CPU data, model anywhere


# ----- the trainer ------------------------------------------------------------------------
@pytest.mark.parametrize("data_on", ["cpu", "model"])
def test_hybrid_trainer_fits_the_readme_model_on_its_device(device, data_on) -> None:
    torch.manual_seed(0)
    model = Net().to(device)
    calls = assert_inputs_on_model_device(model)
    ds = small(digits(seed=0, device="cpu" if data_on == "cpu" else device))
    trainer = HybridTrainer(model, "reinforce", lambda p: torch.optim.Adam(p, lr=1e-2),
                            structure_options={"popsize": 4}, seed=0)
    history = trainer.fit(ds, epochs=1, batch_size=64)
    assert len(history) == 4 and calls
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in history)
    assert all(on(p, device) for p in model.parameters())
    assert set(trainer.structure()) == {"select", "act"}


def test_batched_evaluation_on_the_device_matches_serial(device) -> None:
    torch.manual_seed(0)
    model = Net().to(device)
    x, y = next(digits().batches(32))
    values = [{"select": [i % 2] * 64, "act": act} for i, act in
              enumerate(["relu", "tanh", "none", "relu"])]
    batched = HybridTrainer(model, "ga", batched=True).evaluate(values, x, y)
    serial = HybridTrainer(model, "ga", batched=False).evaluate(values, x, y)
    assert torch.allclose(torch.tensor(batched), torch.tensor(serial), rtol=1e-5)


def test_gates_mask_follows_the_value_on_every_device(device) -> None:
    gates = Gates(3)
    x = torch.ones(2, 3, device=device)
    assert gates(x).sum().item() == 6
    gates.value = [1, 0, 0]  # the cached mask must not outlive the value
    assert gates(x).tolist() == [[1.0, 0.0, 0.0]] * 2
    choice = Choice(nn.Identity(), lambda h: -h)
    with batched_structures(choice, [{"root": 0}, {"root": 1}], 2):
        out = choice(torch.ones(4, 1, device=device))
    assert on(out, device) and out.squeeze(1).tolist() == [1.0, 1.0, -1.0, -1.0]


# ----- decoupled stacks -------------------------------------------------------------------
@pytest.mark.parametrize("signal", SIGNALS)
def test_decoupled_fit_runs_on_the_blocks_device(signal, device) -> None:
    torch.manual_seed(0)
    blocks = [Group([nn.Linear(64, 32), nn.ReLU()]), Group([nn.Linear(32, 32), nn.ReLU()]),
              nn.Linear(32, 10)]
    stack = Decoupled([b.to(device) for b in blocks], signal=signal, seed=0)
    calls = assert_inputs_on_model_device(stack)
    losses = stack.fit(small(digits()), epochs=1, batch_size=64)  # data on the CPU
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses[0])) and calls
    assert all(on(p, device) for p in stack.parameters())  # synthesizers and heads too
    assert 0.0 <= stack.accuracy(digits().x_test, digits().y_test) <= 1.0


# ----- critic and estimators --------------------------------------------------------------
def test_loss_critic_trains_and_differentiates_on_its_device(device) -> None:
    torch.manual_seed(0)
    critic = LossCritic(3, context=2, hidden=16).to(device)
    a = torch.eye(3)[torch.randint(0, 3, (8,))]
    context = torch.eye(2)[torch.randint(0, 2, (8,))]
    loss = torch.rand(8)
    assert isinstance(critic.update(a, loss, context), float)  # CPU inputs: moved
    probs = torch.softmax(torch.randn(8, 3, device=device), 1).requires_grad_(True)
    grad = critic.gradient(probs, context.to(device))
    assert on(grad, device) and grad.shape == (8, 3)
    expected = critic.expected([probs], context.to(device))
    expected.sum().backward()
    assert on(expected, device) and on(probs.grad, device)


def test_estimators_run_on_the_device_of_the_logits(device) -> None:
    logits = torch.randn(6, 4, device=device, requires_grad=True)
    hard = straight_through_argmax(logits)
    assert on(hard, device) and on(straight_through_round(logits), device)
    g = torch.Generator().manual_seed(0)  # a CPU generator for device logits
    soft = gumbel_softmax(logits, tau=0.5, hard=True, generator=g)
    cpu = gumbel_softmax(logits.detach().cpu(), tau=0.5, hard=True,
                         generator=torch.Generator().manual_seed(0))
    assert on(soft, device) and torch.equal(soft.detach().cpu(), cpu)
    samples = sample_categorical(logits, 5, generator=torch.Generator().manual_seed(1))
    assert on(samples, device) and samples.shape == (5, 6)
    losses = samples.float().cpu()  # losses computed elsewhere: moved
    score_function_surrogate(logits, samples, losses).backward()
    assert on(logits.grad, device) and torch.isfinite(logits.grad).all()


# ----- quantization -----------------------------------------------------------------------
@pytest.mark.parametrize("levels", ["binary", "ternary", 3])
def test_admm_quantizer_steps_on_the_weights_device(levels, device) -> None:
    torch.manual_seed(0)
    model = mlp(digits(), hidden=(16,)).to(device)
    quant = ADMMQuantizer(quantized_weights(model), levels=levels, rho=1e-2, rho_growth=1.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for x, y in small(digits()).batches(64, device=device):
        loss = nn.functional.cross_entropy(model(x), y) + quant.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
        metrics = quant.step()
        assert metrics["primal_residual"] >= 0.0
    quant.finalize()
    assert quant.on_levels() and all(on(st["u"], device) for st in quant.state)


def test_validation_split_stays_on_the_dataset_device(device) -> None:
    split = validation_split(digits(device=device), 0.25, seed=0)
    assert on(split.x_train, device) and on(split.x_test, device)


# ----- the hybrid tasks -------------------------------------------------------------------
def test_digit_arithmetic_on_a_device(device) -> None:
    task = DigitArithmetic(seed=0, test_pairs=50, device=device)
    xa, xb, s = next(task.batches(16, epoch=0))
    assert on(xb, device)
    assert on(xa, device) and on(s, device)
    u = torch.softmax(torch.randn(16, 10, device=device), 1)
    assert on(relaxed_pair_loss(u, u, s), device)
    cpu = DigitArithmetic(seed=0, test_pairs=50)
    assert torch.equal(next(cpu.batches(16, epoch=0))[2], s.cpu())  # same pairs
    net = perception_net(16).to(device)
    assert cpu.evaluate(net).keys() == {"sum_accuracy", "digit_accuracy"}  # CPU data


def test_programs_and_architecture_on_a_device(device) -> None:
    seqs = Sequences(("sort", "reverse"), seed=0, device=device)
    x, y = next(seqs.batches(8))
    model = ProgramModel(hidden=16).to(device)
    set_structure(model, {"program": ["sort", "reverse"]})
    assert on(x, device) and on(mismatch(model(x), y), device)
    train, val = search_split(mnist1d(n=200, device=device), seed=0)
    assert on(train.x_train, device) and on(val.x_train, device)
    net = SearchNet().to(device)
    assert on(net(val.x_train), device)
