"""Guild's ``requires:`` in the guildlite format: the same keys, but for Guild's ``config:`` source.

Guild's ``config: FILE`` source writes FILE with the run's flag values, which Guild's examples pair
with ``flags-dest: config:FILE``. guildlite's ``flags-dest: config:FILE`` already writes FILE in the
run dir with the flag values, so such a source is dropped (with a warning); any other ``config:``
source would hand the job a file guildlite does not write: refused, with its line.
"""

from __future__ import annotations

from typing import Any, Callable

from ._yaml_lines import _Seq

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
