"""Facts about a Python script read from its source by ``ast``, never by running it: its top-level
literal assignments (global-variable flags), and editing them in place. (Which command-line parser
it uses is ``_parser_scan``.)

Edits replace the exact source span of an assignment's value (``lineno``/``col_offset`` ..
``end_lineno``/``end_col_offset``, where columns are UTF-8 byte offsets), so every comment,
blank line and the rest of the formatting stay as they were.
"""

from __future__ import annotations

import ast
import io
import math
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ._errors import FlagError


@dataclass(frozen=True)
class Global:
    """One top-level ``NAME = <literal>`` (or ``NAME: T = <literal>``) of a script."""

    name: str
    value: Any
    line: int
    span: tuple[int, int]  # character offsets of the value expression in the decoded source
    is_tuple: bool = False


@dataclass(frozen=True)
class Source:
    """A script's text, decoded with its declared encoding, and its top-level assignments."""

    path: Path
    text: str
    encoding: str
    globals: Mapping[str, Global]
    assigned_twice: Mapping[str, tuple[int, ...]]  # names with several top-level literal assignments: lines
    bound: frozenset[str]  # every name bound at the top level, literal or not
    dicts: Mapping[str, Mapping[str, Global]] = field(default_factory=dict)  # NAME = {...}: its entries
    # Module-level statements that may set a global after its literal assignment: name -> lines of
    # the other statements binding it (in any block, or `global NAME` in a function), and lines of
    # dynamic rebinding of any name (`from m import *`, exec/eval, globals(), runpy, execfile).
    rebinds: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    dynamic: tuple[int, ...] = ()


def read_source(path: Path) -> Source:
    """Parse ``path``; raise FlagError naming the file when it cannot be read or parsed."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FlagError(f"cannot read {path}: {e.strerror}") from None
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        text = raw.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError) as e:
        raise FlagError(f"cannot decode {path}: {e}") from None
    try:
        tree = ast.parse(text, filename=str(path))
    except (SyntaxError, ValueError) as e:
        where = f":{e.lineno}" if isinstance(e, SyntaxError) and e.lineno else ""
        raise FlagError(f"cannot parse {path}{where}: {e.msg if isinstance(e, SyntaxError) else e}") from None
    found: dict[str, list[Global]] = {}
    dicts: dict[str, list[dict[str, Global]]] = {}
    bound: set[str] = set()
    starts = _line_starts(text)
    binders: dict[str, list[tuple[int, ast.stmt]]] = {}  # name -> the top-level statements binding it
    for node in tree.body:
        bound.update(_bound_names(node))
        for name in set(_overwritten(node)) | _declared_global(node):
            binders.setdefault(name, []).append((node.lineno, node))
        target, value = _simple_assignment(node)
        if target is None or value is None:
            continue
        if isinstance(value, ast.Dict):
            dicts.setdefault(target, []).append(dict(_entries(text, starts, value, "")))
            continue
        g = _global(text, starts, target, value, node.lineno)
        if g is not None:
            found.setdefault(target, []).append(g)
    return Source(
        path=path,
        text=text,
        encoding=encoding,
        globals={n: gs[0] for n, gs in found.items() if len(gs) == 1},
        assigned_twice={
            **{n: tuple(g.line for g in gs) for n, gs in found.items() if len(gs) > 1},
            **{n: () for n, ds in dicts.items() if len(ds) > 1},
        },
        bound=frozenset(bound),
        dicts={n: ds[0] for n, ds in dicts.items() if len(ds) == 1},
        rebinds={n: tuple(line for line, _ in bs) for n, bs in binders.items()},
        dynamic=tuple(sorted(_dynamic_lines(tree))),
    )


def _overwritten(node: ast.AST) -> Iterable[str]:
    """Names a module-level statement binds to a value not derived from themselves: ``lr = 0.5``
    under an ``if``, a ``for`` target, an import -- not ``lr *= world_size`` or ``lr = lr * 2``,
    which start from the value guildlite set."""
    if isinstance(node, ast.AugAssign):
        return
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        reads = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        yield from (n for t in targets for n in _bound_names(t) if n not in reads)
        yield from (n for n in _bound_names(node.value))  # a walrus in the value
        return
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
                         ast.Name, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        yield from _bound_names(node)
        return
    for child in ast.iter_child_nodes(node):
        yield from _overwritten(child)


def _declared_global(node: ast.stmt) -> set[str]:
    """Names a function or class at the top level declares ``global`` (it may set them when called)."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return set()
    return {n for sub in ast.walk(node) if isinstance(sub, ast.Global) for n in sub.names}


