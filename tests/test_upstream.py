"""``- operation: OP`` requirements: which upstream run (the newest completed one, or the one a
``NAME=RUN`` assignment picks; ``NAME=[A,B]`` a batch dimension), its files linked into the run dir,
the lineage recorded in run.json and shown by ``runs info``, ``runs --upstream/--downstream``,
``view`` and ``runs delete``; hostile selectors and records. Real runs (``launcher: python``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterator

import pytest
from conftest import Project, assert_clean_error, write_project

GUILDFILE = """\
operations:
  prepare:
    main: prepare.py
    launcher: python
    flags: {n: 3, code: 0}
  train:
    main: train.py
    launcher: python
    flags: {lr: 0.1}
    requires:
      - operation: prepare
  evaluate:
    main: evaluate.py
    launcher: python
    requires:
      - operation: train
        select: model\\.txt
        rename: 'model\\.txt final.txt'
        target-path: trained
  report:
    main: report.py
    launcher: python
    requires:
      - operation: train
"""

PREPARE = """\
import os, sys
n = 3
code = 0
os.makedirs("data", exist_ok=True)
with open("data/numbers.txt", "w") as f:
    f.write(" ".join(map(str, range(n))))
print("prepared", n)
sys.exit(code)
"""

TRAIN = """\
lr = 0.1
numbers = open("data/numbers.txt").read()
print("train read", numbers, "lr", lr)
with open("model.txt", "w") as f:
    f.write(f"model of {numbers}")
"""

EVALUATE = """\
import os
print("evaluate read", open("trained/final.txt").read(), sorted(os.listdir("trained")))
"""

REPORT = """\
import os
print("report sees", sorted(os.listdir(".")))
"""

FILES = {"prepare.py": PREPARE, "train.py": TRAIN, "evaluate.py": EVALUATE, "report.py": REPORT}


@pytest.fixture
def proj(make_project) -> Project:
    return make_project(GUILDFILE, FILES)


def _ok(cp) -> None:
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)


def _run(proj: Project, *args: str) -> dict:
    """Run and return the new run's record (--json)."""
    return proj.run_json("run", *args, "-y", "--json")


def _upstream_of(rec: dict) -> list[str]:
    return [e["run"] for e in rec.get("requires", []) if e.get("kind") == "operation"]


def _nothing_staged(proj: Project, before: int) -> None:
    assert len(proj.run_dirs()) == before
    if proj.runs_dir.exists():
        assert not [p for p in proj.runs_dir.iterdir() if p.name.startswith(".staging-")]


# --- which run ------------------------------------------------------------------------------------


def test_train_reads_the_newest_completed_prepare(proj: Project) -> None:
    _run(proj, "prepare", "n=3")
    newest_ok = _run(proj, "prepare", "n=4")
    cp = proj.run("run", "prepare", "n=6", "code=1", "-y")  # newer, but failed: never an upstream run
    assert cp.returncode == 1
    cp = proj.run("run", "train", "-y")
    _ok(cp)
    assert "train read 0 1 2 3 lr 0.1" in cp.stdout
    train = proj.records()[-1]
    assert train["op"] == "train" and _upstream_of(train) == [newest_ok["id"]]
    run_dir = proj.runs_dir / train["id"]
    # the upstream run's outputs only: not its source, record or log
    assert (run_dir / "data" / "numbers.txt").read_text() == "0 1 2 3"
    assert not (run_dir / "prepare.py").is_symlink()  # train's own copy of the project
    assert not (run_dir / "output.log").is_symlink()
    assert [e["target"] for e in json.loads((run_dir / ".guildlite" / "requires.json").read_text())] == [
        "data/numbers.txt"]
    assert json.loads((run_dir / "run.json").read_text())["op"] == "train"


def test_a_run_links_what_its_upstream_run_made_not_what_that_run_linked(proj: Project) -> None:
    _run(proj, "prepare")
    train = _run(proj, "train")
    cp = proj.run("run", "report", "-y")
    _ok(cp)
    # train's model.txt; not train's data/ (prepare's, linked into train), source, record or log
    own = ["output.log", "run.json", ".guildlite", *FILES, "guildfile.yml"]
    assert f"report sees {sorted(own + ['model.txt'])}" in cp.stdout
    report = proj.records()[-1]
    assert _upstream_of(report) == [train["id"]]
    assert os.readlink(proj.runs_dir / report["id"] / "model.txt") == str(proj.runs_dir / train["id"] / "model.txt")


