"""Decoupled stacks across devices and hosts (issue 18, items 2-4): one device per stage,
torchrun on two "nodes" of this host, nested stacks as stages; each reproduces the
single-process run bit for bit.

The CUDA tests need one or two GPUs; where there are none they are skipped with a
"not available" reason, and the run's header and summary say so (conftest).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import GPUS, kill_session, plain_equal
from nondiff.hybrid import Decoupled, Group, fit_parallel
from nondiff.hybrid.devices import to_device
from nondiff.hybrid.parallel import free_port
from nondiff.hybrid.placement import stage_devices
from nondiff.problems.learning import Dataset, mnist1d

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# One source for the model, run here and inside the torchrun processes: a plain first
# stage, then a stage that is itself a decoupled stack (DNI inside), under cDNI.
MODEL = textwrap.dedent("""
    import torch
    from torch import nn
    from nondiff.hybrid import Decoupled, Group

    def nested_model(signal="synthetic-conditioned"):
        torch.manual_seed(0)
        inner = Decoupled([Group([nn.Linear(32, 32), nn.ReLU()]), nn.Linear(32, 10)],
                          signal="synthetic", seed=1)
        return Decoupled([Group([nn.Linear(40, 32), nn.ReLU()]), inner], signal=signal,
                         staleness=1, seed=0)
