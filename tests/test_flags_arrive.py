"""Red-team findings on issue 14: flags that did not arrive, or arrived mis-encoded, while the
record said otherwise. Each script is written the way its authors write it; each flag's effect is
asserted from what the script PRINTED, or the run is refused (exit 2) before anything is staged.
"""

from __future__ import annotations

import json
import os
import textwrap
from typing import Any, Callable

import pytest
from conftest import Project, assert_clean_error


def _run(proj: Project, *args: str) -> tuple[dict[str, Any], str]:
    cp = proj.run("run", *args, "-y")
    assert cp.returncode == 0, (cp.returncode, cp.stdout, cp.stderr)
    rec = proj.records()[-1]
    return rec, (proj.runs_dir / rec["id"] / "output.log").read_text()


def _printed(out: str) -> dict[str, Any]:
    lines = [line for line in out.splitlines() if line.startswith("GOT ")]
    assert len(lines) == 1, out
    got: dict[str, Any] = json.loads(lines[0][4:])
    return got


def _refused(proj: Project, *args: str, needles: tuple[str, ...] = ()) -> str:
    line = assert_clean_error(proj.run("run", *args, "-y"), 2, *needles)
    assert not proj.runs_dir.exists() or not proj.run_dirs(), "nothing is staged"
    return line


def _gf(body: str) -> str:
    return textwrap.dedent(body).lstrip()


# --- 1: a configurator exec'd from the script, with a config file in main -----------------------

CONFIGURATOR = """\
# Poor man's configurator: config files, then --key=value overrides.
import sys
from ast import literal_eval

for arg in sys.argv[1:]:
    if '=' not in arg:
        # a config file
        assert not arg.startswith('--')
        config_file = arg
        with open(config_file) as f:
            exec(f.read())
    else:
        assert arg.startswith('--')
        key, val = arg.split('=')
        key = key[2:]
        if key in globals():
            try:
                attempt = literal_eval(val)
            except (SyntaxError, ValueError):
                attempt = val
            assert type(attempt) == type(globals()[key]), key
            globals()[key] = attempt
        else:
            raise ValueError(f"Unknown config key: {key}")
"""

TRAIN = """\
import json
batch_size = 12
learning_rate = 6e-4
compile = True
out_dir = 'out'
exec(open('configurator.py').read())  # overrides from the command line or a config file
print("GOT " + json.dumps(dict(batch_size=batch_size, learning_rate=learning_rate, compile=compile,
                               out_dir=out_dir)))
"""


def test_exec_configurator_flags_win_over_the_config_file(make_project: Callable[..., Project]) -> None:
    # Before: flags-dest globals was chosen (train.py never names sys.argv), the config file then
    # overwrote the rewritten globals: the script printed batch_size 64, the record said 32.
    gf = "operations:\n  nano: {main: train.py config/small.py, launcher: python}\n"
    proj = make_project(gf, {"train.py": TRAIN, "configurator.py": CONFIGURATOR,
                             "config/small.py": "batch_size = 64\nlearning_rate = 1e-3\n"})
    op = proj.run_json("ops", "--json")["nano"]
    assert op["flags_dest"] == "args"
    rec, out = _run(proj, "nano", "batch_size=32", "compile=false", "out_dir=007")
    got = _printed(out)
    assert got["batch_size"] == 32 and got["compile"] is False and got["out_dir"] == "007"
    assert rec["flags"]["batch_size"] == 32
    for name, value in got.items():  # every flag the record holds is what the script used
        assert rec["flags"][name] == value, name


def test_globals_refused_when_an_exec_can_override_them(make_project: Callable[..., Project]) -> None:
    script = "import json\nlr = 0.1\nexec(open('settings.py').read())\nprint('GOT ' + json.dumps({'lr': lr}))\n"
    gf = "operations:\n  t: {main: t.py, launcher: python, flags-dest: globals, flags: {lr: 0.1}}\n"
    proj = make_project(gf, {"t.py": script, "settings.py": "lr = 0.9\n"})
    _refused(proj, "t", "lr=0.5", needles=("line 3", "lr"))


# --- 2: argparse type=bool ---------------------------------------------------------------------

TYPE_BOOL = """\
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--amp", type=bool, default=False)
p.add_argument("--pin", type=bool, default=True)
a = p.parse_args()
print("GOT " + json.dumps(vars(a)))
"""


