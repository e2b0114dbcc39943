"""The AutoML task (nondiff.problems.automl) and its benchmark (nondiff.benchmarks.automl)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from nondiff.hybrid.structure import set_structure, structure_space
from nondiff.problems.automl import SPACE, CNNTask, SuperNet


class ScriptedTrial:
    """A trial that stops after ``stop_after`` reports and may hand back a saved state."""

    def __init__(self, stop_after: int = 10**9, saved: Mapping[str, Any] | None = None) -> None:
        self.reports: list[tuple[int, float]] = []
        self.states: list[dict[str, Any]] = []
        self.stop_after, self.saved = stop_after, saved

    def report(self, step: int, metric: float) -> None:
        self.reports.append((step, metric))

    def should_stop(self) -> bool:
        return len(self.reports) >= self.stop_after

    def checkpoint(self, state: Mapping[str, Any]) -> None:
        self.states.append(dict(state))

    def restore(self) -> Mapping[str, Any] | None:
        return self.saved


CONFIG = {"lr": 3e-3, "weight_decay": 1e-4, "width": 8, "depth": 2, "activation": "relu",
          "optimizer": "adam", "dropout": 0.1, "batch_size": 64}


@pytest.fixture(scope="module")
def task() -> CNNTask:
    return CNNTask(n=600, epochs=4)


def test_train_reports_every_epoch_stops_when_told_and_resumes(task: CNNTask) -> None:
    whole = ScriptedTrial()
    task.train(CONFIG, whole)
    assert [s for s, _ in whole.reports] == [1, 2, 3, 4]
    assert all(0.0 <= m <= 1.0 for _, m in whole.reports)
    stopped = ScriptedTrial(stop_after=2)
    task.train(CONFIG, stopped)
    assert stopped.reports == whole.reports[:2]  # same config, same run
    resumed = ScriptedTrial(saved=stopped.states[-1])
    task.train(CONFIG, resumed)
    assert [s for s, _ in resumed.reports] == [3, 4]  # continues, does not restart


def test_a_saved_state_of_another_architecture_keeps_the_steps_not_the_weights(
        task: CNNTask) -> None:
    other = ScriptedTrial(stop_after=1)
    task.train({**CONFIG, "width": 12}, other)  # a PBT exploit may change the width
    fresh = ScriptedTrial(saved=other.states[-1])
    task.train(CONFIG, fresh)  # would raise on a 12-channel state dict if it loaded it
    assert [s for s, _ in fresh.reports] == [2, 3, 4]


def test_a_trial_with_max_steps_sets_the_epochs(task: CNNTask) -> None:
    short = ScriptedTrial()
    short.max_steps = 2
    task.train(CONFIG, short)
    assert [s for s, _ in short.reports] == [1, 2]


def test_retrain_then_test_accuracy_beats_chance(task: CNNTask) -> None:
    config = {**CONFIG, "lr": 1e-2, "width": 16, "dropout": 0.0, "batch_size": 32}
    state = task.retrain(config, seed=0, epochs=10)
    assert state["epoch"] == 10
    assert task.test_accuracy(config, state) > 0.3  # 10 classes: chance is 0.1


@pytest.mark.parametrize("bad, words", [
    ({**CONFIG, "width": 100}, "100"),
    ({k: v for k, v in CONFIG.items() if k != "lr"}, "lr"),
    ({**CONFIG, "momentum": 0.9}, "momentum"),
])
def test_bad_configs_are_refused_by_name(task: CNNTask, bad: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        task.train(bad, ScriptedTrial())


def test_bad_task_arguments() -> None:
    with pytest.raises(ValueError, match="epochs"):
        CNNTask(epochs=0)
    with pytest.raises(ValueError, match="n must"):
        CNNTask(n=10)


def test_supernet_covers_the_architecture_leaves_and_shares_weights() -> None:
    net = SuperNet()
    space = structure_space(net)
    assert list(space.spaces) == ["width", "depth", "activation"]
    assert space["width"].low == SPACE["width"].low and space["width"].high == SPACE["width"].high
    x = torch.randn(5, 40)
    weights = sum(p.numel() for p in net.parameters())
    for arch in ({"width": 4, "depth": 1, "activation": "tanh"},
                 {"width": 32, "depth": 4, "activation": "gelu"}):
        set_structure(net, arch)
        assert net(x).shape == (5, 10)
        assert net.architecture() == arch
    assert sum(p.numel() for p in net.parameters()) == weights
    # a narrow network is the first channels of the wide one: the rest cannot matter
    set_structure(net, {"width": 6, "depth": 2, "activation": "relu"})
    before = net(x)
    with torch.no_grad():
        net.convs[1].weight[6:] += 1.0
        net.head.weight[:, 6 * 4:] += 1.0
    assert torch.equal(net(x), before)


def test_a_found_architecture_inherits_the_supernets_weights(task: CNNTask) -> None:
    torch.manual_seed(0)
    net = SuperNet()
    arch = {"width": 7, "depth": 3, "activation": "gelu"}
    set_structure(net, arch)
    config = {**CONFIG, **arch, "dropout": 0.0}
    cnn = task.build(config)
    cnn.load_state_dict(net.subnet_state(config))  # every key, every shape
    x = torch.randn(6, 40)
    net.eval(), cnn.eval()
    assert torch.allclose(cnn(x), net(x), atol=1e-6)
    state = net.subnet_state(config)
    state["head.bias"] += 1.0  # a copy: training the CNN leaves the supernet alone
    assert not torch.equal(net.head.bias, state["head.bias"])
    # train(init=...) starts there: after one epoch at the smallest learning rate the
    # weights are still the supernet's, while a run without init starts elsewhere
    slow = {**config, "lr": 1e-4, "weight_decay": 1e-6, "optimizer": "sgd"}
    inherited, fresh = ScriptedTrial(stop_after=1), ScriptedTrial(stop_after=1)
    task.train(slow, inherited, init=net)
    task.train(slow, fresh)
    start = net.subnet_state(config)["features.3.weight"]
    assert (inherited.states[0]["model"]["features.3.weight"] - start).abs().max() < 1e-2
    assert (fresh.states[0]["model"]["features.3.weight"] - start).abs().max() > 1e-1
    with pytest.raises(ValueError, match="init must be"):
        task.train(config, ScriptedTrial(), init=net.state_dict())
    with pytest.raises(ValueError, match="width=40"):
        net.subnet_state({**config, "width": 40})


@pytest.mark.parametrize("epochs", [0, -1, 2.5, True])
def test_oneshot_refuses_bad_supernet_epochs_before_training(task: CNNTask, epochs: Any
                                                             ) -> None:
    from nondiff.benchmarks.automl import run_oneshot

    with pytest.raises(ValueError, match=r"epochs \(the supernet's\) must be a positive"):
        run_oneshot(task, 100, 0, epochs=epochs)


def test_quick_benchmark_runs_end_to_end(tmp_path, capsys) -> None:
    pytest.importorskip("optuna")
    pytest.importorskip("nondiff.tune")
    from nondiff.benchmarks.automl import METHODS, main

    summary = main(["--quick", "--seeds", "1", "--budget", "12", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "machine:" in out and "Target:" in out and "target met by" in out
    for method in METHODS:
        assert method in summary["rows"]
        row = summary["rows"][method]
        assert 0.0 <= row["best_val"][0] <= 1.0 and 0.0 <= row["test"][0] <= 1.0
        assert row["compute"] <= 12 + 1e-9 or method == "oneshot"
    assert (tmp_path / "automl.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "automl.json").read_text())
    assert {r["method"] for r in saved["results"]} == set(METHODS)
    assert all(math.isfinite(r["test"]) for r in saved["results"])


def test_merge_joins_saved_runs_on_the_seeds_every_method_finished(tmp_path, capsys) -> None:
    from nondiff.benchmarks.automl import Result, _save, main

    def result(method: str, seed: int, best: float) -> Result:
        return Result(method, seed, [(5.0, best - 0.1), (10.0, best)], 10.0, dict(CONFIG),
                      best, test=best, trials=2)

    task = {"n": 600, "epochs": 4, "data_seed": 0}
    _save([result("optuna-tpe-median", 0, 0.5), result("cmaes-asha", 0, 0.6)], 10, task,
          "machine: a", tmp_path / "a")
    _save([result("optuna-tpe-median", 1, 0.5)], 10, task, "machine: a", tmp_path / "b")
    summary = main(["--merge", str(tmp_path / "a" / "automl.json"),
                    str(tmp_path / "b" / "automl.json"), "--out", str(tmp_path / "both")])
    assert "left out seeds [1]" in capsys.readouterr().out
    assert summary["rows"]["cmaes-asha"]["ratio_median"] == 0.5  # 5 of Optuna's 10 epochs
    assert summary["verdict"] == {"cmaes-asha": True}
    with pytest.raises(ValueError, match="twice"):
        main(["--merge", str(tmp_path / "a" / "automl.json"),
              str(tmp_path / "a" / "automl.json"), "--out", str(tmp_path / "x")])