""")
namespace: dict = {}
exec(MODEL, namespace)  # our own source, shared with the torchrun script
nested_model = namespace["nested_model"]


# fork copies this warmed-up process (fast), but fails after autograd on CUDA builds
START = "fork" if torch.version.cuda is None else "forkserver"


@pytest.fixture(scope="module")
def data() -> Dataset:
    return mnist1d(n=300, seed=0)


def three_stages() -> Decoupled:
    """A plain stage, a nested stack of two local-loss blocks, a plain top."""
    torch.manual_seed(0)
    inner = Decoupled([Group([torch.nn.Linear(32, 32), torch.nn.ReLU()]),
                       Group([torch.nn.Linear(32, 32), torch.nn.ReLU()])],
                      signal="local", num_classes=10, seed=1)
    return Decoupled([Group([torch.nn.Linear(40, 32), torch.nn.ReLU()]), inner,
                      torch.nn.Linear(32, 10)], signal="synthetic", staleness=1, seed=0)


@pytest.mark.parametrize("devices", [["cpu", "cpu", None], "auto"],
                         ids=["cpu-per-stage", "auto"])
def test_nested_stack_stages_on_their_devices_equal_one_process(devices, data) -> None:
    where = [str(d) for d in stage_devices(devices, [None] * 3)]  # "auto": CPUs here
    single = _on(three_stages(), where)  # the same stack across devices, one process
    expected = single.fit(data, epochs=2, batch_size=50)
    parallel, stats = three_stages(), {}
    losses = fit_parallel(parallel, data, epochs=2, batch_size=50, start_method=START,
                          devices=devices, stats=stats)
    assert losses == expected
    assert _equal_on_cpu(parallel, single)
    assert plain_equal(to_device(parallel.checkpoint()["stages"], "cpu"),
                       to_device(single.checkpoint()["stages"], "cpu"))
    assert stats["devices"] == where
    assert stats["backend"] == ("nccl" if GPUS >= 3 and devices == "auto" else "gloo")
    assert parallel.blocks[1].step_count == single.blocks[1].step_count > 0


def test_bad_devices_are_named_before_any_process_starts(data) -> None:
    model = three_stages()
    with pytest.raises(ValueError, match=r"devices has 2 entries for 3 stages"):
        fit_parallel(model, data, 1, 50, devices=["cpu", "cpu"])
    with pytest.raises(ValueError, match=r"devices\[1\]='tpu' is not a device"):
        fit_parallel(model, data, 1, 50, devices=["cpu", "tpu", "cpu"])
    with pytest.raises(ValueError, match=r"stages run on \['cpu', 'cuda'\] devices, not 'meta'"):
        fit_parallel(model, data, 1, 50, devices="meta")
    with pytest.raises(ValueError, match=fr"devices\[2\]='cuda:{GPUS}', but {GPUS} GPU"):
        fit_parallel(model, data, 1, 50, devices=["cpu", "cpu", f"cuda:{GPUS}"])
    with pytest.raises(ValueError, match="unknown launcher"):
        fit_parallel(model, data, 1, 50, launcher="slurm")
    assert model.step_count == 0


def test_torchrun_settings_are_checked_before_joining(data, monkeypatch) -> None:
    model = nested_model()
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="launcher='torchrun' but"):
        fit_parallel(model, data, 1, 50, launcher="torchrun")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match=r"not \['MASTER_ADDR', 'MASTER_PORT'\]"):
        fit_parallel(model, data, 1, 50)  # "auto" sees RANK and WORLD_SIZE
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    with pytest.raises(ValueError, match=r"WORLD_SIZE=3 processes for 2 stages"):
        fit_parallel(model, data, 1, 50)
    assert not torch.distributed.is_initialized() and model.step_count == 0


@pytest.mark.parametrize("environ, gpus, expected", [
    # torchrun --nproc-per-node 2 on a host whose 2 GPUs both processes see
    ({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, 2, "cuda:1"),
    # the same, but CUDA_VISIBLE_DEVICES set per process: each sees its own as cuda:0
    ({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, 1, "cuda:0"),
    # one process per host (--nproc-per-node 1), one GPU
    ({"LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}, 1, "cuda:0"),
    # LOCAL_WORLD_SIZE not set by the launcher: LOCAL_RANK alone picks the GPU
    ({"LOCAL_RANK": "3"}, 8, "cuda:3"),
    # no GPU, or fewer GPUs than processes (more than one): the CPU
    ({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, 0, "cpu"),
    ({"LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4"}, 2, "cpu"),
], ids=["gpu-per-process", "one-visible-each", "one-per-host", "no-local-world", "no-gpu",
        "too-few"])
def test_auto_under_torchrun_picks_this_process_gpu(environ, gpus, expected) -> None:
    """``devices="auto"`` under torchrun: ``cuda:LOCAL_RANK``, or ``cuda:0`` when the
    process sees one GPU (it fell back to the CPU when CUDA_VISIBLE_DEVICES gave each
    process its own); inputs explicit, as no GPU is needed to choose."""
    from nondiff.hybrid.groups import torchrun_env
    from nondiff.hybrid.placement import rank_device

    env = torchrun_env({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500", **environ})
    assert str(rank_device("auto", [None, None], env.rank, env.local_rank, env.local_world,
                           gpus=gpus)) == expected


@pytest.mark.parametrize("placements, expected", [
    # each process sees its own GPU as cuda:0 (CUDA_VISIBLE_DEVICES per process)
    ([("h", "cuda:0", "GPU-aaaa"), ("h", "cuda:0", "GPU-bbbb")], "nccl"),
    # two processes that see all GPUs, on different indices
    ([("h", "cuda:0", "GPU-aaaa"), ("h", "cuda:1", "GPU-bbbb")], "nccl"),
    # one GPU shared (NCCL refuses two ranks on one GPU): through host memory
    ([("h", "cuda:0", "GPU-aaaa"), ("h", "cuda:0", "GPU-aaaa")], "gloo"),
    ([("h", "cpu", ""), ("h", "cuda:0", "GPU-aaaa")], "gloo"),
    # two hosts, each with cuda:0 and no identity given: different GPUs
    ([("a", "cuda:0"), ("b", "cuda:0")], "nccl"),
], ids=["own-gpu-each", "indices", "shared", "cpu-and-gpu", "two-hosts"])
def test_backend_tells_gpus_apart_by_identity_not_index(placements, expected) -> None:
    from nondiff.hybrid.placement import choose_backend

    assert choose_backend(placements, nccl=True) == expected
    assert choose_backend(placements, nccl=False) == "gloo"


SCRIPT = MODEL + textwrap.dedent("""
    import os, sys
    from nondiff.hybrid import fit_parallel
    from nondiff.problems.learning import mnist1d

    torch.set_num_threads(1)
    model, data = nested_model(), mnist1d(n=300, seed=0)
    stats = {}
    losses = fit_parallel(model, data, epochs=2, batch_size=50, stats=stats)  # torchrun: auto
    torch.save({"model": model.state_dict(), "stages": model.checkpoint()["stages"],
                "losses": losses, "stats": stats, "step": model.step_count},
               os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
""")


def _two_torchrun_nodes(tmp_path: Path, source: str, node_env: tuple[dict, dict] = ({}, {}),
                        ) -> list[tuple[int, str]]:
    """Run ``source`` as a script under two torchrun "nodes" on 127.0.0.1 (one process
    each; ``node_env``: extra variables of each node); their exit codes and outputs.
    Every process they started is gone after."""
    script = tmp_path / "train.py"
    script.write_text(source)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    port = free_port()
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run",  # the torchrun command
         "--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1",
         "--master-addr", "127.0.0.1", "--master-port", str(port), str(script),
         str(tmp_path)],
        env={**env, **node_env[node]}, start_new_session=True, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
        for node in (0, 1)]
    try:
        outputs = [node.communicate(timeout=600)[0].decode(errors="replace")
                   for node in nodes]  # a failure guard, not a pace
        return [(node.returncode, output) for node, output in zip(nodes, outputs, strict=True)]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
            kill_session(node.pid)  # the agents' workers, if any is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to clean up")
def test_two_torchrun_nodes_equal_the_single_process_run(tmp_path: Path, data) -> None:
    """Two torchrun "nodes" (``--nnodes 2 --node-rank 0|1``) on 127.0.0.1, one stage
    each, the second a nested stack: every rank ends with the whole trained model, equal
    bit for bit to the single-process run."""
    nodes = _two_torchrun_nodes(tmp_path, SCRIPT)
    assert [code for code, _ in nodes] == [0, 0], "\n".join(out[-3000:] for _, out in nodes)
    single = nested_model()
    expected = single.fit(data, epochs=2, batch_size=50)
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert saved["losses"] == expected
        assert plain_equal(dict(saved["model"]), dict(single.state_dict()))
        assert plain_equal(saved["stages"], single.checkpoint()["stages"])
        assert saved["stats"]["backend"] == "gloo" and saved["step"] == single.step_count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to clean up")
def test_torchrun_processes_that_each_see_one_gpu_train_on_it_over_nccl(tmp_path, data) -> None:
    """``devices="auto"`` under torchrun, CUDA_VISIBLE_DEVICES set per process: each sees
    its own GPU as cuda:0. It ran on the CPU; now each stage runs on its GPU, and NCCL
    carries the messages (the GPUs told apart by UUID, not by index), equal to one
    process on the two GPUs."""
    if GPUS < 2:
        pytest.skip(f"2 CUDA devices not available ({GPUS} visible)")
    script = SCRIPT.replace("stats=stats)", "stats=stats, devices='auto')")
    nodes = _two_torchrun_nodes(tmp_path, script, ({"CUDA_VISIBLE_DEVICES": "0"},
                                                   {"CUDA_VISIBLE_DEVICES": "1"}))
    assert [code for code, _ in nodes] == [0, 0], "\n".join(out[-3000:] for _, out in nodes)
    single = _on(nested_model(), ["cuda:0", "cuda:1"])
    expected = single.fit(data, epochs=2, batch_size=50)
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False, map_location="cpu")
        assert saved["stats"]["devices"] == ["cuda:0", "cuda:0"]
        assert saved["stats"]["backend"] == "nccl"
        assert saved["losses"] == expected
        assert plain_equal(dict(saved["model"]), {k: v.cpu() for k, v in
                                                  single.state_dict().items()})


FAILING = MODEL + textwrap.dedent("""
    from nondiff.hybrid import fit_parallel
    from nondiff.problems.learning import mnist1d

    class Exploding(nn.Linear):  # the nested stack's top block raises on its 3rd call
        calls = 0
        def forward(self, x):
            self.calls += 1
            if self.calls == 3:
                raise ArithmeticError("block exploded on purpose")
            return super().forward(x)

    model = nested_model()
    model.blocks[1].blocks[1] = Exploding(32, 10)
    fit_parallel(model, mnist1d(n=300, seed=0), epochs=2, batch_size=50)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to clean up")
def test_a_failing_torchrun_rank_ends_the_run_and_its_neighbour_names_it(tmp_path) -> None:
    """Under torchrun the failure is raised where it happens; the neighbour waiting on it
    raises PeerLost naming that rank, and both nodes end (no hang)."""
    (code0, out0), (code1, out1) = _two_torchrun_nodes(tmp_path, FAILING)
    assert code0 != 0 and code1 != 0
    assert "block exploded on purpose" in out1, out1[-3000:]
    assert "PeerLost" in out0 and "from worker 1 failed" in out0, out0[-3000:]


# -- GPUs: one stage per GPU over NCCL; stages sharing a GPU, or on the CPU and a GPU,
# over gloo. Each equals the single-process run of the same stack with its blocks on
# the same devices (a stack runs across devices in one process too).

def _on(model: Decoupled, devices: list[str]) -> Decoupled:
    for block, device in zip(model.blocks, devices, strict=True):
        block.to(device)
    return model


def _equal_on_cpu(a: Decoupled, b: Decoupled) -> bool:
    return plain_equal({k: v.cpu() for k, v in a.state_dict().items()},
                       {k: v.cpu() for k, v in b.state_dict().items()})


@pytest.mark.parametrize("devices, backend, gpus", [
    (["cuda:0", "cuda:1"], "nccl", 2),
    (["cuda:0", "cuda:0"], "gloo", 1),
    (["cpu", "cuda:0"], "gloo", 1),
], ids=["gpu-per-stage-nccl", "one-shared-gpu", "cpu-and-gpu"])
def test_stages_on_gpus_equal_one_process_on_the_same_gpus(devices, backend, gpus,
                                                           data) -> None:
    if GPUS < gpus:
        pytest.skip(f"{gpus} CUDA device(s) not available ({GPUS} visible)")
    single = _on(nested_model(), devices)
    expected = single.fit(data, epochs=2, batch_size=50)
    parallel, stats = nested_model(), {}  # built on the CPU, trained where devices say
    losses = fit_parallel(parallel, data, epochs=2, batch_size=50, devices=devices,
                          start_method="forkserver", stats=stats)
    assert stats["backend"] == backend and stats["devices"] == devices
    assert losses == expected
    assert _equal_on_cpu(parallel, single)
    assert all(p.device.type == "cpu" for p in parallel.parameters())  # the model stays


def test_blocks_placed_by_hand_train_where_they_are(data) -> None:
    """``devices=None``: each stage runs where its block is (``blocks[k].to(...)``), and
    the trained weights come back there."""
    if GPUS < 2:
        pytest.skip(f"2 CUDA devices not available ({GPUS} visible)")
    devices = ["cuda:0", "cuda:1"]
    single = _on(nested_model(), devices)
    expected = single.fit(data, epochs=2, batch_size=50)
    parallel, stats = _on(nested_model(), devices), {}
    losses = fit_parallel(parallel, data, epochs=2, batch_size=50, start_method="forkserver",
                          stats=stats)
    assert stats["backend"] == "nccl" and stats["devices"] == devices
    assert losses == expected and _equal_on_cpu(parallel, single)
    assert [str(next(b.parameters()).device) for b in parallel.blocks] == devices
