"""A training run to tune: a small 1-D CNN on MNIST-1D with a mixed hyperparameter space.

The AutoML task of :mod:`nondiff.tune` and of ``python -m nondiff.benchmarks.automl``.
:class:`CNNTask` fixes the data (a locally generated MNIST-1D,
:func:`nondiff.problems.learning.mnist1d`, its training split cut into train and
validation parts, the test split untouched until the final pick is scored) and the
number of epochs of one full trial. :data:`SPACE` is the mixed space searched:

=============  ======================================  ==========================
name           leaf                                    meaning
=============  ======================================  ==========================
lr             Real(1e-4, 0.3, log=True)               learning rate
weight_decay   Real(1e-6, 0.1, log=True)               L2 / decoupled decay
width          Integer(4, 32)                          channels of every conv
depth          Integer(1, 4)                           conv layers (stride 2)
activation     Categorical(relu, gelu, tanh)           after every conv
optimizer      Categorical(adam, sgd)                  AdamW or SGD (momentum .9)
dropout        Real(0, 0.5)                            after every conv
batch_size     Categorical(32, 64, 128, 256)           mini-batch size
=============  ======================================  ==========================

:meth:`CNNTask.train` is an ordinary torch loop in the shape ``train(config, trial)``
that :func:`nondiff.tune.tune` runs: it resumes from ``trial.restore()`` when the
saved weights fit the config's architecture, reports the validation accuracy after
every epoch, checkpoints the weights and the optimizer, and stops when
``trial.should_stop()``. :meth:`CNNTask.retrain` trains a config from scratch to the
full number of epochs and :meth:`CNNTask.test_accuracy` scores a state on the test
split.

:class:`SuperNet` is the same family of networks as one model with shared weights
(width, depth and activation declared as :class:`~nondiff.hybrid.structure.IntParam`
/ :class:`~nondiff.hybrid.structure.Choice`; a narrower or shallower network uses the
first channels and layers of the widest, deepest one, as in ENAS and slimmable
networks), for a one-shot search by :class:`~nondiff.hybrid.trainer.HybridTrainer`.

Sources:
    - S. Greydanus, "Scaling down deep learning", arXiv:2011.14439, 2020 (MNIST-1D and
      its reference CNN: stride-2 convolutions of width 5).
    - H. Pham et al., "Efficient neural architecture search via parameter sharing",
      ICML 2018; J. Yu et al., "Slimmable neural networks", ICLR 2019 (a narrower
      network is the first channels of a wider one).

Example:
    >>> from nondiff.problems.automl import SPACE, CNNTask
    >>> task = CNNTask(n=400, epochs=2)
    >>> config = SPACE.decode(SPACE.initial())
    >>> sorted(config)[:3], config["width"], config["optimizer"]
    (['activation', 'batch_size', 'depth'], 18, 'adam')
    >>> state = task.retrain(config, seed=0)
    >>> state["epoch"], 0.0 <= task.test_accuracy(config, state) <= 1.0
    (2, True)
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from nondiff.hybrid.structure import Choice, IntParam
from nondiff.optim.spaces import Categorical, Integer, Product, Real
from nondiff.problems.learning import Dataset, mnist1d
from torch import nn

__all__ = ["ACTIVATIONS", "CNN", "SPACE", "CNNTask", "SuperNet", "TrialLike"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
"""The activation choices by name."""

SPACE = Product({
    "lr": Real(1e-4, 0.3, log=True),
    "weight_decay": Real(1e-6, 0.1, log=True),
    "width": Integer(4, 32),
    "depth": Integer(1, 4),
    "activation": Categorical(list(ACTIVATIONS)),
    "optimizer": Categorical(["adam", "sgd"]),
    "dropout": Real(0.0, 0.5),
    "batch_size": Categorical([32, 64, 128, 256]),
})
"""The mixed space searched (see the module docstring)."""

KERNEL = 5
POOLED = 4  # positions kept by the adaptive pooling before the linear head


class TrialLike(Protocol):
    """What :meth:`CNNTask.train` uses of a :class:`nondiff.tune.Trial`."""

    def report(self, step: int, metric: float) -> Any: ...
    def should_stop(self) -> bool: ...
    def checkpoint(self, state: Mapping[str, Any]) -> Any: ...
    def restore(self) -> Any: ...


class CNN(nn.Module):
    """``depth`` stride-2 convolutions of ``width`` channels, each followed by the
    activation and dropout, adaptive average pooling to 4 positions and a linear head."""

    def __init__(self, width: int, depth: int, activation: str, dropout: float,
                 length: int = 40, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for _ in range(depth):
            layers += [nn.Conv1d(channels, width, KERNEL, stride=2, padding=KERNEL // 2),
                       ACTIVATIONS[activation](), nn.Dropout(dropout)]
            channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(POOLED), nn.Flatten())
        self.head = nn.Linear(width * POOLED, classes)
        self.length = length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.view(x.shape[0], 1, -1)))


class SuperNet(nn.Module):
    """Every architecture of :data:`SPACE` (width, depth, activation) in one set of
    weights: layer ``i`` of a network of width ``w`` is the first ``w`` output (and
    input) channels of the widest layer ``i``; a network of depth ``d`` runs the first
    ``d`` layers. Structure leaves: ``width`` (IntParam), ``depth`` (IntParam),
    ``activation`` (Choice). Dropout is fixed at construction."""

    def __init__(self, dropout: float = 0.0, classes: int = 10) -> None:
        super().__init__()
        low, high = SPACE["width"].low, SPACE["width"].high
        self.width = IntParam(low, high, default=high)
        self.depth = IntParam(SPACE["depth"].low, SPACE["depth"].high,
                              default=SPACE["depth"].high)
        self.activation = Choice({name: make() for name, make in ACTIVATIONS.items()})
        self.convs = nn.ModuleList(
            nn.Conv1d(1 if i == 0 else high, high, KERNEL, stride=2, padding=KERNEL // 2)
            for i in range(SPACE["depth"].high))
        self.drop = nn.Dropout(dropout)
        self.pool = nn.AdaptiveAvgPool1d(POOLED)
        self.head = nn.Linear(high * POOLED, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width, depth = self.width.value, self.depth.value
        h = x.view(x.shape[0], 1, -1)
        for i, conv in enumerate(self.convs[:depth]):
            weight = conv.weight[:width, :(1 if i == 0 else width)]
            h = nn.functional.conv1d(h, weight, conv.bias[:width], stride=2,
                                     padding=KERNEL // 2)
            h = self.drop(self.activation(h))
        h = self.pool(h).flatten(1)  # channel-major: channel c is columns c*4 .. c*4+3
        return nn.functional.linear(h, self.head.weight[:, :width * POOLED], self.head.bias)

    def architecture(self) -> dict[str, Any]:
        """The current (width, depth, activation) as config entries."""
        return {"width": self.width.value, "depth": self.depth.value,
                "activation": self.activation.value}

    def subnet_state(self, config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The shared weights of ``config``'s architecture as a :class:`CNN` state dict
        (copies: training the CNN leaves the supernet as it is); the one-shot saving of
        starting a found architecture from the weights it was searched with."""
        width, depth = int(config["width"]), int(config["depth"])
        widths, depths = SPACE["width"], SPACE["depth"]
        if not (widths.low <= width <= widths.high and depths.low <= depth <= depths.high):
            raise ValueError(f"config's width={width}, depth={depth} is not a network of this "
                             f"supernet (width {widths.low}..{widths.high}, depth "
                             f"{depths.low}..{depths.high}); pick one inside")
        state: dict[str, torch.Tensor] = {}
        for i, conv in enumerate(self.convs[:depth]):
            state[f"features.{3 * i}.weight"] = conv.weight[:width, :(1 if i == 0 else width)]
            state[f"features.{3 * i}.bias"] = conv.bias[:width]
        state["head.weight"] = self.head.weight[:, :width * POOLED]
        state["head.bias"] = self.head.bias
        return {k: v.detach().clone() for k, v in state.items()}


