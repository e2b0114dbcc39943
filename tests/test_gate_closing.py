"""The closing screen of the final selection (nondiff.hybrid.gate_closing): noise gates
predicted to close first, the closings ordered and joined, what it leaves unchanged, its
refusals, its cost within the selection's budget, and a selection that closes every
noise gate at once."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nondiff.hybrid.final_phase import PRUNE_PATH
from nondiff.hybrid.gate_closing import (
    closed_together,
    closing_changes,
    closing_screen,
    every_gate_open,
    gate_entries,
    noise_threshold,
    order_closings,
    pruning_path,
)
from nondiff.hybrid.gate_screen import SCREEN_ROWS
from nondiff.hybrid.structure import Choice, Gates, get_structure, set_structure, structure_space
from nondiff.hybrid.trainer import HybridTrainer
from torch import nn

FEATURES = 10
RELEVANT = (0, 1)


class _GatedMLP(nn.Module):
    def __init__(self, norm: bool = False) -> None:
        super().__init__()
        self.gates = Gates(FEATURES)
        self.inp = nn.Linear(FEATURES, 16)
        self.norm = nn.BatchNorm1d(16) if norm else nn.Identity()
        self.out = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.norm(self.inp(self.gates(x)))))


def _data(seed: int, rows: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, FEATURES, generator=g).to(device)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def _trained(device: str = "cpu", norm: bool = False, steps: int = 150) -> _GatedMLP:
    """Trained with every gate open: the weights use the noise inputs a little."""
    torch.manual_seed(0)
    model = _GatedMLP(norm).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        x, y = _data(step, 32, device)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad()
    return model


def _leave_one_out(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[int, float]:
    """The real change of the loss from closing each gate (all open)."""
    model.eval()
    with torch.no_grad():
        base = float(nn.functional.cross_entropy(model(x), y))
        out = {}
        for i in range(FEATURES):
            mask = np.ones(FEATURES, dtype=bool)
            mask[i] = False
            set_structure(model, {"gates": mask})
            out[i] = float(nn.functional.cross_entropy(model(x), y)) - base
    set_structure(model, {"gates": np.ones(FEATURES, dtype=bool)})
    model.train()
    return out


def test_relevant_gates_are_predicted_to_cost_the_most(device) -> None:
    """Both relevant inputs rank last (closing them hurts most), as they do closed for
    real; a noise input's prediction is its real change (the weights use it little, so
    the loss is nearly linear in its opening). The relevant ones are underestimated (the
    empirical Fisher of a confident model: 0.18 / 0.27 against 1.24 / 0.81 here), but
    far above every noise input."""
    model = _trained(device)
    x, y = _data(1000, SCREEN_ROWS, device)
    changes, passes = closing_changes(model, structure_space(model), [1] * FEATURES, x, y,
                                      nn.functional.cross_entropy)
    real = _leave_one_out(model, x, y)
    assert passes == 1 and sorted(changes) == list(range(FEATURES))
    assert set(sorted(changes, key=changes.get)[-2:]) == set(RELEVANT)
    assert set(sorted(real, key=real.get)[-2:]) == set(RELEVANT)
    noise = [i for i in range(FEATURES) if i not in RELEVANT]
    for i in noise:
        assert changes[i] == pytest.approx(real[i], rel=0.3, abs=1e-3)
    assert max(changes[i] for i in noise) < 0.1 * min(changes[i] for i in RELEVANT)


def test_only_open_gates_are_screened_and_the_model_is_left_as_it_was() -> None:
    """Closed gates get no prediction; the structure, the mode, the parameters, their
    ``.grad`` and a batch norm's running statistics stay as they were."""
    model = _trained(norm=True, steps=40)
    model.norm.running_mean.fill_(0.3)
    tracked = int(model.norm.num_batches_tracked)
    set_structure(model, {"gates": np.zeros(FEATURES, dtype=bool)})
    params = [p.detach().clone() for p in model.parameters()]
    x, y = _data(7, SCREEN_ROWS)
    start = [1, 1, 0, 1] + [0] * (FEATURES - 4)
    changes, _ = closing_changes(model, structure_space(model), start, x, y,
                                 nn.functional.cross_entropy)
    assert sorted(changes) == [0, 1, 3]
    assert not get_structure(model)["gates"].any() and model.training
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params, strict=True))
    assert all(p.grad is None for p in model.parameters())
    assert float(model.norm.running_mean[0]) == pytest.approx(0.3)
    assert int(model.norm.num_batches_tracked) == tracked
    assert "forward" not in model.gates.__dict__  # the patch is gone


