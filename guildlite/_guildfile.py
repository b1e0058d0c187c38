"""Loading and validating guildfile.yml into frozen op and plugin definitions."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ._errors import GuildfileError, GuildliteError
from ._flags import FLAG_TYPES, FlagDef, name_problem
from ._plugins import DEFAULT_HOOK_TIMEOUT

GUILDFILE = "guildfile.yml"

_TOP_KEYS = ("operations", "plugins", "runs-dir", "backend", "hook-timeout")  # and a section per backend
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
)  # and a section per backend
_FLAG_KEYS = (
    "default", "type", "choices", "min", "max", "required", "description", "arg-name", "arg-switch", "arg-skip",
    "arg-encoding", "arg-split", "arg-position",
)
LAUNCHERS = ("torchrun", "python")
_PLUGIN_KEYS = ("class", "name", "args", "priority", "hook-timeout")
_SOURCE_KEYS = ("include", "exclude", "max-size")


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

    @property
    def dir(self) -> Path:
        return self.path.parent

    def op(self, name: str) -> OpDef:
        """The op called ``name``, or a GuildfileError listing the ops there are."""
        try:
            return self.operations[name]
        except KeyError:
            import difflib

            known = sorted(self.operations)
            hint = difflib.get_close_matches(name, known, n=1)
            msg = f"{self.path}: no operation '{name}'"
            msg += f" (did you mean '{hint[0]}'?)" if hint else f"; operations: {', '.join(known)}"
            raise GuildfileError(msg) from None


def find_guildfile(start: Path | None = None) -> Path | None:
    """The nearest guildfile.yml in ``start`` (default: cwd) or its parents."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        p = d / GUILDFILE
        if p.is_file():
            return p
    return None


