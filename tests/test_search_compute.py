"""Bounded search compute (issue 17): with ``search_compute=c`` the trainer's evaluations
stay within ``c`` forward examples per weight-step example, the weights train under the
last generation in between, a resume mid-cycle is exact, and bad values are refused
before anything changes."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from conftest import plain_equal
from hybrid_net import Net, data, straight_and_resumed
from nondiff.hybrid.trainer import HybridTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name,weight_step", [("ga", "fair"), ("cmaes", "population"),
                                              ("one-plus-lambda", "best"),
                                              ("reinforce", "sampled")])
@pytest.mark.parametrize("budget", [0.5, 1.0, 3.0])
def test_the_evaluations_respect_the_bound_over_a_fit(device, name, weight_step,
                                                      budget) -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), name, seed=0, weight_step=weight_step,
                            search_compute=budget, final_steps=0,  # the credit alone
                            structure_options={"popsize": 4} if name != "cmaes" else None)
    history = trainer.fit(data(device), epochs=8)
    weight_rows = 8 * 6 * 32
    evaluations = trainer.forward_examples - weight_rows
    generations = int(sum(m["searched"] for m in history))
    size = trainer.structure_optimizer.popsize + (name in ("ga", "one-plus-lambda"))
    assert evaluations <= budget * weight_rows  # the bound, counted honestly
    assert generations == trainer.structure_optimizer.counters["iterations"] > 1
    assert evaluations >= (generations - 1) * trainer.structure_optimizer.popsize * 32
    assert evaluations + size * 32 > budget * weight_rows  # it spends what it may
    assert all(math.isnan(m["fitness_best"]) for m in history if not m["searched"])


def test_without_a_bound_every_step_is_a_generation_as_before(device) -> None:
    def run(**kwargs):
        torch.manual_seed(0)
        trainer = HybridTrainer(Net().to(device), "ga", seed=0,
                                structure_options={"popsize": 4}, **kwargs)
        trainer.fit(data(device), epochs=2)
        return trainer

    # the unbounded search (the default before issue 17) and a bound that always covers
    plain, generous = run(search_compute=None), run(search_compute=100.0, final_steps=0)
    assert plain.forward_examples == generous.forward_examples == 12 * 32 * (1 + 5) - 32
    for a, b in zip(plain.model.parameters(), generous.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert "searched" not in plain.history[0] and "searched" in generous.history[0]


@pytest.mark.parametrize("name,weight_step", [("ga", "fair"), ("cmaes", "fair"),
                                              ("one-plus-lambda", "sampled")])
def test_resume_between_generations_is_exact(name, weight_step) -> None:
    def make():
        torch.manual_seed(0)
        return HybridTrainer(Net(), name, seed=3, weight_step=weight_step, search_compute=0.7,
                             structure_options={"popsize": 5} if name != "cmaes" else None)

    straight, first, resumed = straight_and_resumed(
        make, data("cpu"), 3,  # stop between two generations, mid-epoch
        lambda metrics, trainer: metrics["step"] >= 4 and metrics["step"] % 6 != 0
        and not metrics["searched"] and bool(trainer.between["encoded"]))
    assert first.step_count < 18 and first.search_credit != 0.0
    assert resumed.step_count == straight.step_count == 18
    assert plain_equal(resumed.state_dict(), straight.state_dict())


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, True, "1.0"])
def test_a_bad_search_compute_names_the_argument_value_and_fix(value) -> None:
    torch.manual_seed(0)
    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items() if "extra" not in k}
    rng = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"search_compute must be .* got .*; e\.g\. 1\.0"):
        HybridTrainer(model, "ga", search_compute=value)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_a_fit_that_ends_before_any_generation_warns_with_the_values_and_fix(device) -> None:
    def make(**kwargs):
        torch.manual_seed(0)
        return HybridTrainer(Net().to(device), "ga", seed=0, structure_options={"popsize": 8},
                             final_steps=0, **kwargs)

    short = make(search_compute=0.1)  # 6 steps x 32 rows earn 19.2 of a generation's 8 x 32
    with pytest.warns(UserWarning, match=r"fit took 6 steps without any generation .* "
                      r"search_compute=0\.1 earned 19\.2 evaluation examples .* costs 256 "
                      r"\(8 candidates x 32 rows\); pass search_compute >= 1\.34"):
        short.fit(data(device), epochs=1)
    assert short.structure_optimizer.counters["iterations"] == 0
    enough = make(search_compute=1.34)  # the value the warning names
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enough.fit(data(device), epochs=1)
    assert enough.structure_optimizer.counters["iterations"] == 1
    warm = make(warmup_steps=10)
    with pytest.warns(UserWarning, match=r"all 6 steps so far were warm-up \(warmup_steps=10\)"):
        warm.fit(data(device), epochs=1)
