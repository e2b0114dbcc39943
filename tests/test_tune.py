"""nondiff.tune end to end (threads): results, optimizers on mixed spaces, PBT copies,
failures, bad input, storage."""

from __future__ import annotations

import itertools
import math
import sqlite3
import threading

import pytest
import torch
from nondiff.hybrid.tune.driver import MAX_FAILURES_IN_A_ROW
from nondiff.optim import registry
from nondiff.optim.spaces import Categorical, Integer, Product, Real

import nondiff
from nondiff.tune import ASHA, PBT, MedianStopping, Study, tune
from tests.tune_helpers import SPACE, accuracy, failing_train, train


def test_a_study_returns_every_trial_and_stays_within_its_budget(tmp_path) -> None:
    study = tune(train, SPACE, optimizer="cmaes", scheduler="asha", budget=80, max_steps=9,
                 parallel=2, executor="inline", seed=0)
    assert isinstance(study, Study)
    assert 80 <= study.compute <= 80 + 1  # at most one step in flight on the other slot
    states = {t.state for t in study.trials}
    assert states <= {"complete", "pruned"} and "pruned" in states and "complete" in states
    for trial in study.trials:
        steps = [s for s, _ in trial.curve]
        assert steps == list(range(1, len(steps) + 1))
        assert trial.curve == [(s, accuracy(trial.config, s)) for s in steps]
        assert (trial.state == "complete") == (steps[-1] == 9)
    best = max((v, t.number) for t in study.trials for _, v in t.curve)
    assert study.best_metric == best[0] and study.best_config == study.trials[best[1]].config
    curve = study.best_curve()
    assert curve[-1] == (study.compute, study.best_metric)
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(curve))
    assert "best metric" in study.summary() and f"{len(study.trials)} trials" in study.summary()
    study.plot(tmp_path / "study.png")
    assert (tmp_path / "study.png").stat().st_size > 1000


def test_tune_is_reachable_from_nondiff() -> None:
    assert nondiff.tune.tune is tune and nondiff.tune.ASHA is ASHA
    study = nondiff.tune(train, SPACE, scheduler=None, budget=18, max_steps=9,
                         executor="inline")
    assert [t.state for t in study.trials] == ["complete", "complete"]


@pytest.mark.parametrize("optimizer", ["cmaes", "reinforce", "ga"])
def test_any_optimizer_proposes_configs_of_a_mixed_conditional_space(optimizer: str) -> None:
    space = {"lr": Real(1e-4, 1.0, log=True), "width": Integer(4, 64),
             "opt": Categorical(["sgd", "adam"]),
             "sgd": Product(momentum=Real(0.0, 0.99)), "adam": {"beta1": Real(0.5, 0.999)}}
    seen = []

    def conditional_train(config, trial):
        seen.append(config)
        branch = config["sgd"]["momentum"] if config["opt"] == "sgd" else config["adam"]["beta1"]
        for step in range(1, trial.max_steps + 1):
            trial.report(step, accuracy({**config, "act": "relu"}, step) + 0.01 * branch)
            if trial.should_stop():
                return

    study = tune(conditional_train, space, optimizer=optimizer, scheduler="asha", budget=60,
                 max_steps=4, executor="inline", seed=1)
    assert study.compute >= 60 and len(seen) == len(study.trials) > 15
    for config in seen:
        assert isinstance(config["width"], int) and 4 <= config["width"] <= 64
        assert config["opt"] in ("sgd", "adam") and 1e-4 <= config["lr"] <= 1.0
        assert set(config["sgd"]) == {"momentum"} and set(config["adam"]) == {"beta1"}
    assert math.isfinite(study.best_metric)


def test_an_optimizer_instance_on_the_study_space_is_used_as_is() -> None:
    from nondiff.hybrid.tune.space import study_space

    opt = registry.create("cmaes", study_space(SPACE), sigma0=0.5, popsize=4, seed=5)
    study = tune(train, SPACE, optimizer=opt, scheduler="median", budget=45, max_steps=5,
                 executor="inline")
    assert opt.counters["evaluations"] == 8  # two populations of 4 told
    assert len(study.trials) >= 9
    with pytest.raises(ValueError, match=r"was built on .* not on the study's space"):
        tune(train, {"lr": Real(1e-4, 1.0, log=True)}, optimizer=opt, executor="inline")


LOG: list[tuple[int, int, object]] = []
LOCK = threading.Lock()


def pbt_train(config, trial):
    """A 'model' whose weight grows by lr per step; checkpoints the weight and its origin."""
    state = trial.restore()
    with LOCK:
        LOG.append((trial.number, trial.step, state))
    weight = state["weight"].clone() if state is not None else torch.zeros(())
    for step in range(trial.step + 1, trial.max_steps + 1):
        weight += config["lr"] * (1.0 if config["act"] == "relu" else 0.5)
        trial.report(step, float(weight))
        trial.checkpoint({"weight": weight, "trial": trial.number, "step": step})
        if trial.should_stop():
            return


