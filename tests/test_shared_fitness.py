"""Search compute shared with the weight steps (issue 17): with ``search_compute="shared"``
a generation's fitness comes from the weight steps' own forward passes (plus one paired
pass of the generation's rows), so the search costs at most twice the weight training;
the paired differences cancel what the rows themselves contribute; a resume mid-generation
is exact; bad settings are refused before anything changes."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from conftest import plain_equal, roundtrip
from hybrid_net import Net, data, straight_and_resumed
from nondiff.benchmarks.hybrid_tasks.acceptance import search, train_fixed
from nondiff.hybrid.shared_fitness import SharedGeneration
from nondiff.hybrid.structure import set_structure
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.problems.hybrid.acceptance import make_task
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_common_rows_cancel_the_rows_own_difficulty() -> None:
    true = np.array([1.0, 2.0, 3.0])
    rng = np.random.default_rng(0)
    gen = SharedGeneration()
    gen.open(np.eye(3), None, target=40, snapshot={})
    for _ in range(10):  # each step: every path on its own block, harder or easier rows
        difficulty = rng.normal(0.0, 5.0, size=4)  # far larger than the differences
        gen.add([0, 1, 2], torch.tensor(true + difficulty[:3]), [4, 4, 4])
        gen.add_common(torch.tensor(true + difficulty[3]), 4)  # one block under every path
    assert gen.complete()
    fitness = gen.fitness()
    assert np.allclose(np.diff(fitness), [1.0, 1.0])  # exact: the difficulty cancels
    own_means = gen.sums.numpy() / gen.own_rows
    assert np.isclose(fitness.mean(), own_means.mean())  # the level of the paths' own means
    assert not np.allclose(np.diff(own_means), [1.0, 1.0])  # the own means alone: noisy


def test_a_nan_path_ranks_nan_and_leaves_the_others_finite() -> None:
    gen = SharedGeneration()
    gen.open(np.eye(3), None, target=2, snapshot={})
    gen.add([0, 1, 2], torch.tensor([1.0, math.nan, 3.0]), [2, 2, 2])
    gen.add_common(torch.tensor([0.5, math.nan, 2.5]), 2)
    fitness = gen.fitness()
    assert math.isnan(fitness[1]) and np.isfinite(fitness[[0, 2]]).all()
    assert fitness[2] - fitness[0] == pytest.approx(2.0)


@pytest.mark.parametrize("name,weight_step", [("ga", "fair"), ("cmaes", "population"),
                                              ("reinforce", "fair")])
def test_search_costs_at_most_the_weight_training_twice(device, name, weight_step) -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), name, seed=0, weight_step=weight_step,
                            search_compute="shared", fair_steps=6,
                            structure_options={"popsize": 4} if name != "cmaes" else None)
    history = trainer.fit(data(device), epochs=8)
    weight_rows = 8 * 6 * 32
    assert weight_rows < trainer.forward_examples <= 2 * weight_rows
    told = [m for m in history if m["searched"]]
    assert len(told) == trainer.structure_optimizer.counters["iterations"] > 3
    assert all(math.isfinite(m["fitness_best"]) for m in told)
    assert all(math.isnan(m["fitness_best"]) for m in history if not m["searched"])
    size = trainer.structure_optimizer.popsize + (name == "ga")
    assert size >= 3  # a step gives each member at most 2 * 32 / size + 1 < 32 rows ...
    assert np.diff([m["step"] for m in told]).min() >= 2  # ... so a generation takes 2+


def test_the_told_fitness_is_the_loss_on_the_candidates_rows_before_the_update() -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "reinforce", seed=0, weight_step="population",
                            search_compute="shared", generation_rows=8,
                            structure_options={"popsize": 4})
    trainer.paired_rows = False  # the candidates' own rows only: the told values are means
    told = []
    tell = trainer.structure_optimizer.tell
    trainer.structure_optimizer.tell = lambda x, f, **kw: told.append((x, f)) or tell(x, f, **kw)
    (x, y), = data("cpu", batches=1)
    before = copy.deepcopy(trainer.model.state_dict())
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    metrics = trainer.step(x, y)  # 32 rows, 8 per candidate: one step, one generation
    assert not any(torch.equal(a, b)
                   for a, b in zip(weights, trainer.model.parameters(), strict=True))
    assert metrics["searched"] == 1.0 and trainer.forward_examples == 32
    (candidates, fitness), = told
    trainer.model.load_state_dict(before)  # the weights before the step's update
    expected = []
    for j, structure in enumerate(trainer.space.decode_batch(np.asarray(candidates))):
        set_structure(trainer.model, structure)
        rows = slice(8 * j, 8 * (j + 1))
        loss = nn.functional.cross_entropy(trainer.model(x[rows]), y[rows])
        expected.append(float(loss.detach()))
    assert np.asarray(fitness) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name,weight_step", [("ga", "fair"), ("cmaes", "fair"),
                                              ("reinforce", "population")])
def test_resume_mid_generation_is_exact(name, weight_step) -> None:
    def make():
        torch.manual_seed(0)
        return HybridTrainer(Net(), name, seed=3, weight_step=weight_step, fair_steps=4,
                             search_compute="shared",
                             structure_options={"popsize": 5} if name != "cmaes" else None)

    straight, first, resumed = straight_and_resumed(
        make, data("cpu"), 3,  # stop inside a generation, mid-epoch
        lambda metrics, trainer: metrics["step"] >= 8 and metrics["step"] % 6 != 0
        and trainer.shared.active and bool(trainer.shared.rows.sum() > 0))
    assert first.step_count < 18 and first.shared.active
    assert resumed.step_count == straight.step_count == 18
    assert plain_equal(resumed.state_dict(), straight.state_dict())


@pytest.mark.parametrize("kwargs,match", [
    ({"search_compute": "shared", "weight_step": "sampled"},
     r"search_compute='shared' .* weight_step='sampled' .* pass weight_step='fair'"),
    ({"search_compute": "shared", "generation_rows": 0}, r"generation_rows must be .* got 0"),
    ({"search_compute": 1.0, "generation_rows": 64},
     r"generation_rows must be .* with search_compute='shared'"),
    ({"search_compute": "share"}, r"search_compute must be .* got 'share'; e\.g\. 1\.0"),
])
def test_bad_settings_are_refused_before_anything_changes(kwargs, match) -> None:
    torch.manual_seed(0)
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    with pytest.raises(ValueError, match=match):
        HybridTrainer(model, "ga", **kwargs)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_held_out_batches_are_refused_with_shared_fitness() -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0, search_compute="shared")
    batches = data("cpu")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(ValueError, match=r"held_out .* search_compute='shared'"):
        trainer.fit(batches, epochs=1, held_out=batches[:2])
    with pytest.raises(ValueError, match=r"held_out .* search_compute='shared'"):
        trainer.step(*batches[0], held_out=batches[1])
    assert trainer.step_count == 0 and trainer.forward_examples == 0
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_shared_search_recovers_a_known_structure_within_twice_the_compute(device) -> None:
    task = make_task("inputs-and-activation", seed=0)
    run = search(task, "cmaes", seed=0, device=device, search_compute="shared")
    fixed = train_fixed(task, seed=0, device=device)
    assert run["recovered"], run["structure"]
    assert run["test_accuracy"] > fixed["test_accuracy"] - 0.02
    assert run["forward_examples"] <= 2 * fixed["forward_examples"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_nonfinite_common_value_makes_its_path_nan_even_without_own_rows(device, bad) -> None:
    gen = SharedGeneration()  # an early fair step: no member has rows of its own yet
    gen.open(np.eye(3), None, target=4, snapshot={})
    gen.add_common(torch.tensor([1.0, 3.0, bad], device=device), 4)
    fitness = gen.fitness()
    assert math.isnan(fitness[2]) and fitness[1] - fitness[0] == pytest.approx(2.0)
    gen.add_common(torch.tensor([1.0, 3.0, 2.0], device=device), 4)  # finite later: still NaN
    assert math.isnan(gen.fitness()[2])
    resumed = SharedGeneration()  # the mark survives a state dict
    resumed.load_state_dict(roundtrip(gen.state_dict()), np.eye(3), {}, torch.device(device))
    assert math.isnan(resumed.fitness()[2])
    mixed = SharedGeneration()  # own rows for some, a NaN on common rows for another
    mixed.open(np.eye(3), None, target=4, snapshot={})
    mixed.add([0, 1], torch.tensor([1.0, 2.0], device=device), [4, 4])
    mixed.add_common(torch.tensor([1.0, 2.0, bad], device=device), 4)
    assert math.isnan(mixed.fitness()[2]) and np.isfinite(mixed.fitness()[:2]).all()
    none = SharedGeneration()  # nothing finite anywhere: NaN, never a perfect 0.0
    none.open(np.eye(2), None, target=2, snapshot={})
    none.add_common(torch.tensor([bad, bad], device=device), 4)
    assert np.isnan(none.fitness()).all()


def test_add_runs_no_host_to_device_copy_or_reduction_per_step(device) -> None:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):  # records the aten ops that add() dispatches
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.append(func.__name__)
            return func(*args, **(kwargs or {}))

    gen = SharedGeneration()
    gen.open(np.eye(3), None, target=8, snapshot={})
    values = [torch.tensor([0.5, 2.0], dtype=torch.float64, device=device),
              torch.tensor([1.0, 1.0], dtype=torch.float64, device=device)]
    with Ops() as ops:
        gen.add([0, 1], values[0], [5, 3])
        gen.add([0, 1], values[1], [3, 5])
    assert set(ops.seen) <= {"detach.default", "view.default"}  # views only: no copy
    assert gen.fitness().tolist()[:2] == [0.6875, 1.375]


@pytest.mark.parametrize("compute", [None, 1.0])
def test_a_shared_generation_state_is_refused_by_other_search_compute(compute) -> None:
    batches = data("cpu")
    torch.manual_seed(0)
    shared = HybridTrainer(Net(), "ga", seed=3, weight_step="fair", fair_steps=4,
                           search_compute="shared", structure_options={"popsize": 5})
    shared.callbacks.append(lambda metrics, trainer: metrics["step"] >= 9)
    shared.fit(batches, epochs=3)
    assert shared.shared.active
    state = roundtrip(shared.state_dict())
    torch.manual_seed(0)
    other = HybridTrainer(Net(), "ga", seed=3, weight_step="fair", fair_steps=4,
                          search_compute=compute, structure_options={"popsize": 5})
    other.fit(batches, epochs=1)
    before, rng = other.state_dict(), torch.get_rng_state()
    with pytest.raises(ValueError, match=rf"search_compute='shared', but the trainer has "
                                         rf"search_compute={compute!r}; build the trainer "
                                         rf"with search_compute='shared'"):
        other.load_state_dict(state)
    assert not other.shared.active and torch.equal(rng, torch.get_rng_state())
    assert plain_equal(other.state_dict(), before)
