"""The GPipe anchor of the decoupled benchmark is exact backprop: the same updates as
end-to-end backprop on the whole batch in one process."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from nondiff.benchmarks.pipeline_anchor import pipelined_backprop
from nondiff.hybrid import mlp_blocks
from nondiff.problems.learning import mnist1d
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gpipe_anchor_equals_backprop_on_the_whole_batch() -> None:
    data = mnist1d(n=200, seed=0)  # 160 training examples: 4 batches of 40
    torch.manual_seed(0)
    blocks = mlp_blocks(data.features, data.num_classes, width=32, depth=4, groups=2)
    reference = copy.deepcopy(blocks)
    sgd = functools.partial(torch.optim.SGD, lr=0.5)  # unlike Adam, sees the gradient's scale
    optimizers = [sgd(b.parameters()) for b in reference]
    model = nn.Sequential(*reference)
    for x, y in data.batches(40, seed=0, epoch=0, drop_last=True):
        nn.functional.cross_entropy(model(x), y).backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad()
    method = "fork" if torch.version.cuda is None else "forkserver"
    rate, accuracy = pipelined_backprop(blocks, data, epochs=1, batch=40, threads=1,
                                        microbatches=2, start_method=method, optimizer=sgd)
    assert rate > 0 and 0 <= accuracy <= 100
    for trained, expected in zip(blocks, reference, strict=True):
        for p, q in zip(trained.parameters(), expected.parameters(), strict=True):
            assert torch.allclose(p, q, atol=1e-5), (p - q).abs().max()
    with pytest.raises(ValueError, match="micro-batches"):
        pipelined_backprop(blocks, data, epochs=1, batch=40, threads=1, microbatches=3)
