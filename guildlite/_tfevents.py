"""TensorBoard event files, read with no TensorFlow, torch or tensorboard import: the TFRecord
framing and just enough of the ``Event`` protobuf to find scalars.

A file is a sequence of records: ``uint64 length``, ``uint32 masked crc32c(length)``, ``data``,
``uint32 masked crc32c(data)`` (little-endian). ``data`` is an ``Event``: ``wall_time`` (1, double),
``step`` (2, int64), ``summary`` (5) holding ``value`` (1) items of ``tag`` (1), ``simple_value``
(2, float; what PyTorch's ``SummaryWriter``, Lightning and the HF Trainer write), ``metadata`` (9,
its ``plugin_data.plugin_name``) and ``tensor`` (8, a ``TensorProto``: what TF2's
``tf.summary.scalar`` writes, with the metadata on a tag's first value only).

The input is untrusted (a job writes it while we read; a run dir may come from anywhere): every
length is bounds-checked, a record longer than MAX_RECORD is stepped over without being read, and
malformed data is a ``BadRecord``, never an IndexError or a giant allocation.

A float32 value (``simple_value``, a ``DT_FLOAT`` tensor) is given as the shortest decimal that is
that float32 (0.9, not 0.8999999761581421): what the job logged, as it would print it. The live
capture (``_logfiles``) and ``runs import --from-guild`` (``read_all``) both read through here, so
a run's scalars have the same values however they were captured.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, BinaryIO

HEADER = 12  # length + its crc
FOOTER = 4  # the data's crc
MAX_RECORD = 16 << 20  # a scalar event is ~50 bytes; longer records (images, graphs) are skipped unread

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


@lru_cache(maxsize=None)
def _tables() -> tuple[tuple[int, ...], ...]:
    """The slicing-by-4 tables, built on first use (not at import: a run's start never waits for them)."""
    t0 = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        t0.append(c)
    tables = [t0]
    for _ in range(3):  # slicing-by-4: four bytes per step
        prev = tables[-1]
        tables.append([(prev[i] >> 8) ^ t0[prev[i] & 0xFF] for i in range(256)])
    return tuple(tuple(t) for t in tables)


_WORDS = struct.Struct("<I")
_FLOAT = struct.Struct("<f")
_DOUBLE = struct.Struct("<d")


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C of ``data`` (pure Python, slicing-by-4)."""
    c = 0xFFFFFFFF
    n = len(data) & ~3
    t0, t1, t2, t3 = _tables()
    for (w,) in _WORDS.iter_unpack(data[:n]):
        w ^= c
        c = t3[w & 0xFF] ^ t2[(w >> 8) & 0xFF] ^ t1[(w >> 16) & 0xFF] ^ t0[w >> 24]
    for b in data[n:]:
        c = t0[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview) -> int:
    """The CRC as TFRecord stores it (rotated and offset, so data holding CRCs checks well)."""
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One TFRecord record holding ``data`` (for writers of test files)."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


class BadRecord(ValueError):
    """A record that is not a well-formed event (or a header that is not a record's)."""


def record_length(header: bytes) -> int:
    """The data length a 12-byte record header announces; BadRecord when its CRC does not match
    (garbage, or a file that is not TFRecord: its framing cannot be trusted past this point)."""
    length, crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != crc:
        raise BadRecord("record header checksum mismatch")
    return int(length)


def check_data(data: bytes | memoryview, footer: bytes) -> None:
    """BadRecord unless ``footer`` is the masked CRC of ``data``."""
    if masked_crc32c(data) != _WORDS.unpack(footer)[0]:
        raise BadRecord("record data checksum mismatch")


@dataclass(frozen=True)
class Scalar:
    """One scalar of an event."""

    tag: str
    step: int
    wall_time: float
    value: float | None  # None: NaN or infinite (not JSON)

    def row(self, key: str) -> dict[str, Any]:
        """This scalar as a ``scalars.jsonl`` row under ``key``: the time to the millisecond, null
        when it is not finite (JSON has no NaN)."""
        return {"step": self.step, "key": key, "value": self.value,
                "time": round(self.wall_time, 3) if math.isfinite(self.wall_time) else None}


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise BadRecord("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """The fields of one message in ``buf[pos:end]``: (number, wire type, value or start, end).
    For varints and fixed-size fields the value is decoded (fixed64/32 as raw ints), end is -1."""
    out = []
    while pos < end:
        key = buf[pos]
        if key < 0x80:  # field numbers below 16: one byte (every field read here)
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, pos = _varint(buf, pos, end)
            out.append((num, 0, v, -1))
        elif wire == 1:
            if pos + 8 > end:
                raise BadRecord("truncated fixed64")
            out.append((num, 1, pos, -1))
            pos += 8
        elif wire == 2:
            n = buf[pos] if pos < end else 0x80
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise BadRecord("length-delimited field past its message")
            out.append((num, 2, pos, pos + n))
            pos += n
        elif wire == 5:
            if pos + 4 > end:
                raise BadRecord("truncated fixed32")
            out.append((num, 5, pos, -1))
            pos += 4
        else:  # groups (3, 4) are not in these messages; 6, 7 do not exist
            raise BadRecord(f"unexpected wire type {wire}")
    return out


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _float32(v: float) -> float | None:
    """A float32 as the shortest decimal that reads back as it (0.9, not 0.8999999761581421):
    Python's floats are doubles, and a float32 widened to one prints all the binary noise."""
    if not math.isfinite(v):
        return None
    exact = _FLOAT.pack(v)
    # The fewest significant digits that read back, by bisection: if d digits do, d + 1 do too (v
    # rounded to d + 1 digits is at least as close), and 9 always do.
    lo, hi, best = 1, 9, v
    while lo < hi:
        digits = (lo + hi) // 2
        short = float(f"{v:.{digits}g}")
        try:
            fits = _FLOAT.pack(short) == exact
        except OverflowError:  # near the largest float32, rounding can go past it: more digits
            fits = False
        if fits:
            best, hi = short, digits
        else:
            lo = digits + 1
    return best if hi < 9 else float(f"{v:.9g}")


# TensorProto dtypes that hold one number: DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64, DT_HALF, DT_BFLOAT16.
_CONTENT = {1: "<f", 2: "<d", 3: "<i", 9: "<q", 19: "<e"}


def _tensor_value(buf: bytes, pos: int, end: int) -> tuple[bool, float | None]:
    """(True, the number) for a ``TensorProto`` that holds one number; (False, None) otherwise."""
    dtype, dims, content, vals = 0, 0, None, []
    for num, wire, a, b in _fields(buf, pos, end):
        if num == 1 and wire == 0:
            dtype = a
        elif num == 2 and wire == 2:  # shape: count the dims of more than one element
            for dnum, dwire, da, db in _fields(buf, a, b):
                if dnum == 2 and dwire == 2:
                    size = next((v for n, w, v, _ in _fields(buf, da, db) if n == 1 and w == 0), 0)
                    dims += size != 1
        elif num == 4 and wire == 2:
            content = bytes(buf[a:b])
        elif num in (5, 6, 7, 10, 13) and wire == 2:  # packed float/double/int32/int64/half vals
            vals.append((num, a, b))
        elif num == 5 and wire == 5:
            vals.append((num, a, a + 4))
        elif num == 6 and wire == 1:
            vals.append((num, a, a + 8))
    if dims:
        return False, None
    if content is not None:
        if dtype == 14 and len(content) == 2:  # bfloat16: the top half of a float32
            return True, _finite(struct.unpack("<f", b"\0\0" + content)[0])
        fmt = _CONTENT.get(dtype)
        if fmt is None or len(content) != struct.calcsize(fmt):
            return False, None
        v = float(struct.unpack(fmt, content)[0])
        return True, _float32(v) if dtype == 1 else _finite(v)
    for num, a, b in vals:
        if num == 5 and b - a == 4:  # float_val: float32 whatever the dtype says
            return True, _float32(_FLOAT.unpack_from(buf, a)[0])
        if num == 6 and b - a == 8:
            return True, _finite(struct.unpack_from("<d", buf, a)[0])
        if num in (7, 10) and dtype in (3, 9):
            return True, float(_signed64(_varint(buf, a, b)[0]))
        if num == 13 and dtype == 19:
            return True, _finite(struct.unpack("<e", (_varint(buf, a, b)[0] & 0xFFFF).to_bytes(2, "little"))[0])
    return False, None


def _plugin_name(buf: bytes, pos: int, end: int) -> str | None:
    for num, wire, a, b in _fields(buf, pos, end):
        if num == 1 and wire == 2:  # SummaryMetadata.plugin_data
            for pnum, pwire, pa, pb in _fields(buf, a, b):
                if pnum == 1 and pwire == 2:
                    return bytes(buf[pa:pb]).decode("utf-8", "replace")
    return None


def event_scalars(data: bytes, plugins: dict[str, str]) -> list[Scalar]:
    """The scalars of one serialized ``Event``. ``plugins`` maps a tag to the plugin its first value
    named (TF2 names it once per tag and file): a tensor value counts as a scalar when its tag's
    plugin is ``scalars`` or unknown and the tensor holds exactly one number."""
    wall_time, step, summaries = 0.0, 0, []
    for num, wire, a, b in _fields(data, 0, len(data)):
        if num == 1 and wire == 1:
            wall_time = _DOUBLE.unpack_from(data, a)[0]
        elif num == 2 and wire == 0:
            step = _signed64(a)
        elif num == 5 and wire == 2:
            summaries.append((a, b))
    out = []
    for a, b in summaries:
        for num, wire, va, vb in _fields(data, a, b):
            if num == 1 and wire == 2:
                scalar = _value(data, va, vb, step, wall_time, plugins)
                if scalar is not None:
                    out.append(scalar)
    return out


def _value(data: bytes, pos: int, end: int, step: int, wall_time: float, plugins: dict[str, str]) -> Scalar | None:
    """The scalar of one ``Summary.Value``, if it holds one."""
    tag, simple, tensor, meta = None, None, None, None
    for num, wire, a, b in _fields(data, pos, end):
        if num == 1 and wire == 2:
            tag = data[a:b].decode("utf-8", "replace")
        elif num == 2 and wire == 5:
            simple = _FLOAT.unpack_from(data, a)[0]
        elif num == 8 and wire == 2:
            tensor = (a, b)
        elif num == 9 and wire == 2:
            meta = (a, b)
    if tag is None:
        return None
    if meta is not None and (name := _plugin_name(data, *meta)) is not None:
        plugins.setdefault(tag, name)
    if simple is not None:
        return Scalar(tag, step, wall_time, _float32(simple))
    if tensor is not None and plugins.get(tag, "scalars") == "scalars":
        ok, v = _tensor_value(data, *tensor)
        if ok:
            return Scalar(tag, step, wall_time, v)
    return None


class EventStream:
    """One event file read as it grows: ``advance`` returns the scalars of the records complete
    since the last call. A partly written last record waits for the next call; a record whose data
    checksum fails is skipped; a header whose checksum fails ends the file (its framing is lost).
    Tags are read from the file as written; ``dead`` says why a file is no longer read, ``skipped``
    counts the records skipped."""

    def __init__(self) -> None:
        self.offset = 0
        self.dead: str | None = None
        self.skipped = 0
        self.plugins: dict[str, str] = {}

    def advance(self, f: BinaryIO, size: int, budget: int) -> list[Scalar]:
        """Scalars of the complete records from ``offset`` on, until about ``budget`` bytes are read;
        ``size`` is the file's size now (a record past it is still being written)."""
        out: list[Scalar] = []
        start = self.offset
        f.seek(start)
        while self.dead is None and self.offset - start < budget and self.offset + HEADER <= size:
            header = f.read(HEADER)
            if len(header) < HEADER:
                break
            try:
                length = record_length(header)
            except BadRecord as e:
                self.dead = f"{e} at byte {self.offset}"
                break
            whole = HEADER + length + FOOTER
            if self.offset + whole > size:
                break  # still being written (or a length no file reaches: then forever)
            if length > MAX_RECORD:  # stepped over unread: no scalar event is that long
                self.offset += whole
                f.seek(self.offset)
                continue
            data, footer = f.read(length), f.read(FOOTER)
            if len(data) < length or len(footer) < FOOTER:
                break  # the file shrank under us
            self.offset += whole
            try:
                check_data(data, footer)
                out.extend(event_scalars(data, self.plugins))
            except BadRecord:
                self.skipped += 1  # this record only: the framing around it checked out
        return out


READ_BYTES = 8 << 20  # read per step of ``read_all``: rows past max_rows are never all held at once


def read_all(f: BinaryIO, size: int, max_rows: int) -> tuple[list[dict[str, Any]], str]:
    """The scalar rows (``Scalar.row``, keyed by tag) of a finished event file open as ``f``,
    ``size`` bytes long as found when opened, ``max_rows`` at most; and what kept scalars from
    being read ("" when nothing did): a corrupt header, corrupt records, an end cut short, a cap."""
    stream = EventStream()
    rows: list[dict[str, Any]] = []
    while True:
        before = stream.offset
        rows.extend(s.row(s.tag) for s in stream.advance(f, size, READ_BYTES) if s.tag)
        if len(rows) > max_rows:
            return rows[:max_rows], f"more than {max_rows} scalars, the rest not read"
        if stream.offset == before:
            break
    problems = [stream.dead] if stream.dead else []
    if stream.skipped:
        problems.append(f"{stream.skipped} corrupt record(s) skipped")
    if stream.dead is None and stream.offset < size:
        problems.append(f"the last {size - stream.offset} bytes are not a whole record (cut short?)")
    return rows, "; ".join(problems)
