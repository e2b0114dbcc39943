"""A supernet's batch norms score each candidate with its own batch statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import plain_equal
from nondiff.hybrid.candidate_norms import candidate_statistics, has_batch_norm
from nondiff.hybrid.sampling import merge_small
from nondiff.hybrid.structure import Choice
from nondiff.hybrid.trainer import HybridTrainer
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x


class ScaledNet(nn.Module):
    """A Choice of scales of the input, a batch norm, a linear head: every option carries
    the same information, at scales 1 and 100."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = Choice({"one": Scale(1.0), "hundred": Scale(100.0)})
        self.norm = nn.BatchNorm1d(2, affine=False)
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.scale(x)))


def _data(device: str, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g) + 3.0
    return x.to(device), (x[:, 0] > 3.0).long().to(device)


def test_inside_the_block_a_batch_norm_uses_the_batch_and_keeps_its_buffers(device) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)).to(device)
    model[1].running_mean.fill_(5.0)
    model.eval()
    x, _ = _data(device)
    with candidate_statistics(model, rows=len(x)):
        out = model(x)
    reference = nn.functional.batch_norm(model[0](x), None, None, model[1].weight,
                                         model[1].bias, training=True)
    assert torch.allclose(out, reference, atol=1e-5)
    assert not model.training and not model[1].training
    assert float(model[1].running_mean.min()) == 5.0 and int(model[1].num_batches_tracked) == 0
    with candidate_statistics(model, rows=1):  # one row has no variance: running statistics
        single = model(x[:1])
    assert torch.allclose(single, model(x[:1]))
    with pytest.raises(RuntimeError, match="boom"), candidate_statistics(model, rows=8):
        raise RuntimeError("boom")
    assert model[1].running_mean is not None and model[1].running_var is not None
    assert has_batch_norm(model) and not has_batch_norm(nn.Linear(2, 2))


def test_evaluate_scores_each_candidate_with_its_own_statistics(device) -> None:
    """Under running statistics of scale 1 the x100 option scores far worse; with its own
    statistics both options normalise to the same features and score the same."""
    torch.manual_seed(0)
    model = ScaledNet().to(device)
    x, y = _data(device)
    model.scale.value = "one"
    model.train()
    for _ in range(20):  # running statistics of the scale-1 option
        model(x)
    trainer = HybridTrainer(model, "ga", lambda p: torch.optim.SGD(p, lr=0.1), seed=0)
    running = model.norm.running_mean.clone()
    scores = trainer.evaluate([{"scale": "one"}, {"scale": "hundred"}], x, y)
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)
    assert torch.equal(model.norm.running_mean, running)
    assert model.scale.value == "one" and model.training
    model.eval()
    with torch.no_grad():
        model.scale.value = "hundred"
        stale = float(nn.functional.cross_entropy(model(x), y))
    assert stale > scores[1] + 1.0  # what the shared running statistics would have said


def test_merge_small_moves_single_rows_to_the_largest_path() -> None:
    assert merge_small([5, 1, 4, 1, 0], 2) == [7, 0, 4, 0, 0]
    assert merge_small([1, 1], 2) == [2, 0] and merge_small([], 2) == []
    assert merge_small([3, 1], 1) == [3, 1]
    rows = merge_small([2, 1, 1, 1, 3, 1], 2)
    assert sum(rows) == 9 and all(r == 0 or r >= 2 for r in rows)


@pytest.mark.parametrize("name", ["ga", "reinforce"])
def test_fit_with_a_batch_norm_gives_no_path_a_single_row(device, name) -> None:
    """A last batch of 9 rows split among a generation's paths would leave some paths one
    row, which a batch norm in train mode refuses."""
    torch.manual_seed(0)
    model = ScaledNet().to(device)
    x, y = _data(device, n=73)  # batches of 16: the last one 9 rows
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 73, 16)]
    trainer = HybridTrainer(model, name, lambda p: torch.optim.Adam(p, lr=1e-2), seed=0,
                            weight_step="population", search_compute=None,
                            structure_options={"popsize": 8})
    history = trainer.fit(batches, epochs=2)
    assert len(history) == 10 and np.isfinite([m["loss"] for m in history]).all()


