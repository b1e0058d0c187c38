"""What ``compare`` and ``view`` show of a batch's study: its trials in order with their objective,
the best so far, the best trial, and flag importances where Optuna gives them.

``study_view`` joins the study's own account (``Study.summary``: trial numbers, the values it was
told, its states, importances) with the batch's trial runs (flags, status, the last value each
reported): a pruned trial has no objective, but where it stood when it was stopped is shown.
When the study cannot be read (Optuna not installed where the runs are looked at, a damaged
journal), the same view is made from the runs alone, and ``note`` says so. ``study_lines`` is its
text for ``compare``; the page draws it from the dict (``static/view.js``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ._scalars import summarize

if TYPE_CHECKING:
    from ._run import Run

_OBJECTIVES = ("last", "min", "max")
# Optuna's trial states in guildlite's words (a trial's run status says more where there is one).
_STATES = {"complete": "completed", "fail": "error", "failed": "error", "pruned": "pruned",
           "running": "running", "waiting": "pending"}


def search_spec(batch: Run) -> dict[str, Any] | None:
    """The batch's search spec as its record keeps it (``batch["search"]``), or None: no study."""
    spec = batch.batch.get("search") if isinstance(batch.batch, dict) else None
    return spec if isinstance(spec, dict) and isinstance(spec.get("scalar"), str) else None


def study_view(batch: Run) -> dict[str, Any] | None:
    """The study of ``batch`` as ``compare`` and ``view`` show it; None when the batch has none.

    ``{"batch", "optimizer", "scalar", "direction", "objective", "prune", "source" ("study", or
    "runs" when the study could not be read: ``note`` says why), "counts" {status: n}, "best"
    {"run", "number", "value", "flags"} | None, "trials": [{"run", "number", "status", "value" (the
    objective told, None if none), "last" and "step" (the scalar's last reported value and its
    step: where a pruned trial stood), "best_so_far", "flags", "started", "stopped"}] in trial
    order, "varying" (flags whose values differ), "importances" {flag: float} | None,
    "importances_from" (the completed trials they come from), "importances_note"}``.
    """
    spec = search_spec(batch)
    if spec is None:
        return None
    scalar = spec["scalar"]
    maximize = spec.get("direction") == "maximize"
    objective = str(spec.get("objective")) if spec.get("objective") in _OBJECTIVES else "last"
    summary, note = _summary(batch)
    runs = batch.trials
    told = {t["run"]: t for t in (summary or {}).get("trials") or [] if isinstance(t, dict) and "run" in t}
    rows: list[dict[str, Any]] = []
    for i, run in enumerate(runs):
        s = summarize(run.paths.scalars).get(scalar) or {}
        t = told.get(run.id, {})
        status = run.status
        if run.status in ("completed", "terminated") and _STATES.get(str(t.get("state", "")).lower()) == "pruned":
            status = "pruned"  # told pruned: stopped by its pruner (its job may have ended cleanly on the stop)
        # Only a completed trial has an objective: Optuna keeps a pruned one's last reported value as its value.
        value = _number(t.get("value")) if _STATES.get(str(t.get("state", "")).lower()) == "completed" else None
        if summary is None and status == "completed":
            value = _number(s.get(objective))
        rows.append({
            "run": run.id, "number": t.get("number") if isinstance(t.get("number"), int) else None,
            "status": status, "value": value, "last": _number(s.get("last")), "step": s.get("step"),
            "flags": run.flags, "started": run.started, "stopped": run.stopped, "_order": i,
        })
    # Trial order: the study's numbers (the order it asked them); runs it never saw after, as launched.
    rows.sort(key=lambda r: (r["number"] is None, r["number"] if r["number"] is not None else 0, r["_order"]))
    best_so_far: float | None = None
    for r in rows:
        del r["_order"]
        if r["value"] is not None and (best_so_far is None or _better(r["value"], best_so_far, maximize)):
            best_so_far = r["value"]
        r["best_so_far"] = best_so_far
    best = _best(summary, rows, maximize)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    importances = (summary or {}).get("importances")
    importances = {str(k): float(v) for k, v in importances.items() if _number(v) is not None} \
        if isinstance(importances, dict) else None
    return {
        "batch": batch.id, "optimizer": spec.get("optimizer"), "scalar": scalar,
        "direction": "maximize" if maximize else "minimize", "objective": objective, "prune": spec.get("prune"),
        "source": "runs" if summary is None else "study", "note": note, "counts": counts, "best": best,
        "trials": rows, "varying": _varying(rows),
        "importances": importances or None, "importances_from": sum(1 for r in rows if r["value"] is not None),
        "importances_note": None if importances else _why_no_importances(summary, rows),
    }


