"""Filter expressions (``--filter 'lr >= 0.01 and loss < 0.3'``): one grammar for every command.

::

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" expr ")" | "tag:" WORD | comparison
    comparison := term OP value            OP: = == != < <= > >= ~ !~
    term       := NAME | flag.NAME | scalar.NAME | min(NAME) | max(NAME) | last(NAME)
    value      := WORD | "quoted" | 'quoted'

A hand-written recursive-descent parser (no ``eval``): every mistake is a FilterError whose
message shows the expression with a caret under the column where it went wrong.

What a name means, per run (``RunFacts``): an attribute (id, op, status, label, tag, started,
stopped, time, note) first; else the flag or the scalar of that name (a scalar's last value;
``min(x)``/``max(x)`` for the others); a name that is both a flag and a scalar of a run is an
error asking for ``flag.x`` or ``scalar.x``. A comparison on something a run does not have is
false, whatever the operator (``not lr = 1`` matches the runs without ``lr`` too).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence, Union

from ._errors import GuildliteError

if TYPE_CHECKING:
    from ._run import Run

OPS = ("=", "==", "!=", "<", "<=", ">", ">=", "~", "!~")
ATTRS = ("id", "op", "status", "label", "tag", "started", "stopped", "time", "note")
_ALIASES = {"tags": "tag", "notes": "note"}
_TIMES = ("started", "stopped")
_AGGS = ("last", "min", "max")
_KEYWORDS = ("and", "or", "not")
_STOP = set("()<>=!~\"'") | {" ", "\t", "\n", "\r", "\f", "\v"}
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan)", re.IGNORECASE)
_DATE = re.compile(r"(\d{4})-(\d{2})(?:-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?)?)?"
                   r"(Z|[+-]\d{2}:?\d{2})?", re.ASCII)


class FilterError(GuildliteError):
    """A filter expression that does not parse, or cannot be applied to a run (an ambiguous name).

    ``column`` is the 0-based offset in the expression; the message shows it with a caret."""

    exit_code = 2

    def __init__(self, text: str, column: int, problem: str) -> None:
        self.text, self.column, self.problem = text, column, problem
        super().__init__(f"invalid filter: {problem} (column {column + 1})\n  {_shown(text)}\n  {_pad(text[:column])}^")


def _shown(text: str) -> str:
    """The expression on one line: a control character (a newline, a tab) as one space, so the
    caret line stays aligned under it."""
    return "".join(c if c.isprintable() else " " for c in text)


def _pad(before: str) -> str:
    return "".join("  " if unicodedata.east_asian_width(c) in "WF" else " " for c in before)


# --- the tree -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Term:
    """What a comparison looks at: ``kind`` attr, flag, scalar or name (a flag or a scalar, per run)."""

    kind: str
    name: str
    agg: str = "last"  # of a scalar
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if self.kind == "attr":
            return self.name
        if self.kind == "name" or (self.agg != "last" and not _reserved(self.name)):
            text = _quote(self.name) if _reserved(self.name) else _word(self.name)
        else:
            text = f"{self.kind}.{_word(self.name)}"
        return f"{self.agg}({text})" if self.agg != "last" else text


def _reserved(name: str) -> bool:
    """Whether a plain name would read back as something else: an attribute, ``flag.x``, ``tag:x``."""
    return name in ATTRS or name in _ALIASES or name.startswith(("flag.", "scalar.")) or name.lower().startswith("tag:")


@dataclass(frozen=True)
class Value:
    """A literal as written: its text, and whether it was quoted (then it is only ever text)."""

    text: str
    quoted: bool = False
    pos: int = field(default=0, compare=False)

    @property
    def number(self) -> float | None:
        return float(self.text) if not self.quoted and _NUMBER.fullmatch(self.text) else None

    def __str__(self) -> str:
        return _quote(self.text) if self.quoted or _needs_quotes(self.text) else self.text


@dataclass(frozen=True)
class Compare:
    term: Term
    op: str
    value: Value

    def __str__(self) -> str:
        return f"{self.term} {self.op} {self.value}"


@dataclass(frozen=True)
class HasTag:
    tag: str
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"tag:{_quote(self.tag) if _needs_quotes(self.tag) or ':' in self.tag else self.tag}"


@dataclass(frozen=True)
class Not:
    item: Node

    def __str__(self) -> str:
        return f"not {_group(self.item)}"


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " and ".join(_group(i) for i in self.items)


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " or ".join(_group(i) for i in self.items)


Node = Union[Compare, HasTag, Not, And, Or]


def _group(node: Node) -> str:
    return f"({node})" if isinstance(node, (And, Or)) else str(node)


def _needs_quotes(text: str) -> bool:
    return not text or any(c in _STOP or not c.isprintable() for c in text) or text.lower() in _KEYWORDS


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _word(name: str) -> str:
    return _quote(name) if _needs_quotes(name) else name


# --- the facts a filter looks at ------------------------------------------------------------------------


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
        if isinstance(s, Mapping) and all(isinstance(s.get(x), (int, float)) for x in _AGGS):
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


@dataclass(frozen=True)
class _Token:
    kind: str  # word, str, op, (, ), end
    text: str
    pos: int


def _tokens(text: str) -> Iterator[_Token]:
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            yield _Token(c, c, i)
            i += 1
        elif c in "<>=!~":
            two = text[i:i + 2]
            op = two if two in OPS else c
            if op not in OPS:
                raise FilterError(text, i, f"unknown operator {op!r} (operators: {' '.join(OPS)})")
            yield _Token("op", op, i)
            i += len(op)
        elif c in "\"'":
            out, j = [], i + 1
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n and text[j + 1] in (c, "\\"):
                    j += 1  # only a quote or a backslash is escaped: a regex keeps its \d
                out.append(text[j])
                j += 1
            if j >= n:
                raise FilterError(text, i, "unterminated string (no closing " + c + ")")
            yield _Token("str", "".join(out), i)
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in _STOP and not text[j].isspace():
                j += 1
            yield _Token("word", text[i:j], i)
            i = j
    yield _Token("end", "", n)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = list(_tokens(text))
        self.i = 0

    def peek(self, ahead: int = 0) -> _Token:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def take(self) -> _Token:
        tok = self.peek()
        self.i += 1
        return tok

    def fail(self, tok: _Token, problem: str) -> FilterError:
        return FilterError(self.text, tok.pos, problem)

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok.kind == "word" and tok.text.lower() == word:
            self.i += 1
            return True
        return False

    def expr(self) -> Node:
        items = [self.conj()]
        while self.keyword("or"):
            items.append(self.conj())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conj(self) -> Node:
        items = [self.neg()]
        while self.keyword("and"):
            items.append(self.neg())
        return items[0] if len(items) == 1 else And(tuple(items))

    def neg(self) -> Node:
        if self.keyword("not"):
            return Not(self.neg())
        tok = self.peek()
        if tok.kind == "(":
            self.take()
            node = self.expr()
            if self.peek().kind != ")":
                raise self.fail(self.peek(), f"expected ')' to close the '(' at column {tok.pos + 1}")
            self.take()
            return node
        if tok.kind == "word" and tok.text.lower().startswith("tag:"):
            return self.has_tag()
        return self.comparison()

    def has_tag(self) -> HasTag:
        tok = self.take()
        name = tok.text[4:]
        if not name and self.peek().kind == "str" and self.peek().pos == tok.pos + 4:
            name = self.take().text
        elif not name:
            raise FilterError(self.text, tok.pos + 4, "expected a tag name after 'tag:'")
        return HasTag(name, tok.pos)

    def comparison(self) -> Compare:
        term = self.term()
        op = self.peek()
        if op.kind != "op":
            raise self.fail(op, f"expected an operator ({' '.join(OPS)}) after {str(term)!r}"
                            + (" (a tag is written tag:NAME)" if term.name == "tag" and op.kind != "end" else ""))
        self.take()
        tok = self.peek()
        if tok.kind not in ("word", "str"):
            raise self.fail(tok, f"expected a value after {op.text!r}")
        self.take()
        value = Value(tok.text, tok.kind == "str", tok.pos)
        return _checked(self, Compare(term, "=" if op.text == "==" else op.text, value))

    def term(self) -> Term:
        tok = self.peek()
        if tok.kind not in ("word", "str") or (tok.kind == "word" and tok.text.lower() in _KEYWORDS):
            what = "the end" if tok.kind == "end" else repr(tok.text)
            raise self.fail(tok, f"expected a name (a flag, a scalar, or one of {', '.join(ATTRS)}), found {what}")
        self.take()
        if tok.kind == "word" and tok.text.lower() in _AGGS and self.peek().kind == "(":
            self.take()
            inner = self.peek()
            if inner.kind not in ("word", "str"):
                raise self.fail(inner, f"expected a scalar name in {tok.text}(...)")
            self.take()
            if self.peek().kind != ")":
                raise self.fail(self.peek(), f"expected ')' after {tok.text}({inner.text}")
            self.take()
            kind, name = _split(inner)
            if kind not in ("name", "scalar"):
                raise FilterError(self.text, inner.pos, f"{tok.text}(...) takes a scalar name, not {inner.text!r}")
            return Term("scalar", name, tok.text.lower(), tok.pos)
        kind, name = _split(tok)
        return Term(kind, name, "last", tok.pos)


def _split(tok: _Token) -> tuple[str, str]:
    """A name's kind: ``flag.x``, ``scalar.x``, an attribute, or a plain name (quoted: always plain)."""
    if tok.kind == "str":
        return "name", tok.text
    for kind in ("flag", "scalar"):
        if tok.text.startswith(kind + ".") and len(tok.text) > len(kind) + 1:
            return kind, tok.text[len(kind) + 1:]
    attr = _ALIASES.get(tok.text, tok.text)
    return ("attr", attr) if attr in ATTRS else ("name", tok.text)


