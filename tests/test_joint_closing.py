"""Gates that matter together (nondiff.hybrid.joint_closing): closing a group of redundant
inputs measured beyond noise and a group of noise inputs not, the model left as it was,
the refusals, and the first selection keeping open the redundant inputs the gate
parsimony would close one by one (HybridTrainer.keep_together)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nondiff.hybrid.final_phase import JOINT_ROWS
from nondiff.hybrid.gate_closing import CLOSING_SHARE, closing_screen, noise_threshold
from nondiff.hybrid.joint_closing import joint_closing, row_losses
from nondiff.hybrid.structure import Gates, get_structure, set_structure, structure_space
from nondiff.hybrid.trainer import HybridTrainer
from torch import nn

COPIES, NOISE, SPREAD = 24, 4, 3.0
FEATURES = COPIES + NOISE


class _GatedMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates(FEATURES)
        self.inp = nn.Linear(FEATURES, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.inp(self.gates(x))))


def _noise_data(seed: int, rows: int, device: str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The label is the sign of x_0 + x_1; every other input is noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, FEATURES, generator=g)
    return x.to(device), (x[:, 0] + x[:, 1] > 0).long().to(device)


def _data(seed: int, rows: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The label is the sign of a signal that each of the first COPIES inputs carries
    under three times as much noise (SPREAD): one copy says little the others do not;
    all of them together say it well. The last NOISE inputs are noise."""
    g = torch.Generator().manual_seed(seed)
    signal = torch.randn(rows, 1, generator=g)
    x = torch.cat([signal + SPREAD * torch.randn(rows, COPIES, generator=g),
                   torch.randn(rows, NOISE, generator=g)], dim=1)
    return x.to(device), (signal[:, 0] > 0).long().to(device)


def _trained(device: str = "cpu", steps: int = 150, data=None) -> _GatedMLP:
    """Trained under random halves of the gates open, as the fair paths train."""
    data = data or _data
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = _GatedMLP().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        x, y = data(step, 32, device)
        set_structure(model, {"gates": rng.random(FEATURES) < 0.5})
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    set_structure(model, {"gates": np.ones(FEATURES, dtype=bool)})
    model.zero_grad()
    return model


def test_redundant_inputs_closed_together_cost_beyond_noise_and_noise_inputs_do_not(
        device) -> None:
    """One by one the closing screen values every copy within its noise; closed
    together, the copies cost the loss many standard errors, the noise inputs none. The
    model keeps its structure and mode, and no gradient is left."""
    model = _trained(device)
    space = structure_space(model)
    x, y = _data(900, 256, device)
    start = [1.0] * FEATURES
    changes, errors, _ = closing_screen(model, space, start, x, y, nn.functional.cross_entropy)
    threshold = noise_threshold(FEATURES)
    assert all(changes[j] < threshold * errors[j] for j in range(COPIES))
    no_copies = [0.0] * COPIES + [1.0] * NOISE
    model.train()
    change, error, passes = joint_closing(model, space, start, no_copies, x, y,
                                          nn.functional.cross_entropy)
    assert passes == 2 and change > 3 * threshold * error > 0
    assert model.training and get_structure(model)["gates"].all()
    assert all(p.grad is None for p in model.parameters())
    no_noise = [1.0] * COPIES + [0.0] * NOISE
    change, error, _ = joint_closing(model, space, start, no_noise, x, y,
                                     nn.functional.cross_entropy)
    assert abs(change) < threshold * error


