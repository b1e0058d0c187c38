"""A full disk: while staging (the error names the filesystem, nothing half-staged is left) and
while the job runs (the run is recorded ``error`` "no space left on device" and the job stopped).

The runs dir lives on a small tmpfs. Every guildlite command of a test runs in a driver process
that mounts that tmpfs first: in a new user+mount namespace (``unshare -rm``: no root needed, and
the mount vanishes with the driver), else a mount namespace as root (``unshare -m``), else a plain
``mount`` (root), unmounted by the driver. The driver prints the commands' results and every
run.json as JSON: outside a namespace the tmpfs is invisible.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import GUILDLITE, TRACEBACK, Project, wait_no_marker_procs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs and namespaces on Linux")

_DRIVER = textwrap.dedent(
    """\
    import glob, json, os, subprocess, sys
    fs, size, cwd, plain = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "plain"
    cmds = json.loads(sys.argv[5])
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", fs], capture_output=True, text=True)
    if m.returncode != 0:
        print(m.stderr.strip() or f"mount exited {m.returncode}", file=sys.stderr)
        sys.exit(77)
    try:
        results = []
        for argv in cmds:
            p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
            results.append({"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr})
        runs = os.path.join(fs, "runs")
        records = {}
        for d in sorted(glob.glob(os.path.join(runs, "*", "run.json"))):
            with open(d) as f:
                records[os.path.basename(os.path.dirname(d))] = json.load(f)
        names = sorted(os.listdir(runs)) if os.path.isdir(runs) else []
        print(json.dumps({"results": results, "records": records, "names": names}))
    finally:
        if plain:
            subprocess.run(["umount", "-l", fs])
    """
)
_WAYS = (["unshare", "-rm"], ["unshare", "-m"], [])


def on_tmpfs(tmp_path: Path, size: str, cwd: Path, env: dict[str, str], *commands: list[str]) -> dict[str, Any]:
    """Run commands (argv lists; ``guildlite`` first for guildlite, ``{fs}`` standing for the tmpfs
    dir) with a ``size`` tmpfs mounted at ``tmp_path/fs``; their results and the runs dir's records."""
    fs = tmp_path / "fs"
    fs.mkdir(exist_ok=True)
    cmds = json.dumps([
        [*(GUILDLITE if argv[0] == "guildlite" else argv[:1]), *(a.replace("{fs}", str(fs)) for a in argv[1:])]
        for argv in commands
    ])
    tried = []
    for way in _WAYS:
        if way and shutil.which(way[0]) is None:
            tried.append(f"{' '.join(way)}: not installed")
            continue
        argv = [*way, sys.executable, "-c", _DRIVER, str(fs), size, str(cwd), "ns" if way else "plain", cmds]
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
        if p.returncode == 0:
            return json.loads(p.stdout)
        tried.append(f"{' '.join(way) or 'mount'}: exit {p.returncode}: {p.stderr.strip()[-300:]}")
    pytest.skip("cannot mount a tmpfs: " + "; ".join(tried))


# Writes a large file into its cwd (the run dir) until the disk is full, then keeps printing.
FILL = textwrap.dedent(
    """\
    import os, sys, time
    if os.environ.get("STEAL_RESERVE"):  # what guildlite holds to record the end: gone too
        os.unlink(os.path.join(".guildlite", "reserve"))
    with open("filler", "wb") as f:
        try:
            while True:
                f.write(b"x" * 65536)
                f.flush()
        except OSError as e:
            if os.environ.get("QUIET"):  # no output: guildlite's log never sees the full disk
                sys.exit(0)
            print("disk full:", e.strerror, file=sys.stderr, flush=True)
    for i in range(6000):  # ~60 s: guildlite must not wait for it
        print(f"step: {i}", "loss: 0.5", "." * 200, flush=True)
        time.sleep(0.01)
    """
)


def _fill_project(make_project: Callable[..., Project], launcher: str = "python") -> Project:
    return make_project(
        guildfile=f"operations:\n  fill:\n    main: fill.py\n    launcher: {launcher}\n",
        files={"fill.py": FILL},
    )


@pytest.mark.parametrize("launcher", ["python", "torchrun"])
def test_disk_fills_while_the_job_runs(make_project: Callable[..., Project], tmp_path: Path, launcher: str) -> None:
    proj = _fill_project(make_project, launcher)
    out = on_tmpfs(tmp_path, "2m", proj.root, proj.env,
                   ["guildlite", "run", "fill", "-y", "--runs-dir", "{fs}/runs"],
                   ["guildlite", "runs", "--json", "--runs-dir", "{fs}/runs"])
    run, listing = out["results"]
    assert TRACEBACK not in run["stderr"], run["stderr"][-3000:]
    assert run["rc"] != 0, run["stderr"][-2000:]
    assert "no space left on device" in run["stderr"], run["stderr"][-2000:]
    (rec,) = out["records"].values()
    assert rec["status"] == "error", rec
    msg = rec["error"]["message"]
    assert "no space left on device" in msg and "output.log" in msg and str(tmp_path / "fs") in msg, msg
    assert [r["status"] for r in json.loads(listing["stdout"])] == ["error"]
    assert not [n for n in out["names"] if n.startswith(".staging-")]
    wait_no_marker_procs(proj.marker, timeout=10)  # the job was stopped, not left printing


def test_the_end_is_recorded_although_the_job_took_all_space(make_project: Callable[..., Project],
                                                             tmp_path: Path) -> None:
    """The job fills the disk and exits quietly: its end still fits (guildlite held space for it)."""
    proj = _fill_project(make_project)
    env = {**proj.env, "QUIET": "1"}
    out = on_tmpfs(tmp_path, "2m", proj.root, env, ["guildlite", "run", "fill", "-y", "--runs-dir", "{fs}/runs"])
    (run,) = out["results"]
    assert run["rc"] == 0, run["stderr"][-2000:]
    (rec,) = out["records"].values()
    assert rec["status"] == "completed" and rec["exit_code"] == 0, rec


def test_an_end_that_cannot_be_written_is_said_and_fails(make_project: Callable[..., Project],
                                                         tmp_path: Path) -> None:
    """Even the space held for the end is gone: stderr says so and the exit code is not 0."""
    proj = _fill_project(make_project)
    env = {**proj.env, "QUIET": "1", "STEAL_RESERVE": "1"}
    out = on_tmpfs(tmp_path, "2m", proj.root, env, ["guildlite", "run", "fill", "-y", "--runs-dir", "{fs}/runs"])
    (run,) = out["results"]
    assert TRACEBACK not in run["stderr"], run["stderr"][-3000:]
    assert run["rc"] == 1, run["stderr"][-2000:]
    (rec,) = out["records"].values()
    assert f"cannot record the end of run {rec['id']}" in run["stderr"]
    assert "could not be recorded: no space left on device" in run["stderr"]


def test_disk_full_while_staging_names_the_disk(make_project: Callable[..., Project], tmp_path: Path) -> None:
    proj = make_project(files={"hello.py": "import sys\nprint('hi', sys.argv[1:])\n", "data.bin": "0123456789abcdef" * 8000})  # 128 KB
    out = on_tmpfs(tmp_path, "64k", proj.root, proj.env,
                   ["guildlite", "run", "quick", "-y", "--runs-dir", "{fs}/runs"],
                   ["guildlite", "run", "quick", "epochs=[1,2]", "-y", "--runs-dir", "{fs}/runs"])
    for res in out["results"]:
        assert res["rc"] == 1, res
        assert TRACEBACK not in res["stderr"], res["stderr"][-3000:]
        line = res["stderr"].strip().splitlines()[-1]
        assert line.startswith("guildlite: error: no space left on device: cannot stage a run in "), line
        assert f"{tmp_path / 'fs'}/runs" in line and f"mounted at {tmp_path / 'fs'}" in line, line
        assert "data.bin" not in res["stderr"], res["stderr"]
    assert not [n for n in out["names"] if n.startswith(".staging-")], out["names"]
    # The batch's own dir fits; its first trial does not: the batch is recorded, and says why.
    (batch,) = out["records"].values()
    assert batch["is_batch"] and batch["status"] == "error", batch
    assert "no space left on device" in batch["error"]["message"]


def test_staging_on_a_disk_already_full(make_project: Callable[..., Project], tmp_path: Path) -> None:
    """Not even a run.json fits: a single run and a batch fail naming the disk, leaving nothing."""
    proj = make_project()
    out = on_tmpfs(tmp_path, "256k", proj.root, proj.env,
                   ["mkdir", "{fs}/runs"],
                   ["sh", "-c", "head -c 1M /dev/zero > {fs}/blob; true"],
                   ["guildlite", "run", "quick", "-y", "--runs-dir", "{fs}/runs"],
                   ["guildlite", "run", "quick", "epochs=[1,2]", "-y", "--runs-dir", "{fs}/runs"],
                   ["guildlite", "runs", "--runs-dir", "{fs}/runs"])
    for res in out["results"][2:4]:
        assert res["rc"] == 1, res
        assert TRACEBACK not in res["stderr"], res["stderr"][-3000:]
        line = res["stderr"].strip().splitlines()[-1]
        assert line.startswith("guildlite: error: no space left on device: cannot stage a run in "), line
    assert out["names"] == [] and out["records"] == {}
    assert out["results"][4]["rc"] == 0
