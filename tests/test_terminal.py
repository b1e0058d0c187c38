"""Terminal control characters in record fields are escaped wherever guildlite prints them as
text (tables, ``runs info``, confirmations); ``--json`` keeps the exact values.

click strips ANSI colour sequences from output that is not a terminal, but neither other ESC
sequences nor CR, BS or bidi controls: the pty tests see what a user's terminal would get.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import unicodedata
from collections.abc import Iterator

import pytest
from conftest import GUILDLITE, HELLO_SCRIPT, TRACEBACK, Project, load_record, property_settings, write_project
from hypothesis import given
from hypothesis import strategies as st

from guildlite._terminal import printable

LABEL = "\x1b[2J\x1b[31mOK"
FLAG = "a\rFAKE\x1b]0;title\x07\u202eevil\b\x9b2J"
TAG = "t\x1b[1m"
# Raw bytes a terminal acts on: C0 and C1 controls, DEL, bidi controls, line separators.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _unsafe(text: str) -> list[str]:
    return [c for c in text if c not in "\n\u200d" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J\x1b[31mOK", "\\x1b[2J\\x1b[31mOK"),
        ("a\rb\bc\td\ne\x00f\x7f", "a\\rb\\x08c\\td\\ne\\x00f\\x7f"),
        ("\x9b31m", "\\x9b31m"),  # C1 CSI
        ("abc\u202edef\u2066x\u200by\ufeff", "abc\\u202edef\\u2066x\\u200by\\ufeff"),
        ("line\u2028sep", "line\\u2028sep"),
        ("bad\udcff", "bad\\udcff"),  # an undecodable argv byte (surrogateescape)
        ("\U000e0041tag", "\\U000e0041tag"),  # a Unicode tag character (Cf)
        ("héllo 日本 lr=0.1 \\x1b", "héllo 日本 lr=0.1 \\x1b"),  # text and backslashes stay as they are
        ("👨\u200d👩\u200d👧", "👨\u200d👩\u200d👧"),  # emoji joined by ZWJ stay whole
    ],
)
def test_printable_escapes_controls(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_printable_keeps_newlines_only_when_asked() -> None:
    assert printable("a\nb\x1b") == "a\\nb\\x1b"
    assert printable("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"


@property_settings(500)
@given(st.text(alphabet=st.characters(codec=None, blacklist_categories=())))
def test_printable_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    shown = printable(text)
    assert _unsafe(shown) == []
    assert printable(shown) == shown  # idempotent: the escapes are plain ASCII
    if not _unsafe(text) and "\n" not in text:
        assert shown == text  # safe text is shown as it is


@pytest.fixture(scope="module")
def hostile(project: Project) -> tuple[Project, str, str]:
    """Two runs set through the real CLI: a flag value with CR/ESC/OSC/bidi/BS/C1, then a label
    with screen-clearing ESC sequences and a tag with ESC on the other. Returns (project, a, b)."""
    cp = project.run("run", "quick", f"opt={FLAG}", "-y", timeout=60)
    assert cp.returncode == 0, cp.stderr
    cp = project.run("run", "quick", "-y", timeout=60)
    assert cp.returncode == 0, cp.stderr
    a, b = (p.name for p in project.run_dirs())
    for argv in (["label", b, LABEL], ["tag", b, f"+{TAG}"]):
        cp = project.run(*argv)
        assert cp.returncode == 0, cp.stderr
        assert not RAW.search(cp.stdout + cp.stderr), (argv, cp.stdout)
    assert load_record(project.runs_dir, a)["flags"]["opt"] == FLAG
    assert load_record(project.runs_dir, b)["label"] == LABEL
    return project, a, b


HOSTILE_GUILDFILE = (
    "operations:\n"
    "  quick:\n"
    "    main: hello.py\n"
    "    launcher: python\n"
    "    flags:\n"
    "      opt: plain\n"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A project whose flag `opt` takes any text (the default project's has choices)."""
    base = tmp_path_factory.mktemp("hostile")
    proj = Project(root=write_project(base / "proj", HOSTILE_GUILDFILE, {"hello.py": HELLO_SCRIPT}),
                   runs_dir=base / "runs")
    yield proj
    proj.cleanup()