def load(path: Path) -> Guildfile:
    """Parse and validate a guildfile; every problem is a GuildfileError naming file, line, field."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise GuildfileError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise GuildfileError(f"{path}: not UTF-8 text (byte {e.start})") from None
    if "\0" in text:
        raise GuildfileError(f"{path}:{text[:text.index(chr(0))].count(chr(10)) + 1}: a NUL character") from None
    data = _parse_yaml(path, text)
    return _Validator(path).guildfile(data)


# --- YAML with line numbers ----------------------------------------------------------------------


class _Map(dict):  # type: ignore[type-arg]
    """A mapping that remembers the line of itself and of each key."""

    line: int = 0
    lines: dict[Any, int]


class _Seq(list):  # type: ignore[type-arg]
    """A list that remembers the line of each item."""

    lines: list[int]


# What YAML aliases may add to a document: nodes (each one a Python object once built, and copied
# when the op is recorded) and characters of text (shared once built, repeated when written out).
# A guildfile that shares settings through anchors and merge keys adds a few thousand; a "billion
# laughs" (nested aliases, 9 levels of 9) asks for billions and would exhaust memory.
ALIAS_NODES = 250_000
ALIAS_TEXT = 10_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_OP_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.:-]*"


def _parse_yaml(path: Path, text: str) -> Any:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        def get_single_data(self) -> Any:
            # The node graph is checked before anything is built: aliases share one node, so
            # measuring costs one pass over the distinct nodes however far they would expand.
            node = self.get_single_node()
            if node is None:
                return None
            _check_aliases(path, node)
            return self.construct_document(node)

    def construct_map(loader: Any, node: Any) -> _Map:
        m = _Map()
        m.line = node.start_mark.line + 1
        m.lines = {}
        merged: list[_Map] = []
        for knode, vnode in node.value:
            line = knode.start_mark.line + 1
            if knode.tag == _MERGE_TAG:
                if merged:
                    raise GuildfileError(f"{path}:{line}: duplicate key '<<' (merge several with <<: [*a, *b])")
                merged = _merge_sources(path, loader, vnode)
                continue
            key = loader.construct_object(knode, deep=True)
            try:
                hash(key)
            except TypeError:
                raise GuildfileError(f"{path}:{line}: a key must be a plain value, not a list or mapping") from None
            if key in m:
                raise GuildfileError(f"{path}:{line}: duplicate key '{key}'")
            m[key] = loader.construct_object(vnode, deep=True)
            m.lines[key] = line
        return _merged(m, merged) if merged else m

    def construct_seq(loader: Any, node: Any) -> _Seq:
        seq = _Seq(loader.construct_object(child, deep=True) for child in node.value)
        seq.lines = [child.start_mark.line + 1 for child in node.value]
        return seq

    def construct_str(loader: Any, node: Any) -> str:
        value: str = loader.construct_scalar(node)
        if "\0" in value:  # only an escape ("\0", "\x00") puts one here: the raw text has none
            raise GuildfileError(f"{path}:{node.start_mark.line + 1}: a NUL character in {value!r}: a guildfile"
                                 " string cannot hold one (no command line, environment or file name can)")
        return value

    def construct_int(loader: Any, node: Any) -> int:
        try:
            return int(yaml.SafeLoader.construct_yaml_int(loader, node))
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise GuildfileError(f"{path}:{node.start_mark.line + 1}: an integer of {len(node.value)} characters: "
                                 "too long (a flag's number must fit in a few thousand digits)") from None

    Loader.add_constructor("tag:yaml.org,2002:int", construct_int)
    Loader.add_constructor("tag:yaml.org,2002:map", construct_map)
    Loader.add_constructor("tag:yaml.org,2002:seq", construct_seq)
    Loader.add_constructor("tag:yaml.org,2002:str", construct_str)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise GuildfileError(f"{where}: invalid YAML: {e.problem}") from None
    except yaml.YAMLError as e:
        raise GuildfileError(f"{path}: invalid YAML: {e}") from None
    except RecursionError:
        raise GuildfileError(f"{path}: invalid YAML: nested too deeply") from None
    except ValueError as e:  # a value YAML's own constructors reject: a date like 2024-13-45
        raise GuildfileError(f"{path}: invalid YAML value: {_brief(str(e))}") from None


def _merge_sources(path: Path, loader: Any, vnode: Any) -> list[_Map]:
    """The mappings a merge key (``<<: *a`` or ``<<: [*a, *b]``) names, in order of precedence."""
    import yaml

    sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
    out = []
    for src in sources:
        if not isinstance(src, yaml.MappingNode):
            raise GuildfileError(f"{path}:{src.start_mark.line + 1}: '<<' merges a mapping (<<: *name) or a list"
                                 " of mappings (<<: [*a, *b])")
        out.append(loader.construct_object(src, deep=True))
    return out


def _merged(explicit: _Map, sources: list[_Map]) -> _Map:
    """YAML merge keys: the mapping's own keys win, then the sources in order; a shallow merge."""
    out = _Map()
    out.line, out.lines = explicit.line, {}
    for src in sources:
        for k, v in src.items():
            if k not in out:
                out[k] = v
                out.lines[k] = src.lines.get(k, src.line)
    for k, v in explicit.items():  # in place: keys keep the merged order, take the explicit value
        out[k] = v
        out.lines[k] = explicit.lines[k]
    return out


def _check_aliases(path: Path, root: Any) -> None:
    """Refuse a node graph whose aliases add more than ALIAS_NODES nodes or ALIAS_TEXT characters,
    or that contains itself.

    One depth-first pass over the distinct nodes (iterative: a deep document must not exhaust the
    stack): ``size`` is what each node would expand to, children counted once per reference.
    """
    import yaml

    def children(n: Any) -> list[Any]:
        if isinstance(n, yaml.SequenceNode):
            return list(n.value)
        if isinstance(n, yaml.MappingNode):
            return [x for pair in n.value for x in pair]
        return []

    def text(n: Any) -> int:
        return len(n.value) if isinstance(n, yaml.ScalarNode) else 0

    cap = 1 << 62  # with doubling aliases the true numbers grow to thousands of digits
    size: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, characters) once expanded
    open_ids = {id(root)}
    distinct = [1, text(root)]
    order: list[Any] = []
    stack = [(root, iter(children(root)))]
    while stack:
        node, rest = stack[-1]
        child = next(rest, None)
        if child is None:
            stack.pop()
            open_ids.discard(id(node))
            kids = [size[id(c)] for c in children(node)]
            size[id(node)] = (min(1 + sum(k[0] for k in kids), cap), min(text(node) + sum(k[1] for k in kids), cap))
            order.append(node)
        elif id(child) in open_ids:
            raise GuildfileError(f"{path}:{child.start_mark.line + 1}: a YAML alias inside the node it names"
                                 " (a recursive structure); a guildfile cannot hold one")
        elif id(child) not in size:
            open_ids.add(id(child))
            distinct[0] += 1
            distinct[1] += text(child)
            stack.append((child, iter(children(child))))

    def too_big(n: Any) -> bool:
        nodes, chars = size[id(n)]
        return nodes - distinct[0] > ALIAS_NODES or chars - distinct[1] > ALIAS_TEXT

    if not too_big(root):
        return
    blame = next(n for n in order if too_big(n))  # the first (innermost) node that is already too big
    raise GuildfileError(
        f"{path}:{blame.start_mark.line + 1}: YAML aliases (*name) expand this beyond {ALIAS_NODES:,} nodes"
        f" or {ALIAS_TEXT:,} characters (nested aliases, a 'billion laughs'?); write the values out or use"
        " fewer levels of aliases"
    )


