"""Offline classification datasets: scikit-learn's digits and a locally generated MNIST-1D.

Nothing is downloaded. :func:`digits` wraps the 8x8 handwritten digits that ship with
scikit-learn (1,797 images, UCI optical recognition of handwritten digits).
:func:`mnist1d` implements the MNIST-1D generator of Greydanus (2020): ten hand-made
1-D templates (one per digit, 12 points each) are padded, stretched, scaled,
translated, corrupted by correlated and i.i.d. noise, sheared and resampled to 40
points. The task is small but hard for models without spatial priors: the paper
reports about 32 % test accuracy for logistic regression, 68 % for an MLP and 94 % for
a CNN on 4,000 training / 1,000 test samples.

Both return a :class:`Dataset`: float32 ``(n, features)`` inputs standardized with the
training statistics, int64 labels, a stratified train/test split fixed by ``seed``, an
``image_shape`` so that ``x.view(-1, *image_shape)`` feeds a convolutional network, and
:meth:`Dataset.batches`, deterministic shuffled mini-batches of the training split;
:func:`accuracy` scores a classifier on a split.
These are supervised learning sets, not batched objectives, so they are exposed as
functions (see :data:`DATASETS` and :func:`load`) rather than registered problems.

Sources:
    - S. Greydanus, "Scaling down deep learning", arXiv:2011.14439, 2020 (MNIST-1D:
      templates, transformation order and default parameters).
    - E. Alpaydin, C. Kaynak, "Optical recognition of handwritten digits", UCI, 1998
      (the digits set bundled with scikit-learn as ``load_digits``).

Example:
    >>> from nondiff.problems.learning import digits, mnist1d
    >>> ds = digits(seed=0)
    >>> ds.name, ds.num_classes, ds.image_shape, ds.x_train.shape[1]
    ('digits', 10, (1, 8, 8), 64)
    >>> x, y = next(ds.batches(32, seed=0))
    >>> tuple(x.shape), y.dtype
    ((32, 64), torch.int64)
    >>> m = mnist1d(n=500, seed=0)
    >>> m.x_train.shape, m.x_test.shape, m.image_shape
    (torch.Size([400, 40]), torch.Size([100, 40]), (1, 40))
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from nondiff.hybrid.batches import epoch_seed
from nondiff.hybrid.devices import device_of, to_device
from scipy.ndimage import gaussian_filter1d

__all__ = ["DATASETS", "MNIST1D_TEMPLATES", "Dataset", "accuracy", "digits", "load", "mnist1d"]

# The ten MNIST-1D templates (Greydanus 2020), one row per digit 0..9, 12 points each.
MNIST1D_TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
])  # fmt: skip
"""The raw digit templates of MNIST-1D (before whitening)."""


@dataclass(frozen=True)
class Dataset:
    """A standardized classification dataset with a fixed train/test split.

    Attributes:
        name: ``"digits"`` or ``"mnist1d"``.
        num_classes: number of labels (10 for both).
        x_train, x_test: float32 ``(n, features)`` tensors, standardized per feature
            with the training mean and standard deviation.
        y_train, y_test: int64 ``(n,)`` labels in ``[0, num_classes)``.
        image_shape: the shape of one example for convolutional models,
            ``x.view(-1, *image_shape)``.
    """

    name: str
    num_classes: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    image_shape: tuple[int, ...]

    @property
    def features(self) -> int:
        """Number of input features per example."""
        return int(self.x_train.shape[1])

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.x_train.device

    def to(self, device: torch.device | str) -> Dataset:
        """This dataset with every tensor on ``device`` (itself when already there)."""
        device = torch.device(device)
        if self.x_train.device == device and self.x_test.device == device:
            return self
        return replace(self, **{k: getattr(self, k).to(device)
                                for k in ("x_train", "y_train", "x_test", "y_test")})

    def batches(
        self, batch_size: int, seed: int = 0, epoch: int = 0, drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled ``(x, y)`` mini-batches of the training split, one epoch.

        The order depends only on ``(seed, epoch)``: the same arguments give the same
        batches in every process and on every device (the permutation is drawn on the
        CPU and moved to the data).

        Args:
            batch_size: examples per batch (the last one may be smaller).
            seed: shuffling seed.
            epoch: epoch index; each epoch has its own permutation.
            drop_last: skip a final batch smaller than ``batch_size``.
            device: where the batches go (default: where the dataset lives); keeping
                the whole dataset on the model's device (``digits(device=...)``)
                avoids a copy per batch.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        order = torch.randperm(len(self.y_train), generator=generator).to(self.device)
        n = len(order)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            index = order[start:start + batch_size]
            x, y = self.x_train[index], self.y_train[index]
            if device is not None:
                x, y = x.to(device), y.to(device)
            yield x, y

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """How many batches :meth:`batches` yields per epoch."""
        n = len(self.y_train)
        return n // batch_size if drop_last else -(-n // batch_size)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={len(self.y_train)}, "
                f"test={len(self.y_test)}, features={self.features}, "
                f"image_shape={self.image_shape})")


def _check_test_size(test_size: float) -> None:
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")


def _stratified_split(
    y: np.ndarray, test_size: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with every class split in the same proportion."""
    train, test = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        k = round(test_size * len(members))
        test.append(members[:k])
        train.append(members[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _make(
    name: str, x: np.ndarray, y: np.ndarray, test_size: float, seed: int,
    image_shape: tuple[int, ...], device: torch.device | str = "cpu",
) -> Dataset:
    rng = np.random.default_rng([epoch_seed(seed, 0), 1])
    train, test = _stratified_split(y, test_size, rng)
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)  # constant pixels (digits' borders) stay 0

    def standardize(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x[rows] - mean) / std).astype(np.float32))

    return Dataset(
        name=name, num_classes=int(y.max()) + 1,
        x_train=standardize(train), y_train=torch.from_numpy(y[train].astype(np.int64)),
        x_test=standardize(test), y_test=torch.from_numpy(y[test].astype(np.int64)),
        image_shape=image_shape,
    ).to(device)


