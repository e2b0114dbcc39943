"""The pipelining anchors of the decoupled benchmark (GPipe, 1F1B) are exact backprop: the
same updates as end-to-end backprop on the whole batch in one process."""

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


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_anchor_equals_backprop_on_the_whole_batch(schedule: str) -> None:
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
                                        microbatches=2, start_method=method, optimizer=sgd,
                                        schedule=schedule)
    assert rate > 0 and 0 <= accuracy <= 100
    for trained, expected in zip(blocks, reference, strict=True):
        for p, q in zip(trained.parameters(), expected.parameters(), strict=True):
            assert torch.allclose(p, q, atol=1e-5), (p - q).abs().max()
    with pytest.raises(ValueError, match="micro-batches"):
        pipelined_backprop(blocks, data, epochs=1, batch=40, threads=1, microbatches=3)
    with pytest.raises(ValueError, match="at least as many micro-batches as stages"):
        pipelined_backprop(blocks, data, epochs=1, batch=40, threads=1, microbatches=1,
                           schedule="1f1b")
    with pytest.raises(ValueError, match="unknown schedule"):
        pipelined_backprop(blocks, data, epochs=1, batch=40, threads=1, microbatches=2,
                           schedule="zero-bubble")
