"""Batch norms of a supernet score each candidate with its own statistics.

Weights shared by many structures (one-shot search) give a batch norm running
statistics averaged over every structure the weights trained under: the mean and
variance of no single candidate. A candidate scored in eval mode is then normalised
with another structure's scale. Single path one-shot search recomputes the statistics
of each candidate before ranking it (Guo et al. 2020); DARTS's search cells normalise
each op's output by its batch's statistics (``affine=False``, Liu et al. 2019).
:func:`candidate_statistics` does the same while
:class:`~nondiff.hybrid.trainer.HybridTrainer` scores candidates: inside the block every
batch norm of the model normalises by the statistics of the batch it is given, and its
running statistics are left untouched (the final phase's steps, which train the chosen
structure alone, set them for the model ``fit`` returns). :func:`has_batch_norm` says
whether a model has one (a repeated batch holding several candidates would mix their
statistics, so such a model is scored one candidate per pass). :func:`norm_buffers` and
:func:`restore_norm_buffers` undo what a skipped weight step wrote into the running
statistics.

Sources:
    - Z. Guo, X. Zhang, H. Mu, W. Heng, Z. Liu, Y. Wei, J. Sun, "Single path one-shot
      neural architecture search with uniform sampling", ECCV 2020 (batch norm
      statistics recalculated per candidate).
    - H. Liu, K. Simonyan, Y. Yang, "DARTS: differentiable architecture search", ICLR
      2019 (batch norm without affine parameters in the searched ops).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from nondiff.hybrid.candidate_norms import candidate_statistics, has_batch_norm
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)).eval()
    >>> has_batch_norm(model)
    True
    >>> x = torch.randn(8, 2) * 100
    >>> with candidate_statistics(model, rows=8):
    ...     out = model(x)
    >>> bool(out.mean(0).abs().max() < 1e-4)  # this batch's own statistics
    True
    >>> float(model[1].running_mean.abs().sum()), int(model[1].num_batches_tracked)
    (0.0, 0)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["candidate_statistics", "has_batch_norm", "norm_buffers", "restore_norm_buffers"]

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` holds a batch norm (any ``nn.BatchNorm*d`` or ``SyncBatchNorm``)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def norm_buffers(model: nn.Module) -> list[tuple[nn.Module, dict[str, torch.Tensor]]]:
    """Copies of the running statistics of every batch norm of ``model`` (a train-mode
    pass writes them before its loss is checked): :func:`restore_norm_buffers` puts
    them back when that step is skipped or refused, so a non-finite batch leaves no NaN
    in the statistics the trained model is evaluated with."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and _initialised(m):
            saved.append((m, {name: getattr(m, name).clone() for name in _BUFFERS
                              if isinstance(getattr(m, name, None), torch.Tensor)}))
    return saved


def restore_norm_buffers(saved: list[tuple[nn.Module, dict[str, torch.Tensor]]]) -> None:
    """Put back the running statistics :func:`norm_buffers` copied (in place)."""
    with torch.no_grad():
        for m, buffers in saved:
            for name, value in buffers.items():
                getattr(m, name).copy_(value)


def _initialised(m: nn.Module) -> bool:
    """A batch norm with running statistics that exist (a lazy one before its first
    pass has none yet: it keeps its own first pass)."""
    mean = getattr(m, "running_mean", None)
    return isinstance(mean, torch.Tensor) and not isinstance(
        mean, nn.parameter.UninitializedBuffer)


@contextlib.contextmanager
def candidate_statistics(model: nn.Module, rows: int) -> Iterator[None]:
    """Inside the block, each batch norm of ``model`` with running statistics
    normalises by its input's own statistics and leaves its running statistics and
    count unchanged (the model's mode is not changed). With ``rows`` below 2 a batch has
    no variance, so the running statistics serve as before."""
    if rows < 2:
        yield
        return
    saved = []
    try:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and _initialised(m):
                saved.append((m, m.running_mean, m.running_var, m.training))
                m.running_mean, m.running_var = None, None
                m.train(False)  # no running buffers in eval mode: batch statistics
        yield
    finally:
        for m, mean, var, training in saved:
            m.running_mean, m.running_var = mean, var
            m.train(training)
