"""Checkpoints are sealed: flipped bytes and hand-edited fields are refused (issue 16.4).

Every checkpoint ``minimize`` writes carries the SHA-256 of its contents; a byte
changed afterwards (a flipped bit in a tensor's data, a tensor edited and re-saved)
is refused with a ValueError naming the file. Values that are impossible for a
run (negative counters, a wrong shape, a step size <= 0) are refused by the load
validation even when the checksum was recomputed.
"""

from __future__ import annotations

import struct
import zipfile

import numpy as np
import pytest
import torch
from conftest import OPTIMIZER_NAMES, make, roundtrip, sphere
from nondiff.optim import checkpoint, minimize
from nondiff.optim.checkpoint import POSITIVE_KEYS
from nondiff.problems.control import ControlProblem


def _run(path, budget=60, optimizer="snes"):
    return minimize(sphere, np.ones(4), optimizer=optimizer, budget=budget, vectorized=True,
                    seed=1, checkpoint=path)


def _data_entries(path):
    """(name, offset of its first byte) of every tensor storage in a torch.save file."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if "/data/" in info.filename and info.file_size > 0:
                start = info.header_offset + 30 + sum(
                    struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30]))
                yield info.filename, start, info.file_size


def test_every_flipped_byte_in_tensor_data_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    _run(path)
    good = path.read_bytes()
    entries = list(_data_entries(path))
    assert len(entries) >= 3
    for _name, start, size in entries:
        raw = bytearray(good)
        raw[start + size // 2] ^= 0x04  # one bit, in the middle of the storage
        path.write_bytes(bytes(raw))
        torch.load(path, weights_only=True)  # torch itself does not notice
        with pytest.raises(ValueError, match=r"run\.pt' is corrupt"):
            _run(path, budget=120)
    path.write_bytes(good)
    assert _run(path, budget=120).evaluations > 60  # the intact file resumes


def test_tensor_edited_and_resaved_is_refused(tmp_path):
    path = tmp_path / "run.pt"
    _run(path)
    payload = torch.load(path, weights_only=True)
    payload["history"][-1, 1] = -1.0  # a better best-so-far, by hand
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"run\.pt' is corrupt.*checksum"):
        _run(path, budget=120)


def _edit_and_reseal(path, edit):
    payload = checkpoint.verify(torch.load(path, weights_only=True), "test")
    edit(payload)
    torch.save(checkpoint.seal(payload), path)


@pytest.mark.parametrize(("edit", "words"), [
    (lambda p: p["optimizer"]["counters"].update(evaluations=-5), "'evaluations' must be a non"),
    (lambda p: p["optimizer"]["counters"].update(nonfinite=10**6), "non-finite values counted"),
    (lambda p: p["optimizer"].update(best_x=torch.zeros(7, dtype=torch.float64)), "shape"),
    (lambda p: p["optimizer"].update(best_f=float("nan")), "best_f"),
    (lambda p: p["optimizer"]["state"].update(stdev=-p["optimizer"]["state"]["stdev"]),
     "stdev must be finite and > 0"),
    (lambda p: p.update(history=torch.zeros(3)), "malformed history"),
], ids=["negative-count", "nonfinite-over-evaluations", "best-x-shape", "best-f-nan",
        "negative-stdev", "history-shape"])
def test_hand_edited_fields_are_refused_even_resealed(tmp_path, edit, words):
    path = tmp_path / "run.pt"
    _run(path)
    _edit_and_reseal(path, edit)
    with pytest.raises(ValueError, match=words):
        _run(path, budget=120)


def _positive_entry(state, path=()):
    """Path to the first step size / standard deviation in a plain state."""
    if isinstance(state, dict):
        for key, value in state.items():
            if key in POSITIVE_KEYS and isinstance(value, (float, torch.Tensor, dict)):
                return (*path, key)
            found = _positive_entry(value, (*path, key))
            if found:
                return found
    if isinstance(state, list):
        for i, value in enumerate(state):
            found = _positive_entry(value, (*path, i))
            if found:
                return found
    return None


def _set(state, path, value):
    for key in path[:-1]:
        state = state[key]
    old = state[path[-1]]
    if isinstance(old, dict):  # pycma's snapshot of a float: {"t": ..., "v": value}
        old["v"] = value
    else:
        state[path[-1]] = torch.full_like(old, value) if isinstance(old, torch.Tensor) else value


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_optimizer_refuses_impossible_states(name):
    opt = make(name)
    x = opt.ask()
    opt.tell(x, sphere(x))
    state = opt.state_dict()
    bad = {**state, "counters": {**state["counters"], "iterations": -1}}
    with pytest.raises(ValueError, match="'iterations' must be a non-negative integer"):
        make(name).load_state_dict(bad)
    entry = _positive_entry(state["state"])
    if entry is None:
        pytest.skip(f"{name} has no step size in its state")
    for value in (0.0, -0.3, float("nan")):
        edited = opt.state_dict()
        _set(edited["state"], entry, value)
        fresh = make(name)
        before = fresh.state_dict()
        with pytest.raises(ValueError, match="must be finite and > 0"):
            fresh.load_state_dict(edited)
        assert fresh.counters == before["counters"]


def test_control_problem_refuses_impossible_states():
    problem = ControlProblem("CartPole-v1", obs_norm=True)
    problem(torch.zeros(2, problem.dim))
    state = problem.state_dict()
    for key in ("generation", "episodes", "env_steps", "evaluations"):
        with pytest.raises(ValueError, match=f"{key!r} must be a non-negative integer"):
            ControlProblem("CartPole-v1", obs_norm=True).load_state_dict({**state, key: -1})
    with pytest.raises(ValueError, match="obs_norm"):
        ControlProblem("CartPole-v1").load_state_dict(state)


def test_hybrid_states_altered_after_they_were_made_are_refused():
    from nondiff.hybrid import Decoupled, Group, HybridTrainer
    from test_trainer import ChoiceNet, adam, choice_data
    from torch import nn

    def blocks():
        torch.manual_seed(0)
        return [Group([nn.Linear(4, 8), nn.ReLU()]), nn.Linear(8, 2)]

    model = Decoupled(blocks(), seed=0)
    model.build(torch.zeros(2, 4))
    state = roundtrip(model.checkpoint())
    Decoupled(blocks(), seed=0).load_checkpoint(state, example=torch.zeros(2, 4))  # intact
    next(iter(state["model"].values())).view(-1)[0] += 1.0
    with pytest.raises(ValueError, match="Decoupled checkpoint is corrupt"):
        Decoupled(blocks(), seed=0).load_checkpoint(state, example=torch.zeros(2, 4))

    trainer = HybridTrainer(ChoiceNet(), "reinforce", adam(0.03), loss=nn.functional.mse_loss,
                            seed=0)
    trainer.fit(choice_data(), epochs=1)
    state = roundtrip(trainer.state_dict())
    trainer.load_state_dict(state)  # intact: loads
    state["counters"]["step"] = 10**6
    with pytest.raises(ValueError, match="HybridTrainer state dict is corrupt"):
        trainer.load_state_dict(state)



def test_a_sealed_state_dict_is_a_snapshot_that_training_on_does_not_invalidate():
    from nondiff.hybrid import Gates, HybridTrainer
    from torch import nn

    model = nn.Sequential(Gates(8), nn.Linear(8, 2))
    trainer = HybridTrainer(model, "reinforce", seed=0)
    x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
    trainer.step(x, y)
    kept = trainer.state_dict()  # e.g. the best so far, kept in memory (early stopping)
    weights = {k: v.clone() for k, v in model.state_dict().items()
               if isinstance(v, torch.Tensor)}
    trainer.step(x, y)  # trains the live tensors on
    trainer.load_state_dict(kept)  # not refused as "corrupt"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_a_payload_that_could_not_be_read_back_is_refused_at_write(tmp_path):
    path = tmp_path / "run.pt"
    with pytest.raises(ValueError, match=r"\['objective'\]\['mean'\] is a ndarray"):
        checkpoint.write(path, {"stateful": {"objective": {"mean": np.zeros(3)}}})
    assert not path.exists()


def test_a_refused_trainer_load_leaves_the_trainer_unchanged():
    from conftest import plain_equal
    from nondiff.hybrid import Gates, HybridTrainer
    from torch import nn

    def trainer(width: int) -> HybridTrainer:
        torch.manual_seed(0)
        return HybridTrainer(nn.Sequential(Gates(8), nn.Linear(8, width)), "reinforce", seed=0)

    target, other = trainer(2), trainer(3)  # same structure space, another model shape
    x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
    target.step(x, y)
    other.step(x, y)
    other.step(x, y)
    before = target.state_dict()
    with pytest.raises(ValueError, match="initial weights do not fit the model"):
        target.load_state_dict(other.state_dict())  # refused by the check up front
    from nondiff.optim.checkpoint import CHECKSUM_KEY, seal
    older = seal({k: v for k, v in other.state_dict().items()  # no starting weights
                  if k not in ("initial", CHECKSUM_KEY)})
    with pytest.raises(ValueError, match="does not fit the trainer"):
        target.load_state_dict(older)  # the model's shapes differ: refused half way
    after = target.state_dict()
    assert plain_equal({k: v for k, v in after.items() if k != "torch_rng"},
                       {k: v for k, v in before.items() if k != "torch_rng"})
