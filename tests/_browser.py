"""The browser the view tests check pages in: Debian's chromium, headless, one for the whole
session (``browser`` in conftest), driven over its DevTools pipe; each page loads in a fresh
browser context (no storage shared between pages). Tests needing chromium, plotly or tensorboard
skip when they are missing, unless CI is set (then they fail)."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

REQUIRED = bool(os.environ.get("CI"))
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _need(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        why = f"{module} is not installed (pip install -e '.[test]')"
        if REQUIRED:
            pytest.fail(f"{why}; CI is set, so this test must run")
        pytest.skip(why)


def _need_chromium() -> str:
    _need("plotly")
    if CHROMIUM is None:
        why = "chromium is not installed (apt-get install -y chromium)"
        if REQUIRED:
            pytest.fail(f"{why}; CI is set, so the browser tests must run")
        pytest.skip(why)
    return CHROMIUM


def _chromium_cmd(tmp: Path) -> list[str]:
    return [
        _need_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
        "--hide-scrollbars",
    ]


class _Browser:
    """One headless chromium driven over ``--remote-debugging-pipe`` (DevTools protocol: JSON
    messages ended by NUL, commands on its fd 3, answers on its fd 4): starting chromium costs
    seconds, a page in it a fraction of one."""

    def __init__(self, tmp: Path) -> None:
        to_browser, self._in = os.pipe()
        self._out, from_browser = os.pipe()
        self.log = tempfile.TemporaryFile()

        def fds() -> None:  # the pipe ends chromium expects, as fds 3 and 4 (moved clear of them first)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            for fd, want in zip(high, (3, 4)):
                os.dup2(fd, want)

        self.proc = subprocess.Popen([*_chromium_cmd(tmp), "--remote-debugging-pipe", "about:blank"],
                                     preexec_fn=fds, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, env={**os.environ, "TZ": "UTC"})
        os.close(to_browser)
        os.close(from_browser)
        self._buf = b""
        self._ids = iter(range(1, 1 << 30))

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """A command's result (events in between are skipped); fail on an error or a dead browser."""
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._in, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + 90  # as the one-shot chromium's own timeout
        while True:
            while b"\0" not in self._buf:
                ready, _, _ = select.select([self._out], [], [], max(0.0, deadline - time.monotonic()))
                assert ready, f"chromium did not answer {method} in 90s"
                chunk = os.read(self._out, 1 << 20)
                if not chunk:
                    self.log.seek(0)
                    raise AssertionError(f"chromium went away: {self.log.read().decode(errors='replace')[-2000:]}")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == msg_id:
                assert "error" not in answer, (method, answer["error"])
                return answer["result"]

    def dom(self, url: str, timeout: float = 60) -> str:
        """The page's DOM (what ``--dump-dom`` prints) once its script has finished (body data-ready
        set), loaded in a new browser context of its own."""
        return str(self.evaluate(url, "document.documentElement.outerHTML", timeout=timeout)[0])

    def evaluate(self, url: str, *expressions: str, timeout: float = 60) -> list[Any]:
        """The values of ``expressions`` (JavaScript, evaluated in turn; a promise is awaited) in
        the page at ``url`` once its script has finished, loaded as ``dom`` loads it."""
        context = self.send("Target.createBrowserContext")["browserContextId"]
        target = self.send("Target.createTarget", url="about:blank", browserContextId=context)["targetId"]
        try:
            session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.send("Page.navigate", session, url=url)
            deadline = time.monotonic() + timeout
            ready = "document.body && document.body.dataset.ready || ''"
            while not self.send("Runtime.evaluate", session, expression=ready, returnByValue=True)["result"]["value"]:
                assert time.monotonic() < deadline, f"{url}: no data-ready after {timeout}s"
                time.sleep(0.05)
            # a frame later, as a dump after the page went idle would see it
            settle = "new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))"
            self.send("Runtime.evaluate", session, expression=settle, awaitPromise=True)
            values = []
            for expression in expressions:
                answer = self.send("Runtime.evaluate", session, expression=expression, returnByValue=True,
                                   awaitPromise=True)
                assert "exceptionDetails" not in answer, (expression, answer["exceptionDetails"])
                values.append(answer["result"].get("value"))
            return values
        finally:
            self.send("Target.closeTarget", targetId=target)
            self.send("Target.disposeBrowserContext", browserContextId=context)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)
        self.log.close()
