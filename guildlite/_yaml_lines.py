"""YAML with line numbers: a guildfile is parsed into mappings and lists that remember the line of
each key and item, so that every error names ``file:line``; and the checks on those nodes that every
part of the guildfile uses (``YamlChecks``).

The loader is PyYAML's safe one; YAML aliases are measured before anything is built (a "billion
laughs" is refused), merge keys (``<<``) are applied, duplicate keys and NUL characters refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from ._errors import GuildfileError


class _Map(dict):  # type: ignore[type-arg]
    """A mapping that remembers the line of itself and of each key."""

    line: int = 0
    lines: dict[Any, int]


class _Seq(list):  # type: ignore[type-arg]
    """A list that remembers the line of each item."""

    lines: list[int]


# What YAML aliases may add to a document: nodes (each one a Python object once built, and copied
# when the op is recorded) and characters of text (shared once built, repeated when written out).
# A guildfile that shares settings through anchors and merge keys adds a few thousand; a "billion
# laughs" (nested aliases, 9 levels of 9) asks for billions and would exhaust memory.
ALIAS_NODES = 250_000
ALIAS_TEXT = 10_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_yaml(path: Path) -> Any:
    """The YAML file at ``path``, parsed (``parse_yaml``); unreadable, non-UTF-8 or NUL text is a GuildfileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise GuildfileError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise GuildfileError(f"{path}: not UTF-8 text (byte {e.start})") from None
    if "\0" in text:
        raise GuildfileError(f"{path}:{text[:text.index(chr(0))].count(chr(10)) + 1}: a NUL character") from None
    return parse_yaml(path, text)


def parse_yaml(path: Path, text: str) -> Any:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        def get_single_data(self) -> Any:
            # The node graph is checked before anything is built: aliases share one node, so
            # measuring costs one pass over the distinct nodes however far they would expand.
            node = self.get_single_node()
            if node is None:
                return None
            _check_aliases(path, node)
            return self.construct_document(node)

    def construct_map(loader: Any, node: Any) -> _Map:
        m = _Map()
        m.line = node.start_mark.line + 1
        m.lines = {}
        merged: list[_Map] = []
        for knode, vnode in node.value:
            line = knode.start_mark.line + 1
            if knode.tag == _MERGE_TAG:
                if merged:
                    raise GuildfileError(f"{path}:{line}: duplicate key '<<' (merge several with <<: [*a, *b])")
                merged = _merge_sources(path, loader, vnode)
                continue
            key = loader.construct_object(knode, deep=True)
            try:
                hash(key)
            except TypeError:
                raise GuildfileError(f"{path}:{line}: a key must be a plain value, not a list or mapping") from None
            if key in m:
                raise GuildfileError(f"{path}:{line}: duplicate key '{key}'")
            m[key] = loader.construct_object(vnode, deep=True)
            m.lines[key] = line
        return _merged(m, merged) if merged else m

    def construct_seq(loader: Any, node: Any) -> _Seq:
        seq = _Seq(loader.construct_object(child, deep=True) for child in node.value)
        seq.lines = [child.start_mark.line + 1 for child in node.value]
        return seq

    def construct_str(loader: Any, node: Any) -> str:
        value: str = loader.construct_scalar(node)
        if "\0" in value:  # only an escape ("\0", "\x00") puts one here: the raw text has none
            raise GuildfileError(f"{path}:{node.start_mark.line + 1}: a NUL character in {value!r}: a guildfile"
                                 " string cannot hold one (no command line, environment or file name can)")
        return value

    def construct_int(loader: Any, node: Any) -> int:
        try:
            return int(yaml.SafeLoader.construct_yaml_int(loader, node))
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise GuildfileError(f"{path}:{node.start_mark.line + 1}: an integer of {len(node.value)} characters: "
                                 "too long (a flag's number must fit in a few thousand digits)") from None

    Loader.add_constructor("tag:yaml.org,2002:int", construct_int)
    Loader.add_constructor("tag:yaml.org,2002:map", construct_map)
    Loader.add_constructor("tag:yaml.org,2002:seq", construct_seq)
    Loader.add_constructor("tag:yaml.org,2002:str", construct_str)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise GuildfileError(f"{where}: invalid YAML: {e.problem}") from None
    except yaml.YAMLError as e:
        raise GuildfileError(f"{path}: invalid YAML: {e}") from None
    except RecursionError:
        raise GuildfileError(f"{path}: invalid YAML: nested too deeply") from None
    except ValueError as e:  # a value YAML's own constructors reject: a date like 2024-13-45
        raise GuildfileError(f"{path}: invalid YAML value: {_brief(str(e))}") from None


def _merge_sources(path: Path, loader: Any, vnode: Any) -> list[_Map]:
    """The mappings a merge key (``<<: *a`` or ``<<: [*a, *b]``) names, in order of precedence."""
    import yaml

    sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
    out = []
    for src in sources:
        if not isinstance(src, yaml.MappingNode):
            raise GuildfileError(f"{path}:{src.start_mark.line + 1}: '<<' merges a mapping (<<: *name) or a list"
                                 " of mappings (<<: [*a, *b])")
        out.append(loader.construct_object(src, deep=True))
    return out


def _merged(explicit: _Map, sources: list[_Map]) -> _Map:
    """YAML merge keys: the mapping's own keys win, then the sources in order; a shallow merge."""
    out = _Map()
    out.line, out.lines = explicit.line, {}
    for src in sources:
        for k, v in src.items():
            if k not in out:
                out[k] = v
                out.lines[k] = src.lines.get(k, src.line)
    for k, v in explicit.items():  # in place: keys keep the merged order, take the explicit value
        out[k] = v
        out.lines[k] = explicit.lines[k]
    return out


