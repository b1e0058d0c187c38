"""``flags-dest: config:FILE``: flags imported from the project's YAML/JSON file, written into the
run's copy (nested, the rest kept) and checked before launch. Effects are asserted from what the
script printed after reading the file itself."""

from __future__ import annotations

import json
import textwrap
from typing import Any, Callable

import pytest
import yaml
from conftest import Project, assert_clean_error

# Reads the config file the way a training script does and prints it as JSON.
READER = textwrap.dedent(
    """\
    import json, sys
    path = sys.argv[1]
    text = open(path).read()
    if path.endswith(".json"):
        cfg = json.loads(text)
    else:
        import yaml
        cfg = yaml.safe_load(text)
    print("CFG " + json.dumps(cfg))
    """
)

NESTED = {
    "model": {"lr": 0.1, "layers": [64, 64], "act": "relu"},
    "db": {"user": "root", "port": 5432},
    "epochs": 3,
    "amp": False,
}


def _project(make: Callable[..., Project], rel: str, flags_import: str = "all", extra: str = "") -> Project:
    dump = json.dumps(NESTED, indent=2) if rel.endswith(".json") else yaml.safe_dump(NESTED, sort_keys=False)
    guildfile = textwrap.dedent(
        f"""\
        operations:
          train:
            main: reader.py {rel}
            launcher: python
            flags-dest: config:{rel}
            flags-import: {flags_import}
        """
    ) + extra
    return make(guildfile, {"reader.py": READER, rel: dump})


def _printed(proj: Project, rec: dict[str, Any]) -> Any:
    log = (proj.runs_dir / rec["id"] / "output.log").read_text()
    return json.loads(next(line[4:] for line in log.splitlines() if line.startswith("CFG ")))


