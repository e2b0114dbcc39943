"""Quantized-network tasks: binary and ternary MLPs and CNNs on digits and MNIST-1D.

A task is a dataset of :mod:`nondiff.problems.learning` and an architecture
(:func:`mlp`, :func:`cnn`) whose linear and convolutional weights are to end on a
discrete set (binary, ternary, k-bit; per-tensor fitted scale) while the biases stay
in float, scored by :func:`nondiff.problems.learning.accuracy`. :func:`validation_split`
carves a validation set out of the training split, for choosing settings without
looking at the test set.

The quantization itself (ADMM of Leng et al. 2018, the straight-through estimator,
the polish of the scales) is :mod:`nondiff.hybrid.quantize`; the study that compares
float, ADMM and straight-through training on these tasks is
``python -m nondiff.benchmarks.studies.admm_quantized``.

Example:
    >>> import torch
    >>> from nondiff.hybrid.quantize import ADMMQuantizer, quantized_weights
    >>> from nondiff.problems.learning import accuracy, digits
    >>> from nondiff.problems.quantized import mlp
    >>> ds = digits(seed=0)
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = mlp(ds, hidden=(64,))
    >>> quant = ADMMQuantizer(quantized_weights(model), levels="ternary", rho=1e-3,
    ...                       every=ds.num_batches(64), rho_growth=3.0)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> for epoch in range(4):
    ...     for xb, yb in ds.batches(64, seed=0, epoch=epoch):
    ...         loss = torch.nn.functional.cross_entropy(model(xb), yb) + quant.penalty()
    ...         opt.zero_grad()
    ...         loss.backward()
    ...         opt.step()
    ...         _ = quant.step()
    >>> _ = quant.finalize()
    >>> quant.on_levels(), accuracy(model, ds.x_test, ds.y_test) > 0.8
    (True, True)
"""

from __future__ import annotations

from dataclasses import replace

import torch
from nondiff.optim.checks import check_int
from nondiff.problems.learning import Dataset
from torch import nn

__all__ = ["cnn", "mlp", "validation_split"]


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


def validation_split(ds: Dataset, fraction: float = 0.2, seed: int = 0) -> Dataset:
    """``ds`` with a random ``fraction`` of its training split held out as the test
    split (the original test split is dropped): tune on this, report on ``ds``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    generator = torch.Generator().manual_seed(check_int("seed", seed, 0))
    order = torch.randperm(len(ds.y_train), generator=generator).to(ds.device)
    held = max(1, int(fraction * len(order)))
    val, rest = order[:held], order[held:]
    return replace(ds, x_train=ds.x_train[rest], y_train=ds.y_train[rest],
                   x_test=ds.x_train[val], y_test=ds.y_train[val])