def test_an_assignment_picks_the_upstream_run(proj: Project) -> None:
    first = _run(proj, "prepare", "n=2")
    _run(proj, "prepare", "n=5")
    cp = proj.run("run", "train", f"prepare={first['id'][:17]}", "lr=0.5", "-y")  # a prefix selects
    _ok(cp)
    assert "train read 0 1 lr 0.5" in cp.stdout
    train = proj.records()[-1]
    assert _upstream_of(train) == [first["id"]]
    assert train["flags"] == {"lr": 0.5}  # not a flag: not checked as one, not passed to the script
    assert not any("prepare" in a for a in train["cmd"])
    assert f"prepare={first['id'][:17]}" in train["opspec"]  # recorded as given
    entry = next(e for e in train["requires"] if e["kind"] == "operation")
    assert entry["source"] == "prepare" and entry["run"] == first["id"]


def test_a_named_requirement_is_picked_by_its_name(make_project) -> None:
    guildfile = GUILDFILE.replace("      - operation: prepare\n", "      - operation: prepare\n        name: dataset\n")
    proj = make_project(guildfile, FILES)
    first = _run(proj, "prepare", "n=2")
    _run(proj, "prepare", "n=4")
    cp = proj.run("run", "train", f"dataset={first['id']}", "-y")
    _ok(cp)
    assert "train read 0 1 lr" in cp.stdout
    # under its name only: `prepare=` is not an assignment of this op
    assert_clean_error(proj.run("run", "train", f"prepare={first['id']}", "-y"), 2, "prepare")


def test_missing_upstream_run_is_a_clear_error_and_nothing_is_staged(proj: Project) -> None:
    line = assert_clean_error(proj.run("run", "train", "-y"), 2, "prepare", "guildlite run prepare")
    assert "first" in line
    _nothing_staged(proj, 0)
    cp = proj.run("run", "prepare", "code=1", "-y")  # a failed run is not one
    assert cp.returncode == 1
    assert_clean_error(proj.run("run", "train", "-y"), 2, "guildlite run prepare", "error")
    _nothing_staged(proj, 1)


def _pick_error(proj: Project, *args: str) -> str:
    """The UpstreamError message for ``train ARGS`` (planned in-process: the same code as the CLI)."""
    from guildlite._guildfile import load
    from guildlite._upstream import UpstreamError, pin, split_assignments

    op = load(proj.root / "guildfile.yml").op("train")
    with pytest.raises(UpstreamError) as e:
        pin(op, proj.runs_dir, split_assignments(op, args)[1])
    assert e.value.exit_code == 2
    return str(e.value)


def test_a_picked_run_must_be_a_completed_run_of_that_op(proj: Project) -> None:
    prep = _run(proj, "prepare")
    train = _run(proj, "train")
    failed = proj.run("run", "prepare", "code=2", "-y")
    assert failed.returncode == 2
    failed_id = proj.records()[-1]["id"]
    n = len(proj.run_dirs())
    assert_clean_error(proj.run("run", "train", f"prepare={train['id']}", "-y"), 2, train["id"], "'train'", "not of")
    assert_clean_error(proj.run("run", "train", f"prepare={failed_id}", "-y"), 2, "is error, not completed")
    _nothing_staged(proj, n)
    assert "no run matches" in _pick_error(proj, "prepare=29990101T")
    assert "prepare=" in _pick_error(proj, "prepare=")
    assert "selects 2 runs" in _pick_error(proj, "prepare=2:3")
    assert "more than once" in _pick_error(proj, f"prepare={prep['id']}", f"prepare={prep['id']}")


