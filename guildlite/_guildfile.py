"""Loading and validating guildfile.yml into frozen op and plugin definitions.

The YAML is read with line numbers by ``_yaml_lines`` (which also holds the checks every part
uses); an op's flags are checked by ``_guildfile_flags``, its ``main`` by ``_guildfile_main``; where
runs live is ``_runs_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from ._errors import GuildfileError, GuildliteError
from ._flags import FlagDef
from ._guild_yml import GUILD_FILE
from ._guildfile_flags import FlagChecks
from ._guildfile_main import MainChecks
from ._op_defaults import as_guildlite
from ._plugins import DEFAULT_HOOK_TIMEOUT
from ._requires_schema import Requirement, parse_requires
from ._runs_dir import runs_dir_path
from ._steps import StepDef, check_steps, pipeline_op
from ._yaml_lines import _plain, _Seq, _short, read_yaml

GUILDFILE = "guildfile.yml"

_TOP_KEYS = ("operations", "plugins", "runs-dir", "backend", "hook-timeout", "max-concurrent",
             "progress-interval")  # and a section per backend
_OP_KEYS = (
    "description",
    "main",
    "flags",
    "nproc-per-node",
    "gpus-per-trial",
    "sourcecode",
    "plugins",
    "launcher",
    "flags-dest",
    "flags-env-prefix",
    "flags-import",
    "arg-encoding",
    "output-scalars",
    "backend",
    "max-steps",
    "progress-interval",
    "steps",
    "max-concurrent",
    "requires",
    "env", "flags-import-skip",
)  # and a section per backend
LAUNCHERS = ("torchrun", "python")
_PLUGIN_KEYS = ("class", "name", "args", "priority", "hook-timeout")
_SOURCE_KEYS = ("include", "exclude", "max-size")
_OP_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.:-]*"
MAX_CONCURRENT = 1024  # a user's runs at once: each is a token in the machine-wide lease dir


@dataclass(frozen=True)
class SourceSpec:
    """Which project files are copied into a run dir (globs relative to the project dir)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_size: int = 1024 * 1024


@dataclass(frozen=True)
class PluginSpec:
    """A plugin declared in the guildfile: an import path (``class``) or an entry-point ``name``."""

    where: str
    cls: str | None = None
    name: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    priority: int | None = None
    hook_timeout: float | None = None  # seconds; None: the guildfile's ``hook-timeout``


@dataclass(frozen=True)
class OpDef:
    """One operation of the guildfile."""

    name: str
    main: str
    description: str = ""
    flags: Mapping[str, FlagDef] = field(default_factory=dict)
    nproc_per_node: int = 1
    gpus_per_trial: int = 0
    sourcecode: SourceSpec = SourceSpec()
    plugins: tuple[PluginSpec, ...] = ()
    launcher: str = "torchrun"
    flags_dest: str = "args"
    flags_env_prefix: str = "FLAG_"
    flags_import: tuple[str, ...] | bool = ()
    arg_encoding: Mapping[Any, Any] | None = None  # the op's value -> command-line text map (flags override)
    output_scalars: tuple[str, ...] | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    backend: str | None = None  # None: the guildfile's (default local)
    backend_sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # backend name -> its checked keys
    steps: tuple[StepDef, ...] = ()  # a pipeline's (``_steps``); it has no main
    max_concurrent: int | None = None  # None: the guildfile's
    requires: tuple[Requirement, ...] = ()  # what a run needs besides its source (``_requires``)
    env: Mapping[str, str] = field(default_factory=dict)  # set in the job's environment
    flags_import_skip: tuple[str, ...] = ()  # imported flags left out (``flags-import: all`` less these)

    @property
    def main_args(self) -> list[str]:
        """``main`` as argv items: ``[script.py, fixed...]`` or ``[-m, pkg.mod, fixed...]``."""
        import shlex

        first, *rest = shlex.split(self.main)
        if first.endswith(".py") or "/" in first:
            return [first, *rest]
        return ["-m", first, *rest]

    @property
    def script(self) -> str | None:
        """The script path relative to the project, or None when ``main`` names a module."""
        args = self.main_args
        return None if args[0] == "-m" else args[0]


