"""Guild AI's ``guild.yml`` read as it is: a translation into the guildlite format.

The translation works on the line-numbered nodes of ``_yaml_lines`` and builds new ones that keep
each key's line, so the guildfile validator that then checks the result names ``guild.yml:LINE``
just as it does for its own format. What this module checks itself (the forms, Guild-only keys) is
collected, not raised one by one: a file ported from Guild gets every problem in one error.

Guild's forms: a mapping of operations at the top level; a list of ``- model: NAME`` items (their
ops are named ``NAME:op``, and found by ``op`` alone when no other model has one so named), of
``- config: NAME`` items that others take settings from (``extends:``, ``$include:``), and of
``- package:`` items (packaging: ignored with a warning). Each op gets ``launcher: python`` (Guild's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ._errors import GuildfileError
from ._guild_requires import guild_requires, model_refs
from ._yaml_lines import _brief, _Map, _Seq

GUILD_FILE = "guild.yml"

# Op keys read as they are (the guildlite format spells them the same way).
_SAME = ("description", "requires", "steps", "env")
# Keys that change only what is shown or recorded: said and left out.
_SHOWN = {
    "compare": "guildlite's compare shows every flag and scalar",
    "label": "give a label with `guildlite run -l`",
    "tags": "guildlite has no tags",
    "plugins": "Guild's plugins are not guildlite's",
    "pip-freeze": "guildlite does not record pip freeze",
    "objective": "guildlite has no optimizers",
    "optimizers": "guildlite has no optimizers",
    "default-max-trials": "pass --max-trials",
    "stoppable": "every guildlite run can be stopped",
    "publish": "guildlite has no publish",
    "handle-keyboard-interrupt": "guildlite stops a run with SIGTERM",
    "delete-on-success": "delete runs with `guildlite runs delete`",
}
# Keys that change what the job receives, which guildlite cannot do as Guild does: refused.
_REFUSED = {
    "exec": "guildlite runs Python ('main'), not a shell command",
    "python-path": "guildlite runs from the run dir's source copy; put the path in the script",
    "python-requires": "guildlite runs the environment's own Python",
    "env-secrets": "set secret variables in the shell that runs guildlite",
    "flag-encoder": "give each flag an 'arg-encoding' instead",
    "pre-process": "guildlite runs no pre-process command",
    "resources": "declare files under 'requires:'",
    "params": "guildlite does not expand {{ }} templates",
    "set-trace": "guildlite has no debugger hook",
}
_MODEL_KEYS = ("model", "description", "operations", "extends", "sourcecode", "references", "resources", "params",
               "plugins", "op-default-config", "operation-defaults")
_FLAG_TYPES = {"string": "str", "str": "str", "int": "int", "float": "float", "boolean": "bool", "bool": "bool",
               "path": "path", "existing-path": "path", "number": None, "auto": None}
_FLAG_SAME = ("default", "description", "min", "max", "required", "arg-name", "arg-switch", "arg-skip",
              "arg-encoding", "arg-split")
_FLAG_QUIET = ("null-label", "alias")  # how a value is shown: nothing to say
# Guild's shorthands in output-scalars patterns, as the regexes they stand for.
_VALUE = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf"
_SHORTHANDS = {r"\value": _VALUE, r"\step": r"\d+", r"\key": r"[^\s:=]+"}


@dataclass(frozen=True)
class Translation:
    """A ``guild.yml`` in the guildlite format, the op ``guildlite run`` runs by default, what to say."""

    data: _Map
    default_op: str | None
    warnings: tuple[str, ...]


def is_guild_yml(path: Path) -> bool:
    return path.name == GUILD_FILE


def translate(path: Path, data: Any) -> Translation:
    """``data`` (guild.yml's parsed nodes) as a guildlite guildfile's; a GuildfileError lists every
    problem found, each with its line."""
    return _Translator(path).run(data)


def _node(line: int) -> _Map:
    m = _Map()
    m.line, m.lines = line, {}
    return m


def _put(out: _Map, key: str, value: Any, line: int) -> None:
    out[key] = value
    out.lines[key] = line


def _line(m: Any, key: Any = None) -> int:
    """The line of ``m``'s ``key``, else of ``m`` itself (a list: of its first item; 0: unknown)."""
    lines = getattr(m, "lines", None)
    if isinstance(lines, dict) and lines.get(key):
        return int(lines[key])
    if isinstance(lines, list):
        return int(lines[0]) if lines else 0
    return int(getattr(m, "line", 0) or 0)


class _Translator:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[tuple[int, str]] = []
        self.warnings: list[str] = []
        self.configs: dict[str, Mapping[Any, Any]] = {}
        self.defaults: list[str] = []

    def problem(self, line: int, msg: str) -> None:
        self.problems.append((line, msg))

    def warn(self, line: int, msg: str) -> None:
        self.warnings.append(f"{self.path.name}:{line}: {msg}" if line else f"{self.path.name}: {msg}")

    def run(self, data: Any) -> Translation:
        ops = _node(_line(data))
        if isinstance(data, dict):
            self.operations(data, "", ops, _node(0))
        elif isinstance(data, list):
            self.items(data, ops)
        else:
            self.problem(0, "the top level must be a mapping of operations or a list of '- model:' items")
        if not ops and not self.problems:
            self.problem(_line(data), "no operations")
        if len(self.defaults) > 1:
            self.problem(0, f"several operations are 'default: yes' ({', '.join(self.defaults)}); mark one")
        if self.problems:
            shown = "\n".join(f"  {self.path}:{line}: {msg}" if line else f"  {self.path}: {msg}"
                              for line, msg in sorted(self.problems, key=lambda p: p[0]))
            n = len(self.problems)
            raise GuildfileError(f"{self.path}: {n} problem{'s' if n > 1 else ''} reading Guild's format:\n{shown}")
        out = _node(_line(data))
        _put(out, "operations", ops, _line(data))
        return Translation(out, self.defaults[0] if self.defaults else None, tuple(self.warnings))

    def items(self, data: list[Any], ops: _Map) -> None:
        lines = data.lines if isinstance(data, _Seq) else [0] * len(data)
        for item in data:
            if isinstance(item, dict) and "config" in item:
                if not isinstance(item["config"], str):
                    self.problem(_line(item, "config"), "'config' must be a name")
                else:
                    self.configs[item["config"]] = item
        for item in data:  # a model may extend another model too
            if isinstance(item, dict) and isinstance(item.get("model"), str) and "config" not in item:
                self.configs.setdefault(item["model"], item)
        models = [(i, ln) for i, ln in zip(data, lines) if not (isinstance(i, dict) and "config" in i)]
        for item, line in models:
            if not isinstance(item, dict):
                self.problem(line, f"a top-level item must be a mapping ('- model: NAME'), got {_brief(item)}")
            elif "package" in item:
                self.warn(line, "'package' ignored: guildlite does not build packages")
            else:
                self.model(item, ops)

    def model(self, item: Mapping[Any, Any], ops: _Map) -> None:
        name = item.get("model") or ""
        if not isinstance(name, str):
            self.problem(_line(item, "model"), f"'model' must be a name, got {_brief(name)}")
            return
        for key in item:
            if key in _REFUSED:
                self.problem(_line(item, key), f"model '{name}': '{key}' cannot be honoured: {_REFUSED[key]}")
            elif key not in _MODEL_KEYS:
                self.problem(_line(item, key), f"model '{name}': unknown key '{key}'")
        merged = self.extended(item, set())
        self.operations(merged.get("operations") or _node(_line(item)), name, ops, merged)

    def extended(self, item: Mapping[Any, Any], seen: set[str]) -> _Map:
        """``item`` with what its ``extends:`` names merged under it (its own keys and ops win)."""
        out = _node(_line(item))
        parents = item.get("extends") or []
        for parent in [parents] if isinstance(parents, str) else parents:
            src = self.configs.get(parent) if isinstance(parent, str) else None
            if src is None or parent in seen:
                why = "extends itself" if parent in seen else "no '- config:' of that name"
                self.problem(_line(item, "extends"), f"extends {_brief(parent)}: {why}")
                continue
            base = self.extended(src, seen | {parent})
            for k, v in base.items():
                if k == "operations" and isinstance(v, dict):
                    ops = out.get("operations") or _node(_line(base, k))
                    for n, op in v.items():
                        _put(ops, n, op, _line(v, n))
                    _put(out, k, ops, _line(base, k))
                elif k not in ("config", "extends"):
                    _put(out, k, v, _line(base, k))
        for k, v in item.items():
            if k == "operations" and isinstance(v, dict) and isinstance(out.get(k), dict):
                ops = out[k]
                for n, op in v.items():
                    _put(ops, n, op, _line(v, n))
            elif k != "extends":
                _put(out, k, v, _line(item, k))
        return out

    def operations(self, ops: Any, model: str, out: _Map, model_item: Mapping[Any, Any]) -> None:
        if not isinstance(ops, dict):
            self.problem(_line(model_item, "operations"), "'operations' must be a mapping of operations")
            return
        for name, raw in self.included(ops, "operations").items():
            full = f"{model}:{name}" if model else str(name)
            if not isinstance(raw, dict):
                if isinstance(raw, str):  # Guild's `train: train_script` short form: the main
                    raw = _Map(main=raw)
                    raw.line, raw.lines = _line(ops, name), {"main": _line(ops, name)}
                else:
                    self.problem(_line(ops, name), f"operation '{full}' must be a mapping, got {_brief(raw)}")
                    continue
            if full in out:
                self.problem(_line(ops, name), f"operation '{full}' is declared twice")
            if not any(k in raw for k in ("main", "steps", "exec")):  # Guild lists it, and fails to run it
                self.warn(_line(ops, name), f"operation '{full}' left out: it has no 'main' (nothing to run)")
                continue
            _put(out, full, self.op(full, raw, model_item), _line(ops, name))

    def included(self, m: Mapping[Any, Any], part: str, seen: frozenset[str] = frozenset()) -> Mapping[Any, Any]:
        """``m`` with its ``$include`` replaced by the ``part`` of the configs it names (theirs first,
        ``m``'s own keys over them)."""
        if "$include" not in m:
            return m
        out = _node(_line(m))
        names = m["$include"]
        for name in [names] if isinstance(names, str) else names if isinstance(names, list) else [names]:
            src = self.configs.get(name) if isinstance(name, str) else None
            got = src.get(part) if src is not None else None
            if not isinstance(got, dict) or name in seen:
                why = "includes itself" if name in seen else f"no '- config:' of that name with '{part}'"
                self.problem(_line(m, "$include"), f"$include {_brief(name)}: {why}")
                continue
            for k, v in self.included(got, part, seen | {name}).items():
                _put(out, k, v, _line(got, k))
        for k, v in m.items():
            if k != "$include":
                _put(out, k, v, _line(m, k))
        return out

    def op(self, name: str, raw: Mapping[Any, Any], model: Mapping[Any, Any]) -> _Map:
        where = f"operation '{name}'"
        out = _node(_line(raw))
        if "steps" not in raw:  # a pipeline launches nothing itself
            _put(out, "launcher", "python", _line(raw))
        if "sourcecode" in model and "sourcecode" not in raw and "steps" not in raw:  # a pipeline copies none
            self.sourcecode(model, out, where)
        for key, v in raw.items():
            at = _line(raw, key)
            if key == "main":
                _put(out, "main", self.main(v), at)
            elif key in _SAME:
                _put(out, key, model_refs(key, guild_requires(v, raw.get("flags-dest"), where, self.warn,
                                                              self.problem) if key == "requires" else v, name), at)
            elif key == "default":
                if v is True:
                    self.defaults.append(name)
                elif v is not False:
                    self.problem(at, f"{where}: 'default' must be yes or no, got {_brief(v)}")
            elif key == "flags":
                self.flags(v, out, at, where)
            elif key == "flags-dest":
                self.flags_dest(v, out, at, where)
            elif key == "flags-import":
                if v in (True, "all", "yes"):
                    _put(out, key, "all", at)
                elif isinstance(v, (list, str)):
                    _put(out, key, [v] if isinstance(v, str) else v, at)
                elif v not in (False, None):
                    self.problem(at, f"{where}: flags-import must be yes, no, all or a list of flag names")
            elif key == "flags-import-skip":
                _put(out, key, [v] if isinstance(v, str) else v, at)
            elif key == "output-scalars":
                self.output_scalars(v, out, at, where)
            elif key == "sourcecode":
                self.sourcecode(raw, out, where)
            elif key in _SHOWN:
                self.warn(at, f"{where}: '{key}' ignored ({_SHOWN[key]})")
            elif key in _REFUSED:
                self.problem(at, f"{where}: '{key}' cannot be honoured: {_REFUSED[key]}")
            else:
                self.problem(at, f"{where}: unknown key '{key}'")
        return out

    def main(self, v: Any) -> Any:
        """Guild's ``main``: a module (``train``, ``pkg.train``), a path-like one (``src/train``: the
        module train in src) or a script, with fixed args after it."""
        if not isinstance(v, str) or not v.split():
            return v  # the validator says what 'main' must be
        first, _, rest = v.strip().partition(" ")
        if "/" in first and not first.endswith(".py") and (self.path.parent / f"{first}.py").is_file():
            first = f"{first}.py"
        return f"{first} {rest}".strip()

    def flags(self, v: Any, out: _Map, at: int, where: str) -> None:
        if not isinstance(v, dict):
            _put(out, "flags", v, at)  # the validator says what 'flags' must be
            return
        v = self.included(v, "flags")
        flags = _node(at)
        for name, raw in v.items():
            _put(flags, name, self.flag(raw, f"{where} flag '{name}'") if isinstance(raw, dict) else raw, _line(v, name))
        _put(out, "flags", flags, at)

    def flag(self, raw: Mapping[Any, Any], where: str) -> _Map:
        out = _node(_line(raw))
        for key, v in raw.items():
            at = _line(raw, key)
            if key in _FLAG_SAME:
                _put(out, key, v, at)
            elif key == "type":
                if v in _FLAG_TYPES:
                    if _FLAG_TYPES[v] is not None:
                        _put(out, key, _FLAG_TYPES[v], at)
                else:
                    self.problem(at, f"{where}: type {_brief(v)} is not one of {', '.join(_FLAG_TYPES)}")
            elif key == "choices":
                if raw.get("allow-other"):
                    continue  # any value goes: guildlite's choices are strict
                if not isinstance(v, list):
                    _put(out, key, v, at)
                    continue
                values = _Seq()
                values.lines = []
                for i, c in enumerate(v):
                    if isinstance(c, dict):
                        if "args" in c or "flags" in c:
                            self.problem(at, f"{where}: a choice that sets other flags ('args') cannot be honoured")
                        c = c.get("value")
                    values.append(c)
                    values.lines.append(v.lines[i] if isinstance(v, _Seq) else at)
                _put(out, key, values, at)
            elif key == "allow-other" or key in _FLAG_QUIET:
                continue
            elif key == "distribution":  # how Guild's optimizers draw values
                self.warn(at, f"{where}: '{key}' ignored")
            elif key == "env-name":
                self.problem(at, f"{where}: 'env-name' cannot be honoured (flags-dest: env sets FLAG_<NAME>)")
            else:
                self.problem(at, f"{where}: unknown flag key '{key}'")
        return out

    def flags_dest(self, v: Any, out: _Map, at: int, where: str) -> None:
        if v == "args:click":
            v = "args"  # guildlite reads click's options as it reads argparse's
        elif v == "none":
            v = "env"  # nothing on the command line; Guild sets FLAG_ variables either way
        elif isinstance(v, str) and v.startswith("namespace:"):
            self.problem(at, f"{where}: flags-dest {v!r} cannot be honoured (use dict:NAME or globals)")
            return
        _put(out, "flags-dest", v, at)

    def output_scalars(self, v: Any, out: _Map, at: int, where: str) -> None:
        if v is False or v == "off" or v is None:
            _put(out, "output-scalars", "off", at)
            return
        items = v if isinstance(v, list) else [v]
        lines = v.lines if isinstance(v, _Seq) else [at] * len(items)
        patterns = _Seq()
        patterns.lines = []
        for item, line in zip(items, lines):
            pairs = list(item.items()) if isinstance(item, dict) else [(None, item)]
            for key, pat in pairs:
                if not isinstance(pat, str) or (key is not None and not isinstance(key, str)):
                    self.problem(_line(item, key) if key else line, f"{where}: an output-scalars item must be a"
                                 " regex or 'NAME: regex'")
                    continue
                rx = self.scalar_regex(key, pat, _line(item, key) if key else line, where)
                if rx is not None:
                    patterns.append(rx)
                    patterns.lines.append(_line(item, key) if key else line)
        if patterns or not items:  # else only (\key) patterns: guildlite's `key: value` rule (Guild's default)
            _put(out, "output-scalars", patterns, at)

    def scalar_regex(self, key: str | None, pat: str, line: int, where: str) -> str | None:
        """Guild's pattern as guildlite's: shorthands expanded, the value's group named ``key``."""
        unnamed = len(re.findall(r"(?<!\\)\((?!\?)", pat))
        if r"\key" in pat or (key is None and "(?P<" not in pat and unnamed >= 2):  # Guild's (key)(value) form
            self.warn(line, f"{where}: output-scalars {pat!r}: a scalar named by the output (\\key) is not"
                      " captured; name the value's group, e.g. (?P<loss>\\value)")
            return None
        text = pat
        for short, rx in _SHORTHANDS.items():
            text = text.replace(short, rx if short != r"\value" else f"(?:{rx})")
        if key is not None and "(?P<" not in text:
            first = re.search(r"(?<!\\)\((?!\?)", text)
            if first is None:
                self.problem(line, f"{where}: output-scalars {key}: {pat!r} has no group around the value")
                return None
            text = f"{text[:first.start()]}(?P<{key}>{text[first.end():]}"
        return text

    def sourcecode(self, m: Mapping[Any, Any], out: _Map, where: str) -> None:
        v, at = m["sourcecode"], _line(m, "sourcecode")
        if v is False or v == "no":
            self.warn(at, f"{where}: 'sourcecode: no' ignored: a guildlite job runs from its run dir's copy of"
                      " the source, so the source is copied")
            return
        if isinstance(v, dict):
            for key in ("root", "dest"):
                if key in v:
                    self.problem(_line(v, key), f"{where}: sourcecode '{key}' cannot be honoured (guildlite copies"
                                 " the project dir's files to the top of the run dir)")
            rules = v.get("select", [])
        else:
            rules = v
        if isinstance(rules, str):
            rules = [rules]
        if not isinstance(rules, list):
            self.problem(at, f"{where}: sourcecode must be a list of globs or include:/exclude: items")
            return
        spec = _node(at)
        include: list[str] = []
        exclude: list[str] = []
        for rule in rules:
            if isinstance(rule, str):
                include.append(rule)
                continue
            if not isinstance(rule, dict) or not set(rule) <= {"include", "exclude"}:
                self.problem(at, f"{where}: sourcecode item {_brief(rule)}: give a glob, include: or exclude:")
                continue
            for key, globs in rule.items():
                globs = [globs] if isinstance(globs, str) else globs
                if isinstance(globs, dict) and "dir" in globs:
                    globs = [f"{globs['dir']}/**"]
                (include if key == "include" else exclude).extend(globs if isinstance(globs, list) else [globs])
        if include:
            _put(spec, "include", include, at)
        if exclude:
            _put(spec, "exclude", exclude, at)
        _put(out, "sourcecode", spec, at)


def misplaced_ops(path: Path, data: Any, top_keys: tuple[str, ...]) -> None:
    """A guildlite-format file with operations at the top level (Guild's form): one error naming
    them all, with the fix."""
    if not isinstance(data, dict):
        return
    ops = [k for k, v in data.items() if k not in top_keys and isinstance(v, dict) and ("main" in v or "flags" in v)
           and not (isinstance(k, str) and k.startswith("x-"))]
    if not ops:
        return
    where = ", ".join(f"'{k}' (line {_line(data, k)})" for k in ops)
    raise GuildfileError(f"{path}:{_line(data, ops[0])}: {where} look{'s' if len(ops) == 1 else ''} like operations"
                         " at the top level, Guild AI's form: did you mean to nest these under `operations:`?"
                         f" (or name the file {GUILD_FILE} to have it read as Guild's)")
