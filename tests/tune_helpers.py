"""Deterministic training loops for the tune tests (top level: they pickle by reference)."""

from __future__ import annotations

import math
import os
import time

from nondiff.optim.spaces import Categorical, Integer, Real

SPACE = {"lr": Real(1e-4, 1.0, log=True), "width": Integer(4, 64),
         "act": Categorical(["relu", "tanh", "gelu"])}


def accuracy(config: dict, step: int) -> float:
    """A learning curve: rises with steps towards a ceiling set by the config."""
    ceiling = 0.9 - 0.05 * (math.log10(config["lr"]) + 2) ** 2 \
        - 0.002 * abs(config["width"] - 32) - (0.05 if config["act"] == "tanh" else 0.0)
    return ceiling * (1 - 0.5 ** step)


def train(config: dict, trial) -> None:
    """Reports accuracy(config, step), checkpoints every step, obeys should_stop."""
    log = os.environ.get("TUNE_TEST_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{trial.number} {trial.step}\n")
    state = trial.restore()
    assert (state is None) == (trial.step == 0) and (state is None or state["step"] == trial.step)
    gate = os.environ.get("TUNE_TEST_GATE")  # "number step path": hold there until path exists
    for step in range(trial.step + 1, trial.max_steps + 1):
        trial.report(step, accuracy(config, step))
        if gate and gate.split()[:2] == [str(trial.number), str(step)]:
            while not os.path.exists(gate.split()[2]):  # held until the test kills us
                time.sleep(0.05)
        trial.checkpoint({"step": step})
        if trial.should_stop():
            return


def failing_train(config: dict, trial) -> None:
    """Raises in every trial whose width is odd, after one report."""
    trial.report(1, accuracy(config, 1))
    if config["width"] % 2:
        raise RuntimeError(f"odd width {config['width']}")
    for step in range(2, trial.max_steps + 1):
        trial.report(step, accuracy(config, step))
        if trial.should_stop():
            return
