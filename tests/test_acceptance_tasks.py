"""Acceptance tasks of structure search (issue 17): their data and known structures,
the known structure trained alone, and a quick search that finds it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from nondiff.benchmarks.hybrid_tasks.acceptance import (
    handled,
    main,
    search,
    train_fixed,
)
from nondiff.hybrid.structure import structure_space
from nondiff.optim.spaces import Binary, Categorical, Integer, Product
from nondiff.problems.hybrid.acceptance import (
    FREQUENCY_COST,
    LIST_OPS,
    PROGRAM_THRESHOLD,
    RELEVANT,
    ROUTING_MEDIAN,
    SPHERE_INPUTS,
    TASKS,
    make_task,
    solving_programs,
)
from scipy.stats import chi2, norm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RULES = {  # each task's label, recomputed here from its inputs
    "relevant-inputs": lambda x: x[:, list(RELEVANT)].square().sum(1) > chi2.median(3),
    "nonlinearity": lambda x: x[:, 0] ** 2 + x[:, 1] ** 2 > 2 * np.log(2),
    "op-graph": lambda x: x[:, 0] * x[:, 1] + x[:, 2] - x[:, 3] > 0,
    "inputs-and-activation": lambda x: x[:, 2] * x[:, 5] > 0,
    "frequencies": lambda x: torch.sin(3 * torch.pi * x[:, 0]) > 0,
    "routing": lambda x: x[:, 2] * x[:, 6] + x[:, 4] ** 2 > ROUTING_MEDIAN,
    "program": lambda x: x.abs().sort(1).values[:, 6] > PROGRAM_THRESHOLD,
    "head-choice": lambda x: x[:, 0] * x[:, 3] > 0,
    "many-inputs": lambda x: x[:, list(SPHERE_INPUTS)].square().sum(1) > chi2.median(3),
    "mixed-inputs": lambda x: x[:, 2] * x[:, 9] + x[:, 14].abs() - 0.5 * x[:, 21] > 0.7561,
    "two-pairs": lambda x: x[:, 1] * x[:, 7] + x[:, 13] * x[:, 18] > 0,
}


@pytest.mark.parametrize("name", list(TASKS))
def test_task_data_is_seeded_balanced_and_labeled_by_its_rule(name: str) -> None:
    task = make_task(name, seed=3, n_train=600, n_test=400)
    again, other = make_task(name, seed=3, n_train=600, n_test=400), make_task(name, seed=4)
    data = task.data
    assert (len(data.y_train), len(data.y_test), data.num_classes) == (600, 400, 2)
    assert torch.equal(data.x_train, again.data.x_train)
    assert not torch.equal(data.x_train[:10], other.data.x_train[:10])
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert torch.equal(y, RULES[name](x).long())
        assert 0.4 < y.float().mean() < 0.6  # balanced: chance is 50 %
    space = structure_space(task.model())
    assert space.contains(task.known)
    assert task.recovered(task.known)


def test_recovered_accepts_the_known_structure_only() -> None:
    gates = make_task("relevant-inputs")
    mask = gates.known["gates"].copy()
    assert gates.recovered({"gates": mask})
    extra, missing = mask.copy(), mask.copy()
    extra[0], missing[RELEVANT[0]] = True, False
    assert not gates.recovered({"gates": extra})
    assert not gates.recovered({"gates": missing})
    acts = make_task("nonlinearity")
    found = {"acts.0": "square", "acts.1": "square", "acts.2": "identity", "acts.3": "abs"}
    assert acts.recovered(found)  # inputs 2 and 3 are noise: any activation
    assert not acts.recovered({**found, "acts.1": "abs"})
    assert not acts.recovered({**found, "acts.0": "identity"})
    both = make_task("inputs-and-activation")
    assert both.recovered({**both.known, "act": "tanh"})
    assert not both.recovered({**both.known, "act": "identity"})
    graph = make_task("op-graph")
    assert not graph.recovered({"op1": "mul", "op2": "add", "op3": "add"})
    with pytest.raises(ValueError, match="lacks the paths"):
        graph.recovered({"op1": "mul"})
    freq = make_task("frequencies")
    assert freq.recovered({"n_freq": 3})
    assert not freq.recovered({"n_freq": 2}) and not freq.recovered({"n_freq": 4})
    route = make_task("routing")
    assert route.recovered({"left": "x6", "right": "x2", "curve": "x4"})  # a product commutes
    assert not route.recovered({"left": "x2", "right": "x2", "curve": "x4"})
    assert not route.recovered({"left": "x2", "right": "x4", "curve": "x6"})
    program = make_task("program")
    assert program.recovered({"program": ["neg", "abs", "sort"]})
    assert program.recovered({"program": ("abs", "sort", "cumsum")})
    assert not program.recovered({"program": ["sort", "abs", "identity"]})


def test_new_tasks_declare_an_integer_input_routes_and_a_program() -> None:
    def space(name: str) -> str:  # spaces compare by their repr
        return repr(structure_space(make_task(name).model()))

    assert space("frequencies") == repr(Product(n_freq=Integer(1, 8)))
    inputs = Categorical([f"x{i}" for i in range(8)])
    assert space("routing") == repr(Product(left=inputs, right=inputs, curve=inputs))
    assert space("program") == repr(Product(program=Categorical(list(LIST_OPS), size=3)))
    assert space("head-choice") == repr(Product(gates=Binary(6),
                                                head=Categorical(["linear", "mlp"])))
    heads = make_task("head-choice").model().head.options  # each head holds its own weights
    assert all(sum(p.numel() for p in head.parameters()) > 0 for head in heads)
    cost = make_task("frequencies").structure_cost
    assert cost({"n_freq": 3}) == pytest.approx(3 * FREQUENCY_COST)
    assert cost({"n_freq": 3}) < cost({"n_freq": 4})  # the known value is the cheapest that solves


def test_program_threshold_is_the_median_of_the_second_largest_magnitude() -> None:
    p = 2 * norm.cdf(PROGRAM_THRESHOLD) - 1  # P(|x| <= m): at most one of 8 above m
    assert p**8 + 8 * p**7 * (1 - p) == pytest.approx(0.5, abs=1e-5)


def test_solving_programs_are_those_whose_features_contain_sorted_magnitudes() -> None:
    programs = solving_programs()
    assert ["abs", "sort", "identity"] in programs and ["identity", "abs", "sort"] in programs
    assert ["abs", "neg", "sort"] in programs  # sort(-|x|): the same features reversed, negated
    for wrong in (["sort", "abs", "identity"], ["abs", "identity", "identity"],
                  ["relu", "sort", "identity"], ["identity"] * 3):
        assert wrong not in programs
    assert all("abs" in p and "sort" in p for p in programs)
    assert len(programs) == 13  # of 6**3 = 216


def test_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="unknown acceptance task 'xor'"):
        make_task("xor")
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        make_task("op-graph", n_train=0)
    with pytest.raises(ValueError, match="features must be an integer > 9"):
        make_task("relevant-inputs", features=5)


def test_handled_lists_the_optimizers_that_search_each_space() -> None:
    names, skipped = handled(make_task("relevant-inputs"))  # Binary(12)
    assert {"reinforce", "cmaes", "ga", "cga", "one-plus-lambda", "snes"} <= set(names)
    assert skipped == {} and not any(n.startswith(("ipop-", "bipop-")) for n in names)
    names, skipped = handled(make_task("op-graph"))  # three Categorical(5)
    assert skipped == {}  # cga through a binary code (nondiff.optim.binary_code)
    assert {"reinforce", "cmaes", "ga", "cga"} <= set(names)


def test_the_suite_runs_the_cost_under_the_trainers_default_schedule() -> None:
    """A task's cost is off for at least 30 % and at most 60 % of the 10 x 32 steps (until
    a generation tells structures apart), then ramped linearly over 40 % of them, or
    less, to full weight by the final phase (the last 96 steps)."""
    task = make_task("relevant-inputs")
    run = search(task, "ga", seed=0)
    weights = [m["cost_weight"] for m in run["history"]]
    start = next(i for i, w in enumerate(weights) if w > 0) - 1  # the weight at start is 0
    assert 96 <= start <= 192 and weights[:start + 1] == [0.0] * (start + 1)
    ramp = min(128, 224 - start)
    assert weights[start + ramp // 2] == pytest.approx((ramp // 2) / ramp)
    assert weights[start + ramp - 1] < 1.0
    assert weights[224:] == [1.0] * 96 and len(weights) == 320


WRONG = {  # a plausible wrong structure per task, and the accuracy it cannot reach
    "relevant-inputs": ({"gates": np.isin(np.arange(12), [1, 9])}, 0.90),  # input 4 shut
    "nonlinearity": ({f"acts.{i}": "relu" for i in range(4)}, 0.85),  # monotone
    "op-graph": ({"op1": "mul", "op2": "sub", "op3": "max"}, 0.90),
    "inputs-and-activation": ({"gates": np.isin(np.arange(8), [2, 5]), "act": "identity"}, 0.7),
    "frequencies": ({"n_freq": 2}, 0.7),  # frequencies 1, 2 are orthogonal to sign(sin 3 pi x)
    "routing": ({"left": "x2", "right": "x4", "curve": "x6"}, 0.7),  # x4, x6 swapped
    "program": ({"program": ["sort", "abs", "identity"]}, 0.88),  # abs after the sort
    "head-choice": ({"gates": np.isin(np.arange(6), [0, 3]), "head": "linear"}, 0.6),
    "many-inputs": ({"gates": np.isin(np.arange(20), [5, 17]), "act": "relu"}, 0.88),  # 11 shut
    "mixed-inputs": ({"gates": np.isin(np.arange(24), [2, 14, 21]), "act": "relu"}, 0.88),
    "two-pairs": ({"gates": np.isin(np.arange(20), [1, 7, 13]), "act": "relu"}, 0.8),
}
KNOWN_FLOOR = {"routing": 0.93, "program": 0.93, "mixed-inputs": 0.94}  # the others: 0.95


@pytest.mark.parametrize("name", list(TASKS))
def test_known_structure_trained_alone_solves_the_task_and_a_wrong_one_does_not(
        name: str, device: str) -> None:
    task = make_task(name, seed=0)
    known = train_fixed(task, seed=0, device=device)
    assert known["test_accuracy"] > KNOWN_FLOOR.get(name, 0.95)
    assert known["forward_examples"] == task.epochs * len(task.data.y_train)
    wrong, ceiling = WRONG[name]
    assert train_fixed(task, seed=0, device=device, structure=wrong)["test_accuracy"] < ceiling


@pytest.mark.parametrize("name, optimizer", [  # 5 of 5 seeds in the full suite (cmaes 4 of 5)
    ("relevant-inputs", "reinforce"), ("nonlinearity", "ga"), ("nonlinearity", "cmaes"),
])
def test_quick_search_recovers_the_known_structure(name: str, optimizer: str,
                                                   device: str) -> None:
    task = make_task(name, seed=0)
    run = search(task, optimizer, seed=0, device=device, search_compute=None)
    assert run["recovered"], run["structure"]
    assert run["test_accuracy"] > 0.9
    # unbounded: every step evaluates its candidates and takes one weight step on the batch
    assert run["forward_examples"] > 2 * task.epochs * len(task.data.y_train)


@pytest.mark.parametrize("name, optimizer", [  # 4, 5 and 5 of 5 seeds in the full suite
    ("relevant-inputs", "ga"), ("inputs-and-activation", "ga"),
    ("frequencies", "sep-cmaes-torch"),  # an IntParam read in forward: one pass per candidate
])
def test_the_default_bounded_search_recovers_within_twice_the_compute(
        name: str, optimizer: str, device: str) -> None:
    task = make_task(name, seed=0)
    fixed = train_fixed(task, seed=0, device=device)
    run = search(task, optimizer, seed=0, device=device)  # the trainer's defaults
    assert run["recovered"], run["structure"]
    assert run["test_accuracy"] > fixed["test_accuracy"] - 0.02
    assert run["forward_examples"] <= 2 * fixed["forward_examples"]


def test_without_a_structure_cost_the_default_search_closes_the_noise_inputs(
        device: str) -> None:
    """A user who states no cost: the trainer's gate parsimony weighs each gate by its
    noise and the search ends on the relevant inputs alone, within 2 points of them
    trained alone (the acceptance suite with ``--no-cost``: 64 of 65 seeds on this task);
    without it, nothing closes a noise input the weights read (0 of 65)."""
    task = dataclasses.replace(make_task("relevant-inputs", seed=0), structure_cost=None)
    fixed = train_fixed(task, seed=0, device=device)
    run = search(task, "ga", seed=0, device=device)
    assert run["recovered"], run["structure"]
    assert run["test_accuracy"] > fixed["test_accuracy"] - 0.02
    plain = search(task, "ga", seed=0, device=device, gate_parsimony=False)
    assert not plain["recovered"]
    assert plain["structure"]["gates"].sum() > run["structure"]["gates"].sum()


def test_retrain_searches_a_share_of_the_epochs_then_retrains_the_found_structure(
        device: str) -> None:
    """The retrained model is the found structure trained alone, bit for bit (same
    starting weights, batches and optimizer); the compute counts the half-length search
    and the retraining."""
    task = make_task("nonlinearity", seed=0)
    run = search(task, "ga", seed=0, device=device, retrain=0.5)
    assert run["recovered"], run["structure"]
    alone = train_fixed(task, seed=0, device=device, structure=run["structure"])
    assert run["test_accuracy"] == alone["test_accuracy"]
    half = search(dataclasses.replace(task, epochs=task.epochs // 2), "ga", seed=0,
                  device=device)
    assert run["forward_examples"] == half["forward_examples"] + alone["forward_examples"]
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="retrain must be"):
            search(task, "ga", seed=0, retrain=bad)


def test_suite_table_for_one_task(capsys: pytest.CaptureFixture[str]) -> None:
    results = main(["op-graph", "--seeds", "1", "--optimizers", "reinforce", "cga"])
    row = results["op-graph"]["table"]["reinforce"]
    assert row["recovered"] == 1 and row["met"]["recovered"]
    assert row["compute"] <= 2 and row["met"]["compute"]  # the trainer's bounded default
    assert "cga" in results["op-graph"]["table"] and results["op-graph"]["skipped"] == {}
    out = capsys.readouterr().out
    assert "Task op-graph" in out and "cga " in out and "skipped" not in out
    assert "search_compute=default, final_steps=default" in out


def test_suite_from_a_later_seed_without_the_choice_screen(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--first-seed`` runs the seeds from it; ``--no-screen-choices`` and
    ``--no-screen-closings`` reach the trainer (its selections are asked with
    ``screen_choices`` and ``screen_closings`` False)."""
    from nondiff.hybrid.final_phase import FinalPhase
    asked: list[bool] = []
    screen = FinalPhase._choice_screen

    def recorded(self, *args):
        asked.append(self.screen_choices or self.screen_closings or self.prune_open
                     or self.gate_parsimony or self.fresh_final_state)
        return screen(self, *args)

    monkeypatch.setattr(FinalPhase, "_choice_screen", recorded)
    results = main(["op-graph", "--seeds", "1", "--first-seed", "3", "--optimizers", "cga",
                    "--no-screen-choices", "--no-screen-closings", "--no-prune-open",
                    "--no-gate-parsimony", "--no-fresh-final-state", "--no-cost"])
    assert [run["seed"] for run in results["op-graph"]["runs"]["cga"]] == [3]
    assert list(results["op-graph"]["fixed"]) == [3]
    assert asked and not any(asked)
    assert "1 seeds from 3; screens gates/choices/closings/pruned True/False/False/False; " \
        "gate parsimony False; fresh final state False; no structure cost; " in \
        capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["op-graph", "--first-seed", "-1"])
