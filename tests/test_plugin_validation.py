"""Plugins are validated when they are loaded, as pluggy does: an ``on_*`` method that is not a hook
(a typo) or a hook whose signature is not ``(self, run)`` is a guildfile error (exit 2) naming the
plugin, where it was declared and the method, raised while planning: nothing is staged.

End-to-end tests run the real ``guildlite run`` on a project whose plugin module holds one broken
plugin class per case; each hook of a plugin that would run leaves a file, so a test also knows
that no hook ran. Entry-point plugins come from a real distribution (a dist-info with an entry
point) on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Callable

import pytest
from conftest import Project, assert_clean_error

from guildlite._builtins import builtin_plugins
from guildlite._plugin_loader import check_plugin
from guildlite._plugins import HOOKS, Dispatcher, Plugin
from guildlite._run import Run as StoredRun

RULE = "takes the one Run object (new information arrives as Run attributes, never as new arguments)"

BADPLUG = textwrap.dedent(
    """\
    import functools, os
    from pathlib import Path

    from guildlite import Plugin


    def touched(hook, run):
        Path(os.environ["VALTEST_HOOKS"], f"{hook}-{run.id}").touch()


    class Typo(Plugin):
        def on_run_ended(self, run):
            touched("on_run_ended", run)


    class Unlike(Plugin):
        def on_signal(self, run):
            touched("on_signal", run)


    class Base(Plugin):
        def on_run_begun(self, run):
            touched("on_run_begun", run)


    class Child(Base):
        def on_run_end(self, run):
            touched("on_run_end", run)


    class NoRun(Plugin):
        def on_run_end(self):
            touched("on_run_end", None)


    class Extra(Plugin):
        def on_run_end(self, run, status):
            touched("on_run_end", run)


    class ExtraDefault(Plugin):
        def on_run_end(self, run, status=None):
            touched("on_run_end", run)


    class KeywordOnly(Plugin):
        def on_run_end(self, *, run):
            touched("on_run_end", run)


    class Static(Plugin):
        @staticmethod
        def on_run_end(self, run):
            touched("on_run_end", run)


    class ClassNoRun(Plugin):
        @classmethod
        def on_run_end(cls):
            pass


    class Async(Plugin):
        async def on_run_end(self, run):
            touched("on_run_end", run)


    class Generator(Plugin):
        def on_run_end(self, run):
            touched("on_run_end", run)
            yield


    class Prop(Plugin):
        @property
        def on_run_end(self):
            return lambda run: touched("on_run_end", run)


    class OnInstance(Plugin):
        def __init__(self):
            self.on_run_end = lambda run: touched("on_run_end", run)


    def plain(fn):  # a decorator without functools.wraps: its wrapper takes *args, **kwargs
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs)
        return wrapper


    def wrapped(fn):
        @functools.wraps(fn)
        def wrapper(self, run):
            return fn(self, run)
        return wrapper


    class Good(Plugin):
        on_gpu = True  # data, not a method: not a hook, not an error

        @property
        def on_cluster(self):  # a property is not a method either
            return False

        @staticmethod
        def on_run_staged(run):
            touched("on_run_staged", run)

        @classmethod
        def on_run_begin(cls, run):
            touched("on_run_begin", run)

        @plain
        def on_run_end(self, run):
            touched("on_run_end", run)


    class Wrapped(Plugin):
        @wrapped
        def on_run_end(self, run):
            touched("wrapped-on_run_end", run)


    class Positional(Plugin):
        def on_run_end(self, r, /):
            touched("positional-on_run_end", r)
    """
)

# case -> (class, what the one error line says besides the entry)
BAD = {
    "typo": ("Typo", "Typo.on_run_ended is not a hook (did you mean on_run_end?): the hooks are "
             "on_run_staged, on_run_begin, on_run_progress, on_run_end"),
    "unlike-any-hook": ("Unlike", "Unlike.on_signal is not a hook: the hooks are on_run_staged"),
    "inherited-typo": ("Child", "Base.on_run_begun is not a hook (did you mean on_run_begin?)"),
    "no-run": ("NoRun", f"NoRun.on_run_end(self) takes no run: every hook is `def on_run_end(self, run)` and {RULE}"),
    "extra": ("Extra", "Extra.on_run_end(self, run, status) has extra parameter 'status': every hook"),
    "extra-default": ("ExtraDefault", "ExtraDefault.on_run_end(self, run, status=None) has extra parameter "
                      "'status' (even with a default: guildlite never passes it)"),
    "keyword-only": ("KeywordOnly", "KeywordOnly.on_run_end(self, *, run) takes run by keyword only"),
    "static-with-self": ("Static", "Static.on_run_end(self, run) has extra parameter 'run' (a staticmethod: it "
                         "gets no self)"),
    "classmethod-no-run": ("ClassNoRun", "ClassNoRun.on_run_end(cls) takes no run (a classmethod: cls is bound)"),
    "async": ("Async", "Async.on_run_end is an async def: a hook is a plain function"),
    "generator": ("Generator", "Generator.on_run_end is a generator function: a hook is a plain function"),
    "property": ("Prop", "Prop.on_run_end is a property object, not a method"),
    "instance-attribute": ("OnInstance", "OnInstance.on_run_end is set on the instance"),
}

SCRIPT = "import sys\nprint('ran', sys.argv[1:])\n"


def _guildfile(entries: str, where: str) -> str:
    plugins = f"plugins:\n{entries}" if where == "global" else ""
    op_plugins = f"    plugins:\n{textwrap.indent(entries, '  ')}" if where == "op" else ""
    return f"{plugins}operations:\n  t:\n    main: t.py\n    launcher: python\n    flags: {{x: 1}}\n{op_plugins}"


@pytest.fixture
def vproj(make_project: Callable[..., Project], tmp_path: Path) -> Callable[[str], Project]:
    def make(guildfile: str) -> Project:
        proj = make_project(guildfile, files={"t.py": SCRIPT, "badplug.py": BADPLUG})
        (tmp_path / "hooks").mkdir(exist_ok=True)
        return proj

    return make


def _run(proj: Project, tmp_path: Path, *args: str, pythonpath: Path | None = None) -> tuple[int, str, str]:
    env = {"VALTEST_HOOKS": str(tmp_path / "hooks")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")])
    cp = proj.run("run", *args, "-y", env=env)
    return cp.returncode, cp.stdout, cp.stderr


def _nothing_happened(proj: Project, tmp_path: Path) -> None:
    assert not proj.runs_dir.exists() or list(proj.runs_dir.iterdir()) == []
    assert list((tmp_path / "hooks").iterdir()) == []


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_hook_is_a_guildfile_error_and_nothing_is_staged(vproj: Callable[[str], Project], tmp_path: Path,
                                                              case: str) -> None:
    cls, says = BAD[case]
    where = "op" if case in ("typo", "extra", "async") else "global"
    proj = vproj(_guildfile(f"  - class: badplug:{cls}\n", where))
    at = "operation 't' plugins[0]" if where == "op" else "plugins[0]"
    for args in (["t"], ["t", "x=[1,2]"]):  # a single run, and a batch
        cp = proj.run("run", *args, "-y", env={"VALTEST_HOOKS": str(tmp_path / "hooks")})
        assert_clean_error(cp, 2, "guildfile.yml:", f"{at}: plugin badplug:{cls}: {says}")
    _nothing_happened(proj, tmp_path)


def test_accepted_shapes_run_every_hook(vproj: Callable[[str], Project], tmp_path: Path) -> None:
    """A staticmethod taking run, a classmethod, a decorator's (*args, **kwargs) wrapper, a
    functools.wraps one, a positional-only parameter of any name, and ``on_*`` data or properties."""
    proj = vproj(_guildfile("  - class: badplug:Good\n  - class: badplug:Wrapped\n"
                            "  - class: badplug:Positional\n", "global"))
    code, out, err = _run(proj, tmp_path, "t")
    assert code == 0, (out, err)
    run_id = proj.only_record()["id"]
    hooks = sorted(p.name for p in (tmp_path / "hooks").iterdir())
    assert hooks == sorted(f"{h}-{run_id}" for h in ("on_run_staged", "on_run_begin", "on_run_end",
                                                      "wrapped-on_run_end", "positional-on_run_end"))


def test_the_first_bad_plugin_is_named_among_good_ones(vproj: Callable[[str], Project], tmp_path: Path) -> None:
    proj = vproj(_guildfile("  - class: badplug:Good\n  - class: badplug:Typo\n  - class: badplug:Extra\n", "global"))
    code, out, err = _run(proj, tmp_path, "t")
    assert code == 2 and "plugins[1]: plugin badplug:Typo: Typo.on_run_ended is not a hook" in err, err
    _nothing_happened(proj, tmp_path)


def _distribution(site: Path, name: str, module: str, body: str) -> None:
    """A real installed distribution publishing ``module:Bad`` as plugin ``name``."""
    info = site / f"{module}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[guildlite.plugins]\n{name} = {module}:Bad\n")
    (site / f"{module}.py").write_text(body)


@pytest.mark.parametrize("how", ["option", "guildfile"])
def test_an_entry_point_plugin_is_validated_too(vproj: Callable[[str], Project], tmp_path: Path, how: str) -> None:
    site = tmp_path / "site"
    _distribution(site, "valtest-bad", "valtest_bad", "from guildlite import Plugin\n\n"
                  "class Bad(Plugin):\n    def on_run_begin(self, run, extra):\n        pass\n")
    entries = "  - name: valtest-bad\n" if how == "guildfile" else ""
    proj = vproj(_guildfile(entries, "global") if entries else _guildfile("", "none"))
    args = ["t"] if how == "guildfile" else ["t", "--plugin", "valtest-bad"]
    code, out, err = _run(proj, tmp_path, *args, pythonpath=site)
    assert code == 2, (out, err)
    at = "plugins[0]" if how == "guildfile" else "--plugin valtest-bad"
    assert (f"{at}: plugin valtest-bad (entry point guildlite.plugins: valtest_bad:Bad): "
            "Bad.on_run_begin(self, run, extra) has extra parameter 'extra'") in err, err
    _nothing_happened(proj, tmp_path)


# --- in process ----------------------------------------------------------------------------------


def test_builtins_pass_the_same_validation() -> None:
    plugins = builtin_plugins("globals")
    assert {type(p).__name__ for p in plugins} == {"SourceSnapshot", "GlobalFlags", "EnvCapture", "OutputScalars"}
    for p in plugins:
        check_plugin(p, "built-in")


def test_the_hooks_are_the_base_class_methods() -> None:
    """One list: Plugin's on_* methods, in call order."""
    assert HOOKS == tuple(n for n in vars(Plugin) if n.startswith("on_"))
    assert HOOKS == ("on_run_staged", "on_run_begin", "on_run_progress", "on_run_end")


def test_the_dispatcher_refuses_a_hook_name_that_is_not_a_hook(tmp_path: Path) -> None:
    run = StoredRun(id="r", run_dir=tmp_path, op="t")
    with pytest.raises(ValueError, match="no hook 'on_run_ended': hooks are on_run_staged, on_run_begin"):
        Dispatcher([]).call("on_run_ended", run)
