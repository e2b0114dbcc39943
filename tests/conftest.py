"""Shared fixtures: the optimizer registry, parametrized (as torch's common_optimizers)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import signal
import time

import numpy as np
import pytest
import torch
from nondiff.optim import registry
from nondiff.optim.spaces import Binary, Categorical, Integer, Permutation, Product, Real

from nondiff import optim  # noqa: F401  (registers every optimizer)
from tests.optimizer_infos import OptimizerInput, optimizer_cases

OPTIMIZER_NAMES = registry.names()
OPTIMIZER_CASES = optimizer_cases(OPTIMIZER_NAMES)

# One small example leaf per kind; contract tests build each optimizer's space from these.
EXAMPLE_LEAVES = {
    "real": Real(-1.0, 1.0, size=3),
    "integer": Integer(0, 5, size=2),
    "categorical": Categorical(["a", "b", "c"], size=3),
    "binary": Binary(5),
    "permutation": Permutation(4),
}


@pytest.fixture(params=OPTIMIZER_NAMES)
def optimizer_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=OPTIMIZER_CASES, ids=[f"{n}-{c.desc}" for n, c in OPTIMIZER_CASES])
def optimizer_case(request: pytest.FixtureRequest) -> tuple[str, OptimizerInput]:
    """(registry name, configuration) of tests/optimizer_infos.py, the default first."""
    return request.param


def handles_real(name: str) -> bool:
    return "real" in registry.get(name).supported_spaces


def native_names(kinds: set[str]) -> list[str]:
    """Registry names whose class searches all of ``kinds`` itself (not through the
    relaxation that ``registry.create`` adds for optimizers of real vectors): the
    feature tests that predate it keep their run time; tests/test_relaxed.py covers
    the relaxed ones."""
    return [n for n in registry.names_supporting(kinds)
            if set(kinds) <= registry.get(n).supported_spaces]


def example_space(name: str) -> Product:
    """A Product of one example leaf of every kind ``registry.create(name, space)``
    searches (through the relaxation for optimizers of real vectors)."""
    kinds = registry.supported_kinds(name)
    return Product({kind: leaf for kind, leaf in EXAMPLE_LEAVES.items() if kind in kinds})


def default_x0(name: str):
    """A real x0 for optimizers of real vectors, else a discrete space of the kinds the
    class searches itself (``cga``: bits; its binary code of the other kinds is covered
    by the space contract and tests/test_binary_code.py)."""
    if handles_real(name):
        return np.full(6, 0.5)
    own = registry.get(name).supported_spaces
    return Product({kind: leaf for kind, leaf in EXAMPLE_LEAVES.items() if kind in own})


def make(name: str, x0=None, **kwargs):
    """An optimizer of the registry at a small default problem size."""
    if x0 is None:
        x0 = default_x0(name)
    kwargs.setdefault("sigma0", 0.3)
    kwargs.setdefault("seed", 3)
    return registry.create(name, x0, **kwargs)


def sphere(x):
    if isinstance(x, torch.Tensor):
        return (x.to(torch.float64) ** 2).sum(dim=-1)
    return (np.asarray(x, dtype=np.float64) ** 2).sum(axis=-1)


def real_only(name: str) -> None:
    """Skip a contract that is about real vectors for a discrete-only optimizer."""
    if not handles_real(name):
        pytest.skip(f"{name} searches discrete spaces only")


def ask_tell_run(opt, generations: int, fn) -> list[np.ndarray]:
    """``generations`` of ask, tell ``fn(x)``; the asked rows of each, copied to numpy."""
    asked = []
    for _ in range(generations):
        x = opt.ask()
        asked.append(np.array(x, copy=True) if isinstance(x, np.ndarray) else x.clone().numpy())
        opt.tell(x, fn(x))
    return asked


def roundtrip(state):
    """A state dict through torch.save and torch.load(weights_only=True), in memory."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def assert_same(a, b):
    """Two trajectories of (candidates, metrics, stop reasons) are identical."""
    assert len(a) == len(b)
    for (xa, ma, sa), (xb, mb, sb) in zip(a, b, strict=True):
        assert np.array_equal(xa, xb)
        assert ma == mb
        assert sa == sb


def plain_equal(p, q) -> bool:
    """Deep equality of two plain state dicts: same types, tensor dtypes and values
    (NaN equal to NaN)."""
    if isinstance(p, torch.Tensor):
        return isinstance(q, torch.Tensor) and p.dtype == q.dtype and torch.equal(p, q)
    if isinstance(p, dict):
        return isinstance(q, dict) and p.keys() == q.keys() and all(
            plain_equal(p[k], q[k]) for k in p)
    if isinstance(p, (list, tuple)):
        return type(p) is type(q) and len(p) == len(q) and all(map(plain_equal, p, q))
    return p == q or (p != p and q != q)


