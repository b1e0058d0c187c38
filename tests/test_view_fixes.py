"""``view``, ``compare`` and ``tensorboard`` as a new user meets them (issue 21, "The page and the
exports"): the page's files, the report's write, header names and counts as the CLI's, numeric
axes for random values, whole-number step ticks, restarted runs' curves and times, compare's time
column, TensorBoard's default --no-server logdir, run notes in the page.

The runs are real (``launcher: python`` runs, a restart, a random batch, a restarted batch) made
once for the module; the page is checked in a real chromium (test_view's driver), in the static
file and as served.
"""

from __future__ import annotations

import ast
import json
import os
import re
import resource
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from _browser import _Browser, _need
from conftest import GUILDLITE, TRACEBACK, Project, clean_env, write_project
from test_view import _get, _page_data, _Server

from guildlite._notes import add_note
from guildlite._run import Run, load_run

ROOT = Path(__file__).resolve().parents[1]

# Logs `step: N` / `loss: X` (and `acc` from the second step on) for steps 0..steps-1. On its first
# attempt it sleeps `pause` s first, and exits 3 at step `fail_at` (a restart goes on: from the
# checkpoint in its run dir with resume=1, else from step 0).
SCRIPT = textwrap.dedent(
    """\
    import argparse, os, sys, time

    p = argparse.ArgumentParser()
    for name, kind in (("lr", float), ("loss", float), ("status", str), ("steps", int), ("epochs", int),
                       ("fail_at", int), ("resume", int), ("pause", float)):
        p.add_argument("--" + name, type=kind)
    a = p.parse_args()
    attempt = int(os.environ.get("GUILDLITE_RESTART_COUNT", "0"))
    if attempt == 0:
        time.sleep(a.pause)
    start = int(open("ckpt").read()) if attempt and a.resume and os.path.exists("ckpt") else 0
    for s in range(start, a.steps):
        if s == a.fail_at and attempt == 0:
            sys.exit(3)
        print(f"step: {s}")
        print(f"loss: {a.lr / (s + 1) + attempt}")
        if s:
            print(f"acc: {1 - 1 / (s + 1)}")
        with open("ckpt", "w") as f:
            f.write(str(s))
    """
)
NOTES = ["lr search, seed 3\n<b>not bold</b> & <script>alert(1)</script>", "second look: epochs matter"]
GUILDFILE = textwrap.dedent(
    """\
    operations:
      train:
        main: fit.py
        launcher: python
        flags:
          lr: 0.1
          loss: 0.5
          status: ok
          steps: 3
          epochs: 1
          fail_at: -1
          resume: 0
          pause: 0
    """
)


def _new_run(project: Project, *args: str) -> str:
    """Run ``guildlite run train ARGS -y``; the id of the run (or batch) it made."""
    before = set(os.listdir(project.runs_dir)) if project.runs_dir.exists() else set()
    project.run("run", "train", *args, "-y")
    made = [n for n in os.listdir(project.runs_dir) if n not in before and not n.startswith(".")]
    parents = [n for n in made if project.record(n).get("is_batch")]
    assert len(parents) == 1 or len(made) == 1, made
    return parents[0] if parents else made[0]


def _restart(project: Project, run_id: str) -> None:
    p = project.run("run", "--restart", run_id, "-y")
    assert p.returncode == 0, p.stderr


