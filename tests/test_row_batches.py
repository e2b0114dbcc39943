"""A torch Dataset of rows (TensorDataset or any map-style one) trains as batches."""

from __future__ import annotations

import pytest
import torch
from conftest import plain_equal
from nondiff.hybrid import Decoupled, Group
from nondiff.hybrid.batches import RowBatches, as_batches
from nondiff.hybrid.structure import Choice
from nondiff.hybrid.trainer import HybridTrainer
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Rows(Dataset):
    """A plain map-style dataset of (x, y) rows (no tensors attribute)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def _data(device: str, n: int = 150) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    return x.to(device), (x.prod(dim=1) > 0).long().to(device)


def test_every_row_once_per_epoch_in_an_order_of_seed_and_epoch(device: str) -> None:
    x, _ = _data(device, 10)
    data = as_batches(TensorDataset(x, torch.arange(10, device=device)))
    assert isinstance(data, RowBatches) and data.num_batches(4) == 3 and len(data) == 10
    first = [b[1] for b in data.batches(4, seed=1, epoch=0)]
    assert [len(b) for b in first] == [4, 4, 2]
    assert sorted(torch.cat(first).tolist()) == list(range(10))
    assert all(b.device.type == device for b in first)
    again = torch.cat([b[1] for b in data.batches(4, seed=1, epoch=0)])
    assert torch.equal(torch.cat(first), again)
    other = torch.cat([b[1] for b in data.batches(4, seed=1, epoch=1)])
    assert not torch.equal(torch.cat(first), other)


def test_a_plain_dataset_of_rows_gives_the_same_batches_as_a_tensor_dataset() -> None:
    x, y = _data("cpu", 23)
    plain = list(as_batches(Rows(x, y)).batches(5, seed=3, epoch=2))
    tensors = list(as_batches(TensorDataset(x, y)).batches(5, seed=3, epoch=2))
    assert len(plain) == len(tensors) == 5
    for (a, b), (c, d) in zip(plain, tensors, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)


def test_loaders_lists_and_bad_rows() -> None:
    x, y = _data("cpu", 8)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    assert as_batches(loader) is loader and as_batches([(x, y)]) == [(x, y)]
    with pytest.raises(ValueError, match=r"data \(a TensorDataset\) holds 1 tensors"):
        as_batches(TensorDataset(x))
    with pytest.raises(ValueError, match=r"items of held_out \(a Triples\) must be \(x, y\) "
                                         r"rows, got a tuple of 3 items.*DataLoader"):
        as_batches(Triples(x, y), "held_out")
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        next(as_batches(TensorDataset(x, y)).batches(0))


class Triples(Rows):
    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return self.x[i], self.y[i], self.y[i]


class Scaled(TensorDataset):
    """A TensorDataset that transforms its rows: its own __getitem__ must be used."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = super().__getitem__(i)
        return 100 * x, y


def test_a_tensor_dataset_subclass_is_read_through_its_own_rows() -> None:
    x, y = _data("cpu", 6)
    (bx, by), = as_batches(Scaled(x, y)).batches(6, seed=0)
    (px, py), = as_batches(TensorDataset(x, y)).batches(6, seed=0)
    assert torch.equal(bx, 100 * px) and torch.equal(by, py)


class Stream(torch.utils.data.IterableDataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y, strict=True))


def test_refused_data_leaves_the_trainer_unchanged_and_names_the_fix() -> None:
    x, y = _data("cpu")
    trainer = _trainer("cpu")
    before = trainer.state_dict()
    with pytest.raises(ValueError, match="holds 1 tensors"):
        trainer.fit(TensorDataset(x), epochs=1, batch_size=16)
    with pytest.raises(ValueError, match="held_out"):
        trainer.fit(TensorDataset(x, y), epochs=1, batch_size=16,
                    held_out=Triples(x, y))
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer, got 2\.5"):
        trainer.fit(TensorDataset(x, y), epochs=1, batch_size=2.5)
    with pytest.raises(ValueError, match=r"single row.*DataLoader\(dataset, batch_size"):
        trainer.fit(Stream(x, y), epochs=1)
    assert trainer.fair_plan is None and trainer.epoch_rows == [] and trainer.step_count == 0
    assert plain_equal(trainer.state_dict(), before)


