"""The schedulers of nondiff.tune decide as their papers say, on scripted curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nondiff.hybrid.tune.proposals import rank_fitness
from nondiff.hybrid.tune.schedulers import (
    ASHA,
    NEW,
    PBT,
    WAIT,
    Exploit,
    MedianStopping,
    Resume,
    make_scheduler,
)
from nondiff.hybrid.tune.space import study_space
from nondiff.hybrid.tune.study import TrialRecord
from nondiff.optim.spaces import Categorical, Integer, Real


def _arrive(scheduler, trials, number, curve):
    """Trial ``number`` reports ``curve`` one step at a time; the decisions."""
    record = trials.setdefault(number, TrialRecord(number, {}))
    decisions = []
    for step, value in curve:
        record.curve.append((step, value))
        decisions.append(scheduler.on_report(record, step, value, trials))
    return decisions


def test_asha_rungs_follow_eta_and_min_resource() -> None:
    cases = [((3, 1, 20), [1, 3, 9]), ((2, 1, 9), [1, 2, 4, 8]), ((3, 2, 20), [2, 6, 18]),
             ((4, 1, 100), [1, 4, 16, 64])]
    for (eta, r0, max_steps), rungs in cases:
        asha = ASHA(eta=eta, min_resource=r0)
        asha.bind(max_steps, "max")
        assert asha.rungs == rungs


def test_asha_continues_iff_in_the_top_third_of_the_rung_so_far() -> None:
    asha = ASHA(eta=3)
    asha.bind(20, "max")
    trials: dict[int, TrialRecord] = {}
    values = [0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.1, 0.8, 0.45]
    # k-th arrival goes on iff its rank among the k values <= ceil(k / 3)
    expected = ["continue", "stop", "continue", "stop", "continue", "stop", "stop", "continue",
                "stop"]
    got = [_arrive(asha, trials, i, [(1, v)])[0] for i, v in enumerate(values)]
    assert got == expected


@pytest.mark.parametrize("mode", ["max", "min"])
def test_asha_promotes_exactly_the_top_third_once_the_rung_is_full(mode: str) -> None:
    asha = ASHA(eta=3)
    asha.bind(20, mode)
    rng = np.random.default_rng(0)
    values = rng.permutation(9) / 10.0
    trials = {i: TrialRecord(i, {}, curve=[(1, 0.0), (2, 0.0), (3, float(v))])
              for i, v in enumerate(values)}
    passed = {i for i, t in trials.items()
              if asha.on_report(t, 3, t.curve[-1][1], trials) == "continue"}
    order = np.argsort(-values if mode == "max" else values)
    assert passed == set(order[:3].tolist())


def test_asha_judges_at_the_rung_a_report_crosses_and_refuses_nan() -> None:
    asha = ASHA(eta=2)
    asha.bind(10, "max")  # rungs 1, 2, 4, 8
    trials: dict[int, TrialRecord] = {}
    assert _arrive(asha, trials, 0, [(3, 0.9), (5, 0.95)]) == ["continue", "continue"]
    # trial 1 reports at 3 (crossing rung 2: 0.5 vs 0.9, not in the top half) -> stop
    assert _arrive(asha, trials, 1, [(3, 0.5)]) == ["stop"]
    assert _arrive(asha, trials, 2, [(1, math.nan)]) == ["stop"]
    assert _arrive(asha, trials, 3, [(3, 0.99)]) == ["continue"]


def test_asha_and_median_refuse_bad_settings() -> None:
    with pytest.raises(ValueError, match=r"eta must be a number in \(1\.0"):
        ASHA(eta=1)
    with pytest.raises(ValueError, match="min_resource=20 leaves no rung below max_steps=20"):
        ASHA(min_resource=20).bind(20, "max")
    with pytest.raises(ValueError, match="rungs must be increasing"):
        ASHA(rungs=[3, 2])
    with pytest.raises(ValueError, match="grace_period=30 exceeds max_steps=20"):
        MedianStopping(grace_period=30).bind(20, "max")
    with pytest.raises(ValueError, match="unknown scheduler 'hyperband'"):
        make_scheduler("hyperband")


def test_median_stopping_compares_best_so_far_with_the_median_of_running_averages() -> None:
    rule = MedianStopping(grace_period=2, min_trials=3)
    rule.bind(4, "max")
    done = {i: TrialRecord(i, {}, curve=[(1, 0.1 * (i + 1)), (2, 0.2 * (i + 1)),
                                         (3, 0.3 * (i + 1)), (4, 0.4 * (i + 1))],
                           state="complete") for i in range(3)}
    # running averages at step 2: 0.15, 0.3, 0.45 (median 0.3); at 3: 0.2, 0.4, 0.6 (0.4)
    trials = dict(done)
    assert _arrive(rule, trials, 3, [(1, 0.0)]) == ["continue"]  # grace period
    assert _arrive(rule, trials, 3, [(2, 0.31)]) == ["continue"]  # 0.31 >= 0.3
    assert _arrive(rule, trials, 3, [(3, 0.35)]) == ["stop"]  # best 0.35 < 0.4
    # the same trial with only 2 completed trials: the rule waits for min_trials
    two = {0: done[0], 1: done[1]}
    assert _arrive(rule, two, 4, [(1, 0.0), (2, 0.0), (3, 0.0)]) == ["continue"] * 3
    # mode="min": the comparison flips (the running average of losses)
    rule.bind(4, "min")
    trials = dict(done)
    assert _arrive(rule, trials, 5, [(1, 0.9), (2, 0.25)]) == ["continue", "continue"]
    assert _arrive(rule, trials, 6, [(1, 0.9), (2, 0.35)]) == ["continue", "stop"]


SPACE = study_space({"lr": Real(1e-3, 1.0, log=True), "width": Integer(4, 64),
                     "act": Categorical(["relu", "tanh", "gelu"])})


def _member(number, value, step=4, state="paused", lr=0.1, width=16):
    config = {"lr": lr, "width": width, "act": "relu"}
    return TrialRecord(number, config, curve=[(step, value)], state=state,
                       encoded=SPACE.encode(config).tolist())


def test_pbt_pauses_every_interval_and_waits_for_the_whole_population() -> None:
    pbt = PBT(interval=4, population=4, resample_probability=0.0)
    pbt.bind(12, "max", space=SPACE, seed=0)
    assert [pbt.on_report(None, s, 0.0, {}) for s in (3, 4, 8, 12)] == \
        ["continue", "pause", "pause", "continue"]
    trials = {i: _member(i, 0.1 * i) for i in range(3)}
    assert pbt.next_actions(trials, lambda: None) == NEW  # 3 of 4 founders started
    trials[3] = _member(3, 0.5, state="running", step=2)
    assert pbt.next_actions(trials, lambda: None) == WAIT


@pytest.mark.parametrize("mode", ["max", "min"])
def test_pbt_bottom_quantile_copies_the_top_quantile(mode: str) -> None:
    pbt = PBT(interval=4, population=8, quantile=0.25, resample_probability=0.0,
              mutable=["lr"])
    pbt.bind(12, mode, space=SPACE, seed=0)
    values = [0.5, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2, 0.6]
    trials = {i: _member(i, v, lr=0.01 * (i + 1), width=8 + i) for i, v in enumerate(values)}
    actions = pbt.next_actions(trials, lambda: None)
    exploits = {a.number: a for a in actions if isinstance(a, Exploit)}
    resumed = {a.number for a in actions if isinstance(a, Resume)}
    ranked = sorted(range(8), key=lambda i: -values[i] if mode == "max" else values[i])
    assert set(exploits) == set(ranked[-2:]) and resumed == set(ranked[:-2])
    for action in exploits.values():
        assert action.donor in ranked[:2]
        donor = trials[action.donor].config
        copy = SPACE.decode(action.row)
        assert copy["width"] == donor["width"] and copy["act"] == donor["act"]  # not mutable
        assert round(copy["lr"] / donor["lr"], 9) in (0.8, 1.2)  # explored
        assert action.proposal is None


def test_pbt_explore_can_take_the_optimizers_proposal() -> None:
    pbt = PBT(interval=4, population=2, resample_probability=1.0, mutable=["lr", "act"])
    pbt.bind(12, "max", space=SPACE, seed=0)
    trials = {0: _member(0, 0.9, width=20), 1: _member(1, 0.1, width=30)}
    proposal = SPACE.encode({"lr": 0.5, "width": 60, "act": "gelu"})
    (exploit,) = [a for a in pbt.next_actions(trials, lambda: (3, 5, proposal))
                  if isinstance(a, Exploit)]
    assert (exploit.number, exploit.donor, exploit.proposal) == (1, 0, (3, 5))
    assert SPACE.decode(exploit.row) == {"lr": pytest.approx(0.5), "width": 20, "act": "gelu"}


def test_pbt_refuses_unknown_mutable_names() -> None:
    with pytest.raises(ValueError, match=r"PBT mutable=\['lrr'\] names \['lrr'\]"):
        PBT(mutable=["lrr"]).bind(12, "max", space=SPACE)
    with pytest.raises(ValueError, match="interval=12 must be below max_steps=12"):
        PBT(interval=12).bind(12, "max", space=SPACE)


def test_rank_fitness_orders_by_steps_reached_then_by_values_at_the_same_step() -> None:
    trials = {
        0: TrialRecord(0, {}, [(1, 0.9)], "pruned"),  # best at step 1, yet pruned there
        1: TrialRecord(1, {}, [(1, 0.5), (3, 0.6)], "pruned"),
        2: TrialRecord(2, {}, [(1, 0.4), (3, 0.7), (9, 0.8)], "complete"),
        3: TrialRecord(3, {}, [(1, 0.95), (3, math.nan)], "pruned"),
        4: TrialRecord(4, {}, [(1, 0.99)], "failed"),
    }
    fitness = {n: rank_fitness(t, trials, "max") for n, t in trials.items()}
    assert fitness[2] > fitness[1] > fitness[0]
    assert math.isnan(fitness[3]) and math.isnan(fitness[4])
    # at step 3, 0.6 beats only the NaN; at step 1, 0.9 beats 0.5 and 0.4 (of 5 values)
    assert fitness[1] == pytest.approx(3 + 1 / 3) and fitness[0] == pytest.approx(1 + 2 / 5)
