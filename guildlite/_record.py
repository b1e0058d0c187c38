"""The shape of a run record (``run.json``), checked in one place whenever a record is read.

A run dir may come from elsewhere (a shared runs dir, an archive): its record is untrusted input.
``parse`` turns the file's bytes into a record whose every known field has the type guildlite's
code expects, or says what is wrong; nothing else in guildlite reads a record's bytes. Fields
this version does not know are left alone (a newer guildlite may write more). A run's id and
location never come from a field: they are its directory's name (``is_run_id``), and the ids a
record names (``parent``, ``trials``) must be ids too, looked up beside the run only.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Callable

# ``_status.STATES`` (the store sits below the status table and cannot import it; a test holds them equal)
STATUSES = ("staged", "pending", "running", "completed", "error", "terminated", "pruned")
MAX_BYTES = 64 << 20  # a record is a few KB; a batch of 100k trials ~3 MB
MAX_DEPTH = 64  # nesting of objects and lists: guildlite writes < 8; keeps every reader off the recursion limit
_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-f]{6}", re.ASCII)  # ``_files.new_run_id``
_IDS = re.compile(r"(?:[0-9]{8}T[0-9]{6}-[0-9a-f]{6}\n)*[0-9]{8}T[0-9]{6}-[0-9a-f]{6}", re.ASCII)
_SURROGATE = re.compile(r"\\[uU][dD][89a-fA-F]")  # an escape that may decode to half a UTF-16 pair
_INT32 = 1 << 31
_NONE = type(None)


def is_run_id(name: object) -> bool:
    """Whether ``name`` is a run id (``20261123T101500-1f43a9``), so a safe directory name."""
    return type(name) is str and _ID.fullmatch(name) is not None


def run_ids(names: list[str]) -> list[str]:
    """The members of ``names`` that are run ids, in order (one regex match over them all when
    all are: listing 100k names stays a few ms)."""
    text = "\n".join(names)
    if not names or (text.count("\n") == len(names) - 1 and _IDS.fullmatch(text)):  # no name holds a newline
        return names
    return [n for n in names if is_run_id(n)]


class Problem(ValueError):
    """What is wrong with a record (the message names the field)."""


def parse(raw: bytes) -> dict[str, Any]:
    """The record in ``raw`` (the bytes of a ``run.json``); Problem if it is not one."""
    if len(raw) > MAX_BYTES:
        raise Problem(f"run.json is larger than {MAX_BYTES >> 20} MB")
    try:
        text = raw.decode("utf-8")
        rec = _loads(text)
    except UnicodeDecodeError:
        raise Problem("run.json is not UTF-8 text") from None
    check(rec, text)
    return rec


def _loads(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except RecursionError:  # the C parser recurses once per nesting level
        raise Problem(f"run.json is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as e:
        raise Problem(f"run.json is not valid JSON ({e})") from None


def check(rec: Any, text: str) -> None:
    """Problem unless ``rec`` (parsed from ``text``) has a record's shape: a JSON object with an
    ``op``, every known field of its type (see ``_FIELDS``), nesting at most MAX_DEPTH levels, and
    no string holding half of a UTF-16 surrogate pair (which no terminal or page could print)."""
    if type(rec) is not dict:
        raise Problem(f"run.json holds {_kind(rec)}, not a JSON object")
    if "op" not in rec:
        raise Problem("no 'op' field")
    for key, value in rec.items():
        spec = _FIELDS.get(key)
        if spec is None:
            continue
        types, more = spec
        if type(value) not in types:
            raise Problem(f"field {key!r} is {_kind(value)}, expected {' or '.join(_NAMES[t] for t in types)}")
        if more is not None and value is not None:
            wrong = more(value)
            if wrong:
                raise Problem(f"field {key!r} {wrong}")
    # Every '[' or '{' may open a level: few of them (the usual record) bound the depth unseen.
    if text.count("[") + text.count("{") > MAX_DEPTH or _SURROGATE.search(text):
        _walk(rec)


def _walk(rec: dict[str, Any]) -> None:
    stack: list[tuple[Any, int]] = [(rec, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Problem(f"run.json is nested more than {MAX_DEPTH} levels deep")
        items = node.items() if type(node) is dict else enumerate(node)
        for k, v in items:
            for s in (k, v):
                if type(s) is str:
                    try:
                        s.encode("utf-8")
                    except UnicodeEncodeError:
                        raise Problem(f"a string holds a lone surrogate ({s[:40]!r})") from None
            if type(v) in (dict, list):
                stack.append((v, depth + 1))


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", _NONE: "null"}.get(type(v), type(v).__name__)


_NAMES = {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer", float: "number",
          _NONE: "null"}


# --- field checks beyond the type: each returns what is wrong, or "" -----------------------------------


def _one_of(*allowed: str) -> Callable[[str], str]:
    members = frozenset(allowed)
    return lambda v: "" if v in members else f"is {v[:40]!r}, expected one of {', '.join(allowed)}"


def _int_in(lo: int, hi: int) -> Callable[[int], str]:
    return lambda v: "" if lo <= v < hi else f"is {v}, out of range"


def _time(v: str) -> str:
    if not v:
        return ""
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        return f"is {v[:40]!r}, not an ISO 8601 time"
    # Aware, and far from datetime's ends: every reader converts it to local time and subtracts.
    return "" if t.tzinfo is not None and 1900 < t.year < 9000 else f"is {v[:40]!r}, not a UTC-offset time"


def _run_id(v: str) -> str:
    return "" if is_run_id(v) else f"is {v[:40]!r}, not a run id"


def _run_ids(v: list[Any]) -> str:
    for x in v:
        if not is_run_id(x):
            return f"holds {x!r:.40}, not a run id"
    return ""


def _strings(v: list[Any]) -> str:
    for x in v:
        if type(x) is not str:
            return f"holds {_kind(x)}, expected strings"
    return ""


def _objects(v: list[Any]) -> str:
    for x in v:
        if type(x) is not dict:
            return f"holds {_kind(x)}, expected objects"
    return ""


def _notes(v: list[Any]) -> str:
    for x in v:
        if type(x) is not dict or type(x.get("text")) is not str or type(x.get("time")) is not str:
            return "holds a note that is not {\"time\": ISO time, \"text\": string}"
        wrong = _time(x["time"])
        if wrong:
            return f"holds a note whose time {wrong}"
    return ""


def _keys(**spec: tuple[type, ...]) -> Callable[[dict[str, Any]], str]:
    """A check of an object's known keys (others are left alone)."""

    def check(v: dict[str, Any]) -> str:
        for k, types in spec.items():
            if k in v and type(v[k]) not in types:
                return f"has {k!r} of {_kind(v[k])}"
        return ""

    return check