def test_hostile_selectors_read_nothing_outside_the_runs_dir(proj: Project, tmp_path: Path) -> None:
    _run(proj, "prepare")
    outside = tmp_path / "outside"
    (outside / "20260101T000000-abcdef").mkdir(parents=True)  # looks like a run, beside the runs dir
    (outside / "20260101T000000-abcdef" / "run.json").write_text('{"op": "prepare", "status": "completed"}')
    n = len(proj.run_dirs())
    for spec in ("../outside/20260101T000000-abcdef", "[1,/etc]"):
        assert_clean_error(proj.run("run", "train", f"prepare={spec}", "-y"), 2, "prepare=")
    _nothing_staged(proj, n)
    for spec in ("../../etc", "/etc/passwd", ".trash", "..", "[../x,1]", "[1,]", "[1", "1]", "20260101T000000-abcdef"):
        assert _pick_error(proj, f"prepare={spec}").startswith("prepare=")


def test_requirement_names_cannot_be_paths_or_flags(make_project) -> None:
    bad = GUILDFILE.replace("      - operation: prepare\n", "      - operation: prepare\n        name: ../x\n")
    proj = make_project(bad, FILES, name="bad-name")
    assert_clean_error(proj.run("run", "train", "-y"), 2, "name")
    clash = GUILDFILE.replace("      - operation: prepare\n", "      - operation: prepare\n        name: lr\n")
    proj = make_project(clash, FILES, name="clash")
    _run(proj, "prepare")
    assert_clean_error(proj.run("run", "train", "-y"), 2, "'lr'", "both a flag")
    _nothing_staged(proj, 1)


def test_a_batch_is_no_upstream_run_but_its_trials_are(proj: Project) -> None:
    batch = _run(proj, "prepare", "n=[2,3]")
    assert batch["is_batch"]
    line = assert_clean_error(proj.run("run", "train", f"prepare={batch['id']}", "-y"), 2, "is a batch")
    assert batch["trials"][0] in line
    cp = proj.run("run", "train", "-y")  # the newest completed trial
    _ok(cp)
    assert _upstream_of(proj.records()[-1]) == [batch["trials"][-1]]


# --- batches ----------------------------------------------------------------------------------------


def test_a_batch_uses_one_upstream_run_for_every_trial(proj: Project) -> None:
    prep = _run(proj, "prepare")
    batch = _run(proj, "train", "lr=[0.1,0.2,0.3]")
    trials = [proj.record(t) for t in batch["trials"]]
    assert len(trials) == 3 and all(t["status"] == "completed" for t in trials)
    assert all(_upstream_of(t) == [prep["id"]] for t in trials)


def test_an_upstream_list_is_a_batch_dimension(proj: Project) -> None:
    a = _run(proj, "prepare", "n=2")
    b = _run(proj, "prepare", "n=4")
    batch = _run(proj, "train", f"prepare=[{a['id']},{b['id'][:17]}]", "lr=[0.1,0.2]")
    trials = [proj.record(t) for t in batch["trials"]]
    assert len(trials) == 4 and all(t["status"] == "completed" for t in trials)
    # the upstream dimension first, varying slowest
    assert [(_upstream_of(t)[0], t["flags"]["lr"]) for t in trials] == [
        (a["id"], 0.1), (a["id"], 0.2), (b["id"], 0.1), (b["id"], 0.2)]
    for t in trials:
        want = "0 1" if _upstream_of(t) == [a["id"]] else "0 1 2 3"
        assert (proj.runs_dir / t["id"] / "data" / "numbers.txt").read_text() == want
    assert batch["batch"]["upstream"] == {"prepare": [a["id"], b["id"]]}
    assert "prepare" not in batch["flags"]
    # a list of one run is a batch of one trial; a run given twice is refused
    one = _run(proj, "train", f"prepare=[{a['id']}]")
    assert one["is_batch"] and len(one["trials"]) == 1
    assert_clean_error(proj.run("run", "train", f"prepare=[{a['id']},{a['id']}]", "-y"), 2, "twice")


# --- lineage ----------------------------------------------------------------------------------------


def _chain(proj: Project) -> tuple[Project, dict, dict, dict]:
    """prepare -> train -> evaluate, each reading the one before."""
    prep = _run(proj, "prepare")
    train = _run(proj, "train")
    cp = proj.run("run", "evaluate", "-y")
    _ok(cp)
    assert "evaluate read model of 0 1 2 ['final.txt']" in cp.stdout  # select, rename, target-path
    return proj, prep, train, proj.records()[-1]


@pytest.fixture
def chain(proj: Project) -> tuple[Project, dict, dict, dict]:
    """A chain for a test that changes it."""
    return _chain(proj)


