"""The late selection of the final phase: after the finalists' race, a local selection
from the selected structure (its neighbours only) under the weights the final steps
trained; within the bound, resumable, off with ``late_select=None``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import plain_equal
from hybrid_net import Net, data, straight_and_resumed
from nondiff.hybrid.final_phase import LATE_RESERVE, LATE_SELECT
from nondiff.hybrid.selection import neighbours
from nondiff.hybrid.structure import set_structure
from nondiff.hybrid.trainer import HybridTrainer
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GATE_COST = 0.05


def _gate_cost(structure) -> float:
    return GATE_COST * float(np.sum(structure["gates"]))


def _final_trainer(device: str, gates: list[bool], late_select: float = 0.1,
                   cost=_gate_cost, final_steps: int = 20):
    """A trainer whose every step is final, the first selection and the race behind it,
    with ``gates`` (and ReLU) selected and the weights trained under them; a gate cost
    at full weight."""
    torch.manual_seed(0)
    model = Net().to(device)
    batches = data(device, batches=20, rows=64)
    set_structure(model, {"gates": np.array(gates), "act": "relu"})
    adam = torch.optim.Adam(model.parameters(), lr=0.02)
    for x, y in batches * 4:  # the final steps so far trained the selected structure
        adam.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        adam.step()
    trainer = HybridTrainer(model, "ga", lambda p: torch.optim.Adam(p, lr=0.02), seed=0,
                            final_steps=final_steps, structure_cost=cost,
                            cost_schedule=lambda step: 1.0)
    trainer.planned_steps = 20  # every step final
    trainer.late_select = late_select  # starts at step 2
    trainer.selected = [float(v) for v in trainer.space.encode({"gates": np.array(gates),
                                                                "act": "relu"})]
    trainer.selection, trainer.race = {"left": None}, {"done": True}
    trainer.late_credit = 24 * 64 * 2.0  # what a search phase set aside
    return trainer, batches


def test_the_late_selection_closes_a_gate_the_final_weights_do_not_need(device) -> None:
    """Inputs 0 and 1 decide the label; the selected structure also opens input 2. Under
    the weights trained for it, closing input 2 loses little and saves its cost, so the
    late selection closes it — and keeps 0 and 1, which the weights need."""
    trainer, batches = _final_trainer(device, [True, True, True, False])
    history = [trainer.step(*batches[i]) for i in range(8)]
    assert [m["late_select"] for m in history] == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert trainer.selection["late"] and trainer.selection["done"]
    found = trainer.recommended()
    assert found["gates"].tolist() == [True, True, False, False] and found["act"] == "relu"
    assert trainer.structure(current=True)["gates"].tolist() == [True, True, False, False]
    print(f"devices covered: {device}")


def test_the_late_selection_keeps_the_right_structure(device) -> None:
    trainer, batches = _final_trainer(device, [True, True, False, False])
    for i in range(8):
        trainer.step(*batches[i])
    assert trainer.selection["done"]
    assert trainer.recommended()["gates"].tolist() == [True, True, False, False]


def test_the_late_selection_waits_for_the_race_and_is_off_with_none(device) -> None:
    trainer, batches = _final_trainer(device, [True, True, True, False])
    other = [float(v) for v in trainer.space.encode({"gates": np.array([True] * 4),
                                                     "act": "tanh"})]
    trainer.race = None  # the race of two finalists (4 steps) runs past the start (step 2)
    trainer.selection = {"opening": {"candidates": [trainer.selected, other],
                                     "first": [0.5, 0.6]}, "left": None}
    trainer.race_stage_steps = 4
    history = [trainer.step(*batches[i]) for i in range(8)]
    assert [m["race"] for m in history] == [1.0] * 4 + [0.0] * 4
    assert [m["late_select"] for m in history] == [0.0] * 4 + [1.0] * 4
    off, batches = _final_trainer(device, [True, True, True, False], late_select=None)
    history = [off.step(*batches[i]) for i in range(8)]
    assert sum(m["late_select"] for m in history) == 0 and "late" not in off.selection
    assert off.recommended()["gates"].tolist() == [True, True, True, False]


def test_the_late_pool_is_the_selected_structure_and_its_neighbours() -> None:
    trainer, batches = _final_trainer("cpu", [True, True, True, False])
    far = [float(v) for v in trainer.space.encode({"gates": np.array([False] * 4),
                                                   "act": "identity"})]
    trainer.recent, trainer.recent_objectives = [[far, far]], [[0.1, 0.1]]
    trainer.winners = [[far, 3, 0]]  # the first selection would race these; not this one
    for i in range(3):
        trainer.step(*batches[i])
    pool = {tuple(c) for c in trainer.selection["candidates"]}
    allowed = {tuple(trainer.selection["candidates"][0])} | {
        tuple(c) for c in neighbours(trainer.space, trainer.selection["candidates"][0])}
    assert trainer.selection["late"] and len(pool) == 7 and pool <= allowed


def test_a_refused_start_of_the_late_selection_keeps_its_budget() -> None:
    """A structure cost that refuses a neighbour (NaN) raises before anything is kept:
    the reserve and the first selection's state stand, and the retry races with them."""
    broken = {"on": True}

    def cost(structure) -> float:
        return float("nan") if broken["on"] and not structure["gates"][0] else \
            _gate_cost(structure)

    trainer, batches = _final_trainer("cpu", [True, True, True, False], cost=cost)
    for i in range(2):
        trainer.step(*batches[i])
    credit, selection = trainer.late_credit, dict(trainer.selection)
    with pytest.raises(ValueError, match="structure_cost"):
        trainer.step(*batches[2])
    assert trainer.late_credit == credit and trainer.selection == selection
    assert trainer.step_count == 2
    broken["on"] = False
    metrics = trainer.step(*batches[2])
    assert metrics["late_select"] == 1.0 and trainer.late_credit == 0.0
    assert trainer.selection["left"] < credit and len(trainer.selection["candidates"]) == 7


