"""The ``requires:`` of a guildfile op: the ``Requirement`` type and its validation at load
(``parse_requires``); ``_requires`` resolves and stages them.

Key names and meanings are Guild's, so that a Guild user's guildfile works unchanged: ``file``,
``url``, ``operation``, ``target-path`` (and its older name ``path``), ``target-type``,
``select``, ``rename``, ``name``, ``sha256``, ``unpack``; a Guild resource written inline with
``sources:`` (and ``default-unpack``) is taken apart into one requirement per source. Guild keys
guildlite does not implement are refused by name rather than ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal, Mapping

from ._errors import GuildfileError
from ._yaml_lines import YamlChecks, _brief, _kind, _Seq, _short

_KINDS = ("file", "url", "operation")
_SOURCE_KEYS = (*_KINDS, "target-path", "path", "target-type", "select", "rename", "name", "sha256", "unpack",
                "select-best")
_RESOURCE_KEYS = ("sources", "name", "target-path", "path", "target-type", "default-unpack", "description")
# Guild documents these; guildlite does not do what they ask, so it says so instead of ignoring them.
_GUILD_ONLY = ("select-min", "select-max", "warn-if-empty", "fail-if-empty", "post-process", "replace-existing",
               "preserve-path", "params", "help", "module", "config", "type", "flag-name", "private", "references")
ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Names a requirement may not take in the run dir: guildlite's own files.
RESERVED = (".guildlite", "run.json", "output.log", "scalars.jsonl")


@dataclass(frozen=True)
class Requirement:
    """One item of an op's ``requires:``, validated at guildfile load."""

    kind: Literal["file", "url", "operation"]
    source: str  # path / URL / op name
    target_path: str = ""  # "": the source's own place; ".": the run dir itself
    target_type: Literal["link", "copy"] = "link"
    select: tuple[str, ...] = ()  # regexes over the source's relative paths
    rename: tuple[tuple[str, str], ...] = ()  # (pattern, replacement)
    name: str | None = None  # the assignment that picks the source (operation: default the op name)
    sha256: str | None = None
    unpack: bool = False
    line: int | None = None  # guildfile line
    select_best: tuple[str, str] | None = None  # operation: ("min"|"max", scalar): a batch's best trial

    @property
    def label(self) -> str:
        """How messages name it: ``file: data/`` (guildfile.yml:12)."""
        return f"{self.kind}: {self.source}"


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVES)


def target_problem(path: str) -> str | None:
    """Why ``path`` (a run-dir-relative target) is not acceptable, or None: relative, no ``..``,
    no empty or ``.`` parts, and none of guildlite's own files."""
    if not path or "\\" in path or "\0" in path:
        return "must be a relative path in the run dir"
    if path.startswith("/"):
        return "must be relative to the run dir, not absolute"
    parts = PurePosixPath(path).parts
    if not parts:
        return "must name a path in the run dir, not the run dir itself"
    if ".." in parts:
        return "must stay inside the run dir (no '..')"
    if parts and parts[0].casefold() in RESERVED:
        return f"must not be guildlite's own {parts[0]!r}"
    return None


def _target_path_problem(v: str) -> str | None:
    if v.rstrip("/") in ("", ".") and not v.startswith("/"):
        return None  # the run dir itself
    return target_problem(v.rstrip("/") or "/")


def parse_requires(checks: YamlChecks, op: Mapping[Any, Any], where: str) -> tuple[Requirement, ...]:
    """The op's ``requires:`` as Requirements; a GuildfileError names the line and the key."""
    raw = op.get("requires")
    if raw is None:
        return ()
    if isinstance(raw, dict):  # one requirement written without the list
        raw = _list_of(raw, op.lines.get("requires", 0) if hasattr(op, "lines") else 0)
    if not isinstance(raw, list):
        raise checks.fail(op, "requires", f"{where}: 'requires' must be a list of requirements"
                          " (- file: PATH, - url: URL, - operation: OP), got " + _kind(raw))
    out: list[Requirement] = []
    for i, item in enumerate(raw):
        line = raw.lines[i] if isinstance(raw, _Seq) else 0
        at = f"{where} requires[{i}]"
        if not isinstance(item, dict):
            raise checks.fail(_short(op, "requires", line), None, f"{at}: a requirement is a mapping (- file: PATH,"
                              f" - url: URL or - operation: OP), got {_kind(item)} {_brief(item)}")
        if "sources" in item:
            out.extend(_resource(checks, item, at))
        else:
            out.append(_source(checks, item, at, {}))
    return tuple(out)


