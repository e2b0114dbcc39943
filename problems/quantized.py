"""Quantized-network tasks: binary and ternary MLPs and CNNs on digits and MNIST-1D.

A task is a dataset of :mod:`problems.learning` and an architecture; :func:`train`
trains it in one of three ways with the same optimizer (Adam, or SGD with momentum
0.9 as in Leng et al.), epochs and batches:

- ``"float"``: float weights (the reference accuracy);
- ``"admm"``: the augmented Lagrangian of :class:`optim.ADMMQuantizer`
  (Leng et al. 2018), weights put exactly on their sets at the end;
- ``"ste"``: the straight-through estimator (Bengio et al. 2013; as in
  BinaryConnect and ternary weight networks): the forward pass uses the projected
  weights ``Proj_C(W)``, the backward pass copies their gradient to W.

Weights of linear and convolutional layers are quantized (per-tensor fitted scale,
the same exact projections for ADMM and STE); biases stay in float.
:func:`validation_split` carves a validation set out of the training split, for
choosing settings without looking at the test set.

The penalty rho/2 ||W - Z + U||^2 is a quadratic of curvature rho only under plain
(momentum) SGD; Adam rescales each coordinate's gradient by its running RMS, so the
pull towards Z no longer follows rho (the L2-vs-weight-decay effect of Loshchilov and
Hutter 2019). On a validation split of MNIST-1D (CNN, 20 epochs) ADMM ternary reached
71 % with Adam and 90 % with SGD (float: 85 % and 94 %).

Sources:
    - C. Leng, H. Li, S. Zhu, R. Jin, "Extremely Low Bit Neural Network: Squeeze the
      Last Bit Out with ADMM", AAAI 2018.
    - Y. Bengio, N. Leonard, A. Courville, "Estimating or propagating gradients
      through stochastic neurons for conditional computation", arXiv:1308.3432, 2013.
    - F. Li, B. Zhang, B. Liu, "Ternary weight networks", arXiv:1605.04711, 2016.

Example:
    >>> from problems.learning import digits
    >>> from problems.quantized import train
    >>> out = train(digits(seed=0), "mlp", method="admm", levels="ternary", epochs=3, seed=0)
    >>> out["on_levels"], out["accuracy"] > 0.8
    (True, True)
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from optim.admm_quantizer import ADMMQuantizer, level_set
from optim.checks import check_int, check_positive
from optim.projections import ConstraintSet
from problems.learning import Dataset

__all__ = ["METHODS", "OPTIMIZERS", "STEQuantize", "accuracy", "cnn", "mlp",
           "quantized_weights", "train", "validation_split"]

METHODS = ("float", "admm", "ste")
OPTIMIZERS = {"adam": 1e-3, "sgd": 0.05}
"""Optimizer names and their default learning rates (SGD with momentum 0.9)."""


def mlp(ds: Dataset, hidden: tuple[int, ...] = (256, 256)) -> nn.Sequential:
    """A ReLU multilayer perceptron for ``ds``."""
    layers: list[nn.Module] = []
    width = ds.features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, ds.num_classes))


def cnn(ds: Dataset, channels: int = 32) -> nn.Sequential:
    """A small CNN: two 3x3 (2-D images) or width-5 (1-D signals) convolutions, a 2x
    max-pool and a linear classifier; input ``x.view(-1, *ds.image_shape)``."""
    shape = ds.image_shape
    conv, pool, k = ((nn.Conv2d, nn.MaxPool2d, 3) if len(shape) == 3
                     else (nn.Conv1d, nn.MaxPool1d, 5))
    c = channels
    body = nn.Sequential(nn.Unflatten(1, shape), conv(shape[0], c, k, padding=k // 2), nn.ReLU(),
                         conv(c, 2 * c, k, padding=k // 2), nn.ReLU(), pool(2), nn.Flatten())
    with torch.no_grad():
        width = body(torch.zeros(1, ds.features)).shape[1]
    return nn.Sequential(*body, nn.Linear(width, ds.num_classes))


def quantized_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weight tensors of the linear and convolutional layers (biases excluded)."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


class STEQuantize(nn.Module):
    """Parametrization ``W -> W + (Proj_C(W) - W).detach()``: forward on the set,
    gradient straight through to the float W."""

    def __init__(self, constraint_set: ConstraintSet) -> None:
        super().__init__()
        self.constraint_set = constraint_set

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + (self.constraint_set.project(w.detach()) - w).detach()


def validation_split(ds: Dataset, fraction: float = 0.2, seed: int = 0) -> Dataset:
    """``ds`` with a random ``fraction`` of its training split held out as the test
    split (the original test split is dropped): tune on this, report on ``ds``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    generator = torch.Generator().manual_seed(check_int("seed", seed, 0))
    order = torch.randperm(len(ds.y_train), generator=generator)
    held = max(1, int(fraction * len(order)))
    val, rest = order[:held], order[held:]
    return replace(ds, x_train=ds.x_train[rest], y_train=ds.y_train[rest],
                   x_test=ds.x_train[val], y_test=ds.y_train[val])


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` classified as ``y``."""
    model.eval()
    out = float((model(x).argmax(dim=1) == y).float().mean())
    model.train()
    return out


def train(ds: Dataset, arch: str = "mlp", method: str = "admm",
          levels: str | int = "ternary", epochs: int = 20, seed: int = 0,
          optimizer: str = "adam", lr: float | None = None, batch_size: int = 64,
          rho: float = 1e-4, rho_end: float = 10.0, every: int | None = None,
          hidden: tuple[int, ...] = (256, 256)) -> dict[str, Any]:
    """Train ``arch`` (``"mlp"``, ``"cnn"``) on ``ds`` by ``method`` (see module docstring).

    ``optimizer`` is ``"adam"`` or ``"sgd"`` (momentum 0.9), ``lr`` defaults to
    :data:`OPTIMIZERS`. For ADMM, Z and U update once per epoch by default (``every``
    steps) and rho grows geometrically from ``rho`` to ``rho_end`` over the run, so
    that W is driven onto its set by the end.

    Returns:
        dict with ``accuracy`` (test), ``train_accuracy``, ``seconds``, ``on_levels``
        (every quantized weight exactly on its set) and the trained ``model``.
    """
    if arch not in ("mlp", "cnn"):
        raise ValueError(f"arch must be 'mlp' or 'cnn', got {arch!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    epochs = check_int("epochs", epochs, 1)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    lr = OPTIMIZERS[optimizer] if lr is None else check_positive("lr", lr)
    if check_positive("rho_end", rho_end) < check_positive("rho", rho):
        raise ValueError(f"rho_end must be >= rho, got rho_end={rho_end!r} < rho={rho!r}")
    constraint_set = level_set(levels)
    torch.manual_seed(check_int("seed", seed, 0))
    model = mlp(ds, hidden) if arch == "mlp" else cnn(ds)
    weights = quantized_weights(model)
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    steps = epochs * ds.num_batches(batch_size)
    quant = None
    if method == "admm":
        every = ds.num_batches(batch_size) if every is None else check_int("every", every, 1)
        growth = (rho_end / rho) ** (every / steps)
        quant = ADMMQuantizer(weights, levels=constraint_set, rho=rho, every=every,
                              rho_growth=growth, rho_max=1e6)
    elif method == "ste":
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                parametrize.register_parametrization(m, "weight", STEQuantize(constraint_set))
    loss_fn = nn.CrossEntropyLoss()
    began = time.perf_counter()
    for epoch in range(epochs):
        for xb, yb in ds.batches(batch_size, seed=seed, epoch=epoch):
            loss = loss_fn(model(xb), yb)
            if quant is not None:
                loss = loss + quant.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if quant is not None:
                quant.step()
    if quant is not None:
        quant.finalize()
    elif method == "ste":  # bake the projected weights in
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    seconds = time.perf_counter() - began
    on_levels = all(constraint_set.contains(w.detach()) for w in quantized_weights(model))
    return {"accuracy": accuracy(model, ds.x_test, ds.y_test),
            "train_accuracy": accuracy(model, ds.x_train, ds.y_train),
            "seconds": seconds, "on_levels": on_levels, "model": model}