@dataclass(frozen=True)
class Made:
    """The module's runs, by role."""

    project: Project
    short: str  # steps 0, 1, 2
    rerun: str  # failed at step 3, restarted from step 0
    resumed: str  # failed at step 3, restarted from its checkpoint (step 2)
    random: str  # a random batch: lr loguniform, epochs randint
    batch: str  # a grid batch whose failed trial was restarted

    @property
    def runs_dir(self) -> Path:
        return self.project.runs_dir


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    base = tmp_path_factory.mktemp("viewfix")
    project = Project(root=write_project(base / "project", GUILDFILE, {"fit.py": SCRIPT}), runs_dir=base / "runs")
    short = _new_run(project, "steps=3")
    rerun = _new_run(project, "steps=5", "fail_at=3")
    _restart(project, rerun)
    resumed = _new_run(project, "steps=5", "fail_at=3", "resume=1")
    _restart(project, resumed)
    random = _new_run(project, "lr=loguniform[1e-4:1e-1]", "epochs=randint[1:40]", "--max-trials", "5", "--seed", "3")
    batch = _new_run(project, "fail_at=[1,-1]", "pause=1")
    _restart(project, batch)
    for note in NOTES:  # what `guildlite note RUN TEXT` calls
        add_note(load_run(project.runs_dir / random), note)
    yield Made(project, short, rerun, resumed, random, batch)
    project.cleanup()