@pytest.mark.parametrize("amp,pin", [("false", "false"), ("true", "false"), ("false", "true")])
def test_argparse_type_bool_gets_what_the_record_says(make_project: Callable[..., Project], amp: str,
                                                      pin: str) -> None:
    # Before: amp=false was passed as --amp=False, and bool("False") is True.
    proj = make_project("operations:\n  tb: {main: tb.py, launcher: python, flags-import: all}\n",
                        {"tb.py": TYPE_BOOL})
    rec, out = _run(proj, "tb", f"amp={amp}", f"pin={pin}")
    assert _printed(out) == {"amp": amp == "true", "pin": pin == "true"}
    assert rec["flags"] == {"amp": amp == "true", "pin": pin == "true"}


# --- 3: flags for a script that reads neither command line nor environment -------------------------


@pytest.mark.parametrize("dest", ["", "flags-dest: args, ", "flags-dest: env, "])
def test_flags_a_script_never_reads_are_refused(make_project: Callable[..., Project], dest: str) -> None:
    # Before: passed as --learning-rate=0.5 (or an env var) and ignored: the script printed 0.1.
    gf = f"operations:\n  t: {{main: t.py, launcher: python, {dest}flags: {{learning-rate: 0.1}}}}\n"
    proj = make_project(gf, {"t.py": "import json\nlearning_rate = 0.1\nprint('GOT ' + json.dumps(learning_rate))\n"})
    line = _refused(proj, "t", "learning-rate=0.5", needles=("learning-rate",))
    assert "learning_rate" in line  # the hint names the global it matches


def test_env_flags_reach_a_script_that_reads_os_environ(make_project: Callable[..., Project]) -> None:
    script = "import json, os\nprint('GOT ' + json.dumps(os.environ.get('FLAG_LR')))\n"
    gf = "operations:\n  t: {main: t.py, launcher: python, flags-dest: env, flags: {LR: 0.1}}\n"
    proj = make_project(gf, {"t.py": script})
    _, out = _run(proj, "t", "LR=0.5")
    assert _printed(out) == "0.5"


# --- 4: parse_known_args and declared flags without flags-import ------------------------------------


def test_declared_flag_a_known_args_parser_lacks_is_refused(make_project: Callable[..., Project]) -> None:
    # Before: --batch-size=32 landed in the parser's leftovers; the script printed bs 8.
    script = """\
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--batch_size", type=int, default=8)
p.add_argument("--lr", type=float, default=0.1)
a, rest = p.parse_known_args()
print("GOT " + json.dumps({"bs": a.batch_size, "lr": a.lr, "rest": rest}))
"""
    gf = _gf("""
        operations:
          k1: {main: k.py, launcher: python, flags: {lr: 0.1, batch-size: 8}}
          k2: {main: k.py, launcher: python, flags: {lr: 0.1, batch-size: {default: 8, arg-name: batch_size}}}
        """)
    proj = make_project(gf, {"k.py": script})
    _refused(proj, "k1", "batch-size=32", needles=("--batch-size", "--batch_size"))
    _, out = _run(proj, "k2", "batch-size=32", "lr=0.5")
    assert _printed(out) == {"bs": 32, "lr": 0.5, "rest": []}


# --- 5: globals set again later at module level ---------------------------------------------------


@pytest.mark.parametrize("tail,line", [
    ('if __name__ == "__main__":\n    lr = 0.5\n', "line 3"),
    ("from local_settings import *\n", "line 3"),
    ("for lr in [0.3]:\n    pass\n", "line 3"),
    ("def tweak():\n    global lr\n    lr = 0.7\ntweak()\n", "line 3"),
])
def test_a_global_set_again_later_is_refused(make_project: Callable[..., Project], tail: str, line: str) -> None:
    # Before: the record said 0.2, the script used 0.5 (or local_settings' 0.9).
    script = "import json\nlr = 0.1\n" + tail + "print('GOT ' + json.dumps(lr))\n"
    gf = "operations:\n  g: {main: g.py, launcher: python}\n"
    proj = make_project(gf, {"g.py": script, "local_settings.py": "lr = 0.9\n"})
    _refused(proj, "g", "lr=0.2", needles=("lr", line))


def test_a_global_set_before_its_literal_still_works(make_project: Callable[..., Project]) -> None:
    script = "import json\ntry:\n    import fancy\nexcept ImportError:\n    fancy = None\nlr = 0.1\n" \
             "print('GOT ' + json.dumps(lr))\n"
    proj = make_project("operations:\n  g: {main: g.py, launcher: python}\n", {"g.py": script})
    _, out = _run(proj, "g", "lr=0.2")
    assert _printed(out) == 0.2


# --- 6: store_false / store_true imported with the meaning the record states ----------------------

