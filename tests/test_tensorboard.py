"""TensorBoard callback: the event file written for minimize, HybridTrainer and Decoupled.fit,
read back with TensorBoard's own reader."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from nondiff.hybrid.decoupled import Decoupled, Group
from nondiff.hybrid.structure import Choice, Gates
from nondiff.hybrid.trainer import HybridTrainer
from nondiff.problems.learning import Dataset
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from nondiff import TensorBoard, minimize


def read(log_dir) -> EventAccumulator:
    return EventAccumulator(str(log_dir)).Reload()


def series(events: EventAccumulator, tag: str) -> tuple[list[int], list[float]]:
    points = events.Scalars(tag)
    return [p.step for p in points], [p.value for p in points]


def sphere(x: np.ndarray) -> float:
    return float((x**2).sum())


@pytest.mark.parametrize("maximize", [False, True])
def test_minimize_logs_every_generation(tmp_path, maximize):
    fn = (lambda x: -sphere(x)) if maximize else sphere
    with TensorBoard(tmp_path, maximize=maximize) as tb:
        res = minimize(fn, np.ones(3), optimizer="snes", budget=120, seed=0,
                       maximize=maximize, callbacks=[tb])
    events = read(tmp_path)
    tags = set(events.Tags()["scalars"])
    assert {"optim/best_f", "optim/pop_best_f", "optim/pop_median_f", "optim/evaluations",
            "optim/sigma", "optim/nonfinite"} <= tags
    assert "optim/iteration" not in tags  # it is the step
    steps, best = series(events, "optim/best_f")
    assert steps == list(range(1, res.iterations + 1))
    np.testing.assert_allclose(best, res.history[:, 1], rtol=1e-6)  # float32 in the file
    assert np.all(np.diff(best) >= 0) if maximize else np.all(np.diff(best) <= 0)
    np.testing.assert_array_equal(series(events, "optim/evaluations")[1], res.history[:, 0])
    assert "config/text_summary" in events.Tags()["tensors"]


def test_minimize_resume_continues_the_steps(tmp_path):
    checkpoint, logs = tmp_path / "run.pt", tmp_path / "logs"
    common = {"optimizer": "snes", "seed": 0, "checkpoint": checkpoint}
    with TensorBoard(logs) as tb:
        first = minimize(sphere, np.ones(3), budget=60, callbacks=[tb], **common)
    with TensorBoard(logs) as tb:
        second = minimize(sphere, np.ones(3), budget=150, callbacks=[tb], **common)
    steps, best = series(read(logs), "optim/best_f")
    assert first.iterations < second.iterations
    assert steps == list(range(1, second.iterations + 1))
    np.testing.assert_allclose(best, second.history[:, 1], rtol=1e-6)


def test_every_thins_the_points(tmp_path):
    with TensorBoard(tmp_path, every=3) as tb:
        res = minimize(sphere, np.ones(3), optimizer="snes", budget=120, seed=0,
                       callbacks=[tb])
    steps, _ = series(read(tmp_path), "optim/best_f")
    assert steps == list(range(3, res.iterations + 1, 3))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates(2)
        self.hidden = nn.Linear(2, 8)
        self.act = Choice({"tanh": nn.Tanh(), "identity": nn.Identity()})
        self.out = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(self.gates(x))))


def test_hybrid_trainer_logs_losses_and_structure(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(32, 2)
    y = x.prod(dim=1, keepdim=True)
    seen: list[tuple[dict, dict]] = []
    with TensorBoard(tmp_path, text_every=2) as tb:
        trainer = HybridTrainer(
            Net(), "reinforce", lambda p: torch.optim.Adam(p, lr=0.03),
            loss=nn.functional.mse_loss, seed=0, warmup_steps=2,
            structure_options={"popsize": 4, "lr": 0.3},
            callbacks=[tb, lambda m, t: seen.append((dict(m), t.recommended()))],
            search_compute=None)
        taken = trainer.fit([(x[:16], y[:16]), (x[16:], y[16:])], epochs=3)
    events = read(tmp_path)
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/fitness_best", "train/fitness_mean", "train/epoch",
            "structure_optimizer/best_f", "structure_optimizer/entropy",
            "structure/act", "structure/gates/open_fraction"} <= tags
    steps, loss = series(events, "train/loss")
    assert steps == list(range(1, len(taken) + 1)) and len(taken) == 6
    np.testing.assert_allclose(loss, [m["loss"] for m in taken], rtol=1e-6)
    # the two warm-up steps have no fitness: left out, not drawn as NaN
    steps, fitness = series(events, "train/fitness_best")
    assert steps == [3, 4, 5, 6]
    np.testing.assert_allclose(fitness, [m["fitness_best"] for m in taken[2:]], rtol=1e-6)
    choices = ["tanh", "identity"]
    assert series(events, "structure/act")[1] == [choices.index(r["act"]) for _, r in seen]
    np.testing.assert_allclose(series(events, "structure/gates/open_fraction")[1],
                               [np.mean(r["gates"]) for _, r in seen])
    text = [e.step for e in events.Tensors("structure/text_summary")]
    assert text == [1, 2, 4, 6]
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "reinforce" in config and "popsize: 4" in config


def toy_data() -> Dataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return Dataset("toy", 3, x, y, x[:8], y[:8], (4,))


@pytest.mark.parametrize("signal, kind", [("synthetic", "synth_loss"), ("local", "local_loss")])
def test_decoupled_fit_logs_block_losses(tmp_path, signal, kind):
    torch.manual_seed(0)
    model = Decoupled([Group([nn.Linear(4, 8), nn.ReLU()]), Group([nn.Linear(8, 8), nn.ReLU()]),
                       nn.Linear(8, 3)], signal=signal, seed=0, head_hidden=0)
    seen: list[dict] = []
    with TensorBoard(tmp_path) as tb:
        history = model.fit(toy_data(), epochs=2, batch_size=16,
                            callbacks=[tb, lambda m, _: seen.append(dict(m))])
    events = read(tmp_path)
    steps, loss = series(events, "decoupled/loss")
    assert len(history) == 2 and steps == list(range(1, 7))
    np.testing.assert_allclose(loss, [m["loss"] for m in seen], rtol=1e-6)
    for block in (0, 1):
        tag = f"decoupled/block{block}/{kind}"
        logged = [m[f"block{block}/{kind}"] for m in seen if f"block{block}/{kind}" in m]
        assert len(logged) >= 5  # a synthesizer's first target arrives after its first step
        values = series(events, tag)[1]
        assert np.all(np.isfinite(values)) and values != [values[0]] * len(values)
        np.testing.assert_allclose(values, logged, rtol=1e-6)
    assert "decoupled/block2/synth_loss" not in events.Tags()["scalars"]  # top: true loss


def test_decoupled_fit_callback_stops_mid_epoch():
    model = Decoupled([nn.Linear(4, 8), nn.Linear(8, 3)], signal="synthetic", seed=0)
    history = model.fit(toy_data(), epochs=3, batch_size=16,
                        callbacks=[lambda m, _: m["step"] == 4])
    assert model.step_count == 4 and model.epoch == 1 and len(history) == 2


def test_hybrid_trainer_with_decoupled_engine_logs_its_blocks(tmp_path):
    torch.manual_seed(0)
    model = Decoupled([Group([nn.Linear(4, 8), Choice(nn.ReLU(), nn.Tanh())]),
                       nn.Linear(8, 3)], signal="synthetic", seed=0)
    data = toy_data()
    with TensorBoard(tmp_path) as tb:
        trainer = HybridTrainer(model, "reinforce", None, engine=model, seed=0,
                                structure_options={"popsize": 2}, callbacks=[tb])
        trainer.fit(data, epochs=1, batch_size=16)
    tags = set(read(tmp_path).Tags()["scalars"])
    assert {"train/loss", "structure/blocks.0.1", "decoupled/block0/synth_loss"} <= tags


def test_bad_arguments_are_named(tmp_path):
    for kwargs, name in [({"every": 0}, "every"), ({"text_every": 1.5}, "text_every"),
                         ({"flush_secs": -1}, "flush_secs"), ({"maximize": "yes"}, "maximize")]:
        with pytest.raises(ValueError, match=name):
            TensorBoard(tmp_path, **kwargs)
    with pytest.raises(ValueError, match="log_dir"):
        TensorBoard(None)
    with pytest.raises(ValueError, match="HybridTrainer"):
        TensorBoard(tmp_path)({"loss": 1.0}, object())
    assert list(tmp_path.iterdir()) == []  # nothing written before a valid call


def test_missing_tensorboard_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(ValueError, match=r"pip install 'nondiff\[log\]'"):
        TensorBoard(tmp_path)