def gl(made: Made, *args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    p = made.project.run(*args, **kw)
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def gl_in(runs_dir: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``guildlite ARGS --runs-dir RUNS_DIR`` (no project)."""
    return subprocess.run([*GUILDLITE, *args, "--runs-dir", str(runs_dir)], capture_output=True, text=True,
                          timeout=120, env=clean_env(), **kw)


@pytest.fixture(scope="module")
def report(made: Made) -> Path:
    _need("plotly")
    out = made.runs_dir.parent / "report.html"
    gl(made, "view", "--out", str(out))
    return out



@pytest.fixture(scope="module")
def server(made: Made) -> Iterator[_Server]:
    _need("plotly")
    s = _Server(["view", "--port", "0", "--no-browser", "--runs-dir", str(made.runs_dir)], r"(http://127\.0\.0\.1:\d+/)")
    yield s
    s.stop()


_AXES = """(() => {
  const gd = document.querySelector(%r);
  const L = gd._fullLayout;
  return Object.keys(L).filter(k => /^xaxis\\d*$/.test(k)).map(k => {
    const id = L[k]._id;
    return [L[k].title.text, L[k].type, [...gd.querySelectorAll('g.' + id + 'tick text')].map(t => t.textContent)];
  });
})()"""
_TRACES = """Array.from(document.querySelectorAll('.plot.curve')).filter(d => d.dataset.key === 'loss')[0]
  .data.map(t => ({x: t.x, dash: t.line.dash, legend: t.showlegend !== false, group: t.legendgroup}))"""
# What the tests ask of a page with the random batch open and the restarted runs ticked: one load each.
_QUESTIONS = {
    "summary": "document.getElementById('summary').textContent",
    "flag_titles": "[...document.querySelectorAll('#runs th.flag')].map(th => th.firstChild.textContent)",
    "scalar_titles": "[...document.querySelectorAll('#runs th.scalar')].map(th => th.firstChild.textContent)",
    "batch_axes": _AXES % ".batch-plot",
    "batch_xs": "document.querySelector('.batch-plot').data.map(t => t.x)",
    "curves": _TRACES,
    "errors": "document.getElementById('errors').textContent",
    "notes": """[...document.querySelectorAll('#panel table.notes tr')].map(tr =>
                [...tr.children].map(td => [td.textContent, td.children.length]))""",
    "notes_head": "[...document.querySelectorAll('#panel h3')].map(h => h.textContent)",
}


def _ask(browser: _Browser, url: str) -> dict[str, Any]:
    return dict(zip(_QUESTIONS, browser.evaluate(url, *_QUESTIONS.values())))


@pytest.fixture(scope="module")
def pages(made: Made, report: Path, server: _Server, browser: _Browser) -> dict[str, dict[str, Any]]:
    """The static report's answers and the served page's (``_QUESTIONS``)."""
    fragment = f"#run={made.random}&sel={made.rerun},{made.resumed}"
    answers = {"static": _ask(browser, report.as_uri() + fragment), "served": _ask(browser, server.url + fragment)}
    for page in answers.values():
        assert page["errors"] == "", page["errors"]
    return answers


def _cli_table(made: Made, *args: str) -> tuple[list[str], list[list[str]]]:
    """`guildlite compare ARGS` as printed: its columns (split on 2+ spaces) and cells by column."""
    lines = gl(made, "compare", *args).stdout.splitlines()
    head = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", head)]
    cut = [*starts, None]
    cells = [[line[a:b].strip() for a, b in zip(cut, cut[1:])] for line in lines[1:]]
    return [head[a:b].strip() for a, b in zip(cut, cut[1:])], cells


# --- the page's files and the report's write --------------------------------------------------------


def test_the_page_is_package_data_not_python_strings() -> None:
    """No HTML, CSS or JavaScript is left in the view modules: only short strings, none markup."""
    markup = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9]*[\s>/]|\bfunction\s*\(|=>|\{\s*[a-z-]+\s*:\s*[^{}]+;")
    for module in sorted((ROOT / "guildlite").glob("_view*.py")):
        tree = ast.parse(module.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                text = node.value
                assert len(text) < 200 and not markup.search(text), (module.name, node.lineno, text[:80])
    from guildlite._view_page import render_html

    static = ROOT / "guildlite" / "static"
    html = render_html({"runs": []}, js="/*plotly*/")
    for name in ("view.css", "view.js"):
        assert static.joinpath(name).read_text() in html  # the files, read as they are
    assert html.startswith(static.joinpath("view.html").read_text().split("{{", 1)[0])


def test_the_report_is_written_whole_or_not_at_all(made: Made, tmp_path: Path) -> None:
    """A report that does not fit (a file size limit: writes fail with EFBIG) leaves the previous
    one as it was and no partial file beside it, with a one-line error."""
    _need("plotly")
    out = tmp_path / "report.html"
    out.write_text("the previous report\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # the page is ~5 MB

    p = gl_in(made.runs_dir, "view", "--out", str(out), preexec_fn=limit)
    assert p.returncode == 1 and TRACEBACK not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith(f"guildlite: error: cannot write {out}: File too large")
    assert out.read_text() == "the previous report\n"
    assert sorted(os.listdir(tmp_path)) == ["report.html"]  # no temp file left


# --- names and counts as the CLI's ------------------------------------------------------------------


def test_flag_and_scalar_of_one_name_get_compare_s_headers(made: Made, pages: dict[str, dict[str, Any]]) -> None:
    cols, _ = _cli_table(made)
    assert "loss (scalar)" in cols and "status (flag)" in cols and "loss" in cols  # the flag keeps its name
    for page in pages.values():
        flags, scalars = page["flag_titles"], page["scalar_titles"]
        assert "loss" in flags and "status (flag)" in flags and "loss (scalar)" in scalars and "acc" in scalars
        assert set(flags) | set(scalars) <= set(cols)  # every page column is one compare prints
        assert len(set(flags + scalars)) == len(flags + scalars)  # no two of one name


def test_a_column_never_mixes_one_run_s_flag_and_another_s_scalar(tmp_path: Path) -> None:
    """Run A has a flag `loss`, run B only a scalar `loss`: B's goes under `loss (scalar)`, in
    compare (table, JSON) and in the page's data alike."""
    from guildlite._selection import list_runs
    from guildlite._view_data import view_data

    runs = tmp_path / "runs"
    runs.mkdir()
    for run_id, flags in (("20260101T100000-aaa001", {"loss": "l1", "id": 7}), ("20260101T100100-aaa002", {"lr": 0.1})):
        (runs / run_id).mkdir()
        Run(id=run_id, run_dir=runs / run_id, op="train", status="completed", flags=flags,
            created="2026-01-01T10:00:00+00:00").save()
    (runs / "20260101T100100-aaa002" / "scalars.jsonl").write_text(
        '{"step": 1, "key": "loss", "value": 0.25}\n{"step": 1, "key": "time", "value": 3}\n')
    rows = {r["id"]: r for r in json.loads(gl_in(runs, "compare", "--json").stdout)}
    b = rows["20260101T100100-aaa002"]
    assert b["loss (scalar)"] == 0.25 and b["loss"] is None and b["time (scalar)"] == 3
    assert rows["20260101T100000-aaa001"]["loss"] == "l1" and rows["20260101T100000-aaa001"]["id (flag)"] == 7
    data = view_data(list_runs(runs), runs)
    assert data["flag_titles"] == {"loss": "loss", "id": "id (flag)", "lr": "lr"}
    assert data["scalar_titles"] == {"loss": "loss (scalar)", "time": "time (scalar)"}


def test_header_counts_are_the_cli_s(made: Made, report: Path, pages: dict[str, dict[str, Any]]) -> None:
    listed = json.loads(gl(made, "runs", "--all", "--json").stdout)
    n = len(listed)
    assert sum(1 for r in listed if r.get("is_batch")) == 2
    assert f"({n} runs" in gl(made, "view", "--out", str(report.with_name("again.html"))).stderr
    by_status: dict[str, int] = {}
    for r in listed:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    for page in pages.values():
        summary = page["summary"]
        assert summary.startswith(f"{n} runs (2 batches): "), summary
        assert {s: int(k) for k, s in re.findall(r"(\d+) (\w+)", summary.split(": ", 1)[1])} == by_status


# --- axes -------------------------------------------------------------------------------------------


def _ticks_whole(ticks: list[str]) -> bool:
    return bool(ticks) and all(re.fullmatch(r"−?\d+", t.replace(",", "")) for t in ticks)


def test_random_values_are_on_a_numeric_axis(pages: dict[str, dict[str, Any]]) -> None:
    """A random search's lr (loguniform) is on a log axis, its epochs (randint) on a linear one with
    whole-number ticks: never evenly spaced categories."""
    for page in pages.values():
        axes = {title: (kind, ticks) for title, kind, ticks in page["batch_axes"]}
        assert axes["lr"][0] == "log", axes
        assert axes["epochs"][0] == "linear" and _ticks_whole(axes["epochs"][1]), axes
        assert all(isinstance(x, (int, float)) for xs in page["batch_xs"] for x in xs)  # the values, not text


def test_whole_number_steps_get_whole_number_ticks(made: Made, report: Path, browser: _Browser) -> None:
    url = f"{report.as_uri()}#sel={made.short}"  # steps 0, 1, 2
    zoom = ("(async () => { const gd = document.querySelector('.plot.curve');"
            " await Plotly.relayout(gd, {'xaxis.range': [0.2, 1.9]});"
            " await new Promise(r => setTimeout(r, 200)); return 1; })()")
    before, _, after = browser.evaluate(url, _AXES % ".plot.curve", zoom, _AXES % ".plot.curve")
    assert [(title, kind) for title, kind, _ in before] == [("step", "linear")]
    assert before[0][2] == ["0", "1", "2"]
    assert _ticks_whole(after[0][2]), after  # zoomed in: still whole steps only


# --- restarts ---------------------------------------------------------------------------------------


def test_a_restarted_run_s_curve_never_runs_back(made: Made, pages: dict[str, dict[str, Any]]) -> None:
    """Restarted from step 0 and resumed from its checkpoint: each attempt is a segment of its own
    (the earlier one dotted), one legend entry per run, and no segment goes back in steps."""
    for page in pages.values():
        for run_id, first, last in ((made.rerun, [0, 1, 2], [0, 1, 2, 3, 4]), (made.resumed, [0, 1, 2], [2, 3, 4])):
            traces = [t for t in page["curves"] if t["group"] == run_id]
            assert [t["x"] for t in traces] == [first, last]
            assert [t["dash"] for t in traces] == ["dot", "solid"]
            assert [t["legend"] for t in traces] == [False, True]


def test_restarts_in_the_page_data(tmp_path: Path) -> None:
    """Segments only for a restarted run, and only as many as it had restarts: a script's own step
    that goes back each epoch is left as it is. A thinned series keeps where each attempt begins."""
    from guildlite._view_data import MAX_POINTS, read_series

    path = tmp_path / "scalars.jsonl"

    def series(steps: list[int], attempts: int) -> dict[str, Any]:
        path.write_text("".join(json.dumps({"step": s, "key": "loss", "value": i}) + "\n" for i, s in enumerate(steps)))
        return read_series(path, attempts)[0]["loss"]

    assert "restarts" not in series([0, 1, 2, 0, 1], 0)  # never restarted: as logged
    assert series([0, 1, 2, 0, 1], 1)["restarts"] == [3]
    assert series([0, 1, 2, 2, 3], 1)["restarts"] == [3]  # resumed at the step it stopped at
    assert series([0, 1, 1, 2, 0, 1], 1)["restarts"] == [4]  # a step logged twice is no restart
    assert "restarts" not in series([0, 1, 0, 1, 0, 1, 0, 1], 1)  # per-epoch steps: the script's own
    assert series([0, 1, 0, 1, 0, 1], 2)["restarts"] == [2, 4]
    long = series([*range(3000), *range(1000, 4000)], 1)
    assert len(long["step"]) <= MAX_POINTS + 2
    (cut,) = long["restarts"]
    assert long["step"][cut - 1] == 2999 and long["step"][cut] == 1000 and long["step"][-1] == 3999
    assert long["step"][:cut] == sorted(long["step"][:cut]) and long["step"][cut:] == sorted(long["step"][cut:])


def _seconds(rec: dict[str, Any]) -> float:
    from datetime import datetime

    parts = [rec, *rec.get("attempts", [])]
    return sum((datetime.fromisoformat(a["stopped"]) - datetime.fromisoformat(a["started"])).total_seconds()
               for a in parts)


def test_a_restarted_batch_s_time_counts_every_attempt(made: Made, report: Path, server: _Server) -> None:
    batch = made.project.record(made.batch)
    assert len(batch["attempts"]) == 1 and batch["status"] == "completed"
    total = _seconds(batch)
    assert total >= 2.0  # its first attempt: two trials of 1 s each; the restart reran one, without a pause
    rows = {r["id"]: r for r in _page_data(report.read_text())["runs"]}
    _, body = _get(server.url + "data.json")
    served = {r["id"]: r for r in json.loads(body)["runs"]}
    shown = json.loads(gl(made, "compare", made.batch, *batch["trials"], "--json").stdout)
    listed = {r["id"]: r for r in shown}
    for run_id in [made.batch, *batch["trials"]]:
        want = pytest.approx(_seconds(made.project.record(run_id)), abs=0.002)
        assert rows[run_id]["time"] == want and served[run_id]["time"] == want and listed[run_id]["time"] == want


def test_compare_time_column_has_one_precision(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    for i, stopped in enumerate(("10:01:04.500", "10:00:03.125", "10:02:00.000", "10:00:00.050")):
        run_id = f"20260101T10000{i}-aaa00{i}"
        (runs / run_id).mkdir()
        Run(id=run_id, run_dir=runs / run_id, op="train", status="completed", created="2026-01-01T10:00:00+00:00",
            started="2026-01-01T10:00:00.000+00:00", stopped=f"2026-01-01T{stopped}+00:00").save()
    head, *lines = gl_in(runs, "compare").stdout.splitlines()
    at = head.index("time")
    cells = [line[at:].split()[0] for line in lines]
    assert sorted(cells) == ["0.1", "120.0", "3.1", "64.5"], cells
    rows = json.loads(gl_in(runs, "compare", "--json").stdout)
    assert sorted(r["time"] for r in rows) == [0.05, 3.125, 64.5, 120.0]  # JSON keeps the number


def test_compare_and_the_served_page_read_a_random_batch(made: Made, server: _Server) -> None:
    """A random batch's flags (distributions) go into the runs index as the record has them."""
    index = made.runs_dir / ".index.sqlite"
    index.unlink(missing_ok=True)
    p = gl(made, "compare", made.random)
    assert made.random in p.stdout and TRACEBACK not in p.stderr
    status, body = _get(server.url + "data.json")
    assert status == 200
    rows = {r["id"]: r for r in json.loads(body)["runs"]}
    assert rows[made.random]["flags"]["lr"] == "loguniform[0.0001:0.1]"
    assert rows[made.random]["random"] == {"lr": "loguniform", "epochs": "randint"}


# --- notes ------------------------------------------------------------------------------------------


def test_a_run_s_notes_are_in_its_details(made: Made, pages: dict[str, dict[str, Any]]) -> None:
    """`guildlite note` text is shown in the run's panel, oldest first, with its time, as text."""
    recorded = made.project.record(made.random)["notes"]
    assert [n["text"] for n in recorded] == NOTES
    for page in pages.values():
        assert "Notes" in page["notes_head"]
        assert [[text for text, _ in row] for row in page["notes"]] == [
            [_local_time(n["time"]), n["text"]] for n in recorded]
        assert all(kids == 0 for row in page["notes"] for _, kids in row)  # no element made of the text


def _local_time(iso: str) -> str:
    """The time as the page shows it in test_view's chromium (TZ=UTC)."""
    from datetime import datetime, timezone

    return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# --- tensorboard --no-server ------------------------------------------------------------------------


def test_tensorboard_no_server_writes_under_the_runs_dir(made: Made, tmp_path: Path) -> None:
    """Without --logdir, the files go to RUNS_DIR/.tensorboard (said, kept for TensorBoard),
    holding the runs asked for this time only; nothing is left in the temp dir."""
    _need("tensorboard")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    logdir = made.runs_dir.resolve() / ".tensorboard"
    p = gl(made, "tensorboard", "--no-server", env=env)
    assert p.stdout.strip() == str(logdir) and f"runs in {logdir}" in p.stderr
    ids = {d.name[:22] for d in logdir.iterdir()}
    assert {made.short, made.rerun} <= ids
    assert os.listdir(tmp) == []
    (logdir / "notes.txt").write_text("mine")
    p = gl(made, "tensorboard", made.short, "--no-server", env=env)
    assert sorted(d.name[:22] for d in logdir.iterdir()) == sorted([made.short, "notes.txt"])
    assert "1 runs" in p.stderr and os.listdir(tmp) == []
    listing = gl(made, "runs", "--all")
    assert not listing.stderr and ".tensorboard" not in listing.stdout  # not taken for a run


@pytest.mark.parametrize("planted", ["file", "link"])
def test_tensorboard_no_server_never_writes_through_what_is_planted(tmp_path: Path, planted: str) -> None:
    """A `.tensorboard` in the runs dir that is a file, or a link to elsewhere: a one-line error,
    nothing written elsewhere."""
    _need("tensorboard")
    runs = tmp_path / "runs"
    run_id = "20260101T100000-aaa001"
    (runs / run_id).mkdir(parents=True)
    Run(id=run_id, run_dir=runs / run_id, op="train", status="completed", created="2026-01-01T10:00:00+00:00").save()
    (runs / run_id / "scalars.jsonl").write_text('{"step": 1, "key": "loss", "value": 0.25}\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if planted == "file":
        (runs / ".tensorboard").write_text("not a dir")
    else:
        (runs / ".tensorboard").symlink_to(elsewhere)
    p = gl_in(runs, "tensorboard", "--no-server")
    assert p.returncode == 2 and TRACEBACK not in p.stderr, p.stderr
    assert p.stderr.startswith("guildlite: error: ") and ".tensorboard" in p.stderr and len(p.stderr.splitlines()) == 1
    assert os.listdir(elsewhere) == []