def digits(seed: int = 0, test_size: float = 0.2, *,
           device: torch.device | str = "cpu") -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images), stratified split by ``seed``.

    Args:
        seed: seed of the train/test split.
        test_size: fraction of each class held out for testing.
        device: where the tensors live (the same values on every device).
    """
    from sklearn.datasets import load_digits

    _check_test_size(test_size)
    data = load_digits()
    return _make("digits", data.data.astype(np.float64), data.target, test_size, seed,
                 (1, 8, 8), device)


def _interp_matrix(source: int, target: int) -> np.ndarray:
    """``(target, source)`` weights of linear interpolation between evenly spaced grids."""
    position = np.linspace(0.0, source - 1.0, target)
    left = np.minimum(np.floor(position).astype(int), source - 2)
    frac = position - left
    weights = np.zeros((target, source))
    weights[np.arange(target), left] = 1.0 - frac
    weights[np.arange(target), left + 1] = frac
    return weights


def _whitened_templates() -> np.ndarray:
    t = MNIST1D_TEMPLATES - MNIST1D_TEMPLATES.mean(axis=1, keepdims=True)
    t = t / t.std(axis=1, keepdims=True)
    t = t - t[:, :1]  # every template starts (and, by construction, ends) at 0
    return t / 6.0


@functools.lru_cache(maxsize=8)
def _mnist1d_arrays(
    n: int, seed: int, length: int, padding: tuple[int, int], scale_coeff: float,
    max_translation: int, corr_noise_scale: float, iid_noise_scale: float, shear_scale: float,
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([epoch_seed(seed, 0), 0])
    templates = _whitened_templates()
    width = templates.shape[1]
    stretched = width + padding[1]
    y = rng.permutation(np.arange(n) % 10)
    pad = rng.integers(padding[0], padding[1] + 1, size=n)
    scale = 1.0 + scale_coeff * (rng.random(n) - 0.5)
    shift = rng.integers(0, max_translation, size=n)
    corr = gaussian_filter1d(corr_noise_scale * rng.standard_normal((n, stretched)), 2.0, axis=1)
    iid = iid_noise_scale * rng.standard_normal((n, stretched))
    shear = shear_scale * (rng.random(n) - 0.5)
    # Pad each template with `pad` zeros, then dilate it to `stretched` points by linear
    # interpolation on its own grid 0..width+pad-1.
    padded = np.zeros((n, stretched + 1))
    padded[:, :width] = templates[y] + 1e-8
    position = np.linspace(0.0, 1.0, stretched)[None, :] * (width + pad - 1)[:, None]
    left = np.floor(position).astype(int)
    frac = position - left
    rows = np.arange(n)[:, None]
    x = padded[rows, left] * (1.0 - frac) + padded[rows, left + 1] * frac
    x = x * scale[:, None]  # scale
    x = x[rows, (np.arange(stretched)[None, :] - shift[:, None]) % stretched]  # translate
    x = np.where(x == 0.0, corr, x)  # correlated noise on the background
    x = x + iid  # i.i.d. noise everywhere
    x = x - shear[:, None] * np.linspace(-0.5, 0.5, stretched)[None, :]  # shear
    return x @ _interp_matrix(stretched, length).T, y  # subsample to `length` points


def mnist1d(
    n: int = 5000, seed: int = 0, test_size: float = 0.2, *, length: int = 40,
    padding: tuple[int, int] = (36, 60), scale_coeff: float = 0.4, max_translation: int = 48,
    corr_noise_scale: float = 0.25, iid_noise_scale: float = 2e-2, shear_scale: float = 0.75,
    device: torch.device | str = "cpu",
) -> Dataset:
    """MNIST-1D generated locally (Greydanus 2020); defaults are the paper's.

    The default ``n=5000`` with ``test_size=0.2`` is the paper's 4,000 train / 1,000
    test version. Classes are balanced (``n // 10`` or one more per class).

    Args:
        n: total number of examples (train + test), at least 20.
        seed: seed of the generator and of the split; same seed, same tensors.
        test_size: fraction of each class held out for testing.
        length: final sequence length.
        padding: ``(low, high)`` number of zeros appended to a template before
            stretching (a uniform integer in the range).
        scale_coeff: amplitude scale factor is ``1 + scale_coeff * U(-0.5, 0.5)``.
        max_translation: circular shift drawn uniformly in ``[0, max_translation)``.
        corr_noise_scale: scale of the Gaussian-smoothed (sigma 2) background noise.
        iid_noise_scale: scale of the i.i.d. Gaussian noise on every point.
        shear_scale: a linear ramp of slope ``shear_scale * U(-0.5, 0.5)`` is subtracted.
        device: where the tensors live (generated on the CPU: the same values on
            every device).
    """
    epoch_seed(seed, 0)  # validates seed
    if not isinstance(n, int) or isinstance(n, bool) or n < 20:
        raise ValueError(f"n must be an integer >= 20 (two examples per class), got {n!r}")
    _check_test_size(test_size)
    if not isinstance(length, int) or length < 2:
        raise ValueError(f"length must be an integer >= 2, got {length!r}")
    low, high = padding
    if not 0 <= low <= high:
        raise ValueError(f"padding must be (low, high) with 0 <= low <= high, got {padding!r}")
    if not 1 <= max_translation <= MNIST1D_TEMPLATES.shape[1] + high:
        raise ValueError(
            f"max_translation must be in [1, {MNIST1D_TEMPLATES.shape[1] + high}], "
            f"got {max_translation!r}"
        )
    x, y = _mnist1d_arrays(
        n, int(seed), length, (int(low), int(high)), float(scale_coeff),
        int(max_translation), float(corr_noise_scale), float(iid_noise_scale),
        float(shear_scale),
    )
    return _make("mnist1d", x, y, test_size, seed, (1, length), device)


DATASETS: dict[str, Callable[..., Dataset]] = {"digits": digits, "mnist1d": mnist1d}
"""The dataset constructors by name."""


def load(name: str, **kwargs: Any) -> Dataset:
    """Build the dataset ``name`` (a key of :data:`DATASETS`) with ``kwargs``."""
    key = str(name).strip().lower().replace("_", "").replace("-", "")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[key](**kwargs)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (argmax of its outputs),
    evaluated in eval mode on the device of the model's parameters (``x`` and ``y``
    are moved there); the model is handed back in train mode."""
    x, y = to_device((x, y), device_of(model))
    model.eval()
    out = float((model(x).argmax(dim=1) == y).float().mean())
    model.train()
    return out
