"""Quantized-network tasks: binary and ternary MLPs and CNNs on digits and MNIST-1D.

A task is a dataset of :mod:`nondiff.problems.learning` and an architecture; :func:`train`
trains it in one of three ways with the same optimizer (Adam, or SGD with momentum
0.9 as in Leng et al.), epochs and batches:

- ``"float"``: float weights (the reference accuracy);
- ``"admm"``: the augmented Lagrangian of :class:`nondiff.optim.ADMMQuantizer`
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
    >>> from nondiff.problems.learning import digits
    >>> from nondiff.problems.quantized import train
    >>> out = train(digits(seed=0), "mlp", method="admm", levels="ternary", epochs=3, seed=0)
    >>> out["on_levels"], out["accuracy"] > 0.8
    (True, True)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from nondiff.optim.admm_quantizer import ADMMQuantizer, level_set
from nondiff.optim.checks import check_int, check_positive
from nondiff.optim.projections import ConstraintSet
from nondiff.problems.learning import Dataset
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["METHODS", "OPTIMIZERS", "STEQuantize", "ScaledCodes", "accuracy", "cnn", "mlp",
           "quantized_layers", "quantized_weights", "train", "validation_split"]

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


def quantized_layers(model: nn.Module, keep_float: Sequence[int] = ()) -> list[nn.Module]:
    """The linear and convolutional layers whose weights are quantized: all of them in
    order, except those at the indices ``keep_float`` (e.g. ``(0,)``: the first layer
    stays in float, as in most low-bit work since XNOR-Net)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    kept = set()
    for i in keep_float:
        if isinstance(i, bool) or not isinstance(i, int) or not -len(layers) <= i < len(layers):
            raise ValueError(f"keep_float holds layer indices in [-{len(layers)}, "
                             f"{len(layers)}), got {i!r}")
        kept.add(i % len(layers))
    return [m for i, m in enumerate(layers) if i not in kept]


def quantized_weights(model: nn.Module, keep_float: Sequence[int] = ()) -> list[nn.Parameter]:
    """The weight tensors of :func:`quantized_layers` (biases excluded)."""
    return [m.weight for m in quantized_layers(model, keep_float)]


class ScaledCodes(nn.Module):
    """Parametrization ``W = s * Q`` for the polish phase: the integer codes ``Q`` of a
    weight already on its set stay fixed, the per-tensor scale ``s`` trains (so ``W``
    stays on the set: any positive scale is a member of a fitted-scale set).

    ``s`` is stored as ``t = s ||Q||``, so that a gradient step on ``t`` moves ``s`` by
    ``lr <dL/dW, Q> / ||Q||^2``: the scale a step on every weight followed by a
    least-squares refit on the same codes would give (a step on ``s`` itself would be
    ``||Q||^2`` times larger: thousands of weights pulling on one number)."""

    def __init__(self, weight: torch.Tensor, constraint_set: ConstraintSet) -> None:
        super().__init__()
        w = weight.detach()
        _, scale = constraint_set.fit(w)
        codes = torch.round(w / scale) if scale > 0 else torch.zeros_like(w)
        if not torch.allclose(scale * codes, w, rtol=1e-6, atol=1e-9):
            raise ValueError(f"polishing needs levels that are integers times a scale; "
                             f"{constraint_set!r} is not; use polish_epochs=0")
        self.register_buffer("codes", codes)
        self.norm = max(float(codes.square().sum().sqrt()), 1.0)
        self.raw_scale = nn.Parameter(torch.tensor(scale * self.norm, dtype=w.dtype))

    @property
    def scale(self) -> torch.Tensor:
        return self.raw_scale / self.norm

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.scale * self.codes


class STEQuantize(nn.Module):
    """Parametrization ``W -> W + (Proj_C(W) - W).detach()``: forward on the set,
    gradient straight through to the float W."""

    def __init__(self, constraint_set: ConstraintSet) -> None:
        super().__init__()
        self.constraint_set = constraint_set

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + (self.constraint_set.project(w.detach()) - w).detach()