_NUM = (int, float)
_trace_entry = _keys(plugin=(str,), hook=(str,), priority=_NUM, seconds=_NUM, error=(str, _NONE))
_error = _keys(message=(str, _NONE), plugin=(str, _NONE), hook=(str, _NONE))
_remote = _keys(backend=(str,), job_id=(str, int, _NONE), job_ids=(list,), hosts=(list,))
_summary = _keys(summary=(dict,))
_attrs_source = _keys(root=(str, _NONE))
_waiting = _keys(reason=(str,), since=(str,))


def _plugins(v: list[Any]) -> str:
    for call in v:
        if type(call) is not dict:
            return f"holds {_kind(call)}, expected objects"
        for k in ("plugin", "hook", "priority", "seconds"):
            if k not in call:
                return f"has a hook call without {k!r}"
        wrong = _trace_entry(call)
        if wrong:
            return wrong
    return ""


def _error_check(v: dict[str, Any]) -> str:
    wrong = _error(v)
    if not wrong and v.get("plugin") and type(v.get("hook")) is not str:
        wrong = "names a plugin but no hook"
    return wrong


def _remote_check(v: dict[str, Any]) -> str:
    wrong = _remote(v)
    if not wrong and any(type(j) not in (str, int) for j in v.get("job_ids") or ()):
        wrong = "has a job id that is not a string or an integer"
    return wrong or (_strings(v["hosts"]) if "hosts" in v else "")


def _remote_or_flag(v: Any) -> str:
    return _remote_check(v) if type(v) is dict else ""


def _waiting_check(v: dict[str, Any]) -> str:
    wrong = _waiting(v)
    return wrong or (f"has 'since' that {_time(v['since'])}" if type(v.get("since")) is str and _time(v["since"])
                     else "")