@pytest.fixture(scope="module")
def shared_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, dict, dict, dict]]:
    """A chain that the tests reading it share (made once)."""
    base = tmp_path_factory.mktemp("chain")
    proj = Project(root=write_project(base / "project", GUILDFILE, FILES), runs_dir=base / "runs")
    yield _chain(proj)
    proj.cleanup()


def test_lineage_in_run_json_and_runs_info(shared_chain) -> None:
    proj, prep, train, ev = shared_chain
    assert _upstream_of(train) == [prep["id"]] and _upstream_of(ev) == [train["id"]]
    info = proj.run_json("runs", "info", train["id"], "--json")
    assert info["lineage"] == {"upstream": [prep["id"]], "downstream": [ev["id"]]}
    cp = proj.run("runs", "info", train["id"])
    _ok(cp)
    text = cp.stdout
    assert "upstream:" in text and f"{prep['id']} prepare completed" in text
    assert "downstream:" in text and f"{ev['id']} evaluate completed" in text


def test_runs_upstream_and_downstream_filters_are_transitive(shared_chain) -> None:
    proj, prep, train, ev = shared_chain
    other = _run(proj, "prepare", "n=9")  # not in the chain
    down = [r["id"] for r in proj.run_json("runs", "--downstream", prep["id"], "--json")]
    assert down == [ev["id"], train["id"]]
    up = [r["id"] for r in proj.run_json("runs", "--upstream", ev["id"], "--json")]
    assert up == [train["id"], prep["id"]]
    assert other["id"] not in up + down
    both = [r["id"] for r in proj.run_json("runs", "--upstream", ev["id"], "--downstream", prep["id"], "--json")]
    assert both == [train["id"]]
    ops = [r["id"] for r in proj.run_json("runs", "--downstream", prep["id"], "--op", "train", "--json")]
    assert ops == [train["id"]]
    cp = proj.run("runs", "--downstream", ev["id"])
    _ok(cp)
    assert "no runs match" in cp.stderr
    cp = proj.run("runs", "--downstream", prep["id"])
    _ok(cp)
    assert train["id"] in cp.stdout and ev["id"] in cp.stdout and other["id"] not in cp.stdout
    assert_clean_error(proj.run("runs", "--downstream", "29990101"), 2, "no run matches")


def test_a_batchs_trials_make_it_downstream(proj: Project) -> None:
    prep = _run(proj, "prepare")
    batch = _run(proj, "train", "lr=[0.1,0.2]")
    down = {r["id"] for r in proj.run_json("runs", "--downstream", prep["id"], "--json")}
    assert down == {batch["id"], *batch["trials"]}


def test_delete_warns_about_runs_that_used_its_files(chain) -> None:
    proj, prep, train, ev = chain
    cp = proj.run("runs", "delete", prep["id"])  # not a terminal, no -y: asks, so refuses
    assert cp.returncode == 2
    assert f"run {prep['id']} is upstream of run(s) that used its files: {train['id']}" in cp.stderr
    assert "Pass -y" in cp.stderr
    assert (proj.runs_dir / prep["id"]).is_dir()
    cp = proj.run("runs", "delete", ev["id"], "-y")  # nobody used evaluate's files: no warning
    _ok(cp)
    assert "warning" not in cp.stderr
    cp = proj.run("runs", "delete", prep["id"], train["id"], "-y")  # deleted together: nobody left to warn about
    _ok(cp)
    assert "warning" not in cp.stderr


def test_delete_with_yes_still_names_the_dependents(chain) -> None:
    proj, prep, train, ev = chain
    cp = proj.run("runs", "delete", prep["id"], "-y")
    _ok(cp)
    assert "warning" in cp.stderr and train["id"] in cp.stderr
    cp = proj.run("runs", "info", train["id"])
    _ok(cp)
    assert f"{prep['id']} ? not in the runs dir" in cp.stdout  # its lineage still says where its files came from


def test_view_data_links_lineage(shared_chain) -> None:
    from guildlite._view_data import load_view

    proj, prep, train, ev = shared_chain
    for details in (True, False):
        rows = {r["id"]: r for r in load_view(proj.runs_dir, details=details)["runs"]}
        assert rows[train["id"]]["upstream"] == [prep["id"]]
        assert rows[train["id"]]["downstream"] == [ev["id"]]
        assert rows[prep["id"]]["downstream"] == [train["id"]]


