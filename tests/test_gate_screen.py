"""The screen of closed gates in the final selection (nondiff.hybrid.gate_screen): the
structures it scores, the ranking, the pairs it puts first, its budget, and the
selection on issue 17's mixed-inputs task from a structure that misses the product pair."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hybrid_net import Net
from hybrid_net import data as shared_data
from nondiff.hybrid.gate_screen import (
    SCREEN_PAIRS,
    SCREEN_ROWS,
    order_openings,
    rank_closed,
    screen_candidates,
    screened_pairs,
)
from nondiff.hybrid.structure import set_structure
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.optim.spaces import Binary, Categorical, Product
from nondiff.problems.hybrid.acceptance import make_task

SPACE = Product(gates=Binary(4), act=Categorical(["relu", "tanh", "identity"]))


def test_screen_candidates_open_every_gate_then_close_each_closed_one() -> None:
    entries, rows = screen_candidates(SPACE, [0, 1, 0, 0, 2])
    assert entries == [0, 2, 3]
    assert rows == [[1.0, 1.0, 1.0, 1.0, 2.0], [0.0, 1.0, 1.0, 1.0, 2.0],
                    [1.0, 1.0, 0.0, 1.0, 2.0], [1.0, 1.0, 1.0, 0.0, 2.0]]
    assert screen_candidates(SPACE, [1, 1, 1, 1, 0]) == ([], [])  # nothing closed
    # two gate declarations: both are screened, the categorical entry is kept
    two = Product(a=Binary(2), act=Categorical(["x", "y"]), b=Binary(2))
    entries, rows = screen_candidates(two, [0, 1, 1, 1, 0])
    assert entries == [0, 4] and rows[0] == [1.0, 1.0, 1.0, 1.0, 1.0]


def test_rank_closed_puts_the_largest_rise_first_and_non_finite_last() -> None:
    assert rank_closed([0, 2, 3], [0.30, 0.30, 0.50, 0.40]) == [2, 3, 0]
    assert rank_closed([0, 2, 3], [0.30, math.nan, 0.50, 0.40]) == [2, 3, 0]
    assert rank_closed([0, 2], [math.inf, 0.5, 0.4]) == [0, 2]  # no reference: as given
    with pytest.raises(ValueError, match="one score per entry"):
        rank_closed([0, 2], [0.3, 0.4])


def test_screened_pairs_take_the_best_ranked_gates_still_closed() -> None:
    start = [0.0, 0.0, 0.0, 1.0, 0.0]
    assert screened_pairs(start, [2, 0, 1]) == [[1.0, 0.0, 1.0, 1.0, 0.0],
                                                [0.0, 1.0, 1.0, 1.0, 0.0],
                                                [1.0, 1.0, 0.0, 1.0, 0.0]]
    assert len(screened_pairs([0.0] * 8, list(range(8)))) == SCREEN_PAIRS
    # a ranked gate that the start has open already is skipped
    assert screened_pairs([1.0, 0.0, 0.0, 1.0, 0.0], [0, 2, 1], 1) == [
        [1.0, 1.0, 1.0, 1.0, 0.0]]
    assert screened_pairs(start, [2]) == [] and screened_pairs(start, [2, 0], 0) == []


def test_order_openings_reorders_only_the_openings_in_their_places() -> None:
    start = [0.0, 0.0, 0.0, 1.0, 0.0]
    near = [[1.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0, 1.0],
            [0.0, 0.0, 1.0, 1.0, 0.0]]
    out = order_openings(start, near, [2, 1, 0])
    assert out == [near[4], near[1], near[2], near[3], near[0]]
    assert order_openings(start, near, []) == near


def _trainer(**options) -> HybridTrainer:
    torch.manual_seed(0)
    return HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4}, **options)


def test_a_screened_stage_races_the_best_pairs_first_then_openings_by_rank() -> None:
    """With a screen, the pairs of the three best ranked closed gates come before the
    single moves, and the single openings follow the ranking; a small pool gives the
    pairs a third of its places at most; without a screen (screen_gates False, or one
    not paid for) the pairs only fill the room left."""
    trainer = _trainer()
    start = [0.0, 0.0, 0.0, 1.0, 0.0]  # gates 0, 1, 2 closed

    def pool(screen, size):
        sel = {"stages": [2, 2], "sizes": [size, size], "stage": -1, "batches": 0,
               "target": 4, "left": None, **({"screen": screen} if screen else {})}
        assert trainer._next_stage(sel, start, first=True)
        return sel["candidates"]

    screened = pool([1, 0, 2], 12)
    assert screened[1:4] == [[1.0, 1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0, 0.0],
                             [1.0, 0.0, 1.0, 1.0, 0.0]]
    assert len(screened) == 10  # the start, 3 pairs, 6 single moves
    openings = [c for c in screened[4:] if sum(c[:4]) == 2 and c[4] == 0.0]
    assert [c.index(1.0) for c in openings] == [1, 0, 2]  # every opening, by rank
    small = pool([1, 0, 2], 5)
    away = [sum(a != b for a, b in zip(c, start, strict=True)) for c in small]
    assert away == [0, 2, 1, 1, 1]  # one pair, then single moves
    plain = pool(None, 8)
    away = [sum(a != b for a, b in zip(c, start, strict=True)) for c in plain]
    assert away == [0] + [1] * 6 + [2]  # the start, its 6 neighbours, then one pair


def test_the_screen_ranks_the_gates_of_a_product_first_and_counts_its_examples() -> None:
    """Weights trained with every gate open on the sign of x0 x1: from every gate
    closed, the screen ranks x0 and x1 first (opening either alone would not help); it
    costs one scoring of each closed gate and one of every gate open on the first
    SCREEN_ROWS rows (which the selection counts once its start stands), and it is not run
    when it would take more than a third of the budget, or when screen_gates is off."""
    trainer = _trainer()
    batches = shared_data("cpu", batches=10, rows=64)
    set_structure(trainer.model, {"gates": [True] * 4, "act": "relu"})
    opt = torch.optim.Adam(trainer.model.parameters(), lr=0.02)
    for _ in range(20):
        for x, y in batches:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(trainer.model(x), y).backward()
            opt.step()
    x, y = batches[0]
    before = trainer.forward_examples
    ranked, spent = trainer._screen([0.0, 0.0, 0.0, 0.0, 0.0], x, y, math.inf)
    assert sorted(ranked[:2]) == [0, 1] and sorted(ranked) == [0, 1, 2, 3]
    assert spent == SCREEN_ROWS * 5 and trainer.forward_examples == before  # by _select
    assert trainer._screen([0.0] * 5, x, y, 3 * SCREEN_ROWS * 5 - 1) == ([], 0.0)
    assert trainer._screen([1.0, 1.0, 1.0, 0.0, 0.0], x, y, math.inf) == ([], 0.0)  # one
    trainer.screen_gates = False
    assert trainer._screen([0.0] * 5, x, y, math.inf) == ([], 0.0)
    assert trainer.forward_examples == before
    trainer.screen_gates = True  # every gate open scores NaN: no ranking, still paid
    trainer.evaluate = lambda values, x, y: np.full(len(values), np.nan)
    assert trainer._screen([0.0] * 5, x, y, math.inf) == ([], SCREEN_ROWS * 5)


@pytest.mark.parametrize("value", [1, "yes", None])
def test_a_bad_screen_gates_names_the_attribute_and_value(value) -> None:
    trainer = _trainer()
    trainer.screen_gates = value
    with pytest.raises(ValueError, match=f"screen_gates must be True or False.*{value!r}"):
        trainer.fit(shared_data("cpu"), epochs=1)
    assert trainer.step_count == 0


def _select_from_a_miss(screen: bool) -> tuple[HybridTrainer, int]:
    """mixed-inputs, the weights trained with every gate open, the search ending on x14
    and x21: the trainer after the selection's four batches and the forward examples
    they took."""
    task = make_task("mixed-inputs", seed=0)
    torch.manual_seed(0)
    model = task.model()
    set_structure(model, {"gates": [True] * 24, "act": "relu"})
    opt = torch.optim.Adam(model.parameters(), lr=task.lr)
    for epoch in range(4):
        for x, y in task.data.batches(64, seed=0, epoch=epoch):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    trainer = HybridTrainer(model, "ga", seed=0, total_steps=12, final_steps=0.75,
                            select_batches=4, search_compute=None,  # a pool of 24
                            structure_cost=task.structure_cost,
                            structure_options={"popsize": 4})
    trainer.late_select, trainer.screen_gates = None, screen
    trainer.prune_open = False  # its pruned starts: tests/test_gate_closing.py
    batches = list(task.data.batches(64, seed=1, epoch=0))[:12]
    for x, y in batches[:3]:  # the search's steps
        trainer.step(x, y)
    start = {"gates": np.isin(np.arange(24), [14, 21]), "act": "relu"}
    trainer.recent, trainer.winners = [], []  # the pool: the start, the pairs, its moves
    trainer.structure_optimizer.recommend = lambda: trainer.space.encode(start)
    before = trainer.forward_examples
    for x, y in batches[3:7]:  # the selection's four batches
        trainer.step(x, y)
    return trainer, trainer.forward_examples - before


def test_the_selection_opens_the_product_pair_of_mixed_inputs() -> None:
    """Issue 17's mixed-inputs (x2 x9 + |x14| - x21/2 among 24 inputs), the weights
    trained with every gate open, the search ending on x14 and x21 (the runs that missed
    the product): the screen ranks x2 and x9 first, the first stage races them together
    before its single moves, and the selection opens both; the screen costs its 23
    scorings of SCREEN_ROWS rows over a selection without it."""
    trainer, spent = _select_from_a_miss(screen=True)
    sel = trainer.selection
    assert sorted(sel["screen"][:2]) == [2, 9]
    pair = trainer.space.encode({"gates": np.isin(np.arange(24), [2, 9, 14, 21]),
                                 "act": "relu"}).tolist()
    assert pair in sel["opening"]["candidates"][1:1 + SCREEN_PAIRS]
    selected = trainer.space.decode(np.asarray(trainer.selected))
    assert set(np.flatnonzero(selected["gates"]).tolist()) == {2, 9, 14, 21}
    plain, plain_spent = _select_from_a_miss(screen=False)
    assert "screen" not in plain.selection
    assert spent - plain_spent == SCREEN_ROWS * 23