SWITCHES = """\
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--no-shuffle", dest="shuffle", action="store_false")
p.add_argument("--amp", action="store_true")
a = p.parse_args()
print("GOT " + json.dumps(vars(a)))
"""


def test_store_false_and_store_true_mean_what_the_record_says(make_project: Callable[..., Project]) -> None:
    # Before: no-shuffle was imported with default true; no-shuffle=false passed --no-shuffle.
    proj = make_project("operations:\n  s: {main: s.py, launcher: python, flags-import: all}\n", {"s.py": SWITCHES})
    rec, out = _run(proj, "s")
    assert rec["flags"] == {"no-shuffle": False, "amp": False}
    assert _printed(out) == {"shuffle": True, "amp": False}
    _, out = _run(proj, "s", "no-shuffle=false", "amp=true")
    assert _printed(out) == {"shuffle": True, "amp": True}
    _, out = _run(proj, "s", "no-shuffle=true")
    assert _printed(out) == {"shuffle": False, "amp": False}


# --- 7: text for string flags stays as typed --------------------------------------------------------

TEXTS = ["007", "1.10", "yes", "1e3", "12e45", "~", "True", "-5"]


def test_string_flags_keep_the_text_as_typed(make_project: Callable[..., Project]) -> None:
    argp = """\
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--name", type=str, default="base")
p.add_argument("--tag")
a = p.parse_args()
print("GOT " + json.dumps(vars(a)))
"""
    glob = "import json\nname = 'base'\nprint('GOT ' + json.dumps({'name': name}))\n"
    gf = _gf("""
        operations:
          a: {main: a.py, launcher: python, flags-import: all}
          g: {main: g.py, launcher: python}
        """)
    proj = make_project(gf, {"a.py": argp, "g.py": glob})
    for text in TEXTS:
        rec, out = _run(proj, "a", f"name={text}", f"tag={text}")
        assert _printed(out) == {"name": text, "tag": text}, text
        assert rec["flags"]["name"] == text
        rec, out = _run(proj, "g", f"name={text}")
        assert _printed(out) == {"name": text}, text
        assert rec["flags"]["name"] == text
    # A batch of str values: each trial gets its item's text.
    assert proj.run("run", "g", "name=[007,1.10]", "-y").returncode == 0
    trials = [r for r in proj.records() if r.get("is_trial")]
    outs = {_printed((proj.runs_dir / r["id"] / "output.log").read_text())["name"] for r in trials}
    assert outs == {"007", "1.10"} and {r["flags"]["name"] for r in trials} == outs


# --- 8: null on the command line ----------------------------------------------------------------------


def test_null_that_would_not_be_passed_is_refused(make_project: Callable[..., Project]) -> None:
    # Before: the record said ver: None while the script ran with its own default 1.0.
    script = """\
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--ver", type=float, default=1.0)
print("GOT " + json.dumps(vars(p.parse_args())))
"""
    gf = _gf("""
        operations:
          s: {main: s.py, launcher: python, flags-import: all}
          e: {main: s.py, launcher: python, flags-import: all, flags: {ver: {arg-encoding: {null: "1.5"}}}}
        """)
    proj = make_project(gf, {"s.py": script})
    _refused(proj, "s", "ver=null", needles=("ver", "null"))
    rec, out = _run(proj, "e", "ver=null")
    assert _printed(out) == {"ver": 1.5}


# --- 16: a positional value that reads as an option -----------------------------------------------


def test_positional_value_starting_with_a_dash_is_refused(make_project: Callable[..., Project]) -> None:
    script = """\
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("src")
p.add_argument("data")
print("GOT " + json.dumps(vars(p.parse_args())))
"""
    gf = _gf("""
        operations:
          p: {main: p.py fixed, launcher: python, flags: {data: {default: d.csv, arg-position: 0}}}
        """)
    proj = make_project(gf, {"p.py": script})
    _refused(proj, "p", "data=-h", needles=("data", "-h"))
    _, out = _run(proj, "p", "data=x.csv")
    assert _printed(out) == {"src": "fixed", "data": "x.csv"}


# --- 17: -0.0 is not 0.0 ---------------------------------------------------------------------------


def test_negative_zero_global_is_rewritten(make_project: Callable[..., Project]) -> None:
    # Before: `neg = -0.0` compared equal to 0.0 and was left as written; the script printed -0.0.
    script = "neg = -0.0\nprint('GOT', repr(neg))\n"
    proj = make_project("operations:\n  n: {main: n.py, launcher: python}\n", {"n.py": script})
    rec, out = _run(proj, "n", "neg=0.0")
    assert "GOT 0.0" in out and "-0.0" not in out
    assert rec["flags"]["neg"] == 0.0