# --- validation ----------------------------------------------------------------------------------


class _Validator:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, parent: Any, key: Any, msg: str) -> GuildfileError:
        line = getattr(parent, "lines", {}).get(key) or getattr(parent, "line", 0)
        where = f"{self.path}:{line}" if line else str(self.path)
        return GuildfileError(f"{where}: {msg}")

    def mapping(self, parent: Any, key: Any, value: Any, what: str) -> Mapping[Any, Any]:
        if value is None:
            return _Map()
        if not isinstance(value, dict):
            raise self.fail(parent, key, f"'{what}' must be a mapping, got {_kind(value)}")
        return value

    def keys(self, m: Mapping[Any, Any], allowed: Iterable[str], what: str, extensions: bool = False) -> None:
        allowed = tuple(allowed)
        for k in m:
            if extensions and isinstance(k, str) and k.startswith("x-"):
                continue
            if k not in allowed:
                import difflib

                hint = difflib.get_close_matches(str(k), allowed, n=1)
                tip = f"did you mean '{hint[0]}'?" if hint else f"valid keys: {', '.join(allowed)}"
                raise self.fail(m, k, f"unknown key '{k}' in {what} ({tip})")

    def guildfile(self, data: Any) -> Guildfile:
        if not isinstance(data, dict):
            raise GuildfileError(f"{self.path}: the top level must be a mapping with 'operations'")
        self.keys(data, (*_TOP_KEYS, *self.section_names(data, _TOP_KEYS)), "the guildfile", extensions=True)
        if "operations" not in data:
            raise self.fail(data, None, "missing required key 'operations'")
        ops = self.mapping(data, "operations", data["operations"], "operations")
        if not ops:
            raise self.fail(data, "operations", "'operations' declares no operation")
        return Guildfile(
            path=self.path,
            operations={str(n): self.op(ops, self.op_name(ops, n), ops[n]) for n in ops},
            plugins=self.plugins(data, "plugins", data.get("plugins"), "plugins"),
            runs_dir=self.runs_dir(data),
            backend=self.backend(data, "the guildfile") or "local",
            backend_sections=self.sections(data, _TOP_KEYS, "the guildfile"),
            hook_timeout=self.seconds(data, "hook-timeout", "the guildfile") or DEFAULT_HOOK_TIMEOUT,
        )

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
        self.keys(m, (*_OP_KEYS, *self.section_names(m, _OP_KEYS)), where)
        self.main(parent, m, where)
        flags_raw = self.mapping(m, "flags", m.get("flags"), f"{where} flags")
        launcher = m.get("launcher", "torchrun")
        if launcher not in LAUNCHERS:
            raise self.fail(m, "launcher", f"{where}: launcher {launcher!r} is not one of {', '.join(LAUNCHERS)}")
        nproc = self.count(m, "nproc-per-node", 1, 1, where)
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
        )
        self.flag_places(m, op, where)
        return op

    def flag_places(self, m: Mapping[Any, Any], op: OpDef, where: str) -> None:
        """``${flag}`` references in main name flags; arg-position values are 0..n-1, once each."""
        from ._flag_args import REF, refs

        first, *rest = op.main_args
        if REF.search(first.replace("$${", "")):
            raise self.fail(m, "main", f"{where}: the script or module in 'main' cannot use ${{...}} (only its arguments)")
        for item in rest:
            if item.replace("$${", "").count("${") != len(refs(item)):
                raise self.fail(m, "main", f"{where}: unclosed ${{ in 'main' {op.main!r}")
            for ref in refs(item):
                if ref not in op.flags and not op.flags_import:
                    raise self.fail(m, "main", f"{where}: 'main' refers to ${{{ref}}}, which is not one of its flags")
        places = sorted((f.arg_position, n) for n, f in op.flags.items() if f.arg_position is not None)
        if [p for p, _ in places] != list(range(len(places))):
            shown = ", ".join(f"{n}: {p}" for p, n in places)
            raise self.fail(m, "flags", f"{where}: arg-position values must be 0, 1, ... once each (got {shown})")

    def arg_encoding(self, m: Mapping[Any, Any], where: str) -> dict[Any, Any] | None:
        v = m.get("arg-encoding")
        if v is None:
            return None
        if not isinstance(v, dict) or not all(
            (x is None or isinstance(x, (str, int, float, bool))) for x in (*v.keys(), *v.values())
        ):
            raise self.fail(m, "arg-encoding", f"{where}: 'arg-encoding' must map values to text, e.g. "
                            "{true: '1', false: ''} (null leaves the flag out)")
        return dict(v)

    def main(self, parent: Any, m: Mapping[Any, Any], where: str) -> None:
        import re
        import shlex

        main = m.get("main")
        if "main" in m and main is not None and not isinstance(main, str):
            raise self.fail(m, "main", f"{where}: 'main' must be a string (a script or module with optional fixed "
                            f"args, e.g. 'train.py --fast'), got {_kind(main)}"
                            + ("" if isinstance(main, (list, dict)) else f" {_brief(main)}"))
        if not isinstance(main, str) or not main.strip():
            raise self.fail(m if "main" in m else parent, "main", f"{where}: 'main' (the script to run) is required")
        try:
            first = shlex.split(main)[0]
        except (ValueError, IndexError) as e:
            raise self.fail(m, "main", f"{where}: cannot split 'main' {main!r}: {e}") from None
        root = self.path.parent
        if first.endswith(".py") or "/" in first:
            script = (root / first).resolve()
            if not _inside(script, root):
                raise self.fail(m, "main", f"{where}: 'main' {main!r} is outside the project directory")
            if not script.is_file():
                raise self.fail(m, "main", f"{where}: 'main' script {first!r} does not exist in {root}")
            return
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", first):
            raise self.fail(m, "main", f"{where}: 'main' {first!r} is neither a .py script nor a module name")
        as_path = root.joinpath(*first.split("."))
        if as_path.with_suffix(".py").is_file() or (as_path / "__main__.py").is_file():
            return
        import importlib.util

        top = first.split(".")[0]
        try:  # `__main__` is this process's own main module, never an op's
            installed = top != "__main__" and importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            installed = False
        if (root / top).is_dir() or installed:
            return  # an installed or namespace package: the submodule is found at run time
        raise self.fail(m, "main", f"{where}: module {first!r} not found in {root} or installed packages")

    def backend(self, m: Mapping[Any, Any], where: str) -> str | None:
        v = m.get("backend")
        if v is None:
            return None
        from . import backends

        if not isinstance(v, str) or v not in backends.names():
            raise self.fail(m, "backend", f"{where}: backend {v!r} is not one of {', '.join(backends.names())}")
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
            raw = self.mapping(m, name, m.get(name), f"{where} {name}")
            try:
                out[name] = get(name).parse_section(raw, f"{where}: {name}")
            except OptionError as e:
                raise self.fail(raw, e.key, str(e)) from None
            except GuildliteError as e:  # the backend failed to load
                raise self.fail(m, name, str(e)) from None
        return out

    def flags_dest(self, m: Mapping[Any, Any], where: str) -> str:
        v = m.get("flags-dest", "args")
        if v in ("args", "env", "globals", "overrides"):
            return str(v)
        if isinstance(v, str) and v.startswith(("dict:", "global:")):  # Guild's names for a dict global
            import re

            name = v.partition(":")[2].strip()
            if re.fullmatch(r"[A-Za-z_]\w*", name):
                return f"dict:{name}"
        if isinstance(v, str) and v.startswith("config:"):
            path = v[len("config:"):].strip()
            problem = _config_path_problem(path)
            if problem is None:
                return f"config:{path}"
            raise self.fail(m, "flags-dest", f"{where}: flags-dest {v!r}: {problem}")
        raise self.fail(m, "flags-dest", f"{where}: flags-dest {v!r} must be args, env, globals, dict:NAME,"
                        " overrides or config:PATH"
                        " (PATH inside the run dir ending .json, .yml or .yaml)")

    def env_prefix(self, m: Mapping[Any, Any], where: str) -> str:
        import re

        v = m.get("flags-env-prefix", "FLAG_")
        if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z_]\w*|", v):
            raise self.fail(m, "flags-env-prefix", f"{where}: flags-env-prefix must be an environment name prefix")
        return v

    def flags_import(self, m: Mapping[Any, Any], where: str) -> tuple[str, ...] | bool:
        v = m.get("flags-import")
        if v is None or v is False:
            return ()
        if v == "all" or v is True:
            return True
        if isinstance(v, list):
            for name in v:
                problem = name_problem(name)
                if problem:
                    raise self.fail(m, "flags-import", f"{where}: flags-import: {problem}")
            return tuple(v)
        raise self.fail(m, "flags-import", f"{where}: flags-import must be 'all' or a list of flag names")

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
            try:
                rx = re.compile(pat)
            except re.error as e:
                raise self.fail(m, "output-scalars", f"{where}: output-scalars pattern '{pat}' is invalid: {e}") from None
            if not set(rx.groupindex) - {"step"}:
                raise self.fail(m, "output-scalars", f"{where}: output-scalars pattern {pat!r} has no named group"
                                " for a value, e.g. (?P<loss>\\S+)")
        return tuple(v)

    def string(self, m: Mapping[Any, Any], key: str, where: str) -> str:
        v = m.get(key, "")
        if v is None:
            return ""
        if not isinstance(v, str):
            raise self.fail(m, key, f"{where}: '{key}' must be a string, got {_kind(v)}")
        return v

    def count(self, m: Mapping[Any, Any], key: str, default: int, least: int, where: str) -> int:
        v = m.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise self.fail(m, key, f"{where}: '{key}' must be an integer >= {least}, got {v!r}")
        return v

    def seconds(self, m: Mapping[Any, Any], key: str, where: str) -> float | None:
        """A positive, finite number of seconds, or None when ``key`` is absent."""
        import math

        if key not in m:
            return None
        v = m[key]
        try:
            seconds = math.nan if isinstance(v, bool) or not isinstance(v, (int, float)) else float(v)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
        if not 0 < seconds < math.inf:
            raise self.fail(m, key, f"{where}: '{key}' must be a positive number of seconds, got {_brief(v)}")
        return seconds

    def flag(self, parent: Any, name: Any, raw: Any, where: str) -> FlagDef:
        problem = name_problem(name)
        if problem:
            raise self.fail(parent, name, f"{where}: {problem}")
        where = f"{where} flag '{name}'"
        if not isinstance(raw, dict):
            if isinstance(raw, list):
                raise self.fail(parent, name, f"{where}: a bare list is ambiguous: write "
                                "{default: [...]} for a list flag or {choices: [...]} for choices")
            self.plain_value(parent, name, raw, f"{where}: the default")
            return FlagDef(name=name, default=raw)
        self.keys(raw, _FLAG_KEYS, where)
        ftype = raw.get("type")
        if ftype is not None and ftype not in FLAG_TYPES:
            raise self.fail(raw, "type", f"{where}: type {ftype!r} is not one of {', '.join(FLAG_TYPES)}")
        choices = raw.get("choices")
        if choices is not None and (not isinstance(choices, list) or not choices):
            raise self.fail(raw, "choices", f"{where}: 'choices' must be a non-empty list")
        for choice in choices or ():
            self.plain_value(raw, "choices", choice, f"{where}: choice")
        default = raw.get("default")
        for item in default if isinstance(default, list) else [default]:  # a list flag's default: plain items
            self.plain_value(raw, "default", item, f"{where}: the default")
        for key in ("min", "max"):
            v = raw.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise self.fail(raw, key, f"{where}: '{key}' must be a number, got {v!r}")
        required = raw.get("required", False)
        if not isinstance(required, bool):
            raise self.fail(raw, "required", f"{where}: 'required' must be true or false")
        for key in ("arg-switch", "arg-skip"):
            if key in raw and not isinstance(raw[key], bool):
                raise self.fail(raw, key, f"{where}: '{key}' must be true or false")
        position = raw.get("arg-position")
        if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
            raise self.fail(raw, "arg-position", f"{where}: 'arg-position' must be an integer >= 0")
        if position is not None and raw.get("arg-switch") is not None:
            raise self.fail(raw, "arg-position", f"{where}: a positional flag cannot be an arg-switch")
        split = raw.get("arg-split")
        if split is not None and not (isinstance(split, bool) or (isinstance(split, str) and split)):
            raise self.fail(raw, "arg-split", f"{where}: 'arg-split' must be true, a separator such as ',', or repeat")
        arg_name = raw.get("arg-name")
        if arg_name is not None and (not isinstance(arg_name, str) or not arg_name.strip() or " " in arg_name):
            raise self.fail(raw, "arg-name", f"{where}: 'arg-name' must be an option name such as --learning-rate")
        flag = FlagDef(
            name=name,
            default=raw.get("default"),
            type=ftype,
            choices=tuple(choices) if choices else None,
            min=raw.get("min"),
            max=raw.get("max"),
            required=required,
            description=self.string(raw, "description", where),
            arg_name=arg_name,
            arg_switch=raw.get("arg-switch"),
            arg_skip=raw.get("arg-skip", False),
            arg_encoding=self.arg_encoding(raw, where),
            arg_split=split,
            arg_position=position,
        )
        if flag.default is not None:
            from ._flags import coerce

            try:
                coerce(flag, flag.default)
            except Exception as e:  # FlagError: the default breaks its own rules
                raise self.fail(raw, "default", f"{where}: bad default: {e}") from None
        return flag

    def plain_value(self, parent: Any, key: Any, v: Any, what: str) -> None:
        """A flag value is text, a number, a boolean or null: it goes to argv, the environment and JSON."""
        import datetime

        if v is None or isinstance(v, (str, int, float)):  # bool is an int
            return
        if isinstance(v, datetime.date):  # YAML reads an unquoted 2024-01-01 as a date
            raise self.fail(parent, key, f"{what} {v} is a date; quote it ('{v}') to pass it as text")
        raise self.fail(parent, key, f"{what} {_show_yaml(v)} is {_kind(v)}, not a string, number, true/false"
                        " or null")

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


