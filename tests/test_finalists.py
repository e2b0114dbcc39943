"""The finalists' race of the final phase: the last candidates, each trained briefly on
its own copy of the weights, then halved; bounded, resumable, off with race_finalists=0."""

from __future__ import annotations

import pytest
import torch
from conftest import plain_equal
from hybrid_net import Net, data, straight_and_resumed
from nondiff.hybrid.finalists import pick_finalists, race_cost, race_steps
from nondiff.hybrid.structure import Choice
from nondiff.hybrid.trainer import HybridTrainer
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Half(nn.Module):
    """The first input only: half of what the label needs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], torch.zeros_like(x[:, 1:])], 1)


class Flipped(nn.Module):
    """Both inputs, negated: all the label needs, read the other way round."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


class Zero(nn.Module):
    """Nothing: the head sees zeros."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class FeatureNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = Choice({"half": Half(), "flipped": Flipped(), "zero": Zero(),
                                "plain": nn.Identity()})
        self.head = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _sum_data(device: str, n: int = 640) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 2, generator=g)
    y = (x.sum(1) > 0).long()
    return [(x[i:i + 32].to(device), y[i:i + 32].to(device)) for i in range(0, n, 32)]


def test_the_race_picks_the_finalist_that_wins_once_trained(device) -> None:
    """A head trained under "half" reads "flipped" backwards, so under the shared weights
    "half" scores better; trained a few steps each on its own weights, "flipped" (all the
    label needs) wins, and its weights become the model's."""
    torch.manual_seed(0)
    model = FeatureNet().to(device)
    batches = _sum_data(device)
    model.features.value = "half"
    sgd = torch.optim.SGD(model.parameters(), lr=0.5)
    for x, y in batches * 3:  # the shared weights co-adapted to "half"
        sgd.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        sgd.step()
    trainer = HybridTrainer(model, "ga", lambda p: torch.optim.SGD(p, lr=0.5), seed=0,
                            final_steps=30, select_batches=0)
    trainer.planned_steps = 30  # every step final
    trainer.race_stage_steps = 8  # 4 steps to adapt, 4 scored
    half, flipped = ([float(v) for v in trainer.space.encode({"features": name})]
                     for name in ("half", "flipped"))
    x, y = batches[0]
    shared = trainer.evaluate([{"features": "half"}, {"features": "flipped"}], x, y)
    assert shared[0] < shared[1]  # the plain race would keep "half"
    trainer.selected = half
    trainer.selection = {"opening": {"candidates": [half, flipped], "first": shared.tolist()},
                         "left": None}
    history = [trainer.step(*batches[i % len(batches)]) for i in range(12)]
    assert [m["race"] for m in history] == [1.0] * 8 + [0.0] * 4  # two finalists: 8 steps
    assert trainer.selected == flipped and model.features.value == "flipped"
    assert trainer.race["done"] and trainer.race["encoded"] == [half, flipped]
    x, y = batches[1]
    assert (model(x).argmax(1) == y).float().mean() > 0.9


def test_the_default_fit_races_within_the_bound_and_off_it_does_not(device) -> None:
    def fit(**options):
        torch.manual_seed(0)
        trainer = HybridTrainer(Net().to(device), "ga", seed=0,
                                structure_options={"popsize": 4}, **options)
        # the race's own budget at stake: no pruned starts in the selection before it.
        # With them (the default), this run's selection leaves 122 examples, short of a
        # race of two finalists (128): the trade-off PRUNE_PATH's docstring states
        trainer.prune_open = False
        return trainer, trainer.fit(data(device, batches=10, rows=32), epochs=8)

    trainer, history = fit()
    race = [m.get("race", 0.0) for m in history]
    finalists = len(trainer.race["encoded"])  # as many as the budget left pays for
    assert trainer.race["done"] and finalists >= 2
    assert sum(race) == race_steps(finalists, trainer.race_stage_steps)
    # right after the selection: its two stages of two batches, or one when the second
    # stage has nothing new to race
    assert race.index(1.0) in (80 - 24 + 2, 80 - 24 + 4)
    assert trainer.forward_examples <= 2 * trainer.weight_examples
    HybridTrainer.race_finalists = 0
    try:
        off, history = fit()
    finally:
        HybridTrainer.race_finalists = 4
    assert sum(m.get("race", 0.0) for m in history) == 0 and off.race == {"done": True}
    assert off.weight_examples == trainer.weight_examples


