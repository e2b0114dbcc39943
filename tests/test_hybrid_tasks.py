"""Hybrid tasks: digit arithmetic through a hard argmax, architecture + weights, and
visual program induction, each learning well beyond chance in a small budget."""

from __future__ import annotations

import pytest
import torch
from nondiff.benchmarks.hybrid_tasks.architecture import search
from nondiff.benchmarks.hybrid_tasks.arithmetic import train_arithmetic
from nondiff.benchmarks.hybrid_tasks.programs import train_programs
from nondiff.hybrid.structure import structure_space
from nondiff.problems.hybrid.architecture import SearchNet
from nondiff.problems.hybrid.arithmetic import DigitArithmetic, pair_loss, relaxed_pair_loss
from nondiff.problems.hybrid.programs import DSL, run_program
from nondiff.problems.learning import mnist1d
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def arithmetic() -> DigitArithmetic:
    return DigitArithmetic(seed=0, test_pairs=500)


def test_pairs_are_labeled_with_their_sum_only(arithmetic: DigitArithmetic) -> None:
    data = arithmetic.data
    xa, xb, s = next(arithmetic.batches(16, epoch=0))
    # each image of the pair is a training image; the label is the sum of their digits
    rows = {tuple(r.tolist()): int(y) for r, y in zip(data.x_train[:], data.y_train, strict=True)}
    for a, b, total in zip(xa, xb, s, strict=True):
        assert rows[tuple(a.tolist())] + rows[tuple(b.tolist())] == int(total)
    assert sum(len(t) for _, _, t in arithmetic.batches(64, epoch=1)) == len(data.y_train)


def test_relaxed_loss_equals_the_exact_sum_error_on_one_hots() -> None:
    a, b = torch.randint(0, 10, (200,)), torch.randint(0, 10, (200,))
    s = torch.where(torch.rand(200) < 0.5, a + b, torch.randint(0, 19, (200,)))
    u, v = nn.functional.one_hot(a, 10).float(), nn.functional.one_hot(b, 10).float()
    assert torch.equal(relaxed_pair_loss(u, v, s), pair_loss(a, b, s))


def test_digit_arithmetic_beats_chance_by_a_wide_margin(arithmetic: DigitArithmetic) -> None:
    """Chance is 10 % (always answering the most frequent sum, 9); the critic learns to
    read the digits from their sums in 3 epochs."""
    result = train_arithmetic("critic", seed=0, epochs=3, task=arithmetic, critic_warmup=500)
    assert result["sum_accuracy"] > 0.6
    assert result["digit_accuracy"] > 0.75
    with pytest.raises(ValueError, match="method"):
        train_arithmetic("rebar", task=arithmetic)


def test_architecture_search_with_shared_weights_beats_chance() -> None:
    data = mnist1d(n=800, seed=0)
    result = search("ga", data, seed=0, epochs=3, retrain_epochs=12,
                    trainer_options={"search_compute": None})  # unbounded: a generation a step
    space = structure_space(SearchNet())
    assert space.contains(result["arch"])
    assert result["test_accuracy"] > 0.25  # 10 classes
    # 3 epochs of 8 batches over 512 rows (80 % of the 640 training rows): 12 warm-up
    # steps (one pass) and 12 steps evaluating the GA's 10 candidates (+ one pass), its
    # best re-evaluated with each generation after the first (11 more)
    assert result["search_compute"] == 12 * 64 * 1 + 12 * 64 * 11 + 11 * 64


def test_dsl_tokens() -> None:
    x = torch.tensor([[3, 4, 2, 7]])
    assert run_program(["sort"], x).tolist() == [[2, 3, 4, 7]]
    assert run_program(["max-scan"], x).tolist() == [[3, 4, 4, 7]]
    assert run_program(["filter-even", "add1"], x).tolist() == [[5, 3, 0, 0]]
    assert len(DSL) == 6


def test_program_induction_recovers_the_program_from_outputs_alone() -> None:
    result = train_programs(("sort", "reverse"), seed=0, epochs=6,
                            trainer_options={"search_compute": None})  # unbounded
    assert result["recovered"], result["found"]
    assert result["output_accuracy"] > 0.5 and result["digit_accuracy"] > 0.85
