"""What a new user ran into (issue 21, "Friction found by trying it as a new user"), each as the
user met it: the real CLI in subprocesses, real run dirs, real jobs and signals.

Selectors: the short id that listings show (``↳ 14ea6d``) selects a run everywhere, and a word that
is both an index and a short id is an error naming both. ``--batch`` given a trial or a single run
says what it is (exit 2), and ``--sort``/``--columns`` on an empty selection do not call a column
unknown. Listings put the flags that vary first. ``ops`` lists an op whose flags-import fails
with its error, and never runs a script that has no parser. Ctrl-C exits 130 whatever the
launcher. A veto is in output.log and said once. ``runs WORD`` names no other command.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from conftest import GUILDLITE, TRACEBACK, Project, wait_until

SHORT = re.compile(r"↳ ([0-9a-f]{6})")


def _ok(cp: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)
    assert TRACEBACK not in cp.stderr
    return cp


def _ids(proj: Project) -> list[str]:
    """Run ids, newest first (as indexes count)."""
    return sorted((d.name for d in proj.run_dirs()), reverse=True)


# --- selectors ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, str]]:
    """A quick batch (epochs varies; epochs is the op's 2nd flag) and one single run after it;
    and what the batch printed on stderr."""
    from conftest import write_project

    base = tmp_path_factory.mktemp("friction")
    proj = Project(root=write_project(base / "project"), runs_dir=base / "runs")
    batch = _ok(proj.run("run", "quick", "epochs=[1,2]", "-y"))
    _ok(proj.run("run", "quick", "lr=0.5", "-y"))
    yield proj, batch.stderr
    proj.cleanup()


@pytest.fixture
def batch_project(made: tuple[Project, str]) -> Project:
    return made[0]


def test_the_short_id_a_listing_shows_selects_that_run_everywhere(batch_project: Project) -> None:
    proj = batch_project
    listing = _ok(proj.run("runs")).stdout
    shown = SHORT.findall(listing)
    assert shown, listing  # the trials show their batch's short id
    batch_short = shown[0]
    batch = next(i for i in _ids(proj) if i.endswith(batch_short))
    info = json.loads(_ok(proj.run("runs", "info", batch_short, "--json")).stdout)
    assert info["id"] == batch and info["is_batch"]
    # The short id of any run, as `runs` would show it for its trials, in every kind of command.
    single = _ids(proj)[0]
    short = single[-6:]
    assert json.loads(_ok(proj.run("runs", "info", short, "--json")).stdout)["id"] == single
    assert json.loads(_ok(proj.run("runs", "info", short.upper(), "--json")).stdout)["id"] == single
    assert "hello rank=0" in _ok(proj.run("cat", short)).stdout
    assert [r["id"] for r in json.loads(_ok(proj.run("compare", short, "--json")).stdout)] == [single]
    assert _ok(proj.run("ls", short)).stdout.startswith(str(proj.runs_dir / single))
    trials = json.loads(_ok(proj.run("compare", "--batch", batch_short, "--json")).stdout)
    assert len(trials) == 2 and all(t["batch"] == batch for t in trials)
    rows = json.loads(_ok(proj.run("runs", "--batch", batch_short, "--json")).stdout)
    assert {r["id"] for r in rows} == {batch, *(t["id"] for t in trials)}
    _ok(proj.run("label", short, "picked"))
    assert proj.record(single)["label"] == "picked"


def test_a_word_that_is_an_index_and_a_short_id_is_an_error_naming_both(make_project: Callable[..., Project]) -> None:
    proj = make_project()
    for _ in range(3):
        _ok(proj.run("run", "quick", "-y"))
    newest, second, oldest = _ids(proj)
    # A short id made of digits only (1 in 15 ids are): give the oldest run the short id 000002,
    # while index 2 is another run.
    digits = oldest[:-6] + "000002"
    (proj.runs_dir / oldest).rename(proj.runs_dir / digits)
    cp = proj.run("runs", "info", "000002")
    assert cp.returncode == 2 and TRACEBACK not in cp.stderr
    assert second in cp.stderr and digits in cp.stderr and "index 2" in cp.stderr, cp.stderr
    # The whole id still selects it; a digits-only short id beyond the last index is that run.
    assert json.loads(_ok(proj.run("runs", "info", digits, "--json")).stdout)["id"] == digits
    far = newest[:-6] + "401223"
    (proj.runs_dir / newest).rename(proj.runs_dir / far)
    assert json.loads(_ok(proj.run("runs", "info", "401223", "--json")).stdout)["id"] == far
    assert json.loads(_ok(proj.run("runs", "info", "1", "--json")).stdout)["id"] == far  # indexes as before


def test_batch_given_a_trial_or_a_single_run_says_what_it_is(batch_project: Project) -> None:
    proj = batch_project
    single, trial, _, batch = _ids(proj)
    for command in (("compare",), ("runs",)):
        cp = proj.run(*command, "--batch", "2")
        assert cp.returncode == 2, (command, cp.stdout, cp.stderr)
        assert "trial" in cp.stderr and batch in cp.stderr and "no runs" not in cp.stderr, cp.stderr
        assert TRACEBACK not in cp.stderr
        cp = proj.run(*command, "--batch", single[-6:])
        assert cp.returncode == 2 and "single run" in cp.stderr and single in cp.stderr, cp.stderr
    assert trial  # the trial at index 2


def test_sort_and_columns_on_an_empty_selection_call_no_column_unknown(batch_project: Project) -> None:
    proj = batch_project
    for args in (("--op", "hello2", "--sort", "loss"), ("--status", "error", "--sort", "-lr"),
                 ("--op", "nope", "--columns", "id,loss", "--sort", "loss")):
        cp = proj.run("compare", *args)
        assert cp.returncode == 0, (args, cp.stderr)
        assert "no column" not in cp.stderr and "no runs" in cp.stderr, cp.stderr
    # With runs, an unknown column is still one.
    cp = proj.run("compare", "--sort", "nope")
    assert cp.returncode == 2 and "no column 'nope'" in cp.stderr


def test_the_flags_that_vary_come_first_in_runs_and_in_batch_progress(made: tuple[Project, str]) -> None:
    proj, batch_stderr = made
    lines = _ok(proj.run("runs", "--batch", "4")).stdout.splitlines()[1:]
    trial_lines = [x for x in lines if "↳" in x]
    assert len(trial_lines) == 2
    for line in trial_lines:  # epochs varies among the listed runs: it comes before lr (declared first)
        flags = line[line.index("epochs="):]
        assert re.match(r"epochs=\d lr=0\.1 ", flags), line
    # Over all runs, lr varies too (the last run's lr=0.5): both lead, in declared order.
    newest = _ok(proj.run("runs")).stdout.splitlines()[1]
    assert re.search(r" lr=0\.5 epochs=2 opt=sgd", newest), newest
    started = [x for x in batch_stderr.splitlines() if " started" in x]
    assert len(started) == 2 and all(re.search(r"started: epochs=\d lr=0\.1 opt=sgd", x) for x in started), started


def test_tensorboard_dir_names_put_the_varying_flags_first(batch_project: Project, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    logdir = tmp_path / "tb"
    _ok(batch_project.run("tensorboard", "--no-server", "--logdir", str(logdir), "2", "3"))
    names = sorted(d.name for d in logdir.iterdir())
    assert len(names) == 2 and all(re.search(r"-epochs=\d,lr=0\.1,opt=sgd", n) for n in names), names


# --- ops and flags-import ---------------------------------------------------------------------------

ARGPARSE = "import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float, default=0.1)\np.parse_args()\n"
# Imports argparse but never builds a parser: the old probe ran it to its end (its marker, its sleep).
NAMESPACE_ONLY = ("import argparse, time\nopen('RAN-namespace', 'w').write('ran')\n"
                  "args = argparse.Namespace(lr=0.1)\ntime.sleep(60)\n")
CRASHES = "import argparse\nraise SystemExit('cannot import the data module')\n" + ARGPARSE
NO_PARSER = "import time\nopen('RAN-plain', 'w').write('ran')\ntime.sleep(60)\n"


def test_ops_lists_every_op_even_when_flags_import_fails_for_some(make_project: Callable[..., Project]) -> None:
    gf = ("operations:\n"
          "  good: {main: good.py, flags-import: all}\n"
          "  crashes: {main: crashes.py, flags-import: all}\n"
          "  namespace: {main: namespace.py, flags-dest: args, flags-import: all}\n"
          "  plain: {main: plain.py, flags-dest: args, flags-import: [lr]}\n"
          "  declared: {main: good.py, flags: {lr: 0.2}}\n")
    proj = make_project(gf, {"good.py": ARGPARSE, "crashes.py": CRASHES, "namespace.py": NAMESPACE_ONLY,
                             "plain.py": NO_PARSER})
    t0 = time.monotonic()
    cp = _ok(proj.run("ops", timeout=50))
    assert time.monotonic() - t0 < 50  # no script ran to its end (each sleeps a minute)
    out = cp.stdout
    for name in ("good", "crashes", "namespace", "plain", "declared"):
        assert re.search(rf"^{name}  \(", out, re.M), (name, out)
    assert re.search(r"^good .*\n  lr +float +default 0\.1", out, re.M), out
    blocks = {b.split("  (")[0]: b for b in re.split(r"\n(?=\S)", out)}
    assert "error:" in blocks["crashes"] and "cannot import the data module" in blocks["crashes"]
    assert "error:" in blocks["namespace"] and "error:" in blocks["plain"]
    assert "error:" not in blocks["good"] and "error:" not in blocks["declared"]
    assert not (proj.root / "RAN-namespace").exists() and not (proj.root / "RAN-plain").exists()
    data = json.loads(_ok(proj.run("ops", "--json", timeout=50)).stdout)
    assert set(data) == {"good", "crashes", "namespace", "plain", "declared"}
    assert "error" not in data["good"] and data["good"]["flags"]["lr"]["default"] == 0.1
    assert "cannot import the data module" in data["crashes"]["error"]
    # Running the broken op still says what is wrong, as a clean error.
    cp = proj.run("run", "crashes", "-y")
    assert cp.returncode == 2 and "cannot import the data module" in cp.stderr and TRACEBACK not in cp.stderr


# --- Ctrl-C ---------------------------------------------------------------------------------------


def _started(proj: Project) -> bool:
    dirs = proj.run_dirs()
    return bool(dirs) and (dirs[-1] / "rank0.started").exists()


@pytest.mark.parametrize("op,to", [("hello", "group"), ("quick", "group"), ("quick", "guildlite")],
                         ids=["torchrun", "python", "python-sigint-to-guildlite-only"])
def test_ctrl_c_exits_130_and_the_run_is_terminated(project: Project, op: str, to: str) -> None:
    p = subprocess.Popen([*GUILDLITE, "run", op, "sleep=60", "-y"], cwd=project.root, env=project.env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    project.spawned.append(p)
    wait_until(lambda: _started(project), timeout=90, what="the job to start")
    if to == "group":  # what a terminal's Ctrl-C does: SIGINT to the foreground process group
        os.killpg(p.pid, signal.SIGINT)
    else:
        os.kill(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=90)
    assert p.returncode == 130, (p.returncode, err)
    assert project.only_record()["status"] == "terminated"


# --- vetoes ---------------------------------------------------------------------------------------

VETO = """\
from guildlite import Plugin, StopRun


class Staged(Plugin):
    def on_run_staged(self, run):
        raise StopRun("batch-size above 512 does not fit")


class Begin(Plugin):
    def on_run_begin(self, run):
        raise StopRun("no GPU big enough today")
"""


@pytest.mark.parametrize("hook,message", [("Staged", "batch-size above 512 does not fit"),
                                          ("Begin", "no GPU big enough today")])
def test_a_vetoed_run_has_its_output_log_and_the_veto_is_said_once(
        make_project: Callable[..., Project], hook: str, message: str) -> None:
    gf = f"operations:\n  v:\n    main: hello.py\n    launcher: python\n    plugins: [{{class: 'veto:{hook}'}}]\n"
    from conftest import HELLO_SCRIPT

    proj = make_project(gf, {"hello.py": HELLO_SCRIPT, "veto.py": VETO})
    cp = proj.run("run", "v", "-y")
    assert cp.returncode == 1 and TRACEBACK not in cp.stderr
    assert cp.stderr.count(message) == 1, cp.stderr
    rec = proj.only_record()
    assert rec["status"] == "error" and rec["error"]["veto"] is True
    log = (proj.runs_dir / rec["id"] / "output.log").read_text()
    assert message in log and "vetoed" in log
    assert "hello rank" not in log  # the job never ran
    assert message in _ok(proj.run("cat", "1")).stdout


# --- unknown subcommands --------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["frobnicate", "show", "exprt", "export-all"])
def test_an_unknown_runs_subcommand_gets_no_hint_to_another_command(project: Project, word: str) -> None:
    cp = project.run("runs", word, "x", "y")
    assert cp.returncode == 2 and TRACEBACK not in cp.stderr
    assert f"'{word}' is not a subcommand of runs (info, " in cp.stderr  # the subcommands there are
    for other in ("compare", "guildlite view", "guildlite run ", "Did you mean"):
        assert other not in cp.stderr, cp.stderr


@pytest.mark.parametrize("word", ["1", "2:4", "14ea6d"])
def test_a_selector_typed_after_runs_is_pointed_to_the_commands_that_take_one(project: Project, word: str) -> None:
    cp = project.run("runs", word)
    assert cp.returncode == 2 and f"guildlite compare {word}" in cp.stderr and "guildlite runs info RUN" in cp.stderr


def test_flag_order_puts_dimensions_then_varying_flags_first_keeping_each_groups_order() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from guildlite._varying import flag_order, ordered

    values = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b"]), st.lists(st.integers(0, 2), max_size=2))
    flag_sets = st.lists(st.dictionaries(st.sampled_from(["lr", "bs", "opt", "seed", "x"]), values, max_size=5),
                         max_size=5)

    @given(flag_sets, st.lists(st.sampled_from(["seed", "zz"]), max_size=2, unique=True))
    def check(sets: list[dict[str, object]], first: list[str]) -> None:
        order = flag_order(sets, first=first)
        names = list(dict.fromkeys(n for s in sets for n in s))
        assert order[:len(first)] == first and sorted(order[len(first):]) == sorted(set(names) - set(first))
        varying = {n for n in names if len({repr(s[n]) for s in sets if n in s}) > 1}
        rest = order[len(first):]
        head = [n for n in rest if n in varying]
        assert rest == head + [n for n in rest if n not in varying]  # varying ones lead
        assert head == [n for n in names if n in head]  # each group in first-seen order
        for s in sets:  # a run's flags, reordered, are the same flags
            assert dict(ordered(s, order)) == s

    check()
    assert flag_order([{"lr": 0.1, "bs": 8}, {"lr": 0.2, "bs": 8}, {"epochs": 3}]) == ["lr", "bs", "epochs"]