def _checked(p: _Parser, cmp: Compare) -> Compare:
    """A comparison whose value suits its term: a date for a time, seconds for ``time``, a known
    status, a regex that compiles."""
    term, op, value = cmp.term, cmp.op, cmp.value
    if op in ("~", "!~"):
        if term.kind == "attr" and term.name in (*_TIMES, "time"):
            raise FilterError(p.text, term.pos, f"{term.name} is a time: compare it with = != < <= > >=, not {op}")
        try:
            re.compile(value.text)
        except re.error as e:
            raise FilterError(p.text, value.pos + (0 if e.pos is None else e.pos + value.quoted),
                              f"bad regular expression: {e.msg}") from None
        return cmp
    if term.kind == "attr" and term.name in _TIMES and _date(value.text) is None:
        raise FilterError(p.text, value.pos, f"{term.name} is compared with a date (2026-11-01, "
                          f"2026-11-01T14:30, 2026-11-01T14:30:00Z), not {value.text!r}")
    if term.kind == "attr" and term.name == "time" and (value.number is None or math.isnan(value.number)):
        raise FilterError(p.text, value.pos, f"time is in seconds: compare it with a number, not {value.text!r}")
    if term.kind == "attr" and term.name == "status" and op in ("=", "!="):
        from ._status import STATES

        if value.text not in STATES:
            raise FilterError(p.text, value.pos, f"unknown status {value.text!r} (one of {', '.join(STATES)})")
    if term.kind == "attr" and term.name == "tag" and op not in ("=", "!="):
        raise FilterError(p.text, value.pos - 1, f"tags are matched with =, != or ~, not {op!r}")
    return cmp


