"""``guildlite view --filter`` with a ``~`` regex: the server evaluates the filter on every page
load, over labels set after it started; one that backtracks without end must fail that load,
named, within the regex time limit, not hold the server's thread (and a CPU) for years."""

from __future__ import annotations

import json
import subprocess
from typing import Iterator

import pytest
from conftest import GUILDLITE, TRACEBACK, Project, free_port, http_get, wait_serving

EVIL_LABEL = "a" * 40 + "!"  # (a+)+$ takes 2^40 steps to give up on it


@pytest.fixture
def served(project: Project) -> Iterator[tuple[Project, str, str]]:
    """Two completed runs and ``view --filter 'label ~ "(a+)+$"'`` serving them: the project, the
    server's URL and the id of the first run."""
    pytest.importorskip("plotly")
    for _ in range(2):
        assert project.run("run", "-y", "quick").returncode == 0
    first = str(project.records()[0]["id"])
    assert project.run("label", first, "aaa").returncode == 0
    port = free_port()
    proc = subprocess.Popen([*GUILDLITE, "view", "--no-browser", "--port", str(port), "--filter",
                             'label ~ "(a+)+$"'], cwd=project.root, env=project.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_serving(url, proc)
        yield project, url, first
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        assert TRACEBACK.encode() not in err, err.decode()


def test_a_label_set_after_the_server_started_cannot_hang_a_filtered_page_load(
        served: tuple[Project, str, str]) -> None:
    project, url, first = served
    code, body = http_get(url + "data.json")
    assert code == 200 and [r["id"] for r in json.loads(body)["runs"]] == [first]
    assert project.run("label", first, EVIL_LABEL).returncode == 0
    for page in ("data.json", ""):
        code, body = http_get(url + page, timeout=60)  # the old server never answered
        assert code != 200 and b"regular expression" in body, (code, body[:500])
    # The server is still whole: other requests are answered, and the page again once the label is sane.
    assert http_get(url + "favicon.ico")[0] == 204
    assert project.run("label", first, "aaaa").returncode == 0
    code, body = http_get(url + "data.json")
    assert code == 200 and [r["id"] for r in json.loads(body)["runs"]] == [first]


def test_page_loads_made_at_once_are_all_answered(served: tuple[Project, str, str]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    project, url, first = served
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: http_get(url + "data.json"), range(16)))
    assert all(code == 200 and [r["id"] for r in json.loads(body)["runs"]] == [first] for code, body in answers)
