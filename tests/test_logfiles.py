"""Scalars from the logs a job writes itself: TensorBoard event files and Lightning's ``metrics.csv``
(``_tfevents``, ``_logfiles``).

Real writers: PyTorch's ``SummaryWriter`` in a ``launcher: python`` job, and a real PyTorch Lightning
script on 2 ranks (DDP on CPU, gloo) through torchrun with ``CSVLogger`` and ``TensorBoardLogger``:
their per-epoch metrics reach ``compare``. Event records are also built by hand and by tensorboard's
own protobuf classes (an encoder that is not ours: TF2's tensor scalars), then cut, corrupted and
fuzzed: the reader never raises, never hangs, never reads outside the run dir, never allocates
what a length field claims.
"""

from __future__ import annotations

import io
import json
import os
import struct
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _protobuf import field, varint
from conftest import Project, property_settings, read_scalars, write_project
from hypothesis import given
from hypothesis import strategies as st

from guildlite._logfiles import LogFiles
from guildlite._tfevents import (
    MAX_RECORD,
    BadRecord,
    EventStream,
    crc32c,
    event_scalars,
    frame,
    masked_crc32c,
    read_all,
)

# --- events written by hand (``_protobuf``: an encoder independent of the decoder's code) ----------


def simple_event(tag: str, value: float, step: int, wall_time: float = 1.5e9) -> bytes:
    """An Event as PyTorch's SummaryWriter writes it: one Summary.Value with simple_value."""
    value_msg = field(1, 2, tag.encode()) + field(2, 5, struct.pack("<f", value))
    return (field(1, 1, struct.pack("<d", wall_time)) + field(2, 0, varint(step))
            + field(5, 2, field(1, 2, value_msg)))