def test_pbt_copies_the_weights_and_config_of_a_top_trial() -> None:
    LOG.clear()
    pbt = PBT(interval=2, population=4, quantile=0.25, resample_probability=0.0,
              mutable=["lr"])
    study = tune(pbt_train, SPACE, optimizer="cmaes", scheduler=pbt, budget=32, max_steps=8,
                 parallel=2, executor="inline", seed=2)
    trials = {t.number: t for t in study.trials}
    copies = [t for t in study.trials if t.parent is not None]
    exploited = [t for t in study.trials if t.stop_reason == "exploited"]
    assert len(copies) == len(exploited) == 3  # one per exploit step (steps 2, 4, 6)
    for copy in copies:
        donor = trials[copy.parent]
        restored = next(state for n, _, state in LOG if n == copy.number)  # its first call
        # the copy starts from the donor's checkpoint at the exploit step
        assert restored["trial"] == donor.number and restored["step"] == copy.start_step
        assert float(restored["weight"]) == pytest.approx(donor.value_at(copy.start_step))
        # with the donor's config, lr explored, the rest kept
        assert copy.config["width"] == donor.config["width"]
        assert copy.config["act"] == donor.config["act"]
        ratio = copy.config["lr"] / donor.config["lr"]
        assert round(ratio, 9) in (0.8, 1.2) or copy.config["lr"] in (1e-4, 1.0)
        # the donor was the best, the exploited member the worst, of that round
        step = copy.start_step
        live = [t for t in study.trials if t.value_at(step) is not None
                and (t.parent is None or t.start_step < step)]
        values = {t.number: t.value_at(step) for t in live}
        assert values[donor.number] == max(values.values())
    for member in exploited:
        step = member.last_step
        others = [t.value_at(step) for t in study.trials if t.value_at(step) is not None
                  and (t.parent is None or t.start_step < step)]
        assert member.value_at(step) == min(others)
    # a resumed trial restores its own checkpoint
    for number, step, state in LOG:
        if state is not None and step > trials[number].start_step:
            assert state["trial"] == number and state["step"] == step


def test_a_failing_trial_is_recorded_with_its_traceback_and_the_study_goes_on() -> None:
    study = tune(failing_train, SPACE, scheduler=None, budget=40, max_steps=4,
                 executor="inline", seed=0)
    failed = [t for t in study.trials if t.state == "failed"]
    complete = [t for t in study.trials if t.state == "complete"]
    assert failed and complete
    assert all(t.config["width"] % 2 == 1 for t in failed)
    assert all("RuntimeError: odd width" in t.error and "failing_train" in t.error
               for t in failed)
    assert all(t.config["width"] % 2 == 0 and t.error is None for t in complete)
    assert "failed trials" in study.summary()


def test_a_train_that_calls_sys_exit_on_a_thread_is_recorded_not_hung() -> None:
    def exits(config, trial):
        trial.report(1, 0.5)
        if config["width"] % 2:
            raise SystemExit(3)  # would end the trial's thread without a word

    study = tune(exits, SPACE, scheduler=None, budget=20, max_steps=1, executor="inline",
                 seed=0)
    failed = [t for t in study.trials if t.state == "failed"]
    assert failed and all("SystemExit: 3" in t.error for t in failed)


def test_a_space_of_functions_resumes_from_its_storage(tmp_path) -> None:
    def build():  # as a new process would: the same functions at other addresses
        def relu(x):
            return torch.relu(x)

        def tanh(x):
            return torch.tanh(x)

        return {"act": Categorical([relu, tanh]), "x": Real(-1.0, 1.0)}

    def train_act(config, trial):
        trial.report(1, -config["x"] ** 2 + (config["act"].__name__ == "relu"))

    path = str(tmp_path / "s.sqlite")
    first = tune(train_act, build(), scheduler=None, budget=10, max_steps=1,
                 executor="inline", storage=path, seed=0)
    again = tune(train_act, build(), scheduler=None, budget=20, max_steps=1,
                 executor="inline", storage=path, seed=0)  # reprs hold memory addresses
    assert len(again.trials) == 20
    assert [t.config["x"] for t in again.trials[:10]] == [t.config["x"] for t in first.trials]


def test_a_train_that_always_fails_ends_the_study() -> None:
    def broken(config, trial):  # (a misspelt config key stops it at once: test_tune_keys)
        raise RuntimeError("no data")

    with pytest.raises(RuntimeError, match=f"(?s)last {MAX_FAILURES_IN_A_ROW} trials all failed"
                                           ".*RuntimeError: no data"):
        tune(broken, SPACE, budget=50, max_steps=5, executor="inline")


def test_a_train_that_never_reports_gets_a_clear_error(tmp_path) -> None:
    path = tmp_path / "s.sqlite"
    with pytest.raises(ValueError, match=r"train never called trial\.report"):
        tune(lambda config, trial: 0.5, SPACE, budget=50, max_steps=5, executor="inline",
             storage=path)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state, error FROM trials").fetchall()[0][0] == "failed"