def _check_aliases(path: Path, root: Any) -> None:
    """Refuse a node graph whose aliases add more than ALIAS_NODES nodes or ALIAS_TEXT characters,
    or that contains itself.

    One depth-first pass over the distinct nodes (iterative: a deep document must not exhaust the
    stack): ``size`` is what each node would expand to, children counted once per reference.
    """
    import yaml

    def children(n: Any) -> list[Any]:
        if isinstance(n, yaml.SequenceNode):
            return list(n.value)
        if isinstance(n, yaml.MappingNode):
            return [x for pair in n.value for x in pair]
        return []

    def text(n: Any) -> int:
        return len(n.value) if isinstance(n, yaml.ScalarNode) else 0

    cap = 1 << 62  # with doubling aliases the true numbers grow to thousands of digits
    size: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, characters) once expanded
    open_ids = {id(root)}
    distinct = [1, text(root)]
    order: list[Any] = []
    stack = [(root, iter(children(root)))]
    while stack:
        node, rest = stack[-1]
        child = next(rest, None)
        if child is None:
            stack.pop()
            open_ids.discard(id(node))
            kids = [size[id(c)] for c in children(node)]
            size[id(node)] = (min(1 + sum(k[0] for k in kids), cap), min(text(node) + sum(k[1] for k in kids), cap))
            order.append(node)
        elif id(child) in open_ids:
            raise GuildfileError(f"{path}:{child.start_mark.line + 1}: a YAML alias inside the node it names"
                                 " (a recursive structure); a guildfile cannot hold one")
        elif id(child) not in size:
            open_ids.add(id(child))
            distinct[0] += 1
            distinct[1] += text(child)
            stack.append((child, iter(children(child))))

    def too_big(n: Any) -> bool:
        nodes, chars = size[id(n)]
        return nodes - distinct[0] > ALIAS_NODES or chars - distinct[1] > ALIAS_TEXT

    if not too_big(root):
        return
    blame = next(n for n in order if too_big(n))  # the first (innermost) node that is already too big
    raise GuildfileError(
        f"{path}:{blame.start_mark.line + 1}: YAML aliases (*name) expand this beyond {ALIAS_NODES:,} nodes"
        f" or {ALIAS_TEXT:,} characters (nested aliases, a 'billion laughs'?); write the values out or use"
        " fewer levels of aliases"
    )


def _short(parent: Any, key: Any, line: int, **values: Any) -> _Map:
    """A mapping made from a short form (a list, a string), at ``line`` or else the line of its key."""
    m = _Map(values)
    at: int = line or getattr(parent, "lines", {}).get(key) or getattr(parent, "line", 0) or 0
    m.line = at
    m.lines = {k: m.line for k in values}
    return m


def _brief(v: Any) -> str:
    """``v`` as a short repr for an error message."""
    try:
        text = repr(_plain(v))
    except (ValueError, RecursionError):  # an int too long to print, a deep nest
        return _kind(v)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _kind(v: Any) -> str:
    kinds: dict[type, str] = {list: "a list", _Seq: "a list", dict: "a mapping", _Map: "a mapping", str: "a string"}
    return kinds.get(type(v), type(v).__name__)


def _show_yaml(v: Any) -> str:
    text = repr(_plain(v))
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(v: Any) -> Any:
    """Strip line bookkeeping: plain dicts and lists, safe to JSON-serialise."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


class YamlChecks:
    """Checks on the nodes of one parsed file; each failure is a GuildfileError naming its line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, parent: Any, key: Any, msg: str) -> GuildfileError:
        line = getattr(parent, "lines", {}).get(key) or getattr(parent, "line", 0)
        where = f"{self.path}:{line}" if line else str(self.path)
        return GuildfileError(f"{where}: {msg}")

    def mapping(self, parent: Any, key: Any, value: Any, what: str) -> Mapping[Any, Any]:
        if value is None:
            return _Map()
        if not isinstance(value, dict):
            raise self.fail(parent, key, f"'{what}' must be a mapping, got {_kind(value)}")
        return value

    def keys(self, m: Mapping[Any, Any], allowed: Iterable[str], what: str, extensions: bool = False) -> None:
        allowed = tuple(allowed)
        for k in m:
            if extensions and isinstance(k, str) and k.startswith("x-"):
                continue
            if k not in allowed:
                import difflib

                hint = difflib.get_close_matches(str(k), allowed, n=1)
                tip = f"did you mean '{hint[0]}'?" if hint else f"valid keys: {', '.join(allowed)}"
                raise self.fail(m, k, f"unknown key '{k}' in {what} ({tip})")

    def string(self, m: Mapping[Any, Any], key: str, where: str) -> str:
        v = m.get(key, "")
        if v is None:
            return ""
        if not isinstance(v, str):
            raise self.fail(m, key, f"{where}: '{key}' must be a string, got {_kind(v)}")
        return v

    def count(self, m: Mapping[Any, Any], key: str, default: int, least: int, where: str) -> int:
        v = m.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise self.fail(m, key, f"{where}: '{key}' must be an integer >= {least}, got {v!r}")
        return v

    def seconds(self, m: Mapping[Any, Any], key: str, where: str) -> float | None:
        """A positive, finite number of seconds, or None when ``key`` is absent."""
        import math

        if key not in m:
            return None
        v = m[key]
        try:
            seconds = math.nan if isinstance(v, bool) or not isinstance(v, (int, float)) else float(v)
        except OverflowError:  # an int beyond any float
            seconds = math.inf
        if not 0 < seconds < math.inf:
            raise self.fail(m, key, f"{where}: '{key}' must be a positive number of seconds, got {_brief(v)}")
        return seconds