def _short(parent: Any, key: Any, line: int, **values: Any) -> _Map:
    """A mapping made from a short form (a list, a string), at ``line`` or else the line of its key."""
    m = _Map(values)
    at: int = line or getattr(parent, "lines", {}).get(key) or getattr(parent, "line", 0) or 0
    m.line = at
    m.lines = {k: m.line for k in values}
    return m


# Never a runs dir: guildlite creates, moves and deletes run dirs in it, and lists every entry as a
# run. The filesystem root, the FHS top-level dirs and the standard ones in /usr, /usr/local and
# /var, and a home directory itself; a dir below any of them (~/runs, /var/tmp/runs) is fine.
SYSTEM_DIRS = (
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
    *(f"{base}/{d}" for base in ("/usr", "/usr/local")
      for d in ("bin", "etc", "games", "include", "lib", "lib32", "lib64", "libexec", "local", "sbin", "share", "src")),
    *(f"/var/{d}" for d in ("backups", "cache", "crash", "lib", "local", "lock", "log", "mail", "opt", "run", "spool",
                            "tmp")),
)


def runs_dir_path(raw: str | os.PathLike[str], base: Path, source: str) -> Path:
    """The runs dir named by ``raw`` (from ``source``: the guildfile's ``runs-dir``, ``--runs-dir``,
    ``GUILDLITE_RUNS_DIR``), resolved: a leading ``~`` is the home dir, a relative path is under
    ``base``. One rule for every source: a system dir is refused (GuildliteError, exit 2)."""
    text = os.fspath(raw)
    if "\0" in text:
        raise GuildliteError(f"{source} {text!r}: not a valid path (a NUL character)", exit_code=2)
    try:
        path = (base / os.path.expanduser(text)).resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise GuildliteError(f"{source} {text!r} cannot be resolved: {e}", exit_code=2) from None
    what = _system_dir(path)
    if what:
        raise GuildliteError(f"{source} {text!r} is {path}, {what}: guildlite creates, moves and deletes run dirs"
                             " in its runs dir; name a dir of its own (e.g. runs)", exit_code=2)
    return path