def test_the_paired_change_is_the_mean_of_each_rows_change_with_its_error() -> None:
    """The change and error equal those of the rows' own losses computed by hand."""
    model = _trained()
    space = structure_space(model)
    x, y = _data(901, 16)
    closed = [1.0, 0.0] * (FEATURES // 2)
    change, error, _ = joint_closing(model, space, [1.0] * FEATURES, closed, x, y,
                                     nn.functional.cross_entropy)
    model.eval()
    with torch.no_grad():
        before = nn.functional.cross_entropy(model(x), y, reduction="none")
        set_structure(model, {"gates": np.asarray(closed) > 0})
        after = nn.functional.cross_entropy(model(x), y, reduction="none")
    rows = (after - before).double().numpy()
    assert change == pytest.approx(rows.mean(), abs=1e-6)
    assert error == pytest.approx(rows.std(ddof=1) / math.sqrt(len(rows)), abs=1e-6)


def test_a_non_finite_loss_or_an_output_not_cut_into_rows_gives_nan() -> None:
    model = _trained(steps=1)
    space = structure_space(model)
    x, y = _data(902, 8)
    closed = [0.0] + [1.0] * (FEATURES - 1)

    def nan_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return out.sum() * math.nan

    change, error, passes = joint_closing(model, space, [1.0] * FEATURES, closed, x, y,
                                          nan_loss)
    assert math.isnan(change) and math.isnan(error) and passes == 1  # the start's pass

    class Scalar(nn.Module):  # an output with no rows to cut
        def __init__(self) -> None:
            super().__init__()
            self.gates = Gates(FEATURES)

        def forward(self, x: torch.Tensor) -> int:
            return int(self.gates(x).sum() > 0)

    scalar = Scalar()
    change, error, passes = joint_closing(scalar, structure_space(scalar), [1.0] * FEATURES,
                                          closed, x, y, lambda out, t: torch.tensor(0.0))
    assert math.isnan(change) and passes == 1
    assert get_structure(scalar)["gates"].all()


def _first_selection(keep_together: bool, parsimony: bool = True, data=None,
                     withheld: bool = False) -> HybridTrainer:
    """The first selection from every gate open under weights trained so, no cost (or,
    ``withheld``, a cost of 0 held back for want of a signal): the gate parsimony weighs
    each gate by its screen's error."""
    data = data or _data
    torch.manual_seed(0)
    cost = {"structure_cost": lambda structure: 0.0} if withheld else {}
    trainer = HybridTrainer(_trained(data=data), "ga", seed=0, total_steps=12, final_steps=0.75,
                            select_batches=4, search_compute=None,
                            structure_options={"popsize": 4}, **cost)
    if withheld:
        trainer.cost_held_back = lambda step: True  # no generation told structures apart
    trainer.late_select, trainer.keep_together = None, keep_together
    trainer.gate_parsimony = parsimony
    trainer.structure_optimizer.recommend = lambda: np.ones(FEATURES)
    for seed in range(7):  # three of the search, four of the selection
        if seed == 3:
            trainer.recent, trainer.winners = [], []  # the pool: the start and its moves
        trainer.step(*data(500 + seed, 64))
    return trainer


def test_the_first_selection_keeps_open_the_inputs_that_matter_together() -> None:
    """The parsimony alone closes all but a copy or two of the signal (its pruned start
    keeps at most 3 gates) and the selection ends there. Closed together, the copies it
    closes (less the two most valuable) cost beyond noise: every gate of that group loses
    its penalty (the noise inputs among them too; the state keeps the penalties), the
    first stage races every gate open and then the start pruned again, and the selection
    keeps most copies."""
    plain = _first_selection(keep_together=False)
    assert sum(plain.selection["pruned"][0]) <= 3 and sum(plain.selected) <= 4
    assert all(v > 0 for _, v in plain.gate_noise)
    kept = _first_selection(keep_together=True)
    every, pruned, *_ = kept.selection["pruned"]
    assert every == [1.0] * FEATURES and sum(pruned) > sum(plain.selection["pruned"][0])
    closed = [j for j in range(FEATURES) if plain.selection["pruned"][0][j] == 0]
    noise = dict(kept.gate_noise)
    assert len(closed) >= FEATURES - 3 and all(noise[j] == 0.0 for j in closed)
    assert sum(kept.selected[:COPIES]) >= COPIES - 4
    state = kept.state_dict()
    fresh = _first_selection(keep_together=True)
    fresh.gate_noise = []
    fresh.load_state_dict(state)
    assert fresh.gate_noise == kept.gate_noise


def test_the_group_is_tested_only_with_the_parsimony_and_its_passes_are_counted() -> None:
    """The test's two passes of the screen's rows are counted in the forward examples;
    without the parsimony nothing is tested, and keep_together changes nothing."""
    plain = _first_selection(keep_together=False)
    kept = _first_selection(keep_together=True)
    assert kept.forward_examples >= plain.forward_examples + 2 * 64
    off = _first_selection(keep_together=True, parsimony=False)
    off_plain = _first_selection(keep_together=False, parsimony=False)
    assert off.gate_noise == [] and off.forward_examples == off_plain.forward_examples
    assert off.selection["pruned"] == off_plain.selection["pruned"]
    assert off.selection["pruned"][0] != [1.0] * FEATURES  # no every-gate-open start


def test_a_group_of_noise_inputs_is_closed_as_without_the_test() -> None:
    """Where only x_0 and x_1 matter, the parsimony's group is noise: closed together it
    costs nothing beyond noise, and the selection, its pool and the penalties are those
    of the run without the test; only its two passes are counted."""
    kept = _first_selection(keep_together=True, data=_noise_data)
    plain = _first_selection(keep_together=False, data=_noise_data)
    assert kept.selection["pruned"][0] == [1.0, 1.0] + [0.0] * (FEATURES - 2)
    assert kept.selection["pruned"] == plain.selection["pruned"]
    assert kept.gate_noise == plain.gate_noise and all(v > 0 for _, v in kept.gate_noise)
    assert kept.selected == plain.selected == [1.0, 1.0] + [0.0] * (FEATURES - 2)
    assert kept.forward_examples == plain.forward_examples + 2 * 64


def test_the_group_is_not_tested_on_too_few_rows_or_beyond_the_budget() -> None:
    """Refused before any pass: fewer rows than JOINT_ROWS, or two passes beyond the
    closing screen's share of the budget; the penalties are left as they were."""
    trainer = _first_selection(keep_together=False)
    before = [list(p) for p in trainer.gate_noise]
    start, pruned = [1.0] * FEATURES, [1.0] * 2 + [0.0] * (FEATURES - 2)
    weighed = {j: 0.0 for j in range(FEATURES)}
    x, y = _data(903, 64)
    small = JOINT_ROWS - 1
    assert trainer._keep_together(start, pruned, weighed, x[:small], y[:small], math.inf,
                                  0.0) == (False, 0.0)
    budget = 2 * 64 / CLOSING_SHARE
    assert trainer._keep_together(start, pruned, weighed, x, y, budget, 1.0) == (False, 0.0)
    assert trainer.gate_noise == before
    weighed.update({COPIES: 1.0, COPIES + 1: 1.0})  # two noise inputs ranked first stay
    together, paid = trainer._keep_together(start, [0.0] * FEATURES, weighed, x, y, budget,
                                            0.0)  # every copy closed: beyond noise
    assert paid == 2 * 64 and together and all(v == 0.0 for _, v in trainer.gate_noise)


def test_rows_that_cannot_be_cut_or_a_loss_that_refuses_one_row_give_none() -> None:
    """An output whose first dimension is not the rows (sequence first), a target of
    other rows, or a loss that refuses a single row: no losses, and the model keeps its
    structure and mode."""
    model = _trained(steps=1)
    space = structure_space(model)
    x, y = _data(904, 8)
    start = [1.0] * FEATURES
    assert row_losses(model, space, start, x, y[:5], nn.functional.cross_entropy) is None

    def refuses(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if out.shape[0] < 2:
            raise ValueError("a batch of one")
        return nn.functional.cross_entropy(out, target)

    assert row_losses(model, space, start, x, y, refuses) is None

    class SequenceFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gates = Gates(FEATURES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gates(x).t()  # (features, rows)

    seq = SequenceFirst()
    seq.train()
    losses = row_losses(seq, structure_space(seq), start, x, y,
                        lambda out, t: out.sum())
    assert losses is None and seq.training and get_structure(seq)["gates"].all()
    fine = row_losses(model, space, start, x, y, nn.functional.cross_entropy)
    assert fine is not None and fine.shape == (8,) and np.isfinite(fine).all()


def test_with_a_cost_withheld_the_parsimony_stands_in_for_it_untested() -> None:
    """A cost the user asked for, held back: the parsimony stands in for it and its
    closings are not tested together (the same pool, penalties and examples as with the
    switch off)."""
    kept = _first_selection(keep_together=True, withheld=True)
    plain = _first_selection(keep_together=False, withheld=True)
    assert kept._parsimony_on() and all(v > 0 for _, v in kept.gate_noise)
    assert kept.selection["pruned"] == plain.selection["pruned"]
    assert kept.forward_examples == plain.forward_examples
