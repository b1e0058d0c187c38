"""The flags part of a guildfile op: each flag's declaration (type, choices, bounds, ``arg-*`` keys),
where the values go (``flags-dest``, ``flags-env-prefix``), ``flags-import``, ``arg-encoding``, and the
``${flag}`` references and positions in ``main``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ._flags import FLAG_TYPES, FlagDef, name_problem
from ._yaml_lines import YamlChecks, _kind, _show_yaml

if TYPE_CHECKING:
    from ._guildfile import OpDef

_FLAG_KEYS = (
    "default", "type", "choices", "min", "max", "required", "description", "arg-name", "arg-switch", "arg-skip",
    "arg-encoding", "arg-split", "arg-position",
)


def _config_path_problem(path: str) -> str | None:
    """Why ``config:PATH`` cannot receive the flags (None: it can): PATH is relative, stays in the
    run dir, ends .json/.yml/.yaml and is none of guildlite's own files (RunPaths) or its dir."""
    from pathlib import PurePosixPath

    from ._files import RunPaths

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


class FlagChecks(YamlChecks):
    """The checks of an op's flags (the guildfile's validator is one of these)."""

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

    def env(self, m: Mapping[Any, Any], where: str) -> dict[str, str]:
        import re

        v = self.mapping(m, "env", m.get("env"), f"{where} env")
        for k, x in v.items():
            if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z_]\w*", k):
                raise self.fail(v, k, f"{where}: env name {k!r} is not a variable name")
            if isinstance(x, (dict, list)) or x is None:
                raise self.fail(v, k, f"{where}: env {k}: the value must be text or a number, got {_kind(x)}")
        return {k: str(x).lower() if isinstance(x, bool) else str(x) for k, x in v.items()}

    def names(self, m: Mapping[Any, Any], key: str, where: str) -> tuple[str, ...]:
        v = m.get(key) or []
        if not isinstance(v, list) or not all(isinstance(n, str) for n in v):
            raise self.fail(m, key, f"{where}: '{key}' must be a list of flag names")
        return tuple(v)

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