def test_misusing_the_trial_handle_stops_the_study() -> None:
    def repeats(config, trial):
        trial.report(1, 0.5)
        trial.report(1, 0.6)

    with pytest.raises(ValueError, match=r"steps must increase .* last report was at step 1"):
        tune(repeats, SPACE, budget=50, max_steps=5, executor="inline")

    def ignores_stop(config, trial):
        for step in range(1, 6):
            trial.report(step, -config["lr"] * step)

    with pytest.raises(ValueError, match=r"after trial\.should_stop\(\) became True"):
        tune(ignores_stop, SPACE, budget=50, max_steps=5, executor="inline")

    def forgets_checkpoints(config, trial):
        for step in range(trial.step + 1, 9):
            trial.report(step, 0.1 * step)
            if trial.should_stop():
                return

    with pytest.raises(ValueError, match="paused at step 4 without a checkpoint"):
        tune(forgets_checkpoints, SPACE, scheduler=PBT(interval=4, population=2),
             budget=40, max_steps=8, executor="inline")


CALLS: list[object] = []


def recording_train(config, trial):
    CALLS.append(config)
    trial.report(1, 0.0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"space": Real(0.0, 1.0)}, "single unnamed leaf; .* pass a dict or Product that names it"),
    ({"space": {"lr": (1e-4, 1e-1)}}, "space entry 'lr' is tuple .* not a leaf; use Real"),
    ({"space": {"opt.lr": Real(0.0, 1.0)}}, "names must be non-empty strings without '.'"),
    ({"space": {"a": {"b": 3}}}, "space entry 'a.b' is int"),
    ({"space": {}}, "space={} has no leaves"),
    ({"budget": 0}, "budget must be a positive integer, got 0"),
    ({"budget": 10, "max_steps": 20}, "budget=10 is less than max_steps=20"),
    ({"max_steps": 2.5}, "max_steps must be a positive integer, got 2.5"),
    ({"mode": "maximize"}, "mode must be 'max' .* or 'min', got 'maximize'"),
    ({"scheduler": "hyperband"}, "unknown scheduler 'hyperband'"),
    ({"scheduler": 3}, "scheduler must be 'asha', 'median', 'pbt', None"),
    ({"scheduler": ASHA(min_resource=30)}, "min_resource=30 leaves no rung"),
    ({"scheduler": PBT(mutable=["depth"])}, r"PBT mutable=\['depth'\] names \['depth'\]"),
    ({"executor": "threads"}, "executor must be one of 'process', 'ray', 'inline'"),
    ({"parallel": 0}, "parallel must be a positive integer, got 0"),
    ({"optimizer": "cmaez"}, "unknown optimizer 'cmaez'; did you mean 'cmaes'"),
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
    ({"study_name": ""}, "study_name must be a non-empty string"),
    ({"storage": 3}, "storage must be a path"),
    ({"executor": "process", "train": lambda config, trial: None},
     "cannot be sent to worker processes .* top level of a module"),
])
def test_bad_input_is_refused_before_any_work(kwargs, message) -> None:
    CALLS.clear()
    arguments = {"train": recording_train, "space": SPACE, "budget": 40, "max_steps": 4,
                 "executor": "inline", **kwargs}
    with pytest.raises(ValueError, match=message):
        tune(arguments.pop("train"), arguments.pop("space"), **arguments)
    assert CALLS == []


def test_scheduler_settings_are_validated_on_construction() -> None:
    with pytest.raises(ValueError, match=r"PBT quantile must be a number in \(0\.0, 0\.5\]"):
        PBT(quantile=0.7)
    with pytest.raises(ValueError, match="MedianStopping min_trials must be an integer"):
        MedianStopping(min_trials=0)


def test_storage_keeps_the_study_and_refuses_other_settings(tmp_path) -> None:
    path = tmp_path / "study.sqlite"
    first = tune(train, SPACE, scheduler="asha", budget=40, max_steps=4, executor="inline",
                 storage=path, seed=0)
    with sqlite3.connect(path) as db:
        reports = db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
        assert reports == first.compute == db.execute("SELECT SUM(delta) FROM reports"
                                                      ).fetchone()[0]
    CALLS.clear()
    again = tune(recording_train, SPACE, scheduler="asha", budget=40, max_steps=4,
                 executor="inline", storage=path, seed=0)  # finished: nothing runs again
    assert CALLS == []
    assert [(t.config, t.curve, t.state) for t in again.trials] == \
        [(t.config, t.curve, t.state) for t in first.trials]
    more = tune(train, SPACE, scheduler="asha", budget=60, max_steps=4, executor="inline",
                storage=path, seed=0)  # a larger budget continues the study
    assert 60 <= more.compute and len(more.trials) > len(first.trials)
    with pytest.raises(ValueError, match=r"other settings .*mode: stored 'max', now 'min'"):
        tune(train, SPACE, scheduler="asha", budget=40, max_steps=4, mode="min",
             executor="inline", storage=path, seed=0)
    other = tune(train, SPACE, scheduler=None, budget=8, max_steps=4, executor="inline",
                 storage=path, study_name="second")
    assert len(other.trials) == 2
