"""Few-shot weights (hybrid.few_shot): a copy of the weights per option of one
parameter-free Choice while the search runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import plain_equal
from hybrid_net import Net, data, straight_and_resumed
from nondiff.hybrid.few_shot import split_choice
from nondiff.hybrid.nonfinite import NonFiniteError
from nondiff.hybrid.structure import Choice, Gates, set_structure
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.problems.hybrid.acceptance import GATE_COST, make_task
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _structure(act: str, gates=(True, True, False, False)) -> dict:
    return {"gates": np.array(gates), "act": act}


def _copy(trainer: HybridTrainer, act: str) -> list[torch.Tensor]:
    """The parameters of ``act``'s copy (the loaded one: the model's own), copied."""
    option = trainer._option(_structure(act))
    if trainer.split["loaded"] == option:
        return [p.detach().clone() for p in trainer.model.parameters()]
    return [t.clone() for t in trainer.split["copies"][option]["params"]]


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_auto_splits_on_the_only_choice_without_weights() -> None:
    assert split_choice(Net(), "auto") == "act"
    assert split_choice(Net(), None) is None
    two = nn.Sequential(Gates(4), nn.Linear(4, 8), Choice(nn.ReLU(), nn.Tanh()),
                        nn.Linear(8, 8), Choice(nn.ReLU(), nn.Identity()))
    assert split_choice(two, "auto") is None  # which one is not ours to guess
    assert split_choice(two, "4") == "4"  # named: that one
    heads = nn.Sequential(Gates(4), Choice(nn.Linear(4, 2), nn.Linear(4, 2)))
    assert split_choice(heads, "auto") is None  # options with weights of their own
    many = nn.Sequential(nn.Linear(4, 4), Choice(*[nn.Identity() for _ in range(5)]))
    assert split_choice(many, "auto") is None  # more options than SPLIT_MAX_OPTIONS


@pytest.mark.parametrize("bad", ["gates", "nope", 3, ""])
def test_a_bad_split_choice_is_refused_with_the_names(bad) -> None:
    with pytest.raises(ValueError, match=r"split_choice .*\['act'\].*got"):
        HybridTrainer(Net(), "ga", split_choice=bad)


def test_a_named_split_where_it_cannot_run_is_refused() -> None:
    with pytest.raises(ValueError, match=r"split_choice=.act.*shared"):
        HybridTrainer(Net(), "ga", split_choice="act", search_compute="shared")
    HybridTrainer(Net(), "ga", search_compute="shared")  # "auto": off there, no error
    lazy = nn.Sequential(nn.LazyLinear(4), Choice({"relu": nn.ReLU(), "tanh": nn.Tanh()}),
                         nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"lazy modules.*forward pass"):
        split_choice(lazy, "1")
    assert split_choice(lazy, "auto") is None


def test_each_option_trains_its_own_copy_on_its_rows(device) -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), "ga", lambda p: torch.optim.Adam(p, lr=0.05),
                            seed=0, structure_options={"popsize": 4})
    assert trainer.split_on == "act" and trainer.split is None
    x, y = data(device, batches=1, rows=32)[0]
    trainer._weight_step(x, y, [_structure("relu"), _structure("tanh")], [16, 16])
    start = _copy(trainer, "identity")  # made from the model, untouched by the step
    relu, tanh = _copy(trainer, "relu"), _copy(trainer, "tanh")
    assert not _same(relu, start) and not _same(tanh, start) and not _same(relu, tanh)
    trainer._weight_step(x, y, [_structure("relu")], [32])
    assert _same(_copy(trainer, "identity"), start) and _same(_copy(trainer, "tanh"), tanh)
    assert not _same(_copy(trainer, "relu"), relu)
    # an evaluation scores each structure under its option's copy, in any order
    values = [_structure("tanh"), _structure("relu"), _structure("identity")]
    scores = trainer.evaluate(values, x, y)
    for value, score in zip(values, scores, strict=True):
        model = Net().to(device)
        with torch.no_grad():
            for p, t in zip(model.parameters(), _copy(trainer, value["act"]), strict=True):
                p.copy_(t)
        set_structure(model, value)
        model.eval()
        with torch.no_grad():
            expected = float(nn.functional.cross_entropy(model(x), y))
        assert score == pytest.approx(expected, rel=1e-5)


def test_the_selected_option_keeps_its_copy_and_the_others_go(device) -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), "ga", lambda p: torch.optim.Adam(p, lr=0.05),
                            seed=0, structure_options={"popsize": 4})
    x, y = data(device, batches=1, rows=32)[0]
    trainer._weight_step(x, y, [_structure("relu"), _structure("tanh")], [16, 16])
    relu = _copy(trainer, "relu")
    trainer._use_option(trainer._option(_structure("tanh")))  # the model holds tanh's
    trainer._close_split(_structure("relu"))
    assert _same(_weights(trainer.model), relu) and not trainer._split_active()
    assert trainer.split == {"copies": [], "loaded": None, "done": True, "on": "act"}


def test_a_fit_closes_the_split_when_the_final_phase_selects(device) -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), "ga", seed=0, structure_options={"popsize": 4},
                            final_steps=10, select_batches=2)
    seen = {}

    def watch(metrics, tr):
        if not metrics.get("final") and tr.split is not None:
            seen["copies"] = len(tr.split["copies"])
        if tr.selected is not None and "closed" not in seen:
            seen["closed"] = tr.split["done"]
    trainer.callbacks.append(watch)
    trainer.fit(data(device, batches=6), epochs=6)
    assert seen == {"copies": 3, "closed": True}  # one per activation, then the selected
    assert str(trainer.structure(current=True)) == str(trainer.recommended())


def test_a_later_fit_splits_anew_after_a_final_phase() -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4},
                            final_steps=2, select_batches=2)  # each fit ends with two
    trainer.fit(data("cpu"), epochs=1)
    assert trainer.split["done"]
    active = []
    trainer.callbacks.append(lambda m, tr: active.append(tr._split_active()))
    trainer.fit(data("cpu"), epochs=2)
    assert active[0] and trainer.split["done"]  # copies made anew for its search steps


def test_evaluate_leaves_the_model_its_weights(device) -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), "ga", seed=0, structure_options={"popsize": 4},
                            search_compute=None)
    trainer.fit(data(device), epochs=2)
    held = _weights(trainer.model)
    x, y = data(device, batches=1)[0]
    trainer.evaluate([_structure(a) for a in ("relu", "tanh", "identity")], x, y)
    assert _same(_weights(trainer.model), held)
    with pytest.raises(ValueError):
        trainer.evaluate([{"gates": np.ones(4, dtype=bool), "act": "gelu"}], x, y)
    assert _same(_weights(trainer.model), held)


def test_the_copies_follow_the_model_to_another_dtype() -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4},
                            search_compute=None)
    trainer.fit(data("cpu"), epochs=1)
    trainer.model.double()  # as model.to("cuda") would move it
    batches = [(x.double(), y) for x, y in data("cpu")]
    trainer.fit(batches, epochs=2)
    assert all(p.dtype == torch.float64 for p in trainer.model.parameters())


class _SharedNorm(Net):
    """Net with one buffer two modules hold (a running scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Module(), nn.Module()
        scale = torch.ones(8)
        self.a.register_buffer("scale", scale)
        self.b.register_buffer("scale", scale)

    def forward(self, x):
        return self.out(self.act(self.hidden(self.gates(x)) * self.a.scale * self.b.scale))


def test_a_buffer_two_modules_share_survives_switches_and_a_dtype_change() -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(_SharedNorm(), "ga", seed=0, structure_options={"popsize": 4},
                            search_compute=None)
    trainer.fit(data("cpu"), epochs=1)
    for act in ("tanh", "identity", "relu"):
        trainer._use_option(trainer._option(_structure(act)))
        assert trainer.model.a.scale is trainer.model.b.scale
    trainer.model.double()  # converts the buffer in each module: torch's own copy no
    for act in ("tanh", "identity", "relu"):  # longer shares it, the stored ones follow
        trainer._use_option(trainer._option(_structure(act)))
        assert trainer.model.a.scale.dtype == trainer.model.b.scale.dtype == torch.float64


def test_the_copies_train_as_separate_models_would() -> None:
    """Each option's copy, its batch norm statistics and its Adam state end as those of
    a model of its own trained on that option's rows of each step."""
    import copy

    class NormNet(Net):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.BatchNorm1d(8)

        def forward(self, x):
            return self.out(self.act(self.norm(self.hidden(self.gates(x)))))
    torch.manual_seed(0)
    base = NormNet()
    trainer = HybridTrainer(copy.deepcopy(base), "ga", lambda p: torch.optim.Adam(p, lr=0.05),
                            seed=0, structure_options={"popsize": 4})
    alone = {a: copy.deepcopy(base) for a in ("relu", "tanh", "identity")}
    adams = {a: torch.optim.Adam(m.parameters(), lr=0.05) for a, m in alone.items()}
    plan = [(["tanh", "relu"], [18, 18]), (["identity", "relu", "tanh"], [12, 12, 12]),
            (["relu"], [36]), (["tanh", "identity"], [20, 16])]
    for (acts, rows), (x, y) in zip(plan, data("cpu", batches=4, rows=36), strict=True):
        trainer.model.train()
        trainer._weight_step(x, y, [_structure(a) for a in acts], rows)
        start = 0
        for a, r in sorted(zip(acts, rows, strict=True),
                           key=lambda ar: ["relu", "tanh", "identity"].index(ar[0])):
            set_structure(alone[a], _structure(a))
            adams[a].zero_grad()
            nn.functional.cross_entropy(alone[a](x[start:start + r]),
                                        y[start:start + r]).backward()
            adams[a].step()
            start += r
    for a, model in alone.items():
        trainer._use_option(trainer._option(_structure(a)))
        assert plain_equal({k: v for k, v in trainer.model.state_dict().items()
                            if isinstance(v, torch.Tensor)},
                           {k: v for k, v in model.state_dict().items()
                            if isinstance(v, torch.Tensor)})
        assert plain_equal(trainer.weight_optimizer.state_dict()["state"],
                           adams[a].state_dict()["state"])


def test_fit_ends_with_the_recommended_option_loaded_without_a_final_phase(device) -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(Net().to(device), "ga", seed=0, structure_options={"popsize": 4},
                            search_compute=None)  # no final phase: the split stays
    trainer.fit(data(device), epochs=3)
    option = trainer._option(trainer.recommended())
    assert trainer._split_active() and trainer.split["loaded"] == option


def test_none_and_an_engine_keep_one_set_of_weights() -> None:
    trainer = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4},
                            split_choice=None)
    trainer.fit(data("cpu"), epochs=2)
    assert trainer.split is None and not trainer._split_active()
    shared = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4},
                           search_compute="shared")
    shared.fit(data("cpu"), epochs=2)
    assert shared.split is None  # its fitness is the weight step's own pass


