"""The final phase of fit (``final_steps``): the last steps train the recommended
structure alone, ask nothing of the structure optimizer and cost one forward pass of the
batch each; bad values are refused before anything changes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import plain_equal, roundtrip
from hybrid_net import Net, straight_and_resumed
from hybrid_net import data as shared_data
from nondiff.benchmarks.hybrid_tasks.acceptance import search
from nondiff.hybrid.selection import PAIR_ENUMERATE, combined_moves, gate_openings, two_moves
from nondiff.hybrid.structure import Choice, Gates
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.optim.spaces import Binary
from nondiff.problems.hybrid.acceptance import make_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def data(device, batches: int = 5, rows: int = 16):
    return shared_data(device, batches, rows)


@pytest.mark.parametrize("search_compute,final", [(None, 4), ("shared", 0.2), (1.0, 3)])
def test_the_last_steps_train_the_recommended_structure_alone(device, search_compute,
                                                              final) -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), "ga", seed=0, search_compute=search_compute,
                            final_steps=final, structure_options={"popsize": 4},
                            select_batches=0)  # the final phase alone: no selection
    seen = []

    def record(metrics, trainer):
        seen.append((trainer.structure_optimizer.counters["iterations"],
                     trainer.forward_examples, trainer.structure(current=True),
                     trainer.recommended()))

    trainer.callbacks.append(record)
    history = trainer.fit(data(device), epochs=4)
    steps = round(final * 20) if isinstance(final, float) else final
    assert [m.get("final", 0.0) for m in history] == [0.0] * (20 - steps) + [1.0] * steps
    last = seen[-steps - 1:]
    assert len({iterations for iterations, *_ in last}) == 1  # no tell in the final phase
    assert [b - a for (_, a, *_), (_, b, *_) in itertools.pairwise(last)] == [16] * steps
    for _, _, current, recommended in last[1:]:
        assert current["act"] == recommended["act"]
        assert (current["gates"] == recommended["gates"]).all()
    assert all(math.isnan(m["fitness_best"]) for m in history[-steps:])


@pytest.mark.parametrize("value", [-1, 1.0, 1.5, math.nan, True, "0.1"])
def test_a_bad_final_steps_names_the_argument_value_and_fix(value) -> None:
    torch.manual_seed(0)
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"final_steps must be .* got .*; e\.g\. 0\.1"):
        HybridTrainer(model, "ga", final_steps=value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_fraction_counts_over_all_fit_calls_with_total_steps() -> None:
    """fit once per epoch with total_steps: one final phase at the end of the training,
    the same steps as one fit of all epochs (not a final phase every epoch)."""

    def finals(parts: bool) -> list[float]:
        torch.manual_seed(0)
        trainer = HybridTrainer(Net(), "ga", seed=0, final_steps=0.2, total_steps=20,
                                structure_options={"popsize": 4})
        epochs = range(1, 5) if parts else [4]
        return [m.get("final", 0.0) for e in epochs for m in trainer.fit(data("cpu"), e)]

    assert finals(parts=False) == [0.0] * 16 + [1.0] * 4
    assert finals(parts=True) == finals(parts=False)


def test_without_total_steps_the_first_fits_plan_is_kept_and_a_later_one_warns() -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0, final_steps=0.2,
                            structure_options={"popsize": 4})
    first = [m.get("final", 0.0) for m in trainer.fit(data("cpu"), 2)]
    assert first == [0.0] * 8 + [1.0] * 2 and trainer.fair_plan == 10
    state = trainer.state_dict()
    assert state["counters"]["fair_plan"] == 10
    with pytest.warns(UserWarning, match=r"and final_steps=0\.2 are fractions of the 10 "
                                         r"steps .* starts at step 8 .*total_steps=20"):
        later = [m.get("final", 0.0) for m in trainer.fit(data("cpu"), 4)]
    assert later == [1.0] * 10  # past the planned end: still the final phase
    resumed = HybridTrainer(Net(), "ga", seed=0, final_steps=0.2,
                            structure_options={"popsize": 4})
    resumed.load_state_dict(state)
    assert resumed.fair_plan == 10 and resumed.final_at(8) and not resumed.final_at(7)


def test_total_steps_with_only_a_final_fraction_is_accepted_and_an_int_pair_refused() -> None:
    HybridTrainer(Net(), "ga", fair_steps=5, final_steps=0.1, total_steps=20)
    with pytest.raises(ValueError, match=r"total_steps must be .* got total_steps=20 with "
                                         r"final_steps=2 and fair_steps=5; e\.g\."):
        HybridTrainer(Net(), "ga", fair_steps=5, final_steps=2, total_steps=20)


def record_final_scores(trainer: HybridTrainer) -> list:
    """Wrap ``trainer.evaluate`` to record, at each final step, the encoded candidates
    it scores and their scores."""
    scored, evaluate = [], trainer.evaluate

    def spy(values, x, y):
        out = evaluate(values, x, y)
        if trainer.final_at(trainer.step_count):
            scored.append(([trainer.space.encode(v).tolist() for v in values], out))
        return out

    trainer.evaluate = spy
    return scored


def test_the_final_phase_races_a_pool_on_several_batches_within_the_bound(device) -> None:
    """select_batches: the first final steps race a pool (the recommendation, the most
    asked structures of the last generations and the recommendation's neighbours) on
    the same rows, the better half going on after each batch, and the best sum is
    trained and returned; the optimizer is not told; the evaluations stay within
    search_compute times the weight steps' examples."""
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), "ga", seed=0, search_compute=2.0,
                            final_steps=0.25, select_batches=2,
                            structure_options={"popsize": 4})
    trainer.late_select = None  # the first selection alone (test_late_selection.py)
    trainer.prune_open = False  # its pool alone (the pruned starts: test_gate_closing.py)
    seen, scored = [], record_final_scores(trainer)
    trainer.callbacks.append(lambda m, t: seen.append(
        (t.structure_optimizer.counters["iterations"], t.forward_examples)))
    history = trainer.fit(data(device), epochs=4)  # 20 steps of 16 rows, the last 5 final
    assert [m.get("final", 0.0) for m in history] == [0.0] * 15 + [1.0] * 5
    assert len(scored) == 2  # two batches: the whole pool, then its better half
    (first, f1), (second, f2) = scored
    assert len({tuple(c) for c in first}) == len(first) >= 4
    assert len(second) == max(2, math.ceil(len(first) / 2))
    best_half = sorted(range(len(first)), key=lambda i: (f1[i], i))[:len(second)]
    assert second == [first[i] for i in sorted(best_half)]
    totals = [f1[first.index(c)] + f2[j] for j, c in enumerate(second)]
    assert trainer.selected == second[int(np.argmin(totals))]
    rec = trainer.selection["candidates"][0]
    assert first[0] == rec  # the recommendation first, then its neighbours among others
    one_away = [c for c in first if sum(a != b for a, b in zip(c, rec, strict=True)) == 1]
    assert len(one_away) >= 2
    chosen = trainer.space.decode(np.asarray(trainer.selected))
    for current in (trainer.recommended(), trainer.structure(current=True)):
        assert current["act"] == chosen["act"]
        assert (current["gates"] == chosen["gates"]).all()
    assert len({iterations for iterations, _ in seen[-6:]}) == 1  # no tell in the phase
    steps = [b - a for (_, a), (_, b) in itertools.pairwise(seen[-6:])]
    assert steps == [16 * (1 + len(first)), 16 * (1 + len(second))] + [16] * 3
    assert trainer.forward_examples - trainer.weight_examples <= 2.0 * trainer.weight_examples
    state = trainer.state_dict()["search"]
    assert state["selected"] == trainer.selected and len(state["recent"]) <= 4


