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
from nondiff.hybrid.structure import Choice, Gates, RealParam, set_structure
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.optim.spaces import Binary, Integer, Product, Real
from nondiff.problems.hybrid.acceptance_checks import ThresholdNet
from torch import nn


def test_the_ladder_and_the_grid_stay_in_the_bounds_each_once() -> None:
    inside = real_moves(0.5, -2.0, 2.0)
    assert len(inside) == 2 * len(REAL_STEPS) + REAL_GRID
    assert inside[:2] == [0.0, 1.0] and min(inside) >= -2.0 and max(inside) <= 2.0
    at_bound = real_moves(2.0, -2.0, 2.0)  # the steps up are clipped onto the value: gone
    assert 2.0 not in at_bound and len(at_bound) == len(REAL_STEPS) + REAL_GRID
    near_bound = real_moves(-1.99, -2.0, 2.0)  # three steps down clip to -2.0: one move
    assert near_bound.count(-2.0) == 1 and len(near_bound) == len(REAL_STEPS) + 1 + REAL_GRID
    on_grid = real_moves(-1.25, -2.0, 2.0)  # a midpoint itself; its 1/8 steps land on two
    assert len(on_grid) == len(set(on_grid)) == 2 * len(REAL_STEPS) + REAL_GRID - 3
    assert real_moves(0.0, -math.inf, 1.0) == [] and real_moves(1.0, 1.0, 1.0) == []
    assert real_moves(math.nan, 0.0, 1.0) == []


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
    grid = [lows[3] + (highs[3] - lows[3]) * (i + 0.5) / REAL_GRID for i in range(REAL_GRID)]
    moved = [row[3] for row in near if row[3] != point[3]]
    assert all(any(abs(m - g) < 1e-12 for m in moved) for g in grid if g != point[3])
    assert lows[3] == pytest.approx(math.log(1e-3))  # the grid of the logarithm
    assert sum(row[0] != point[0] for row in near) == len(real_moves(point[0], -2.0, 2.0))
    unbounded = Product(x=Real(-math.inf, math.inf))
    assert neighbours(unbounded, [0.0]) == [] and neighbour_count(unbounded) == 0


def _data(seed: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 8, generator=g)
    return x, ((x[:, 1] > 0) ^ (x[:, 0] > 1.0)).long()


def _select_from(recommended: float) -> HybridTrainer:
    """Weights trained at thresholds drawn over the range; then a first selection from a
    search that recommends ``recommended``."""
    torch.manual_seed(0)
    model = ThresholdNet()
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
    assert abs(trainer.selected[0] - 1.0) < 0.2  # nearer than the grid's 0.75 and 1.25
    monkeypatch.setattr("nondiff.hybrid.selection.real_moves", lambda value, lo, hi: [])
    assert _select_from(-1.5).selected == [-1.5]


def test_in_a_mixed_space_real_moves_take_only_the_room_the_other_moves_leave() -> None:
    """Gates, an activation choice and a threshold: the first stage's pool holds every
    gate flip and choice move of the start before any real move; reals and others are
    told apart by the entries they change."""
    from nondiff.hybrid.selection import real_entries, real_moves_of

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gates = Gates(6)
            self.act = Choice({"relu": nn.ReLU(), "tanh": nn.Tanh()})
            self.t = RealParam(-2.0, 2.0)
            self.out = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hard = (x[:, :1] > self.t.value).to(x.dtype)
            return self.out(self.act(self.gates(torch.cat([hard, x[:, 1:6]], dim=1))))

    torch.manual_seed(0)
    trainer = HybridTrainer(Mixed(), "cmaes", seed=0, total_steps=6, final_steps=0.5,
                            select_batches=2, search_compute=None,
                            structure_options={"popsize": 4})
    trainer.late_select, trainer.race_finalists = None, 0
    trainer.screen_gates = trainer.screen_closings = trainer.prune_open = False
    start = [1.0] * 6 + [0.0, 0.5]
    trainer.structure_optimizer.recommend = lambda: np.array(start)
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(1))
    for step in range(4):
        if step == 3:
            trainer.recent, trainer.winners = [], []
        trainer.step(x, (x[:, 1] > 0).long())
    reals = real_entries(trainer.space)
    assert reals == {7}
    discrete, moves = real_moves_of(start, trainer.selection["candidates"][1:], reals)
    assert len(discrete) >= 7  # six gate flips and the choice's move, all of them
    pool = trainer.selection["candidates"]
    last_discrete = max(i for i, c in enumerate(pool) if c in discrete)
    assert all(pool.index(c) > last_discrete for c in moves)