def _date(text: str) -> tuple[float, float] | None:
    """The period a date names: (start, end) in epoch seconds; local time unless it says ``Z`` or
    an offset. A day, a month, a minute, a second, or a fraction of one, as precise as written."""
    m = _DATE.fullmatch(text.strip())
    if m is None:
        return None
    y, mo, d, hh, mm, ss, frac, zone = m.groups()
    tz = None
    if zone:
        sign = 1 if zone[0] != "-" else -1
        digits = zone.replace(":", "")[1:]
        tz = timezone.utc if zone == "Z" else timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        start = datetime(int(y), int(mo), int(d or 1), int(hh or 0), int(mm or 0), int(ss or 0),
                         int(round(float(frac) * 1e6)) if frac else 0, tzinfo=tz)
        if d is None:
            end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        else:
            step = (timedelta(days=1) if hh is None else timedelta(minutes=1) if ss is None
                    else timedelta(seconds=1) if frac is None else timedelta(seconds=10.0 ** -(len(frac) - 1)))
            end = start + step
        return start.timestamp(), end.timestamp()
    except (ValueError, OverflowError):
        return None


def parse(text: str) -> Filter:
    """The filter ``text`` writes; FilterError (exit 2, with a caret at the column) if it is not one."""
    if not isinstance(text, str):
        raise TypeError("a filter is a string")
    p = _Parser(text)
    if p.peek().kind == "end":
        raise FilterError(text, 0, "empty filter")
    node = p.expr()
    if p.peek().kind != "end":
        tok = p.peek()
        raise p.fail(tok, f"expected 'and', 'or' or the end, found {tok.text!r}")
    return Filter(text, node)


# --- matching -------------------------------------------------------------------------------------------


_MISSING = object()