def _check_config(config: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict of {list(SPACE.spaces)}, got {config!r}")
    value = dict(config)
    SPACE.encode(value)  # names every unknown, missing or out-of-range entry
    return value


def config_seed(config: Mapping[str, Any], seed: int = 0) -> int:
    """A seed fixed by the config's values and ``seed``: the same config trains the same
    way in every process (so a repeated config is a repeated measurement)."""
    text = repr(sorted((k, round(v, 12) if isinstance(v, float) else v)
                       for k, v in config.items())) + f"/{seed}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


@functools.lru_cache(maxsize=4)
def _splits(n: int, seed: int) -> tuple[Dataset, Dataset]:
    """(train part with the validation part as its test split, the full dataset)."""
    full = mnist1d(n=n, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(full.y_train), generator=generator)
    cut = len(order) // 5  # a fifth of the training split validates
    valid_idx, train_idx = order[:cut], order[cut:]
    train = Dataset("mnist1d", full.num_classes, full.x_train[train_idx],
                    full.y_train[train_idx], full.x_train[valid_idx], full.y_train[valid_idx],
                    full.image_shape)
    return train, full


@dataclass(frozen=True)
class CNNTask:
    """MNIST-1D (``n`` examples, generated with ``data_seed``) and ``epochs`` per trial.

    The data are made on first use and cached per process, so a task pickles as its
    three numbers (a process pool or Ray ships it cheaply).

    Args:
        n: examples generated (train + validation + test); 80 % / 20 % train/test,
            then a fifth of train validates.
        epochs: the epochs of one full trial (``max_steps`` of :func:`nondiff.tune.tune`).
        data_seed: seed of the data and of the splits.
    """

    n: int = 4000
    epochs: int = 20
    data_seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 100:
            raise ValueError(f"n must be an integer >= 100, got {self.n!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")

    @property
    def data(self) -> Dataset:
        """Training part (``x_train``) and validation part (``x_test``)."""
        return _splits(self.n, self.data_seed)[0]

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The held-out test split ``(x, y)``."""
        full = _splits(self.n, self.data_seed)[1]
        return full.x_test, full.y_test

    def build(self, config: Mapping[str, Any]) -> CNN:
        """A fresh network of ``config``'s architecture."""
        return CNN(int(config["width"]), int(config["depth"]), config["activation"],
                   float(config["dropout"]))

    # ----- the training loop ----------------------------------------------------------
    def train(self, config: Mapping[str, Any], trial: TrialLike,
              init: SuperNet | None = None) -> float:
        """One trial: train ``config`` up to :attr:`epochs`, reporting validation
        accuracy per epoch (step = epochs done); returns the last accuracy.

        Resumes from ``trial.restore()`` when there is a saved state of the same
        architecture (a PBT exploit may also change the learning rate, weight decay,
        dropout, optimizer or batch size: the new values apply from the next epoch; a
        saved optimizer state is kept only for the same optimizer). The weights of a
        saved state of another architecture cannot move across shapes: the trial then
        trains fresh weights for its remaining epochs (its step count goes on). A full
        trial is ``trial.max_steps`` epochs when the trial has it, else :attr:`epochs`.

        ``init``: a trained :class:`SuperNet` whose shared weights of the config's
        architecture (:meth:`SuperNet.subnet_state`) the network starts from instead of
        random ones, when the trial restores nothing (pass it with
        ``functools.partial(task.train, init=supernet)``)."""
        config = _check_config(config)
        if init is not None and not isinstance(init, SuperNet):
            raise ValueError(f"init must be a trained SuperNet or None, got {init!r:.80}")
        return self._fit(config, trial, config_seed(config), getattr(trial, "max_steps", None),
                         init)

    def retrain(self, config: Mapping[str, Any], seed: int = 0,
                epochs: int | None = None) -> dict[str, Any]:
        """Train ``config`` from scratch for ``epochs`` (default :attr:`epochs`); the
        final state (``model``, ``optimizer``, ``epoch``, ``arch``)."""
        config = _check_config(config)
        recorder = _Recorder()
        self._fit(config, recorder, config_seed(config, seed + 1), epochs)
        return recorder.state

    def _fit(self, config: dict[str, Any], trial: TrialLike, seed: int,
             epochs: int | None = None, init: SuperNet | None = None) -> float:
        epochs = self.epochs if epochs is None else epochs
        torch.manual_seed(seed)
        model = self.build(config)
        if init is not None:
            model.load_state_dict(init.subnet_state(config))
        opt = _optimizer(model, config)
        arch = _arch(config)
        start, last = 0, math.nan
        saved = trial.restore()
        if isinstance(saved, Mapping):
            start = int(saved["epoch"])  # the trial's step count goes on in any case
            if tuple(saved.get("arch", ())) == arch:
                model.load_state_dict(saved["model"])
                if saved.get("optimizer_name") == config["optimizer"]:
                    opt.load_state_dict(saved["optimizer"])
                    for group in opt.param_groups:  # the config's values, not the saved ones
                        group["lr"] = config["lr"]
                        group["weight_decay"] = config["weight_decay"]
            torch.manual_seed(seed + start)
        data = self.data
        for epoch in range(start, epochs):
            model.train()
            for x, y in data.batches(int(config["batch_size"]), seed=seed, epoch=epoch):
                loss = nn.functional.cross_entropy(model(x), y)
                if not torch.isfinite(loss):
                    break  # a diverged run: its accuracy shows it (chance level)
                opt.zero_grad()
                loss.backward()
                opt.step()
            last = _accuracy(model, data.x_test, data.y_test)
            trial.report(epoch + 1, last)
            trial.checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(),
                              "optimizer_name": config["optimizer"], "epoch": epoch + 1,
                              "arch": arch})
            if trial.should_stop():
                break
        return last

    def test_accuracy(self, config: Mapping[str, Any], state: Mapping[str, Any]) -> float:
        """Accuracy on the test split of the network ``config`` with ``state["model"]``."""
        config = _check_config(config)
        model = self.build(config)
        model.load_state_dict(state["model"])
        return _accuracy(model, *self.test)

    def validation_accuracy(self, model: nn.Module) -> float:
        """Accuracy of any model (e.g. a :class:`SuperNet`) on the validation part."""
        return _accuracy(model, self.data.x_test, self.data.y_test)


def _arch(config: Mapping[str, Any]) -> tuple[int, int, str]:
    return int(config["width"]), int(config["depth"]), str(config["activation"])


def _optimizer(model: nn.Module, config: Mapping[str, Any]) -> torch.optim.Optimizer:
    lr, decay = float(config["lr"]), float(config["weight_decay"])
    if config["optimizer"] == "adam":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=decay)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=decay)


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    out = float((model(x).argmax(dim=1) == y).float().mean())
    model.train()
    return out


class _Recorder:
    """A trial that never stops, restores nothing and keeps the last checkpoint."""

    state: dict[str, Any]

    def report(self, step: int, metric: float) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def checkpoint(self, state: Mapping[str, Any]) -> None:
        self.state = dict(state)

    def restore(self) -> None:
        return None
