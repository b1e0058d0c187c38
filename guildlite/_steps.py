"""A pipeline op's ``steps:``, parsed and checked when the guildfile loads.

An op with ``steps:`` is a pipeline: it has no ``main`` of its own; each step runs an op of the
same guildfile as a child run. Guild AI's forms are accepted: a string (``- prepare``,
``- train lr=0.1``) or a mapping with ``run:`` (the op, then optional ``NAME=VALUE`` items),
``flags:`` (a mapping, merged with the items of ``run``), ``continue-on-error`` and ``needed``.
``${name}`` in a value is the pipeline's own flag ``name`` (checked here against its flags).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from ._flags import format_value, name_problem
from ._yaml_lines import _brief, _kind, _plain, _Seq

if TYPE_CHECKING:
    from ._guildfile import OpDef
    from ._yaml_lines import YamlChecks

PIPELINE_KEYS = ("description", "flags", "steps", "plugins")  # what else a pipeline op may say
STEP_KEYS = ("run", "flags", "continue-on-error", "needed")
_REF = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class StepDef:
    """One step of a pipeline: ``op`` with ``assignments`` (``NAME=VALUE``, ``${flag}`` unreplaced)."""

    op: str
    assignments: tuple[str, ...] = ()
    continue_on_error: bool = False  # a failing step does not stop (nor fail) the pipeline
    needed: bool = True  # reuse a completed run of the same op, flags, source and requirements
    line: int = 0  # in the guildfile

    def given(self, flags: Mapping[str, Any]) -> list[str]:
        """The step's ``NAME=VALUE`` items, each ``${flag}`` replaced by the pipeline's value: a
        value that is one reference alone keeps the flag's type (``lr=${lr}``), inside text it is
        its text (``name=run-${seed}``)."""
        out = []
        for item in self.assignments:
            name, _, text = item.partition("=")
            whole = _REF.fullmatch(text)
            if whole:
                text = _text(flags.get(whole.group(1)))
            else:
                text = _REF.sub(lambda m: format_value(flags.get(m.group(1))), text)
            out.append(f"{name}={text}")
        return out


def _text(value: Any) -> str:
    """``value`` as the text of a ``NAME=VALUE`` item that decodes to it again (a string that reads
    as a number, a bool or null is quoted; a list is batch syntax, as Guild reads it)."""
    from ._flags import decode

    if isinstance(value, str):
        if decode(value) == value and value.strip() == value:
            return value
        quote = "'" if "'" not in value else '"'
        return f"{quote}{value}{quote}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if value is None:
        return "null"
    return format_value(value)


def pipeline_op(v: YamlChecks, parent: Any, name: str, m: Mapping[Any, Any], make: Any) -> OpDef:
    """The pipeline op ``name`` (``m`` has ``steps``); ``make`` builds the OpDef from checked parts."""
    where = f"operation '{name}'"
    if "main" in m:
        raise v.fail(m, "main", f"{where} has 'steps': it is a pipeline, which runs its steps' ops and has no 'main'")
    v.keys(m, PIPELINE_KEYS, f"pipeline {where} (an op with 'steps')")
    flags_raw = v.mapping(m, "flags", m.get("flags"), f"{where} flags")
    flags = {str(k): v.flag(flags_raw, k, flags_raw[k], where) for k in flags_raw}  # type: ignore[attr-defined]
    steps = _steps(v, m, where, set(flags))
    return make(name=name, main="", description=v.string(m, "description", where), flags=flags, steps=steps,
                plugins=v.plugins(m, "plugins", m.get("plugins"), f"{where} plugins"),  # type: ignore[attr-defined]
                launcher="python", data=_plain(m))


def _steps(v: YamlChecks, m: Mapping[Any, Any], where: str, flags: set[str]) -> tuple[StepDef, ...]:
    raw = m["steps"]
    if not isinstance(raw, list) or not raw:
        raise v.fail(m, "steps", f"{where}: 'steps' must be a non-empty list of steps (- prepare, - run: train lr=0.1),"
                     f" got {_kind(raw)}" + ("" if isinstance(raw, list) else f" {_brief(raw)}"))
    out = []
    for i, item in enumerate(raw):
        at = f"{where} steps[{i}]"
        line = raw.lines[i] if isinstance(raw, _Seq) else 0
        out.append(_step(v, m, item, at, line or getattr(m, "lines", {}).get("steps", 0), flags))
    return tuple(out)


def _step(v: YamlChecks, m: Mapping[Any, Any], item: Any, at: str, line: int, flags: set[str]) -> StepDef:
    def fail(key: Any, msg: str) -> Exception:
        return v.fail(item, key, f"{at}: {msg}") if isinstance(item, dict) else v.fail(_at(line), None, f"{at}: {msg}")

    if isinstance(item, str):
        item = {"run": item}
        item_line = line
    elif isinstance(item, dict):
        v.keys(item, STEP_KEYS, at)
        item_line = getattr(item, "line", 0) or line
    else:
        raise fail(None, f"a step is an op name or a mapping with 'run' (- run: train lr=0.1), got {_kind(item)}"
                   f" {_brief(item)}")
    text = item.get("run")
    if not isinstance(text, str) or not text.strip():
        raise fail("run", "'run' (the op to run, with optional NAME=VALUE items) is required and must be a string")
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise fail("run", f"cannot split 'run' {text!r}: {e}") from None
    op, items = words[0], words[1:]
    given: dict[str, str] = {}
    for word in items:
        name, sep, value = word.partition("=")
        if word.startswith("-") or not sep:
            raise fail("run", f"{word!r} is not NAME=VALUE (a step's options are keys: continue-on-error: true,"
                       " needed: false)")
        _name(fail, "run", name, given)
        given[name] = value
    step_flags = v.mapping(item, "flags", item.get("flags"), f"{at} flags") if isinstance(item, dict) else {}
    for name, value in step_flags.items():
        if not isinstance(name, str):
            raise fail("flags", f"flag name {name!r} is not a string")
        _name(fail, "flags", name, given)
        if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(x, (dict, list)) for x in value)):
            raise fail("flags", f"flag '{name}': a value is text, a number, true/false, null or a list of them")
        given[name] = _text(value)
    for name, value in given.items():
        for ref in _REF.findall(value):
            if ref not in flags:
                known = f"its flags: {', '.join(sorted(flags))}" if flags else "it declares no flags"
                raise fail("flags" if name in step_flags else "run",
                           f"'${{{ref}}}' in {name}={value} is not a flag of the pipeline ({known})")
    options = {}
    for key in ("continue-on-error", "needed"):
        value = item.get(key, key == "needed")
        if not isinstance(value, bool):
            raise fail(key, f"'{key}' must be true or false, got {_brief(value)}")
        options[key] = value
    return StepDef(op=op, assignments=tuple(f"{k}={x}" for k, x in given.items()),
                   continue_on_error=options["continue-on-error"], needed=options["needed"], line=item_line)


def _name(fail: Any, key: str, name: str, given: Mapping[str, str]) -> None:
    problem = name_problem(name)
    if problem:
        raise fail(key, problem)
    if name in given:
        raise fail(key, f"'{name}' is given more than once")


def _at(line: int) -> Any:
    from ._yaml_lines import _Map

    out = _Map()
    out.line, out.lines = line, {}
    return out


def check_steps(v: YamlChecks, operations: Mapping[str, OpDef]) -> None:
    """Every step names an op of the guildfile that is not itself a pipeline, and no requirement
    names a pipeline (it has no files of its own); checked once all ops are read: a step may name
    an op declared after its pipeline."""
    for name, op in operations.items():
        for req in op.requires:
            target = operations.get(req.source) if req.kind == "operation" else None
            if target is not None and target.steps:
                raise v.fail(_at(req.line or 0), None, f"operation '{name}' requires operation '{req.source}', a"
                             " pipeline, which has no files of its own: require the op of the step that makes them")
        for i, step in enumerate(op.steps):
            at = f"operation '{name}' steps[{i}]"
            target = operations.get(step.op)
            if target is None:
                import difflib  # here: loading any guildfile runs this check, and only this error needs it

                hint = difflib.get_close_matches(step.op, list(operations), n=1)
                tip = f"did you mean '{hint[0]}'?" if hint else f"operations: {', '.join(sorted(operations))}"
                raise v.fail(_at(step.line), None, f"{at}: no operation '{step.op}' ({tip})")
            if target.steps:
                raise v.fail(_at(step.line), None, f"{at}: '{step.op}' is a pipeline itself; a step runs an op with"
                             " a 'main' (write its steps here instead)")
