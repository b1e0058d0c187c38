"""On real GPUs (skipped without CUDA): nccl ranks each on a device of its own, and two batches
started at once never share a GPU. CUDA is probed in a subprocess, never imported here.

Run on a GPU machine: ``python -m pytest -q tests/gpu`` (or ``bash tests/gpu/check.sh``, which
also samples nvidia-smi). The runs lease real GPUs (by UUID, from nvidia-smi) in the test's own
lease dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from typing import Any, Callable

import pytest
from conftest import Project

_PROBE = ("import json, torch; ok = torch.cuda.is_available(); "
          "print(json.dumps({'n': torch.cuda.device_count() if ok else 0}))")


@pytest.fixture(scope="module")
def gpu_count() -> int:
    """How many CUDA devices torch sees (a subprocess: the test process never imports torch)."""
    if not shutil.which("nvidia-smi") and not os.path.exists("/dev/nvidiactl"):
        pytest.skip("no NVIDIA driver here (no nvidia-smi, no /dev/nvidiactl)")  # no torch start-up to pay
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
        n = json.loads(out.stdout.strip().splitlines()[-1])["n"] if out.returncode == 0 else 0
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        n = 0
    if n < 1:
        pytest.skip("no CUDA device (torch.cuda.is_available() is False)")
    return int(n)


# Each rank: nccl all_reduce, its device, and what it saw, into rank<N>.json in the run dir.
RANKS = textwrap.dedent(
    """\
    import json, os, time
    import torch, torch.distributed as dist

    dist.init_process_group("nccl")
    rank, local = dist.get_rank(), int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    t = torch.ones(1, device="cuda") * (rank + 1)
    dist.all_reduce(t)
    props = torch.cuda.get_device_properties(local)
    rec = {"rank": rank, "world": dist.get_world_size(), "local": local, "sum": float(t.item()),
           "device": torch.cuda.current_device(), "uuid": str(getattr(props, "uuid", "")), "name": props.name,
           "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time()}
    x = torch.randn(2048, 2048, device="cuda")
    for _ in range(20):
        x = (x @ x).clamp_(-1, 1)
    torch.cuda.synchronize()
    rec["end"] = time.time()
    with open(f"rank{rank}.json", "w") as f:
        json.dump(rec, f)
    if rank == 0:
        print(f"loss: {rec['sum']}")
    dist.destroy_process_group()
    """
)

GUILDFILE = (
    "operations:\n"
    "  ddp2:\n    main: ranks.py\n    nproc-per-node: 2\n    gpus-per-trial: 2\n    flags: {i: 0}\n"
    "  one:\n    main: ranks.py\n    gpus-per-trial: 1\n    flags: {i: 0}\n"
)


@pytest.fixture
def proj(make_project: Callable[..., Project]) -> Project:
    return make_project(GUILDFILE, {"ranks.py": RANKS})


def _ranks(p: Project, run_id: str, world: int) -> list[dict[str, Any]]:
    return [json.loads((p.runs_dir / run_id / f"rank{r}.json").read_text()) for r in range(world)]


def test_two_nccl_ranks_each_on_its_own_device(proj: Project, gpu_count: int) -> None:
    if gpu_count < 2:
        pytest.skip(f"needs 2 GPUs, {gpu_count} visible")
    cp = proj.run("run", "ddp2", "-y", "--json", timeout=600)
    assert cp.returncode == 0, cp.stderr
    rec = json.loads(cp.stdout)
    assert rec["status"] == "completed" and len(rec["gpus"]) == 2, rec
    ranks = _ranks(proj, rec["id"], 2)
    assert sorted(r["rank"] for r in ranks) == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert all(r["sum"] == 3.0 for r in ranks)  # nccl all_reduce of 1 + 2
    assert sorted(r["local"] for r in ranks) == [0, 1] and len({r["uuid"] for r in ranks}) == 2, ranks
    assert all(r["cvd"] == ",".join(rec["gpus"]) for r in ranks)


def test_one_nccl_rank_runs_on_the_gpu_it_leased(proj: Project, gpu_count: int) -> None:
    cp = proj.run("run", "one", "-y", "--json", timeout=600)
    assert cp.returncode == 0, cp.stderr
    rec = json.loads(cp.stdout)
    (rank,) = _ranks(proj, rec["id"], 1)
    assert rec["status"] == "completed" and len(rec["gpus"]) == 1 and rank["cvd"] == rec["gpus"][0], (rec, rank)
    assert rank["sum"] == 1.0 and rank["device"] == 0


def test_two_concurrent_batches_get_disjoint_gpus(proj: Project, gpu_count: int) -> None:
    batches = [proj.spawn("run", "one", f"i=[{b}1,{b}2,{b}3]", "--parallel", "2", "-y", "--json") for b in (1, 2)]
    ids = []
    for p in batches:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
        ids.append(json.loads(out)["id"])
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for batch in ids:
        for t in proj.record(batch)["trials"]:
            rec = proj.record(t)
            (rank,) = _ranks(proj, t, 1)
            assert rec["status"] == "completed" and rank["cvd"] == ",".join(rec["gpus"]), (rec, rank)
            spans.setdefault(rank["uuid"] or rank["cvd"], []).append((rank["start"], rank["end"], t))
    assert sum(len(v) for v in spans.values()) == 6
    for gpu, found in spans.items():
        found.sort()
        for (_, end, a), (start, _, b) in zip(found, found[1:]):
            assert start >= end, f"GPU {gpu}: run {b} started while run {a} ran"
