"""Synthetic-gradient modules learn true gradients; DNI carries gradients across BPTT cuts."""

from __future__ import annotations

import pytest
import torch
from nondiff.hybrid.synthetic import AuxiliaryHead, SyntheticGradient, TruncatedDNI
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(sg: SyntheticGradient, sample, grad, steps: int = 400, lr: float = 1e-2) -> float:
    """Regress ``sg`` on ``grad(h, c)``; return the cosine similarity on fresh samples."""
    opt = torch.optim.Adam(sg.parameters(), lr)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        h, c = sample(gen)
        opt.zero_grad()
        sg.regression_loss(h, grad(h, c), c if sg.context_dim else None).backward()
        opt.step()
    h, c = sample(gen)
    with torch.no_grad():
        pred = sg(h, c if sg.context_dim else None)
    return nn.functional.cosine_similarity(pred.flatten(1), grad(h, c).flatten(1)).mean().item()


def test_learns_the_gradient_of_a_linear_quadratic_loss() -> None:
    torch.manual_seed(0)
    m = torch.randn(8, 8)
    a, b = m @ m.T / 8 + torch.eye(8), torch.randn(8)  # L(h) = h'Ah/2 + b'h, dL/dh = Ah + b

    def sample(gen):
        return torch.randn(64, 8, generator=gen), None

    sg = SyntheticGradient(8)
    assert sg(torch.randn(3, 8)).abs().max() == 0  # zero-initialised output layer
    assert _train(sg, sample, lambda h, c: h @ a + b) > 0.9
    assert _train(SyntheticGradient(8, hidden=32, layers=2), sample,
                  lambda h, c: h @ a + b) > 0.9


def test_conv_synthesizer_learns_a_per_channel_quadratic() -> None:
    torch.manual_seed(0)
    w, b = torch.rand(4, 1, 1) + 0.5, torch.randn(4, 1, 1)

    def sample(gen):
        return torch.randn(16, 4, 6, 6, generator=gen), None

    assert _train(SyntheticGradient((4, 6, 6)), sample, lambda h, c: w * h + b) > 0.9


def test_conditioning_on_the_label_is_what_makes_the_gradient_predictable() -> None:
    torch.manual_seed(0)
    centers = 3 * torch.randn(5, 6)  # L = ||h - centers[y]||^2 / 2, dL/dh = h - centers[y]

    def sample(gen):
        y = torch.randint(0, 5, (64,), generator=gen)
        return torch.randn(64, 6, generator=gen), nn.functional.one_hot(y, 5).float()

    def grad(h, c):
        return h - c @ centers

    conditioned = _train(SyntheticGradient(6, context_dim=5), sample, grad)
    plain = _train(SyntheticGradient(6), sample, grad)
    assert conditioned > 0.95 and plain < 0.7


def test_bad_shapes_and_contexts_are_named() -> None:
    with pytest.raises(ValueError, match="activation shape"):
        SyntheticGradient((0, 3))
    with pytest.raises(ValueError, match="context must be given"):
        SyntheticGradient(4, context_dim=2)(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="does not match"):
        SyntheticGradient(4)(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="conv=True"):
        SyntheticGradient(4, conv=True)
    assert AuxiliaryHead((3, 4, 4), 7, hidden=0)(torch.zeros(2, 3, 4, 4)).shape == (2, 7)


def _echo_loss(use_synthesizer: bool, iters: int = 200) -> float:
    """Recall the input 3 steps back with truncation 3: the dependency crosses a cut."""
    torch.manual_seed(0)
    core, out = nn.GRUCell(1, 16), nn.Linear(16, 1)
    sg = SyntheticGradient(16) if use_synthesizer else None
    dni = TruncatedDNI(core, out, nn.functional.mse_loss, sg,
                       lambda p: torch.optim.Adam(p, 3e-3), truncation=3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(iters):
        x = torch.randn(32, 24, 1, generator=gen)
        y = torch.zeros_like(x)
        y[:, 3:] = x[:, :-3]
        losses.append(dni.train_sequence(x, y, torch.zeros(32, 16)))
    return sum(losses[-20:]) / 20


def test_dni_carries_gradients_across_truncation_boundaries() -> None:
    # Jaderberg et al. Sec. 3.1: truncated BPTT cannot learn a dependency longer than
    # its window; the synthetic gradient at each cut stands in for the future loss.
    plain, dni = _echo_loss(False), _echo_loss(True)
    assert plain > 0.5  # the target variance is 0.8: plain truncated BPTT learns little
    assert dni < 0.25 and dni < plain / 3
