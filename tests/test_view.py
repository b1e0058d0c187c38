"""``guildlite view`` and ``guildlite tensorboard`` over runs made in-process (Run.save + scalars.jsonl).

The page is checked in a real browser: Debian's chromium, headless, loads it from the server on
127.0.0.1 and from the --out file; the screenshot it takes is docs/view.png. One chromium serves the
session (``_browser``; driven over its DevTools pipe), each page in a fresh browser context (no
storage shared between pages). Tests needing chromium, plotly or tensorboard skip when they are missing, unless CI
is set (then they fail).
"""

from __future__ import annotations

import json
import math
import os
import queue
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from _browser import _Browser, _chromium_cmd, _need

from guildlite._run import Run, load_run
from guildlite._selection import list_runs

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "view.png"

BASELINE = "20260101T100000-aaa001"
FAILED = "20260101T100100-aaa002"
BATCH = "20260101T100200-bbb000"
TRIALS = [f"20260101T1002{i:02d}-bbb{i:03d}" for i in range(1, 5)]
ALL_IDS = {BASELINE, FAILED, BATCH, *TRIALS}
HOOKS = [
    {"plugin": "SourceCode", "hook": "on_run_staged", "priority": 0, "start": 0.0, "seconds": 0.012, "error": None},
    {"plugin": "EnvCapture", "hook": "on_run_begin", "priority": 10, "start": 0.01, "seconds": 0.031, "error": None},
    {"plugin": "Timing", "hook": "on_run_end", "priority": 50, "start": 64.2, "seconds": 0.002, "error": None},
]


# --- runs ----------------------------------------------------------------------------------------


def _run(runs_dir: Path, run_id: str, **kw: Any) -> Run:
    d = runs_dir / run_id
    d.mkdir()
    fields: dict[str, Any] = {
        "op": "train", "status": "completed", "exit_code": 0, "host": "node1",
        "created": "2026-01-01T10:00:00.000+00:00", "started": "2026-01-01T10:00:01.000+00:00",
        "stopped": "2026-01-01T10:01:05.500+00:00", "guildlite_version": "0.1.0",
    }
    run = Run(id=run_id, run_dir=d, **{**fields, **kw})
    run.save()
    return run


def _curves(run: Run, rate: float, rng: random.Random, steps: int = 50) -> None:
    with open(run.paths.scalars, "w") as f:
        for s in range(steps):
            loss = 2 * math.exp(-rate * s * 3) + 0.05 + rng.random() * 0.05
            f.write(json.dumps({"step": s * 10, "key": "loss", "value": loss}) + "\n")
            if s % 5 == 0:
                f.write(json.dumps({"step": s * 10, "key": "acc", "value": 1 - math.exp(-rate * s * 2)}) + "\n")


def make_runs(runs_dir: Path) -> Path:
    """Two single runs (one failed) and a batch of four trials (lr x optimizer), fixed ids and times."""
    runs_dir.mkdir(parents=True)
    rng = random.Random(0)
    base = _run(runs_dir, BASELINE, flags={"lr": 0.1, "optimizer": "sgd", "epochs": 5}, label="baseline",
                plugins=HOOKS, cmd=["python", "-m", "torch.distributed.run", "--nproc-per-node=1", "train.py"])
    _curves(base, 0.1, rng)
    base.paths.output_log.write_text("".join(f"iter {i}: loss {1 / (i + 1):.4f},\n" for i in range(300)))
    (base.run_dir / "ckpt").mkdir()
    (base.run_dir / "ckpt" / "model.pt").write_bytes(b"\0" * 2048)
    failed = _run(runs_dir, FAILED, flags={"lr": 5.0, "optimizer": "sgd", "epochs": 5}, status="error",
                  exit_code=1, error={"message": "loss is nan"})
    failed.paths.output_log.write_text("iter 0: loss nan,\nTraceback (most recent call last):\nValueError: nan\n")
    _run(runs_dir, BATCH, flags={"lr": [0.01, 0.1], "optimizer": ["sgd", "adam"], "epochs": 5}, is_batch=True,
         trial_ids=TRIALS, batch={"summary": {"completed": 4}})
    grid = [(lr, opt) for lr in (0.01, 0.1) for opt in ("sgd", "adam")]
    for run_id, (lr, opt) in zip(TRIALS, grid):
        t = _run(runs_dir, run_id, flags={"lr": lr, "optimizer": opt, "epochs": 5}, is_trial=True, parent_id=BATCH)
        _curves(t, lr * (2 if opt == "adam" else 1), rng)
    return runs_dir


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_runs(tmp_path_factory.mktemp("view") / "runs")