@pytest.mark.parametrize("seed", [1, 7])
def test_four_selection_batches_descend_in_two_stages(device, seed) -> None:
    """select_batches=4: two stages of two batches; the second races the first stage's
    winner, the winner with the first stage's other winning moves applied
    (combined_moves, when one differs) and those of its neighbours the first stage did
    not race, and its winner is selected."""
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), "ga", seed=seed, search_compute=2.0,
                            final_steps=0.3, select_batches=4,
                            structure_options={"popsize": 4})
    trainer.late_select = None  # the first selection alone (test_late_selection.py)
    trainer.screen_gates = False  # its stages alone (the screen: test_gate_screen.py)
    trainer.prune_open = False  # and without the pruned starts (test_gate_closing.py)
    scored = record_final_scores(trainer)
    trainer.fit(data(device), epochs=4)  # 20 steps, the last 6 final
    assert trainer.selection["stages"] == [2, 2] and len(scored) == 4
    (a, fa), (b, fb), (c, fc), (d, fd) = scored
    assert set(map(tuple, b)) <= set(map(tuple, a)) and len(b) == max(2, math.ceil(len(a) / 2))
    first_sums = {tuple(row): fa[a.index(row)] + fb[j] for j, row in enumerate(b)}
    winner = min(first_sums, key=lambda row: (first_sums[row], a.index(list(row))))
    assert c[0] == list(winner) and len(c) >= 2
    assert not (set(map(tuple, c[1:])) & set(map(tuple, a)))  # raced before: left out
    combined = combined_moves(a[0], a, list(fa), list(winner))
    rest = c[1:]
    if combined is not None and tuple(combined) not in set(map(tuple, a)):
        assert rest[0] == combined
        rest = rest[1:]
    away = [sum(u != v for u, v in zip(row, winner, strict=True)) for row in rest]
    assert away == sorted(away) and set(away) <= {1, 2}  # single moves, then pairs
    for row in (r for r, n in zip(rest, away, strict=True) if n == 2):  # two gates opened
        changed = [i for i, (u, v) in enumerate(zip(row, winner, strict=True)) if u != v]
        assert all(i < 4 and winner[i] == 0.0 and row[i] == 1.0 for i in changed)
    rest = [row for row, n in zip(rest, away, strict=True) if n == 1]

    def move(row, base):
        return tuple((i, v) for i, (v, b) in enumerate(zip(row, base, strict=True)) if v != b)
    raced = {move(row, a[0]) for row in a}
    again = [move(row, winner) in raced for row in rest]
    assert again == sorted(again)  # the moves the first stage had no room for first
    assert set(map(tuple, d)) <= set(map(tuple, c))
    second = {tuple(row): fc[c.index(row)] + fd[j] for j, row in enumerate(d)}
    assert tuple(trainer.selected) == min(second, key=lambda row: (second[row],
                                                                    c.index(list(row))))