def write_events(path: Path, *records: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        for r in records:
            f.write(frame(r))
    return path


def stream_all(path: Path) -> tuple[list[tuple[str, int, float | None]], EventStream]:
    s = EventStream()
    with open(path, "rb") as f:
        out = s.advance(f, path.stat().st_size, 1 << 40)
    return [(x.tag, x.step, x.value) for x in out], s


def shortest32(v: float) -> float | None:
    """The float32 ``v`` as its shortest decimal, by numpy's own float32 printing (not our code)."""
    import numpy as np

    return float(str(np.float32(v))) if v == v and abs(v) != float("inf") else None


def keyed(rows: list[dict[str, Any]]) -> list[tuple[str, int, Any]]:
    return [(r["key"], r["step"], r["value"]) for r in rows]


# --- framing and CRC -------------------------------------------------------------------------------


def test_crc32c_known_vectors() -> None:
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4
    assert crc32c(bytes(range(32))) == 0x46DD794E
    # TFRecord's mask of the CRC of an empty payload, as TensorFlow writes it
    assert masked_crc32c(b"") == ((0 >> 15 | 0 << 17) + 0xA282EAD8) & 0xFFFFFFFF


def test_records_written_by_tensorboards_own_writer_are_read(tmp_path: Path) -> None:
    """tensorboard's EventFileWriter (its own framing and CRC code) and its protobuf classes, with a
    TF2 tensor scalar whose plugin metadata comes with its first value only."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    def tensor_event(tag: str, step: int, value: float, first: bool) -> Any:
        v = summary_pb2.Summary.Value(tag=tag, tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[value]))
        if first:
            v.metadata.plugin_data.plugin_name = "scalars"
        return event_pb2.Event(wall_time=1.0e9 + step, step=step, summary=summary_pb2.Summary(value=[v]))

    w = EventFileWriter(str(tmp_path))
    w.add_event(tensor_event("acc", 1, 0.25, True))
    w.add_event(tensor_event("acc", 2, 0.5, False))
    content = tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, tensor_content=struct.pack("<d", 7.25))
    w.add_event(event_pb2.Event(step=3, summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="d", tensor=content)])))
    text = summary_pb2.Summary.Value(tag="note", tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x"]))
    text.metadata.plugin_data.plugin_name = "text"
    hist = summary_pb2.Summary.Value(tag="h", tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1, 2, 3]))
    hist.tensor.tensor_shape.dim.add(size=3)
    w.add_event(event_pb2.Event(step=4, summary=summary_pb2.Summary(value=[text, hist])))
    w.add_event(event_pb2.Event(step=5, summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="s", simple_value=-2.0)])))
    w.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    got, s = stream_all(path)
    assert got == [("acc", 1, 0.25), ("acc", 2, 0.5), ("d", 3, 7.25), ("s", 5, -2.0)]
    assert s.dead is None and s.offset == path.stat().st_size


def test_partial_last_record_waits_then_completes(tmp_path: Path) -> None:
    rec = frame(simple_event("loss", 0.5, 7))
    path = tmp_path / "events.out.tfevents.1"
    for cut in range(len(rec)):  # every byte boundary of a record being written
        path.write_bytes(frame(simple_event("loss", 1.0, 6)) + rec[:cut])
        s = EventStream()
        with open(path, "rb") as f:
            assert [x.step for x in s.advance(f, path.stat().st_size, 1 << 20)] == [6]
        with open(path, "ab") as f:
            f.write(rec[cut:])
        with open(path, "rb") as f:
            assert [(x.tag, x.step, x.value) for x in s.advance(f, path.stat().st_size, 1 << 20)] == [("loss", 7, 0.5)]
        assert s.dead is None


def test_a_corrupt_record_is_skipped_and_a_corrupt_header_ends_the_file(tmp_path: Path) -> None:
    good1, bad, good2 = frame(simple_event("a", 1, 1)), bytearray(frame(simple_event("a", 2, 2))), frame(simple_event("a", 3, 3))
    bad[20] ^= 0xFF  # a flipped bit in the data: its CRC fails, the framing holds
    path = tmp_path / "events.out.tfevents.x"
    path.write_bytes(good1 + bytes(bad) + good2)
    assert stream_all(path)[0] == [("a", 1, 1.0), ("a", 3, 3.0)]

    bad = bytearray(frame(simple_event("a", 2, 2)))
    bad[9] ^= 0x01  # the length's CRC: nothing after it can be trusted
    path.write_bytes(good1 + bytes(bad) + good2)
    got, s = stream_all(path)
    assert got == [("a", 1, 1.0)]
    assert s.dead is not None and "header checksum" in s.dead


def test_huge_length_fields_allocate_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.big"
    huge = struct.pack("<Q", 1 << 62)
    path.write_bytes(frame(simple_event("a", 1, 1)) + huge + struct.pack("<I", masked_crc32c(huge)) + b"\0" * 100)
    got, s = stream_all(path)
    assert got == [("a", 1, 1.0)] and s.dead is None  # waits for a record that never comes, reads nothing
    # A record longer than MAX_RECORD that is really there (a sparse file) is stepped over unread.
    long = struct.pack("<Q", MAX_RECORD + 1)
    path.write_bytes(long + struct.pack("<I", masked_crc32c(long)))
    with open(path, "r+b") as f:
        f.truncate(12 + MAX_RECORD + 1 + 4)
    write_events(path, simple_event("after", 2.0, 9))
    assert stream_all(path)[0] == [("after", 9, 2.0)]


@pytest.mark.parametrize("data", [
    b"", b"\x0a", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x2a\x05\x0a\x03\x0a\x01",
    b"\x0f", b"\x2a\x80", b"\x11abc", b"\x2a\x02\x0a\x7f",
])
def test_malformed_events_are_bad_records(data: bytes) -> None:
    try:
        assert event_scalars(data, {}) == []
    except BadRecord:
        pass


@property_settings(300)
@given(st.binary(max_size=300))
def test_fuzz_event_decoder(data: bytes) -> None:
    try:
        out = event_scalars(data, {})
    except BadRecord:
        return
    assert all(isinstance(s.tag, str) and isinstance(s.step, int) for s in out)


@property_settings(200)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=20), st.floats(width=32), st.integers(-(2**63), 2**63 - 1)),
                max_size=8), st.data())
def test_fuzz_round_trip_then_corrupt(tmp_path_factory: pytest.TempPathFactory, items: list[Any], data: Any) -> None:
    path = tmp_path_factory.mktemp("fz") / "events.out.tfevents.f"
    write_events(path, *(simple_event(t, v, s) for t, v, s in items))
    got, _ = stream_all(path)
    want = [(t, s, shortest32(v)) for t, v, s in items]
    assert got == want
    raw = bytearray(path.read_bytes())
    if raw:  # flip, cut or append garbage: never an exception, and nothing from before the damage is lost
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(raw[: data.draw(st.integers(at, len(raw)))]) + data.draw(st.binary(max_size=40)))
        got2, _ = stream_all(path)
        assert len(got2) <= len(want) + 2


@property_settings(100)
@given(st.binary(max_size=400), st.binary(max_size=400), st.integers(1, 64))
def test_fuzz_the_source_over_arbitrary_files(tmp_path_factory: pytest.TempPathFactory, events: bytes, text: bytes,
                                              budget: int) -> None:
    d = tmp_path_factory.mktemp("src")
    (d / "events.out.tfevents.f").write_bytes(frame(simple_event("ok", 1.0, 1)) + events)
    (d / "metrics.csv").write_bytes(b"step,a\n" + text)
    logs = LogFiles(d, rescan_seconds=0)
    rows = logs.poll(budget) + logs.finish()
    assert ("ok", 1, 1.0) in keyed(rows)
    assert all(isinstance(r["key"], str) and r["key"] and isinstance(r["step"], int) for r in rows)
    json.loads(json.dumps(rows, allow_nan=False))  # every row is strict JSON (NaN/inf as null)
    json.loads(json.dumps(logs.state(), allow_nan=False))


def test_nonfinite_values_and_times_are_null(tmp_path: Path) -> None:
    write_events(tmp_path / "events.out.tfevents.n", simple_event("a", float("nan"), 1, wall_time=float("inf")),
                 simple_event("", 1.0, 2))  # an empty tag names nothing
    (row,) = LogFiles(tmp_path).finish()
    assert row == {"step": 1, "key": "a", "value": None, "time": None}


def test_float32_values_are_their_shortest_decimal(tmp_path: Path) -> None:
    """0.9 logged is 0.9 read (not 0.8999999761581421): simple values and DT_FLOAT tensors, in the
    live source and in ``read_all`` alike; doubles as they are; the largest float32 (whose rounding
    to fewer digits overflows a float32) reads, and so does what follows it."""
    f32 = struct.unpack("<f", struct.pack("<f", 0.9))[0]
    assert f32 != 0.9
    flt_max = struct.unpack("<f", struct.pack("<I", 0x7F7FFFFF))[0]
    tensor = field(1, 0, varint(1)) + field(4, 2, struct.pack("<f", 0.1))  # DT_FLOAT, tensor_content
    double = field(1, 0, varint(2)) + field(4, 2, struct.pack("<d", f32))  # DT_DOUBLE: exactly as written
    tensors = field(5, 2, field(1, 2, field(1, 2, b"t") + field(8, 2, tensor))
                       + field(1, 2, field(1, 2, b"d") + field(8, 2, double)))
    path = write_events(tmp_path / "events.out.tfevents.1", simple_event("a", 0.9, 1), simple_event("big", flt_max, 2),
                        simple_event("tiny", -1e-45, 3), field(2, 0, varint(4)) + tensors)
    want = [("a", 1, 0.9), ("big", 2, 3.4028235e38), ("tiny", 3, -1e-45), ("t", 4, 0.1), ("d", 4, f32)]
    assert stream_all(path)[0] == want
    assert sorted(keyed(LogFiles(tmp_path).finish())) == sorted((k, s, v) for k, s, v in want)
    with open(path, "rb") as f:
        rows, problem = read_all(f, path.stat().st_size, 100)
    assert (keyed(rows), problem) == (want, "")
    assert rows[0] == {"step": 1, "key": "a", "value": 0.9, "time": 1.5e9}


def test_read_all_says_what_it_could_not_read(tmp_path: Path) -> None:
    good = [frame(simple_event("a", float(i), i)) for i in range(5)]
    bad = bytearray(good[1])
    bad[20] ^= 0xFF
    data = good[0] + bytes(bad) + good[2] + good[3][:-3]
    rows, problem = read_all(io.BytesIO(data), len(data), 100)
    assert [r["step"] for r in rows] == [0, 2]
    assert "1 corrupt record(s) skipped" in problem and f"last {len(good[3]) - 3} bytes" in problem
    data = b"".join(good)
    rows, problem = read_all(io.BytesIO(data), len(data), 3)
    assert [r["step"] for r in rows] == [0, 1, 2] and "more than 3 scalars" in problem
    header = bytearray(good[4])
    header[9] ^= 1
    data = good[0] + bytes(header)
    rows, problem = read_all(io.BytesIO(data), len(data), 100)
    assert [r["step"] for r in rows] == [0] and "header checksum" in problem


# --- the run dir source ----------------------------------------------------------------------------


def test_new_files_later_many_files_subdirs_and_other_ranks(tmp_path: Path) -> None:
    logs = LogFiles(tmp_path, rescan_seconds=0)
    assert logs.poll() == []
    write_events(tmp_path / "tb" / "events.out.tfevents.1.h.1.0", simple_event("loss", 1.0, 0))
    assert keyed(logs.poll()) == [("loss", 0, 1.0)]
    assert logs.poll() == []  # read once
    write_events(tmp_path / "tb" / "events.out.tfevents.1.h.1.0", simple_event("loss", 0.5, 1))
    # add_scalars: a sub-writer per name, below the main writer's dir
    write_events(tmp_path / "tb" / "pair_train" / "events.out.tfevents.2", simple_event("pair", 3.0, 1))
    write_events(tmp_path / "hf" / "runs" / "x" / "events.out.tfevents.3", *(simple_event(f"k{i}", i, 1) for i in range(50)))
    write_events(tmp_path / "tb" / "rank1" / "events.out.tfevents.4", simple_event("loss", 99.0, 1))  # another rank
    rows = logs.poll()
    assert ("loss", 1, 0.5) in keyed(rows) and ("pair/train", 1, 3.0) in keyed(rows)
    assert {r["key"] for r in rows} >= {f"k{i}" for i in range(50)}
    assert 99.0 not in [r["value"] for r in rows]
    assert all(isinstance(r["time"], float) for r in rows)


def test_outside_symlinks_fifos_and_garbage_are_never_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_events(outside / "events.out.tfevents.secret", simple_event("secret", 42.0, 1))
    run = tmp_path / "run"
    run.mkdir()
    (run / "events.out.tfevents.link").symlink_to(outside / "events.out.tfevents.secret")
    (run / "linkdir").symlink_to(outside, target_is_directory=True)
    (run / "loop").symlink_to(run / "loop")
    os.mkfifo(run / "events.out.tfevents.fifo")
    (run / "events.out.tfevents.zero").symlink_to("/dev/zero")
    (run / "events.out.tfevents.garbage").write_bytes(os.urandom(4096))
    (run / "metrics.csv").symlink_to(outside / "events.out.tfevents.secret")
    write_events(run / "events.out.tfevents.ok", simple_event("ok", 1.0, 1))
    logs = LogFiles(run)
    assert keyed(logs.finish()) == [("ok", 1, 1.0)]  # returns: the FIFO is never waited on
    assert {"events.out.tfevents.link", "events.out.tfevents.zero", "metrics.csv"} <= set(logs.problems)
    assert "outside" in logs.problems["events.out.tfevents.link"]
    assert "checksum" in logs.problems["events.out.tfevents.garbage"]


CSV_1 = "epoch,step,train_loss\r\n0,9,1.5\r\n"
CSV_2 = 'epoch,step,train_loss,"val,loss"\r\n0,9,1.5,\r\n1,19,0.9,\r\n1,19,,2.5\r\n'


def test_lightning_csv_appends_rewrites_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "lightning_logs" / "version_0" / "metrics.csv"
    path.parent.mkdir(parents=True)
    logs = LogFiles(tmp_path, rescan_seconds=0)
    path.write_text(CSV_1 + "1,1", newline="")  # a row still being written
    assert keyed(logs.poll()) == [("epoch", 9, 0.0), ("train_loss", 9, 1.5)]
    path.write_text(CSV_1 + "1,19,0.9\r\n", newline="")  # appended
    assert keyed(logs.poll()) == [("epoch", 19, 1.0), ("train_loss", 19, 0.9)]
    path.write_text("", newline="")  # Lightning rewrites in place: caught mid-way
    assert logs.poll() == []
    path.write_text(CSV_2.split("\r\n", 1)[0] + "\r\n", newline="")
    assert logs.poll() == []
    path.write_text(CSV_2, newline="")  # the new header, rows seen before, one new one
    assert keyed(logs.poll()) == [("epoch", 19, 1.0), ("val,loss", 19, 2.5)]
    path.write_text(CSV_2 + "2,29,nan,0.5\r\n", newline="")
    assert keyed(logs.poll()) == [("epoch", 29, 2.0), ("train_loss", 29, None), ("val,loss", 29, 0.5)]


def test_a_csv_without_a_step_column_is_not_a_metrics_log(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text("a,b\n1,2\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "metrics.csv").write_bytes(b'step,x\n"unterminated,1\n' + os.urandom(200))
    assert LogFiles(tmp_path).finish() == []


def test_a_key_from_both_loggers_is_recorded_once(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text("epoch,step,val_loss\n0,4,0.5\n")
    write_events(tmp_path / "tb" / "events.out.tfevents.1", simple_event("val_loss", 0.5, 4), simple_event("hp", 1, 0))
    assert sorted(keyed(LogFiles(tmp_path).finish())) == [("epoch", 4, 0.0), ("hp", 0, 1.0), ("val_loss", 4, 0.5)]


def test_incremental_polls_read_only_what_is_new(tmp_path: Path) -> None:
    path = write_events(tmp_path / "events.out.tfevents.1", *(simple_event("x", i, i) for i in range(20000)))
    logs = LogFiles(tmp_path, rescan_seconds=3600)
    first = logs.poll(budget=64 << 10)  # a backlog is caught up over several polls
    assert 0 < len(first) < 20000
    assert len(first) + len(logs.finish()) == 20000
    size = path.stat().st_size
    write_events(path, simple_event("x", -1.0, 20000))
    assert keyed(logs.poll(budget=1)) == [("x", 20000, -1.0)]
    assert logs._files["events.out.tfevents.1"].events.offset == path.stat().st_size > size


# --- real writers in real jobs ---------------------------------------------------------------------

# PyTorch's SummaryWriter with its default logdir (runs/<date>_<host>/) and add_scalars' sub-writers.
# Nothing is printed: every scalar comes from the event files.
SUMMARYWRITER_SCRIPT = textwrap.dedent(
    """\
    import sys
    from torch.utils.tensorboard import SummaryWriter

    epochs = int(dict(a[2:].split("=", 1) for a in sys.argv[1:])["epochs"])
    w = SummaryWriter()
    for epoch in range(epochs):
        w.add_scalar("loss", 1.0 / (epoch + 1), epoch)
        w.add_scalar("train/acc", 0.25 * epoch, epoch)
        w.add_scalars("lr", {"head": 0.1, "body": 0.01}, epoch)
    w.close()
    print("done")
    """
)

# PyTorch Lightning on every rank torchrun starts (DDP on CPU, gloo), with both file loggers.
LIGHTNING_SCRIPT = textwrap.dedent(
    """\
    import os, sys
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    epochs = int(dict(a[2:].split("=", 1) for a in sys.argv[1:])["epochs"])

    class Regression(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(4, 1)

        def training_step(self, batch, i):
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
            return loss

        def validation_step(self, batch, i):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x), y), sync_dist=True)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    x = torch.randn(64, 4)
    data = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=16)
    world = int(os.environ["WORLD_SIZE"])
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=world, strategy="ddp" if world > 1 else "auto",
                        logger=[CSVLogger("logs"), TensorBoardLogger("tb")], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=1)
    trainer.fit(Regression(), data, data)
    print("done")
    """
)

JOBS_GUILDFILE = """\
operations:
  writer:
    main: writer.py
    launcher: python
    flags: {epochs: 4}
  lightning:
    main: lit.py
    nproc-per-node: 2
    flags: {epochs: 3}
