"""Weight training that does not favour the incumbent (issue 17): fair paths train every
option equally often, the warm-up is fair, the fair share hands over to the generation,
batched and per-path steps agree, elitists re-evaluate their best, resume stays exact,
and a GA / (1+1) EA / CMA-ES on a small version of the issue's task keep a nonlinear
activation where the identity used to win."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import plain_equal, roundtrip
from hybrid_net import straight_and_resumed
from nondiff.hybrid.sampling import (
    FAIR_OPEN,
    FAIR_OPEN_START,
    fair_open_at,
    fair_paths,
    fair_share,
    fair_structures,
    split_rows,
)
from nondiff.hybrid.structure import (
    Choice,
    Gates,
    get_structure,
    set_structure,
    structure_space,
)
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.optim.spaces import Binary, Categorical, Integer, Permutation, Product, Real
from nondiff.problems.hybrid.acceptance import make_task
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- fair paths, no model ---------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_fair_paths_give_every_value_of_every_entry_equal_paths(seed) -> None:
    space = Product(act=Categorical(["relu", "tanh", "identity"], size=2), gates=Binary(5),
                    width=Integer(1, 6), order=Permutation(4), rate=Real(0.0, 1.0, size=2))
    k = fair_paths(space)
    assert k == 6  # lcm(3, 2, 6)
    paths = fair_structures(space, k, np.random.default_rng(seed))
    values = space.decode_batch(paths)  # every path is a valid structure
    for j in range(2):
        picked = [v["act"][j] for v in values]
        assert all(picked.count(a) == 2 for a in ("relu", "tanh", "identity"))
    assert (paths[:, 2:7].sum(axis=0) == 3).all()  # each gate open in half the paths
    assert sorted(v["width"] for v in values) == [1, 2, 3, 4, 5, 6]
    for j in range(2):  # one real per stratum of width 1/k
        assert sorted(np.floor(paths[:, -2 + j] * k).astype(int).tolist()) == list(range(k))


def test_fair_paths_when_values_do_not_divide_the_paths() -> None:
    space = Product(a=Categorical("abcd"), n=Integer(0, 19))
    assert fair_paths(space) == 12  # lcm 20 > 12: the largest count (20), capped at 12
    rng = np.random.default_rng(0)
    paths = fair_structures(space, 12, rng)
    assert np.bincount(paths[:, 0].astype(int), minlength=4).tolist() == [3, 3, 3, 3]
    assert len(set(paths[:, 1].tolist())) == 12  # more values than paths: none twice
    paths = fair_structures(Categorical("abcde"), 7, rng)
    assert sorted(np.bincount(paths[:, 0].astype(int)).tolist()) == [1, 1, 1, 2, 2]


def test_split_rows_share_and_bad_input() -> None:
    assert split_rows(64, [1.0] * 6) == [11, 11, 11, 11, 10, 10]
    assert split_rows(10, [3.0, 1.0]) == [8, 2]
    assert [fair_share(t, 4) for t in (0, 2, 4, 9)] == [1.0, 0.5, 0.0, 0.0]
    assert fair_share(0, 0) == 0.0
    with pytest.raises(ValueError, match="weights must be non-negative"):
        split_rows(4, [0.0, 0.0])
    with pytest.raises(ValueError, match="k \\(paths\\)"):
        fair_structures(Binary(3), 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unbounded"):
        fair_structures(Real(), 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="open_share must be a number in \\[0, 1\\]"):
        fair_structures(Binary(3), 4, np.random.default_rng(0), open_share=1.5)
    with pytest.raises(ValueError, match="fair_open must be a number in \\[0, 1\\]"):
        HybridTrainer(CountingNet(), "ga", fair_open=float("nan"))


def test_the_open_share_ramps_from_every_gate_open_to_fair_open() -> None:
    assert FAIR_OPEN_START == 1.0
    assert [fair_open_at(t, 4) for t in (0, 2, 4, 9)] == [1.0, 0.75, 0.5, 0.5]
    assert fair_open_at(3, 0) == FAIR_OPEN and fair_open_at(1, 2, 0.5, 0.5) == 0.5
    trainer = HybridTrainer(CountingNet(), "ga", seed=0, fair_steps=10)
    assert [trainer.open_share_at(t) for t in (0, 5, 10, 20)] == [1.0, 0.75, 0.5, 0.5]
    paths, _, _ = trainer._owned_paths([], 1.0, 64)  # step 0: every gate open
    assert all(bool(np.all(p["gates"])) for p in paths)
    trainer.step_count = 10
    paths, _, _ = trainer._owned_paths([], 1.0, 64)
    assert np.mean([np.mean(p["gates"]) for p in paths]) == pytest.approx(0.5, abs=0.1)
    fixed = HybridTrainer(CountingNet(), "ga", seed=0, fair_steps=10, fair_open_start=0.5)
    assert fixed.open_share_at(0) == 0.5
    with pytest.raises(ValueError, match="fair_open_start must be a number in \\[0, 1\\]"):
        HybridTrainer(CountingNet(), "ga", fair_open_start=1.5)


def test_gates_open_in_the_share_of_the_fair_paths_asked() -> None:
    rng = np.random.default_rng(0)
    assert FAIR_OPEN == 0.5 and (fair_structures(Binary(8), 6, rng).sum(axis=0) == 3).all()
    opened = np.stack([fair_structures(Binary(8), 6, rng, open_share=0.75).sum(axis=0)
                       for _ in range(400)])
    assert set(opened.ravel().tolist()) == {4.0, 5.0}  # floor or ceil of 4.5, never more
    assert opened.mean() / 6 == pytest.approx(0.75, abs=0.01)
    both = fair_structures(Product(a=Categorical("abc"), g=Binary(2)), 6, rng, open_share=1.0)
    assert np.bincount(both[:, 0].astype(int)).tolist() == [2, 2, 2]  # choices stay fair
    assert both[:, 1:].tolist() == [[1.0, 1.0]] * 6


def _product_loss(fair_open: float | None, start: float | None = None) -> float:
    """The known structure's loss on issue 17's "inputs-and-activation" (label
    ``x_2 x_5 > 0``; chance 0.69) after 320 steps of fair paths alone (no search), each
    gate open in ``fair_open`` of them from ``start`` on (the default ramp: from every
    gate open down to ``fair_open`` at step 160)."""
    task = make_task("inputs-and-activation", seed=1, n_train=1280, n_test=64)
    torch.manual_seed(1)
    model = task.model()
    given = {} if fair_open is None else {"fair_open": fair_open}
    given.update({} if start is None else {"fair_open_start": start})
    # every step fair: no search at all; one set of weights for the three activations
    # (the ramp's effect on shared weights; few-shot copies: tests/test_few_shot.py)
    trainer = HybridTrainer(model, "cem", lambda p: torch.optim.Adam(p, lr=task.lr), seed=1,
                            warmup_steps=10**6, split_choice=None, **given)
    # no search: the final phase starts from CEM's all-closed mean with the identity, which
    # the gate parsimony keeps (no input is worth its noise there; test_gate_closing.py)
    trainer.gate_parsimony = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fit ends before the first generation
        trainer.fit(task.data, epochs=16, batch_size=64, seed=1)
    assert trainer.step_count == 320
    set_structure(model, task.known)
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(task.data.x_train), task.data.y_train))


def test_fair_paths_open_more_often_train_a_product_of_two_gated_inputs() -> None:
    """The collapse of issue 17's "inputs-and-activation": both inputs of the product must
    be open together; with each gate open in half of the fair paths the shared weights
    had barely learned it (measured 0.58-0.60 over 5 seeds), so the structure cost closed
    both gates; open in 3/4 of them: 0.33-0.37; from every gate open down to half by
    step 160 (the default): 0.15."""
    assert _product_loss(None, start=0.5) > 0.55
    assert _product_loss(0.75, start=0.75) < 0.5
    assert _product_loss(None) < 0.3  # the default ramp from every gate open: 0.15


# -- the trainer's weight step ------------------------------------------------------------

class Counting(nn.Module):
    """An activation that counts the rows it sees in training mode."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn, self.rows = fn, 0

    def forward(self, h):
        if self.training:
            self.rows += h.shape[0]
        return self.fn(h)


class CountingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates(4)
        self.hidden = nn.Linear(4, 8)
        self.act = Choice({"relu": Counting(torch.relu), "tanh": Counting(torch.tanh),
                           "identity": Counting(lambda h: h)})
        self.out = nn.Linear(8, 2)
        self.closed = torch.zeros(4)

    def forward(self, x):
        gated = self.gates(x)
        if self.training:  # x has no zeros: a zero is a closed gate
            self.closed = self.closed + (gated == 0).sum(dim=0).cpu()
        return self.out(self.act(self.hidden(gated)))


def counting_data(device, batches: int = 3, rows: int = 60):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batches * rows, 4, generator=g) + 0.5  # no zeros
    y = (x[:, 0] > x[:, 1]).long()
    return [(x[i:i + rows].to(device), y[i:i + rows].to(device))
            for i in range(0, len(y), rows)]


def test_the_warmup_trains_every_option_and_gate_state_on_equal_rows(device) -> None:
    torch.manual_seed(0)
    model = CountingNet().to(device)
    trainer = HybridTrainer(model, "ga", seed=0, warmup_steps=3, final_steps=0,
                            fair_open_start=0.5)  # gates open in half of them from the start
    history = trainer.fit(counting_data(device), epochs=1)  # 3 steps of 60 rows, all fair
    assert trainer.fair_paths == 6 and [m["fair_share"] for m in history] == [1.0] * 3
    assert [option.rows for option in model.act.options] == [60, 60, 60]  # 20 a step each
    assert model.closed.tolist() == [90.0] * 4  # each gate closed on half the rows
    assert trainer.structure_optimizer.counters["iterations"] == 0


