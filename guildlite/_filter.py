"""Filter expressions (``--filter 'lr >= 0.01 and loss < 0.3'``): one grammar for every command.

``parse`` gives a ``Filter`` (the grammar is in ``_filter_syntax``); ``Filter.matches`` says whether
a run's ``RunFacts`` pass; ``select_filtered`` keeps the runs that pass.

What a name means, per run: an attribute (id, op, status, label, tag, started, stopped, time,
note) first; else the flag or the scalar of that name (a scalar's last value; ``min(x)``/``max(x)``
for the others); a name that is both a flag and a scalar of a run is an error asking for
``flag.x`` or ``scalar.x``. A comparison on something a run does not have is false, whatever the
operator (``not lr = 1`` matches the runs without ``lr`` too). Numbers compare as numbers (a flag
``"0.010"`` equals ``0.01``); a quoted value is always text. ``~`` is a regex search (Python's
``re``, case-sensitive: ``(?i)`` for not). A time (``started``, ``stopped``) compares with a date,
local time unless it ends in ``Z`` or an offset: ``<``, ``>`` against the instant it names (a day:
its midnight), ``=``/``!=`` within the period it names (that day, that minute).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ._filter_syntax import (
    AGGS,
    NUMBER,
    TIMES,
    And,
    Compare,
    FilterError,
    HasTag,
    Node,
    Not,
    Or,
    Term,
    Value,
    date_period,
    parse_tree,
)
from ._regex_guard import LIMIT_S, RegexTooSlow, search, time_limit
from ._run_facts import MISSING, RunFacts, facts_from_record, facts_of

if TYPE_CHECKING:
    from ._run import Run
    from ._selection import RunList

__all__ = ["Filter", "FilterError", "RunFacts", "facts_from_record", "facts_of", "filtered_records", "parse", "select_filtered"]


def parse(text: str) -> Filter:
    """The filter ``text`` writes; FilterError (exit 2, with a caret at the column) if it is not one."""
    return Filter(text, parse_tree(text))

# --- matching -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """A parsed filter: ``matches(facts)`` says whether a run (its ``RunFacts``) passes."""

    text: str = field(compare=False)
    root: Node
    _test: Callable[[RunFacts], bool] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # The tree as nested closures, built once: a filter over 100k runs calls it 100k times.
        object.__setattr__(self, "_test", self._compiled(self.root))

    def __str__(self) -> str:
        return str(self.root)

    def matches(self, facts: RunFacts) -> bool:
        """Whether the run passes; FilterError if a plain name is both a flag and a scalar of it."""
        return self._test(facts)

    def leaves(self) -> list[Compare | HasTag]:
        """Every comparison and tag test, in order."""
        out: list[Compare | HasTag] = []
        todo: list[Node] = [self.root]
        while todo:
            node = todo.pop(0)
            if isinstance(node, (Compare, HasTag)):
                out.append(node)
            elif isinstance(node, Not):
                todo.append(node.item)
            else:
                todo[:0] = node.items
        return out

    def terms(self) -> list[Term]:
        """Every flag or scalar term, in order (what a run must have for its comparison to hold)."""
        return [n.term for n in self.leaves() if isinstance(n, Compare) and n.term.kind != "attr"]

    def attributes(self) -> set[str]:
        """The attributes (``ATTRS``) the filter asks about."""
        return {n.term.name if isinstance(n, Compare) else "tag" for n in self.leaves()
                if isinstance(n, HasTag) or n.term.kind == "attr"}

    def uses_scalars(self) -> bool:
        return any(t.kind != "flag" for t in self.terms())

    def _compiled(self, node: Node) -> Callable[[RunFacts], bool]:
        if isinstance(node, (And, Or)):
            parts = [self._compiled(i) for i in node.items]
            if isinstance(node, And):
                return lambda f: all(p(f) for p in parts)
            return lambda f: any(p(f) for p in parts)
        if isinstance(node, Not):
            inner = self._compiled(node.item)
            return lambda f: not inner(f)
        if isinstance(node, HasTag):
            tag = node.tag
            return lambda f: tag in f.tags
        term, op, value = node.term, node.op, node.value
        if term.kind == "attr":
            name = term.name
            if name == "tag":
                return lambda f: _any_tag(f.tags, op, value)
            if name in TIMES:
                return lambda f: _time_compare(getattr(f, name), op, value)
            if name == "note":  # a note per line or more: ^ and $ anchor at each line
                return lambda f: _compare(f.notes, op, value, re.MULTILINE)
            return lambda f: _compare(getattr(f, name), op, value)
        want = value.number
        fast = _FAST.get(op) if want == want else None  # NaN: equal only to NaN, which _compare knows

        def compare(f: RunFacts) -> bool:
            actual = self.lookup(term, f)
            if actual is MISSING:
                return False
            if fast is not None and want is not None and type(actual) in (float, int):  # the usual case, quickly
                return fast(actual, want)
            return _compare(actual, op, value)

        return compare

    def lookup(self, term: Term, facts: RunFacts) -> Any:
        """The value ``term`` names in ``facts`` (a flag's value, a scalar's last/min/max), or MISSING."""
        kind = term.kind
        if kind == "name":
            in_flags, in_scalars = term.name in facts.flags, term.name in facts.scalars
            if in_flags and in_scalars:
                raise FilterError(self.text, term.pos, f"{term.name!r} is both a flag and a scalar of run "
                                  f"{facts.id}: write flag.{term.name} or scalar.{term.name}")
            kind = "flag" if in_flags else "scalar"
        if kind == "flag":
            return facts.flags.get(term.name, MISSING)
        s = facts.scalars.get(term.name)
        return MISSING if s is None else s[AGGS.index(term.agg)]


_FAST: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (list, dict)):
        import json

        return json.dumps(v)
    return str(v)


def _as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and NUMBER.fullmatch(v.strip()):
        return float(v)
    return None


def _order(a: Any, op: str, b: Any) -> bool:
    if op == "=":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _compare(actual: Any, op: str, value: Value, flags: int = 0) -> bool:
    if op in ("~", "!~"):
        if actual is None and op == "~":
            return False
        found = search(value.text, _text(actual), flags)
        return found if op == "~" else not found
    if not value.quoted:
        word = value.text.lower()
        if word in ("null", "none") or actual is None:
            is_null = word in ("null", "none") and actual is None
            return (is_null if op == "=" else not is_null) if op in ("=", "!=") else False
        if isinstance(actual, bool) and word in ("true", "false", "yes", "no"):
            same = actual == (word in ("true", "yes"))
            return (same if op == "=" else not same) if op in ("=", "!=") else False
        want = value.number
        have = _as_number(actual)
        if want is not None and have is not None:
            if want != want or have != have:  # NaN: equal only to NaN (``loss = nan``, an op named nan), in no order
                return ((want != want) == (have != have)) == (op == "=") if op in ("=", "!=") else False
            return _order(have, op, want)
        if want is not None and op not in ("=", "!="):
            return False  # a number's order against a text: neither is less
    text = actual if isinstance(actual, str) else _text(actual)
    if op in ("=", "!="):
        return _order(text, op, value.text)
    return isinstance(actual, str) and _order(actual, op, value.text)


def _any_tag(tags: Sequence[str], op: str, value: Value) -> bool:
    if op == "~":
        return any(search(value.text, t) for t in tags)
    if op == "!~":
        return not any(search(value.text, t) for t in tags)
    return (value.text in tags) == (op == "=")


def _time_compare(actual: float | None, op: str, value: Value) -> bool:
    """``<``/``>`` against the instant the date names (a day: its midnight); ``=``/``!=``: within
    the period it names (that day, that minute)."""
    period = date_period(value.text)
    if actual is None or period is None:
        return False
    start, end = period
    if op == "=":
        return start <= actual < end
    if op == "!=":
        return not start <= actual < end
    return _order(actual, op, start)


# --- choosing runs --------------------------------------------------------------------------------------


def select_filtered(runs: Sequence[Run], text: str | None) -> list[Run]:
    """The runs of ``runs`` (in order) that the filter ``text`` matches (None or "": all of them).

    Their records and scalar summaries come from their runs dir's index (``_index``: a run whose
    files changed is read again), so filtering thousands of runs reads no run.json twice.
    """
    if not text:
        return list(runs)
    filt = parse(text)
    matched: set[tuple[Any, str]] = set()
    for parent in dict.fromkeys(r.run_dir.parent for r in runs):
        ids = [r.id for r in runs if r.run_dir.parent == parent]
        matched.update((parent, name) for name, _, _ in filtered_records(_run_list(parent), filt, ids))
    return [r for r in runs if (r.run_dir.parent, r.id) in matched]


def _run_list(runs_dir: Any) -> RunList:
    from ._selection import RunList

    return RunList(runs_dir)


def filtered_records(
    runs: RunList,
    filt: Filter | str,
    ids: Sequence[str] | None = None,
    where: Callable[[Mapping[str, Any]], bool] | None = None,
    limit: int | None = None,
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``_index.load_records`` of ``runs`` (``ids``, default all; ``where`` on the record first),
    kept where ``filt`` matches, the first ``limit`` of them (None: all): the one place every
    command's ``--filter`` is applied.

    The filter's own rows in the index (``_filter_index``) narrow the runs first; only those that
    may match are loaded, and checked again from their records.

    Scalar summaries are loaded (from the index) only when the filter names a scalar, or a plain
    name that may be one. A flag or scalar name that no run has is warned about (a typo, likely:
    the filter is valid, and that comparison is false for every run). A ``~`` regex that runs past
    ``_regex_guard.LIMIT_S`` on one value is a FilterError.
    """
    filt = filt if isinstance(filt, Filter) else parse(filt)  # parse: TypeError for a non-string
    try:
        with time_limit():  # a ``~`` regex that backtracks without end stops, named, past the limit
            return _filtered(runs, filt, ids, where, limit)
    except RegexTooSlow as e:
        at = next((n.value.pos for n in filt.leaves() if isinstance(n, Compare) and n.value.text == e.pattern), 0)
        raise FilterError(filt.text, at, f"the regular expression ran over {LIMIT_S:g} s on one value "
                          "(catastrophic backtracking: nested or adjacent repeats such as (a+)+ or .*.*); "
                          "write it without them") from None


