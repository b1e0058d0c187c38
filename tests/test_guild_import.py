"""``guildlite runs import --from-guild``: Guild AI run dirs (hand-made the way Guild 0.9 writes them,
hostile ones, and runs made by a real Guild AI installed from PyPI) imported as guildlite runs.

Guild's layout, as its documentation and ``guild/run.py`` describe it: ``GUILD_HOME/runs/<id>/``
with ``.guild/attrs/<name>`` (one YAML document each; times in integer microseconds since the
epoch), ``.guild/opref``, ``.guild/output``, ``.guild/manifest`` (source files, copied to the run
dir's top), marker files ``LOCK`` (the pid), ``LOCK.remote``, ``PENDING``, ``STAGED``, and the
output scalars as a TensorBoard event file under ``.guild/``.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from _protobuf import field, varint
from conftest import (
    TRACEBACK,
    clean_env,
    load_record,
    load_records,
    property_settings,
    read_scalars,
    run_dirs,
    run_guildlite,
    spawn_guildlite,
)
from hypothesis import given
from hypothesis import strategies as st

from guildlite._tfevents import read_all

STARTED_US = 1_796_115_641_938_250  # 2026-12-01T09:00:41.938Z
STOPPED_US = 1_796_115_643_637_890


# --- writing Guild runs by hand ------------------------------------------------------------------------


def _crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    c = _crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def event(step: int, wall: float, /, **scalars: float) -> bytes:
    """One ``Event`` protobuf holding ``simple_value`` scalars, as TensorBoard writers encode it."""
    values = b"".join(field(1, 2, field(1, 2, k.encode()) + field(2, 5, struct.pack("<f", v)))
                      for k, v in scalars.items())
    return field(1, 1, struct.pack("<d", wall)) + field(2, 0, varint(step)) + field(5, 2, values)


def tensor_event(step: int, key: str, value: float) -> bytes:
    """A TF2 ``tf.summary.scalar`` event: the value in a DT_FLOAT scalar tensor."""
    tensor = field(1, 0, varint(1)) + field(4, 2, struct.pack("<f", value))
    return field(2, 0, varint(step)) + field(5, 2, field(1, 2, field(1, 2, key.encode()) + field(8, 2, tensor)))


def tfrecords(*records: bytes) -> bytes:
    out = b""
    for data in records:
        length = struct.pack("<Q", len(data))
        out += length + struct.pack("<I", _masked(length)) + data + struct.pack("<I", _masked(data))
    return out


def guild_run(
    home: Path,
    attrs: dict[str, Any] | None = None,
    *,
    run_id: str | None = None,
    opref: str = "guildfile:'/home/u/proj/guild.yml' 'f00d' '' train",
    output: str = "step: 1\nloss: 0.5\n",
    source: dict[str, str] | None = None,
    files: dict[str, bytes] | None = None,
    events: bytes | None = None,
    raw_attrs: dict[str, str] | None = None,
) -> Path:
    """A finished Guild run dir as Guild 0.9 writes it; ``attrs`` are YAML-dumped one per file
    (Guild's encoding), ``raw_attrs`` written as given."""
    run_id = run_id or uuid.uuid4().hex
    d = home / "runs" / run_id
    (d / ".guild" / "attrs").mkdir(parents=True)
    base = {"id": run_id, "flags": {"lr": 0.01, "epochs": 3, "name": "resnet", "fast": True},
            "initialized": STARTED_US - 1000, "started": STARTED_US, "stopped": STOPPED_US, "exit_status": 0,
            "label": "lr=0.01 epochs=3", "tags": ["baseline"], "host": socket.gethostname(), "user": "u",
            "cmd": ["/usr/bin/python", "-um", "guild.op_main", "train", "--lr", "0.01"]}
    for name, value in {**base, **(attrs or {})}.items():
        if value is not None:
            (d / ".guild" / "attrs" / name).write_text(yaml.safe_dump(value, default_flow_style=False))
    for name, text in (raw_attrs or {}).items():
        (d / ".guild" / "attrs" / name).write_text(text)
    (d / ".guild" / "opref").write_text(opref)
    (d / ".guild" / "output").write_text(output)
    source = {"train.py": "print('hi')\n"} if source is None else source
    manifest = []
    for rel, text in source.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
        manifest.append(f"s {rel} 0123abcd {rel}")
    (d / ".guild" / "manifest").write_text("\n".join(manifest) + "\n")
    for rel, data in (files or {}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    if events is not None:
        (d / ".guild" / "events.out.tfevents.1796115643.host.1.0").write_bytes(events)
    return d


def import_guild(home: Path, runs: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cp = run_guildlite("runs", "import", "--from-guild", str(home), "--runs-dir", str(runs), *args,
                       cwd=home.parent, timeout=timeout)
    assert TRACEBACK not in cp.stderr, cp.stderr
    return cp


def only(runs: Path) -> dict[str, Any]:
    recs = load_records(runs)
    assert len(recs) == 1, recs
    return recs[0]


def tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` (files with their bytes), to show nothing changed there."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            out[rel] = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
    return out


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "guild-home"
    (h / "runs").mkdir(parents=True)
    return h


# --- what is imported -----------------------------------------------------------------------------------


def test_a_finished_guild_run_becomes_a_guildlite_run(home: Path, tmp_path: Path) -> None:
    g = guild_run(home, events=tfrecords(event(1, 1796115642.5, loss=0.5, acc=0.9), event(2, 1796115643.0, loss=0.25)),
                  files={"checkpoints/model.pt": b"\x00weights"})
    runs = tmp_path / "runs"
    cp = import_guild(home, runs)
    assert cp.returncode == 0, cp.stderr
    assert f"[1/1] imported {g.name}" in cp.stderr
    rec = only(runs)
    assert rec["op"] == "train" and rec["opspec"] == "train"
    assert rec["flags"] == {"lr": 0.01, "epochs": 3, "name": "resnet", "fast": True}
    assert (rec["status"], rec["exit_code"]) == ("completed", 0)
    assert rec["started"] == "2026-12-01T09:00:41.938+00:00" and rec["stopped"] == "2026-12-01T09:00:43.637+00:00"
    assert rec["label"] == "lr=0.01 epochs=3" and rec["tags"] == ["baseline"]
    assert rec["cmd"][-2:] == ["--lr", "0.01"]
    assert rec["attrs"]["guild"]["id"] == g.name
    d = run_dirs(runs)[0]
    assert d.name.startswith("20261201T090041-")  # sorts where the run ran, not when it was imported
    assert (d / "output.log").read_text() == "step: 1\nloss: 0.5\n"
    assert (d / "train.py").read_text() == "print('hi')\n"
    assert (d / "checkpoints" / "model.pt").read_bytes() == b"\x00weights"
    manifest = json.loads((d / ".guildlite" / "sourcecode.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["train.py"]
    assert [(r["step"], r["key"], r["value"]) for r in read_scalars(d)] == [
        (1, "loss", 0.5), (1, "acc", 0.9), (2, "loss", 0.25)]
    # The rest of guildlite reads it as one of its own.
    listed = json.loads(run_guildlite("runs", "--json", "--runs-dir", str(runs), cwd=tmp_path).stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(d.name, "completed")]
    cmp = run_guildlite("compare", "--runs-dir", str(runs), cwd=tmp_path)
    assert cmp.returncode == 0 and "0.25" in cmp.stdout, cmp.stdout


def test_tf2_tensor_scalars_and_sub_dir_event_files(home: Path, tmp_path: Path) -> None:
    guild_run(home, files={"logs/train/events.out.tfevents.1.h": tfrecords(tensor_event(3, "loss", 0.125))},
              events=tfrecords(tensor_event(1, "acc", 0.5)))
    import_guild(home, tmp_path / "runs")
    rows = {(r["key"], r["step"], r["value"]) for r in read_scalars(run_dirs(tmp_path / "runs")[0])}
    assert rows == {("acc", 1, 0.5), ("logs/train/loss", 3, 0.125)}


@pytest.mark.parametrize(("exit_status", "status"), [(0, "completed"), (1, "error"), (2, "error"),
                                                     (-15, "terminated"), (-2, "terminated")])
def test_exit_status_maps_to_status(home: Path, tmp_path: Path, exit_status: int, status: str) -> None:
    guild_run(home, {"exit_status": exit_status})
    import_guild(home, tmp_path / "runs")
    rec = only(tmp_path / "runs")
    assert (rec["status"], rec["exit_code"], rec["error"]) == (status, exit_status, None)


def test_no_exit_status_is_imported_as_error_and_says_why(home: Path, tmp_path: Path) -> None:
    guild_run(home, {"exit_status": None, "stopped": None})
    (home / "runs").joinpath(os.listdir(home / "runs")[0], ".guild", "LOCK").write_text("999999999")  # no such pid
    cp = import_guild(home, tmp_path / "runs", "--json")
    rec = only(tmp_path / "runs")
    assert rec["status"] == "error" and rec["exit_code"] is None
    assert "no exit status" in rec["error"]["message"]
    [summary] = json.loads(cp.stdout)
    assert summary["action"] == "imported" and "no exit status" in summary["reason"]


def test_runs_not_over_are_skipped_with_the_reason(home: Path, tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        now_us = int(time.time() * 1e6)
        running = guild_run(home, {"exit_status": None, "stopped": None, "started": now_us, "initialized": now_us})
        (running / ".guild" / "LOCK").write_text(str(sleeper.pid))
        # The same live pid in a run that started an hour before it: a reused pid, not the run's.
        reused = guild_run(home, {"exit_status": None, "stopped": None, "started": now_us - 3600 * 10**6})
        (reused / ".guild" / "LOCK").write_text(str(sleeper.pid))
        elsewhere = guild_run(home, {"exit_status": None, "stopped": None, "host": "gpu-node-7"})
        (elsewhere / ".guild" / "LOCK").write_text("4242")
        for marker in ("PENDING", "STAGED", "LOCK.remote"):
            d = guild_run(home, {"exit_status": None, "started": None, "stopped": None})
            (d / ".guild" / marker).write_text("")
        cp = import_guild(home, tmp_path / "runs", "--json")
        assert cp.returncode == 0, cp.stderr
        out = json.loads(cp.stdout)
        reasons = {o["guild_id"]: o["reason"] for o in out if o["action"] == "skipped"}
        assert f"still running (pid {sleeper.pid})" in reasons[running.name]
        assert [o["guild_id"] for o in out if o["action"] == "imported"] == [reused.name]
        assert "no exit status" in only(tmp_path / "runs")["error"]["message"]
        assert "gpu-node-7" in reasons[elsewhere.name]
        assert sorted(r.split(":")[0].split(" (")[0] for r in reasons.values() if "Guild" in r) == [
            "pending in Guild", "running on a Guild remote", "staged in Guild"]
    finally:
        sleeper.kill()
        sleeper.wait()
    # Once it is over, importing again brings it in (and only it).
    cp = import_guild(home, tmp_path / "runs", "--json")
    assert [o["guild_id"] for o in json.loads(cp.stdout) if o["action"] == "imported"] == [running.name]


def test_importing_again_imports_only_what_is_new(home: Path, tmp_path: Path) -> None:
    first = guild_run(home)
    runs = tmp_path / "runs"
    import_guild(home, runs)
    second = guild_run(home, {"label": "later"})
    cp = import_guild(home, runs, "--json")
    out = {o["guild_id"]: o for o in json.loads(cp.stdout)}
    assert out[first.name]["action"] == "skipped" and "already imported" in out[first.name]["reason"]
    assert out[second.name]["action"] == "imported"
    assert sorted(r["attrs"]["guild"]["id"] for r in load_records(runs)) == sorted([first.name, second.name])
    assert "1 imported, 1 skipped" in cp.stderr


def test_two_imports_at_once_import_each_run_once(home: Path, tmp_path: Path) -> None:
    ids = {guild_run(home, {"flags": {"i": i}}).name for i in range(8)}
    runs = tmp_path / "runs"
    args = ["runs", "import", "--from-guild", str(home), "--runs-dir", str(runs)]
    procs = [spawn_guildlite(*args, cwd=tmp_path) for _ in range(2)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert sorted(r["attrs"]["guild"]["id"] for r in load_records(runs)) == sorted(ids)


def test_a_runs_dir_inside_a_guild_run_is_refused(home: Path, tmp_path: Path) -> None:
    g = guild_run(home)
    cp = import_guild(home, g / "runs")
    assert cp.returncode == 2 and "inside a Guild run dir" in cp.stderr
    assert not (g / "runs").exists()


def test_dry_run_writes_nothing(home: Path, tmp_path: Path) -> None:
    g = guild_run(home)
    cp = import_guild(home, tmp_path / "runs", "--dry-run", "--json")
    assert cp.returncode == 0, cp.stderr
    assert [(o["guild_id"], o["action"], o["status"]) for o in json.loads(cp.stdout)] == [
        (g.name, "would-import", "completed")]
    assert not (tmp_path / "runs").exists()


def test_guild_home_from_the_environment_and_a_missing_one(home: Path, tmp_path: Path) -> None:
    guild_run(home)
    runs = tmp_path / "runs"
    cp = run_guildlite("runs", "import", "--from-guild", "--runs-dir", str(runs), cwd=tmp_path,
                       env=clean_env(GUILD_HOME=str(home)))
    assert cp.returncode == 0, cp.stderr
    assert len(load_records(runs)) == 1
    cp = import_guild(tmp_path / "nowhere", runs)
    assert cp.returncode == 2 and "no Guild runs here" in cp.stderr
    cp = run_guildlite("runs", "import", str(home), "--runs-dir", str(runs), cwd=tmp_path)
    assert cp.returncode == 2 and "--from-guild" in cp.stderr


def test_older_layouts_sourcecode_dir_and_attrs_blob(home: Path, tmp_path: Path) -> None:
    d = guild_run(home, {"flags": None, "label": None}, source={})
    (d / ".guild" / "sourcecode" / "pkg").mkdir(parents=True)
    (d / ".guild" / "sourcecode" / "pkg" / "model.py").write_text("X = 1\n")
    (d / ".guild" / "attrs.json").write_text(json.dumps({"flags": "x: 2\n", "label": "from the blob\n"}))
    import_guild(home, tmp_path / "runs")
    rec = only(tmp_path / "runs")
    assert rec["flags"] == {"x": 2} and rec["label"] == "from the blob"
    r = run_dirs(tmp_path / "runs")[0]
    assert (r / "pkg" / "model.py").read_text() == "X = 1\n"


def test_a_source_file_and_a_job_folder_of_one_name(home: Path, tmp_path: Path) -> None:
    d = guild_run(home, source={})
    (d / ".guild" / "sourcecode").mkdir()
    (d / ".guild" / "sourcecode" / "out").write_text("source")
    (d / "out").mkdir()
    (d / "out" / "model.pt").write_bytes(b"w")
    (d / "kept.txt").write_text("kept")
    cp = import_guild(home, tmp_path / "runs")
    assert cp.returncode == 0, cp.stderr
    r = run_dirs(tmp_path / "runs")[0]
    assert (r / "out").read_text() == "source" and (r / "kept.txt").read_text() == "kept"
    skipped = json.loads((r / ".guildlite" / "sourcecode.json").read_text())["skipped"]
    assert [s["path"] for s in skipped] == ["out/model.pt"]


def test_many_runs_show_progress(home: Path, tmp_path: Path) -> None:
    for i in range(25):
        guild_run(home, {"flags": {"i": i}})
    cp = import_guild(home, tmp_path / "runs")
    assert cp.returncode == 0, cp.stderr
    assert "[25/25] imported" in cp.stderr and "25 imported" in cp.stderr
    assert sorted(r["flags"]["i"] for r in load_records(tmp_path / "runs")) == list(range(25))


# --- untrusted input ------------------------------------------------------------------------------------


def test_links_leading_out_are_never_followed(home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("TOP-SECRET")
    (secret / "flags").write_text("stolen: TOP-SECRET\n")
    d = guild_run(home, {"flags": None})
    os.symlink(secret / "key", d / "data.txt")
    os.symlink(secret, d / "datadir")
    os.symlink(secret / "flags", d / ".guild" / "attrs" / "flags")
    (d / ".guild" / "output").unlink()
    os.symlink(secret / "key", d / ".guild" / "output")
    os.symlink(secret, home / "runs" / ("f" * 32))  # a run dir that is a link
    runs = tmp_path / "runs"
    cp = import_guild(home, runs, "--json")
    assert cp.returncode == 0, cp.stderr
    out = {o["guild_id"]: o for o in json.loads(cp.stdout)}
    assert out["f" * 32]["action"] == "skipped" and "symbolic link" in out["f" * 32]["reason"]
    rec = only(runs)
    assert rec["flags"] == {}
    assert any("flags" in n for n in rec["attrs"]["guild"]["notes"])
    for p in runs.rglob("*"):
        assert not p.is_symlink(), p
        if p.is_file():
            assert b"TOP-SECRET" not in p.read_bytes(), p
    skipped = json.loads((run_dirs(runs)[0] / ".guildlite" / "sourcecode.json").read_text())["skipped"]
    assert {s["path"] for s in skipped} >= {"data.txt", "datadir", ".guild/output"}


def test_fifos_and_devices_do_not_hang(home: Path, tmp_path: Path) -> None:
    d = guild_run(home, {"label": None})
    os.mkfifo(d / "pipe")
    os.mkfifo(d / ".guild" / "attrs" / "label")
    os.mkfifo(d / ".guild" / "events.out.tfevents.0.fifo")
    os.symlink("/dev/zero", d / ".guild" / "events.out.tfevents.1.zero")
    (d / ".guild" / "output").unlink()
    os.mkfifo(d / ".guild" / "output")
    cp = import_guild(home, tmp_path / "runs", timeout=30)
    assert cp.returncode == 0, cp.stderr
    rec = only(tmp_path / "runs")
    assert rec["status"] == "completed" and rec["label"] == ""
    assert not (run_dirs(tmp_path / "runs")[0] / "pipe").exists()


def test_huge_and_hostile_yaml(home: Path, tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi"))
    pwned = tmp_path / "pwned"
    guild_run(home, raw_attrs={
        "flags": bomb,
        "label": f"!!python/object/apply:os.system ['touch {pwned}']\n",
        "tags": "[unclosed\n",
        "cmd": "x" * (2 << 20),  # over the attr size limit
        "started": "99999999999999999999999\n",  # far past year 9000
        "exit_status": "1e400\n",
    })
    cp = import_guild(home, tmp_path / "runs", timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert not pwned.exists()
    rec = only(tmp_path / "runs")
    assert rec["flags"] == {} and rec["tags"] == [] and rec["cmd"] == [] and rec["started"] is None
    assert rec["status"] == "error" and "not an integer" in rec["error"]["message"]
    notes = " ".join(rec["attrs"]["guild"]["notes"])
    for name in ("flags", "label", "tags", "cmd"):
        assert f"attr {name}" in notes, notes
    assert (run_dirs(tmp_path / "runs")[0] / "run.json").stat().st_size < 100_000


def test_control_characters_and_hostile_names(home: Path, tmp_path: Path) -> None:
    guild_run(home, {"label": "ok\x1b]0;owned\x07\x1b[31mred\r\nline", "tags": ["t\x1b[2J", 7, "fine"],
                     "flags": {"a\x1bb": "v\x1b[31m", "n": None, "when": "2020-01-01"}},
              opref="script:'/p' '' '../../../etc' 'x\x1b[31m/../../passwd'",
              files={"run.json": b"{}", "output.log": b"not mine", ".guildlite/lock": b"x", "bad\x1bname": b"z"})
    (home / "runs" / "not a run id").mkdir()
    (home / "runs" / "bad\nid").mkdir()
    (home / "runs" / "stray-file").write_text("x")
    outside_before = tree(tmp_path)
    runs = tmp_path / "runs"
    cp = import_guild(home, runs)
    assert cp.returncode == 0, cp.stderr
    assert "\x1b" not in cp.stderr and "\x1b" not in cp.stdout
    rec = only(runs)
    d = run_dirs(runs)[0]
    assert "\x1b" not in json.dumps(rec["label"] + "".join(rec["tags"]) + "".join(rec["flags"]) + rec["op"])
    assert rec["tags"] == ["t\\x1b[2J", "fine"]
    assert rec["op"] == "x\\x1b[31m/../../passwd"  # a name, never a path
    assert (d / "output.log").read_text() == "step: 1\nloss: 0.5\n"
    assert not (d / "bad\x1bname").exists()
    listing = run_guildlite("runs", "--runs-dir", str(runs), cwd=tmp_path)
    assert listing.returncode == 0 and "\x1b" not in listing.stdout
    # Nothing was written outside the runs dir.
    after = {k: v for k, v in tree(tmp_path).items() if not k.startswith("runs")}
    assert after == outside_before


def test_corrupt_event_files_keep_what_reads(home: Path, tmp_path: Path) -> None:
    good = tfrecords(event(1, 1.0, loss=2.0))
    huge_length = struct.pack("<Q", 1 << 62) + b"\0" * 8
    garbage = tfrecords(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x0f")  # a varint that never ends
    guild_run(home, events=good + garbage + huge_length,
              files={"events.out.tfevents.2.h": os.urandom(4096), "events.out.tfevents.3.h": good[:-7]})
    cp = import_guild(home, tmp_path / "runs")
    assert cp.returncode == 0, cp.stderr
    d = run_dirs(tmp_path / "runs")[0]
    assert [(r["key"], r["value"]) for r in read_scalars(d)] == [("loss", 2.0)]
    notes = " ".join(json.loads((d / "run.json").read_text())["attrs"]["guild"]["notes"])
    assert "tfevents.2.h: record header checksum mismatch" in notes  # random bytes: no framing
    assert "tfevents.3.h: the last" in notes and "cut short" in notes
    assert "1 corrupt record(s) skipped" in notes  # the garbage record; the huge length's header ends the file


@given(st.lists(st.one_of(st.binary(max_size=64), st.builds(lambda s, k, v: event(s, 1.0, **{k: v}),
                                                            st.integers(-(2**63), 2**63 - 1),
                                                            st.text(min_size=1, max_size=8),
                                                            st.floats(width=32))), max_size=6),
       st.booleans())
@property_settings(max_examples=300)
def test_the_event_reader_takes_any_bytes(records: list[bytes], framed: bool) -> None:
    data = tfrecords(*records) if framed else b"".join(records)
    rows, problem = read_all(io.BytesIO(data), len(data), 1000)
    assert isinstance(problem, str)
    for r in rows:
        assert set(r) <= {"step", "key", "value", "time"} and isinstance(r["key"], str)
        assert r["value"] is None or math.isfinite(r["value"])


def test_big_files_are_skipped_and_listed(home: Path, tmp_path: Path) -> None:
    d = guild_run(home)
    with open(d / "sparse.bin", "wb") as f:
        f.truncate(5 << 40)  # 5 TB, sparse
    (d / "small.bin").write_bytes(b"1234")
    cp = import_guild(home, tmp_path / "runs", "--max-file-size", "1000", timeout=60)
    assert cp.returncode == 0, cp.stderr
    r = run_dirs(tmp_path / "runs")[0]
    assert (r / "small.bin").read_bytes() == b"1234" and not (r / "sparse.bin").exists()
    skipped = json.loads((r / ".guildlite" / "sourcecode.json").read_text())["skipped"]
    assert any(s["path"] == "sparse.bin" and "--max-file-size" in s["reason"] for s in skipped)


# --- a real Guild AI ------------------------------------------------------------------------------------

TRAIN = textwrap.dedent(
    """\
    x = 0.1
    epochs = 3
    name = "base"

    for i in range(epochs):
        print("step: %d" % (i + 1))
        print("loss: %s" % (x / (i + 1)))
    print("acc: 0.75")
    """
)


GUILD_RUN_DEPS = ["pyyaml", "click", "daemonize", "filelock", "jinja2", "natsort", "pkginfo", "psutil", "tabview",
                  "chardet", "requests", "protobuf<5", "numpy", "tensorboard"]


@pytest.fixture(scope="module")
def guild_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``guild`` of Guild AI 0.9 installed from PyPI into a fresh venv; skipped where it cannot be
    installed (no network): a quick probe first, so that skip costs a few seconds at most."""
    venv = tmp_path_factory.mktemp("guildai") / "venv"
    if subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, timeout=120).returncode:
        pytest.skip("cannot make a venv")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--retries", "0", "--timeout", "10"]
    probe = subprocess.run([*pip, "download", "--no-deps", "-d", str(venv / "dl"), "guildai==0.9.*"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode:
        pytest.skip(f"Guild AI 0.9 cannot be downloaded: {probe.stderr.strip()[-200:]}")
    # Guild's requirements less what `guild run` of a script never imports (scikit-learn, virtualenv,
    # debugpy: half the install time); tensorboard stays, Guild writes its output scalars with it.
    for args in (["--no-deps", "guildai==0.9.*"], GUILD_RUN_DEPS):
        install = subprocess.run([*pip, "install", *args], capture_output=True, text=True, timeout=600)
        if install.returncode:
            pytest.skip(f"Guild AI 0.9 cannot be installed: {install.stderr.strip()[-200:]}")
    return venv / "bin" / "guild"


def test_round_trip_with_real_guild(guild_exe: Path, tmp_path: Path) -> None:
    proj, home, runs = tmp_path / "proj", tmp_path / "guild-home", tmp_path / "runs"
    proj.mkdir()
    home.mkdir()
    (proj / "train.py").write_text(TRAIN)
    env = {k: v for k, v in clean_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["GUILD_HOME"] = str(home)
    for flags, label in ((["x=0.5", "epochs=2"], "first"), (["x=0.2", "name=other"], "second")):
        cp = subprocess.run([str(guild_exe), "run", "-y", "train.py", *flags, "--label", label, "--tag", "t"],
                            cwd=proj, env=env, capture_output=True, text=True, timeout=300)
        assert cp.returncode == 0, cp.stderr
    failing = proj / "fail.py"
    failing.write_text("import sys\nprint('loss: 3')\nsys.exit(3)\n")
    subprocess.run([str(guild_exe), "run", "-y", "fail.py"], cwd=proj, env=env, capture_output=True, timeout=300)
    listed = subprocess.run([str(guild_exe), "runs", "--json"], cwd=proj, env=env, capture_output=True, text=True,
                            timeout=120)
    cp = import_guild(home, runs, "--json", timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert [o["action"] for o in json.loads(cp.stdout)] == ["imported"] * 3
    by_label = {r["label"]: r for r in load_records(runs)}
    first, second = by_label["first"], by_label["second"]
    assert first["flags"] == {"x": 0.5, "epochs": 2, "name": "base"}
    assert second["flags"] == {"x": 0.2, "epochs": 3, "name": "other"}
    assert first["status"] == second["status"] == "completed" and first["op"] == "train.py"
    assert first["tags"] == ["t"]
    failed = next(r for r in by_label.values() if r["op"] == "fail.py")
    assert (failed["status"], failed["exit_code"]) == ("error", 3)

    def scalars(rec: dict[str, Any]) -> dict[str, float]:
        return {row["key"]: row["value"] for row in read_scalars(runs / _dir_of(runs, rec))}

    assert scalars(first) == {"loss": 0.25, "acc": 0.75}
    assert scalars(second)["loss"] == pytest.approx(0.2 / 3)
    assert (runs / _dir_of(runs, first) / "train.py").read_text() == TRAIN
    if listed.returncode == 0 and listed.stdout.strip().startswith("["):
        ids = {r["id"] for r in json.loads(listed.stdout)}
        assert ids == {r["attrs"]["guild"]["id"] for r in by_label.values()}
    # Importing again changes nothing.
    again = import_guild(home, runs, "--json", timeout=120)
    assert [o["action"] for o in json.loads(again.stdout)] == ["skipped"] * 3
    assert len(load_records(runs)) == 3
    shutil.rmtree(home)


def _dir_of(runs: Path, rec: dict[str, Any]) -> str:
    return next(d.name for d in run_dirs(runs) if load_record(d)["attrs"]["guild"]["id"] == rec["attrs"]["guild"]["id"])