def test_the_fair_share_falls_and_then_the_generation_trains(device) -> None:
    torch.manual_seed(0)
    model = CountingNet().to(device)
    trainer = HybridTrainer(model, "ga", seed=0, fair_steps=2,
                            structure_options={"popsize": 4})
    history = trainer.fit(counting_data(device), epochs=2)
    assert [m["fair_share"] for m in history] == [1.0, 0.5, 0.0, 0.0, 0.0, 0.0]
    fraction = HybridTrainer(CountingNet().to(device), "ga", seed=0)  # fair_steps=0.5
    shares = [m["fair_share"] for m in fraction.fit(counting_data(device), epochs=2)]
    assert shares == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0, 0.0, 0.0])  # half of 6 steps
    by_hand = HybridTrainer(CountingNet().to(device), "ga", seed=0)
    x, y = counting_data(device)[0]
    assert by_hand.step(x, y)["fair_share"] == 0.5  # no fit: no plan, half and half
    population = HybridTrainer(CountingNet().to(device), "ga", seed=0,
                               weight_step="population")
    assert {m["fair_share"] for m in population.fit(counting_data(device), epochs=1)} == {0.0}


def test_fit_in_parts_with_total_steps_follows_one_fit_of_all_epochs(device) -> None:
    def make(**kwargs):
        torch.manual_seed(0)
        return HybridTrainer(CountingNet().to(device), "ga", seed=0,
                             structure_options={"popsize": 4}, search_compute=None, **kwargs)

    data = counting_data(device)  # 3 steps an epoch
    whole = make()
    shares = [m["fair_share"] for m in whole.fit(data, epochs=4)]
    assert shares == pytest.approx([1 - t / 6 for t in range(6)] + [0.0] * 6)
    parts = make(total_steps=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with total_steps, fit in parts does not warn
        in_parts = [m["fair_share"] for epoch in range(1, 5)
                    for m in parts.fit(data, epochs=epoch)]
    assert in_parts == shares
    for a, b in zip(whole.model.parameters(), parts.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_fit_in_parts_keeps_the_first_plan_warns_once_and_resumes_it() -> None:
    def make():
        torch.manual_seed(0)
        return HybridTrainer(CountingNet(), "ga", seed=0, structure_options={"popsize": 4},
                             search_compute=None)

    data = counting_data("cpu")
    first = make()
    assert [m["fair_share"] for m in first.fit(data, epochs=1)] == [1.0, 0.5, 0.0]
    state = roundtrip(first.state_dict())
    with pytest.warns(UserWarning, match=r"fit\(epochs=2\) plans 6 steps .* fair_steps=0\.5 "
                      r"is a fraction of the 3 steps .* HybridTrainer\(total_steps=6\)"):
        assert {m["fair_share"] for m in first.fit(data, epochs=2)} == {0.0}  # no jump back
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once
        first.fit(data, epochs=3)
    resumed = make()
    resumed.load_state_dict(state)
    with pytest.warns(UserWarning, match="total_steps=9"):
        resumed.fit(data, epochs=3)  # the plan of the first fit came with the state
    assert plain_equal(resumed.state_dict(), first.state_dict())


@pytest.mark.parametrize("weight_step", ["fair", "population"])
def test_a_batched_multi_path_step_equals_one_pass_per_path(device, weight_step) -> None:
    def run(batched):
        torch.manual_seed(0)
        model = CountingNet().to(device)
        trainer = HybridTrainer(model, "ga", lambda p: torch.optim.SGD(p, lr=0.1), seed=0,
                                batched=batched, weight_step=weight_step, fair_steps=2)
        trainer.fit(counting_data(device), epochs=1)
        return model

    together, apart = run(True), run(False)
    for (name, a), b in zip(together.named_parameters(), apart.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.mark.parametrize("batched", ["auto", False])
def test_a_nan_in_a_multi_path_step_names_a_path_and_changes_no_weight(device, batched) -> None:
    data = counting_data(device, batches=1)
    data[0][0][7, 2] = float("nan")
    torch.manual_seed(0)
    model = CountingNet().to(device)
    before = {k: v.clone() for k, v in model.state_dict().items() if "extra" not in k}
    trainer = HybridTrainer(model, "ga", seed=0, warmup_steps=1, batched=batched)
    with pytest.raises(FloatingPointError, match="at step 0, epoch 0, structure") as info:
        trainer.fit(data, epochs=1)
    space = structure_space(model)
    assert space.contains(info.value.structure)  # the path whose rows hold the NaN
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


@pytest.mark.parametrize("name", ["ga", "one-plus-lambda", "cmaes"])
def test_resume_with_fair_paths_and_reevaluation_is_exact(name) -> None:
    def make():
        torch.manual_seed(0)
        return HybridTrainer(CountingNet(), name, seed=3, fair_steps=0.5,
                             structure_options={"popsize": 5} if name != "cmaes" else None)

    straight, _, resumed = straight_and_resumed(
        make, counting_data("cpu"), 3, lambda metrics, trainer: metrics["step"] == 4)  # mid-epoch
    assert resumed.step_count == straight.step_count == 9
    assert plain_equal(resumed.state_dict(), straight.state_dict())


def test_bad_fair_arguments_name_the_fix() -> None:
    for kwargs, match in [({"fair_steps": 1.5}, "fair_steps must be"),
                          ({"fair_steps": -1}, "fair_steps must be"),
                          ({"fair_steps": True}, "fair_steps must be"),
                          ({"fair_paths": 0}, "fair_paths must be a positive integer"),
                          ({"total_steps": 0}, r"total_steps must be .* got total_steps=0"),
                          ({"total_steps": 10, "fair_steps": 5, "search_compute": None},
                           r"with a float fair_steps, final_steps or cost .* fair_steps=5; e\.g\."),
                          ({"reevaluate_incumbent": 1}, "reevaluate_incumbent must be")]:
        with pytest.raises(ValueError, match=match):
            HybridTrainer(CountingNet(), "ga", **kwargs)
    with pytest.raises(ValueError, match="held_out has no batches"):
        HybridTrainer(CountingNet(), "ga").fit(counting_data("cpu"), epochs=1, held_out=[])


def test_held_out_batches_score_the_structures() -> None:
    torch.manual_seed(0)
    seen = []
    trainer = HybridTrainer(CountingNet(), "ga", seed=0, structure_options={"popsize": 4},
                            final_steps=0, fitness=lambda out, y: seen.append(len(y)) or
                            nn.functional.cross_entropy(out, y))
    held = [(x[:10], y[:10]) for x, y in counting_data("cpu", batches=2)]
    trainer.fit(counting_data("cpu"), epochs=1, held_out=held)
    assert set(seen) == {10}  # every fitness on a held-out batch of 10 rows
    assert trainer.forward_examples == 3 * 60 + 10 * (4 + 5 + 5)  # steps + generations


# -- the task, small -------------------------------------------------------------

class SphereNet(nn.Module):
    """Issue 17's model: gates on the inputs, a choice of activation incl. the identity."""

    def __init__(self, features: int = 10) -> None:
        super().__init__()
        self.gates = Gates(features)
        self.hidden = nn.Linear(features, 16)
        self.act = Choice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "identity": nn.Identity()})
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        return self.out(self.act(self.hidden(self.gates(x))))


def sphere_task(seed: int, device, features: int = 10, n: int = 768):
    """Inputs 0..2 decide whether the point lies outside the median sphere (no linear
    model beats chance); the other inputs are noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = ((x[:, :3] ** 2).sum(dim=1) > 2.366).long()
    x, y = x.to(device), y.to(device)
    return [(x[i:i + 64], y[i:i + 64]) for i in range(0, n, 64)], x, y


@pytest.mark.parametrize("name", ["ga", "one-plus-lambda", "cmaes"])
def test_population_optimizers_keep_a_nonlinear_activation(device, name) -> None:
    """Before issue 17's fix the (1+1) EA kept the identity on seed 2 here (accuracy 0.56)
    and GA runs lost informative inputs; with fair paths and re-evaluation every seed
    finds a nonlinear activation and at least 2 of the 3 inputs (measured 0.78-0.92
    accuracy on the training data, identity nets stay below 0.62). With few-shot copies
    (hybrid.few_shot) the (1+lambda) EA keeps one input only on seed 2 of this short
    run (120 steps; seeds 0-7: 7 of 8 keep 2 or 3, the GA and CMA-ES 8 of 8), so it is
    checked on seeds 0-3 and may miss one."""
    misses = 0
    for seed in range(4):
        data, x, y = sphere_task(seed, device)
        torch.manual_seed(seed)
        model = SphereNet().to(device)
        trainer = HybridTrainer(model, name, lambda p: torch.optim.Adam(p, lr=0.01),
                                seed=seed, progress=False)
        trainer.fit(data, epochs=10)
        structure = get_structure(model)
        with torch.no_grad():
            acc = float((model(x).argmax(dim=1) == y).float().mean())
        assert structure["act"] != "identity", (name, seed, structure)
        assert acc > 0.7, (name, seed, structure, acc)
        misses += int(structure["gates"][:3].sum() < 2)
    assert misses <= (1 if name == "one-plus-lambda" else 0), (name, misses)


def test_a_loss_that_reads_the_structure_gets_one_pass_per_path() -> None:
    """A loss reading ``model.act.value`` cannot serve a batched multi-path step: the
    trainer falls back to one pass per path (the loss then sees each path's option) and
    keeps batched evaluations; the choice survives a state dict."""
    torch.manual_seed(0)
    model = CountingNet()
    seen = []

    def loss(output, y):
        seen.append(model.act.value)
        return nn.functional.cross_entropy(output, y)

    trainer = HybridTrainer(model, "ga", loss=loss, fitness=nn.functional.cross_entropy,
                            seed=0, warmup_steps=1)
    trainer.fit(counting_data("cpu", batches=1), epochs=1)
    assert sorted(seen) == ["identity"] * 2 + ["relu"] * 2 + ["tanh"] * 2  # 6 fair paths
    assert trainer.batched_steps is False and trainer.batched == "auto"
    again = HybridTrainer(CountingNet(), "ga", loss=loss, seed=0, warmup_steps=1)
    again.load_state_dict(roundtrip(trainer.state_dict()))
    assert again.batched_steps is False
