"""The final selection's moves of a real entry (nondiff.hybrid.real_moves): the ladder and
the grid, clipped to the bounds, counted by neighbour_count; and a selection that leaves a
hard threshold the search had left far off."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nondiff.hybrid.real_moves import REAL_GRID, REAL_STEPS, real_moves
from nondiff.hybrid.selection import neighbour_count, neighbours
from nondiff.hybrid.structure import RealParam, set_structure
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.optim.spaces import Binary, Integer, Product, Real
from torch import nn


def test_the_ladder_and_the_grid_stay_in_the_bounds_each_once() -> None:
    inside = real_moves(0.5, -2.0, 2.0)
    assert len(inside) == 2 * len(REAL_STEPS) + REAL_GRID
    assert inside[:2] == [0.0, 1.0] and min(inside) >= -2.0 and max(inside) <= 2.0
    at_bound = real_moves(2.0, -2.0, 2.0)  # the steps up are clipped onto the value: gone
    assert 2.0 not in at_bound and len(at_bound) == len(REAL_STEPS) + REAL_GRID
    assert len(set(at_bound)) == len(at_bound)
    assert real_moves(0.0, -math.inf, 1.0) == [] and real_moves(1.0, 1.0, 1.0) == []


@pytest.mark.parametrize("point", [[0.3, 1.0, 2.0, -1.0], [-2.0, 0.0, 0.0, 0.0],
                                   [2.0, 1.0, 4.0, -6.9]])
def test_neighbours_move_each_real_entry_alone_and_are_counted(point) -> None:
    space = Product(t=Real(-2.0, 2.0), g=Binary(1), k=Integer(0, 4),
                    lr=Real(1e-3, 1.0, log=True))
    near = neighbours(space, point)
    assert len(near) <= neighbour_count(space) == 1 + 2 + 2 * (2 * len(REAL_STEPS) + REAL_GRID)
    for row in near:
        changed = np.flatnonzero(np.asarray(row) != np.asarray(point))
        assert len(changed) == 1
    lows, highs = space.bounds()
    assert all(lows[3] <= row[3] <= highs[3] for row in near)  # in the log's bounds
    assert sum(row[0] != point[0] for row in near) == len(real_moves(point[0], -2.0, 2.0))
    unbounded = Product(x=Real(-math.inf, math.inf))
    assert neighbours(unbounded, [0.0]) == [] and neighbour_count(unbounded) == 0


class _Threshold(nn.Module):
    """The MLP reads ``1[x_0 > t]`` beside ``x_1 .. x_7``."""

    def __init__(self) -> None:
        super().__init__()
        self.t = RealParam(-2.0, 2.0)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([(x[:, :1] > self.t.value).float(), x[:, 1:]], dim=1))


def _data(seed: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 8, generator=g)
    return x, ((x[:, 1] > 0) ^ (x[:, 0] > 1.0)).long()


def _select_from(recommended: float) -> HybridTrainer:
    """Weights trained at thresholds drawn over the range; then a first selection from a
    search that recommends ``recommended``."""
    torch.manual_seed(0)
    model = _Threshold()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for step in range(300):
        set_structure(model, {"t": float(rng.uniform(-2.0, 2.0))})
        x, y = _data(step, 64)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    trainer = HybridTrainer(model, "cmaes", seed=0, total_steps=8, final_steps=0.75,
                            select_batches=4, search_compute=None,
                            structure_options={"popsize": 4})
    trainer.late_select, trainer.race_finalists = None, 0
    trainer.structure_optimizer.recommend = lambda: np.array([recommended])
    for seed in range(6):  # two of the search, four of the selection
        if seed == 2:
            trainer.recent, trainer.winners = [], []  # the pool: the start and its moves
        trainer.step(*_data(500 + seed, 256))
    return trainer


def test_the_first_selection_leaves_a_threshold_the_search_left_far_off(monkeypatch) -> None:
    """The search recommends t = -1.5, where the feature is almost always 1 and says
    nothing. The grid reaches the region of 1 and the ladder closes in; without real
    moves the pool holds the recommendation alone and nothing moves."""
    trainer = _select_from(-1.5)
    assert abs(trainer.selected[0] - 1.0) < 0.3
    monkeypatch.setattr("nondiff.hybrid.selection.real_moves", lambda value, lo, hi: [])
    assert _select_from(-1.5).selected == [-1.5]