@pytest.mark.parametrize("rel", ["conf/train.yml", "train.json"])
def test_nested_keys_are_flags_and_each_run_writes_its_values(make_project: Callable[..., Project], rel: str) -> None:
    proj = _project(make_project, rel)
    flags = proj.run_json("ops", "--json")["train"]["flags"]
    assert flags["model.lr"]["default"] == 0.1 and flags["model.lr"]["type"] == "float"
    assert flags["db.port"]["type"] == "int" and flags["amp"]["type"] == "bool"
    assert flags["model.layers"]["default"] == [64, 64]
    assert flags["amp"]["description"] == ""  # `ops` said "from FILE  (from FILE)": the source says it once
    listing = proj.run("ops").stdout
    assert listing.count(f"from {rel}") == len(flags), listing
    original = (proj.root / rel).read_text()
    cp = proj.run("run", "train", "model.lr=0.5", "db.user=bob", "amp=true", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = proj.only_record()
    expected = {
        "model": {"lr": 0.5, "layers": [64, 64], "act": "relu"},
        "db": {"user": "bob", "port": 5432},
        "epochs": 3,
        "amp": True,
    }
    assert _printed(proj, rec) == expected  # nested, in the file's own shape
    assert rec["flags"]["model.lr"] == 0.5 and rec["flags"]["db.user"] == "bob"
    assert (proj.root / rel).read_text() == original  # the project's file is untouched


def test_keys_that_are_not_flags_are_kept(make_project: Callable[..., Project]) -> None:
    proj = _project(make_project, "train.yml", flags_import="[model.lr]")
    assert proj.run("run", "train", "model.lr=0.01", "-y").returncode == 0
    got = _printed(proj, proj.only_record())
    assert got == {**NESTED, "model": {**NESTED["model"], "lr": 0.01}}


# on_run_staged rewrites the file behind guildlite's back: the check before launch catches it.
TAMPER = textwrap.dedent(
    """\
    from pathlib import Path
    from guildlite import Plugin

    class Tamper(Plugin):
        def on_run_staged(self, run):
            p = Path(run.run_dir) / "train.yml"
            p.write_text(p.read_text().replace("lr: 0.5", "lr: 0.9"))
    """
)


def test_a_file_that_does_not_hold_the_values_stops_the_run_before_launch(
    make_project: Callable[..., Project],
) -> None:
    proj = _project(make_project, "train.yml", extra="    plugins: [{class: tamper:Tamper}]\n")
    (proj.root / "tamper.py").write_text(TAMPER)
    cp = proj.run("run", "train", "model.lr=0.5", "-y")
    assert cp.returncode != 0
    rec = proj.only_record()
    assert rec["status"] == "error" and rec["started"] is None
    assert "'model.lr' is 0.9, not 0.5" in rec["error"]["message"]
    log = proj.runs_dir / rec["id"] / "output.log"
    assert not log.exists() or "CFG" not in log.read_text()  # the job never started


def test_a_flag_whose_path_runs_into_a_value_fails_before_staging(make_project: Callable[..., Project]) -> None:
    proj = _project(make_project, "train.yml", extra="    flags:\n      epochs.max: 5\n")
    assert_clean_error(proj.run("run", "train", "-y"), 2, "epochs.max", "'epochs' holds a value")
    assert proj.run_dirs() == []


def test_a_missing_or_invalid_file_is_a_clean_error(make_project: Callable[..., Project]) -> None:
    proj = _project(make_project, "train.yml")
    (proj.root / "train.yml").write_text("model: [unclosed\n")
    assert_clean_error(proj.run("run", "train", "-y"), 2, "flags-import", "train.yml")
    (proj.root / "train.yml").unlink()
    assert_clean_error(proj.run("run", "train", "-y"), 2, "flags-import", "does not exist")


def test_a_file_left_out_of_the_source_is_written_whole(make_project: Callable[..., Project]) -> None:
    proj = _project(make_project, "train.yml", extra="    sourcecode: {exclude: [train.yml]}\n")
    assert proj.run("run", "train", "db.port=1", "-y").returncode == 0
    assert _printed(proj, proj.only_record()) == {**NESTED, "db": {"user": "root", "port": 1}}


# --- the write/verify logic on arbitrary documents -------------------------------------------------

from pathlib import Path  # noqa: E402

from conftest import property_settings  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from guildlite._config_file import _get, set_flags, verify, write  # noqa: E402

_keys = st.text(st.sampled_from("ab.c_1"), min_size=1, max_size=4)
_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=8), st.lists(st.integers(), max_size=3))
_docs = st.recursive(_values, lambda inner: st.dictionaries(_keys, inner, max_size=4), max_leaves=12)


@property_settings(200)
@given(st.dictionaries(_keys, _docs, max_size=4), st.data())
def test_written_flags_read_back_and_verify(tmp_path_factory: Any, doc: dict[str, Any], data: Any) -> None:
    from guildlite._config_file import leaves as dotted_leaves

    leaves = dict(dotted_leaves(doc))
    flags = {name: data.draw(_values) for name in leaves}
    out = set_flags(json.loads(json.dumps(doc)), flags)
    for name, value in flags.items():
        assert _get(out, name) == (True, value)
    run_dir = tmp_path_factory.mktemp("run")
    for rel in ("c.json", "c.yml"):
        (run_dir / rel).write_text(json.dumps(doc))  # JSON is YAML too
        write(f"config:{rel}", flags, run_dir)
        verify(f"config:{rel}", flags, run_dir)  # raises if a value did not land


def test_a_key_spelled_with_dots_is_found_as_it_is() -> None:
    doc = {"a.b": 1, "a": {"b": 2, "c.d": {"e": 3}}}
    out = set_flags(doc, {"a.b": 10, "a.c.d.e": 30})
    assert out == {"a.b": 10, "a": {"b": 2, "c.d": {"e": 30}}}


def test_verify_names_every_value_that_is_not_there(tmp_path: Path) -> None:
    (tmp_path / "c.yml").write_text("a: {b: 1}\nx: 2\n")
    with pytest.raises(Exception) as e:
        verify("config:c.yml", {"a.b": 5, "x": 2, "y": 3}, tmp_path)
    assert "'a.b' is 1, not 5" in str(e.value) and "'y' is missing" in str(e.value) and "'x'" not in str(e.value)
