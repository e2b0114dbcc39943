"""Worker start-up of fit_parallel: the default start method, threads and the lazy first
calls made before the training loop (no timing: what the workers saw is recorded in a
buffer that comes back with the trained block)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from nondiff.hybrid import Decoupled, Group, fit_parallel
from nondiff.hybrid.startup import default_start_method, optimizers_of
from nondiff.problems.learning import Dataset, mnist1d
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

METHODS = ("fork", "forkserver", "spawn")


class Probe(nn.Module):
    """A linear layer that records, in buffers that travel back to the parent, the torch
    thread count and start method of the process it runs in, and whether
    ``torch._dynamo`` (imported by an optimizer's first call) was loaded before its
    first forward pass there."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.pid = nn.Linear(40, 32), 0
        self.register_buffer("threads", torch.zeros((), dtype=torch.int64))
        self.register_buffer("method", torch.full((), -1, dtype=torch.int64))
        self.register_buffer("warm_at_first_step", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pid != os.getpid():  # the first forward pass in this process
            self.pid = os.getpid()
            self.warm_at_first_step.fill_(int("torch._dynamo" in sys.modules))
        self.threads.fill_(torch.get_num_threads())
        self.method.fill_(METHODS.index(multiprocessing.get_start_method()))
        return self.linear(x).relu()


@pytest.fixture(scope="module")
def data() -> Dataset:
    return mnist1d(n=200, seed=0)


def test_the_default_start_method_is_a_safe_one() -> None:
    assert default_start_method() == ("forkserver" if "forkserver" in
                                      multiprocessing.get_all_start_methods() else "spawn")


def test_workers_start_by_the_default_method_with_the_asked_threads(data: Dataset) -> None:
    torch.manual_seed(0)
    model = Decoupled([Probe(), nn.Linear(32, 10)], signal="local", seed=0)
    fit_parallel(model, data, epochs=1, batch_size=50, threads=2)
    probe = model.blocks[0]
    assert METHODS[int(probe.method)] == default_start_method()
    assert int(probe.threads) == 2
    assert int(probe.warm_at_first_step) == 1


def test_a_spawned_worker_is_warm_before_its_first_step(data: Dataset) -> None:
    torch.manual_seed(0)
    model = Decoupled([Group([Probe()]), nn.Linear(32, 10)], signal="synthetic", seed=0)
    fit_parallel(model, data, epochs=1, batch_size=50, start_method="spawn")
    probe = model.blocks[0][0]
    assert METHODS[int(probe.method)] == "spawn" and int(probe.threads) == 1
    assert int(probe.warm_at_first_step) == 1


def test_optimizers_of_finds_nested_stacks_synthesizers_and_heads() -> None:
    torch.manual_seed(0)
    inner = Decoupled([nn.Linear(8, 8), nn.Linear(8, 8)], signal="local", seed=0)
    model = Decoupled([inner, nn.Linear(8, 3)], signal="synthetic", seed=0)
    model.build(torch.randn(2, 8))
    found = optimizers_of(model.stages[0])
    # inner: 2 block optimizers + 1 local head; outer: the synthesizer's (a nested
    # stack's own optimizers are its stages')
    assert len(found) == 4 and len({id(o) for o in found}) == 4
    assert model.stages[0].synth_optimizer in found


def test_prepare_worker_imports_lazily_loaded_modules_and_changes_nothing(tmp_path) -> None:
    # a stage unpickled in a fresh interpreter, as in a spawned worker: its optimizer's
    # first call would still import torch._dynamo; prepare_worker makes it, and nothing
    # of the stage (weights, gradients) nor the random stream moves
    torch.manual_seed(0)
    model = Decoupled([nn.Linear(4, 8), nn.Linear(8, 3)], signal="local", seed=0)
    model.build(torch.randn(2, 4))
    torch.save(model.stages[0], tmp_path / "stage.pt")
    script = textwrap.dedent(f"""
        import os, sys
        import torch
        stage = torch.load({str(tmp_path / "stage.pt")!r}, weights_only=False)
        before = {{k: v.clone() for k, v in stage.block.state_dict().items()}}
        rng = torch.get_rng_state()
        assert "torch._dynamo" not in sys.modules, "imported too early for this test"
        from nondiff.hybrid.startup import prepare_worker
        prepare_worker(stage, 1)
        assert "torch._dynamo" in sys.modules
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        assert all(torch.equal(v, stage.block.state_dict()[k]) for k, v in before.items())
        assert all(p.grad is None for p in stage.block.parameters())
        assert torch.equal(rng, torch.get_rng_state())
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