_DYNAMIC_CALLS = ("exec", "eval", "execfile", "globals", "vars", "run_path", "run_module")  # vars(): no args


def _dynamic_lines(node: ast.AST, in_function: bool = False) -> Iterable[int]:
    """Lines where code may rebind any global: star imports and exec-like calls at module level;
    ``globals()`` anywhere (a function's ``globals().update(...)`` sets module globals too)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ImportFrom) and any(a.name == "*" for a in child.names):
            yield child.lineno
        elif isinstance(child, ast.Call):
            fn = child.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            no_args = not child.args and not child.keywords
            if name == "globals" or (name in _DYNAMIC_CALLS and not in_function and (name != "vars" or no_args)):
                yield child.lineno
        inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
        yield from _dynamic_lines(child, inner)


def _global(text: str, starts: list[int], name: str, value: ast.expr, line: int) -> Global | None:
    try:
        literal = literal_value(value)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return None
    if not _flag_value(literal):
        return None
    span = (_offset(text, starts, value.lineno, value.col_offset),
            _offset(text, starts, value.end_lineno or value.lineno, value.end_col_offset or 0))
    return Global(name, list(literal) if isinstance(literal, tuple) else literal, line, span,
                  isinstance(literal, tuple))


def _entries(text: str, starts: list[int], node: ast.Dict, prefix: str) -> Iterable[tuple[str, Global]]:
    """The literal entries of a dict display with string keys, nested dicts as dotted names."""
    for key, value in zip(node.keys, node.values):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            continue
        name = prefix + key.value
        if isinstance(value, ast.Dict):
            yield from _entries(text, starts, value, name + ".")
            continue
        g = _global(text, starts, name, value, value.lineno)
        if g is not None:
            yield name, g


def _simple_assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    return None, None


def _bound_names(node: ast.AST) -> Iterable[str]:
    """Names a module-level statement binds (in ``if``/``for``/``with``/``try`` blocks too, never
    inside a function, class or lambda: those are not globals)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield node.name
        return
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            yield (alias.asname or alias.name).split(".")[0]
        return
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        yield node.id
    if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return
    for child in ast.iter_child_nodes(node):
        yield from _bound_names(child)


NO_VALUE = object()  # ``literal_or_missing``: the node is not a literal