@dataclass(frozen=True)
class Guildfile:
    """A loaded guildfile: its path, operations, global plugins and runs dir."""

    path: Path
    operations: Mapping[str, OpDef]
    plugins: tuple[PluginSpec, ...] = ()
    runs_dir: Path | None = None
    backend: str = "local"
    backend_sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # backend name -> its checked keys
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT  # seconds a hook call may take (a plugin entry may override)
    progress_interval: float | None = None  # seconds between on_run_progress calls (an op may override)
    max_concurrent: int | None = None  # a user's runs at once on this machine (``_queue``); None: no cap
    default_op: str | None = None  # what `guildlite run` with no op runs (Guild's `default: yes`)
    warnings: tuple[str, ...] = ()  # what reading the file found to say (a guild.yml's ignored keys)

    @property
    def dir(self) -> Path:
        return self.path.parent

    def op(self, name: str) -> OpDef:
        """The op called ``name``, or a GuildfileError listing the ops there are."""
        try:
            return self.operations[name]
        except KeyError:
            import difflib

            in_models = [n for n in self.operations if n.endswith(f":{name}")]  # a guild.yml model's op
            if len(in_models) == 1:
                return self.operations[in_models[0]]
            known = sorted(in_models or self.operations)  # several models have it: which one?
            hint = [] if in_models else difflib.get_close_matches(name, known, n=1)
            msg = f"{self.path}: no operation '{name}'"
            msg += f" (did you mean '{hint[0]}'?)" if hint else f"; operations: {', '.join(known)}"
            raise GuildfileError(msg) from None


