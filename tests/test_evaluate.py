"""Evaluators give the serial values, in-process, in a process pool and on Ray, also when
a worker is lost mid-generation; minimize accepts them."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from conftest import kill_leader_and_expect_session_gone, kill_session, session_processes
from nondiff.optim import minimize
from nondiff.optim.evaluate import (
    ProcessPoolEvaluator,
    RayEvaluator,
    SerialEvaluator,
    VectorizedEvaluator,
)
from nondiff.problems.control import ControlProblem

from nondiff import problems


def good_population(problem: ControlProblem, n: int, seed: int = 0) -> torch.Tensor:
    """CartPole policies near the balancing controller ``push toward theta + theta'``:
    long episodes, so that a generation takes a while."""
    x = 0.3 * torch.randn(n, problem.dim, generator=torch.Generator().manual_seed(seed))
    x[:, 6] += 1.0
    x[:, 7] += 1.0
    return x


def test_serial_equals_vectorized_for_plain_and_control_objectives() -> None:
    x = np.random.default_rng(0).normal(size=(7, 3))
    sphere = problems.get("sphere", dim=3)
    serial = SerialEvaluator()(sphere, x)
    np.testing.assert_array_equal(serial, VectorizedEvaluator()(sphere, x))
    np.testing.assert_array_equal(serial, SerialEvaluator()(
        lambda p: float((p ** 2).sum()), x, vectorized=False))
    problem = ControlProblem("CartPole-v1", episodes=3, obs_norm=True, max_steps=150)
    twin = copy.deepcopy(problem)
    pop = good_population(problem, 6)
    for _ in range(2):
        np.testing.assert_array_equal(SerialEvaluator()(problem, pop),
                                      VectorizedEvaluator()(twin, pop))
    assert problem.env_steps == twin.env_steps and problem.generation == twin.generation == 2
    torch.testing.assert_close(problem.obs_norm.sum, twin.obs_norm.sum)
    with pytest.raises(ValueError, match="vectorized"):
        VectorizedEvaluator()(lambda p: 0.0, x, vectorized=False)
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        VectorizedEvaluator()(lambda b: np.zeros(3), x)


def test_minimize_with_evaluator_matches_default_loop() -> None:
    def run(evaluator):
        problem = ControlProblem("CartPole-v1", episodes=1, max_steps=100)
        return minimize(problem, problem.initial(), optimizer="snes", maximize=True,
                        vectorized=True, budget=100, sigma0=0.5, seed=3,
                        options={"popsize": 10}, evaluator=evaluator)
    plain, serial = run(None), run(SerialEvaluator())
    assert plain.f == serial.f and torch.equal(plain.x, serial.x)
    assert np.array_equal(plain.history, serial.history)
    with pytest.raises(ValueError, match="evaluator"):
        minimize(lambda p: 0.0, np.zeros(2), evaluator="ray", budget=10)


def test_process_pool_matches_serial_and_survives_a_killed_worker() -> None:
    problem = ControlProblem("CartPole-v1", episodes=2, max_steps=200)
    reference = copy.deepcopy(problem)
    pop = good_population(problem, 8)
    with ProcessPoolEvaluator(workers=2, start_method="fork") as pool:  # spawn: ~10 s/worker
        np.testing.assert_array_equal(pool(problem, pop), SerialEvaluator()(reference, pop))
        os.kill(pool.pids[0], signal.SIGKILL)  # lost between generations: the pool is broken
        time.sleep(0.2)
        np.testing.assert_array_equal(pool(problem, pop), SerialEvaluator()(reference, pop))
    assert problem.env_steps == reference.env_steps


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_process_pool_workers_die_with_a_killed_parent(start_method: str) -> None:
    script = textwrap.dedent(f"""
        import functools, sys
        import numpy as np
        from nondiff.optim.evaluate import ProcessPoolEvaluator
        pool = ProcessPoolEvaluator(workers=2, start_method={start_method!r})
        pool(functools.partial(np.sum, axis=1), np.zeros((4, 3)))
        print(*pool.pids, flush=True)
        sys.stdin.read()  # until killed
    """)
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        workers = [int(pid) for pid in process.stdout.readline().split()]
        assert len(workers) == 2 and set(workers) <= set(session_processes(process.pid))
        kill_leader_and_expect_session_gone(process)
    finally:
        kill_session(process.pid)


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_matches_serial_and_completes_when_an_actor_is_killed(ray_instance,
                                                                  tmp_path) -> None:
    ray = ray_instance
    problem = ControlProblem("CartPole-v1", episodes=4)
    reference = copy.deepcopy(problem)
    evaluator = RayEvaluator(num_workers=2)  # joins the running instance
    release = str(tmp_path / "release")

    def blocked_until_released(x: np.ndarray) -> np.ndarray:  # pickled by value to actors
        while not os.path.exists(release):
            time.sleep(0.01)
        return x.sum(axis=1)

    try:
        pop = good_population(problem, 10)
        np.testing.assert_array_equal(evaluator(problem, pop), SerialEvaluator()(reference, pop))
        assert problem.env_steps == reference.env_steps  # every chunk counted once
        # The next generation: no chunk can finish before the victim is killed (no timing).
        pending = evaluator.submit(blocked_until_released, pop.numpy().astype(np.float64))
        victim = evaluator.actors[0]
        doomed = [ref for ref, (_, actor) in pending.pending.items() if actor == victim]
        ray.kill(victim)  # asynchronous: release only once the victim's chunk has failed
        ready, _ = ray.wait(doomed, num_returns=len(doomed), timeout=120)
        assert ready == doomed, "the killed actor's chunk never ended"
        open(release, "w").close()
        values = pending.result()
        np.testing.assert_array_equal(values, pop.numpy().astype(np.float64).sum(axis=1))
        assert evaluator.replaced == 1 and victim not in evaluator.actors
    finally:
        evaluator.close()
    assert ray.is_initialized()  # not ours to shut down
