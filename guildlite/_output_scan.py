"""Scanning a script's output for scalars as it is written: the one scan, the live capture's
(``_live.OutputSource``) and ``watch``'s (``_watch.ScalarScanner``) alike.

The output arrives as bytes in whatever pieces it is read; lines end at ``\\n``, ``\\r\\n`` or
``\\r`` (as the log read as text; tqdm redraws with ``\\r``). Each line goes to the op's rules
(``_scalars.OutputParser``: rank 0's lines only), whose own regexes run bounded by a timer
(``_regex_guard.budget``): they may backtrack catastrophically, and here they run in a guildlite process.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from ._regex_guard import RegexTooSlow, budget
from ._scalars import OutputParser

PARTIAL_MAX = 1 << 20  # a "line" longer than this with no line end yet is not scanned
Row = dict[str, Any]  # as in ``scalars.jsonl``: {"step", "key", "value"}


# tqdm's bar: `37%|███▋      | 37/100 [00:03<00:06, 10.2it/s]` (its `\r`-separated updates are lines here).
_TQDM = re.compile(r"(\d+)%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([\d:]+)<([\d:]+|\?)")


def _clock(text: str) -> float | None:
    """tqdm's ``[HH:]MM:SS`` as seconds (None for ``?``)."""
    try:
        secs = 0.0
        for part in text.split(":"):
            secs = secs * 60 + int(part)
        return secs
    except ValueError:
        return None


class OutputScanner:
    """Rows in a script's output fed as bytes, by its op's rules, and tqdm's progress bar (``bar``:
    done, total, seconds left, when it was seen).

    A "line" longer than PARTIAL_MAX with no line end yet is not scanned. ``offset`` counts the
    bytes up to just past the last line end scanned; ``pending`` holds those fed after it. The
    op's own regexes get ``budget`` seconds in all (None: no bound) plus ``per_mb`` per MB
    scanned; past it, ``note`` says so (``slow_note``) and nothing more is scanned.
    """

    def __init__(self, parser: OutputParser, budget: float | None, slow_note: str, per_mb: float = 0.0,
                 hosts: Callable[[], list[str]] | None = None, offset: int = 0, note: str | None = None) -> None:
        self.parser = parser
        self.budget, self.per_mb, self.slow_note = budget, per_mb, slow_note
        # A job away from its owner records its hosts once it starts: until they are known, asked
        # before each scan (more than one: lines carry their task number).
        self._hosts = hosts
        self.offset = offset
        self.note = note  # why the op's patterns stopped
        self.bar: tuple[int, int, float | None, float] | None = None
        self.pending = b""  # fed after the last line end
        self._skip = False  # inside a line too long to scan, until its end

    def feed(self, data: bytes, final: bool = False) -> list[Row]:
        """The rows of the lines that ``data``, the next bytes of the output, ends; ``final``: the
        output ended after them."""
        data = self.pending + data
        cut = len(data) if final else max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        if cut <= 0:
            if len(data) > PARTIAL_MAX:
                self.offset, self.pending, self._skip = self.offset + len(data), b"", True
            else:
                self.pending = data
            return []
        block, self.pending = data[:cut], data[cut:]
        self.offset += cut
        lines = block.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if block.endswith((b"\n", b"\r")):
            lines.pop()  # the empty text after the last line end
        if self._skip and lines:
            lines, self._skip = lines[1:], False
        if self.parser.regexes is not None and self.budget is not None:
            self.budget += self.per_mb * cut / 1e6
        return self._scan(lines)

    def _scan(self, lines: list[str]) -> list[Row]:
        rows: list[Row] = []
        parser = self.parser
        if lines and self._hosts is not None and (hosts := self._hosts()):
            parser.task_labels, self._hosts = len(hosts) > 1, None
        limit = self.budget if parser.regexes is not None else None  # None: no bound
        if limit is not None and self.note:
            return rows  # the patterns ran out of time earlier: the rest is not scanned
        t0 = time.monotonic()
        try:
            with budget(limit):
                for line in lines:
                    own = parser.own(line)
                    if own is None:
                        continue
                    if "%|" in own:
                        self._tqdm(own)
                    rows.extend(parser.feed_own(own))
        except RegexTooSlow:
            self.note = self.slow_note
        if limit is not None:
            self.budget = limit - (time.monotonic() - t0)
        return rows

    def _tqdm(self, line: str) -> None:
        found = list(_TQDM.finditer(line))  # a line may hold several redraws: the last counts
        m = found[-1] if found else None
        if m is not None and int(m.group(3)) > 0:
            self.bar = (int(m.group(2)), int(m.group(3)), _clock(m.group(5)), time.time())