@pytest.fixture
def one_torch_thread():
    """One torch thread for small models: more threads only add contention on 2 cores.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def session_processes(session: int) -> dict[int, str]:
    """Live processes of a session (Linux /proc): ``{pid: command line}``, zombies left out.

    A process started with ``start_new_session=True`` leads a session that its children,
    grandchildren and the helpers multiprocessing starts (forkserver, resource tracker)
    all join; they stay in it after the leader dies and they are re-parented."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if int(fields[3]) == session and fields[0] not in "ZX":  # state, ..., session
            found[int(entry)] = command
    return found


def wait_until(condition, timeout: float, interval: float = 0.1):
    """Poll ``condition()`` until it returns something truthy (returned) or ``timeout``
    seconds pass (then its last value); a bounded loop, not a sleep racing the work."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def kill_session(session: int) -> None:
    """SIGKILL every process left in ``session`` (cleanup after a failed test)."""
    for pid in session_processes(session):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def kill_leader_and_expect_session_gone(process, leader: str = "the parent") -> None:
    """SIGKILL only the session leader (as an OOM killer would); every other process of
    its session (workers, forkserver, resource tracker) must be gone within 30 s."""
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    gone = wait_until(lambda: not session_processes(process.pid), timeout=30)
    assert gone, f"still alive 30 s after {leader}: {session_processes(process.pid)}"


def poisoned(data, sample: int = 7):
    """A copy of a :class:`nondiff.problems.learning.Dataset` whose training example
    ``sample`` has a NaN feature (as one corrupt record in a real dataset would)."""
    x = data.x_train.clone()
    x[sample, 0] = float("nan")
    return dataclasses.replace(data, x_train=x)


def first_nan_batch(data, batch_size: int, seed: int, epoch: int) -> int:
    """The index in its epoch of the first batch with a NaN input."""
    return next(i for i, (x, _) in enumerate(data.batches(batch_size, seed=seed, epoch=epoch))
                if not torch.isfinite(x).all())


def finite_state(module) -> bool:
    """Every parameter and buffer of ``module`` is finite."""
    return all(bool(torch.isfinite(t).all()) for t in module.state_dict().values()
               if isinstance(t, torch.Tensor) and t.is_floating_point())


def same_state(a, b) -> bool:
    """Two modules hold equal parameters and buffers (bit for bit)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----- devices --------------------------------------------------------------------------
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
"""The devices the device-parametrized tests run on: the CPU, and CUDA where present."""


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Each device of :data:`DEVICES` in turn (tests of code that follows the model)."""
    return request.param


GPUS = torch.cuda.device_count()
"""GPUs visible: tests of one pipeline stage per GPU (NCCL) need two."""


def _devices_line() -> str:
    missing = "" if "cuda" in DEVICES else " (cuda not available)"
    stages = "" if GPUS >= 2 else \
        f"; one stage per GPU (nccl, 2 GPUs) not available ({GPUS} GPU(s))"
    return f"devices covered: {', '.join(DEVICES)}{missing}{stages}"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker takes its share of the cores for torch's threads:
    two workers of two threads each on 2 cores contend (their intra-op pools spin), and
    the suite ran 17 % slower (tests/test_newuser_tasks.py and three other heavy files on
    2 workers: 202 s against 168 s with one thread each). Tests that need another number
    set it themselves (``one_torch_thread``, the worker start-up tests)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


# The slowest files (seconds on 2 workers at the last measurement), scheduled first: with
# ``--dist loadfile`` a worker takes whole files in collection order, and a slow file
# collected last ran alone at the end while the other worker sat idle.
SLOW_FILES = (
    "test_newuser_tasks.py", "test_exact_resume.py", "test_runner.py", "test_contract.py",
    "test_evaluate.py", "test_defaults.py", "test_parallel.py", "test_acceptance_tasks.py",
    "test_docstrings.py", "test_distributed.py", "test_minimize.py", "test_startup.py",
    "test_cmaes.py", "test_relaxed.py", "test_tune_resume.py", "test_reinforce.py",
    "test_binary_code.py", "test_tune_ray.py", "test_layout.py", "test_synthetic.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files of :data:`SLOW_FILES` first, in that order, then the others as collected
    (a stable sort: every xdist worker collects the same order)."""
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))


def pytest_report_header(config: pytest.Config) -> str:
    return _devices_line()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    terminalreporter.write_line(_devices_line())
