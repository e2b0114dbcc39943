"""The regression benchmark of structure search (benchmarks/hybrid_tasks/regression_gap.py):
its data, its known structure, its recovered check and one short run of each kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nondiff.benchmarks.hybrid_tasks import regression_gap

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_target_depends_on_the_relevant_inputs_only() -> None:
    x, y, x_test, y_test = regression_gap.make_data(0)
    assert x.shape == (2000, 10) and y.shape == (2000, 1) and x_test.shape == x.shape
    assert y_test.shape == y.shape
    noise = y[:, 0] - (torch.sin(2 * x[:, 1]) + x[:, 4].square() - x[:, 7])
    assert float(noise.std()) == pytest.approx(0.1, rel=0.1)
    assert not torch.equal(regression_gap.make_data(1)[0], x)
    known = regression_gap.known_structure()
    assert np.flatnonzero(known["gates"]).tolist() == list(regression_gap.RELEVANT)


def test_recovered_needs_exactly_the_relevant_gates_and_a_nonlinear_activation() -> None:
    known = regression_gap.known_structure()
    assert regression_gap.recovered(known)
    assert regression_gap.recovered({**known, "act": "tanh"})
    assert not regression_gap.recovered({**known, "act": "identity"})
    extra = known["gates"].copy()
    extra[0] = True
    assert not regression_gap.recovered({**known, "gates": extra})
    missing = known["gates"].copy()
    missing[regression_gap.RELEVANT[0]] = False
    assert not regression_gap.recovered({**known, "gates": missing})


def test_the_known_structure_trained_alone_beats_the_variance_of_the_target() -> None:
    row = regression_gap.run_one("fixed", seed=0, epochs=3)
    variance = float(regression_gap.make_data(0)[3].var())
    assert row["test_mse"] < 0.5 * variance
    assert regression_gap.recovered(row["structure"])


def test_a_search_returns_a_structure_of_the_model_and_its_test_mse(
        capsys: pytest.CaptureFixture[str]) -> None:
    rows = regression_gap.main(["--seeds", "1", "--epochs", "2", "--optimizers", "cmaes",
                                "--final-steps", "0.5"])
    (row,) = rows
    assert row["optimizer"] == "cmaes" and np.isfinite(row["test_mse"])
    assert row["recovered"] == regression_gap.recovered(row["structure"])
    assert row["structure"]["act"] in ("identity", "relu", "tanh")
    assert len(row["structure"]["gates"]) == 10 and np.isfinite(row["fixed_mse"])
    out = capsys.readouterr().out
    assert "machine:" in out and "cmaes" in out


def test_trainer_options_reach_the_trainer() -> None:
    with pytest.raises(ValueError, match="final_steps"):
        regression_gap.run_one("cmaes", seed=0, epochs=1, final_steps=-1.0)


def test_retrain_adds_the_retraining_to_the_compute() -> None:
    searched = regression_gap.run_one("cmaes", seed=0, epochs=2)
    retrained = regression_gap.run_one("cmaes", seed=0, epochs=2, retrain=True)
    assert retrained["structure"]["act"] == searched["structure"]["act"]
    assert np.array_equal(retrained["structure"]["gates"], searched["structure"]["gates"])
    assert retrained["forward_examples"] == searched["forward_examples"] + 2 * 2000
    assert np.isfinite(retrained["test_mse"])


def test_the_known_structure_retrained_is_the_fixed_run() -> None:
    fixed = regression_gap.run_one("fixed", seed=0, epochs=2)
    torch.manual_seed(0)
    x, y, x_test, y_test = regression_gap.make_data(0)
    model = regression_gap._model()
    trainer = regression_gap.HybridTrainer(model, "cmaes", regression_gap._adam,
                                           loss=torch.nn.functional.mse_loss, progress=False)
    rows = regression_gap.TensorDataset(x, y)
    trainer.fit(rows, epochs=1, batch_size=64)
    trainer.retrain(rows, epochs=2, batch_size=64, structure=regression_gap.known_structure())
    with torch.no_grad():
        mse = float(torch.nn.functional.mse_loss(model(x_test), y_test))
    assert mse == fixed["test_mse"]
