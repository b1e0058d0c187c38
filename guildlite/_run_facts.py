"""``RunFacts``: what a filter expression (``_filter``) can ask about a run, from its record and
its scalar summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from ._run import Run

_KEYS = ("last", "min", "max")
MISSING: Any = object()  # what a run does not have (``_filter.Filter.lookup``)

@dataclass(frozen=True)
class RunFacts:
    """What a filter can ask about one run. Times are epoch seconds; ``time`` is seconds from start
    to stop (to now while running); ``scalars`` maps a key to its (last, min, max) values."""

    id: str
    op: str = ""
    status: str = ""
    label: str = ""
    tags: tuple[str, ...] = ()
    started: float | None = None
    stopped: float | None = None
    time: float | None = None
    flags: Mapping[str, Any] = field(default_factory=dict)
    scalars: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    notes: str = ""


def _epoch(iso: Any) -> float | None:
    if not isinstance(iso, str) or not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def facts_from_record(rec: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> RunFacts:
    """The facts of a run record (``run.json``'s fields) and its scalar summary (``_scalars.summarize``:
    key -> {"last", "min", "max", ...}; None: no scalars)."""
    import time as _time

    started, stopped = _epoch(rec.get("started")), _epoch(rec.get("stopped"))
    end = stopped if stopped is not None else (_time.time() if rec.get("status") in ("running", "pending") else None)
    scalars = {}
    for k, s in (summary or {}).items():
        if isinstance(s, Mapping) and all(isinstance(s.get(x), (int, float)) for x in _KEYS):
            scalars[k] = (float(s["last"]), float(s["min"]), float(s["max"]))
    notes = rec.get("notes")
    text = "\n".join(n["text"] for n in notes if isinstance(n, dict) and isinstance(n.get("text"), str)) \
        if isinstance(notes, list) else ""
    tags, flags = rec.get("tags"), rec.get("flags")
    return RunFacts(
        id=str(rec.get("id") or ""),
        op=str(rec.get("op") or ""),
        status=str(rec.get("status") or ""),
        label=str(rec.get("label") or ""),
        tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        started=started,
        stopped=stopped,
        time=None if started is None or end is None else round(end - started, 3),
        flags=flags if isinstance(flags, dict) else {},
        scalars=scalars,
        notes=text,
    )


def facts_of(run: Run, summary: Mapping[str, Any] | None = None) -> RunFacts:
    """The facts of ``run``: its record, and its scalars (``summary``, else read from its scalars file)."""
    from ._scalars import summarize

    rec = {**run.to_record(), "id": run.id}
    return facts_from_record(rec, summarize(run.paths.scalars) if summary is None else summary)


# --- parsing --------------------------------------------------------------------------------------------