def test_a_short_budget_races_fewer_finalists_or_none() -> None:
    assert race_steps(4, 8) == 16 and race_steps(3, 8) == 16 and race_steps(2, 8) == 8
    assert race_cost(4, 8, 64) == (3 + 1) * 8 * 64 and race_cost(2, 8, 64) == 8 * 64
    assert race_cost(1, 8, 64) == 0 and race_steps(1, 8) == 0
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0, final_steps=30, select_batches=0)
    trainer.planned_steps = 30
    trainer.race_finalists, trainer.race_stage_steps = 4, 8
    trainer.selected = [1.0, 1.0, 0.0, 0.0, 0.0]
    others = [[1.0, 1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0, 0.0]]
    opening = {"candidates": [trainer.selected, *others], "first": [0.5, 0.4, 0.3, 0.6]}
    for left, count in ((4 * 8 * 32, 4), (8 * 32, 2), (8 * 32 - 1, None)):
        trainer.selection = {"opening": opening, "left": left}
        race = trainer._start_race(rows=32)
        assert (race is None) if count is None else len(race["encoded"]) == count
    assert pick_finalists(trainer.selected, opening, 3) == [trainer.selected, others[1],
                                                            others[0]]


def test_finalists_of_one_score_are_raced_once() -> None:
    """Structures that score bit for bit alike on the same rows compute the same thing
    (a program with a second sort, a product's inputs swapped): one of them is raced,
    the best scored first, and the selected one's twins are left out."""
    selected = [0.0, 0.0]
    twins = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [2.0, 1.0]]
    opening = {"candidates": [selected, *twins], "first": [0.5, 0.5, 0.3, 0.3, 0.4, 0.2]}
    assert pick_finalists(selected, opening, 8) == [selected, [2.0, 1.0], [0.0, 1.0],
                                                    [2.0, 0.0]]
    assert pick_finalists(selected, opening, 2) == [selected, [2.0, 1.0]]


def test_resume_inside_the_race_is_exact() -> None:
    def make():
        torch.manual_seed(0)
        return HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4},
                             total_steps=80, search_compute=2.0)

    straight, first, resumed = straight_and_resumed(
        make, data("cpu", batches=10, rows=32), 8,
        lambda metrics, trainer: metrics.get("race") == 1.0 and trainer.race["steps"] == 5)
    assert len(first.race["encoded"]) >= 3 and not first.race.get("done")
    assert resumed.race["done"] and plain_equal(resumed.state_dict(), straight.state_dict())


def _racing(device: str = "cpu", batches=None, **options):
    torch.manual_seed(0)
    options = {"structure_options": {"popsize": 4}, "search_compute": 2.0, **options}
    trainer = HybridTrainer(Net().to(device), "ga", seed=0, **options)
    return trainer, batches if batches is not None else data(device, batches=10, rows=32)


def test_between_race_steps_the_model_is_the_leader(device) -> None:
    """A fit stopped mid-race (or a callback) sees the leader's weights under the
    leader's structure, which is also what recommended() says."""
    trainer, batches = _racing(device)
    trainer.callbacks.append(lambda m, t: m.get("race") == 1.0 and t.race["steps"] == 6)
    trainer.fit(batches, epochs=8)
    race = trainer.race
    assert not race.get("done") and race["steps"] == 6
    leader = trainer._leader(race)
    assert trainer.selected == race["encoded"][leader]
    assert plain_equal(trainer.model.state_dict(), race["weights"][leader])
    current = trainer.structure(current=True)
    assert str(current) == str(trainer.recommended())


@pytest.mark.parametrize("compute", [1.0, 0.5])
def test_the_race_keeps_the_bound_with_uneven_batches(compute) -> None:
    """The race starts on a batch of 8 rows and goes on with batches of 64: priced with
    the rows it will see, it stays within search_compute."""
    rows = [8] + [64] * 9
    g = torch.Generator().manual_seed(0)
    x = torch.randn(sum(rows), 4, generator=g)
    y = (x[:, 0] * x[:, 1] > 0).long()
    starts = [sum(rows[:i]) for i in range(len(rows))]
    batches = [(x[s:s + r], y[s:s + r]) for s, r in zip(starts, rows, strict=True)]
    trainer, _ = _racing(batches=batches, search_compute=compute)
    trainer.fit(batches, epochs=8)
    assert trainer.forward_examples <= (1 + compute) * trainer.weight_examples


def test_a_scheduler_stepped_in_a_callback_keeps_its_learning_rate() -> None:
    torch.manual_seed(0)
    model = Net()
    sgd = torch.optim.SGD(model.parameters(), lr=0.5)
    schedule = torch.optim.lr_scheduler.ExponentialLR(sgd, 0.95)
    trainer = HybridTrainer(model, "ga", sgd, seed=0, structure_options={"popsize": 4},
                            search_compute=2.0, callbacks=[lambda m, t: schedule.step()])
    history = trainer.fit(data("cpu", batches=10, rows=32), epochs=8)
    assert sum(m.get("race", 0.0) for m in history) > 0
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.5 * 0.95 ** 80)