def _filtered(
    runs: RunList, filt: Filter, ids: Sequence[str] | None, where: Callable[[Mapping[str, Any]], bool] | None,
    limit: int | None,
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    from ._filter_index import candidates
    from ._index import load_records

    seen: set[Term] = set()
    narrowed = candidates(runs, filt, ids, seen)
    if narrowed is not None and ids is None:
        runs.report_strays()  # as a listing of the whole runs dir does
    todo = list(runs.ids if ids is None else ids) if narrowed is None else narrowed
    out: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    checked: list[RunFacts] = []
    at, step = 0, len(todo) if limit is None else max(limit * 2, 64)
    while at < len(todo) and (limit is None or len(out) < limit):  # the newest few: load a few
        rows = load_records(runs, todo[at:at + step], scalars=filt.uses_scalars(), where=where)
        facts = [facts_from_record(rec, summary) for _, rec, summary in rows]
        checked += facts
        out += [row for row, f in zip(rows, facts) if filt.matches(f)]
        at, step = at + step, step * 2
    if at >= len(todo):  # every run was looked at: a name none has is worth a warning
        warn_unknown(filt, checked, seen if (runs.ids if ids is None else ids) else None)
    return out[:limit]


def warn_unknown(filt: Filter, facts: Sequence[RunFacts], seen: set[Term] | None = None) -> None:
    """Warn (stderr, the ``guildlite`` logger) about each flag or scalar name of ``filt`` that no
    run of ``facts`` has, nor is in ``seen`` (found in other runs; None: there were no runs)."""
    import logging

    if not facts and seen is None:
        return
    for term in dict.fromkeys(filt.terms()):
        if term not in (seen or ()) and not any(filt.lookup(term, f) is not MISSING for f in facts):
            what = {"flag": "flag", "scalar": "scalar"}.get(term.kind, "flag or scalar")
            logging.getLogger("guildlite").warning(
                "guildlite: warning: --filter: no run here has a %s named %r (its comparison is false for every run)",
                what, term.name)