def _guildlite(*args: str, runs_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "guildlite", *args, "--runs-dir", str(runs_dir)],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def _page_data(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="gl-data">(.*?)</script>', html, re.S)
    assert m, "no data in the page"
    return json.loads(m.group(1))


class _Server:
    """A `guildlite ...` subprocess that prints the URL it serves on stdout."""

    def __init__(self, args: list[str], pattern: str, timeout: float = 60) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", "guildlite", *args], stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=lambda: [lines.put(x) for x in self.proc.stdout], daemon=True)  # type: ignore[union-attr]
        self.reader.start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            self.stderr.seek(0)
            raise AssertionError(f"no URL printed; stderr: {self.stderr.read().decode()}") from None
        m = re.search(pattern, line)
        assert m, line
        self.match = m
        self.url = m.group(1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.reader.join(timeout=10)
            self.proc.stdout.close()  # type: ignore[union-attr]
            self.stderr.close()


@pytest.fixture(scope="module")
def server(runs_dir: Path) -> Iterator[_Server]:
    _need("plotly")
    s = _Server(["view", "--port", "0", "--no-browser", "--runs-dir", str(runs_dir)],
                r"(http://127\.0\.0\.1:\d+/)")
    yield s
    s.stop()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --- view_data -----------------------------------------------------------------------------------


def test_view_data_shape(runs_dir: Path) -> None:
    from guildlite._view_data import view_data

    data = view_data(list_runs(runs_dir), runs_dir)
    json.dumps(data, allow_nan=False)  # JSON-serialisable as it is
    assert data["format"] == 1 and data["runs_dir"] == str(runs_dir)
    assert [r["id"] for r in data["runs"]] == sorted(ALL_IDS, reverse=True)  # newest first, as listed
    assert data["flag_cols"] == ["lr", "optimizer", "epochs"]
    assert data["scalar_keys"] == ["loss", "acc"]
    runs = {r["id"]: r for r in data["runs"]}

    batch = runs[BATCH]
    assert batch["is_batch"] and batch["trials"] == TRIALS and batch["series"] == {}
    assert {runs[t]["parent"] for t in TRIALS} == {BATCH}
    assert runs[TRIALS[3]]["flags"] == {"lr": 0.1, "optimizer": "adam", "epochs": 5}

    base = runs[BASELINE]
    assert base["label"] == "baseline" and base["status"] == "completed" and base["time"] == 64.5
    assert [(h["hook"], h["plugin"]) for h in base["plugins"]] == [(h["hook"], h["plugin"]) for h in HOOKS]
    loss = base["series"]["loss"]
    assert loss["step"] == list(range(0, 500, 10)) and len(loss["value"]) == 50
    assert base["series"]["acc"]["step"] == list(range(0, 500, 50))
    assert base["scalars"]["loss"]["last"] == loss["value"][-1] and base["scalars"]["loss"]["count"] == 50
    assert base["scalars"]["loss"]["min"] == min(loss["value"])
    assert base["output"].splitlines()[-1] == "iter 299: loss 0.0033,"
    assert base["output_size"] == (runs_dir / BASELINE / "output.log").stat().st_size
    assert [f[0] for f in base["files"]] == ["ckpt/model.pt", "output.log", "run.json", "scalars.jsonl"]
    assert base["files"][0][1] == 2048 and base["files_total"] == 4  # .guildlite/ left out

    failed = runs[FAILED]
    assert failed["status"] == "error" and failed["error"] == {"message": "loss is nan"}
    assert failed["series"] == {} and failed["scalars"] == {}
    assert "ValueError: nan" in failed["output"]


def test_view_data_for_the_server(runs_dir: Path) -> None:
    """The server's page holds the table's fields only (summaries from the runs index); details on request."""
    from guildlite._view_data import load_view, view_data

    full = view_data(list_runs(runs_dir), runs_dir)
    slim = load_view(runs_dir, details=False)
    assert slim["details"] is False and full["details"] is True
    assert [r["id"] for r in slim["runs"]] == [r["id"] for r in full["runs"]]
    assert slim["flag_cols"] == full["flag_cols"] and slim["scalar_keys"] == full["scalar_keys"]
    for a, b in zip(slim["runs"], full["runs"]):
        assert "series" not in a and "output" not in a and "plugins" not in a
        assert a == {k: b[k] for k in a}  # the same values as the full rows
    assert (runs_dir / ".index.sqlite").is_file()
    again = load_view(runs_dir, details=False)  # from the index this time
    assert [r["scalars"] for r in again["runs"]] == [r["scalars"] for r in slim["runs"]]
    batch_only = load_view(runs_dir, [BATCH[:-1]], details=False)
    assert {r["id"] for r in batch_only["runs"]} == {BATCH, *TRIALS}


def test_view_data_bounds_and_odd_rows(tmp_path: Path) -> None:
    """Long series are thinned (last point kept), output is a tail, bad rows are skipped, NaN is a gap."""
    from guildlite._scalars import summarize
    from guildlite._view_data import MAX_POINTS, TAIL_BYTES, TAIL_LINES, view_data

    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    run = _run(runs_dir, BASELINE, flags={"lr": float("nan")})
    rows = [{"step": s, "key": "loss", "value": 1 / (s + 1)} for s in range(5001)]
    rows += [{"step": s, "key": "val", "value": v} for s, v in enumerate([1, 0.5, None, 0.25, 0.2])]  # None: NaN
    with open(run.paths.scalars, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.write('{"key": "acc", "value": "high"}\n{"step": 3, "value": 1}\n[1, 2]\n')
        f.write('{"step": 9, "key": "acc", "val')  # torn last line
    run.paths.output_log.write_text("".join(f"line {i}\n" for i in range(10000)))
    (run.run_dir / "deep" / "er").mkdir(parents=True)
    (run.run_dir / "deep" / "er" / "x.txt").write_text("x")

    data = view_data(list_runs(runs_dir))
    (r,) = data["runs"]
    loss = r["series"]["loss"]
    assert len(loss["step"]) <= MAX_POINTS and loss["step"][-1] == 5000 and loss["value"][-1] == 1 / 5001
    assert loss["step"] == sorted(loss["step"]) and loss["step"][0] == 0
    assert r["scalars"] == summarize(run.paths.scalars)  # the same summary as compare's
    assert "acc" not in r["series"]
    assert r["series"]["val"] == {"step": [0, 1, 2, 3, 4], "value": [1, 0.5, None, 0.25, 0.2]}  # NaN: a gap
    assert r["scalars"]["val"]["count"] == 4 and r["scalars"]["val"]["last"] == 0.2
    assert r["output"].splitlines()[-1] == "line 9999"
    assert len(r["output"].splitlines()) == TAIL_LINES and len(r["output"]) <= TAIL_BYTES
    assert ["deep/er/x.txt", 1] in r["files"]
    assert r["flags"] == {"lr": r["flags"]["lr"]} and math.isnan(r["flags"]["lr"])

    from guildlite._view_page import to_json

    page = json.loads(to_json(data))  # NaN flag: null, so JSON.parse in the browser reads it
    assert page["runs"][0]["flags"]["lr"] is None
    assert page["runs"][0]["series"]["val"]["value"][2] is None


# --- view --out ----------------------------------------------------------------------------------


def test_view_out_is_one_offline_file(runs_dir: Path, tmp_path: Path) -> None:
    _need("plotly")
    from plotly.offline import get_plotlyjs

    out = tmp_path / "report.html"
    p = _guildlite("view", "--out", str(out), runs_dir=runs_dir)
    assert f"wrote {out}" in p.stderr and "7 runs" in p.stderr
    html = out.read_text()
    assert get_plotlyjs() in html  # plotly.js inlined whole
    assert not re.search(r"<script[^>]+src=", html) and not re.search(r"<link[^>]+href=", html)  # nothing fetched
    data = _page_data(html)
    assert {r["id"] for r in data["runs"]} == ALL_IDS
    rows = {r["id"]: r for r in data["runs"]}
    assert rows[BASELINE]["plugins"][1]["plugin"] == "EnvCapture"
    assert rows[TRIALS[0]]["scalars"]["loss"]["count"] == 50


def test_a_built_wheel_ships_the_page(tmp_path: Path) -> None:
    """The page's HTML/CSS/JS are package data: a non-editable install (a wheel) renders the page."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "guildlite", src / "guildlite", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
                   check=True, cwd=tmp_path, timeout=300)
    wheel = next((tmp_path / "dist").glob("guildlite-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True,
                   timeout=300)
    page_files = sorted(p.name for p in (ROOT / "guildlite" / "static").iterdir())
    assert page_files == ["view.css", "view.html", "view.js"]
    assert sorted(p.name for p in (tmp_path / "site" / "guildlite" / "static").iterdir()) == page_files
    code = ("import guildlite._view_page as v; print(v.__file__); "
            "print(v.render_html({'runs': [{'id': 'r1'}]}, js='/*plotly*/'))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert p.returncode == 0, p.stderr
    where, html = p.stdout.split("\n", 1)
    assert where.startswith(str(tmp_path / "site"))  # the installed copy, not the source tree
    assert "<title>guildlite view (1 run)</title>" in html and "/*plotly*/" in html
    assert (ROOT / "guildlite" / "static" / "view.js").read_text() in html
    assert "{{" not in html.replace((ROOT / "guildlite" / "static" / "view.js").read_text(), "")


def test_view_out_selection_brings_trials(runs_dir: Path, tmp_path: Path) -> None:
    _need("plotly")
    out = tmp_path / "batch.html"
    _guildlite("view", BATCH[:-1], "--out", str(out), runs_dir=runs_dir)
    assert {r["id"] for r in _page_data(out.read_text())["runs"]} == {BATCH, *TRIALS}
    p = _guildlite("view", "nosuchrun", "--out", str(out), runs_dir=runs_dir, check=False)
    assert p.returncode == 2 and "no run matches 'nosuchrun'" in p.stderr


def test_view_and_tensorboard_do_not_import_torch(runs_dir: Path, tmp_path: Path) -> None:
    _need("plotly")
    _need("tensorboard")
    code = (
        "import sys\n"
        "from guildlite.cli import cli\n"
        "for args in (['view', '--out', sys.argv[2]], ['tensorboard', '--no-server', '--logdir', sys.argv[3]]):\n"
        "    try:\n"
        "        cli(args + ['--runs-dir', sys.argv[1]], prog_name='guildlite')\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')\n"
    )
    p = subprocess.run([sys.executable, "-c", code, str(runs_dir), str(tmp_path / "r.html"), str(tmp_path / "tb")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "no torch"
    assert (tmp_path / "r.html").is_file() and any((tmp_path / "tb").iterdir())


@pytest.mark.parametrize(("command", "module", "extra"), [("view", "plotly", "view"),
                                                         ("tensorboard", "tensorboard", "tensorboard")])
def test_missing_extra_is_a_clear_error(runs_dir: Path, tmp_path: Path, command: str, module: str, extra: str) -> None:
    # The package is made unimportable in the child only (sys.modules[name] = None makes import fail).
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from guildlite.cli import main\n"
        f"sys.argv = ['guildlite', {command!r}, '--runs-dir', sys.argv[1], "
        + ("'--out', sys.argv[2]]" if command == "view" else "'--no-server', '--logdir', sys.argv[2]]")
        + "\nmain()\n"
    )
    target = tmp_path / "target"
    p = subprocess.run([sys.executable, "-c", code, str(runs_dir), str(target)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2
    assert f"pip install 'guildlite[{extra}]'" in p.stderr and "Traceback" not in p.stderr
    assert not target.exists()


# --- the server ----------------------------------------------------------------------------------


def test_server_answers_on_localhost(server: _Server, runs_dir: Path) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    status, body = _get(server.url)
    assert status == 200
    html = body.decode()
    assert {r["id"] for r in _page_data(html)["runs"]} == ALL_IDS and "Plotly" in html

    status, body = _get(server.url + "data.json")
    assert status == 200 and json.loads(body)["scalar_keys"] == ["loss", "acc"]
    status, body = _get(f"{server.url}run/{BASELINE}.json")  # what the page asks for a run's details
    assert status == 200
    detail = json.loads(body)
    assert detail["id"] == BASELINE and len(detail["series"]["loss"]["step"]) == 50
    assert detail["plugins"][0]["plugin"] == "SourceCode" and detail["output"].endswith("iter 299: loss 0.0033,")

    status, body = _get(f"{server.url}files/{BASELINE}/output.log")
    assert status == 200 and body == (runs_dir / BASELINE / "output.log").read_bytes()
    status, body = _get(f"{server.url}files/{BASELINE}/ckpt/model.pt")
    assert status == 200 and body == b"\0" * 2048

    for bad in (f"files/{BASELINE}/..%2f..%2f{runs_dir.name}", f"files/{BASELINE}/nope.txt", "files/..%2fx/y",
                "nope", "run/nope.json", "run/..%2f..%2fx.json", f"run/{BASELINE[:10]}.json"):
        status, _ = _get(server.url + bad)
        assert status == 404, bad
    status, body = _get(server.url, headers={"Host": "attacker.example:80"})  # DNS rebinding
    assert status == 403


def test_server_sees_new_runs_on_reload(server: _Server, runs_dir: Path) -> None:
    status, body = _get(server.url + "data.json")
    before = {r["id"] for r in json.loads(body)["runs"]}
    new = _run(runs_dir, "20260101T100300-ccc001", flags={"lr": 0.2})
    try:
        status, body = _get(server.url + "data.json")
        assert status == 200 and {r["id"] for r in json.loads(body)["runs"]} == before | {new.id}
    finally:
        shutil.rmtree(new.run_dir)


def test_server_stops_on_sigterm(runs_dir: Path) -> None:
    _need("plotly")
    s = _Server(["view", "--port", "0", "--no-browser", "--runs-dir", str(runs_dir)], r"(http://127\.0\.0\.1:\d+/)")
    assert _get(s.url)[0] == 200
    assert s.stop() == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(s.url, timeout=5)


# --- a real browser ------------------------------------------------------------------------------


def _chromium(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [*_chromium_cmd(tmp), "--virtual-time-budget=15000", *args, url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env={**os.environ, "TZ": "UTC"})
    assert p.returncode == 0, p.stderr[-2000:]
    return p


def _check_dom(dom: str) -> None:
    assert 'data-ready="1"' in dom, "the page's script did not finish"
    assert re.search(r'<div id="errors" hidden="">\s*</div>', dom), "the page reported errors"
    ids = re.findall(r'<tr class="run ([a-z ]+)" data-id="([^"]+)"', dom)
    # Newest first, trials right under their batch; the batch is the current run (from the URL).
    assert [i for _, i in ids] == [BATCH, *reversed(TRIALS), FAILED, BASELINE]
    assert [k.split()[0] for k, _ in ids] == ["batch"] + ["trial"] * 4 + ["single"] * 2
    assert "current" in ids[0][0].split()
    # Curves of the batch's trials (one plot per scalar key) and the batch plot, drawn by plotly as SVG.
    curves = re.findall(r'<div class="plot curve js-plotly-plot" data-key="(\w+)"', dom)
    assert curves == ["loss", "acc"]
    assert 'class="plot batch-plot js-plotly-plot"' in dom
    assert len(re.findall(r'class="main-svg"', dom)) >= 3
    assert dom.count('class="scatterlayer') >= 2 and "baseline" in dom


def test_browser_renders_served_page(server: _Server, browser: _Browser, tmp_path: Path) -> None:
    dom = browser.dom(f"{server.url}#run={BATCH}")
    _check_dom(dom)
    batch_plot = dom.split('class="plot batch-plot js-plotly-plot"', 1)[1]
    assert batch_plot.count('<path class="point') == 8  # scatter per flag (lr, optimizer): a point per trial each
    assert f'href="/files/{BASELINE}' not in dom  # files of the batch are shown, not another run's
    assert re.search(r'<a href="/files/' + BATCH + r'/run.json"', dom)

    # Screenshot for the docs: the batch open, its trials' curves overlaid.
    shot = tmp_path / "view.png"
    _chromium(f"{server.url}#run={BATCH}", tmp_path, "--window-size=1200,800", f"--screenshot={shot}")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1200, 800)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    if not SCREENSHOT.exists() or SCREENSHOT.read_bytes() != png:
        shutil.copyfile(shot, SCREENSHOT)


def test_browser_renders_static_file(runs_dir: Path, browser: _Browser, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    _guildlite("view", "--out", str(out), runs_dir=runs_dir)
    dom = browser.dom(f"{out.as_uri()}#run={BATCH}&plot=parcoords&metric=acc")
    _check_dom(dom)
    assert 'class="parcoords' in dom  # the batch as parallel coordinates (WebGL lines, SVG axes)
    assert f'href="{(runs_dir / BATCH / "run.json").as_uri()}"' in dom  # a static page links files on disk


def test_browser_opens_a_run_panel(server: _Server, browser: _Browser) -> None:
    dom = browser.dom(f"{server.url}#run={BASELINE}")
    assert 'data-ready="1"' in dom
    panel = dom.split('<section id="panel">', 1)[1]
    assert "baseline" in panel and "EnvCapture" in panel and "on_run_end" in panel  # the hook trace
    assert "iter 299: loss 0.0033," in panel  # output tail
    assert f'<a href="/files/{BASELINE}/ckpt/model.pt" target="_blank">ckpt/model.pt</a>' in panel
    # No URL selection: the newest runs with scalars are plotted (trials and baseline), one plot per key.
    assert re.findall(r'data-key="(\w+)"', dom.split('<div id="curves">', 1)[1].split("</section>", 1)[0]) == [
        "loss", "acc"]


# --- tensorboard ---------------------------------------------------------------------------------


def _events(sub: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(sub), size_guidance={"tensors": 0})
    acc.Reload()
    return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


def test_tensorboard_event_files(runs_dir: Path, tmp_path: Path) -> None:
    _need("tensorboard")
    logdir = tmp_path / "tb"
    p = _guildlite("tensorboard", "--no-server", "--logdir", str(logdir), runs_dir=runs_dir)
    assert p.stdout.strip() == str(logdir)
    names = sorted(d.name for d in logdir.iterdir())
    assert names == sorted([
        f"{BASELINE}-baseline-lr=0.1,optimizer=sgd,epochs=5", f"{FAILED}-lr=5.0,optimizer=sgd,epochs=5",
        f"{TRIALS[0]}-lr=0.01,optimizer=sgd,epochs=5", f"{TRIALS[1]}-lr=0.01,optimizer=adam,epochs=5",
        f"{TRIALS[2]}-lr=0.1,optimizer=sgd,epochs=5", f"{TRIALS[3]}-lr=0.1,optimizer=adam,epochs=5",
    ])  # one per run with id, label and flags; the batch itself has no scalars
    sub = logdir / f"{BASELINE}-baseline-lr=0.1,optimizer=sgd,epochs=5"
    events = _events(sub)
    rows = [json.loads(x) for x in (runs_dir / BASELINE / "scalars.jsonl").read_text().splitlines()]
    for key in ("loss", "acc"):
        want = [(r["step"], r["value"]) for r in rows if r["key"] == key]
        assert [s for s, _ in events[key]] == [s for s, _ in want]
        assert [v for _, v in events[key]] == pytest.approx([v for _, v in want], rel=1e-6)  # float32
    assert _events(logdir / f"{FAILED}-lr=5.0,optimizer=sgd,epochs=5") == {}  # the failed run logged nothing

    # Again: unchanged runs are left alone (no duplicate points); a relabelled run moves.
    p = _guildlite("tensorboard", "--no-server", "--logdir", str(logdir), runs_dir=runs_dir)
    assert "0 written, 6 unchanged" in p.stderr
    assert len(_events(sub)["loss"]) == 50 and len(list(sub.glob("events.out.tfevents.*"))) == 1
    load_run(runs_dir / BASELINE).update(label="lr 0.1 / best?")
    try:
        p = _guildlite("tensorboard", BASELINE, "--no-server", "--logdir", str(logdir), runs_dir=runs_dir)
        moved = logdir / f"{BASELINE}-lr_0.1_best-lr=0.1,optimizer=sgd,epochs=5"
        assert moved.is_dir() and not sub.exists() and len(_events(moved)["loss"]) == 50
    finally:
        load_run(runs_dir / BASELINE).update(label="baseline")


def test_tensorboard_serves_on_localhost(runs_dir: Path) -> None:
    _need("tensorboard")
    s = _Server(["tensorboard", BATCH[:-1], "--port", "0", "--runs-dir", str(runs_dir)],
                r"TensorBoard at (http://127\.0\.0\.1:\d+/) .*logdir (\S+)\)", timeout=90)
    logdir = Path(s.match.group(2))
    assert logdir.is_dir()
    try:
        status, body = _get(s.url + "data/runs")
        assert status == 200
        assert sorted(json.loads(body)) == sorted(
            f"{t}-lr={lr},optimizer={opt},epochs=5" for t, (lr, opt) in
            zip(TRIALS, [(0.01, "sgd"), (0.01, "adam"), (0.1, "sgd"), (0.1, "adam")]))
    finally:
        assert s.stop() == 0
    assert not logdir.exists()  # the temp logdir went with TensorBoard
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(s.url, timeout=5)  # TensorBoard stopped with guildlite


def test_browser_page_shows_run_text_as_text(browser: _Browser, tmp_path: Path) -> None:
    """Labels, flags and output are text on the page, never markup, even when they look like it."""
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    evil = "</script><img src=x onerror=\"document.title='pwned'\">"
    run = _run(runs_dir, BASELINE, label=evil, flags={"<b>": evil}, status="running")  # no owner: terminated
    run.paths.output_log.write_text(evil + "\n")
    out = tmp_path / "report.html"
    _guildlite("view", "--out", str(out), runs_dir=runs_dir)
    assert _page_data(out.read_text())["runs"][0]["label"] == evil
    dom = browser.dom(f"{out.as_uri()}#run={BASELINE}")
    assert 'data-ready="1"' in dom and "pwned" not in dom.split("<title>", 1)[1].split("</title>", 1)[0]
    assert re.search(r'<div id="errors" hidden="">\s*</div>', dom)
    body = dom.split("<body", 1)[1].split('<script type="application/json"', 1)[0]
    assert "<img" not in body  # no element made from the text
    assert "&lt;/script&gt;&lt;img src=x" in dom  # shown as text (in the table, the panel, the output)
    assert "st-terminated" in dom and "Tick runs in the table" in dom  # nothing to plot: no scalars


def test_browser_sorts_and_filters(runs_dir: Path, browser: _Browser, tmp_path: Path) -> None:
    """Sorting and filtering happen in the page (their state is in the URL, as a click leaves it)."""
    out = tmp_path / "report.html"
    _guildlite("view", "--out", str(out), runs_dir=runs_dir)

    def rows(fragment: str) -> list[str]:
        dom = browser.dom(f"{out.as_uri()}#{fragment}")
        assert 'data-ready="1"' in dom
        return re.findall(r'<tr class="run [a-z ]+" data-id="([^"]+)"', dom)

    # By final loss, descending: the batch goes where its first trial in that order would, its
    # trials in order under it; a run without a loss goes last.
    assert rows("sort=-scalar:loss") == [BATCH, TRIALS[0], TRIALS[1], TRIALS[2], TRIALS[3], BASELINE, FAILED]
    # Every word typed must match ("lr=0.1": not the batch's own lr list, but two of its trials).
    assert rows("sort=scalar:loss&q=LR%3D0.1") == [BATCH, TRIALS[3], TRIALS[2], BASELINE]
    assert rows("status=error&q=sgd") == [FAILED]