def test_the_view_page_links_a_run_to_its_upstream_and_downstream_runs(shared_chain, tmp_path: Path) -> None:
    from test_view import _chromium

    proj, prep, train, ev = shared_chain
    out = tmp_path / "report.html"
    _ok(proj.run("view", "--out", str(out)))
    dom = _chromium(f"{out.as_uri()}#run={train['id']}", tmp_path, "--dump-dom").stdout
    assert 'data-ready="1"' in dom
    panel = dom.split('<section id="panel">', 1)[1]
    row = re.search(r'<td class="k">upstream</td><td>(.*?)</td>', panel)
    assert row and f'<a href="#run={prep["id"]}">{prep["id"]}</a>' in row.group(1)
    row = re.search(r'<td class="k">downstream</td><td>(.*?)</td>', panel)
    assert row and f'<a href="#run={ev["id"]}">{ev["id"]}</a>' in row.group(1)


# --- hostile records ----------------------------------------------------------------------------------


def _forge(proj: Project, run_id: str, requires: list) -> None:
    path = proj.runs_dir / run_id / "run.json"
    rec = json.loads(path.read_text())
    rec["requires"] = requires
    path.write_text(json.dumps(rec))


def test_a_record_naming_a_path_as_its_upstream_is_a_bad_record(chain) -> None:
    proj, prep, train, ev = chain
    _forge(proj, train["id"], [{"kind": "operation", "source": "prepare", "run": "../../etc"}])
    cp = proj.run("runs", "--downstream", prep["id"], "--json")
    _ok(cp)
    assert "bad run record" in cp.stderr and "not a run id" in cp.stderr
    assert [r["id"] for r in json.loads(cp.stdout)] == []  # train is skipped; evaluate's link is through it
    assert_clean_error(proj.run("runs", "info", train["id"]), 2, "not a run id")
    cp = proj.run("runs", "delete", prep["id"], "-y")
    _ok(cp)
    assert not Path("/etc/run.json").exists()


def test_lineage_ignores_what_is_not_an_upstream_run(chain) -> None:
    from guildlite._lineage import lineage_of, upstream_ids

    proj, prep, train, ev = chain
    # shapes the schema lets through (other kinds, no run) name nothing; an unknown id names a run not there
    _forge(proj, train["id"], [{"kind": "file", "source": "/etc", "run": None},
                               {"kind": "operation", "source": "prepare"},
                               {"kind": "operation", "source": "prepare", "run": "20200101T000000-000000"}])
    info = proj.run_json("runs", "info", train["id"], "--json")
    assert info["lineage"]["upstream"] == ["20200101T000000-000000"]
    cp = proj.run("runs", "info", train["id"])
    assert "20200101T000000-000000 ? not in the runs dir" in cp.stdout
    assert upstream_ids({"requires": [{"kind": "operation", "run": "../x"}, "x", 5]}) == []
    assert upstream_ids({"requires": "nope"}) == []
    # a cycle in crafted records ends
    a, b = "20200101T000000-00000a", "20200101T000000-00000b"
    graph = lineage_of([(a, {"requires": [{"kind": "operation", "run": b}]}),
                        (b, {"requires": [{"kind": "operation", "run": a}]})])
    assert graph.upstream(a, transitive=True) == [b] and graph.downstream(a, transitive=True) == [b]


def test_upstream_outputs_leave_out_links_that_lead_out(proj: Project, tmp_path: Path) -> None:
    from guildlite._run import load_run
    from guildlite._upstream import output_files

    prep = _run(proj, "prepare")
    run_dir = proj.runs_dir / prep["id"]
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, run_dir / "data" / "leak.txt")
    os.symlink("numbers.txt", run_dir / "data" / "alias.txt")
    os.mkfifo(run_dir / "data" / "pipe")
    files = output_files(load_run(run_dir))
    assert files == ["data/alias.txt", "data/numbers.txt"]


# --- restarts, detached runs, the README's example -----------------------------------------------------