def literal_or_missing(node: Any) -> Any:
    """``ast.literal_eval`` of ``node``, or NO_VALUE when it is not a literal (a name, a call, ...)."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return NO_VALUE


def literal_value(node: ast.expr) -> Any:
    """``ast.literal_eval`` of ``node``, plus ``float("inf")``/``float("nan")`` (how guildlite writes them)."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float"
            and len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        text = node.args[0].value.strip().lower().lstrip("+-")
        if text in ("inf", "infinity", "nan"):
            return float(node.args[0].value)
        raise ValueError("not a literal")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = literal_value(node.operand)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner
        raise ValueError("not a literal")
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [literal_value(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    return ast.literal_eval(node)


def _flag_value(v: Any) -> bool:
    """Values a global-variable flag can hold: scalars, and flat lists or tuples of scalars."""
    if isinstance(v, (list, tuple)):
        return all(isinstance(x, (bool, int, float, str)) for x in v)
    return v is None or isinstance(v, (bool, int, float, str))


def _line_starts(text: str) -> list[int]:
    # The tokenizer ends lines at \r\n, \r or \n only (never at \f, \v or U+2028 as splitlines does).
    return [0, *(m.end() for m in re.finditer(r"\r\n|\r|\n", text))]


def _offset(text: str, starts: list[int], lineno: int, col_bytes: int) -> int:
    start = starts[lineno - 1]
    end = starts[lineno] if lineno < len(starts) else len(text)
    return start + len(text[start:end].encode("utf-8")[:col_bytes].decode("utf-8"))


def python_literal(value: Any, as_tuple: bool = False, ascii_only: bool = False) -> str:
    """``value`` as Python source that evaluates back to it (``float("nan")`` for NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if isinstance(value, (list, tuple)):
        items = [python_literal(v, ascii_only=ascii_only) for v in value]
        if as_tuple:
            return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
        return f"[{', '.join(items)}]"
    return ascii(value) if ascii_only else repr(value)


def rewrite(src: Source, values: Mapping[str, Any], container: str | None = None) -> str:
    """The source with the global named by each key of ``values`` set to its value (a global
    that already holds its value is left as written).

    Raises FlagError for a name that is not a top-level literal assignment of the script (with
    ``container``, an entry of the top-level dict of that name: ``key`` or ``outer.inner``).
    """
    edits = []
    for name, value in values.items():
        g = global_for(src, name, container)
        if same_value(g.value, list(value) if isinstance(value, tuple) else value):
            continue  # already holds it: the line stays exactly as written
        literal = python_literal(value, g.is_tuple, ascii_only=src.encoding.replace("_", "-").lower()
                                 not in ("utf-8", "utf-8-sig"))
        edits.append((g.span, literal))
    text = src.text
    for (start, end), literal in sorted(edits, reverse=True):
        text = text[:start] + literal + text[end:]
    return text


def global_for(src: Source, name: str, container: str | None = None) -> Global:
    """The assignment a flag ``name`` sets, or a FlagError saying why there is none."""
    if container is not None:
        return _entry_for(src, name, container)
    g = src.globals.get(name)
    if g is not None:
        later = [n for n in src.rebinds.get(name, ()) if n > g.line]
        if later:
            raise FlagError(f"flag '{name}': {src.path.name} line {g.line} assigns {name}, but line {later[0]} sets it "
                            "again, so the value guildlite writes would not be the one the script uses")
        dynamic = [n for n in src.dynamic if n > g.line]
        if dynamic:
            raise FlagError(f"flag '{name}': {src.path.name} line {g.line} assigns {name}, but line {dynamic[0]} may set "
                            "globals dynamically (exec, a star import, globals()), so the value guildlite writes may "
                            "not be the one the script uses; pass flags on the command line (flags-dest: args) or "
                            "remove that line")
        return g
    if name in src.assigned_twice:
        lines = ", ".join(str(n) for n in src.assigned_twice[name])
        raise FlagError(f"flag '{name}': {src.path.name} assigns {name} at the top level more than once "
                        f"(lines {lines}); guildlite sets one literal assignment")
    if name in src.bound:
        raise FlagError(f"flag '{name}': {src.path.name} sets {name}, but not as a top-level '{name} = <literal>' "
                        "guildlite can set (a number, string, bool, None or a list of them)")
    raise FlagError(f"flag '{name}': {src.path.name} has no top-level assignment '{name} = ...' to set")


def _entry_for(src: Source, name: str, container: str) -> Global:
    if container in src.assigned_twice:
        raise FlagError(f"flag '{name}': {src.path.name} assigns {container} at the top level more than once")
    entries = src.dicts.get(container)
    if entries is None:
        raise FlagError(f"flag '{name}': {src.path.name} has no top-level dict '{container} = {{...}}' to set")
    g = entries.get(name)
    if g is None:
        raise FlagError(f"flag '{name}': the dict {container} in {src.path.name} has no literal entry '{name}'"
                        " (nested dicts: outer.inner)")
    return g


def write_source(src: Source, text: str) -> None:
    """Write ``text`` back to the script in its own encoding (atomically)."""
    from ._files import atomic_write

    atomic_write(src.path, text.encode(src.encoding))


def same_value(a: Any, b: Any) -> bool:
    """Equal as flag values: type-strict for bools (``True`` is not ``1``), NaN equal to NaN."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)  # -0.0 is not the 0.0 recorded
    return type(a) is type(b) and bool(a == b)


def mismatches(path: Path, values: Mapping[str, Any], container: str | None = None) -> list[str]:
    """Why the script at ``path`` does not hold ``values`` in its globals (empty: it does)."""
    try:
        src = read_source(path)
    except FlagError as e:
        return [str(e)]
    out = []
    for name, value in values.items():
        try:
            g = global_for(src, name, container)
        except FlagError as e:
            out.append(str(e))
            continue
        if not same_value(g.value, list(value) if isinstance(value, tuple) else value):
            out.append(f"flag '{name}': {path.name} line {g.line} holds {g.value!r}, not the run's {value!r}")
    return out
