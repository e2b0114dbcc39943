"""Architecture and weights together: an MLP whose per-layer op and width are choices.

An MLP on MNIST-1D (:func:`nondiff.problems.learning.mnist1d`) of :data:`LAYERS` hidden
layers, each ``Linear(., 64)`` then a width :class:`~nondiff.hybrid.structure.Choice`
(keep the first 16, 32 or 64 units, zero the rest: the weights are shared by all
widths, as in ENAS) and an activation ``Choice`` (relu, tanh, identity). That is
``9^3 = 729`` architectures with one set of weights (:class:`SearchNet`). The task
also fixes the data a search may use (:func:`search_split`: train and validation
parts of the training split, the test split untouched) and the structure fitness
(:func:`error_rate`). The search itself (shared weights trained by
:class:`~nondiff.hybrid.trainer.HybridTrainer` under REINFORCE, CMA-ES or a GA, the
found architecture retrained alone) and its baselines (random search, the best of
fixed architectures) are the experiment of ``python -m nondiff.benchmarks.hybrid_tasks
architecture`` (:mod:`nondiff.benchmarks.hybrid_tasks.architecture`).

Source: H. Pham et al., "Efficient neural architecture search via parameter sharing",
ICML 2018 (weights shared by every architecture of the space).

Example:
    >>> from nondiff.problems.hybrid.architecture import SearchNet
    >>> from nondiff.hybrid.structure import structure_space
    >>> space = structure_space(SearchNet())
    >>> list(space.spaces)[:2], space.size
    (['layers.0.width', 'layers.0.act'], 6)
"""

from __future__ import annotations

import torch
from nondiff.hybrid.structure import Choice
from nondiff.problems.learning import Dataset
from torch import nn

__all__ = ["HIDDEN", "LAYERS", "WIDTHS", "SearchNet", "error_rate", "search_split"]

LAYERS = 3
HIDDEN = 64
WIDTHS = (16, 32, 64)


def _keep(width: int):
    def keep(h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h[:, :width], torch.zeros_like(h[:, width:])], dim=1)
    keep.__name__ = f"keep{width}"
    return keep


class Layer(nn.Module):
    """``act(width(linear(x)))`` with the width and the activation as choices."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, HIDDEN)
        self.width = Choice({w: _keep(w) for w in WIDTHS}, default=HIDDEN)
        self.act = Choice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "identity": nn.Identity()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.width(self.linear(x)))


class SearchNet(nn.Module):
    """The searched MLP: :data:`LAYERS` choosable layers and a linear classifier."""

    def __init__(self, features: int = 40, classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[Layer(features if i == 0 else HIDDEN)
                                      for i in range(LAYERS)])
        self.head = nn.Linear(HIDDEN, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(x))


def search_split(data: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    """(train, validation) from the training split; the test split stays untouched.

    Both parts stay on ``data``'s device (``mnist1d(device=...)``)."""
    n = len(data.y_train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(data.device)
    cut = int(0.8 * n)

    def part(i: torch.Tensor) -> Dataset:  # the held-out part keeps its rows in x_train
        return Dataset(data.name, data.num_classes, data.x_train[i], data.y_train[i],
                       data.x_test, data.y_test, data.image_shape)

    return part(order[:cut]), part(order[cut:])


def error_rate(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The structure fitness: the batch error rate (cross-entropy favours the fastest
    learners under barely trained shared weights)."""
    return (logits.argmax(1) != y).float().mean()