def test_a_restart_links_the_upstream_run_it_used(proj: Project) -> None:
    first = _run(proj, "prepare", "n=2")
    train = _run(proj, "train")
    second = _run(proj, "prepare", "n=4")
    cp = proj.run("run", "--restart", train["id"], "-y")
    _ok(cp)
    assert "train read 0 1 lr" in cp.stdout  # the recorded upstream run, not the newer one
    assert _upstream_of(proj.record(train["id"])) == [first["id"]]
    cp = proj.run("run", "--restart", train["id"], f"prepare={second['id']}", "-y")
    _ok(cp)
    assert "train read 0 1 2 3 lr" in cp.stdout
    rec = proj.record(train["id"])
    assert _upstream_of(rec) == [second["id"]] and len(rec["attempts"]) == 2


def test_a_batch_restart_keeps_each_trials_upstream_run(proj: Project) -> None:
    a = _run(proj, "prepare", "n=2")
    b = _run(proj, "prepare", "n=4")
    batch = _run(proj, "train", f"prepare=[{a['id']},{b['id']}]")
    for t in batch["trials"]:  # as if both had failed
        path = proj.runs_dir / t / "run.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "status": "error", "exit_code": 1}))
    assert_clean_error(proj.run("run", "--restart", batch["id"], "-y"), 2, "different upstream runs",
                       "--restart TRIAL")
    cp = proj.run("run", "--restart", batch["trials"][1], "-y")  # one by one: each with its own
    _ok(cp)
    assert "train read 0 1 2 3 lr" in cp.stdout
    assert _upstream_of(proj.record(batch["trials"][1])) == [b["id"]]


def test_a_detached_run_links_its_upstream_run_before_it_returns(proj: Project) -> None:
    prep = _run(proj, "prepare", "n=2")
    cp = proj.run("run", "train", "-y", "-b")
    _ok(cp)
    run_id = cp.stdout.strip()
    _run(proj, "prepare", "n=5")  # newer, once the detached run is staged: not its upstream run
    watched = proj.run("watch", run_id)
    assert watched.returncode == 0, watched.stderr
    assert "train read 0 1 lr" in watched.stdout
    assert _upstream_of(proj.record(run_id)) == [prep["id"]]


def test_the_readme_example(make_project) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("### Upstream runs and lineage", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    guildfile = block.replace("main: prepare.py", "main: prepare.py\n    launcher: python").replace(
        "main: train.py", "main: train.py\n    launcher: python")
    prepare = "import os\nos.makedirs('data')\nopen('data/train.csv', 'w').write('t')\nopen('data/val.csv', 'w').write('v')\n"
    train = "import os\nprint(sorted(os.listdir('inputs/data')), open('inputs/data/train.csv').read())\n"
    proj = make_project(guildfile, {"prepare.py": prepare, "train.py": train})
    prep = _run(proj, "prepare")
    cp = proj.run("run", "train", f"dataset={prep['id']}", "-y")
    _ok(cp)
    assert "['train.csv'] t" in cp.stdout
    assert_clean_error(proj.run("run", "train", f"prepare={prep['id']}", "-y"), 2, "'prepare'")


def test_upstream_assignments_parse_any_text_into_selectors_or_a_clear_error() -> None:
    from conftest import property_settings
    from hypothesis import given
    from hypothesis import strategies as st

    from guildlite._guildfile import OpDef
    from guildlite._requires import Requirement
    from guildlite._upstream import UpstreamError, split_assignments

    op = OpDef(name="train", main="train.py", requires=(Requirement(kind="operation", source="prepare"),))

    @property_settings(300)
    @given(st.text(max_size=40))
    def check(text: str) -> None:
        try:
            flags, picks = split_assignments(op, [f"prepare={text}", "lr=0.1"])
        except UpstreamError as e:
            assert e.exit_code == 2 and str(e).startswith("prepare=")
            return
        assert flags == ["lr=0.1"]
        chosen = picks["prepare"]
        items = chosen if isinstance(chosen, tuple) else (chosen,)
        assert items and all(spec and spec == spec.strip() for spec in items)
        assert not isinstance(chosen, tuple) or not any("," in spec for spec in items)

    check()
    assert split_assignments(op, ["prepare= 'abc' "])[1] == {"prepare": "abc"}
    assert split_assignments(op, ["prepare=[a, 'b']"])[1] == {"prepare": ("a", "b")}
