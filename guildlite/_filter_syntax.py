"""The syntax of filter expressions: tokens, the tree, the parser, and FilterError (``_filter``
matches runs against the tree).

::

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" expr ")" | "tag:" WORD | comparison
    comparison := term OP value            OP: = == != < <= > >= ~ !~
    term       := NAME | flag.NAME | scalar.NAME | min(NAME) | max(NAME) | last(NAME)
    value      := WORD | "quoted" | 'quoted'

A hand-written recursive-descent parser (no ``eval``): every mistake is a FilterError whose
message shows the expression with a caret under the column where it went wrong. Each node's
``str`` writes it back as an expression that parses to an equal node.
"""

from __future__ import annotations

import calendar
import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator, Union

from ._errors import GuildliteError

OPS = ("=", "==", "!=", "<", "<=", ">", ">=", "~", "!~")
ATTRS = ("id", "op", "status", "label", "tag", "started", "stopped", "time", "note")
_ALIASES = {"tags": "tag", "notes": "note"}
TIMES = ("started", "stopped")
AGGS = ("last", "min", "max")
_KEYWORDS = ("and", "or", "not")
_STOP = set("()<>=!~\"'")  # and whitespace (str.isspace)
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan)", re.IGNORECASE)
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
            text = f"{self.kind}.{_quote(self.name) if _needs_quotes(self.name) else self.name}"
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
        return float(self.text) if not self.quoted and NUMBER.fullmatch(self.text) else None

    def __str__(self) -> str:
        # A keyword reads back as a value in a value's place: only what would split the word is quoted.
        return _quote(self.text) if self.quoted or _splits(self.text) else self.text


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


def _splits(text: str) -> bool:
    """Whether ``text`` would not read back as one word (empty, a space, a quote, an operator)."""
    return not text or any(c in _STOP or c.isspace() for c in text)


def _needs_quotes(text: str) -> bool:
    return _splits(text) or text.lower() in _KEYWORDS


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _word(name: str) -> str:
    return _quote(name) if _needs_quotes(name) else name


# --- the facts a filter looks at ------------------------------------------------------------------------


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


MAX_DEPTH = 100


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = list(_tokens(text))
        self.i = 0
        self.depth = 0

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
        tok = self.peek()
        self.depth += 1
        try:
            # Parsing, matching and printing all recurse on nesting: bound it so a hostile
            # expression is a filter error, never a RecursionError traceback.
            if self.depth - 1 > MAX_DEPTH:  # depth 1: a comparison inside no 'not' or '('
                raise self.fail(tok, f"nested too deep (more than {MAX_DEPTH} levels of 'not' and parentheses)")
            return self.nested()
        finally:
            self.depth -= 1

    def nested(self) -> Node:
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
        if tok.kind == "word" and tok.text.lower() in AGGS and self.peek().kind == "(":
            self.take()
            inner = self.peek()
            if inner.kind not in ("word", "str"):
                raise self.fail(inner, f"expected a scalar name in {tok.text}(...)")
            self.take()
            kind, name = self.name(inner)
            if self.peek().kind != ")":
                raise self.fail(self.peek(), f"expected ')' after {tok.text}({inner.text}")
            self.take()
            if kind not in ("name", "scalar"):
                raise FilterError(self.text, inner.pos, f"{tok.text}(...) takes a scalar name, not {inner.text!r}")
            return Term("scalar", name, tok.text.lower(), tok.pos)
        kind, name = self.name(tok)
        return Term(kind, name, "last", tok.pos)

    def name(self, tok: _Token) -> tuple[str, str]:
        """The kind and name of the (taken) token ``tok``: ``flag."a b"`` is one name, quoted."""
        nxt = self.peek()
        if tok.text in ("flag.", "scalar.") and tok.kind == "word" and nxt.kind == "str" \
                and nxt.pos == tok.pos + len(tok.text):
            self.take()
            return tok.text[:-1], nxt.text
        return _split(tok)


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
        if term.kind == "attr" and term.name in (*TIMES, "time"):
            raise FilterError(p.text, term.pos, f"{term.name} is a time: compare it with = != < <= > >=, not {op}")
        try:
            re.compile(value.text)
        except re.error as e:
            raise FilterError(p.text, value.pos + (0 if e.pos is None else e.pos + value.quoted),
                              f"bad regular expression: {e.msg}") from None
        except (OverflowError, RecursionError) as e:  # a{4294967296}, groups nested thousands deep
            raise FilterError(p.text, value.pos, f"bad regular expression: {e}") from None
        return cmp
    if term.kind == "attr" and term.name in TIMES and date_period(value.text) is None:
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


def date_period(text: str) -> tuple[float, float] | None:
    """The period a date names: (start, end) in epoch seconds; local time unless it says ``Z`` or
    an offset. A day, a month, a minute, a second, or a fraction of one, as precise as written."""
    m = _DATE.fullmatch(text.strip())
    if m is None:
        return None
    y, mo, d, hh, mm, ss, frac, zone = m.groups()
    tz = None
    try:
        if zone:
            sign = 1 if zone[0] != "-" else -1
            digits = zone.replace(":", "")[1:]
            tz = timezone.utc if zone == "Z" else timezone(sign * timedelta(hours=int(digits[:2]),
                                                                            minutes=int(digits[2:])))
        start = datetime(int(y), int(mo), int(d or 1), int(hh or 0), int(mm or 0), int(ss or 0),
                         int(round(float(frac) * 1e6)) if frac else 0, tzinfo=tz)
    except (ValueError, OverflowError):
        return None
    step = (timedelta(days=calendar.monthrange(start.year, start.month)[1]) if d is None
            else timedelta(days=1) if hh is None else timedelta(minutes=1) if ss is None
            else timedelta(seconds=1) if frac is None else timedelta(seconds=10.0 ** -(len(frac) - 1)))
    try:
        end = _epoch(start + step)  # local time: a day may be 23 or 25 hours long
    except OverflowError:  # the period of 9999-12-31 ends past the calendar's end
        end = _epoch(start) + step.total_seconds()
    return _epoch(start), end


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _epoch(t: datetime) -> float:
    """``t`` in epoch seconds, local time when it has no zone, for any year: at the calendar's
    edges (0001-01-01, 9999-12-31), where local time cannot be converted, taken as UTC (off by
    hours in a span of millennia)."""
    if t.tzinfo is None:
        try:
            return t.timestamp()
        except (ValueError, OverflowError, OSError):
            t = t.replace(tzinfo=timezone.utc)
    return (t - _EPOCH).total_seconds()


def parse_tree(text: str) -> Node:
    """The tree of the filter ``text``; FilterError (exit 2, with a caret at the column) if it is not one."""
    if not isinstance(text, str):
        raise TypeError("a filter is a string")
    p = _Parser(text)
    if p.peek().kind == "end":
        raise FilterError(text, 0, "empty filter")
    node = p.expr()
    if p.peek().kind != "end":
        tok = p.peek()
        raise p.fail(tok, f"expected 'and', 'or' or the end, found {tok.text!r}")
    return node


def parse_term(text: str) -> Term:
    """One term of the grammar alone (``loss``, ``min(loss)``, ``scalar.acc``): what ``select
    --min`` ranks by. FilterError (with a caret) if ``text`` is not one."""
    p = _Parser(text)
    term = p.term()
    if p.peek().kind != "end":
        raise p.fail(p.peek(), f"expected the end after {str(term)!r}")
    return term
