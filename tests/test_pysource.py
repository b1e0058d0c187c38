"""Reading and editing a script's globals by ``ast`` positions (pure: files in tmp dirs, no runs).

Property: any flag value written into any layout (CRLF or lone-CR line ends, a BOM, non-ASCII
text before the value on its line, values spanning lines) reads back as that value, and every
other character of the file is unchanged.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from conftest import property_settings
from hypothesis import given
from hypothesis import strategies as st

from guildlite._errors import FlagError
from guildlite._parser_scan import cli_parsers
from guildlite._pysource import mismatches, read_source, rewrite, same_value

TEMPLATE = (
    "# é settings — ünïcode before\n"
    "s = 'é'; target = {old}  # keep this comment ✓\n"
    "after = [\n    1,\n    2,\n]  # multi-line\n"
    "target2: 'int' = (\n    5\n)\n"
)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
)
values = st.one_of(scalars, st.lists(st.one_of(st.booleans(), st.integers(), st.text(max_size=5)), max_size=4))


def _write(tmp_path: Path, text: str, newline: str, bom: bool) -> Path:
    p = tmp_path / "s.py"
    data = text.replace("\n", newline).encode("utf-8")
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return p


@property_settings(max_examples=150)
@given(value=values, value2=values, newline=st.sampled_from(["\n", "\r\n", "\r"]), bom=st.booleans())
def test_any_value_reads_back_and_nothing_else_changes(
    tmp_path_factory: pytest.TempPathFactory, value: Any, value2: Any, newline: str, bom: bool
) -> None:
    tmp = tmp_path_factory.mktemp("src")
    path = _write(tmp, TEMPLATE.format(old="'x'"), newline, bom)
    src = read_source(path)
    assert set(src.globals) == {"s", "target", "after", "target2"}
    text = rewrite(src, {"target": value, "target2": value2})
    path.write_bytes(text.encode(src.encoding))
    again = read_source(path)
    assert same_value(again.globals["target"].value, value)
    assert same_value(again.globals["target2"].value, value2)
    assert mismatches(path, {"target": value, "target2": value2}) == []
    # Everything outside the two values is byte for byte what it was.
    before, after = src.text, again.text
    g, g2 = src.globals["target"].span, src.globals["target2"].span
    n, n2 = again.globals["target"].span, again.globals["target2"].span
    assert before[: g[0]] == after[: n[0]]
    assert before[g[1] : g2[0]] == after[n[1] : n2[0]]
    assert before[g2[1] :] == after[n2[1] :]


def test_what_is_and_is_not_a_flag(tmp_path: Path) -> None:
    p = tmp_path / "s.py"
    p.write_text(
        "import os\nx = 1\ny: float = -2.5\nz = x * 2\nw = 1\nw = 2\na = b = 3\nc, d = 1, 2\n"
        "e = {'k': 1}\nf = (1, 'two')\ng = [[1]]\nh = float('nan')\nif True:\n    inner = 1\n"
        "def fn():\n    local = 1\n"
    )
    src = read_source(p)
    assert {n: g.value for n, g in src.globals.items() if n != "h"} == {"x": 1, "y": -2.5, "f": [1, "two"]}
    assert math.isnan(src.globals["h"].value)
    assert src.assigned_twice == {"w": (5, 6)}
    assert src.dicts["e"]["k"].value == 1
    for name, needle in (("z", "not as a top-level"), ("w", "more than once"), ("inner", "not as a top-level"),
                         ("os", "not as a top-level"), ("g", "not as a top-level"), ("local", "no top-level")):
        with pytest.raises(FlagError, match=needle):
            rewrite(src, {name: 1})


def test_a_script_that_does_not_parse_is_named(tmp_path: Path) -> None:
    p = tmp_path / "bad.py"
    p.write_text("x = (\n")
    with pytest.raises(FlagError, match="cannot parse .*bad.py:"):
        read_source(p)


@pytest.mark.parametrize("text, found", [
    ("import argparse\n", {"argparse"}),
    ("from click import command\n", {"click"}),
    ("import sys\nprint(sys.argv)\n", {"sys.argv"}),
    ("from sys import argv\n", {"sys.argv"}),
    ("import helper\n", {"argparse"}),            # through a project module
    ("from . import helper\n", {"argparse"}),
    ("from transformers import HfArgumentParser\nHfArgumentParser(())\n", {"HfArgumentParser"}),
    ("import os, json\nlr = 0.1\n", set()),
])
def test_which_command_line_a_script_reads(tmp_path: Path, text: str, found: set[str]) -> None:
    (tmp_path / "helper.py").write_text("import argparse\n")
    (tmp_path / "main.py").write_text(text)
    assert cli_parsers(tmp_path / "main.py", tmp_path) == found
