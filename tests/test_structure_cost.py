"""HybridTrainer structure costs: the scheduled weight keeps the useful gates open where a
cost from the first step closes them all; Pareto view; bad costs; exact resume."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import plain_equal, roundtrip
from nondiff.hybrid.structure import Choice, get_structure
from nondiff.hybrid.trainer import HybridTrainer, pareto_front
from nondiff.optim.checkpoint import seal
from test_trainer import GatedLinear, adam, gated_data
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def open_gates(structure) -> float:
    return float(structure["gates"].sum())


def gate_trainer(seed: int = 0, **kwargs) -> HybridTrainer:
    torch.manual_seed(seed)
    if "cost_schedule" not in kwargs:
        kwargs.setdefault("cost_weight", 0.7)
    return HybridTrainer(GatedLinear(), "reinforce", adam(0.05), loss=nn.functional.mse_loss,
                         seed=seed, structure_cost=open_gates, search_compute=None, **kwargs)


def test_a_cost_from_the_start_closes_the_gates_and_the_schedule_prevents_it() -> None:
    """y needs features 0..2 (each worth ~1 of MSE once trained), 3..7 are noise; a gate
    costs 0.7. At full weight from step 0 the untrained weights make no gate worth its
    cost: all close and stay closed. Warm-up then a ramp keeps exactly the useful ones;
    the default schedule (off for 30 % of the training, then a ramp over 40 %, without
    a warm-up of the search) keeps most of them on this 48-step run: at least two useful
    gates and at most one noise gate on 7 of seeds 0-7 (8 with every gate open in half
    of the fair paths from the start, fair_open_start=0.5; seed 1 then keeps 2 + 1, with
    the default ramp 1 + 1); here on at least 3 of seeds 0-3."""
    kept = 0
    for seed in range(4):
        data = gated_data(seed)
        default = gate_trainer(seed)  # off for 30 % of the training, then ramped over 40 %
        default.fit(data, epochs=12)
        gates = get_structure(default.model)["gates"]  # not all closed: useful ones open
        kept += bool(gates[:3].sum() >= 2 and gates[3:].sum() <= 1)
    assert kept >= 3
    assert default.cost_window() == (round(0.3 * 48), round(0.4 * 48))
    weights = [m["cost_weight"] for m in default.history]
    assert weights[:15] == [0.0] * 15 and weights[-1] == 0.7
    for seed in (0, 1):
        early = gate_trainer(seed, cost_start=0, cost_ramp_steps=0)  # full weight at once
        with pytest.warns(UserWarning, match="same output"):  # hybrid/ignored_input.py
            early.fit(gated_data(seed), epochs=12)
        assert get_structure(early.model)["gates"].sum() == 0
        scheduled = gate_trainer(seed, warmup_steps=12, cost_ramp_steps=16)
        scheduled.fit(gated_data(seed), epochs=12)
        gates = get_structure(scheduled.model)["gates"]
        assert gates[:3].all() and gates[3:].sum() == 0, gates
        weights = [m["cost_weight"] for m in scheduled.history]
        assert weights[:13] == [0.0] * 13  # warm-up, then the ramp starts at 0
        assert weights[14] == pytest.approx(0.7 * 2 / 16) and weights[-1] == 0.7
        assert all(math.isnan(m["cost_mean"]) for m in scheduled.history[:12])
    assert 0 <= scheduled.history[-1]["cost_mean"] <= 8


def test_a_callable_schedule_sets_the_weight() -> None:
    trainer = gate_trainer(cost_schedule=lambda t: 0.1 * t)
    trainer.fit(gated_data(), epochs=2)
    assert [m["cost_weight"] for m in trainer.history] == pytest.approx(
        [0.1 * t for t in range(8)])
    bad = gate_trainer(cost_schedule=lambda t: -1.0)
    with pytest.raises(ValueError, match=r"cost_schedule\(0\).*>= 0"):
        bad.fit(gated_data(), epochs=1)


def test_pareto_front_on_scripted_points() -> None:
    points = [[1.0, 5.0], [2.0, 2.0], [3.0, 3.0], [0.5, 9.0], [2.0, 2.0], [1.0, 6.0],
              [np.nan, 0.0], [0.4, np.inf], [4.0, 2.0], [5.0, 1.0]]
    # [3,3] is dominated by [2,2]; the second [2,2] repeats the first; [1,6] by [1,5];
    # [4,2] by [2,2]; NaN/inf rows are left out
    assert pareto_front(points) == [9, 1, 0, 3]
    assert pareto_front(np.empty((0, 2))) == []
    rng = np.random.default_rng(0)
    cloud = rng.random((200, 2))
    front = pareto_front(cloud)
    for i in range(len(cloud)):  # brute force: kept iff nobody dominates it
        dominated = any((cloud[j] <= cloud[i]).all() and (cloud[j] < cloud[i]).any()
                        for j in range(len(cloud)))
        assert (i in front) == (not dominated)


def test_pareto_lists_the_last_generation_and_prints_a_table() -> None:
    trainer = gate_trainer(warmup_steps=4, cost_ramp_steps=4,
                           structure_options={"popsize": 8})
    with pytest.raises(ValueError, match="structure_cost"):
        HybridTrainer(GatedLinear(), "reinforce").pareto()
    assert trainer.pareto() == []
    trainer.fit(gated_data(), epochs=3)
    front = trainer.pareto()
    last = trainer.last_generation
    assert 1 <= len(front) <= len(last["fitness"]) == 8
    costs = [p["cost"] for p in front]
    assert costs == sorted(costs) and len(set(costs)) == len(costs)
    for p in front:
        assert p["cost"] == open_gates(p["structure"])
        assert not any(f <= p["fitness"] and c <= p["cost"] and (f, c) != (p["fitness"],
                       p["cost"]) for f, c in zip(last["fitness"], last["cost"], strict=True))
    out = io.StringIO()
    table = trainer.print_pareto(file=out)
    assert out.getvalue() == table + "\n"
    assert table.splitlines()[1].split() == ["fitness", "cost", "structure"]
    assert len(table.splitlines()) == 2 + len(front)


def test_fit_prints_the_front_when_progress_is_on(capsys) -> None:
    trainer = gate_trainer(progress=True)
    trainer.fit(gated_data(), epochs=1)
    assert "Pareto front of the last generation" in capsys.readouterr().err


def test_resume_with_a_cost_is_exact() -> None:
    def make():
        # fair_steps in steps: a fraction would refer to each fit's own epochs
        return gate_trainer(3, warmup_steps=2, cost_ramp_steps=3, fair_steps=4)

    data = gated_data()
    straight = make()
    straight.fit(data, epochs=2)
    first = make()
    first.fit(data, epochs=1)
    state = roundtrip(first.state_dict())
    torch.manual_seed(123)  # the state carries the RNGs
    resumed = make()
    resumed.load_state_dict(state)
    resumed.fit(data, epochs=2)
    assert resumed.step_count == straight.step_count == 8
    assert plain_equal(resumed.state_dict(), straight.state_dict())
    front = [(p["fitness"], p["cost"]) for p in resumed.pareto()]
    assert front and front == [(p["fitness"], p["cost"]) for p in straight.pareto()]
    assert [m["cost_weight"] for m in resumed.history] == \
        [m["cost_weight"] for m in straight.history[4:]]


@pytest.mark.parametrize("cost, match", [
    (lambda s: math.nan, "finite"), (lambda s: math.inf, "finite"),
    (lambda s: "big", "'big'"), (lambda s: torch.ones(2), "finite"),
    (lambda s: None, "None"),
])
def test_a_bad_cost_names_the_structure(cost, match) -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(GatedLinear(), "reinforce", adam(0.05),
                            loss=nn.functional.mse_loss, structure_cost=cost, search_compute=None)
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(ValueError, match=f"structure_cost of structure .*gates.*{match}"):
        trainer.fit(gated_data(), epochs=1)
    assert trainer.step_count == 0
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters(),
                                                 strict=True))


def test_a_tensor_cost_counts() -> None:
    trainer = gate_trainer()
    trainer.structure_cost = lambda s: torch.tensor(s["gates"]).sum()
    trainer.fit(gated_data(), epochs=1)
    assert trainer.history[-1]["cost_mean"] >= 0


@pytest.mark.parametrize("kwargs, match", [
    ({"structure_cost": 3}, "structure_cost must be a callable"),
    ({"structure_cost": open_gates, "cost_weight": -1.0}, "cost_weight .* got -1.0"),
    ({"structure_cost": open_gates, "cost_weight": math.nan}, "cost_weight"),
    ({"structure_cost": open_gates, "cost_ramp_steps": 2.5}, r"cost_ramp_steps .* \[0, 1\].* 2.5"),
    ({"structure_cost": open_gates, "cost_start": -1}, r"cost_start .* int >= 0 .* -1; e\.g\."),
    ({"structure_cost": open_gates, "cost_start": True}, "cost_start .* True"),
    ({"structure_cost": open_gates, "cost_schedule": abs, "cost_start": 0.2},
     "give the schedule alone"),
    ({"cost_start": 0.2}, "pass structure_cost="),
    ({"structure_cost": open_gates, "cost_schedule": 0.1}, "cost_schedule must be"),
    ({"structure_cost": open_gates, "cost_schedule": abs, "cost_ramp_steps": 3},
     "give the schedule alone"),
    ({"cost_weight": 0.5}, "pass structure_cost="),
])
def test_bad_cost_arguments_name_the_fix(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        HybridTrainer(GatedLinear(), "reinforce", **kwargs)


def test_a_fractional_cost_schedule_without_a_plan_warns_once() -> None:
    """Steps taken without fit and without total_steps have no plan: the default
    schedule (fractions of the training) cannot be resolved, the cost is at full weight,
    and the trainer says so once, naming the fix."""
    trainer = HybridTrainer(GatedLinear(), "ga", adam(0.05), loss=nn.functional.mse_loss,
                            structure_cost=open_gates, structure_options={"popsize": 4})
    x, y = gated_data()[0]
    with pytest.warns(UserWarning, match=r"no plan.*total_steps"):
        trainer.step(x, y)
    assert trainer.cost_window() == (0, 0) and trainer.history == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.step(x, y)  # once only
    planned = HybridTrainer(GatedLinear(), "ga", adam(0.05), loss=nn.functional.mse_loss,
                            structure_cost=open_gates, total_steps=100)
    assert planned.cost_window() == (100, 0)  # no signal yet: withheld (gates, the loss)
    planned.cost_withheld = False
    assert planned.cost_window() == (60, 10)  # else at COST_LATEST; full weight by the
    # final phase (the last 30 steps by default)


def test_the_default_cost_waits_until_generations_tell_structures_apart() -> None:
    """The default schedule starts the cost at the first generation whose best fitness
    is COST_SIGNAL below its median (strictly), not before DEFAULT_COST_START and at the
    latest at COST_LATEST, its ramp ending by the final phase; an explicit
    cost_start is kept as given; a state from before the signal loads as the old
    schedule."""
    def planned(**options):
        trainer = HybridTrainer(GatedLinear(), "ga", adam(0.05), loss=nn.functional.mse_loss,
                                structure_cost=open_gates, total_steps=100, final_steps=0.1,
                                **options)
        trainer.cost_withheld = False  # the start at COST_LATEST (withheld: below)
        return trainer

    trainer = planned()  # the final phase is the last 10 steps
    assert trainer.cost_window() == (60, 30) and trainer.cost_weight_at(59) == 0.0
    assert trainer.cost_weight_at(90) == 1.0  # full weight when the final phase starts
    trainer.step_count = 45
    trainer.remember(np.zeros((4, 8)), [1.0, 1.0, 0.95, 0.91])  # 9 % below: alike
    trainer.remember(np.zeros((4, 8)), [0.0, 0.0, 0.0, 0.0])  # no gap at all
    assert trainer.cost_signal_at is None and trainer.cost_window() == (60, 30)
    trainer.remember(np.zeros((4, 8)), [1.0, 1.0, math.nan, 0.89])  # 11 % below
    assert trainer.cost_signal_at == 45 and trainer.cost_window() == (45, 40)
    trainer.step_count = 50
    trainer.remember(np.zeros((4, 8)), [1.0, 1.0, 1.0, 0.1])  # the first signal stays
    assert trainer.cost_window() == (45, 40)
    assert trainer.cost_weight_at(45) == 0.0 and trainer.cost_weight_at(65) == 0.5
    early = planned()
    early.step_count = 10  # before DEFAULT_COST_START: the cost starts there
    early.remember(np.zeros((2, 8)), [-2.0, -2.5])  # negative fitness: 11 % of |median|
    assert early.cost_signal_at == 10 and early.cost_window() == (30, 40)
    restored = planned()
    restored.load_state_dict(roundtrip(trainer.state_dict()))
    assert restored.cost_signal_at == 45 and restored.cost_window() == (45, 40)
    old = trainer.state_dict()  # a checkpoint written before the signal existed
    del old["search"]["cost_signal_at"]
    restored = planned()
    restored.load_state_dict(seal(old))
    assert restored.cost_window() == (30, 40)  # the schedule it was trained under
    assert planned(cost_start=0.2).cost_window() == (20, 40)
    assert planned(warmup_steps=5).cost_window() == (5, 0)
    explicit = planned(cost_start=0.2)
    explicit.step_count = 45
    explicit.remember(np.zeros((4, 8)), [1.0, 1.0, 1.0, 0.1])
    assert explicit.cost_signal_at is None  # its schedule is the user's


def test_fit_pins_a_plan_for_the_default_cost_schedule_alone() -> None:
    """Without a float fair_steps or final_steps (search_compute=None, weight_step
    "sampled"), fit still pins its plan for the cost's default schedule (fractions of
    it): the cost is not at full weight from step 0; total_steps is accepted for it;
    with a final phase past COST_LATEST the cost still comes on before it."""
    data = gated_data()

    def make(**options):
        torch.manual_seed(0)
        trainer = HybridTrainer(GatedLinear(), "ga", adam(0.05), loss=nn.functional.mse_loss,
                                structure_cost=open_gates, structure_options={"popsize": 4},
                                seed=0, **options)
        trainer.cost_withheld = False  # the start at COST_LATEST (withheld: below)
        return trainer

    trainer = make(search_compute=None, weight_step="sampled")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no plan" warning
        trainer.fit(data, epochs=10)
    start, _ = trainer.cost_window()
    assert trainer.fair_plan == 10 * len(data) and start >= 0.3 * trainer.fair_plan
    assert [m["cost_weight"] for m in trainer.history[:start]] == [0.0] * start
    planned = make(search_compute=None, weight_step="sampled", fair_steps=10,
                   total_steps=40)
    assert planned.cost_window() == (24, 16)  # no signal: 60 %, full weight by the end
    late = make(final_steps=0.45, total_steps=40)  # the search ends at step 22
    start, ramp = late.cost_window()
    assert start == 22 and ramp == 0 and late.cost_weight_at(22) == 1.0


def test_without_a_signal_the_default_withholds_a_gate_cost_and_weighs_the_noise() -> None:
    """With gates and the loss as the fitness, the default schedule waits for the
    COST_SIGNAL however late: without one the cost stays off also in the final phase,
    the gate parsimony weighs the gates instead and fit warns, naming the fixes; a late
    signal starts the cost, ramped to full weight by the final phase. Without gates, or
    with another fitness, or a cost_start, the cost starts at COST_LATEST as before."""
    def make(model=None, **options):
        torch.manual_seed(0)
        options.setdefault("structure_cost", open_gates)
        return HybridTrainer(model or GatedLinear(), "ga", adam(0.05),
                             loss=nn.functional.mse_loss, structure_options={"popsize": 4},
                             seed=0, **options)

    trainer = make(total_steps=100)
    assert trainer.cost_window() == (100, 0)
    assert not trainer.cost_held_back(59) and trainer.cost_held_back(60)
    assert [trainer.cost_weight_at(s) for s in (60, 99, 100, 150)] == [0.0] * 4  # past
    # the plan too (a second fit beyond total_steps)
    early_final = make(total_steps=100, final_steps=0.5)  # the search ends before 60 %
    assert not early_final.cost_held_back(49) and early_final.cost_held_back(50)
    unbounded = make(total_steps=100, search_compute=None)  # no final phase: no stand-in
    assert unbounded.cost_window() == (60, 40) and unbounded.cost_weight_at(70) == 0.25
    unscreened = make(total_steps=100)
    unscreened.screen_closings = unscreened.prune_open = False  # nothing weighs the gates
    assert unscreened.cost_window() == (60, 10) and unscreened.cost_weight_at(70) == 1.0
    trainer.step_count = 80  # in the final phase (the last 30 steps), no signal
    assert trainer._parsimony_on()
    trainer.gate_parsimony = False  # no stand-in: the cost is not withheld
    assert trainer.cost_window() == (60, 10) and not trainer._parsimony_on()
    late = make(total_steps=100)
    late.step_count = 65  # a signal past COST_LATEST: the cost starts there
    late.note_cost_signal([1.0, 1.0, 1.0, 0.5])
    assert late.cost_window() == (65, 5) and not late.cost_held_back(80)
    assert late.cost_weight_at(70) == 1.0
    other_fitness = make(total_steps=100, fitness=lambda out, y: -out.mean())
    assert other_fitness.cost_window() == (60, 10)
    assert make(total_steps=100, cost_start=0.3).cost_window() == (30, 40)
    ungated = make(nn.Sequential(nn.Linear(8, 1), Choice(nn.ReLU(), nn.Tanh())),
                   total_steps=100, structure_cost=lambda s: 0.0)
    assert ungated.cost_window() == (60, 10)
    quiet = make()  # a short run whose generations never tell the gates apart
    quiet.note_cost_signal = lambda objectives: None
    with pytest.warns(UserWarning, match=r"structure cost was not weighed.*larger learning "
                                         r"rate.*cost_start"):
        quiet.fit(gated_data(), epochs=4)
    assert quiet.cost_signal_at is None and quiet.cost_held_back(quiet.step_count)
    assert all(m["cost_weight"] == 0.0 for m in quiet.history)
    assert quiet.gate_noise  # the final phase weighed the gates by their noise
    penalties = quiet._gate_penalties()
    assert quiet._parsimony([[1.0] * 8]).item() == pytest.approx(sum(penalties.values()))
    with pytest.raises(ValueError, match=r"cost_withheld must be True or False"):
        quiet.cost_withheld = "yes"
        quiet.fit(gated_data(), epochs=5)
