"""Shared op settings in a guildfile: op keys at the top level are defaults for every op, and an op's
``extends: OTHER`` takes OTHER's keys (its own win; ``flags`` merge by name). Applied to the parsed
nodes before validation, keeping each key's line, so an error in an inherited key names the line
where it was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from ._errors import GuildfileError
from ._guild_yml import Translation, is_guild_yml, misplaced_ops, translate
from ._yaml_lines import _brief, _Map


def as_guildlite(path: Path, data: Any, op_keys: Iterable[str], top_keys: Iterable[str]) -> Translation:
    """The parsed file at ``path`` in the guildlite format, ready to validate: a guild.yml
    translated, a script (``.py``, ``data`` unused) as one op, a guildfile with its op defaults and
    ``extends`` applied (its top-level op names refused with the porting hint)."""
    if path.suffix == ".py":
        from ._script_op import script_ops

        return Translation(script_ops(path), None, ())
    if is_guild_yml(path):
        return translate(path, data)
    data = with_op_defaults(path, data, op_keys, top_keys)
    misplaced_ops(path, data, tuple(top_keys))
    return Translation(data, None, ())


def with_op_defaults(path: Path, data: Any, op_keys: Iterable[str], top_keys: Iterable[str]) -> Any:
    """``data`` with its top-level op keys (those of ``op_keys`` not in ``top_keys``) applied to
    every op and each op's ``extends`` resolved."""
    if not isinstance(data, dict) or not isinstance(data.get("operations"), dict):
        return data
    shared = set(op_keys) - set(top_keys)
    defaults = {k: v for k, v in data.items() if k in shared}
    ops = data["operations"]
    if not defaults and not any(isinstance(op, dict) and "extends" in op for op in ops.values()):
        return data
    resolved: dict[Any, Any] = {}

    def resolve(name: Any, chain: tuple[Any, ...]) -> Any:
        if name in resolved:
            return resolved[name]
        op = ops[name]
        if not isinstance(op, dict) or "extends" not in op:
            resolved[name] = op
            return op
        parent = op["extends"]
        at = f"{path}:{_at(op, 'extends')}"
        if parent in chain or parent == name:
            loop = chain[chain.index(parent):] if parent in chain else ()
            cycle = " -> ".join(map(str, (*loop, name, parent)))
            raise GuildfileError(f"{at}: operation '{name}': 'extends' makes a cycle ({cycle})")
        if not isinstance(parent, str) or parent not in ops:
            raise GuildfileError(f"{at}: operation '{name}' extends {_brief(parent)}, which is not one of its"
                                 f" operations ({', '.join(map(str, ops))})")
        base = resolve(parent, (*chain, name))
        out = _merge(base if isinstance(base, dict) else _Map(), op)
        out.pop("extends", None)
        out.lines.pop("extends", None)
        resolved[name] = out
        return out

    new_ops = _copy(ops)
    for name in ops:
        op = resolve(name, ())
        runs_job = isinstance(op, dict) and "steps" not in op  # a pipeline's keys are its own
        new_ops[name] = _merge(_with_lines(defaults, data), op) if runs_job and defaults else op
    out = _copy(data, skip=shared)
    out["operations"] = new_ops
    return out


def _at(m: Any, key: Any) -> int:
    return int(getattr(m, "lines", {}).get(key) or getattr(m, "line", 0) or 0)


def _copy(m: Mapping[Any, Any], skip: Iterable[str] = ()) -> _Map:
    out = _Map()
    out.line, out.lines = getattr(m, "line", 0), {}
    for k, v in m.items():
        if k not in skip:
            out[k] = v
            out.lines[k] = _at(m, k)
    return out


def _with_lines(values: Mapping[Any, Any], source: Mapping[Any, Any]) -> _Map:
    out = _Map(values)
    out.line, out.lines = getattr(source, "line", 0), {k: _at(source, k) for k in values}
    return out


def _merge(base: Mapping[Any, Any], own: Mapping[Any, Any]) -> _Map:
    """``own`` over ``base``; their ``flags`` mappings merge by flag name."""
    out = _copy(base)
    out.line = getattr(own, "line", 0)
    for k, v in own.items():
        if k == "flags" and isinstance(v, dict) and isinstance(base.get("flags"), dict):
            flags = _copy(base["flags"])
            for f, fv in v.items():
                flags[f] = fv
                flags.lines[f] = _at(v, f)
            v = flags
        out[k] = v
        out.lines[k] = _at(own, k)
    return out