def _list_of(item: Any, line: int) -> _Seq:
    seq = _Seq([item])
    seq.lines = [line]
    return seq


def _resource(checks: YamlChecks, res: Mapping[Any, Any], at: str) -> list[Requirement]:
    """A Guild resource written inline: its ``sources`` inherit its target-path, target-type,
    name and default-unpack."""
    _keys(checks, res, _RESOURCE_KEYS, at)
    sources = res["sources"]
    if not isinstance(sources, list) or not sources:
        raise checks.fail(res, "sources", f"{at}: 'sources' must be a non-empty list of sources")
    inherit = {k: res[k] for k in ("target-path", "path", "target-type", "name") if k in res}
    if "default-unpack" in res:
        if not isinstance(res["default-unpack"], bool):
            raise checks.fail(res, "default-unpack", f"{at}: 'default-unpack' must be true or false")
        inherit["unpack"] = res["default-unpack"]
    out = []
    for j, src in enumerate(sources):
        if not isinstance(src, dict):
            raise checks.fail(res, "sources", f"{at} sources[{j}]: a source is a mapping (file:, url: or operation:)")
        out.append(_source(checks, src, f"{at} sources[{j}]", inherit))
    return out


def _keys(checks: YamlChecks, m: Mapping[Any, Any], allowed: tuple[str, ...], at: str) -> None:
    for k in m:
        if k in _GUILD_ONLY:
            raise checks.fail(m, k, f"{at}: '{k}' (a Guild AI key) is not supported by guildlite;"
                              f" valid keys: {', '.join(allowed)}")
    checks.keys(m, allowed, at)


def _source(checks: YamlChecks, m: Mapping[Any, Any], at: str, inherit: Mapping[str, Any]) -> Requirement:
    _keys(checks, m, _SOURCE_KEYS, at)
    given = [k for k in _KINDS if k in m]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise checks.fail(m, given[-1] if given else None,
                          f"{at}: give exactly one of file:, url: or operation: (got {what})")
    kind = given[0]
    source = m[kind]
    if not isinstance(source, str) or not source.strip():
        raise checks.fail(m, kind, f"{at}: '{kind}' must be a non-empty string, got {_kind(source)} {_brief(source)}")
    source = source.strip()
    if kind == "url" and not re.match(r"(?i)(https?|file)://", source):
        raise checks.fail(m, kind, f"{at}: url {source!r} must start with http://, https:// or file://")
    if kind == "operation" and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*", source):
        raise checks.fail(m, kind, f"{at}: operation {source!r} is not an operation name")
    opts = {**inherit, **m}
    for k in ("target-path", "path"):
        v = opts.get(k)
        why = "must be a string" if not isinstance(v, str) else _target_path_problem(v.strip())
        if v is not None and why is not None:
            raise checks.fail(m if k in m else inherit, k, f"{at}: '{k}' {_brief(v)} {why}")
    target = str(opts.get("target-path") or opts.get("path") or "").strip().rstrip("/")
    target = "." if target in ("", ".") and (opts.get("target-path") or opts.get("path")) else target
    ttype = opts.get("target-type", "link")
    if ttype not in ("link", "copy"):
        raise checks.fail(m if "target-type" in m else inherit, "target-type",
                          f"{at}: 'target-type' must be link or copy, got {_brief(ttype)}")
    name = opts.get("name")
    if name is not None and (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.-]*", name)):
        raise checks.fail(m if "name" in m else inherit, "name", f"{at}: 'name' must be a flag-like name, got {_brief(name)}")
    sha = m.get("sha256")
    if sha is not None:
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha.strip().lower()):
            raise checks.fail(m, "sha256", f"{at}: 'sha256' must be 64 hex digits, got {_brief(sha)}")
        sha = sha.strip().lower()
    unpack = opts.get("unpack")
    if unpack is not None and not isinstance(unpack, bool):
        raise checks.fail(m, "unpack", f"{at}: 'unpack' must be true or false, got {_brief(unpack)}")
    if unpack is None:  # Guild's default: an archive is unpacked unless the source says unpack: no
        unpack = kind != "operation" and is_archive(source.split("?", 1)[0])
    if unpack and kind == "operation":
        raise checks.fail(m, "unpack", f"{at}: 'unpack' applies to file: and url: sources")
    return Requirement(
        kind=kind,  # type: ignore[arg-type]
        source=source,
        target_path=target,
        target_type=ttype,
        select=_select(checks, m, at),
        rename=_rename(checks, m, at),
        name=name,
        sha256=sha,
        unpack=bool(unpack),
        line=getattr(m, "lines", {}).get(kind) or getattr(m, "line", None) or None,
        select_best=_select_best(checks, m, at, kind),
    )


