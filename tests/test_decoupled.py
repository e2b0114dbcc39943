"""Decoupled stacks: every signal trains MLPs and CNNs, groups nest, checkpoints resume."""

from __future__ import annotations

import io
import math

import pytest
import torch
from conftest import finite_state, first_nan_batch, poisoned, same_state
from nondiff.hybrid import SIGNALS, Decoupled, Group
from nondiff.problems.learning import Dataset, digits
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data() -> Dataset:
    return digits(seed=0)


def mlp(seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [Group([nn.Linear(64, 128), nn.ReLU()]), Group([nn.Linear(128, 128), nn.ReLU()]),
            Group([nn.Linear(128, 128), nn.ReLU()]), nn.Linear(128, 10)]


def cnn(seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [Group([nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU()]),
            Group([nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU()]),
            Group([nn.Flatten(), nn.Linear(16 * 16, 10)])]


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("arch", [mlp, cnn])
def test_every_signal_reduces_training_loss(signal: str, arch, data: Dataset) -> None:
    model = Decoupled(arch(), signal=signal, seed=0)
    before = nn.functional.cross_entropy(model(data.x_train), data.y_train).item()
    model.fit(data, epochs=3, batch_size=64)
    after = nn.functional.cross_entropy(model(data.x_train), data.y_train).item()
    assert after < 0.6 * before, (before, after)
    assert model.accuracy(data.x_test, data.y_test) > 0.5


def test_backprop_flag_is_plain_end_to_end_backprop(data: Dataset) -> None:
    model = Decoupled(mlp(), signal="backprop", optimizer=lambda p: torch.optim.SGD(p, 0.05))
    reference = nn.Sequential(*mlp())
    opt = torch.optim.SGD(reference.parameters(), 0.05)
    for x, y in data.batches(64, seed=0, epoch=0):
        model.train_step(x, y)
        opt.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        opt.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    assert len(model.synthesizers) == len(model.heads) == 0


def test_nested_groups_and_nested_stacks_train(data: Dataset) -> None:
    torch.manual_seed(0)
    inner = Decoupled([Group([nn.Linear(64, 64), nn.ReLU()]), Group([nn.Linear(64, 64),
                                                                     nn.ReLU()])],
                      signal="local", num_classes=10, seed=1)
    model = Decoupled(
        [Group([Group([nn.Linear(64, 64), nn.ReLU()]), Group([nn.Linear(64, 64), nn.ReLU()])]),
         inner, nn.Linear(64, 10)],
        signal="synthetic-conditioned", seed=0)
    model.fit(data, epochs=4, batch_size=64)
    assert model.accuracy(data.x_test, data.y_test) > 0.75
    # the outer boundaries have synthesizers (cDNI), the inner stack its local head
    assert len(model.synthesizers) == 2 and len(inner.heads) == 1
    assert inner.step_count == model.step_count == 4 * data.num_batches(64)
    keys = model.state_dict().keys()
    assert any(k.startswith("blocks.1.heads.0") for k in keys)
    assert any(k.startswith("synthesizers.1") for k in keys)


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("signal", ["synthetic", "local"])
def test_checkpoint_resume_equals_uninterrupted(signal: str, data: Dataset) -> None:
    full = Decoupled(mlp(), signal=signal, staleness=2, seed=0)
    full.fit(data, epochs=2, batch_size=128)
    half = Decoupled(mlp(), signal=signal, staleness=2, seed=0)
    half.fit(data, epochs=1, batch_size=128)
    state = _roundtrip(half.checkpoint())
    resumed = Decoupled(mlp(seed=5), signal=signal, staleness=2, seed=7)
    resumed.load_checkpoint(state, example=data.x_train[:2])
    assert resumed.epoch == 1
    resumed.fit(data, epochs=1, batch_size=128)
    for (k, p), q in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q), k


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        Decoupled(mlp(), signal="dni")
    with pytest.raises(ValueError, match="staleness"):
        Decoupled(mlp(), staleness=-1)
    with pytest.raises(ValueError, match="non-empty list"):
        Decoupled([])
    with pytest.raises(ValueError, match="Group needs"):
        Group([1])
    with pytest.raises(ValueError, match="build the model"):
        Decoupled(mlp()).checkpoint()
    with pytest.raises(ValueError, match="version"):
        Decoupled(mlp()).load_checkpoint({"version": 99})


# -- non-finite losses ------------------------------------------------------------------

@pytest.mark.parametrize("signal", SIGNALS)
def test_a_nan_sample_stops_fit_before_the_weights_change(signal: str, data: Dataset) -> None:
    bad = poisoned(data)
    model = Decoupled(mlp(), signal=signal, seed=0)
    model.fit(data, epochs=1, batch_size=64)
    per_epoch = model.step_count
    with pytest.raises(FloatingPointError) as info:
        model.fit(bad, epochs=1, batch_size=64)  # epoch 1
    k = first_nan_batch(bad, 64, seed=0, epoch=1)
    block = "" if signal == "backprop" else ", block 0"  # backprop: the stack as a whole
    assert f"at step {per_epoch + k}, epoch 1{block};" in str(info.value), str(info.value)
    assert info.value.step == per_epoch + k and info.value.epoch == 1
    assert finite_state(model)

    reference = Decoupled(mlp(), signal=signal, seed=0)  # the same steps, up to step k
    reference.fit(data, epochs=1, batch_size=64)
    for _, (x, y) in zip(range(k), bad.batches(64, seed=0, epoch=1), strict=False):
        reference.train_step(x, y)
    # the blocks' weights are those from before the step (a synthesizer may already have
    # learnt from the finite target of the step before, as it does at the start of a step)
    assert same_state(model.blocks, reference.blocks)


@pytest.mark.parametrize("signal", SIGNALS)
def test_skip_leaves_out_the_nan_steps_and_counts_them(signal: str, data: Dataset) -> None:
    model = Decoupled(mlp(), signal=signal, seed=0, on_nonfinite="skip")
    losses = model.fit(poisoned(data), epochs=2, batch_size=64)
    assert all(math.isfinite(v) for v in losses) and losses[1] < losses[0]
    assert finite_state(model)
    blocks = 1 if signal == "backprop" else 4  # every block skips the NaN step ...
    synthesizers = 3 if signal.startswith("synthetic") else 0  # ... and its target
    assert model.skipped_updates == 2 * (blocks + synthesizers)
    with pytest.raises(ValueError, match="on_nonfinite must be one of"):
        Decoupled(mlp(), on_nonfinite="ignore")
