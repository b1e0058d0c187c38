"""Finding runs and writing on them: ``select`` (the best run's id) and ``note``."""

from __future__ import annotations

from pathlib import Path

import click

from .._choose import runs_dir_for, select_one
from .._errors import GuildliteError
from . import _complete
from ._common import CONTEXT, _filter_option, _guildfile_option, _local, _runs_dir_option, _say


@click.command("select", context_settings=CONTEXT)
@click.argument("specs", nargs=-1, metavar="[RUNS]...", shell_complete=_complete.runs)
@click.option("--min", "min_key", metavar="SCALAR", help="The run whose SCALAR is lowest (loss: its last value; "
              "min(loss): its lowest).")
@click.option("--max", "max_key", metavar="SCALAR", help="The run whose SCALAR is highest.")
@_filter_option
@click.option("--json", "as_json", is_flag=True, help='Print {"id", "scalar", "how", "value"} instead of the id.')
@_runs_dir_option
@_guildfile_option
def select_cmd(
    specs: tuple[str, ...],
    min_key: str | None,
    max_key: str | None,
    filter_expr: str | None,
    as_json: bool,
    runs_dir: Path | None,
    guildfile: Path | None,
) -> None:
    """Print the id of the best run: the lowest --min SCALAR or highest --max SCALAR among RUNS
    (default: all) that --filter matches. E.g. guildlite cat $(guildlite select --min loss) model.pt

    A run that has no value of SCALAR is not a candidate; the newest wins a tie. Exit 1 when no run
    has one."""
    from .._select_best import best_in

    if (min_key is None) == (max_key is None):
        raise click.UsageError("give one of --min SCALAR or --max SCALAR")
    how, key = ("min", min_key) if min_key is not None else ("max", max_key)
    assert key is not None
    run_id, value = best_in(runs_dir_for(runs_dir, guildfile), specs, how, key, filter_expr)
    if as_json:
        import json

        click.echo(json.dumps({"id": run_id, "scalar": key, "how": how, "value": value}))
        return
    click.echo(run_id)


@click.command(context_settings=CONTEXT)
@click.argument("run_spec", metavar="RUN", shell_complete=_complete.runs)
@click.argument("text", required=False)
@click.option("--edit", is_flag=True, help="Write the note in $EDITOR (TEXT, if given, to start from).")
@click.option("--json", "as_json", is_flag=True,
              help='Print the run\'s notes as JSON, oldest first: {"id", "notes": [{"time", "text"}, ...]}.')
@_runs_dir_option
@_guildfile_option
def note(run_spec: str, text: str | None, edit: bool, as_json: bool, runs_dir: Path | None,
         guildfile: Path | None) -> None:
    """Add a note to a run (kept with the time it was written); without TEXT, show its notes.

    Notes show in `runs info` and `view`; --filter 'note ~ REGEX' finds runs by them."""
    run = select_one(runs_dir_for(runs_dir, guildfile), run_spec)
    if edit:
        from .._editor import edit_text
        from .._notes import MAX_NOTE_CHARS

        text = edit_text(text or "", 4 * MAX_NOTE_CHARS, "note")  # UTF-8: at most 4 bytes a character
        if text is None:
            raise GuildliteError("the editor closed without saving: no note written", exit_code=1)
    if text is None:
        if as_json:
            _notes_json(run.id, run.notes)
            return
        if not run.notes:
            _say(f"{run.id} has no notes", err=True)
        for n in run.notes:
            _show_note(n)
        return
    from .._notes import add_note

    written = add_note(run, text)
    _say(f"{run.id}: note added ({len(run.notes)} in all)", err=True)
    if as_json:
        _notes_json(run.id, run.notes)
        return
    _show_note(written)


def _notes_json(run_id: str, notes: list[dict[str, object]]) -> None:
    import json

    click.echo(json.dumps({"id": run_id, "notes": [{"time": n.get("time"), "text": n.get("text")} for n in notes
                                                        if isinstance(n, dict)]},
                          indent=2))


def _show_note(n: dict[str, object]) -> None:
    """A note as `runs info` shows it: its local time, then its text, later lines indented under it."""
    when = _local(str(n.get("time") or ""))
    lines = str(n.get("text") or "").splitlines() or [""]
    _say(f"  {when}  {lines[0]}")
    for line in lines[1:]:
        _say(f"  {' ' * len(when)}  {line}")