@pytest.mark.parametrize(
    "argv",
    [
        ["runs"],
        ["runs", "--all"],
        ["runs", "info", "{a}"],
        ["runs", "info", "{b}"],
        ["compare"],
        ["compare", "--csv"],
        ["compare", "{a}", "{b}", "--columns", "id,label,opt"],
        ["diff", "{a}", "{b}", "--flags-only"],
        ["ls", "{a}"],
        ["stop", "{a}"],
    ],
)
def test_printed_record_fields_carry_no_control_characters(hostile: tuple[Project, str, str], argv: list[str]) -> None:
    project, a, b = hostile
    cp = project.run(*(x.format(a=a, b=b) for x in argv))
    assert cp.returncode == 0, cp.stderr
    assert TRACEBACK not in cp.stderr
    out = cp.stdout + cp.stderr
    assert not RAW.search(out), [m.group() for m in RAW.finditer(out)]
    if argv[0] in ("runs", "compare") and "info" not in argv:
        assert "\\x1b[2J\\x1b[31mOK" in out and "a\\rFAKE\\x1b]0;title\\x07\\u202eevil\\x08\\x9b2J" in out, out
    if argv[:2] == ["runs", "info"]:
        assert ("\\x1b[2J" in out) if "{b}" in argv else ("a\\rFAKE" in out), out


@pytest.mark.parametrize("argv", [["runs", "--json"], ["compare", "--json"], ["runs", "info", "1", "--json"]])
def test_json_output_keeps_the_exact_values(hostile: tuple[Project, str, str], argv: list[str]) -> None:
    project, a, b = hostile
    cp = project.run(*argv)
    assert cp.returncode == 0, cp.stderr
    assert not RAW.search(cp.stdout)  # JSON escapes them...
    data = json.loads(cp.stdout)
    rows = data if isinstance(data, list) else [data]
    by_id = {r["id"]: r for r in rows}
    assert by_id[b]["label"] == LABEL  # ...and gives them back exactly
    if a in by_id:
        assert (by_id[a].get("flags") or by_id[a])["opt"] == FLAG


def test_errors_quoting_user_input_are_escaped(project: Project) -> None:
    cp = project.run("run", "quick", "nosuch\x1b[2J=1", "-y")
    assert cp.returncode == 2
    assert not RAW.search(cp.stderr), cp.stderr
    assert "guildlite: error:" in cp.stderr


def _on_a_terminal(project: Project, *argv: str) -> bytes:
    """What ``guildlite ARGV`` writes to a real terminal (a pty: click strips nothing there)."""
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([*GUILDLITE, *argv], cwd=project.root, env=project.env, stdin=subprocess.DEVNULL,
                             stdout=slave, stderr=slave)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
        assert p.wait(timeout=60) == 0, out
        return out
    finally:
        os.close(master)


@pytest.mark.parametrize("argv", [["runs"], ["runs", "info", "{a}"], ["runs", "info", "{b}"], ["compare"],
                                  ["label", "{b}", LABEL], ["tag", "{b}", f"+{TAG}"]])
def test_nothing_raw_reaches_a_real_terminal(hostile: tuple[Project, str, str], argv: list[str]) -> None:
    project, a, b = hostile
    out = _on_a_terminal(project, *(x.format(a=a, b=b) for x in argv)).decode("utf-8", "replace")
    out = out.replace("\r\n", "\n")  # the pty's own line discipline
    assert not RAW.search(out), [m.group() for m in RAW.finditer(out)]


def test_a_record_edited_by_hand_prints_nothing_raw(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Fields no CLI command would write (an op name, a flag name, a tag from elsewhere)."""
    base = tmp_path_factory.mktemp("edited")
    project = Project(root=write_project(base / "proj", HOSTILE_GUILDFILE, {"hello.py": HELLO_SCRIPT}),
                      runs_dir=base / "runs")
    try:
        assert project.run("run", "quick", "-y").returncode == 0
        (run_dir,) = project.run_dirs()
        rec = json.loads((run_dir / "run.json").read_text())
        rec.update(op="\x1b[31mop\u202e", tags=["\x1b]0;x\x07"], label="l\r\x9b")
        rec["flags"]["k\x1bey"] = "v\x1b"
        (run_dir / "run.json").write_text(json.dumps(rec))
        for argv in (["runs"], ["runs", "info", "1"], ["compare"], ["compare", "--csv"], ["tag", "1", "+t"]):
            cp = project.run(*argv)
            assert cp.returncode in (0, 2) and TRACEBACK not in cp.stderr, (argv, cp.stderr)
            out = cp.stdout + cp.stderr
            assert not RAW.search(out), (argv, [m.group() for m in RAW.finditer(out)])
    finally:
        project.cleanup()