def option_runs_dir(raw: str | os.PathLike[str]) -> Path:
    """The runs dir given as ``--runs-dir`` (or through its env var, ``GUILDLITE_RUNS_DIR``), checked
    by ``runs_dir_path`` relative to the current dir."""
    env = os.environ.get("GUILDLITE_RUNS_DIR")
    source = "GUILDLITE_RUNS_DIR" if env and Path(env) == Path(raw) else "--runs-dir"
    return runs_dir_path(raw, Path.cwd(), source)


def _system_dir(path: Path) -> str | None:
    """What the resolved ``path`` is when it may not be a runs dir (see SYSTEM_DIRS), else None."""
    if path == Path("/"):
        return "the filesystem root"
    if str(path) in SYSTEM_DIRS:
        return "a system directory"
    homes = {Path(os.path.expanduser("~")), Path(os.environ.get("HOME") or "/")}
    if any(path in (h, h.resolve()) for h in homes if h.is_absolute()):
        return "a home directory itself"
    return None


def _config_path_problem(path: str) -> str | None:
    """Why ``config:PATH`` cannot receive the flags (None: it can): PATH is relative, stays in the
    run dir, ends .json/.yml/.yaml and is none of guildlite's own files (RunPaths) or its dir."""
    from pathlib import PurePosixPath

    from ._runs import RunPaths

    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/"):
        return "PATH must be a file path relative to the run dir"
    if ".." in parts:
        return "PATH must stay inside the run dir (no '..')"
    if PurePosixPath(path).suffix not in (".json", ".yml", ".yaml"):
        return "PATH must end .json, .yml or .yaml"
    root = Path("/run-dir")
    paths = RunPaths(root)
    own = {
        getattr(paths, name).relative_to(root).parts[0].casefold()
        for name in dir(RunPaths)
        if isinstance(getattr(RunPaths, name), property)
    }
    top = parts[0].casefold()
    if top in own or any(top.startswith(f".{name}.tmp-") for name in own):  # or an atomic write's temp file
        return f"PATH {parts[0]!r} is guildlite's own ({', '.join(sorted(own))}); choose another name"
    return None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _brief(v: Any) -> str:
    """``v`` as a short repr for an error message."""
    try:
        text = repr(_plain(v))
    except (ValueError, RecursionError):  # an int too long to print, a deep nest
        return _kind(v)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _kind(v: Any) -> str:
    kinds: dict[type, str] = {list: "a list", _Seq: "a list", dict: "a mapping", _Map: "a mapping", str: "a string"}
    return kinds.get(type(v), type(v).__name__)


def _show_yaml(v: Any) -> str:
    text = repr(_plain(v))
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(v: Any) -> Any:
    """Strip line bookkeeping: plain dicts and lists, safe to JSON-serialise."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def default_runs_dir(gf: Guildfile | None) -> Path:
    """``GUILDLITE_RUNS_DIR``, else the guildfile's ``runs-dir``, else ``runs`` beside it (or cwd)."""
    env = os.environ.get("GUILDLITE_RUNS_DIR")
    if env:
        return runs_dir_path(env, Path.cwd(), "GUILDLITE_RUNS_DIR")
    if gf is not None:
        return gf.runs_dir or gf.dir / "runs"
    return Path.cwd() / "runs"