def test_nothing_to_screen_and_refusals() -> None:
    """No open gate: nothing, no pass. Gates the loss does not reach are left out. A
    non-finite loss, or gates that do not see one row per row of x: nothing, one pass."""
    model = _trained(steps=5)
    space = structure_space(model)
    x, y = _data(3, 16)
    loss = nn.functional.cross_entropy
    assert closing_changes(model, space, [0] * FEATURES, x, y, loss) == ({}, 0)
    assert closing_changes(model, space, [1] * FEATURES, x, y,
                           lambda out, t: loss(out, t) * math.nan) == ({}, 1)

    class Unused(_GatedMLP):
        def __init__(self) -> None:
            super().__init__()
            self.spare = Gates(3)  # declared, never called

    unused = Unused()
    changes, _ = closing_changes(unused, structure_space(unused), [1] * (FEATURES + 3), x, y,
                                 loss)
    assert sorted(changes) == list(range(FEATURES))

    class Transposed(nn.Module):  # gates on dimension 0 of the transposed input
        def __init__(self) -> None:
            super().__init__()
            self.gates = Gates(FEATURES, dim=0)
            self.out = nn.Linear(FEATURES, 2)

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            return self.out(self.gates(inp.T).T)

    odd = Transposed()
    square_x, square_y = _data(3, FEATURES)  # as many rows as gates: only dim 0 refuses
    assert odd(square_x).shape == (FEATURES, 2)  # the model itself runs
    assert closing_changes(odd, structure_space(odd), [1] * FEATURES, square_x, square_y,
                           loss) == ({}, 1)
    assert "forward" not in odd.gates.__dict__
    own = model.gates.forward  # a forward set on the instance is put back
    model.gates.forward = own
    changes, _ = closing_changes(model, space, [1] * FEATURES, x, y, loss)
    assert len(changes) == FEATURES and model.gates.__dict__["forward"] is own
    with pytest.raises(ValueError, match="pass structure_space"):
        gate_entries(model, structure_space(unused))


def test_closings_are_ordered_in_their_places_and_joined() -> None:
    start = [1.0, 1.0, 1.0, 0.0]
    near = [[0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0],
            [1.0, 1.0, 0.0, 0.0]]
    changes = {0: 0.5, 1: -0.03, 2: -0.01}
    assert order_closings(start, near, changes) == [near[2], near[1], near[3], near[0]]
    assert closed_together(start, changes) == [1.0, 0.0, 0.0, 0.0]
    assert closed_together(start, {0: 0.5, 1: -0.03, 2: 0.01}) is None  # one: a single move
    assert closed_together([1, 0, 0, 0], {1: -1.0, 2: -1.0}) is None  # already closed


def _trainer(**options) -> HybridTrainer:
    return HybridTrainer(_trained(steps=40), "ga", seed=0, **options)


