"""Shared fixtures: the optimizer registry, parametrized (as torch's common_optimizers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optim
from optim import registry

OPTIMIZER_NAMES = registry.names()


@pytest.fixture(params=OPTIMIZER_NAMES)
def optimizer_name(request: pytest.FixtureRequest) -> str:
    return request.param


def make(name: str, x0=None, **kwargs):
    """An optimizer of the registry at a small default problem size."""
    if x0 is None:
        x0 = np.full(6, 0.5)
    kwargs.setdefault("sigma0", 0.3)
    kwargs.setdefault("seed", 3)
    return registry.create(name, x0, **kwargs)


def sphere(x):
    if isinstance(x, torch.Tensor):
        return (x.to(torch.float64) ** 2).sum(dim=-1)
    return (np.asarray(x, dtype=np.float64) ** 2).sum(axis=-1)


__all__ = ["OPTIMIZER_NAMES", "make", "optim", "sphere"]
