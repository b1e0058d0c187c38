"""Listing the runs of a runs dir (``RunList``, newest first, read lazily) and choosing among
them with selectors (``select_runs``: ``1``, ``2:4``, an id prefix)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, overload

from ._errors import BadRecordError, RunNotFoundError
from ._record import is_run_id, run_ids
from ._run import Run, load_run
from ._store import stray_error, warn_bad


class RunList(Sequence[Run]):
    """The runs of a runs dir, newest first, each read from disk only when first touched.

    Ids sort in creation order, so ``runs[0]`` (the newest) costs one read whatever the number
    of runs; iterating reads them all. Runs are staged in hidden ``.staging-<id>`` dirs and renamed
    into place with their run.json, so every listed dir is a whole run.

    Only directories named by a run id are runs. Another directory holding a run.json (a run dir
    renamed by hand) or a link named like a run is a *stray*: never selectable, reported by
    listings (``runs[a:b]``, iteration) as a bad record, as is a run whose record is bad.
    """

    def __init__(self, runs_dir: Path) -> None:
        self.dir = runs_dir
        dirs: list[str] = []
        rest: list[str] = []
        try:
            for e in os.scandir(runs_dir):
                if not e.name.startswith("."):
                    (dirs if e.is_dir(follow_symlinks=False) else rest).append(e.name)
        except FileNotFoundError:
            pass
        ids = run_ids(dirs)
        self.ids = sorted(ids, reverse=True)
        # Another dir may be a renamed run; a link named like a run would lead outside the runs dir.
        others = set(dirs).difference(ids) if len(ids) < len(dirs) else set()
        self.strays = sorted([*others, *filter(is_run_id, rest)])
        self._loaded: dict[str, Run | RunNotFoundError] = {}
        self._reported = False

    def __len__(self) -> int:
        return len(self.ids)

    def _get(self, run_id: str) -> Run | RunNotFoundError:
        if run_id not in self._loaded:
            try:
                self._loaded[run_id] = load_run(self.dir / run_id, listed=True)
            except RunNotFoundError as e:
                self._loaded[run_id] = e  # removed since listing (skipped), or a bad record (reported)
        return self._loaded[run_id]

    def stray_error(self, name: str) -> BadRecordError | None:
        """Why ``name`` (a stray) is not a run; None if it holds no run.json (just some dir)."""
        return stray_error(self.dir / name)

    def report_strays(self) -> None:
        """Warn (once) about every stray that looks like a run."""
        if self._reported:
            return
        self._reported = True
        for name in self.strays:
            e = self.stray_error(name)
            if e is not None:
                warn_bad(e)

    @overload
    def __getitem__(self, i: int) -> Run: ...
    @overload
    def __getitem__(self, i: slice) -> list[Run]: ...
    def __getitem__(self, i: int | slice) -> Run | list[Run]:
        if isinstance(i, slice):
            self.report_strays()
            out = []
            for x in self.ids[i]:
                run = self._get(x)
                if isinstance(run, Run):
                    out.append(run)
                elif isinstance(run, BadRecordError):
                    warn_bad(run)
            return out
        run = self._get(self.ids[i])
        if not isinstance(run, Run):
            raise run
        return run

    def __iter__(self) -> Iterator[Run]:
        return iter(self[:])

    def bad_numbers(self, upto: int | None = None) -> list[int]:
        """The numbers (1 = newest: the selectors' numbering, which counts every run dir) of the
        bad records among the first ``upto`` runs, of those read so far (a listing reads them)."""
        return [i for i, x in enumerate(self.ids[:upto], 1) if isinstance(self._loaded.get(x), BadRecordError)]


def list_runs(runs_dir: Path, where: Callable[[Run], bool] | None = None) -> list[Run]:
    """Every readable run under ``runs_dir``, newest first (optionally only those ``where`` accepts);
    bad records are skipped with a warning."""
    runs = RunList(runs_dir)[:]
    return runs if where is None else [r for r in runs if where(r)]


def select_runs(runs: Sequence[Run], specs: Iterable[str]) -> list[Run]:
    """Runs chosen by selectors: ``1`` (newest), ``2:4`` (inclusive), or an id prefix.

    A run chosen by itself (index or id) whose record is bad is an error (BadRecordError); in a
    range it is skipped with a warning, as in a listing. A prefix of a stray (a run dir renamed
    by hand) says how to rename it back.
    """
    ids = runs.ids if isinstance(runs, RunList) else [r.id for r in runs]
    chosen: list[Run] = []
    for spec in specs:
        spec = spec.strip()
        try:
            picked = _select_one(ids, spec)
        except RunNotFoundError:
            stray = _stray_named(runs, spec)
            if stray is not None:
                raise stray from None
            raise
        for i in picked:
            try:
                run = runs[i]
            except RunNotFoundError as e:
                if ":" not in spec:
                    raise
                if isinstance(e, BadRecordError):
                    warn_bad(e)
                continue
            if run not in chosen:
                chosen.append(run)
    return chosen


def _stray_named(runs: Sequence[Run], spec: str) -> BadRecordError | None:
    if not isinstance(runs, RunList) or not spec or "/" in spec or spec.startswith(".") or ":" in spec:
        return None
    for name in runs.strays:
        if name.startswith(spec):
            return runs.stray_error(name)
    return None


def with_trials(runs: Sequence[Run]) -> list[Run]:
    """``runs`` plus the children of each virtual parent among them, theirs included (a batch goes
    with its trials, a pipeline with its steps' runs and a batch step's trials)."""
    out = list(runs)
    seen = {r.id for r in out}
    todo = list(runs)
    while todo:
        r = todo.pop(0)
        for t in [*r.trials, *r.steps] if r.virtual else ():
            if t.id not in seen:
                out.append(t)
                seen.add(t.id)
                todo.append(t)
    return out


def _select_one(ids: list[str], spec: str) -> list[int]:
    if not spec or "/" in spec or spec.startswith("."):
        raise RunNotFoundError(f"invalid run selector {spec!r}")
    short = _short_hits(ids, spec)
    if spec.isascii() and spec.isdigit() and len(spec) < 8:
        i = int(spec)
        if short and 1 <= i <= len(ids):  # `000002`, `401223`: a short id made of digits only
            raise RunNotFoundError(
                f"{spec!r} is both index {i} (run {ids[i - 1]}) and the short id of run "
                f"{', '.join(ids[j] for j in short)}: give the whole id")
        if short:
            return _one_short(ids, spec, short)
        if not 1 <= i <= len(ids):
            raise RunNotFoundError(f"no run at index {i} ({len(ids)} runs)")
        return [i - 1]
    if short:
        return _one_short(ids, spec, short)
    if ":" in spec:
        lo, _, hi = spec.partition(":")
        if not spec.isascii() or (lo and not lo.isdigit()) or (hi and not hi.isdigit()):
            raise RunNotFoundError(f"invalid run range {spec!r} (expected N:M, e.g. 2:4)")
        a, b = int(lo or 1), int(hi or len(ids))
        if a < 1 or b < a:
            raise RunNotFoundError(f"invalid run range {spec!r}")
        if a > len(ids):
            raise RunNotFoundError(f"no runs in range {spec!r} ({len(ids)} runs)")
        return list(range(a - 1, min(b, len(ids))))
    hits = [i for i, run_id in enumerate(ids) if run_id.startswith(spec)]
    if not hits:
        raise RunNotFoundError(f"no run matches {spec!r}")
    if len(hits) > 1:
        shown = ", ".join(ids[i] for i in hits[:10]) + (" ..." if len(hits) > 10 else "")
        raise RunNotFoundError(f"{spec!r} matches {len(hits)} runs: {shown}; give more of the id")
    return hits


SHORT_ID_LEN = 6  # the random part of a run id (``_files.new_run_id``), as listings show it (``↳ 14ea6d``)


def short_id(run_id: str) -> str:
    """The short id listings show for ``run_id``: the random part after its time."""
    return run_id[-SHORT_ID_LEN:]


def _short_hits(ids: list[str], spec: str) -> list[int]:
    """The runs whose short id is ``spec`` (six hex digits, any case, with or without the leading ``-``).

    Only the whole short id counts: a shorter suffix (``1``, ``42``) would collide with indexes."""
    if not _is_short(spec):
        return []
    text = spec.lstrip("-").lower()
    return [i for i, run_id in enumerate(ids) if run_id.endswith(text)]


def _is_short(spec: str) -> bool:
    text = (spec[1:] if spec.startswith("-") else spec).lower()
    return len(text) == SHORT_ID_LEN and all(c in "0123456789abcdef" for c in text)


def _one_short(ids: list[str], spec: str, hits: list[int]) -> list[int]:
    if len(hits) > 1:  # two runs drew the same random part: only the time tells them apart
        raise RunNotFoundError(f"short id {spec!r} matches {len(hits)} runs: "
                               f"{', '.join(ids[i] for i in hits[:10])}; give the whole id")
    return hits


def looks_like_selector(word: str) -> bool:
    """Whether ``word`` reads as a run selector: an index (``1``), a range (``2:4``), an id or its
    prefix (``20261123T1015``), a short id (``14ea6d``)."""
    if not word.isascii() or not word:
        return False
    if word.replace(":", "").isdigit() or _is_short(word):
        return True
    return word[0].isdigit() and all(c.isdigit() or c in "T-0123456789abcdef" for c in word)
