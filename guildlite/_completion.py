"""What shell completion offers: operation names, ``NAME=`` flag names and values of the op being
run, and run selectors. Each is cheap (no script is imported or run, no run record read beyond the
few offered) and never fails: a broken guildfile or runs dir offers nothing, a traceback never
reaches the user's prompt. The click glue is ``cli/_complete.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

if TYPE_CHECKING:
    from ._guildfile import Guildfile, OpDef

MAX_RUNS = 100  # run ids offered at most: a shell shows them all, a longer list helps nobody
MAX_READ = 1000  # run records read at most for one offer (their help, a `where`): a keystroke's budget

Candidate = tuple[str, str]  # (value, help)
T = TypeVar("T")


def quietly(make: Callable[[], list[T]]) -> list[T]:
    """``make()``, or nothing when it fails in any way (completion must never crash the prompt)."""
    try:
        return make()
    except Exception:  # noqa: BLE001  # a broken guildfile, an unreadable dir, a bug: offer nothing
        return []


def _guildfile(path: Path | None) -> Guildfile | None:
    from ._guildfile import GUILDFILE, find_guildfile, load

    found = path or find_guildfile()
    if found is not None and found.is_dir():
        found = found / GUILDFILE
    return load(found) if found is not None else None


def op_names(incomplete: str, guildfile: Path | None = None) -> list[Candidate]:
    """The guildfile's operations starting with ``incomplete`` (with their descriptions); with no
    guildfile, the scripts here (``guildlite run train.py``)."""

    def make() -> list[Candidate]:
        gf = _guildfile(guildfile)
        if gf is None:
            from ._script_op import runnable_scripts

            return [(s, "script") for s in runnable_scripts(Path.cwd()) if s.startswith(incomplete)]
        return [(name, op.description or ("pipeline" if op.steps else op.main))
                for name, op in gf.operations.items() if name.startswith(incomplete)]

    return quietly(make)


def _op(op_name: str, guildfile: Path | None) -> tuple[OpDef, Path] | None:
    from ._flags_import import with_imported_flags
    from ._script_op import is_script

    gf = _guildfile(guildfile)
    if gf is None or op_name not in gf.operations:
        if not is_script(op_name):
            return None
        gf = _guildfile(Path(op_name))
        if gf is None or not gf.operations:
            return None
        op = next(iter(gf.operations.values()))
    else:
        op = gf.op(op_name)
    if op.steps:
        return op, gf.dir
    try:
        return with_imported_flags(op, gf.dir, cheap=True), gf.dir
    except Exception:  # noqa: BLE001  # the declared flags still complete
        return op, gf.dir


def flag_items(op_name: str, given: Sequence[str], incomplete: str, guildfile: Path | None = None) -> list[Candidate]:
    """``NAME=`` for each flag of ``op_name`` not in ``given`` (``NAME=VALUE`` items); after
    ``NAME=``, the flag's values when it has a few (choices, a bool)."""

    def make() -> list[Candidate]:
        found = _op(op_name, guildfile)
        if found is None:
            return []
        op = found[0]
        if "=" in incomplete:
            name, _, value = incomplete.partition("=")
            flag = op.flags.get(name)
            if flag is None:
                return []
            values: list[Any] = list(flag.choices or ()) or ([True, False] if flag.value_type == "bool" else [])
            from ._flags import format_value

            texts = [format_value(v) for v in values]
            return [(f"{name}={t}", "") for t in texts if t.startswith(value)]
        taken = {item.partition("=")[0] for item in given if "=" in item}
        return [(f"{name}=", f.description or (f"default {f.default}" if f.default is not None else ""))
                for name, f in op.flags.items() if name.startswith(incomplete) and name not in taken]

    return quietly(make)


def run_selectors(incomplete: str, runs_dir: Path | None = None, guildfile: Path | None = None,
                  where: Callable[[Any], bool] | None = None) -> list[Candidate]:
    """Run ids starting with ``incomplete``, newest first (their short ids, when ``incomplete``
    begins one), each with its op and status as help; at most MAX_RUNS. ``where``: only runs it
    accepts (``run --start``: staged runs)."""

    def make() -> list[Candidate]:
        from ._choose import runs_dir_for
        from ._errors import GuildliteError
        from ._guildfile import find_guildfile
        from ._run import load_run
        from ._selection import RunList, short_id

        try:
            where_dir = runs_dir_for(runs_dir, guildfile)
        except GuildliteError:  # a broken guildfile: its runs-dir is unknown; runs/ beside it is the default
            found = guildfile or find_guildfile()
            where_dir = (found.parent if found is not None else Path.cwd()) / "runs"
        ids = RunList(where_dir).ids
        chosen = [(i, i) for i in ids if i.startswith(incomplete)]
        if not chosen and incomplete:  # a short id, as listings show it
            chosen = [(short_id(i), i) for i in ids if short_id(i).startswith(incomplete)]
        out: list[Candidate] = []
        for value, run_id in chosen[:MAX_READ]:
            if len(out) >= MAX_RUNS:
                break
            try:
                run = load_run(where_dir / run_id)
            except Exception:  # noqa: BLE001  # a bad record is still a selector
                out.append((value, ""))
                continue
            if where is None or where(run):
                out.append((value, f"{run.op} {run.status}"))
        return out

    return quietly(make)
