"""Shared fixtures: the optimizer registry, parametrized (as torch's common_optimizers)."""

from __future__ import annotations

import io

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


def example_space(name: str) -> Product:
    """A Product of one example leaf of every kind the optimizer supports."""
    kinds = registry.get(name).supported_spaces
    return Product({kind: leaf for kind, leaf in EXAMPLE_LEAVES.items() if kind in kinds})


def default_x0(name: str):
    """A real x0 for optimizers of real vectors, else a discrete space they handle."""
    if handles_real(name):
        return np.full(6, 0.5)
    return example_space(name)


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
