"""The check tasks outside the acceptance suite (issue 17: tasks the methods were not built
around): their data and budgets, the known structure trained alone, and the benchmark's
``--lr`` / ``--epochs`` overrides that run any task at another budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nondiff.benchmarks.hybrid_tasks import acceptance
from nondiff.benchmarks.hybrid_tasks.acceptance import main, run_suite, train_fixed
from nondiff.hybrid.structure import structure_space
from nondiff.problems.hybrid.acceptance import TASKS
from nondiff.problems.hybrid.acceptance_checks import CHECKS, make_check

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RULES = {  # each check's label, recomputed here from its inputs
    "xor-16": lambda x: x[:, 3] * x[:, 8] > 0,
    "three-class": lambda x: torch.stack([x[:, 1], x[:, 4] * x[:, 9], x[:, 6].abs() - 0.8],
                                         1).argmax(1),
    "big-batch": lambda x: x[:, 0] * x[:, 5] > 0,
    "circle-slow": lambda x: x[:, 3] ** 2 + x[:, 11] ** 2 < math.log(4),
    "parity-3": lambda x: x[:, 0] * x[:, 5] * x[:, 9] > 0,
}
BUDGETS = {  # (lr, epochs, batch_size, training rows, open gates, gate cost)
    "xor-16": (1e-2, 10, 64, 2000, 2, True), "three-class": (1e-2, 10, 64, 2000, 4, False),
    "big-batch": (1e-2, 8, 256, 3000, 2, False), "circle-slow": (1e-3, 20, 32, 1500, 2, False),
    "parity-3": (1e-2, 10, 64, 2000, 3, True),
}
KNOWN_FLOOR = {"xor-16": 0.95, "three-class": 0.9, "big-batch": 0.95, "circle-slow": 0.9,
               "parity-3": 0.8}  # measured on seed 0: 0.99, 0.95, 0.99, 0.95, 0.86


GATED = [name for name in CHECKS if name != "threshold"]


@pytest.mark.parametrize("name", GATED)
def test_check_data_is_seeded_labeled_by_its_rule_and_no_class_rare(name: str) -> None:
    task, again, other = make_check(name, 3), make_check(name, 3), make_check(name, 4)
    data = task.data
    assert torch.equal(data.x_train, again.data.x_train)
    assert not torch.equal(data.x_train[:10], other.data.x_train[:10])
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert torch.equal(y, RULES[name](x).long())
        shares = torch.bincount(y, minlength=data.num_classes).float() / len(y)
        assert shares.min() > 0.6 / data.num_classes  # no class rare: chance is known
    lr, epochs, batch_size, rows, opened, cost = BUDGETS[name]
    assert (task.lr, task.epochs, task.batch_size, len(data.y_train)) == (lr, epochs,
                                                                          batch_size, rows)
    assert structure_space(task.model()).contains(task.known) and task.recovered(task.known)
    assert int(np.sum(task.known["gates"])) == opened
    assert (task.structure_cost is not None) == cost
    wrong = dict(task.known, act="identity")
    assert task.recovered(dict(task.known, act="tanh")) and not task.recovered(wrong)


@pytest.mark.parametrize("name", GATED)
def test_the_known_structure_trained_alone_learns_each_check(name: str) -> None:
    task = make_check(name, seed=0)
    known = train_fixed(task, seed=0)
    assert known["test_accuracy"] > KNOWN_FLOOR[name]
    assert known["forward_examples"] == task.epochs * len(task.data.y_train)


def test_the_threshold_check_reads_a_hard_feature_and_recovers_within_its_interval() -> None:
    """The label is x_1's sign flipped above x_0 = 1; the model reads 1[x_0 > t] alone of
    x_0, so only a threshold near 1 solves it; recovered within 0.1 of 1; the known
    threshold trained alone learns it, a far one does not."""
    task, again, other = (make_check("threshold", s) for s in (3, 3, 4))
    data = task.data
    assert torch.equal(data.x_train, again.data.x_train)
    assert not torch.equal(data.x_train[:10], other.data.x_train[:10])
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert torch.equal(y, ((x[:, 1] > 0) ^ (x[:, 0] > 1.0)).long())
        assert torch.bincount(y, minlength=2).min() > 0.3 * len(y)  # no class rare
    assert structure_space(task.model()).contains(task.known)
    assert task.recovered({"t": 1.0}) and task.recovered({"t": np.float64(0.92)})
    assert not task.recovered({"t": 0.85}) and not task.recovered({"t": -1.3})
    assert task.recovered({"t": 1}) and task.recovered({"t": np.array([0.95])})
    with pytest.raises(ValueError, match="intervals"):
        task.recovered({"t": np.array([0.95, 1.0])})
    task = make_check("threshold", 0)
    known = train_fixed(task, seed=0)
    far = train_fixed(task, seed=0, structure={"t": -1.5})
    assert known["test_accuracy"] > 0.95 > 0.9 > far["test_accuracy"]


def test_an_unknown_check_is_refused_with_the_names() -> None:
    with pytest.raises(ValueError, match=r"unknown check task 'xor'; choose from \['big-batch'"):
        make_check("xor")
    assert not set(CHECKS) & set(TASKS)  # a name runs one task


@pytest.mark.parametrize("kwargs, match", [
    ({"tasks": ["xor"]}, r"unknown tasks \['xor'\]; choose from .*'xor-16'"),
    ({"tasks": ["xor-16"], "lr": 0.0}, r"lr must be None .* got 0\.0; e\.g\. 1e-3"),
    ({"tasks": ["xor-16"], "epochs": 0}, r"epochs must be None .* got 0; e\.g\. 20"),
])
def test_run_suite_refuses_bad_names_and_budgets_before_any_run(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        run_suite(seeds=1, optimizers=["ga"], verbose=False, **kwargs)


def test_the_benchmark_runs_a_check_at_another_learning_rate_and_epochs(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A check task runs by name; ``--lr`` and ``--epochs`` replace the task's own for
    the search and the fixed structure alike."""
    rates = []
    for name in ("train_fixed", "search"):
        original = getattr(acceptance, name)

        def recording(task, *args, _original=original, **kwargs):
            rates.append(task.lr)
            return _original(task, *args, **kwargs)
        monkeypatch.setattr(acceptance, name, recording)
    results = main(["big-batch", "--seeds", "1", "--optimizers", "ga", "--lr", "0.02",
                    "--epochs", "2"])
    assert rates == [0.02, 0.02]  # the fixed structure, then the search
    run = results["big-batch"]
    assert run["fixed"][0]["forward_examples"] == 2 * 3000
    assert run["runs"]["ga"][0]["forward_examples"] <= 2 * 2 * 3000  # the bound holds
    assert "lr 0.02; 2 epochs; " in capsys.readouterr().out
    for bad in (["big-batch", "--lr", "0"], ["big-batch", "--epochs", "0"], ["xor"]):
        with pytest.raises(SystemExit):
            main(bad)