def _batch(v: dict[str, Any]) -> str:
    wrong = _summary(v)
    summary = v.get("summary") or {}
    if not wrong and any(type(n) is not int for n in summary.values()):
        wrong = "has a summary count that is not an integer"
    return wrong


_PIPELINE_STEP = _keys(op=(str,), given=(list,), continue_on_error=(bool,), needed=(bool,), run=(str,),
                       status=(str,), reused=(str,), error=(str,), selected=(dict,))


def _pipeline(v: dict[str, Any]) -> str:
    """A pipeline's plan: ``steps`` objects (``_pipeline``), ``summary`` counts."""
    wrong = _batch({"summary": v["summary"]}) if "summary" in v else ""
    steps = v.get("steps", [])
    if not wrong and type(steps) is not list:
        wrong = "has 'steps' that is not a list"
    for step in steps if not wrong else ():
        wrong = _objects([step]) or _PIPELINE_STEP(step) or _strings(step.get("given") or [])
        if not wrong and step.get("run") is not None and not is_run_id(step["run"]):
            wrong = f"has a step run {step['run']!r:.40}, not a run id"  # a restart loads it beside the pipeline
        if wrong:
            break
    return wrong


def _attrs(v: dict[str, Any]) -> str:
    source = v.get("sourcecode")
    if source is not None and type(source) is not dict:
        return "has 'sourcecode' that is not an object"
    return _attrs_source(source) if source else ""


def _requires(v: list[Any]) -> str:
    """Objects; an upstream run's id (``run``, lineage) must be a run id: it is looked up beside the run."""
    wrong = _objects(v)
    for entry in v if not wrong else ():
        if entry.get("run") is not None and not is_run_id(entry["run"]):
            return f"has an upstream run {entry['run']!r:.40}, not a run id"
    return wrong


def _op_def(v: dict[str, Any]) -> str:
    patterns = v.get("output-scalars")  # as the guildfile gives it: one pattern, a list of them, or off
    if patterns is None or patterns is False or type(patterns) is str:
        return ""
    if type(patterns) is not list or _strings(patterns):
        return "has 'output-scalars' that is not a pattern, a list of patterns or off"
    return ""


# field -> (the types it may have, a further check of a non-null value or None)
_FIELDS: dict[str, tuple[tuple[type, ...], Callable[[Any], str] | None]] = {
    "id": ((str,), None),  # ignored: a run's id is its directory's name
    "op": ((str,), None),
    "opspec": ((str,), None),
    "flags": ((dict,), None),
    "status": ((str,), _one_of(*STATUSES)),
    "exit_code": ((int, _NONE), _int_in(-_INT32, _INT32)),
    "label": ((str,), None),
    "tags": ((list,), _strings),
    "created": ((str,), _time),
    "started": ((str, _NONE), _time),
    "stopped": ((str, _NONE), _time),
    "is_batch": ((bool,), None),
    "is_trial": ((bool,), None),
    "parent": ((str, _NONE), _run_id),
    "trials": ((list,), _run_ids),
    "host": ((str,), None),
    "remote": ((bool, dict), _remote_or_flag),
    "op_def": ((dict,), _op_def),
    "error": ((dict, _NONE), _error_check),
    "attrs": ((dict,), _attrs),
    "cmd": ((list,), _strings),
    "nproc_per_node": ((int,), _int_in(1, 1 << 16)),
    "gpus": ((list, _NONE), _strings),
    "waiting": ((dict, _NONE), _waiting_check),
    "pid": ((int, _NONE), _int_in(1, _INT32)),  # never 0 or negative: kill() would signal a group
    "pid_start": ((int, _NONE), _int_in(0, 1 << 63)),
    "job_pid": ((int, _NONE), _int_in(1, _INT32)),
    "attempts": ((list,), _objects),
    "plugins": ((list,), _plugins),
    "batch": ((dict, _NONE), _batch),
    "is_pipeline": ((bool,), None),
    "steps": ((list,), _run_ids),
    "pipeline": ((dict, _NONE), _pipeline),
    "requires": ((list,), _requires),
    "notes": ((list,), _notes),
    "guildlite_version": ((str,), None),
}