class _NanOption(nn.Module):
    def forward(self, x):
        return x * float("nan")


class _NanNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates(4)
        self.hidden = nn.Linear(4, 8)
        self.act = Choice({"relu": nn.ReLU(), "nan": _NanOption()})
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.act(self.hidden(self.gates(x))))


def test_a_non_finite_option_undoes_the_options_trained_before_it() -> None:
    torch.manual_seed(0)
    trainer = HybridTrainer(_NanNet(), "ga", seed=0, structure_options={"popsize": 4})
    x, y = data("cpu", batches=1, rows=32)[0]
    relu = {"gates": np.ones(4, dtype=bool), "act": "relu"}
    trainer._weight_step(x, y, [relu], [32])  # the copies exist
    before = {act: _copy(trainer, act) for act in ("relu", "nan")}
    loaded = trainer.split["loaded"]
    with pytest.raises(NonFiniteError):
        trainer._weight_step(x, y, [{**relu, "act": "nan"}, relu], [16, 16])
    assert trainer.split["loaded"] == loaded  # relu, trained first, put back
    assert all(_same(_copy(trainer, act), before[act]) for act in before)
    trainer._weight_step(x, y, [relu], [32])  # and it goes on from there


def test_a_resume_in_the_search_is_exact() -> None:
    def make():
        torch.manual_seed(0)
        return HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4},
                             total_steps=36)
    straight, first, resumed = straight_and_resumed(
        make, data("cpu"), epochs=6, stop=lambda m, tr: tr.step_count == 11)
    assert first.split is not None and not first.split["done"]  # stopped with copies
    assert plain_equal(straight.model.state_dict(), resumed.model.state_dict())
    assert straight.recommended()["act"] == resumed.recommended()["act"]


