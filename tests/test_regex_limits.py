"""The one timer that bounds regexes (``_regex_guard``): a ``~`` filter's searches (``time_limit``,
per search) and an op's own output-scalars patterns where guildlite scans output
(``budget``, per block), alone, nested, and beside a timer that someone else set."""

from __future__ import annotations

import re
import signal
import time
from types import FrameType
from typing import Iterator

import pytest

from guildlite._output_scan import OutputScanner
from guildlite._regex_guard import LIMIT_S, RegexTooSlow, budget, search, time_limit
from guildlite._scalars import OutputParser

EVIL = ("(a+)+$", "a" * 40 + "!")  # 2^40 steps to give up


@pytest.fixture(autouse=True)
def no_timer() -> Iterator[None]:
    """Each test starts and ends with no timer set and the default SIGALRM handler."""
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)


def _spin() -> None:
    while True:  # plain Python, no regex: a budget stops it anyway
        pass


def test_a_search_is_stopped_past_the_limit_naming_its_pattern() -> None:
    t0 = time.monotonic()
    with pytest.raises(RegexTooSlow) as e, time_limit():
        search(*EVIL)
    assert e.value.pattern == EVIL[0] and time.monotonic() - t0 < LIMIT_S + 10
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # nothing left behind


def test_a_budget_stops_its_block_wherever_it_is() -> None:
    with pytest.raises(RegexTooSlow) as e, budget(0.2):
        _spin()
    assert e.value.pattern == ""
    with budget(0.2):
        assert re.search("x", "x")  # a quick block ends as usual
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_searches_stay_bounded_after_a_nested_budget_ran_out() -> None:
    with time_limit():
        with pytest.raises(RegexTooSlow), budget(0.2):
            _spin()
        with pytest.raises(RegexTooSlow) as e:
            search(*EVIL)  # the timer was set again for the searches
        assert e.value.pattern == EVIL[0]


def test_a_budget_inside_a_budget_ends_at_the_earlier_time() -> None:
    t0 = time.monotonic()
    with pytest.raises(RegexTooSlow), budget(30), budget(0.2):
        _spin()
    assert time.monotonic() - t0 < 20


def test_the_output_scan_leaves_a_timer_someone_else_set_running() -> None:
    """An op's patterns scanned while a script's (or plugin's) own timer runs: that timer keeps its
    time and handler (the scan runs without a bound then), where the old scan cut it to nothing."""
    fired: list[int] = []

    def theirs(signum: int, frame: FrameType | None) -> None:
        fired.append(signum)

    signal.signal(signal.SIGALRM, theirs)
    signal.setitimer(signal.ITIMER_REAL, 30)
    scanner = OutputScanner(OutputParser(1, [re.compile(r"loss=(?P<loss>\S+)")]), 5.0, "too slow")
    rows = scanner.feed(b"loss=0.5\nloss=0.25\n")
    assert [r["value"] for r in rows] == [0.5, 0.25]
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert 0 < left <= 30
    assert signal.getsignal(signal.SIGALRM) is theirs
    assert not fired


def test_the_output_scan_stops_a_pattern_that_backtracks_and_says_so() -> None:
    scanner = OutputScanner(OutputParser(1, [re.compile(r"(?P<loss>(a+)+)$")]), 0.5, "patterns too slow")
    rows = scanner.feed(EVIL[1].encode() + b"\n")
    assert rows == [] and scanner.note == "patterns too slow"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
