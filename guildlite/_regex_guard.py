"""Regexes that cannot hang a command: the ``~`` of ``--filter``, and an op's own output-scalars
patterns where guildlite scans output itself (``_output_scan``).

A ``~`` filter runs a user's regex over text anyone may have written (labels, notes, flags of
imported runs), and an op's ``output-scalars`` patterns run over a script's output; Python's ``re``
backtracks: ``(a+)+$`` against 30 ``a`` and a ``!``, or ``.*.*x`` against a note of a few thousand
characters, would run for minutes to years. No rule on the pattern's shape catches every such
case, so they get a time limit instead: ``re`` checks for signals while it matches (every few
thousand steps), so a SIGALRM handler can stop it. One interval timer serves two kinds of limit:

- ``time_limit()``: each ``search`` made inside is stopped once it has run ``LIMIT_S``
  (``RegexTooSlow`` naming its pattern); the time between searches is not counted;
- ``budget(seconds)``: the whole block is stopped once it has run ``seconds`` (``RegexTooSlow``
  with no pattern), wherever it is: it holds regexes run by other code (``_scalars``).

Both may be active at once (nested either way). The timer fires at the earliest moment either
limit could be reached and is set again for the next one, so the I/O between searches is
interrupted rarely (and retried: PEP 475).

Only the main thread receives signals, and a timer that someone else set (a script's own
``signal.alarm``) is neither taken over nor cut short: there the code runs without a limit.
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
    """A search ran past ``LIMIT_S`` (``pattern``: its pattern), or a ``budget`` block past its
    time (``pattern`` "")."""

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.pattern = pattern


class _Watch:
    active = False  # the handler and the timer are this module's
    searching = False  # ``time_limit`` is active: searches are timed
    started: float | None = None  # when the search now running began (None: none is)
    pattern = ""
    deadline: float | None = None  # when the innermost ``budget`` block runs out (None: none)


def search(pattern: str, text: str, flags: int = 0) -> bool:
    """Whether ``pattern`` is found in ``text``; RegexTooSlow past the limit (under ``time_limit``)."""
    if not _Watch.searching:
        return re.search(pattern, text, flags) is not None
    _Watch.pattern, _Watch.started = pattern, time.monotonic()
    try:
        return re.search(pattern, text, flags) is not None
    finally:
        _Watch.started = None


@contextmanager
def time_limit() -> Iterator[None]:
    """Searches made inside are stopped past ``LIMIT_S`` each (see the module's rules)."""
    with _timer() as ours:
        if not ours or _Watch.searching:
            yield
            return
        _Watch.searching = True
        try:
            yield
        finally:
            _Watch.searching, _Watch.started = False, None


@contextmanager
def budget(seconds: float | None) -> Iterator[None]:
    """RegexTooSlow("") in the block once it has run ``seconds`` (None: no limit); see the module's rules."""
    if seconds is None:
        yield
        return
    with _timer() as ours:
        if not ours:
            yield
            return
        outer = _Watch.deadline
        end = time.monotonic() + max(seconds, 1e-3)
        _Watch.deadline = end if outer is None else min(outer, end)
        _set_timer(time.monotonic())
        try:
            yield
        finally:
            _Watch.deadline = outer  # a timer set for it fires early, once: the handler sets it again


@contextmanager
def _timer() -> Iterator[bool]:
    """The handler and timer installed for the block, unless they are already (True then too);
    False where they cannot be (not the main thread, no setitimer, someone else's timer)."""
    if _Watch.active:
        yield True
        return
    if (threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer")
            or signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0)):
        yield False
        return
    previous = signal.signal(signal.SIGALRM, _fired)
    _Watch.active = True
    try:
        signal.setitimer(signal.ITIMER_REAL, LIMIT_S)
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _Watch.active, _Watch.started, _Watch.deadline = False, None, None
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


def _set_timer(now: float) -> None:
    """The timer set for the earliest moment a limit could be reached (at most ``LIMIT_S`` away)."""
    due = LIMIT_S if _Watch.started is None else LIMIT_S - (now - _Watch.started)
    if _Watch.deadline is not None:
        due = min(due, _Watch.deadline - now)
    signal.setitimer(signal.ITIMER_REAL, max(due, 0.01))


def _fired(signum: int, frame: FrameType | None) -> None:
    now = time.monotonic()
    started, deadline = _Watch.started, _Watch.deadline
    if deadline is not None and now >= deadline:
        _Watch.deadline = None  # raised once: the ``budget`` block ends with it
        _Watch.started = None
        _set_timer(now)
        raise RegexTooSlow("")
    if started is not None and now - started >= LIMIT_S:
        _Watch.started = None
        _set_timer(now)
        raise RegexTooSlow(_Watch.pattern)
    _set_timer(now)
