"""Shell completion (click's mechanism, ``_GUILDLITE_COMPLETE``): driven as the shells drive it.

bash's function sets ``COMP_WORDS`` (the words typed, joined) and ``COMP_CWORD`` (the index of the
word being completed) and reads ``type,value`` lines back; zsh's reads ``type``/``value``/``help``
triples, fish's ``type,value\\thelp`` lines. Each test runs the real ``guildlite`` console script
in a project. The offers: operation names, ``NAME=`` flags of the op being run (and a flag's
choices after ``NAME=``), run ids and short ids wherever a run is selected. Completion never
runs a project script and never fails: a broken guildfile offers nothing, silently.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Callable

import pytest
from conftest import GUILDLITE, ROOT, TRACEBACK, Project


def complete(proj: Project, line: str, shell: str = "bash", env: dict[str, str] | None = None) -> list[str]:
    """The values ``guildlite`` offers for the last word of ``line`` (a trailing space: a new word)."""
    words = line.split(" ")
    if shell == "fish":  # fish passes the line up to the cursor and the word being completed
        extra = {"COMP_WORDS": line, "COMP_CWORD": words[-1]}
    else:
        extra = {"COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    cp = proj.run(env={"_GUILDLITE_COMPLETE": f"{shell}_complete", **extra, **(env or {})})
    assert cp.returncode == 0, (line, cp.stdout, cp.stderr)
    assert TRACEBACK not in cp.stderr and not cp.stderr.strip(), cp.stderr
    out = cp.stdout.splitlines()
    if shell != "zsh":
        out = [x for x in out if x]  # no offer prints one empty line
    if shell == "bash":
        return [x.split(",", 1)[1] for x in out]
    if shell == "zsh":
        return [out[i + 1] for i in range(0, len(out), 3)]
    return [x.split(",", 1)[1].split("\t")[0] for x in out]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_operation_names_are_offered(project: Project, shell: str) -> None:
    assert complete(project, "guildlite run ", shell) == ["hello", "hello2", "quick"]
    assert complete(project, "guildlite run hel", shell) == ["hello", "hello2"]
    assert complete(project, "guildlite run --parallel 2 q", shell) == ["quick"]


def test_flag_names_of_the_op_being_run_are_offered_as_name_equals(project: Project) -> None:
    assert complete(project, "guildlite run quick ") == ["lr=", "epochs=", "opt=", "code=", "sleep="]
    assert complete(project, "guildlite run quick l") == ["lr="]
    # A flag given already is not offered again; options between do not count as flags.
    assert complete(project, "guildlite run -y quick lr=0.1 --label x e") == ["epochs="]
    assert "lr=" not in complete(project, "guildlite run quick lr=0.1 ")
    # After NAME=, a flag's choices.
    assert complete(project, "guildlite run quick opt=") == ["opt=sgd", "opt=adam"]
    assert complete(project, "guildlite run quick opt=a") == ["opt=adam"]
    assert complete(project, "guildlite run nosuchop ") == []


def test_zsh_gets_each_flags_description(project: Project) -> None:
    cp = project.run(env={"_GUILDLITE_COMPLETE": "zsh_complete", "COMP_WORDS": "guildlite run hello l",
                          "COMP_CWORD": "3"})
    assert cp.stdout.splitlines() == ["plain", "lr=", "Learning rate"]


def test_flags_of_a_script_op_come_from_its_source_without_running_it(make_project: Callable[..., Project]) -> None:
    script = "import time\nopen('RAN', 'w').write('x')\nbatch_size = 32\nlr = 0.1\ntime.sleep(60)\n"
    proj = make_project("operations:\n  g: {main: g.py, flags-dest: globals, flags-import: all}\n",
                        {"g.py": script})
    assert complete(proj, "guildlite run g ") == ["batch_size=", "lr="]
    assert complete(proj, "guildlite run g.py ") == ["batch_size=", "lr="]  # the script as an op of its own
    assert not (proj.root / "RAN").exists()


def test_run_ids_and_short_ids_are_offered_where_a_run_is_selected(project: Project) -> None:
    for _ in range(2):
        assert project.run("run", "quick", "-y").returncode == 0
    newest, oldest = sorted((d.name for d in project.run_dirs()), reverse=True)
    assert complete(project, "guildlite runs info ") == [newest, oldest]
    for line in ("guildlite cat ", "guildlite compare 1 ", "guildlite runs --batch ", "guildlite label ",
                 "guildlite runs delete -y ", "guildlite run --restart ", "guildlite diff ", "guildlite watch ",
                 "guildlite ls ", "guildlite stop ", "guildlite compare --batch ", "guildlite view "):
        assert newest in complete(project, line), line
    assert complete(project, f"guildlite runs info {oldest[:-3]}") == [oldest]
    assert complete(project, f"guildlite cat {oldest[-6:-2]}") == [oldest[-6:]]  # the short id listings show
    assert complete(project, "guildlite runs info zzz") == []
    cp = project.run(env={"_GUILDLITE_COMPLETE": "zsh_complete", "COMP_WORDS": f"guildlite cat {newest}",
                          "COMP_CWORD": "2"})
    assert cp.stdout.splitlines() == ["plain", newest, "quick completed"]  # what it is, as help
    # --start offers only the staged runs.
    staged = project.run("run", "quick", "--stage", "-y").stdout.strip()
    assert complete(project, "guildlite run --start ") == [staged]


def test_the_runs_dir_on_the_command_line_is_the_one_completed(project: Project, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("other-runs")
    assert project.run("run", "quick", "-y", "--runs-dir", str(other)).returncode == 0
    (run_id,) = [d.name for d in other.iterdir() if not d.name.startswith(".")]
    assert complete(project, f"guildlite runs info --runs-dir {other} ") == [run_id]
    assert complete(project, f"guildlite cat --runs-dir {other} ") == [run_id]
    assert complete(project, "guildlite cat ") == []  # the project's own runs dir is empty


BROKEN = {
    "yaml": "operations:\n  train: [unclosed\n",
    "key": "operations:\n  train: {main: hello.py, nproc: 2}\n",
    "not a mapping": "- just\n- a list\n",
    "binary": "\x00\x01\x02",
    "empty": "",
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_completion_never_crashes_on_a_broken_guildfile(make_project: Callable[..., Project], kind: str) -> None:
    proj = make_project(BROKEN[kind])
    for line in ("guildlite run ", "guildlite run train ", "guildlite run train lr=", "guildlite runs info ",
                 "guildlite ops --", "guildlite "):
        complete(proj, line)  # exit 0, nothing on stderr
    assert complete(proj, "guildlite run ") == []
    assert "runs" in complete(proj, "guildlite ")  # the commands themselves still complete


def test_broken_guildfile_still_completes_run_ids_from_the_runs_dir(make_project: Callable[..., Project]) -> None:
    proj = make_project()
    assert proj.run("run", "quick", "-y").returncode == 0
    (proj.root / "guildfile.yml").write_text(BROKEN["yaml"])
    (run_id,) = [d.name for d in proj.run_dirs()]
    assert complete(proj, "guildlite runs info ") == [run_id]


@pytest.mark.parametrize("words,cword", [('guildlite run "qu', "2"), ("guildlite run q", "9"), ("guildlite run q", "x"),
                                         ("", "0"), ("guildlite runs 1 ", "3"), ("guildlite runs --batch", "2")])
def test_odd_command_lines_complete_to_nothing_quietly(project: Project, words: str, cword: str) -> None:
    cp = project.run(env={"_GUILDLITE_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": cword})
    assert TRACEBACK not in cp.stderr and TRACEBACK not in cp.stdout, cp.stderr


def test_the_readme_bash_install_line_completes_in_a_real_bash(project: Project) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    readme = (ROOT / "README.md").read_text()
    install = re.search(r"echo '(eval \"\$\(_GUILDLITE_COMPLETE=bash_source guildlite\)\")' >> ~/\.bashrc", readme)
    assert install, "README: the bash install line"
    script = (install.group(1) + "\n"
              'COMP_WORDS=(guildlite run quick "") COMP_CWORD=3\n'
              '_guildlite_completion guildlite\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = {**project.env, "PATH": f"{GUILDLITE[0].rsplit('/', 1)[0]}:{project.env['PATH']}"}
    cp = subprocess.run([bash, "-c", script], cwd=project.root, env=env, capture_output=True, text=True, timeout=60)
    assert cp.stdout.split() == ["lr=", "epochs=", "opt=", "code=", "sleep="], cp.stderr