def test_the_pool_puts_the_cheaper_neighbours_first_under_a_structure_cost() -> None:
    """A structure cost orders the neighbours cheapest first: with room for few
    candidates, the ones that close a gate get in before those that open one."""
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4},
                            structure_cost=lambda s: float(np.sum(s["gates"])))
    rec = trainer.space.encode({"gates": np.array([1, 0, 1, 0]), "act": "relu"}).tolist()
    near = trainer._near(rec)
    assert len(near) == 4 + 2  # four gates flipped, two other activations
    decoded = [trainer.space.decode(np.asarray(c)) for c in near]
    costs = [float(np.sum(d["gates"])) for d in decoded if d["act"] == "relu"]
    assert costs == sorted(costs) and costs[:2] == [1.0, 1.0]  # the gates' moves
    assert [d["act"] != "relu" for d in decoded] == [False, True, False, True, False, False]


class WideNet(torch.nn.Module):
    """64 input gates and a Choice of three activations (the README's digits model)."""

    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates(64)
        self.hidden = torch.nn.Linear(64, 8)
        self.act = Choice({"relu": torch.nn.ReLU(), "tanh": torch.nn.Tanh(),
                           "none": torch.nn.Identity()})
        self.out = torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(self.gates(x))))


@pytest.mark.parametrize("cost", [False, True])
def test_every_declaration_takes_turns_in_the_neighbours(cost) -> None:
    """64 gate flips would fill a pool of 24 and, in a random order, leave out the two
    moves of the activation beside them (each is in with chance about 1/3); the leaves
    take turns, so both are among the first four, with or without a cost."""
    torch.manual_seed(0)
    extra = {"structure_cost": lambda s: float(np.sum(s["gates"]))} if cost else {}
    trainer = HybridTrainer(WideNet(), "ga", seed=0, **extra)
    rec = trainer.space.encode({"gates": np.ones(64, bool), "act": "none"}).tolist()
    for step in range(5):  # the seeded order changes with the step count
        trainer.step_count = step
        near = trainer._near(rec)
        acts = [trainer.space.decode(np.asarray(c))["act"] for c in near[:4]]
        assert len(near) == 64 + 2 and sorted(a for a in acts if a != "none") == ["relu",
                                                                                  "tanh"]


