"""Scalars: ``log_scalars`` for training scripts, reading a run's ``scalars.jsonl``, and the rules
that find scalars in a run's output (``OutputParser``).

Rows are JSON lines ``{"step": N, "key": "loss", "value": 0.3}``; the output-capture built-in
writes the same rows, so both feed ``compare`` and the views. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ._runfiles import RunFileError, open_file

MAX_SCALARS_BYTES = 512 << 20  # read of one scalars file; rows beyond it are left out
MAX_LINE_BYTES = 1 << 20
PATTERN_LINE_MAX = 4096  # the op's own patterns skip longer lines (see ``_builtins``: they may backtrack)
_warned = False

_KV = re.compile(r"^\s*(?P<key>[A-Za-z_][\w./-]*)\s*:\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan)\s*$")
_RANK_PREFIX = re.compile(r"^\[default(\d+)\]:")
_TASK_LABEL = re.compile(r"^\s*(\d+): ")  # the task number on each line of a run over several hosts


def log_scalars(step: int, all_ranks: bool = False, **values: float) -> None:
    """Append scalars for ``step`` to the current run's ``scalars.jsonl``.

    Only rank 0 writes unless ``all_ranks`` (then rank N writes ``scalars.rank<N>.jsonl``).
    Outside a guildlite run it does nothing, with a one-time warning.
    """
    global _warned
    run_dir = os.environ.get("GUILDLITE_RUN_DIR")
    if not run_dir:
        if not _warned:
            print("guildlite: log_scalars: not inside a guildlite run; scalars are not recorded", file=sys.stderr)
            _warned = True
        return
    rank = int(os.environ.get("RANK", "0") or 0)
    if rank != 0 and not all_ranks:
        return
    name = "scalars.jsonl" if rank == 0 else f"scalars.rank{rank}.jsonl"
    now = round(time.time(), 3)
    lines = "".join(
        json.dumps({"step": int(step), "key": k, "value": _number(v), "time": now}) + "\n" for k, v in values.items()
    )
    # One O_APPEND write per call: concurrent writers never interleave inside a line.
    fd = os.open(Path(run_dir) / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, lines.encode("utf-8"))
    finally:
        os.close(fd)


def _number(v: Any) -> float | None:
    try:
        f = float(v.item() if hasattr(v, "item") else v)
    except (TypeError, ValueError):
        raise TypeError(f"log_scalars: {v!r} is not a number") from None
    return f if math.isfinite(f) else None  # NaN/inf are not JSON: recorded as null


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every well-formed row of a scalars file (a torn last line is skipped).

    Only a regular file inside its run dir is read (``_runfiles``), and at most MAX_SCALARS_BYTES
    of it, a line at most MAX_LINE_BYTES at a time: a FIFO, ``/dev/zero`` or a sparse file of
    terabytes planted as ``scalars.jsonl`` neither blocks nor fills memory.
    """
    rows: list[dict[str, Any]] = []
    try:
        f = open_file(path.parent, path.name)
    except RunFileError:
        return rows
    with f:
        left = MAX_SCALARS_BYTES
        while left > 0 and (line := f.readline(min(left, MAX_LINE_BYTES))):
            left -= len(line)
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(row, dict) and isinstance(row.get("key"), str):  # a key names a column
                rows.append(row)
    return rows


def summarize(path: Path) -> dict[str, dict[str, Any]]:
    """Per key: last value (at the highest step seen last), min, max, last step and count."""
    out: dict[str, dict[str, Any]] = {}
    for row in read_rows(path):
        v = row.get("value")
        if not isinstance(v, (int, float)):
            continue
        s = out.get(row["key"])
        if s is None:
            out[row["key"]] = {"last": v, "min": v, "max": v, "step": row.get("step", 0), "count": 1}
            continue
        s["last"], s["step"], s["count"] = v, row.get("step", s["step"]), s["count"] + 1
        s["min"], s["max"] = min(s["min"], v), max(s["max"], v)
    return out


def output_rules(op_def: Mapping[str, Any], hosts: Sequence[str]) -> tuple[list[str] | None, bool] | None:
    """How scalars are found in a run's output: the op's ``output-scalars`` patterns (None: the
    ``key: value`` rule), and whether each line starts with its task number (a run over several
    ``hosts``); None when the op turns output scalars off."""
    patterns = op_def.get("output-scalars")
    if patterns in (False, "off", []):
        return None
    return ([patterns] if isinstance(patterns, str) else patterns or None), len(hosts) > 1


class OutputParser:
    """Scalar rows ``{"step", "key", "value"}`` from a run's output, fed one line at a time; rank 0's
    lines only (torchrun's ``[defaultN]:`` prefix; with ``task_labels``, task 0's lines).

    Without ``regexes``, ``key: number`` lines, where a ``step`` key sets the step of what follows.
    With them (the op's ``output-scalars``): each is searched in every line up to
    PATTERN_LINE_MAX characters; a group named ``step`` gives the step, one named ``total`` the
    number of steps there will be (``total``: progress), and every other named group that holds a
    number is a scalar.
    """

    def __init__(self, nproc: int, regexes: list[re.Pattern[str]] | None = None, task_labels: bool = False) -> None:
        self.nproc, self.regexes, self.task_labels = nproc, regexes, task_labels
        self.step = 0
        self.total: int | None = None  # from a pattern's ``total`` group

    def own(self, line: str) -> str | None:
        """Rank 0's text of one output line (its rank and task prefixes removed); None for another
        rank's line, or torchrun's own."""
        if self.task_labels:
            label = _TASK_LABEL.match(line)
            if label is None or label.group(1) != "0":
                return None
            line = line[label.end() :]
        m = _RANK_PREFIX.match(line)
        if m:
            if m.group(1) != "0":
                return None
            line = line[m.end() :]
        elif self.nproc > 1:
            return None  # unprefixed lines of a multi-rank job come from torchrun itself
        return line.rstrip("\n")

    def feed(self, line: str) -> Iterator[dict[str, Any]]:
        """The rows of one line (with or without its line end)."""
        own = self.own(line)
        if own is None:
            return
        yield from self.feed_own(own)

    def feed_own(self, line: str) -> Iterator[dict[str, Any]]:
        """The rows of rank 0's text of one line (``own``)."""
        if self.regexes is None:
            kv = _KV.match(line)
            if not kv:
                return
            if kv["key"] == "step":
                self.step = int(float(kv["value"]))
            else:
                yield {"step": self.step, "key": kv["key"], "value": float(kv["value"])}
            return
        if len(line) > PATTERN_LINE_MAX:
            return
        for rx in self.regexes:
            hit = rx.search(line)
            if not hit:
                continue
            groups = hit.groupdict()
            if groups.get("step") is not None:
                try:
                    self.step = int(float(groups["step"]))
                except ValueError:
                    pass
            if groups.get("total") is not None:  # how many steps there will be: progress, not a scalar
                try:
                    self.total = int(float(groups["total"]))
                except ValueError:
                    pass
            for key, text in groups.items():
                if key in ("step", "total") or text is None:
                    continue
                try:
                    yield {"step": self.step, "key": key, "value": float(text)}
                except ValueError:
                    continue
