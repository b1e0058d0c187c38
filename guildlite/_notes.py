"""Notes on runs (``guildlite note RUN "text"``): free text appended to ``run.json``'s ``notes`` with
the time it was written, through the store (``update_record``), so notes written at once from
several shells, or while the run's owner saves its record, are all kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import GuildliteError
from ._files import now_iso
from ._store import update_record

if TYPE_CHECKING:
    from ._run import Run

MAX_NOTE_CHARS = 64 << 10  # a note is a few lines; a record stays small enough to list 100k of


def add_note(run: Run, text: str) -> dict[str, Any]:
    """Append the note ``text`` (surrounding blank lines stripped) to ``run``'s record; returns the
    note as written (``{"time": ISO, "text": ...}``). GuildliteError (exit 2) for an empty or
    over-long note."""
    text = text.strip("\n").rstrip()
    if not text.strip():
        raise GuildliteError("empty note: nothing written", exit_code=2)
    if len(text) > MAX_NOTE_CHARS:
        raise GuildliteError(f"note of {len(text)} characters: at most {MAX_NOTE_CHARS}", exit_code=2)
    note = {"time": now_iso(), "text": text}

    def change(rec: dict[str, Any]) -> None:
        notes = rec.get("notes")
        rec["notes"] = [*(notes if isinstance(notes, list) else []), note]

    run.notes = update_record(run.run_dir, change)["notes"]
    return note