@pytest.mark.parametrize("select_batches, stop_after", [(3, 1), (4, 3)])
def test_resume_inside_the_selection_is_exact(select_batches, stop_after) -> None:
    """Interrupted after the first batch of a one-stage race, or inside the second
    stage of a descent, a resumed trainer selects and trains exactly as one run."""
    def make():
        torch.manual_seed(0)
        trainer = HybridTrainer(Net(), "ga", seed=3, search_compute=2.0, final_steps=0.3,
                                select_batches=select_batches,
                                structure_options={"popsize": 4})
        trainer.late_select = None  # the first selection alone (test_late_selection.py)
        return trainer

    straight, first, resumed = straight_and_resumed(
        make, data("cpu"), 4, lambda metrics, trainer: trainer.selection is not None
        and trainer.selection["batches"] == stop_after)
    assert straight.selection["stage"] == len(straight.selection["stages"]) - 1
    assert first.selected is None and resumed.selected is not None
    assert plain_equal(resumed.state_dict(), straight.state_dict())


def test_by_default_the_search_is_bounded_with_a_final_phase() -> None:
    """Issue 17: a user who passes nothing gets at most twice the weight training's
    forward examples; search_compute=None is the unbounded search of before."""
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0)
    assert (trainer.search_compute, trainer.final_steps, trainer.select_batches) == (1.0, 0.3, 4)
    history = trainer.fit(data("cpu", batches=10), epochs=4)
    assert [m.get("final", 0.0) for m in history][-13:] == [0.0] + [1.0] * 12
    assert trainer.forward_examples <= 2 * trainer.weight_examples == 2 * 40 * 16
    unbounded = HybridTrainer(Net(), "ga", seed=0, search_compute=None)
    assert unbounded.final_steps == 0
    unbounded.fit(data("cpu", batches=10), epochs=4)
    assert unbounded.forward_examples > 5 * unbounded.weight_examples


@pytest.mark.parametrize("value", [-1, 1.5, True, "4"])
def test_a_bad_select_batches_names_the_argument_value_and_fix(value) -> None:
    with pytest.raises(ValueError, match=r"select_batches must be an int >= 0 .* got .*; "
                                         r"e\.g\. 4"):
        HybridTrainer(Net(), "ga", select_batches=value)


def test_generation_winners_are_archived_and_enter_the_pool() -> None:
    """The best of each told generation is archived (most wins first) and kept in the
    state; the first stage's pool holds the archive's winners though they were asked
    only long before the last generations (a structure found once and lost)."""
    trainer = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4})
    found = [1.0, 0.0, 0.0, 1.0, 0.0]  # gates 0 and 3 open, relu
    others = [[0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0, 2.0]]
    trainer.remember([found, *others], [0.2, 0.5, 0.6])
    for _ in range(6):  # later generations: found is never asked again
        trainer.remember(others, [0.4, 0.3])
    assert trainer.winners[0] == [others[1], 6, 0] and trainer.winners[1] == [found, 1, 0]
    assert all(found not in generation for generation in trainer.recent)
    state = roundtrip(trainer.state_dict())
    loaded = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4})
    loaded.load_state_dict(state)
    assert loaded.winners == trainer.winners
    selection = {"stages": [2], "sizes": [6], "stage": -1, "batches": 0, "target": 2}
    assert loaded._next_stage(selection, others[0], first=True)
    assert found in loaded.selection["candidates"]