def find_guildfile(start: Path | None = None) -> Path | None:
    """The nearest guildfile.yml (in a dir without one: Guild's guild.yml) in ``start`` or above."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        for p in (d / GUILDFILE, d / GUILD_FILE):
            if p.is_file():
                return p
    return None


def load(path: Path) -> Guildfile:
    """Parse and validate a guildfile; every problem is a GuildfileError naming file, line, field."""
    path = Path(path).resolve()
    data = None if path.suffix == ".py" else read_yaml(path)  # a script runs as an op of its own: nothing to read
    read = as_guildlite(path, data, _OP_KEYS, _TOP_KEYS)  # guild.yml: translated
    return replace(_Validator(path).guildfile(read.data), default_op=read.default_op, warnings=read.warnings)


# --- validation ----------------------------------------------------------------------------------


class _Validator(FlagChecks, MainChecks):
    """The guildfile's checks: its top level, each op, its sources and plugins (flags: ``FlagChecks``)."""

    def guildfile(self, data: Any) -> Guildfile:
        """The whole file checked: each op and each top-level key on its own, so that one error
        lists every problem (the first of each op: what follows in an op often stems from it)."""
        if not isinstance(data, dict):
            raise GuildfileError(f"{self.path}: the top level must be a mapping with 'operations'")
        where = "the guildfile"
        self.attempt(self.keys, data, (*_TOP_KEYS, *self.section_names(data, _TOP_KEYS)), where, True)
        operations = self.attempt(self.operations, data) or {}
        plugins = self.attempt(self.plugins, data, "plugins", data.get("plugins"), "plugins") or ()
        runs_dir = self.attempt(self.runs_dir, data)
        backend = self.attempt(self.backend, data, where) or "local"
        backend_sections = self.attempt(self.sections, data, _TOP_KEYS, where) or {}
        hook_timeout = self.attempt(self.seconds, data, "hook-timeout", where) or DEFAULT_HOOK_TIMEOUT
        progress_interval = self.attempt(self.seconds, data, "progress-interval", where)
        max_concurrent = self.attempt(self.max_concurrent, data, where)
        self.raise_problems()
        return Guildfile(path=self.path, operations=operations, plugins=plugins, runs_dir=runs_dir, backend=backend,
                         backend_sections=backend_sections, hook_timeout=hook_timeout,
                         progress_interval=progress_interval, max_concurrent=max_concurrent)

    def operations(self, data: Mapping[Any, Any]) -> dict[str, OpDef]:
        if "operations" not in data:
            raise self.fail(data, None, "missing required key 'operations'")
        ops = self.mapping(data, "operations", data["operations"], "operations")
        if not ops:
            raise self.fail(data, "operations", "'operations' declares no operation")
        operations = {}
        for n in ops:
            op = self.attempt(lambda n: self.op(ops, self.op_name(ops, n), ops[n]), n)
            if op is not None:
                operations[str(n)] = op
        if len(operations) == len(ops):  # else a step naming an op that failed would be a second report
            check_steps(self, operations)
        return operations

    def runs_dir(self, data: Mapping[Any, Any]) -> Path | None:
        raw = data.get("runs-dir")
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            raise self.fail(data, "runs-dir", "'runs-dir' must be a path string")
        try:
            return runs_dir_path(raw, self.path.parent, "runs-dir")
        except GuildliteError as e:
            raise self.fail(data, "runs-dir", str(e)) from None

    def op_name(self, ops: Mapping[Any, Any], name: Any) -> str:
        # An op name is printed, recorded, and written into job scripts (a backend's job name
        # line), where a newline would start a shell command.
        import re

        if isinstance(name, bool) or not isinstance(name, (str, int)) or not re.fullmatch(_OP_NAME, str(name)):
            raise self.fail(ops, name, f"operation name {name!r} is not valid: a letter, digit or _ first, then"
                            " letters, digits, _, ., : or - (train, train-small, eval.v2)")
        return str(name)

    def op(self, parent: Any, name: str, raw: Any) -> OpDef:
        where = f"operation '{name}'"
        m = self.mapping(parent, name, raw, f"operations.{name}")
        if "steps" in m:
            return pipeline_op(self, parent, name, m, OpDef)
        self.keys(m, (*_OP_KEYS, *self.section_names(m, _OP_KEYS)), where)
        self.main(parent, m, where)
        flags_raw = self.mapping(m, "flags", m.get("flags"), f"{where} flags")
        launcher = m.get("launcher", "torchrun")
        if launcher not in LAUNCHERS:
            raise self.fail(m, "launcher", f"{where}: launcher {launcher!r} is not one of {', '.join(LAUNCHERS)}")
        nproc = self.count(m, "nproc-per-node", 1, 1, where)
        if "max-steps" in m:  # read from the run's op_def by its owner (``_runlive``)
            self.count(m, "max-steps", 1, 1, where)
        self.seconds(m, "progress-interval", where)
        if launcher == "python" and nproc > 1:
            raise self.fail(m, "nproc-per-node", f"{where}: launcher python runs one process; nproc-per-node must be 1")
        op = OpDef(
            name=name,
            main=m["main"].strip(),
            description=self.string(m, "description", where),
            flags={str(k): self.flag(flags_raw, k, flags_raw[k], where) for k in flags_raw},
            nproc_per_node=nproc,
            gpus_per_trial=self.count(m, "gpus-per-trial", 0, 0, where),
            sourcecode=self.source(m, m.get("sourcecode"), where),
            plugins=self.plugins(m, "plugins", m.get("plugins"), f"{where} plugins"),
            launcher=launcher,
            flags_dest=self.flags_dest(m, where),
            flags_env_prefix=self.env_prefix(m, where),
            flags_import=self.flags_import(m, where),
            arg_encoding=self.arg_encoding(m, where),
            output_scalars=self.output_scalars(m, where),
            data=_plain(m),
            backend=self.backend(m, where),
            backend_sections=self.sections(m, _OP_KEYS, where),
            max_concurrent=self.max_concurrent(m, where),
            requires=parse_requires(self, m, where),
            env=self.env(m, where),
            flags_import_skip=self.names(m, "flags-import-skip", where),
        )
        self.flag_places(m, op, where)
        return op

    def max_concurrent(self, m: Mapping[Any, Any], where: str) -> int | None:
        if "max-concurrent" not in m:
            return None
        n = self.count(m, "max-concurrent", 1, 1, where)
        if n > MAX_CONCURRENT:
            raise self.fail(m, "max-concurrent", f"{where}: 'max-concurrent' must be at most {MAX_CONCURRENT}, got {n}")
        return n

    def backend(self, m: Mapping[Any, Any], where: str) -> str | None:
        v = m.get("backend")
        if v is None:
            return None
        from . import backends

        if not isinstance(v, str) or v not in backends.names():
            raise self.fail(m, "backend", f"{where}: backend {v!r} is not one of {', '.join(backends.names())}")
        try:
            backends.get(v)
        except GuildliteError as e:  # installed, but it failed to load: said here, at its line
            raise self.fail(m, "backend", f"{where}: {e}") from None
        return v

    @staticmethod
    def section_names(m: Mapping[Any, Any], own: Iterable[str]) -> list[str]:
        """The registered backends' names, which are keys too (each backend's section); asked only
        when ``m`` has a key of none of ``own`` (the registry costs an entry-point scan)."""
        if all(k in own or (isinstance(k, str) and k.startswith("x-")) for k in m):
            return []
        from . import backends

        return backends.names()

    def sections(self, m: Mapping[Any, Any], own: Iterable[str], where: str) -> dict[str, dict[str, Any]]:
        """Each backend's section in ``m``, checked by that backend (``Backend.parse_section``)."""
        from .backends import OptionError, get

        out = {}
        for name in self.section_names(m, own):
            if m.get(name) is None:
                continue
            raw = self.mapping(m, name, m.get(name), name)
            try:
                out[name] = get(name).parse_section(raw, f"{where}: {name}")
            except OptionError as e:
                raise self.fail(raw, e.key, str(e)) from None
            except GuildliteError as e:  # the backend failed to load
                raise self.fail(m, name, str(e)) from None
        return out

    def output_scalars(self, m: Mapping[Any, Any], where: str) -> tuple[str, ...] | None:
        import re

        if "output-scalars" not in m:
            return None
        v = m["output-scalars"]
        if v is False or v == "off":
            return ()
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(p, str) for p in v):
            raise self.fail(m, "output-scalars", f"{where}: output-scalars must be a list of regexes or 'off'")
        for pat in v:
            short = re.search(r"(?<!\\)\\(key|value|step)\b", pat)
            if short:  # `\value` compiles (a vertical tab, then "alue") and would capture nothing
                raise self.fail(m, "output-scalars", f"{where}: output-scalars pattern {pat!r}: {short.group()} is "
                                "Guild's shorthand, read in a guild.yml only; here name the groups, e.g. "
                                "'epoch=(?P<step>\\d+) loss=(?P<loss>\\S+)'")
            try:
                rx = re.compile(pat)
            except re.error as e:
                raise self.fail(m, "output-scalars", f"{where}: output-scalars pattern '{pat}' is invalid: {e}") from None
            if not rx.groupindex:  # a pattern of only a `step` group sets the step of what follows
                raise self.fail(m, "output-scalars", f"{where}: output-scalars pattern {pat!r} has no named group"
                                " for a value, e.g. (?P<loss>\\S+), or for the step, (?P<step>\\d+)")
        return tuple(v)


    def source(self, parent: Any, raw: Any, where: str) -> SourceSpec:
        if raw is None:
            return SourceSpec()
        if isinstance(raw, list):
            raw = _short(parent, "sourcecode", 0, include=raw)
        m = self.mapping(parent, "sourcecode", raw, f"{where} sourcecode")
        self.keys(m, _SOURCE_KEYS, f"{where} sourcecode")
        globs = {}
        for key in ("include", "exclude"):
            v = m.get(key) or []
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(g, str) for g in v):
                raise self.fail(m, key, f"{where}: sourcecode '{key}' must be a list of globs")
            for g in v:
                if g.startswith("/") or ".." in Path(g).parts:
                    raise self.fail(m, key, f"{where}: sourcecode glob {g!r} escapes the project")
            globs[key] = tuple(v)
        max_size = m.get("max-size", SourceSpec.max_size)
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
            raise self.fail(m, "max-size", f"{where}: sourcecode 'max-size' must be bytes >= 0")
        return SourceSpec(include=globs["include"], exclude=globs["exclude"], max_size=max_size)

    def plugins(self, parent: Any, key: str, raw: Any, where: str) -> tuple[PluginSpec, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise self.fail(parent, key, f"'{where}' must be a list of {{class: module:Class, args: {{}}}}")
        specs = []
        for i, entry in enumerate(raw):
            at = f"{where}[{i}]"
            if isinstance(entry, str):
                line = raw.lines[i] if isinstance(raw, _Seq) else 0
                entry = _short(parent, key, line, **{"class" if (":" in entry or "." in entry) else "name": entry})
            if not isinstance(entry, dict):
                raise self.fail(parent, key, f"{at}: expected a mapping with 'class' or 'name'")
            self.keys(entry, _PLUGIN_KEYS, at)
            cls, name = entry.get("class"), entry.get("name")
            if (cls is None) == (name is None):
                raise self.fail(entry, "class", f"{at}: give exactly one of 'class' (module:Class) or 'name' (entry point)")
            for k, v in (("class", cls), ("name", name)):
                if v is not None and (not isinstance(v, str) or not v.strip()):
                    raise self.fail(entry, k, f"{at}: '{k}' must be a non-empty string")
            args = self.mapping(entry, "args", entry.get("args"), f"{at} args")
            prio = entry.get("priority")
            if prio is not None and (isinstance(prio, bool) or not isinstance(prio, int)):
                raise self.fail(entry, "priority", f"{at}: 'priority' must be an integer")
            line = getattr(entry, "line", 0)
            specs.append(
                PluginSpec(
                    where=f"{self.path.name}:{line} {at}" if line else f"{self.path.name} {at}",
                    cls=cls,
                    name=name,
                    args=_plain(args),
                    priority=prio,
                    hook_timeout=self.seconds(entry, "hook-timeout", at),
                )
            )
        return tuple(specs)
