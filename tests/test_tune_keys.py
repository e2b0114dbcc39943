"""A ``train`` that reads a config key the space does not have stops the study at once.

A misspelt key fails every trial the same way; the study says which key and which names
the space has after the first trial, not after ``MAX_FAILURES_IN_A_ROW`` of them.
"""

from __future__ import annotations

import pytest
import torch

from nondiff.tune import tune
from tests.tune_helpers import SPACE, accuracy


def regression(config: dict, trial, *, key: str = "lr") -> None:
    """A real torch fit of y = 2x that reads its learning rate as ``config[key]``."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, generator=generator)
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config[key])
    for step in range(1, trial.max_steps + 1):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), 2 * x)
        loss.backward()
        optimizer.step()
        trial.report(step, -loss.item())
        if trial.should_stop():
            return


def test_a_misspelt_config_key_stops_the_study_after_one_trial(tmp_path) -> None:
    path = str(tmp_path / "study.sqlite")
    calls = []

    def misspelt(config, trial):
        calls.append(trial.number)
        regression(config, trial, key="learning_rate")

    with pytest.raises(ValueError, match=r"(?s)KeyError\('learning_rate'\) in trial 0.*"
                                         r"\['lr', 'width', 'act'\].*fix the key"):
        tune(misspelt, SPACE, scheduler=None, budget=40, max_steps=3, executor="inline",
             storage=path, seed=0)
    assert calls == [0]
    # the trial is recorded with its traceback; the fixed train resumes the same study
    study = tune(regression, SPACE, scheduler=None, budget=12, max_steps=3,
                 executor="inline", storage=path, seed=0)
    assert study.trials[0].state == "failed"
    assert "KeyError: 'learning_rate'" in study.trials[0].error
    assert len(study.trials) == 5 and all(t.state == "complete" for t in study.trials[1:])


def test_a_key_error_on_a_name_of_the_space_is_an_ordinary_failure() -> None:
    def sometimes(config, trial):  # KeyError('width') names a leaf: not a misspelling
        trial.report(1, accuracy(config, 1))
        if config["width"] % 2:
            raise KeyError("width")
        if not trial.should_stop():
            trial.report(2, accuracy(config, 2))

    study = tune(sometimes, SPACE, scheduler=None, budget=31, max_steps=2, executor="inline",
                 seed=0)
    states = {t.state for t in study.trials}
    assert states == {"failed", "complete"}
