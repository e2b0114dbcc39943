"""Layer-wise ADMM MLP training without gradients (hybrid.layerwise_admm)."""

from __future__ import annotations

import pytest
import torch
from nondiff.hybrid.layerwise_admm import LayerwiseADMM, _hinge_z_update, _relu_z_update
from nondiff.problems.learning import digits

from tests.conftest import roundtrip


def test_closed_form_updates_are_the_entrywise_minima():
    grid = torch.linspace(-4, 4, 80001, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    a, m, lam = (torch.randn(20, generator=g, dtype=torch.float64) for _ in range(3))
    y = torch.where(torch.rand(20, generator=g) > 0.5, 1.0, -1.0).double()
    z = _relu_z_update(a, m, 10.0, 1.0)
    brute = (10 * (a[:, None] - grid.clamp(min=0)) ** 2 + (grid - m[:, None]) ** 2).min(1)
    assert torch.allclose(10 * (a - z.clamp(min=0)) ** 2 + (z - m) ** 2, brute.values, atol=1e-6)
    z = _hinge_z_update(y, lam, m, 1.0)

    def phi(zz, i):
        return (1 - y[i] * zz).clamp(min=0) + lam[i] * zz + (zz - m[i]) ** 2

    for i in range(20):
        assert float(phi(z[i], i)) <= float(phi(grid, i).min()) + 1e-6


def test_trains_an_mlp_on_digits_without_gradients():
    ds = digits(seed=0)
    net = LayerwiseADMM([64, 128, 10], seed=0)
    with torch.no_grad():  # nothing needs autograd
        net.fit(ds.x_train, ds.y_train, iterations=8)
    assert float((net.predict(ds.x_test) == ds.y_test).float().mean()) > 0.9


def test_resume_is_bit_for_bit():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 4, generator=g)
    y = (x[:, 0] * x[:, 1] > 0).long()
    net = LayerwiseADMM([4, 16, 16, 2], loss="square", warm_start=2, seed=0)
    net.init(x, y)
    for _ in range(4):
        net.step()
    state = roundtrip(net.state_dict())
    rest = [net.step() for _ in range(4)]
    other = LayerwiseADMM([4, 16, 16, 2], loss="square", warm_start=2, seed=5)
    other.load_state_dict(state)
    assert [other.step() for _ in range(4)] == rest
    assert all(torch.equal(p, q) for p, q in zip(net.weights, other.weights, strict=True))


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"sizes": [4, 2]}, "hidden"), ({"loss": "l1"}, "loss"), ({"beta": 0.0}, "beta"),
    ({"gamma": -1.0}, "gamma"),
])
def test_bad_arguments_are_named(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        LayerwiseADMM(**{"sizes": [4, 8, 2], **kwargs})
    with pytest.raises(ValueError, match="labels"):
        LayerwiseADMM([4, 8, 2]).init(torch.zeros(3, 4), torch.tensor([0, 1, 2]))