def _trainer(device: str) -> HybridTrainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), Choice(nn.Tanh(), nn.Identity()),
                          nn.Linear(16, 2)).to(device)
    return HybridTrainer(model, "ga", lambda p: torch.optim.Adam(p, lr=0.03), seed=0,
                         progress=False, total_steps=24)


def test_hybrid_fit_on_a_tensor_dataset_trains_whole_batches_and_resumes_exactly(
        device: str) -> None:
    x, y = _data(device)
    whole = _trainer(device)
    history = whole.fit(TensorDataset(x, y), epochs=8, batch_size=64, seed=2)
    assert len(history) == 8 * 3 and whole.epoch_rows == [64, 64, 22]
    assert whole.structure_optimizer.counters["iterations"] > 0
    assert whole.history[-1]["loss"] < whole.history[0]["loss"]
    parted = _trainer(device)
    parted.fit(TensorDataset(x, y), epochs=3, batch_size=64, seed=2)
    resumed = _trainer(device)
    resumed.load_state_dict(parted.state_dict())
    resumed.fit(TensorDataset(x, y), epochs=8, batch_size=64, seed=2)
    assert resumed.recommended() == whole.recommended()
    for p, q in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)
    print(f"devices covered: {device}")


def test_decoupled_fit_on_a_tensor_dataset(device: str) -> None:
    x, y = _data(device)
    torch.manual_seed(0)
    model = Decoupled([Group([nn.Linear(2, 32), nn.ReLU()]), nn.Linear(32, 2)],
                      signal="backprop").to(device)
    losses = model.fit(TensorDataset(x, y), epochs=5, batch_size=32)
    assert len(losses) == 5 and losses[-1] < losses[0]
    with pytest.raises(ValueError, match="data must be a nondiff Dataset"):
        model.fit([(x, y)], epochs=1, batch_size=32)


def test_a_refused_first_batch_unpins_the_plan_and_the_fix_trains_like_a_fresh_trainer(
        ) -> None:
    """fit refused on its first batch (rows, not batches) leaves no plan behind: the
    corrected call gets the same final phase as a fresh trainer; a DataLoader over an
    IterableDataset (no length) trains; a row with an int label is refused too."""
    x, y = _data("cpu", 64)
    refused = _trainer("cpu")
    refused.total_steps = None  # the plan comes from fit
    with pytest.raises(ValueError, match="single row"):
        refused.fit(DataLoader(TensorDataset(x, y), batch_size=None), epochs=10)
    assert refused.fair_plan is None and refused.planned_steps is None
    assert refused.epoch_rows == [] and refused.step_count == 0
    fresh = _trainer("cpu")
    fresh.total_steps = None
    runs = [t.fit(DataLoader(TensorDataset(x, y), batch_size=16), epochs=10)
            for t in (refused, fresh)]
    assert [m.get("final", 0.0) for m in runs[0]] == [m.get("final", 0.0) for m in runs[1]]
    assert sum(m.get("final", 0.0) for m in runs[0]) == 12 and refused.fair_plan == 40
    streamed = _trainer("cpu")
    history = streamed.fit(DataLoader(Stream(x, y), batch_size=16), epochs=2)
    assert len(history) == 8
    with pytest.raises(ValueError, match="data's batch 0 holds a single row"):
        _trainer("cpu").fit([(x[i], int(y[i])) for i in range(4)], epochs=1)
    with pytest.raises(ValueError, match="held_out's batch 0 is a tuple of length 1"):
        _trainer("cpu").fit([(x, y)], epochs=1, held_out=[(x,)])
