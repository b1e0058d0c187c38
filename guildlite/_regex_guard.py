"""Regex searches that cannot hang a command (the ``~`` of ``--filter``).

A ``~`` filter runs a user's regex over text anyone may have written (labels, notes, flags of
imported runs), and Python's ``re`` backtracks: ``(a+)+$`` against 30 ``a`` and a ``!``, or
``.*.*x`` against a note of a few thousand characters, would run for minutes to years. No rule
on the pattern's shape catches every such case, so searches get a time limit instead: ``re``
checks for signals while it matches (every few thousand steps), so a SIGALRM handler can stop a
search. While ``time_limit()`` is active, one interval timer watches: when it fires during a
search that has run ``LIMIT_S``, the search ends with ``RegexTooSlow``; otherwise it is set again
for the time left. It fires at most once per ``LIMIT_S``, so the I/O between searches is
interrupted rarely (and retried: PEP 475).

Only the main thread receives signals, and a timer that someone else set (a script's own
``signal.alarm``) is not taken over: there searches run without a limit.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

LIMIT_S = 2.0  # per search; a sane regex over a label or note takes microseconds


class RegexTooSlow(Exception):
    """A search ran past ``LIMIT_S``: ``pattern`` backtracks catastrophically on some text."""

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.pattern = pattern


class _Watch:
    active = False
    started: float | None = None  # when the search now running began (None: none is)
    pattern = ""


def search(pattern: str, text: str, flags: int = 0) -> bool:
    """Whether ``pattern`` is found in ``text``; RegexTooSlow past the limit (under ``time_limit``)."""
    if not _Watch.active:
        return re.search(pattern, text, flags) is not None
    _Watch.pattern, _Watch.started = pattern, time.monotonic()
    try:
        return re.search(pattern, text, flags) is not None
    finally:
        _Watch.started = None


@contextmanager
def time_limit() -> Iterator[None]:
    """Searches made inside are stopped past ``LIMIT_S`` each (see the module's rules)."""
    if (_Watch.active or threading.current_thread() is not threading.main_thread()
            or not hasattr(signal, "setitimer") or signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0)):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _fired)
    _Watch.active = True
    try:
        signal.setitimer(signal.ITIMER_REAL, LIMIT_S)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _Watch.active, _Watch.started = False, None
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


def _fired(signum: int, frame: FrameType | None) -> None:
    started = _Watch.started
    ran = 0.0 if started is None else time.monotonic() - started
    if started is not None and ran >= LIMIT_S:
        _Watch.started = None
        raise RegexTooSlow(_Watch.pattern)
    signal.setitimer(signal.ITIMER_REAL, max(LIMIT_S - ran, 0.01))
