"""The README's example as a benchmark (nondiff.benchmarks.hybrid_tasks.readme_digits): the
model is the README's, the runs and the table come out, bad budgets are refused first."""

from __future__ import annotations

import pytest
from nondiff.benchmarks.hybrid_tasks.readme_digits import (
    ACTIVATIONS,
    DigitsNet,
    main,
    run_benchmark,
    structure_optimizers,
    train_fixed,
)
from nondiff.hybrid.structure import structure_space


def test_the_model_is_the_readmes_and_every_structure_optimizer_is_listed() -> None:
    space = structure_space(DigitsNet())
    assert space.size == 65 and {"ga", "cmaes", "reinforce"} <= set(structure_optimizers())
    assert not any(n.startswith(("ipop-", "bipop-")) for n in structure_optimizers())


def test_a_short_run_reports_each_run_against_the_activations_alone(capsys) -> None:
    runs = run_benchmark(seeds=1, epochs=1, lr=1e-2, optimizers=["ga", "ga"])
    (run,) = runs  # a name given twice runs once
    assert run["act"] in ACTIVATIONS and 0 <= run["kept"] <= 64
    best = max(train_fixed(a, 0, 1, 1e-2) for a in ACTIVATIONS)
    assert run["gap"] == pytest.approx(100 * (best - run["accuracy"]))
    out = capsys.readouterr().out
    assert "alone, seed 0: relu" in out and "within 2" in out and "keep_together True" in out


@pytest.mark.parametrize("kwargs, fix", [({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"),
                                         ({"seeds": 0}, "seeds"),
                                         ({"optimizers": ["nope"]}, "do not search"),
                                         ({"optimizers": []}, "non-empty"),
                                         ({"optimizers": "ga"}, "non-empty")])
def test_bad_arguments_are_refused_before_any_run(kwargs, fix, capsys) -> None:
    with pytest.raises(ValueError, match=fix):
        run_benchmark(**kwargs)
    assert capsys.readouterr().out == ""


def test_the_command_line_refuses_a_bad_learning_rate() -> None:
    with pytest.raises(SystemExit):
        main(["--lr", "0"])