MAX_JOURNAL_BYTES = 256 << 20  # a study's journal read at most this far (a trial's record is ~1 KB)


def _summary(batch: Run) -> tuple[dict[str, Any] | None, str | None]:
    """The study's ``summary()``, or None and why it could not be had."""
    from ._errors import GuildliteError

    fallback = "objectives from the runs' scalars"
    try:
        study = _read_study(batch)
        return (study.summary(), None) if study is not None else (None, f"the study has no journal yet: {fallback}")
    except GuildliteError as e:  # Optuna missing here, or a malformed search record
        return None, f"the study was not read ({e}): {fallback}"
    except Exception as e:  # noqa: BLE001 - a damaged journal must not hide the runs: say so, show them
        return None, f"the study could not be read ({type(e).__name__}: {e}): {fallback}"


def _read_study(batch: Run) -> Any:
    """The batch's study, read only: ``Study.open`` is the owner's (it may create the study and
    appends to the journal), a reader (``compare``, ``view``) must leave the run dir as it is and
    works on a read-only runs dir. The journal is opened as any run file is (``_runfiles``: a
    regular file inside the run dir); None when there is none yet."""
    from ._runfiles import RunFileError, open_file
    from ._search_space import space_of
    from ._study import STUDY_NAME, Study, import_optuna, journal_path, search_spec

    spec = search_spec(batch)
    rel = journal_path(batch).relative_to(batch.run_dir).as_posix()
    try:
        with open_file(batch.run_dir, rel) as f:
            data = f.read(MAX_JOURNAL_BYTES)
    except RunFileError as e:
        if e.missing:
            return None
        raise
    optuna = import_optuna()
    from optuna.storages.journal import BaseJournalBackend, JournalStorage

    class Journal(BaseJournalBackend):  # type: ignore[misc]
        """The journal's records as read above; nothing is ever written."""

        def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
            import json

            # A torn last line (its writer mid-append) waits for the next read, as Optuna does.
            lines = [x for x in data.split(b"\n")[:-1] if x.strip()]
            return [json.loads(x) for x in lines[log_number_from:]]

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            raise RuntimeError("a study read for display is never written")

    study = optuna.load_study(study_name=STUDY_NAME, storage=JournalStorage(Journal()),
                              sampler=optuna.samplers.RandomSampler())
    return Study(batch.run_dir, spec, study, space_of(batch.flags)) if spec is not None else None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return v


def _better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def _best(summary: dict[str, Any] | None, rows: list[dict[str, Any]], maximize: bool) -> dict[str, Any] | None:
    by_run = {r["run"]: r for r in rows}
    said = (summary or {}).get("best")
    row = by_run.get(said.get("run")) if isinstance(said, dict) else None
    if row is None or row["value"] is None:  # the study's word, else the best told value among the runs
        scored = [r for r in rows if r["value"] is not None]
        row = None
        for r in scored:
            if row is None or _better(r["value"], row["value"], maximize):
                row = r
    if row is None:
        return None
    return {"run": row["run"], "number": row["number"], "value": row["value"], "flags": row["flags"]}


def _varying(rows: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r["flags"] or {}))
    return [n for n in names if len({repr((r["flags"] or {}).get(n)) for r in rows}) > 1]


def _why_no_importances(summary: dict[str, Any] | None, rows: list[dict[str, Any]]) -> str:
    if summary is None:
        return "no flag importances: the study was not read"
    done = sum(1 for r in rows if r["value"] is not None)
    if done < 2:
        return f"no flag importances yet: Optuna needs at least 2 completed trials ({done} so far)"
    return "no flag importances: Optuna gave none for this study (its flags may not vary, or are not searched)"


# --- text, for compare ---------------------------------------------------------------------------


