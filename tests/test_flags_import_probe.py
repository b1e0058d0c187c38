"""The argparse probe of ``flags-import`` stops a script once no statement left can reach a parser
(``_parser_scan.parse_end_line``): a script that trains or sleeps at import time and never parses
is not waited for (the probe's 30 s), whatever the layout of its unused parser."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Callable

import pytest
from conftest import Project

from guildlite._parser_scan import parse_end_line

# Each script writes its pid first, then "trains" far longer than the probe's timeout, and never parses.
_PID = "import os, time\nopen('probe.pid', 'w').write(str(os.getpid()))\n"
_SLEEPER = "time.sleep(120)\n"

LAYOUTS = {
    "parser in a project module it imports but never calls": (
        _PID + "from utils import get_args\n" + _SLEEPER + "print('loss: 1')\n",
        {"utils.py": "import argparse\n\ndef get_args():\n    return argparse.ArgumentParser().parse_args()\n"},
    ),
    "parser in a function of the script it never calls": (
        _PID + "import argparse\n\ndef cli():\n    p = argparse.ArgumentParser()\n    p.add_argument('--x', type=int)\n"
        "    return p.parse_args()\n\n" + _SLEEPER,
        {},
    ),
    "parser module in a package, imported relatively by a module it does not use": (
        _PID + "from pkg import train\n" + _SLEEPER,
        {"pkg/__init__.py": "", "pkg/train.py": "from .cli import parse\nSTEPS = 3\n",
         "pkg/cli.py": "import argparse\n\ndef parse():\n    return argparse.ArgumentParser().parse_known_args()\n"},
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_ops_does_not_wait_for_a_script_that_never_parses(make_project: Callable[..., Project], layout: str) -> None:
    script, files = LAYOUTS[layout]
    proj = make_project("operations:\n  train: {main: train.py, launcher: python, flags-import: all}\n"
                        "  other: {main: other.py, launcher: python, flags-import: all}\n",
                        {"train.py": script, "other.py": "speed = 3\n", **files})
    cp = proj.run("ops", "--json", timeout=60)  # the old probe waited its 30 s, then timed out
    assert cp.returncode == 0, cp.stderr
    ops = json.loads(cp.stdout)
    error = ops["train"]["error"]
    assert "train.py" in error and "without calling ArgumentParser.parse_args" in error, error
    assert "within" not in error, error  # not the timeout
    assert ops["other"]["flags"]["speed"]["default"] == 3  # the other op is listed with its flags
    pid = int((proj.root / "probe.pid").read_text())  # the script did start, and was stopped
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_script_that_parses_before_its_training_is_still_probed(make_project: Callable[..., Project]) -> None:
    """The stop goes after every statement that may parse, past a docstring and __future__ imports."""
    script = textwrap.dedent('''\
        """Train."""
        from __future__ import annotations
        import argparse, time

        def cli():
            p = argparse.ArgumentParser()
            p.add_argument("--lr", type=float, default=0.25, help="learning rate")
            return p.parse_args()

        args = cli()
        time.sleep(120)
        ''')
    proj = make_project("operations:\n  train: {main: train.py, launcher: python, flags-import: all}\n",
                        {"train.py": script})
    ops = proj.run_json("ops", "--json", timeout=60)
    assert ops["train"]["flags"]["lr"]["default"] == 0.25, ops
    assert "error" not in ops["train"] or not ops["train"]["error"], ops


def _end(tmp_path: Path, source: str, **files: str) -> int | None:
    for name, text in {"main.py": source, **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    return parse_end_line(tmp_path / "main.py", tmp_path)


def test_parse_end_line_is_after_every_statement_that_may_parse(tmp_path: Path) -> None:
    # parses at the top level, then trains: the stop is after the parse
    assert _end(tmp_path, "import argparse\nargs = argparse.ArgumentParser().parse_args()\ntrain = 1\n") == 3
    # a function defined after the statement that calls it, through a name bound from its result
    assert _end(tmp_path, "def main():\n    return cli()\nrun = main\nx = 1\nrun()\n"
                          "def cli():\n    import argparse\n    return argparse.ArgumentParser().parse_args()\n") is None
    # the usual main guard: its last statement may parse, so no early stop
    assert _end(tmp_path, "import argparse\ndef main():\n    argparse.ArgumentParser().parse_args()\n"
                          "if __name__ == '__main__':\n    main()\n") is None
    # nothing can parse: stopped at its first statement
    assert _end(tmp_path, "import time, json\nimport torch\ntime.sleep(1)\n") == 1
    # code it cannot see, a package it does not know, a star import of a parsing module: may parse
    assert _end(tmp_path, "exec(open(name).read())\nx = 1\n") == 2
    assert _end(tmp_path, "import somepkg\nx = 1\nsomepkg.go()\ny = 2\n") == 4
    assert _end(tmp_path, "from utils import *\nx = 1\n",
                **{"utils.py": "import argparse\ndef a():\n    argparse.ArgumentParser().parse_args()\n"}) is None
    # a project module that does not parse is as quiet as the standard library
    assert _end(tmp_path, "import helpers\nhelpers.go()\nx = 1\n", **{"helpers.py": "def go():\n    pass\n"}) == 1
    # a script that cannot be read or parsed: no stop
    assert _end(tmp_path, "def (:\n") is None