@pytest.mark.parametrize("sizes, final_steps, select_batches", [
    ([64] * 8 + [18], 0.1, 4),  # a short last batch among the final steps
    ([64] * 8 + [4, 4], 2, 3),  # the race's batches smaller than the mean
    ([50] * 6 + [3] * 4, 0.2, 1),
])
@pytest.mark.parametrize("epochs", [1, 3])
def test_the_selection_stays_within_the_bound_with_uneven_batches(
        sizes, final_steps, select_batches, epochs) -> None:
    """The selection's budget counts the rows the final steps will really earn (the
    batches at the same places of an epoch), not the mean batch: evaluations stay within
    search_compute times the weight examples."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for n in sizes:
        x = torch.randn(n, 4, generator=generator)
        batches.append((x, (x[:, 0] * x[:, 1] > 0).long()))
    for name in ("ga", "reinforce"):
        torch.manual_seed(0)
        trainer = HybridTrainer(Net(), name, seed=0, final_steps=final_steps,
                                select_batches=select_batches)
        trainer.fit(batches, epochs=epochs)
        evaluations = trainer.forward_examples - trainer.weight_examples
        assert evaluations <= 1.0 * trainer.weight_examples, (name, evaluations)


def test_a_refused_selection_step_changes_nothing_and_the_retry_goes_on() -> None:
    """A structure cost that is NaN for a neighbour refuses the first final step with a
    ValueError naming the structure, before anything changes: the selection is not
    started, and once the cost is fixed the same batch starts it; a checkpoint taken
    after the refusal resumes."""
    torch.manual_seed(0)
    broken = {"on": False}

    def cost(structure):
        closed = not structure["gates"].any()
        return math.nan if broken["on"] and closed else float(structure["gates"].sum())

    trainer = HybridTrainer(Net(), "ga", seed=0, total_steps=20, final_steps=0.3,
                            select_batches=4, structure_cost=cost, search_compute=2.0,
                            structure_options={"popsize": 4})
    batches = data("cpu", batches=10)
    x, y = batches[0]
    for _ in range(14):
        trainer.step(x, y)
    examples, broken["on"] = trainer.forward_examples, True
    trainer.recent, trainer.winners = [], []  # the pool: the recommendation and neighbours
    trainer.structure_optimizer.recommend = lambda: trainer.space.encode(
        {"gates": np.array([1, 0, 0, 0], dtype=bool), "act": "relu"})
    with pytest.raises(ValueError, match=r"structure_cost of structure .*finite"):
        trainer.step(x, y)
    assert trainer.selection is None and trainer.selected is None
    assert trainer.step_count == 14 and trainer.forward_examples == examples
    broken["on"] = False
    trainer.step(x, y)
    assert trainer.selection is not None and trainer.selection["batches"] == 1


def test_non_finite_scores_in_the_race_are_counted_and_an_all_nan_batch_warns() -> None:
    """A candidate scoring NaN loses the race and is counted (the final steps' metric
    select_nonfinite); a batch where every candidate is non-finite warns."""
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0, search_compute=2.0, final_steps=0.25,
                            select_batches=2, structure_options={"popsize": 4})
    trainer.late_select = None  # the first selection alone (test_late_selection.py)
    evaluate = trainer.evaluate
    calls = {"final": 0}

    def nan_in_the_race(values, x, y):
        out = np.asarray(evaluate(values, x, y), dtype=np.float64)
        if trainer.final_at(trainer.step_count):
            calls["final"] += 1
            out[1:] = np.nan if calls["final"] == 1 else out[1:]
            if calls["final"] == 2:
                out[:] = np.nan
        return out

    trainer.evaluate = nan_in_the_race
    with pytest.warns(UserWarning, match="every candidate of the final selection"):
        history = trainer.fit(data("cpu"), epochs=4)
    first = len(trainer.selection["candidates"]) - 1
    assert history[-1]["select_nonfinite"] == first + len(trainer.selection["alive"])
    assert trainer.selected == trainer.selection["candidates"][0]  # the only finite one


def test_combined_moves_apply_every_other_winning_move_where_nothing_touched_it() -> None:
    """combined_moves: the moves (one or two entries from the start) that beat the start
    on the common batch, applied to the winner best first; a move on entries already
    changed is skipped; two items swapped stay a permutation; None without another
    winning move, or without a finite score of the start."""
    start = [1.0, 1.0, 1.0, 1.0]
    rows = [start, [0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0]]
    scores = [0.5, 0.4, 0.45, 0.6, 0.1, 0.3]  # [0, 0, 0, 0] is 4 away: not a move
    assert combined_moves(start, rows, scores, winner=[1, 1, 1, 0]) == [0, 0, 1, 0]
    assert combined_moves(start, rows, [0.5, 0.9, 0.9, 0.9, 0.1, 0.3], [1, 1, 1, 0]) is None
    assert combined_moves(start, rows, [math.nan, 0.4, 0.45, 0.6, 0.1, 0.3],
                          [1, 1, 1, 0]) is None
    assert combined_moves(start, rows, [0.5, None, 0.45, 0.6, 0.1, 0.3],
                          [1, 1, 1, 0]) == [1, 0, 1, 0]  # None: not scored
    order = [0.0, 1.0, 2.0, 3.0, 4.0]
    swaps = [order, [1, 0, 2, 3, 4], [0, 2, 1, 3, 4], [0, 1, 2, 4, 3]]
    out = combined_moves(order, swaps, [1.0, 0.5, 0.6, 0.7], winner=[1, 0, 2, 3, 4])
    assert out == [1, 0, 2, 4, 3] and sorted(out) == order  # (1 2) overlaps the winner


def test_a_later_stage_races_the_winner_with_the_other_winning_moves_first() -> None:
    """_next_stage: the stage after one whose first batch scored the start's moves races
    the winner, then the winner with every other move that beat the start applied
    (combined_moves), then the winner's neighbours not raced before."""
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4})
    start = [1.0, 1.0, 1.0, 1.0, 0.0]  # gates open, the first activation
    moves = [[0.0, 1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 1.0, 0.0],
             [1.0, 1.0, 1.0, 1.0, 1.0]]
    sel = {"stages": [2, 2], "sizes": [10, 10], "stage": 0, "batches": 2, "target": 4,
           "left": None, "candidates": [start, *moves], "sums": [1.0, 0.8, 0.9, 1.2, 0.6],
           "alive": [0, 1, 4], "first": [0.5, 0.4, 0.45, 0.6, 0.3]}
    winner = moves[3]  # the activation changed: the best on both batches
    assert trainer._next_stage(sel, winner, first=False)
    assert sel["stage"] == 1 and sel["candidates"][0] == winner
    assert sel["candidates"][1] == [0.0, 0.0, 1.0, 1.0, 1.0]  # gates 0 and 1 closed too
    raced = {tuple(c) for c in [start, *moves]}
    assert not raced & {tuple(c) for c in sel["candidates"][1:]}
    sel["first"] = [0.5, 0.9, 0.9, 0.9, 0.3]  # no other move beat the start
    sel["stage"], sel["candidates"] = 0, [start, *moves]
    assert trainer._next_stage(sel, winner, first=False)
    assert all(sum(a != b for a, b in zip(c, winner, strict=True)) == 1
               for c in sel["candidates"][1:])
    # a winner that is no move of the start (a structure the last generations asked
    # often): the start with its winning moves applied is raced too
    frequent = [0.0, 1.0, 1.0, 0.0, 2.0]  # three entries from the start
    sel["first"] = [0.5, 0.4, 0.45, 0.9, 0.9, 0.35]
    sel["stage"], sel["candidates"] = 0, [start, *moves, frequent]
    assert trainer._next_stage(sel, frequent, first=False)
    assert sel["candidates"][0] == frequent
    assert [0.0, 0.0, 1.0, 1.0, 0.0] in sel["candidates"][1:3]  # start, gates 0, 1 closed


