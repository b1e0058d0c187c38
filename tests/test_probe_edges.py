"""Edges that black-box probes of the run-listing surfaces found: dates at the ends of the calendar
in ``--filter``."""

from __future__ import annotations

import pytest
from conftest import Project

from guildlite._filter_syntax import date_period


@pytest.fixture(scope="module")
def one_run(module_project: Project) -> tuple[Project, str]:
    cp = module_project.run("run", "-y", "quick")
    assert cp.returncode == 0, cp.stderr
    return module_project, str(module_project.only_record()["id"])


@pytest.mark.parametrize("expr, matches", [
    ("started > 0001-01-01", True),
    ("started >= 0001-01", True),
    ("started < 9999-12-31", True),
    ("started <= 9999-12", True),
    ("started = 9999-12-31", False),
    ("started = 9999-12", False),
    ("started != 9999-12-31", True),
    ("started > 9999-12-31T23:59:59.999999", False),
    ("started < 0001-01-01T00:00:00+14:00", False),
    ("stopped > 0001-01-01 and started < 9999-12-31T23:59", True),
])
def test_dates_at_the_ends_of_the_calendar_are_dates(one_run: tuple[Project, str], expr: str, matches: bool) -> None:
    proj, run_id = one_run
    cp = proj.run("runs", "--json", "--filter", expr)
    assert cp.returncode == 0, cp.stderr
    assert (run_id in cp.stdout) == matches, cp.stdout


def test_the_periods_at_the_ends_of_the_calendar() -> None:
    for text in ("0001-01-01", "0001-01", "9999-12-31", "9999-12", "9999-12-31T23:59", "9999-12-31T23:59:59.5"):
        period = date_period(text)
        assert period is not None, text
        assert period[0] < period[1]
    start, end = date_period("9999-12-31T23:59Z")  # type: ignore[misc]
    assert end - start == 60
    start, end = date_period("9999-12-31")  # type: ignore[misc]
    assert end - start == 86400
    assert date_period("10000-01-01") is None and date_period("2026-02-30") is None