# --- 18: click --x/--no-x ---------------------------------------------------------------------------

CLICK = """\
import json
import click

@click.command()
@click.option("--shuffle/--no-shuffle", default=True)
@click.option("--compile/--no-compile", default=False)
@click.option("--amp", type=bool, default=False)
def main(shuffle, compile, amp):
    print("GOT " + json.dumps(dict(shuffle=shuffle, compile=compile, amp=amp)))

main()
"""


@pytest.mark.parametrize("shuffle,compile_", [("false", "true"), ("true", "false"), ("false", "false")])
def test_click_on_off_switches_pass_the_other_half(make_project: Callable[..., Project], shuffle: str,
                                                    compile_: str) -> None:
    # Before: shuffle (arg-switch: true, default on) = false passed nothing; the script stayed True.
    gf = _gf("""
        operations:
          c:
            main: c.py
            launcher: python
            flags:
              shuffle: {default: true, arg-switch: true}
              compile: false
              amp: false
        """)
    proj = make_project(gf, {"c.py": CLICK})
    rec, out = _run(proj, "c", f"shuffle={shuffle}", f"compile={compile_}", "amp=true")
    assert _printed(out) == {"shuffle": shuffle == "true", "compile": compile_ == "true", "amp": True}


# --- 7 and 8 for a Hydra app ---------------------------------------------------------------------------

HYDRA_APP = """\
import json
import hydra
from omegaconf import OmegaConf

@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg):
    print("GOT " + json.dumps(OmegaConf.to_container(cfg, resolve=True)))

if __name__ == "__main__":
    main()
"""


def test_hydra_string_keys_keep_their_text_and_null_reaches_the_app(make_project: Callable[..., Project]) -> None:
    pytest.importorskip("hydra")
    gf = "operations:\n  app: {main: app.py, launcher: python, flags-dest: overrides, flags-import: all}\n"
    proj = make_project(gf, {"app.py": HYDRA_APP, "conf/config.yaml": "model:\n  tag: base\n  ver: '1.0'\n  lr: 0.1\n"})
    # Before: ver=1.10 reached the app as 1.1 (a float); tag=null was recorded null, the app kept 'base'.
    rec, out = _run(proj, "app", "model.ver=1.10", "model.tag=null", "model.lr=0.5")
    assert _printed(out) == {"model": {"tag": None, "ver": "1.10", "lr": 0.5}}
    assert rec["flags"]["model.tag"] is None and rec["flags"]["model.ver"] == "1.10"


def test_a_global_derived_from_itself_later_still_takes_the_flag(make_project: Callable[..., Project]) -> None:
    script = "import json\nlr = 0.1\nepochs = 2\nlr *= 2\nif epochs > 1:\n    epochs = epochs + 1\n" \
             "print('GOT ' + json.dumps([lr, epochs, vars(json) is not None]))\n"
    proj = make_project("operations:\n  g: {main: g.py, launcher: python}\n", {"g.py": script})
    _, out = _run(proj, "g", "lr=0.25", "epochs=4")
    assert _printed(out) == [0.5, 5, True]


def test_flags_for_a_torch_script_without_a_parser_are_refused_but_an_unknown_package_may_read_them(
    make_project: Callable[..., Project],
) -> None:
    quiet = "import json\nimport numpy\nfrom torch import nn\nlr = 0.1\nprint('GOT ' + json.dumps(lr))\n"
    reader = "import json\nimport mycli\nprint('GOT ' + json.dumps(mycli.ARGS))\n"
    gf = _gf("""
        operations:
          q: {main: q.py, launcher: python, flags-dest: args, flags: {lr: 0.1}}
          r: {main: r.py, launcher: python, flags: {lr: 0.1}}
        """)
    # mycli stands for an installed package (outside the project) that reads sys.argv.
    proj = make_project(gf, {"q.py": quiet, "r.py": reader})
    site = proj.root.parent / "site"
    site.mkdir()
    (site / "mycli.py").write_text("import sys\nARGS = sys.argv[1:]\n")
    _refused(proj, "q", "lr=0.5", needles=("q.py", "lr"))
    path = os.pathsep.join(p for p in (str(site), proj.env.get("PYTHONPATH", "")) if p)
    cp = proj.run("run", "r", "lr=0.5", "-y", env={"PYTHONPATH": path})
    assert cp.returncode == 0, cp.stderr
    rec = proj.records()[-1]
    assert _printed((proj.runs_dir / rec["id"] / "output.log").read_text()) == ["--lr=0.5"]