def test_an_int_final_steps_beyond_the_plan_starts_it_half_way_through_the_plan() -> None:
    trainer, batches = _final_trainer("cpu", [True, True, True, False], late_select=0.5,
                                      final_steps=30)  # every one of the 20 steps final
    history = [trainer.step(*batches[i % len(batches)]) for i in range(12)]
    assert [m["late_select"] for m in history].index(1.0) == 10


def test_the_default_fit_selects_late_within_the_bound() -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4},
                            structure_cost=_gate_cost, search_compute=2.0)
    history = trainer.fit(data("cpu", batches=10, rows=32), epochs=8)
    late = [m.get("late_select", 0.0) for m in history]
    race = [m.get("race", 0.0) for m in history]
    # a stage of two batches, and a second one unless the first kept the start (every
    # neighbour of it raced already)
    assert trainer.late_select == LATE_SELECT and sum(late) in (2, trainer.select_batches)
    last_race = max(i for i, r in enumerate(race) if r)
    # half the final phase in, or once the race is over if that is later
    assert sum(race) > 0 and late.index(1.0) == max(80 - 24 + round(LATE_SELECT * 24),
                                                     last_race + 1)
    assert trainer.selection["late"] and trainer.selection["done"]
    assert trainer.forward_examples <= 3 * trainer.weight_examples
    assert trainer.late_credit == 0.0  # spent (or left unspent)


@pytest.mark.parametrize("where", ["search", "late"])
def test_resume_with_a_reserve_or_inside_the_late_selection_is_exact(where) -> None:
    def make():
        torch.manual_seed(0)
        return HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4},
                             structure_cost=_gate_cost)

    def stop(metrics, trainer) -> bool:
        if where == "search":
            return trainer.step_count == 30 and trainer.late_credit > 0
        return metrics.get("late_select") == 1.0 and not trainer.selection["done"]

    straight, first, resumed = straight_and_resumed(
        make, data("cpu", batches=10, rows=32), 8, stop)
    if where == "search":
        assert first.step_count == 30 and first.late_credit > 0
    else:
        assert first.selection["late"] and not first.selection["done"]
    assert resumed.selection["done"] and plain_equal(resumed.state_dict(),
                                                     straight.state_dict())


@pytest.mark.parametrize("value", [1.0, -0.1, "0.5", True])
def test_a_bad_late_select_is_refused_before_any_step(value) -> None:
    trainer = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4})
    trainer.late_select = value
    batches = data("cpu")
    with pytest.raises(ValueError, match=r"HybridTrainer.late_select must be None or a "
                                         r"number in \[0, 1\)"):
        trainer.fit(batches, epochs=2)
    assert trainer.step_count == 0
    with pytest.raises(ValueError, match="late_select"):
        trainer.step(*batches[0])
    assert trainer.step_count == 0


def test_the_reserve_stops_at_what_the_late_selection_spends_and_is_none_if_short() -> None:
    """The search phase sets aside LATE_RESERVE of its budget until the reserve pays for
    the late selection's whole pool (Net: 4 gates and a 3-way choice, 6 neighbours, so a
    pool of 7 raced by halving on select_batches=2 batches: (7 + 4) x 32 rows); with a
    search phase too short to pay for it, nothing is set aside."""
    def credits(batches: int, rows: int, epochs: int) -> list[float]:
        torch.manual_seed(0)
        trainer = HybridTrainer(Net(), "ga", seed=0, select_batches=2,
                                structure_options={"popsize": 4})
        seen: list[float] = []
        trainer.callbacks.append(lambda m, t: seen.append(t.late_credit)
                                 if not m.get("final") else None)
        trainer.fit(data("cpu", batches=batches, rows=rows), epochs=epochs)
        return seen

    seen = credits(10, 32, 8)  # 56 search steps of 32 rows, 0.2 x 32 each
    assert LATE_RESERVE == 0.2 and seen[0] == pytest.approx(0.2 * 32)
    assert max(seen) == (7 + 4) * 32 and seen[-1] == max(seen)
    assert credits(1, 16, 10) == [0.0] * 7  # 7 search steps: 0.2 x 7 x 16 < (7 + 4) x 16
