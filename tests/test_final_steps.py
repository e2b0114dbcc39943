"""The final phase of fit (``final_steps``): the last steps train the recommended
structure alone, ask nothing of the structure optimizer and cost one forward pass of the
batch each; bad values are refused before anything changes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hybrid_net import Net
from hybrid_net import data as shared_data
from nondiff.hybrid.trainer import HybridTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def data(device, batches: int = 5, rows: int = 16):
    return shared_data(device, batches, rows)


@pytest.mark.parametrize("search_compute,final", [(None, 4), ("shared", 0.2), (1.0, 3)])
def test_the_last_steps_train_the_recommended_structure_alone(device, search_compute,
                                                              final) -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), "ga", seed=0, search_compute=search_compute,
                            final_steps=final, structure_options={"popsize": 4})
    seen = []

    def record(metrics, trainer):
        seen.append((trainer.structure_optimizer.counters["iterations"],
                     trainer.forward_examples, trainer.structure(current=True),
                     trainer.recommended()))

    trainer.callbacks.append(record)
    history = trainer.fit(data(device), epochs=4)
    steps = round(final * 20) if isinstance(final, float) else final
    assert [m.get("final", 0.0) for m in history] == [0.0] * (20 - steps) + [1.0] * steps
    last = seen[-steps - 1:]
    assert len({iterations for iterations, *_ in last}) == 1  # no tell in the final phase
    assert [b - a for (_, a, *_), (_, b, *_) in itertools.pairwise(last)] == [16] * steps
    for _, _, current, recommended in last[1:]:
        assert current["act"] == recommended["act"]
        assert (current["gates"] == recommended["gates"]).all()
    assert all(math.isnan(m["fitness_best"]) for m in history[-steps:])


@pytest.mark.parametrize("value", [-1, 1.0, 1.5, math.nan, True, "0.1"])
def test_a_bad_final_steps_names_the_argument_value_and_fix(value) -> None:
    torch.manual_seed(0)
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"final_steps must be .* got .*; e\.g\. 0\.1"):
        HybridTrainer(model, "ga", final_steps=value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_fraction_counts_over_all_fit_calls_with_total_steps() -> None:
    """fit once per epoch with total_steps: one final phase at the end of the training,
    the same steps as one fit of all epochs (not a final phase every epoch)."""

    def finals(parts: bool) -> list[float]:
        torch.manual_seed(0)
        trainer = HybridTrainer(Net(), "ga", seed=0, final_steps=0.2, total_steps=20,
                                structure_options={"popsize": 4})
        epochs = range(1, 5) if parts else [4]
        return [m.get("final", 0.0) for e in epochs for m in trainer.fit(data("cpu"), e)]

    assert finals(parts=False) == [0.0] * 16 + [1.0] * 4
    assert finals(parts=True) == finals(parts=False)


def test_without_total_steps_the_first_fits_plan_is_kept_and_a_later_one_warns() -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0, final_steps=0.2,
                            structure_options={"popsize": 4})
    first = [m.get("final", 0.0) for m in trainer.fit(data("cpu"), 2)]
    assert first == [0.0] * 8 + [1.0] * 2 and trainer.fair_plan == 10
    state = trainer.state_dict()
    assert state["counters"]["fair_plan"] == 10
    with pytest.warns(UserWarning, match=r"and final_steps=0\.2 are fractions of the 10 "
                                         r"steps .* starts at step 8 .*total_steps=20"):
        later = [m.get("final", 0.0) for m in trainer.fit(data("cpu"), 4)]
    assert later == [1.0] * 10  # past the planned end: still the final phase
    resumed = HybridTrainer(Net(), "ga", seed=0, final_steps=0.2,
                            structure_options={"popsize": 4})
    resumed.load_state_dict(state)
    assert resumed.fair_plan == 10 and resumed.final_at(8) and not resumed.final_at(7)


def test_total_steps_with_only_a_final_fraction_is_accepted_and_an_int_pair_refused() -> None:
    HybridTrainer(Net(), "ga", fair_steps=5, final_steps=0.1, total_steps=20)
    with pytest.raises(ValueError, match=r"total_steps must be .* got total_steps=20 with "
                                         r"final_steps=2 and fair_steps=5; e\.g\."):
        HybridTrainer(Net(), "ga", fair_steps=5, final_steps=2, total_steps=20)