def _select_best(checks: YamlChecks, m: Mapping[Any, Any], at: str, kind: str) -> tuple[str, str] | None:
    """``select-best: min loss`` (or ``max acc``): of an upstream batch, the trial whose last value
    of that scalar is the lowest (highest); see ``_pipeline``."""
    v = m.get("select-best")
    if v is None:
        return None
    parts = v.split() if isinstance(v, str) else []
    if len(parts) != 2 or parts[0] not in ("min", "max"):
        raise checks.fail(m, "select-best", f"{at}: 'select-best' must be 'min SCALAR' or 'max SCALAR'"
                          f" (select-best: min loss), got {_brief(v)}")
    if kind != "operation":
        raise checks.fail(m, "select-best", f"{at}: 'select-best' applies to operation: requirements")
    return parts[0], parts[1]


def _select(checks: YamlChecks, m: Mapping[Any, Any], at: str) -> tuple[str, ...]:
    v = m.get("select")
    if v is None:
        return ()
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
        raise checks.fail(m, "select", f"{at}: 'select' must be a regular expression or a list of them")
    for p in items:
        try:
            re.compile(p)
        except re.error as e:
            raise checks.fail(m, "select", f"{at}: select pattern {p!r} is not a regular expression: {e}") from None
    return tuple(items)


def _rename(checks: YamlChecks, m: Mapping[Any, Any], at: str) -> tuple[tuple[str, str], ...]:
    import shlex

    v = m.get("rename")
    if v is None:
        return ()
    items = v if isinstance(v, list) else [v]
    out = []
    for spec in items:
        if isinstance(spec, dict) and set(spec) <= {"pattern", "repl"}:
            pair = (str(spec.get("pattern", "")), str(spec.get("repl", "")))
        elif isinstance(spec, str):
            try:  # quotes group a part with spaces; without any, a regex's backslashes stay as written
                parts = shlex.split(spec) if any(q in spec for q in "'\"") else spec.split()
            except ValueError as e:
                raise checks.fail(m, "rename", f"{at}: rename {spec!r}: {e}") from None
            if len(parts) not in (1, 2):
                raise checks.fail(m, "rename", f"{at}: rename {spec!r} must be 'PATTERN REPLACE' (or 'NAME')")
            pair = (parts[0], parts[1]) if len(parts) == 2 else (".*", parts[0])
        else:
            raise checks.fail(m, "rename", f"{at}: rename must be 'PATTERN REPLACE' or {{pattern:, repl:}}")
        try:
            re.compile(pair[0])
        except re.error as e:
            raise checks.fail(m, "rename", f"{at}: rename pattern {pair[0]!r} is not a regular expression: {e}") from None
        out.append(pair)
    return tuple(out)


def no_requirement_error(req: Requirement, where: str, msg: str) -> GuildfileError:
    """An error about ``req`` naming where it was declared."""
    line = f":{req.line}" if req.line else ""
    return GuildfileError(f"{where}{line}: {req.label}: {msg}")
