"""The page of ``guildlite view``: one self-contained HTML document over ``_view_data``'s dict.

The page's HTML, CSS and JavaScript are package data (``guildlite/static/view.*``, read with
importlib.resources); ``render_html`` fills in the title, the CSS, plotly.js (from the ``plotly``
package, an optional extra) and the data, so the page works offline and as one file.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from ._errors import GuildliteError
from ._files import atomic_write

_MISSING = "guildlite view needs plotly (an optional extra): pip install 'guildlite[view]'"
_js_cache: list[str] = []
_SLOT = re.compile(r"\{\{(\w+)\}\}")


def plotly_js() -> str:
    """plotly.js as bundled in the ``plotly`` Python package; GuildliteError if it is not installed."""
    if not _js_cache:
        try:
            from plotly.offline import get_plotlyjs
        except ImportError:
            raise GuildliteError(_MISSING, exit_code=2) from None
        js = get_plotlyjs()
        # Inlined in a <script>: the text must not close it (plotly.min.js has no such text today).
        _js_cache.append(js.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT"))
    return _js_cache[0]


def to_json(data: Any) -> str:
    """Compact JSON that is safe inside a <script> element (no ``<``, ``>``, ``&`` left as-is)."""
    try:
        text = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:  # a NaN/inf flag value: JSON has no such number
        text = json.dumps(_finite(data), separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


@lru_cache(maxsize=None)
def _static(name: str) -> str:
    """A file of the page (``guildlite/static/NAME``), shipped as package data."""
    return files("guildlite").joinpath("static").joinpath(name).read_text(encoding="utf-8")


def render_html(data: dict[str, Any], js: str | None = None) -> str:
    """The page: one self-contained HTML document (plotly.js and the data inlined)."""
    js = plotly_js() if js is None else js
    n = len(data["runs"])
    values = {
        "title": f"guildlite view ({n} run{'s' if n != 1 else ''})",
        "css": _static("view.css"),
        "plotly_js": js,
        "data": to_json(data),
        "app_js": _static("view.js"),
    }
    # One pass over the template's {{slots}}: a value that holds such text (data, plotly.js) is not
    # read again as a slot.
    parts = _SLOT.split(_static("view.html"))
    parts[1::2] = [values[name] for name in parts[1::2]]
    return "".join(parts)


def write_report(path: Path, data: dict[str, Any]) -> int:
    """Write the page to ``path`` (one static file, written whole or not at all: ``atomic_write``);
    returns its size in bytes. GuildliteError if it cannot be written."""
    raw = render_html(data).encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, raw)
    except OSError as e:
        raise GuildliteError(f"cannot write {path}: {e.strerror or e}") from None
    return len(raw)
