"""Guild's ``requires:`` in the guildlite format: the same keys, but for Guild's ``config:`` source.

Guild's ``config: FILE`` source writes FILE with the run's flag values, which Guild's examples pair
with ``flags-dest: config:FILE``. guildlite's ``flags-dest: config:FILE`` already writes FILE in the
run dir with the flag values, so such a source is dropped (with a warning); any other ``config:``
source would hand the job a file guildlite does not write: refused, with its line.
"""

from __future__ import annotations

from typing import Any, Callable

from ._yaml_lines import _Map, _Seq

Say = Callable[[int, str], None]


def guild_requires(v: Any, flags_dest: Any, where: str, warn: Say, problem: Say) -> Any:
    """``v`` (an op's ``requires``) without the ``config:`` sources that ``flags_dest`` honours."""
    if not isinstance(v, list):
        return v  # the validator says what 'requires' must be
    lines = getattr(v, "lines", None)
    lines = list(lines) if isinstance(lines, list) and len(lines) == len(v) else [0] * len(v)
    out = _Seq()
    out.lines = []
    for item, line in zip(v, lines):
        if isinstance(item, dict) and "config" in item:
            source = item["config"]
            if isinstance(flags_dest, str) and flags_dest == f"config:{source}":
                warn(line, f"{where}: requires 'config: {source}' left out: guildlite writes {source} with the"
                     " flag values itself (flags-dest: config:)")
            else:
                problem(line, f"{where}: requires 'config: {source}' cannot be honoured: guildlite writes a"
                        " config file with the flag values only for the op's own 'flags-dest: config:FILE'")
            continue
        out.append(item)
        out.lines.append(line)
    return out


def model_refs(key: str, v: Any, op_name: str) -> Any:
    """``steps`` or ``requires`` of a model's op with the ops they name made the model's own:
    Guild reads ``- prepare`` and ``operation: prepare`` inside ``- model: mnist`` as
    ``mnist:prepare``, the name guildlite gives that op (and records on its runs). A name with a
    ``:`` already names its model; an op of the anonymous model (no ``:``) is left as written.
    An operation requirement keeps ``prepare`` as its pick name (``prepare=RUN``)."""
    model = op_name.rpartition(":")[0]
    if not model or not isinstance(v, list) or key not in ("steps", "requires"):
        return v
    out = _Seq(_model_ref(key, item, model) for item in v)
    out.lines = list(getattr(v, "lines", [0] * len(v)))
    return out


def _model_ref(key: str, item: Any, model: str) -> Any:
    if key == "steps" and isinstance(item, str):
        return _qualified_step(item, model)
    if not isinstance(item, dict):
        return item
    field = "run" if key == "steps" else "operation"
    ref = item.get(field)
    if not isinstance(ref, str) or (key == "requires" and (":" in ref or not ref.strip())):
        return item
    copy = _Map(item)  # the item may be shared (a config's op that several models extend)
    copy.line, copy.lines = getattr(item, "line", 0), dict(getattr(item, "lines", {}))
    if key == "steps":
        copy[field] = _qualified_step(ref, model)
    else:
        copy[field] = f"{model}:{ref.strip()}"
        if "name" not in item:
            copy["name"] = ref.strip()
    return copy


def _qualified_step(text: str, model: str) -> str:
    """``train epochs=2`` -> ``mnist:train epochs=2`` (the op is the first word)."""
    head, sep, rest = text.strip().partition(" ")
    return text if not head or ":" in head else f"{model}:{head}{sep}{rest}"