def test_room_left_in_a_pool_races_pairs_of_gate_openings() -> None:
    """Inputs that matter only together (the sign of a product) stay closed under single
    moves: opening one alone changes nothing but the cost. Once every single move has a
    place, the room left in a stage's pool races pairs of gate openings, after the single
    moves; a space with one closed gate has no pair, and nothing else is paired."""
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4})
    start = [0.0, 0.0, 0.0, 1.0, 0.0]  # gates 0, 1 and 2 closed

    def pool(start, size):
        sel = {"stages": [2, 2], "sizes": [size, size], "stage": -1, "batches": 0,
               "target": 4, "left": None}
        assert trainer._next_stage(sel, start, first=True)
        return sel["candidates"]

    candidates = pool(start, 24)
    away = [sum(a != b for a, b in zip(c, start, strict=True)) for c in candidates]
    assert away == [0] + [1] * 6 + [2] * 3  # the start, its 6 neighbours, 3 pairs
    assert sorted(candidates[7:]) == [[0.0, 1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0, 0.0],
                                      [1.0, 1.0, 0.0, 1.0, 0.0]]  # two gates opened
    assert len(pool(start, 8)) == 8  # the pairs only fill the room the budget leaves
    assert len(pool([1.0, 0.0, 1.0, 1.0, 0.0], 24)) == 7  # one closed gate: no pair
    # a later stage: a pair raced (and lost) in the stage before is not raced again, and
    # the pool still fills with the others
    raced = [start, [1.0, 1.0, 0.0, 1.0, 0.0]]  # gates 0 and 1 opened together
    sel = {"stages": [2, 2], "sizes": [24, 24], "stage": 0, "batches": 2, "target": 4,
           "left": None, "candidates": raced, "sums": [0.0, 1.0], "alive": [0, 1],
           "first": [0.5, 0.6]}
    assert trainer._next_stage(sel, start, first=False)
    later = sel["candidates"]
    assert raced[1] not in later and len(later) == 1 + 6 + 2
    assert len({tuple(c) for c in later}) == len(later)


