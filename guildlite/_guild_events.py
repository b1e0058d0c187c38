"""Scalars from a finished TensorBoard event file, for importing Guild AI runs: Guild's output
scalars are written as event files under ``.guild/``. No TensorFlow, torch or tensorboard import:
the TFRecord framing (``uint64 length``, ``uint32 crc``, ``data``, ``uint32 crc``) and just enough
of the ``Event`` protobuf (``wall_time`` 1, ``step`` 2, ``summary`` 5 of ``value`` 1 items: ``tag``
1, ``simple_value`` 2, or a scalar ``tensor`` 8).

The file is untrusted: every length is bounds-checked against what is left, a record over
MAX_RECORD (images, graphs) is stepped over unread, and malformed data ends the file's reading
(what came before it is kept). CRCs are not checked: a record that parses is as good as any.
When the live event-file reader (``_tfevents``, another engineer's) is on main, this module can
become a call to it.
"""

from __future__ import annotations

import math
import struct
from typing import Any, BinaryIO

MAX_RECORD = 16 << 20
MAX_ROWS = 1_000_000  # per file: a scalar row is ~100 bytes in scalars.jsonl
_Q = struct.Struct("<Q")
_F = struct.Struct("<f")
_D = struct.Struct("<d")
_DT_FLOAT, _DT_DOUBLE = 1, 2


class _Bad(ValueError):
    pass


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    out = shift = 0
    while pos < end and shift < 70:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7
    raise _Bad("truncated varint")


def _fields(buf: bytes, pos: int, end: int) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of a message: an int, or (start, end) of a length-delimited field."""
    out: list[tuple[int, int, Any]] = []
    while pos < end:
        key, pos = _varint(buf, pos, end)
        num, wire = key >> 3, key & 7
        val: Any
        if wire == 0:
            val, pos = _varint(buf, pos, end)
        elif wire == 1:
            if pos + 8 > end:
                raise _Bad("truncated fixed64")
            val, pos = buf[pos : pos + 8], pos + 8
        elif wire == 5:
            if pos + 4 > end:
                raise _Bad("truncated fixed32")
            val, pos = buf[pos : pos + 4], pos + 4
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            if n > end - pos:
                raise _Bad("field longer than its message")
            val, pos = (pos, pos + n), pos + n
        else:
            raise _Bad(f"wire type {wire}")
        out.append((num, wire, val))
    return out


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _float32(v: float) -> float | None:
    """A float32 as the shortest decimal that reads back as it (0.9, not 0.8999999761581421)."""
    if not math.isfinite(v):
        return None
    exact = _F.pack(v)
    for digits in range(1, 10):
        short = float(f"{v:.{digits}g}")
        if _F.pack(short) == exact:
            return short
    return v


def _tensor(buf: bytes, start: int, end: int) -> float | None | bool:
    """A scalar tensor's value; False when the tensor holds no float scalar."""
    dtype, vals = 0, []
    content = None
    for num, wire, val in _fields(buf, start, end):
        if num == 1 and wire == 0:
            dtype = val
        elif num == 4 and wire == 2:
            content = buf[val[0] : val[1]]
        elif num == 5 and wire == 5:
            vals.append(_F.unpack(val)[0])
        elif num == 5 and wire == 2 and val[1] - val[0] == 4:  # packed, one float
            vals.append(_F.unpack(buf[val[0] : val[1]])[0])
        elif num == 6 and wire == 1:
            vals.append(_D.unpack(val)[0])
        elif num == 6 and wire == 2 and val[1] - val[0] == 8:
            vals.append(_D.unpack(buf[val[0] : val[1]])[0])
    if content is not None and dtype == _DT_FLOAT and len(content) == 4:
        vals.append(_F.unpack(content)[0])
    elif content is not None and dtype == _DT_DOUBLE and len(content) == 8:
        vals.append(_D.unpack(content)[0])
    if len(vals) != 1 or dtype not in (_DT_FLOAT, _DT_DOUBLE, 0):
        return False
    return _finite(vals[0]) if dtype == _DT_DOUBLE else _float32(vals[0])


def event_rows(data: bytes) -> list[dict[str, Any]]:
    """The scalar rows (``step``, ``key``, ``value``, ``time``) of one ``Event`` record."""
    wall, step, summary = None, 0, None
    for num, wire, val in _fields(data, 0, len(data)):
        if num == 1 and wire == 1:
            wall = _D.unpack(val)[0]
        elif num == 2 and wire == 0:
            step = val - (1 << 64) if val >= 1 << 63 else val
        elif num == 5 and wire == 2:
            summary = val
    if summary is None:
        return []
    rows = []
    for num, wire, val in _fields(data, *summary):
        if num != 1 or wire != 2:
            continue
        tag: str | None = None
        value: float | None | bool = False
        for vnum, vwire, v in _fields(data, *val):
            if vnum == 1 and vwire == 2:
                tag = data[v[0] : v[1]].decode("utf-8", "replace")
            elif vnum == 2 and vwire == 5:
                value = _float32(_F.unpack(v)[0])
            elif vnum == 8 and vwire == 2 and value is False:
                value = _tensor(data, *v)
        if tag and value is not False:
            row = {"step": step, "key": tag, "value": value}
            if wall is not None and math.isfinite(wall):
                row["time"] = round(wall, 3)
            rows.append(row)
    return rows


def read_scalars(f: BinaryIO, size: int) -> tuple[list[dict[str, Any]], str]:
    """Every scalar row in the event file open as ``f`` (``size`` bytes long, as found when
    opened), and what stopped the reading early ("" when it read to the end)."""
    rows: list[dict[str, Any]] = []
    pos = 0
    while pos + 12 <= size:
        header = f.read(12)
        if len(header) < 12:
            return rows, ""
        (length,) = _Q.unpack_from(header)
        pos += 12
        if length > size - pos - 4:
            return rows, "a record longer than the file (cut short?)"
        if length > MAX_RECORD:
            f.seek(length + 4, 1)
            pos += length + 4
            continue
        data = f.read(length)
        f.read(4)
        pos += length + 4
        try:
            rows.extend(event_rows(data))
        except (_Bad, struct.error, OverflowError) as e:
            return rows, f"a malformed record ({e})"
        if len(rows) > MAX_ROWS:
            return rows[:MAX_ROWS], f"more than {MAX_ROWS} scalars"
    return rows, ""