def test_a_non_finite_loss_in_the_race_follows_on_nonfinite() -> None:
    from nondiff.hybrid.nonfinite import NonFiniteError
    trainer, batches = _racing()
    trainer.callbacks.append(lambda m, t: m.get("race") == 1.0 and t.race["steps"] == 1)
    trainer.fit(batches, epochs=8)  # the next race step is in its stage's first half
    race, weights = trainer.race, trainer.model.state_dict()
    bad = (torch.full_like(batches[0][0], float("nan")), batches[0][1])
    with pytest.raises(NonFiniteError):
        trainer.step(*bad)
    assert plain_equal(trainer.race, race) and plain_equal(trainer.model.state_dict(), weights)
    trainer.on_nonfinite = "skip"
    metrics = trainer.step(*bad)
    assert metrics["skipped"] == 1.0 and trainer.race["nonfinite"] == race["nonfinite"] + len(
        race["alive"]) and trainer.race["sums"] == race["sums"]


@pytest.mark.parametrize("name, value", [("race_stage_steps", 1), ("race_finalists", -1),
                                         ("race_stage_steps", 2.5)])
def test_bad_race_settings_are_refused_before_the_race(name, value) -> None:
    trainer, batches = _racing()
    setattr(trainer, name, value)
    with pytest.raises(ValueError, match=rf"HybridTrainer.{name} must be an int >= \d, got"):
        trainer.fit(batches, epochs=8)
    assert trainer.race is None and trainer.step_count == 0  # refused before any step
    with pytest.raises(ValueError, match=rf"HybridTrainer.{name} must be an int"):
        trainer.step(*batches[0])
    assert trainer.step_count == 0


def _co_adapted(device: str):
    """FeatureNet whose head trained under "half", and a trainer in its final phase."""
    torch.manual_seed(0)
    model = FeatureNet().to(device)
    batches = _sum_data(device)
    model.features.value = "half"
    sgd = torch.optim.SGD(model.parameters(), lr=0.5)
    for x, y in batches * 3:
        sgd.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        sgd.step()
    trainer = HybridTrainer(model, "ga", lambda p: torch.optim.SGD(p, lr=0.5), seed=0,
                            final_steps=40, select_batches=0)
    trainer.planned_steps = 40
    trainer.race_stage_steps = 8
    encoded = {name: [float(v) for v in trainer.space.encode({"features": name})]
               for name in ("half", "flipped", "zero", "plain")}
    trainer.selected = encoded["half"]
    trainer.selection = {"opening": {"candidates": list(encoded.values()),
                                     "first": [0.1, 0.2, 0.3, 0.4]}, "left": None}
    return trainer, batches, encoded


def test_after_a_halving_the_leader_is_the_best_of_the_stage_before(device) -> None:
    """Each later stage starts with no scores: its leader (the model between steps, and
    what the race ends with when the budget runs out) is the best of the stage before,
    not the survivor with the lowest index."""
    trainer, batches, encoded = _co_adapted(device)
    for i in range(8):
        trainer.step(*batches[i])
    race = trainer.race
    assert len(race["alive"]) == 2 and race["sums"] == [0.0] * 4
    best = min(race["alive"], key=lambda i: race["prior"][i])
    assert race["prior"][best] == 0.0 and trainer.selected == race["encoded"][best]
    assert trainer.selected != encoded["half"]  # the co-adapted start lost its lead
    trainer.selection = {**trainer.selection, "left": 0}  # the budget is gone
    metrics = trainer.step(*batches[8])
    assert trainer.race["done"] and trainer.selected == race["encoded"][best]
    assert metrics["race"] == 0.0 and metrics["skipped"] == 0.0


def test_a_refused_batch_where_the_budget_ends_the_race_leaves_it_open(device) -> None:
    from nondiff.hybrid.nonfinite import NonFiniteError
    trainer, batches, _ = _co_adapted(device)
    for i in range(3):
        trainer.step(*batches[i])
    trainer.selection = {**trainer.selection, "left": 0}
    race = trainer.race
    bad = (torch.full_like(batches[3][0], float("nan")), batches[3][1])
    with pytest.raises(NonFiniteError):
        trainer.step(*bad)
    assert not trainer.race.get("done") and plain_equal(trainer.race, race)
    assert trainer.step_count == 3


def test_a_finalist_skipped_once_is_judged_on_the_batches_it_scored() -> None:
    trainer, _, _ = _co_adapted("cpu")
    race = {"sums": [1.0, 2.0, 0.6, 0.0], "counts": [4, 4, 3, 0], "prior": [0.0] * 4,
            "alive": [0, 1, 2, 3]}
    assert trainer._ranked(race) == [2, 0, 1, 3]  # means 0.25, 0.5, 0.2 (3 of 4), none
    race["prior"] = [0.0, 1.0, 0.0, 2.0]
    assert trainer._ranked({**race, "sums": [0.0] * 4, "counts": [0] * 4}) == [0, 2, 1, 3]