def test_the_screen_costs_one_pass_within_its_share_and_counts_the_structure_cost() -> None:
    """SCREEN_ROWS examples (counted by the selection, not by the screen); not run above
    half the budget less the other screens' examples, with fewer than two open gates,
    with screen_closings off, or while few-shot weights are split. Under a structure cost
    each closing's saving (at the step's weight) is in its predicted change; without
    one, the gate parsimony's penalty (noise_threshold standard errors)."""
    x, y = _data(5, 64)
    start = [1.0] * FEATURES
    trainer = _trainer()
    trainer.gate_parsimony = False
    plain, spent = trainer._closing_screen(start, x, y, math.inf, 0.0)
    assert spent == SCREEN_ROWS and len(plain) == FEATURES and trainer.forward_examples == 0
    assert trainer._closing_screen(start, x, y, 2 * SCREEN_ROWS, 0.0)[1] == SCREEN_ROWS
    assert trainer._closing_screen(start, x, y, 2 * SCREEN_ROWS, 1.0) == ([], 0.0)
    assert trainer._closing_screen([1.0] + [0.0] * 9, x, y, math.inf, 0.0) == ([], 0.0)
    trainer.screen_closings = False
    assert trainer._closing_screen(start, x, y, math.inf, 0.0) == ([], 0.0)
    trainer.screen_closings = True
    trainer._split_active = lambda: True
    assert trainer._closing_screen(start, x, y, math.inf, 0.0) == ([], 0.0)

    def cost(s: dict) -> float:
        return 0.05 * float(np.sum(s["gates"]))

    costly = _trainer(structure_cost=cost)
    weight = costly.cost_weight_at(costly.step_count)
    priced, _ = costly._closing_screen(start, x, y, math.inf, 0.0)
    assert weight > 0
    for (j, free), (k, paid) in zip(plain, priced, strict=True):
        assert j == k and paid == pytest.approx(free - 0.05 * weight)

    def errors(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (out.argmax(1) != t).double().mean()

    other = _trainer(structure_cost=cost, fitness=errors)  # the cost is in its units
    assert other._closing_screen(start, x, y, math.inf, 0.0)[0] == plain
    assert costly.gate_noise == [] and other.gate_noise == []  # a cost: no parsimony

    parsimonious = _trainer()  # no cost: the screen weighs the gates, the caller charges
    assert parsimonious._closing_screen(start, x, y, math.inf, 0.0)[0] == plain
    _, errors_, _ = closing_screen(parsimonious.model, parsimonious.space, start,
                                   x[:SCREEN_ROWS], y[:SCREEN_ROWS],
                                   nn.functional.cross_entropy)
    threshold, cap = noise_threshold(FEATURES), float(np.median(list(errors_.values())))
    assert [j for j, _ in parsimonious.gate_noise] == list(range(FEATURES))
    less = parsimonious._less_noise({int(j): v for j, v in plain})
    for (j, free), (m, noise) in zip(plain, parsimonious.gate_noise, strict=True):
        assert j == m and noise == pytest.approx(threshold * min(errors_[j], cap))
        assert less[j] == pytest.approx(free - noise)
    assert max(noise for _, noise in parsimonious.gate_noise) == pytest.approx(threshold * cap)
    assert parsimonious._parsimony([]).shape == (0,)
    parsimonious._note_noise({0: 0.01, 1: 0.0}, every_gate=True)  # input 1 unreached: 0
    assert parsimonious.gate_noise[:3] == [[0.0, pytest.approx(0.01 * threshold)],
                                           [1.0, 0.0], [2.0, 0.0]]
    before = list(parsimonious.gate_noise)
    parsimonious._note_noise({0: 0.5, 3: 0.02}, every_gate=False)  # weighed gates stay
    assert parsimonious.gate_noise == before
    parsimonious._note_noise({0: 0.0}, every_gate=True)  # no error above 0: nothing kept
    assert parsimonious.gate_noise == before
    stripped = _trainer(fitness=errors)  # a fitness that is not the loss: none either
    assert stripped._closing_screen(start, x, y, math.inf, 0.0)[0] == plain
    assert stripped.gate_noise == []


def _select_from_every_gate_open(screen: bool, recommend: float = 1.0, prune: bool = True,
                                 **options) -> HybridTrainer:
    torch.manual_seed(0)
    model = _trained()
    trainer = HybridTrainer(model, "ga", seed=0, total_steps=12, final_steps=0.75,
                            select_batches=4, search_compute=None,
                            structure_cost=lambda s: 0.02 * float(np.sum(s["gates"])),
                            structure_options={"popsize": 4}, **options)
    trainer.late_select, trainer.screen_closings = None, screen
    trainer.prune_open = prune
    batches = [_data(500 + seed, 64) for seed in range(12)]
    trainer.structure_optimizer.recommend = lambda: np.full(FEATURES, recommend)
    trainer.cost_weight_at = lambda step: 1.0
    for x, y in batches[:3]:  # the search's steps
        trainer.step(x, y)
    trainer.recent, trainer.winners = [], []  # the pool: the start and its moves
    for x, y in batches[3:7]:  # the selection's four batches
        trainer.step(x, y)
    return trainer


def test_the_selection_races_every_noise_gate_closed_at_once() -> None:
    """From every gate open, under weights trained so, with a cost on open gates: the
    first stage races the start with every gate predicted to close closed, right after
    the start (without the screen: a single move there), and the selection ends on the
    relevant inputs alone."""
    known = [1.0 if i in RELEVANT else 0.0 for i in range(FEATURES)]
    trainer = _select_from_every_gate_open(screen=True)
    opening = trainer.selection["opening"]["candidates"]
    assert opening[0] == [1.0] * FEATURES and opening[1] == known
    assert trainer.selected == known
    plain = _select_from_every_gate_open(screen=False, prune=False)
    plain = plain.selection["opening"]["candidates"]
    assert sum(plain[1]) == FEATURES - 1 and known not in plain
    pruned = _select_from_every_gate_open(screen=False)  # the pruned start instead
    assert pruned.selection["opening"]["candidates"][1] == known
    other = _select_from_every_gate_open(  # a fitness that is not the loss: ordered only
        screen=True, prune=False,
        fitness=lambda out, t: nn.functional.cross_entropy(out, t) * 2)
    assert other.selection["close_together"] is False
    assert sum(other.selection["opening"]["candidates"][1]) == FEATURES - 1


@pytest.mark.parametrize("name", ["screen_closings", "prune_open", "gate_parsimony",
                                  "fresh_final_state"])
@pytest.mark.parametrize("value", [1, "yes", None])
def test_a_bad_switch_names_the_attribute_and_value(name: str, value) -> None:
    trainer = _trainer()
    setattr(trainer, name, value)
    x, y = _data(0, 16)
    with pytest.raises(ValueError, match=f"{name} must be True or False.*{value!r}"):
        trainer.fit([(x, y)], epochs=1)
    assert trainer.step_count == 0


def test_the_first_selection_races_the_start_pruned_from_every_gate_open() -> None:
    """The search recommends every gate closed (it lost the inputs); the weights, trained
    with every gate open, still read them: the first stage races every gate open, pruned
    by the closing screen, right after the start, and the selection ends on the relevant
    inputs alone. Without it the pool holds single and paired openings only."""
    known = [1.0 if i in RELEVANT else 0.0 for i in range(FEATURES)]
    trainer = _select_from_every_gate_open(screen=True, recommend=0.0)
    pruned, *path = trainer.selection["pruned"]
    assert pruned == known
    assert len(path) == PRUNE_PATH  # then one, then two noise gates kept open as well
    for back, row in enumerate(path, start=1):
        assert all(row[i] == 1.0 for i in RELEVANT) and sum(row) == len(RELEVANT) + back
    opening = trainer.selection["opening"]["candidates"]
    assert opening[0] == [0.0] * FEATURES and opening[1] == known
    assert trainer.selected == known
    plain = _select_from_every_gate_open(screen=True, recommend=0.0, prune=False)
    assert "pruned" not in plain.selection
    assert all(sum(c) <= 2 for c in plain.selection["opening"]["candidates"])


def test_the_pruning_path_reopens_the_most_valuable_closings_only() -> None:
    """One and two steps back from the pruned start: the closed gates of highest
    predicted change first (the half of a product the cost cut off); gates the start
    has closed stay closed, and there are no more steps than closings."""
    start = [1.0, 1.0, 0.0, 1.0, 1.0, 2.0]  # entry 2 closed, entry 5 not a gate
    changes = {0: 0.05, 1: -0.001, 2: 0.4, 3: -0.3, 4: -0.02}
    assert closed_together(start, changes, least=0) == [1.0, 0.0, 0.0, 0.0, 0.0, 2.0]
    assert pruning_path(start, changes) == [[1.0, 1.0, 0.0, 0.0, 0.0, 2.0],
                                            [1.0, 1.0, 0.0, 0.0, 1.0, 2.0]]
    assert len(pruning_path(start, changes, steps=5)) == 3  # three closings to undo
    assert pruning_path(start, changes, steps=0) == []


class _GatedChoiceMLP(_GatedMLP):
    """A gated MLP with a weightless activation Choice: few-shot weights split on it."""

    def __init__(self) -> None:
        super().__init__()
        self.act = Choice({"tanh": nn.Tanh(), "identity": nn.Identity()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.inp(self.gates(x))))


def test_pruned_starts_one_per_split_option_each_under_its_copy_and_refusals() -> None:
    """While few-shot weights are split: one pruned start per option of the split Choice,
    the start's option first, each screened under its option's copy (SCREEN_ROWS
    examples each; the tanh copy no longer reads input 0, so only its start closes it),
    the loaded copy put back; none when turned off, without two gates, or beyond the
    closing share of the budget, where the copies are not even made."""
    torch.manual_seed(0)
    model = _GatedChoiceMLP()
    set_structure(model, {"gates": np.ones(FEATURES, bool), "act": "identity"})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(150):
        x, y = _data(step, 32)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    trainer = HybridTrainer(model, "ga", seed=0,
                            structure_cost=lambda s: 0.02 * float(np.sum(s["gates"])))
    trainer.cost_weight_at = lambda step: 1.0
    assert trainer.split_on == "act" and trainer._split_active()
    x, y = _data(5, 64)
    start = trainer.space.encode({"gates": np.zeros(FEATURES, bool), "act": "identity"})
    start = np.asarray(start, dtype=np.float64).tolist()
    assert trainer._pruned_starts(start, x, y, 2 * SCREEN_ROWS, 1.0) == ([], 0.0)
    assert trainer.split is None  # refused before anything
    trainer._split_start()
    assert trainer.split["loaded"] == 0  # the tanh copy is the live one
    with torch.no_grad():
        model.inp.weight[:, 0] = 0.0  # the tanh copy's weights only
    trainer._use_option(1)
    weight = model.inp.weight.data_ptr()
    pruned, spent = trainer._pruned_starts(start, x, y, math.inf, 0.0)
    assert spent == 2 * SCREEN_ROWS and trainer.forward_examples == 0
    assert trainer.split["loaded"] == 1 and model.inp.weight.data_ptr() == weight
    assert len(pruned) == 2 + 2 * PRUNE_PATH  # the two starts, then each one's path
    values = [trainer.space.decode(np.asarray(row)) for row in pruned]
    assert [v["act"] for v in values] == ["identity", "tanh"] + \
        ["identity"] * PRUNE_PATH + ["tanh"] * PRUNE_PATH
    assert values[0]["gates"][list(RELEVANT)].all()  # identity's copy reads both
    assert not values[1]["gates"][0] and values[1]["gates"][1]  # tanh's: input 0 not
    assert trainer._pruned_starts(start, x, y, 2 * SCREEN_ROWS, 0.0)[1] == SCREEN_ROWS
    trainer.prune_open = False
    assert trainer._pruned_starts(start, x, y, math.inf, 0.0) == ([], 0.0)
    plain = _trainer()  # no split: one start
    assert len(plain._pruned_starts([0.0] * FEATURES, x, y, math.inf, 0.0)[0]) == \
        1 + PRUNE_PATH
    assert every_gate_open([0.0, 1.0, 3.0], [(0, Gates(2))]) == [1.0, 1.0, 3.0]
    one = HybridTrainer(nn.Sequential(Gates(1), nn.Linear(1, 2)), "ga", seed=0)
    assert one._pruned_starts([0.0], x[:, :1], y, math.inf, 0.0) == ([], 0.0)


class _GatedBranches(nn.Module):
    """Gates on the inputs, then a Choice between a branch with gates of its own and a
    plain one: under the plain branch the loss does not reach the inner gates."""

    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates(FEATURES)
        self.branch = Choice({"gated": nn.Sequential(Gates(FEATURES), nn.Linear(FEATURES, 2)),
                              "plain": nn.Linear(FEATURES, 2)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch(self.gates(x))


def test_a_pruned_start_keeps_the_gates_the_loss_does_not_reach_as_they_were() -> None:
    """Every gate is opened before the screen; those of the branch not taken are not
    screened, and the pruned start has them as the recommendation had."""
    torch.manual_seed(0)
    model = _GatedBranches()
    trainer = HybridTrainer(model, "ga", seed=0)
    trainer.keep_together = False  # the screen's pass alone (the group test: its own file)
    assert trainer.split_on is None  # the branches have weights: no few-shot split
    start = {k: np.zeros(FEATURES, bool) if isinstance(v, np.ndarray) else v
             for k, v in get_structure(model).items()}
    start["branch"] = "plain"
    inner = [k for k, v in start.items() if isinstance(v, np.ndarray) and k != "gates"]
    assert len(inner) == 1
    for closed_before in (False, True):
        start[inner[0]] = np.full(FEATURES, closed_before)
        row = np.asarray(trainer.space.encode(start), dtype=np.float64).tolist()
        x, y = _data(3, 64)
        built, spent = trainer._pruned_starts(row, x, y, math.inf, 0.0)
        assert spent == SCREEN_ROWS and len(built) == 1 + PRUNE_PATH  # the start, its path
        for pruned in built:
            value = trainer.space.decode(np.asarray(pruned))
            assert value["branch"] == "plain"
            assert (value[inner[0]] == closed_before).all()  # as the start had them


def test_the_screen_errors_tell_the_relevant_gates_from_noise(device) -> None:
    """closing_screen predicts what closing_changes does, with a standard error each: no
    noise input clears noise_threshold errors; the relevant inputs clear that many
    times the median error (what a gate that does nothing has) by far, but one does not
    clear its own (a confident model: large changes on a few rows)."""
    model = _trained(device)
    x, y = _data(1000, SCREEN_ROWS, device)
    space, loss = structure_space(model), nn.functional.cross_entropy
    changes, errors, passes = closing_screen(model, space, [1] * FEATURES, x, y, loss)
    assert (changes, passes) == closing_changes(model, space, [1] * FEATURES, x, y, loss)
    assert sorted(errors) == sorted(changes) and all(e > 0 for e in errors.values())
    threshold, cap = noise_threshold(FEATURES), float(np.median(list(errors.values())))
    for i in range(FEATURES):
        assert (changes[i] > 3 * threshold * min(errors[i], cap)) == (i in RELEVANT)
    assert any(changes[i] < threshold * errors[i] for i in RELEVANT)  # why the cap
    assert closing_screen(model, space, [0] * FEATURES, x, y, loss) == ({}, {}, 0)


def test_the_noise_threshold_grows_with_the_gates_and_refuses_a_bad_count() -> None:
    assert noise_threshold(1) == 1.0  # at least the one-standard-error rule
    assert noise_threshold(2) == pytest.approx(math.sqrt(2 * math.log(2)))
    assert noise_threshold(16) == pytest.approx(math.sqrt(2 * math.log(16)))
    assert noise_threshold(64) > noise_threshold(16)
    for bad in (0, -3, 2.0, True, "4"):
        with pytest.raises(ValueError, match=f"gates must be an int >= 1.*{bad!r}"):
            noise_threshold(bad)


def test_without_a_cost_the_selection_closes_the_gates_that_are_noise() -> None:
    """No structure cost, from every gate open under weights trained so: the gate
    parsimony weighs each gate by its screen's error and the selection ends on the
    relevant inputs alone; without it nothing closes a noise input the weights read,
    and the selection keeps some. The penalties are in the trainer's state."""
    known = [1.0 if i in RELEVANT else 0.0 for i in range(FEATURES)]
    trainer = _select_without_a_cost(parsimony=True)
    assert trainer.selected == known
    assert [j for j, _ in trainer.gate_noise] == list(range(FEATURES))
    noise = dict(trainer.gate_noise)
    assert all(noise[i] > 0 for i in range(FEATURES))
    assert trainer._parsimony([known])[0] == pytest.approx(sum(noise[i] for i in RELEVANT))
    state = trainer.state_dict()
    fresh = _select_without_a_cost(parsimony=True, steps=0)
    assert fresh.gate_noise == []
    fresh.load_state_dict(state)
    assert fresh.gate_noise == trainer.gate_noise
    plain = _select_without_a_cost(parsimony=False)
    assert plain.gate_noise == [] and sum(plain.selected) > len(RELEVANT)


def _select_without_a_cost(parsimony: bool, steps: int = 7) -> HybridTrainer:
    torch.manual_seed(0)
    trainer = HybridTrainer(_trained(), "ga", seed=0, total_steps=12, final_steps=0.75,
                            select_batches=4, search_compute=None,
                            structure_options={"popsize": 4})
    trainer.late_select, trainer.gate_parsimony = None, parsimony
    trainer.structure_optimizer.recommend = lambda: np.ones(FEATURES)
    for seed in range(steps):  # three of the search, four of the selection
        if seed == 3:
            trainer.recent, trainer.winners = [], []  # the pool: the start and its moves
        trainer.step(*_data(500 + seed, 64))
    return trainer
