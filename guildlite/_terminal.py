"""Text made safe to print on a terminal.

Labels, tags, flag values, op names and ids come from records anyone may have written: printed
raw, an ESC sequence could clear the screen, recolour or retitle the terminal, and ``\\r``,
``\\b`` or a bidi override (U+202E) could make one value read as another. Every table and line
that shows record fields goes through ``printable``: control characters are shown as Python
escapes (``\\x1b``, ``\\r``, ``\\u202e``). JSON output needs none of this: JSON escapes them.
"""

from __future__ import annotations

import re
import unicodedata

_NOT_PLAIN = re.compile(r"[^\x20-\x7e]")  # anything but printable ASCII is looked at
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Control (Cc), format (Cf: bidi overrides, zero-width...), lone surrogates (Cs: undecodable
# bytes from argv) and line/paragraph separators. ZERO WIDTH JOINER stays: emoji sequences use it.
_UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_KEEP = {"\u200d"}


def printable(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every terminal control character escaped (``\\x1b``, ``\\r``, ``\\u202e``).

    Idempotent: the escapes are plain ASCII. A backslash is left as it is, so ``\\x1b`` may also
    be literal text; ``--json`` shows the exact value. ``keep_newlines`` for messages of several
    lines (errors quoting a YAML snippet).
    """
    if text.isprintable():  # no Cc/Cf/Cs/Zl/Zp character (nor any other non-printable): the common case
        return text

    def escape(m: re.Match[str]) -> str:
        c = m.group()
        if (c == "\n" and keep_newlines) or c in _KEEP or unicodedata.category(c) not in _UNSAFE:
            return c
        if c in _NAMED:
            return _NAMED[c]
        n = ord(c)
        return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"

    return _NOT_PLAIN.sub(escape, text)