def _g(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def _flag_text(flags: dict[str, Any], names: Sequence[str]) -> str:
    return " ".join(f"{n}={_g(flags.get(n))}" for n in names if n in flags)


def header_lines(view: dict[str, Any]) -> list[str]:
    """The study in a few lines: what it optimizes, its trials by status, the best, the importances."""
    how = f"optimizer {view['optimizer']}" if view["optimizer"] else "no optimizer (trials as the batch planned them)"
    prune = view.get("prune")
    pruning = ""
    if isinstance(prune, dict) and prune.get("kind"):
        opts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in prune.items() if k != "kind")
        pruning = f", pruned by {prune['kind']}" + (f" ({opts})" if opts else "")
    lines = [f"study of batch {view['batch']}: {how}, {view['direction']} {view['scalar']} "
             f"({view['objective']} value){pruning}"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(view["counts"].items(), key=lambda x: -x[1]))
    lines.append(f"  {len(view['trials'])} trials" + (f": {counts}" if counts else ""))
    best = view["best"]
    if best is None:
        lines.append("  best: none yet (no trial has an objective)")
    else:
        number = f"trial {best['number']}, " if best["number"] is not None else ""
        flags = _flag_text(best["flags"] or {}, view["varying"] or list(best["flags"] or {}))
        lines.append(f"  best: {number}run {best['run']}  {view['scalar']} {_g(best['value'])}" + (f"  {flags}" if flags else ""))
    if view["importances"]:
        lines.append(f"  flag importances (Optuna, from {view['importances_from']} completed trials): "
                     + "  ".join(f"{k} {v:.3f}" for k, v in view["importances"].items()))
    else:
        lines.append(f"  {view['importances_note']}")
    if view["note"]:
        lines.append(f"  note: {view['note']}")
    return lines


TRIAL_COLUMNS = ("trial", "run", "status", "objective", "best so far", "last", "step")


def trial_rows(view: dict[str, Any], mark: bool = True) -> tuple[list[str], list[list[Any]]]:
    """The study's trials as a table: number, run, status, objective told, best so far, the
    scalar's last reported value and step (where a pruned trial stood), then the varying flags.
    The best trial's run id ends in `` *`` (``mark``), else a ``best`` column says it."""
    flags = view["varying"]
    best = (view["best"] or {}).get("run")
    rows = []
    for t in view["trials"]:
        run = t["run"] + (" *" if mark and t["run"] == best else "")
        rows.append([t["number"], run, t["status"], t["value"], t["best_so_far"], t["last"], t["step"],
                     *([] if mark else [t["run"] == best]), *[(t["flags"] or {}).get(n) for n in flags]])
    return [*TRIAL_COLUMNS, *([] if mark else ["best"]), *flags], rows


def importance_lines(view: dict[str, Any], width: int = 30) -> list[str]:
    """The flag importances as bars (or why there are none)."""
    imp = view["importances"]
    if not imp:
        return [view["importances_note"]]
    pad = max(len(k) for k in imp)
    top = max(imp.values()) or 1.0
    return [f"flag importances (Optuna, from {view['importances_from']} completed trials):"] + [
        f"  {k:<{pad}}  {v:6.3f}  {'#' * round(width * v / top)}" for k, v in imp.items()]


# --- which studies ---------------------------------------------------------------------------------


def studies(runs_dir: Path, batch_ids: Iterable[str | None], limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """``study_view`` of each of ``batch_ids`` (in order, once each) that is a batch with a study,
    at most ``limit`` of them, and how many more there are (counted from their records only; a
    study is read only to be shown). Ids that are not run ids, not batches, gone or unreadable are
    passed over."""
    from ._errors import RunNotFoundError
    from ._record import is_run_id
    from ._run import load_run

    out: list[dict[str, Any]] = []
    more = 0
    for bid in dict.fromkeys(b for b in batch_ids if isinstance(b, str) and is_run_id(b)):
        try:
            run = load_run(runs_dir / bid)
        except RunNotFoundError:  # gone meanwhile, or a bad record (listed as such elsewhere)
            continue
        if not run.is_batch or search_spec(run) is None:
            continue
        if limit is not None and len(out) >= limit:
            more += 1
            continue
        view = study_view(run)
        if view is not None:
            out.append(view)
    return out, more