class _TwoActs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.a1 = Choice({"relu": nn.ReLU(), "tanh": nn.Tanh()})
        self.a2 = Choice({"relu": nn.ReLU(), "tanh": nn.Tanh()})
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.a2(self.a1(self.hidden(x))))


def test_a_state_split_on_another_choice_is_refused() -> None:
    torch.manual_seed(0)
    first = HybridTrainer(_TwoActs(), "ga", seed=0, split_choice="a1", search_compute=None,
                          structure_options={"popsize": 4})
    first.fit(data("cpu"), epochs=1)
    other = HybridTrainer(_TwoActs(), "ga", seed=0, split_choice="a2", search_compute=None,
                          structure_options={"popsize": 4})
    with pytest.raises(ValueError, match="split on 'a1'"):
        other.load_state_dict(first.state_dict())
    assert other.split is None
    assert other._split_state({"copies": [], "loaded": None, "done": True}) == {
        "copies": [], "loaded": None, "done": True, "on": "a2"}  # closed: nothing used
    with pytest.raises(ValueError, match="start afresh"):
        other._split_state({"copies": [None, None], "loaded": 0, "done": False})


def test_a_state_of_another_split_is_refused_and_nothing_changes() -> None:
    torch.manual_seed(0)
    split = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4},
                          search_compute=None)  # no final phase: the copies stay
    split.fit(data("cpu"), epochs=1)
    assert not split.split["done"]
    plain = HybridTrainer(Net(), "ga", seed=0, structure_options={"popsize": 4},
                          split_choice=None)
    before = _weights(plain.model)
    with pytest.raises(ValueError, match="split_choice"):
        plain.load_state_dict(split.state_dict())
    assert plain.split is None and _same(_weights(plain.model), before)


def test_mixed_inputs_known_structure_learns_under_the_copies() -> None:
    """The failure it prevents: under weights shared by the identity, ReLU and tanh, the
    known structure of ``"mixed-inputs"`` is worth less than its gates' cost."""
    losses = {}
    task = make_task("mixed-inputs", 0)
    for split in ("auto", None):
        torch.manual_seed(0)
        trainer = HybridTrainer(task.model(), "ga", lambda p: torch.optim.Adam(p, lr=task.lr),
                                seed=0, warmup_steps=10**6, final_steps=0, select_batches=0,
                                split_choice=split)
        with pytest.warns(UserWarning, match="without any generation"):
            trainer.fit(task.data, epochs=5, batch_size=task.batch_size, seed=0)
        d = task.data
        known, alone = task.known, {**task.known, "gates": np.eye(24, dtype=bool)[21]}
        losses[split] = trainer.evaluate([known, alone], d.x_test[:1000], d.y_test[:1000])
    # the known structure beats the linear term alone by more than its 3 extra gates cost
    assert losses["auto"][1] - losses["auto"][0] > 3 * GATE_COST
    assert losses[None][1] - losses[None][0] < 3 * GATE_COST