@dataclass(frozen=True)
class Filter:
    """A parsed filter: ``matches(facts)`` says whether a run (its ``RunFacts``) passes."""

    text: str = field(compare=False)
    root: Node

    def __str__(self) -> str:
        return str(self.root)

    def matches(self, facts: RunFacts) -> bool:
        """Whether the run passes; FilterError if a plain name is both a flag and a scalar of it."""
        return self._eval(self.root, facts)

    def terms(self) -> list[Term]:
        """Every flag or scalar term, in order (what a run must have for its comparison to hold)."""
        out: list[Term] = []
        todo: list[Node] = [self.root]
        while todo:
            node = todo.pop(0)
            if isinstance(node, Compare) and node.term.kind != "attr":
                out.append(node.term)
            elif isinstance(node, Not):
                todo.append(node.item)
            elif isinstance(node, (And, Or)):
                todo[:0] = node.items
        return out

    def uses_scalars(self) -> bool:
        return any(t.kind != "flag" for t in self.terms())

    def _eval(self, node: Node, facts: RunFacts) -> bool:
        if isinstance(node, And):
            return all(self._eval(i, facts) for i in node.items)
        if isinstance(node, Or):
            return any(self._eval(i, facts) for i in node.items)
        if isinstance(node, Not):
            return not self._eval(node.item, facts)
        if isinstance(node, HasTag):
            return node.tag in facts.tags
        return self._compare(node, facts)

    def _compare(self, cmp: Compare, facts: RunFacts) -> bool:
        term, op, value = cmp.term, cmp.op, cmp.value
        if term.kind == "attr":
            if term.name == "tag":
                return _any_tag(facts.tags, op, value)
            if term.name in _TIMES:
                return _time_compare(getattr(facts, term.name), op, value)
            return _compare(getattr(facts, term.name), op, value)
        actual = self.lookup(term, facts)
        return actual is not _MISSING and _compare(actual, op, value)

    def lookup(self, term: Term, facts: RunFacts) -> Any:
        """The value ``term`` names in ``facts`` (a flag's value, a scalar's last/min/max), or _MISSING."""
        kind = term.kind
        if kind == "name":
            in_flags, in_scalars = term.name in facts.flags, term.name in facts.scalars
            if in_flags and in_scalars:
                raise FilterError(self.text, term.pos, f"{term.name!r} is both a flag and a scalar of run "
                                  f"{facts.id}: write flag.{term.name} or scalar.{term.name}")
            kind = "flag" if in_flags else "scalar"
        if kind == "flag":
            return facts.flags.get(term.name, _MISSING)
        s = facts.scalars.get(term.name)
        return _MISSING if s is None else s[_AGGS.index(term.agg)]


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
    if isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
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


def _compare(actual: Any, op: str, value: Value) -> bool:
    if op in ("~", "!~"):
        if actual is None and op == "~":
            return False
        found = re.search(value.text, _text(actual)) is not None
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
            return _order(have, op, want)
        if want is not None and op not in ("=", "!="):
            return False  # a number's order against a text: neither is less
    text = actual if isinstance(actual, str) else _text(actual)
    if op in ("=", "!="):
        return _order(text, op, value.text)
    return isinstance(actual, str) and _order(actual, op, value.text)


def _any_tag(tags: Sequence[str], op: str, value: Value) -> bool:
    if op == "~":
        return any(re.search(value.text, t) for t in tags)
    if op == "!~":
        return not any(re.search(value.text, t) for t in tags)
    return (value.text in tags) == (op == "=")


def _time_compare(actual: float | None, op: str, value: Value) -> bool:
    """``<``/``>`` against the instant the date names (a day: its midnight); ``=``/``!=``: within
    the period it names (that day, that minute)."""
    period = _date(value.text)
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

    Scalars come from the runs dir's index when it has them (``_index``), else from each run's
    scalars file. A name that no run has as a flag or a scalar is warned about (most likely a typo).
    """
    if not text:
        return list(runs)
    filt = parse(text)
    summaries: dict[str, Mapping[str, Any]] = {}
    if runs and filt.uses_scalars():
        summaries = _summaries(runs)
    facts = [facts_of(r, summaries.get(r.id)) for r in runs]
    warn_unknown(filt, facts)
    return [r for r, f in zip(runs, facts) if filt.matches(f)]


def _summaries(runs: Sequence[Run]) -> dict[str, Mapping[str, Any]]:
    from ._index import load_records
    from ._selection import RunList

    out: dict[str, Mapping[str, Any]] = {}
    for parent in {r.run_dir.parent for r in runs}:
        ids = [r.id for r in runs if r.run_dir.parent == parent]
        out.update((name, summary) for name, _, summary in load_records(RunList(parent), ids, scalars=True))
    return out


def warn_unknown(filt: Filter, facts: Sequence[RunFacts]) -> None:
    """Warn (stderr, the ``guildlite`` logger) about each flag or scalar name of ``filt`` that no
    run of ``facts`` has: the filter is valid, but that comparison is false for every run."""
    import logging

    for term in filt.terms():
        if facts and not any(filt.lookup(term, f) is not _MISSING for f in facts):
            what = {"flag": "flag", "scalar": "scalar"}.get(term.kind, "flag or scalar")
            logging.getLogger("guildlite").warning(
                "guildlite: warning: --filter: no run here has a %s named %r (its comparison is false for every run)",
                what, term.name)