"""


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("logjobs")
    p = Project(root=write_project(base / "project", JOBS_GUILDFILE,
                                   {"writer.py": SUMMARYWRITER_SCRIPT, "lit.py": LIGHTNING_SCRIPT,
                                    "lightning_logs/version_0/metrics.csv": "epoch,step,val_loss\n0,0,99.0\n"}),
                runs_dir=base / "runs")
    # Logs of an earlier run made outside guildlite, in the project: staged as source, not this run's.
    write_events(p.root / "runs" / "Jan01_00-00-00_host" / "events.out.tfevents.1.host.1.0", simple_event("loss", 99.0, 0))
    yield p
    p.cleanup()


def _only_new_run(proj: Project, *args: str) -> Path:
    before = set(proj.run_dirs())
    cp = proj.run("run", "-y", *args, timeout=300)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    (new,) = set(proj.run_dirs()) - before
    return new


def _compare(proj: Project, run_dir: Path) -> dict[str, Any]:
    (row,) = proj.run_json("compare", "--json", run_dir.name)
    return dict(row)


def test_summarywriter_scalars_reach_compare(jobs: Project) -> None:
    run = _only_new_run(jobs, "writer")
    rows = read_scalars(run)
    assert [(r["step"], r["value"]) for r in rows if r["key"] == "loss"] == [
        (0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3)), (3, 0.25)]
    assert [r["value"] for r in rows if r["key"] == "train/acc"] == [0.0, 0.25, 0.5, 0.75]
    assert {r["key"] for r in rows} == {"loss", "train/acc", "lr/head", "lr/body"}
    assert (run / "runs" / "Jan01_00-00-00_host").is_dir()  # the project's old logs were staged, and not read
    row = _compare(jobs, run)
    assert row["loss"] == 0.25 and row["train/acc"] == 0.75 and row["lr/head"] == pytest.approx(0.1)
    assert json.loads((run / "run.json").read_text())["attrs"]["logfiles"] == {"captured": 16, "problems": {}}


def test_lightning_ddp_per_epoch_metrics_reach_compare(jobs: Project) -> None:
    run = _only_new_run(jobs, "lightning")
    assert "done" in (run / "output.log").read_text()
    assert list(run.glob("logs/lightning_logs/version_0/metrics.csv"))
    assert list(run.glob("tb/lightning_logs/version_0/events.out.tfevents.*"))
    rows = read_scalars(run)
    val = [(r["step"], r["value"]) for r in rows if r["key"] == "val_loss"]
    assert len(val) == 3 and len({s for s, _ in val}) == 3  # one per epoch, at the epoch's global step
    assert 99.0 not in [r["value"] for r in rows]  # the project's old lightning_logs/, staged as source
    assert [r["value"] for r in rows if r["key"] == "epoch"][-1] == 2.0
    assert len([r for r in rows if r["key"] == "train_loss"]) == 3  # both loggers have it: recorded once
    row = _compare(jobs, run)
    assert row["val_loss"] == pytest.approx(val[-1][1]) and isinstance(row["train_loss"], float)


def test_the_readers_import_neither_torch_nor_tensorboard(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; from guildlite._logfiles import LogFiles; LogFiles(sys.argv[1]).finish(); "
            "bad = [m for m in ('torch', 'tensorboard', 'tensorflow', 'google.protobuf') if m in sys.modules]; "
            "assert not bad, bad")
    write_events(tmp_path / "events.out.tfevents.1", simple_event("a", 1, 1))
    cp = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr


def test_a_new_reader_goes_on_from_the_state_of_the_last(tmp_path: Path) -> None:
    """The live capture keeps each source's state (``.guildlite/capture.json``): the end-of-run hook,
    or a restart, goes on from there and reports nothing twice; a file made anew is read anew."""
    ev = write_events(tmp_path / "tb" / "events.out.tfevents.1", simple_event("loss", 1.0, 0))
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("epoch,step,acc\n0,0,0.5\n")
    first = LogFiles(tmp_path)
    assert sorted(keyed(first.poll())) == [("acc", 0, 0.5), ("epoch", 0, 0.0), ("loss", 0, 1.0)]
    state = json.loads(json.dumps(first.state()))  # as capture.json holds it
    write_events(ev, simple_event("loss", 0.5, 1))
    csv_path.write_text("epoch,step,acc\n0,0,0.5\n1,1,0.75\n")
    second = LogFiles(tmp_path, state)
    assert sorted(keyed(second.finish())) == [("acc", 1, 0.75), ("epoch", 1, 1.0), ("loss", 1, 0.5)]
    assert second.rows == 6
    (tmp_path / "new.csv").write_text("epoch,step,acc\n0,0,0.25\n")
    (tmp_path / "new.csv").replace(csv_path)  # a new file (another inode) where the old one was
    assert keyed(LogFiles(tmp_path, second.state()).finish()) == [("epoch", 0, 0.0), ("acc", 0, 0.25)]
    for junk in (None, [], {"files": []}, {"files": {"x/metrics.csv": [1, -5, "", None], "a.txt": [1, 2, "", None]}},
                 {"files": {"events.out.tfevents.z": "no"}, "owner": {"k": "bogus"}, "rows": "many"}):
        assert LogFiles(tmp_path, junk).finish() is not None  # a bad state is no state


# A job that writes its logs, then waits (for the test's `go` file) before it ends: the rows must be
# in scalars.jsonl, and seen by on_run_progress, while it waits.
LIVE_SCRIPT = textwrap.dedent(
    """\
    import os, time
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter("tb")
    for step in range(3):
        w.add_scalar("loss", 1.0 / (step + 1), step)
    w.flush()
    with open("metrics.csv", "w") as f:
        f.write("epoch,step,acc\\n0,2,0.5\\n")
    deadline = time.time() + 120
    while not os.path.exists("go") and time.time() < deadline:
        time.sleep(0.05)
    w.add_scalar("loss", 0.125, 3)
    w.close()
    """
)

SEEN_PLUGIN = textwrap.dedent(
    """\
    from guildlite import Plugin

    class Seen(Plugin):
        def on_run_progress(self, run):
            seen = run.attrs.setdefault("seen", [])
            seen.extend(sorted({r["key"] for r in run.new_scalars} - set(seen)))
    """
)


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detached"])
def test_log_scalars_arrive_while_the_job_runs(make_project: Any, detach: bool) -> None:
    from conftest import wait_until

    proj = make_project("plugins:\n  - class: seen:Seen\noperations:\n  live:\n    main: live.py\n    launcher: python\n",
                        {"live.py": LIVE_SCRIPT, "seen.py": SEEN_PLUGIN})
    if detach:  # the detached supervisor owns the run: it polls the logs
        cp = proj.run("run", "-y", "-b", "live")
        assert cp.returncode == 0, (cp.stdout, cp.stderr)
    else:
        p = proj.spawn("run", "-y", "live")
    run = wait_until(lambda: next(iter(proj.run_dirs()), None), timeout=60, what="the run dir")

    def arrived() -> bool:
        keys = {r["key"] for r in read_scalars(run)}
        return {"loss", "acc", "epoch"} <= keys

    wait_until(arrived, timeout=90, what="the log scalars in scalars.jsonl while the job waits")
    assert json.loads((run / "run.json").read_text())["status"] == "running" and not (run / "go").exists()
    (run / "go").write_text("")
    if detach:
        record = wait_until(lambda: (r := json.loads((run / "run.json").read_text()))["status"] == "completed"
                            and "logfiles" in r["attrs"] and r, timeout=120, what="the run's end")
    else:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, (out, err)
        record = json.loads((run / "run.json").read_text())
    rows = read_scalars(run)
    assert [(r["step"], r["value"]) for r in rows if r["key"] == "loss"] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3)),
                                                                          (3, 0.125)]
    assert len([r for r in rows if r["key"] == "acc"]) == 1  # the end-of-run hook took nothing twice
    assert {"loss", "acc", "epoch"} <= set(record["attrs"]["seen"])
    assert record["attrs"]["logfiles"]["captured"] == 6


# A job that plants what a reader must survive, then logs one good scalar.
HOSTILE_SCRIPT = textwrap.dedent(
    """\
    import os, shutil, sys
    flags = dict(a[2:].split("=", 1) for a in sys.argv[1:])
    os.mkfifo("metrics.csv")                                        # a FIFO: opening it for reading would block
    os.symlink("/dev/zero", "events.out.tfevents.zero")             # endless zeros
    os.symlink(flags["target"], "events.out.tfevents.outside")      # a real event file, outside
    os.makedirs("deep/loop")
    os.symlink("..", "deep/loop/up")                                # a dir symlink loop
    shutil.copy(flags["huge"], "events.out.tfevents.huge")          # a checked length no file reaches
    with open("events.out.tfevents.garbage", "wb") as f:
        f.write(os.urandom(1 << 16))
    from torch.utils.tensorboard import SummaryWriter
    w = SummaryWriter("tb")
    w.add_scalar("good", 1.5, 7)
    w.close()
    """
)


def test_a_hostile_run_dir_never_stops_the_owner(make_project: Any, tmp_path: Path) -> None:
    outside = write_events(tmp_path / "elsewhere" / "events.out.tfevents.1", simple_event("secret", 42.0, 1))
    huge = tmp_path / "huge.bin"
    length = struct.pack("<Q", 1 << 62)
    huge.write_bytes(length + struct.pack("<I", masked_crc32c(length)) + os.urandom(64))
    proj = make_project("operations:\n  bad:\n    main: bad.py\n    launcher: python\n"
                        "    flags: {target: '', huge: ''}\n", {"bad.py": HOSTILE_SCRIPT})
    cp = proj.run("run", "-y", "bad", f"target={outside}", f"huge={huge}", timeout=120)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    (run,) = proj.run_dirs()
    assert keyed(read_scalars(run)) == [("good", 7, 1.5)]
    problems = json.loads((run / "run.json").read_text())["attrs"]["logfiles"]["problems"]
    assert set(problems) == {"metrics.csv", "events.out.tfevents.zero", "events.out.tfevents.outside",
                             "events.out.tfevents.garbage"}, problems