def test_a_skipped_non_finite_batch_leaves_no_nan_in_the_running_statistics(device) -> None:
    """A train-mode pass writes the batch's statistics before the loss is checked; the
    skipped step puts them back, so the trained model still evaluates to numbers."""
    torch.manual_seed(0)
    model = ScaledNet().to(device)
    x, y = _data(device, n=80)
    x[20] = float("nan")  # one row of the second batch
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 80, 16)]
    trainer = HybridTrainer(model, "ga", lambda p: torch.optim.Adam(p, lr=1e-2), seed=0,
                            on_nonfinite="skip", search_compute=None,
                            structure_options={"popsize": 4})
    history = trainer.fit(batches, epochs=2)
    assert sum(m["skipped"] for m in history) == 2
    assert torch.isfinite(model.norm.running_mean).all()
    assert torch.isfinite(model.norm.running_var).all()
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x[:16])).all()


def test_the_shared_fitness_common_rows_use_each_members_statistics(device) -> None:
    from nondiff.hybrid.shared_step import common_pass
    torch.manual_seed(0)
    model = ScaledNet().to(device)
    x, y = _data(device)
    model.scale.value = "one"
    for _ in range(20):  # running statistics of the scale-1 option
        model(x)
    trainer = HybridTrainer(model, "ga", lambda p: torch.optim.SGD(p, lr=0.1), seed=0,
                            search_compute="shared")
    running = model.norm.running_mean.clone()
    scores = common_pass(trainer, x, y, [{"scale": "one"}, {"scale": "hundred"}])
    assert float(scores[0]) == pytest.approx(float(scores[1]), abs=1e-5)
    assert torch.equal(model.norm.running_mean, running)


def test_shared_fitness_with_a_batch_norm_tells_generations(device) -> None:
    """Members left a single row lose it to the largest path; they take turns, so every
    member's rows add up and the generations are told."""
    torch.manual_seed(0)
    model = ScaledNet().to(device)
    x, y = _data(device, n=160)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 160, 16)]
    trainer = HybridTrainer(model, "ga", lambda p: torch.optim.Adam(p, lr=1e-2), seed=0,
                            search_compute="shared", weight_step="population",
                            final_steps=0, structure_options={"popsize": 8})
    trainer.paired_rows = False
    history = trainer.fit(batches, epochs=8)
    assert sum(m["searched"] for m in history) >= 4


def test_a_single_row_with_a_batch_norm_is_refused_before_anything_changes(device) -> None:
    torch.manual_seed(0)
    model = ScaledNet().to(device)
    x, y = _data(device, n=33)
    trainer = HybridTrainer(model, "ga", lambda p: torch.optim.Adam(p, lr=1e-2), seed=0,
                            search_compute=None, structure_options={"popsize": 4})
    before = trainer.state_dict()
    with pytest.raises(ValueError, match=r"x has 1 row\(s\) and the model has a batch norm"):
        trainer.step(x[:1], y[:1])
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 33, 16)]  # 16, 16, 1
    with pytest.raises(ValueError, match=r"batch 2 of each epoch has 1 row\(s\)"):
        trainer.fit(batches, epochs=1)
    assert trainer.step_count == 0 and plain_equal(trainer.state_dict(), before)
    trainer.fit(batches[:2], epochs=1)  # the fix trains
    assert trainer.step_count == 2


def test_a_lazy_batch_norm_keeps_its_first_pass(device) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.LazyBatchNorm1d(), Choice(
        {"a": nn.Identity(), "b": nn.Tanh()}), nn.Linear(3, 2)).to(device)
    x, y = _data(device)
    trainer = HybridTrainer(model, "ga", lambda p: torch.optim.SGD(p, lr=0.1), seed=0)
    scores = trainer.evaluate([{"2": "a"}, {"2": "b"}], x, y)  # the norm's first pass
    assert np.isfinite(scores).all() and model[1].running_mean.shape == (3,)