def test_a_pair_of_inputs_that_matter_together_is_found_by_the_selection() -> None:
    """head-choice (the label is the sign of x0 x3), CEM, seed 4: CEM's distribution
    left x0 and x3 apart from its second generation on, and every gate closed before
    the final phase; the first selection opens both at once (a pair of gate openings)
    and the run recovers the known structure (before: every gate closed, 0.49)."""
    task = make_task("head-choice", seed=4)
    run = search(task, "cem", seed=4)
    assert run["recovered"], run["structure"]
    assert run["test_accuracy"] > 0.9


def test_two_moves_samples_distinct_pairs_in_a_large_space() -> None:
    """Past PAIR_ENUMERATE pairs, two_moves draws random pairs: distinct, each two
    gate openings, none a single move, the same for the same generator seed."""
    space = Binary(120)
    start = [0.0] * 120
    openings = gate_openings(space, start)
    assert len(openings) == 120 and len(openings) * 119 // 2 > PAIR_ENUMERATE
    pairs = two_moves(start, openings, 10, np.random.default_rng(3))
    assert len(pairs) == len({tuple(p) for p in pairs}) == 10
    assert all(sum(p) == 2.0 for p in pairs)
    assert pairs == two_moves(start, openings, 10, np.random.default_rng(3))
    assert two_moves(start, openings[:1], 10, np.random.default_rng(3)) == []
    assert two_moves(start, openings, 0, np.random.default_rng(3)) == []


@pytest.mark.parametrize("fresh", [True, False])
def test_the_weight_optimizers_state_starts_afresh_once_the_first_selection_picks(
        device, fresh: bool) -> None:
    """fresh_final_state: on the step the first selection picks its structure, the weight
    optimizer's per-parameter state is dropped before that step's weight step (Adam
    counts its steps from 1 again); off, it counts on. Later steps (the finalists' race,
    the late selection) do not drop it again."""
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), "ga", seed=0, search_compute=2.0,
                            final_steps=0.25, select_batches=2,
                            weight_optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
                            structure_options={"popsize": 4})
    trainer.fresh_final_state = fresh
    counted: list[tuple[bool, int]] = []

    def record(metrics, trainer) -> None:
        state = trainer.weight_optimizer.state
        steps = {int(s["step"]) for s in state.values()}
        assert len(steps) == 1
        counted.append((trainer.selected is not None, steps.pop()))

    trainer.callbacks.append(record)
    trainer.fit(data(device), epochs=4)  # 20 steps, the last 5 final, 2 of them selecting
    picked = next(i for i, (selected, _) in enumerate(counted) if selected)
    assert picked == 16  # the second selection batch
    assert [steps for _, steps in counted[:picked]] == list(range(1, picked + 1))
    after = [steps for _, steps in counted[picked:]]
    assert np.diff(after).tolist() == [1, 1, 1]
    # off: the count goes on (the selected option's copy of the few-shot split: its steps)
    assert after[0] == 1 if fresh else after[0] > 1