def _quantize_in_place(layers: list[nn.Module], quant: ADMMQuantizer | None) -> None:
    """Put the weights on their sets for good: ADMM's final projection, or bake in the
    STE (or polish) parametrization."""
    if quant is not None:
        quant.finalize()
    for m in layers:
        if not parametrize.is_parametrized(m, "weight"):
            continue
        rule = m.parametrizations.weight[0]
        if isinstance(rule, STEQuantize):  # W + (P(W) - W) is P(W) only to rounding
            exact = rule.constraint_set.project(m.parametrizations.weight.original.detach())
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            with torch.no_grad():
                m.weight.copy_(exact)
        else:  # ScaledCodes: scale * codes, exact
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


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
          hidden: tuple[int, ...] = (256, 256), polish_epochs: int = 0,
          polish_lr: float | None = None, keep_float: Sequence[int] = ()) -> dict[str, Any]:
    """Train ``arch`` (``"mlp"``, ``"cnn"``) on ``ds`` by ``method`` (see module docstring).

    ``optimizer`` is ``"adam"`` or ``"sgd"`` (momentum 0.9), ``lr`` defaults to
    :data:`OPTIMIZERS`. For ADMM, Z and U update once per epoch by default (``every``
    steps) and rho grows geometrically from ``rho`` to ``rho_end`` over the run, so
    that W is driven onto its set by the end.

    ``polish_epochs`` (ADMM and STE; within ``epochs``, not added) ends the run as
    the final polish of ADMM heuristics (Takapoui et al. 2020: fix the discrete part,
    optimize the continuous rest): the weights are put on their sets, their integer
    codes are frozen, and only the per-tensor scales and the biases train, with the
    same optimizer at ``polish_lr`` (default: a tenth of ``lr``).

    ``keep_float``: indices of linear/conv layers left in float (see
    :func:`quantized_layers`); the same for every method.

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
    polish_epochs = check_int("polish_epochs", polish_epochs, 0)
    if polish_epochs and (method == "float" or polish_epochs >= epochs):
        raise ValueError(f"polish_epochs must be 0 for float training and < epochs "
                         f"({epochs}) otherwise, got {polish_epochs!r}")
    polish_lr = lr / 10 if polish_lr is None else check_positive("polish_lr", polish_lr)
    if check_positive("rho_end", rho_end) < check_positive("rho", rho):
        raise ValueError(f"rho_end must be >= rho, got rho_end={rho_end!r} < rho={rho!r}")
    constraint_set = level_set(levels)
    torch.manual_seed(check_int("seed", seed, 0))
    model = mlp(ds, hidden) if arch == "mlp" else cnn(ds)
    layers = quantized_layers(model, keep_float)
    weights = [m.weight for m in layers]

    def make_optimizer(params: list[nn.Parameter], rate: float) -> torch.optim.Optimizer:
        return (torch.optim.Adam(params, lr=rate) if optimizer == "adam"
                else torch.optim.SGD(params, lr=rate, momentum=0.9))

    opt = make_optimizer(list(model.parameters()), lr)
    main_epochs = epochs - polish_epochs
    steps = main_epochs * ds.num_batches(batch_size)
    quant = None
    if method == "admm":
        every = ds.num_batches(batch_size) if every is None else check_int("every", every, 1)
        growth = (rho_end / rho) ** (every / steps)
        quant = ADMMQuantizer(weights, levels=constraint_set, rho=rho, every=every,
                              rho_growth=growth, rho_max=1e6)
    elif method == "ste":
        for m in layers:
            parametrize.register_parametrization(m, "weight", STEQuantize(constraint_set))
    loss_fn = nn.CrossEntropyLoss()
    began = time.perf_counter()
    for epoch in range(epochs):
        if epoch == main_epochs:  # polish: codes frozen, scales and biases train
            _quantize_in_place(layers, quant)
            quant = None
            for m in layers:
                m.weight.requires_grad_(False)
                parametrize.register_parametrization(m, "weight",
                                                     ScaledCodes(m.weight, constraint_set))
            free = [p for p in model.parameters() if p.requires_grad]  # not the codes
            opt = make_optimizer(free, polish_lr)
        for xb, yb in ds.batches(batch_size, seed=seed, epoch=epoch):
            loss = loss_fn(model(xb), yb)
            if quant is not None:
                loss = loss + quant.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if quant is not None:
                quant.step()
    _quantize_in_place(layers, quant)
    seconds = time.perf_counter() - began
    on_levels = all(constraint_set.contains(m.weight.detach()) for m in layers)
    for m in layers:
        m.weight.requires_grad_(True)
    return {"accuracy": accuracy(model, ds.x_test, ds.y_test),
            "train_accuracy": accuracy(model, ds.x_train, ds.y_train),
            "seconds": seconds, "on_levels": on_levels, "model": model}
