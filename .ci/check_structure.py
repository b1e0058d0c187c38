#!/usr/bin/env python3
"""Structural checks on the ``guildlite`` package (issue 15); stdlib only, exit 1 with a list on failure.

``imports``: the import graph of ``guildlite`` is acyclic. Every import statement counts, at module
level and inside functions (a lazy import is still a dependency), and so does
``importlib.import_module("guildlite...")`` with a literal name; only the bodies of
``if TYPE_CHECKING:`` blocks are left out (they never run). An edge goes to the module named, not to
the packages above it that Python also initialises on the way (``guildlite/__init__.py`` would
otherwise close a cycle with every module it re-exports).

``backends``: a backend's name appears in no module outside that backend's package. Backends are
the names of the ``guildlite.backends`` entry points in setup.cfg, and the packages found as
``guildlite/backends/NAME/``; ``slurm`` is always one (issue 15 names it). A name is checked only if
the backend is a package of its own (``guildlite/backends/NAME/``) or is ``slurm``: a one-module
backend such as ``local`` is named with an everyday English word that the rest of the code uses
for other things. The word is matched case-insensitively as a whole word in code, strings and
comments, also as a part of an identifier (``_slurm``, ``SlurmJob``, ``SLURM_JOB_ID``), but not
inside a longer word (``slurmctld``); and in the module's path (``guildlite/_slurm_queue.py``). For ``slurm`` without a package yet, every mention is one
too many.

``sizes``: every module under ``guildlite/`` has at most MAX_LINES lines (the issue says ~400).

Usage: ``python .ci/check_structure.py [--root DIR] [--check imports|backends|sizes ...]``.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import re
import sys
from collections import deque
from pathlib import Path

PACKAGE = "guildlite"
ENTRY_POINT_GROUP = "guildlite.backends"
ALWAYS_CHECKED = ("slurm",)
MAX_LINES = 450
CHECKS = ("imports", "backends", "sizes")


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its own name, for its ``__init__``)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


# --- imports ---------------------------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that may run: all of them but the bodies of ``if TYPE_CHECKING:`` (its ``else`` runs)."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _imported(node: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """The package's modules that one node imports (absolute dotted names)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            here = module.split(".") if is_package else module.split(".")[:-1]
            up = node.level - 1
            if up > len(here):
                return []
            base = ".".join(here[: len(here) - up] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        # ``from .pkg import name``: ``pkg.name`` when that is a module, else ``pkg`` itself.
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    elif (
        isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
        )
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        names = [node.args[0].value]
    out = []
    for name in names:
        # ``import guildlite.a.b`` names ``guildlite.a.b``; the nearest module that exists is the edge.
        while name and name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            out.append(name)
    return out


def import_graph(root: Path) -> tuple[dict[str, dict[str, int]], list[str]]:
    """module -> {imported module: first line}; and the files that do not parse."""
    known = modules(root)
    graph: dict[str, dict[str, int]] = {}
    broken = []
    for name, path in known.items():
        edges: dict[str, int] = {}
        graph[name] = edges
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError) as e:
            broken.append(f"{path.relative_to(root)}: does not parse: {e}")
            continue
        for node in _runtime_nodes(tree):
            for dep in _imported(node, name, path.name == "__init__.py", known):
                line = getattr(node, "lineno", 0)
                edges[dep] = min(edges.get(dep, line), line)
    return graph, broken


def _components(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                out.append(sorted(comp))
    return out


def _shortest_cycle(graph: dict[str, dict[str, int]], start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one component (BFS)."""
    came: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node]):
            if nxt not in within:
                continue
            if nxt == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(came[chain[-1]])
                return [*reversed(chain), start]
            if nxt not in came:
                came[nxt] = node
                queue.append(nxt)
    return []


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Import cycles as chains ``[a, b, ..., a]``: the shortest one through each module that is on one."""
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for comp in _components(graph):
        within = set(comp)
        for node in comp:
            chain = _shortest_cycle(graph, node, within)
            if not chain:
                continue
            # One cycle read from another of its modules is the same cycle: keep it once.
            body = chain[:-1]
            turn = body.index(min(body))
            key = tuple(body[turn:] + body[:turn])
            if key not in seen:
                seen.add(key)
                found.append([*key, key[0]])
    return found


def check_imports(root: Path) -> list[str]:
    graph, problems = import_graph(root)
    for chain in cycles(graph):
        steps = " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(chain, chain[1:]))
        problems.append(f"import cycle: {steps} -> {chain[-1]}")
    return problems


# --- backend names ---------------------------------------------------------------------------------


def backend_names(root: Path) -> list[str]:
    """Entry points of the group in setup.cfg, packages under guildlite/backends/, and ``slurm``."""
    names = set(ALWAYS_CHECKED)
    cfg = configparser.ConfigParser(interpolation=None)
    try:
        cfg.read(root / "setup.cfg", encoding="utf-8")
        lines = cfg.get("options.entry_points", ENTRY_POINT_GROUP, fallback="")
    except configparser.Error:
        lines = ""
    for line in lines.splitlines():
        name, eq, _ = line.partition("=")
        if eq and name.strip():
            names.add(name.strip().lower())
    backends_dir = root / PACKAGE / "backends"
    if backends_dir.is_dir():
        names.update(p.name.lower() for p in backends_dir.iterdir() if p.is_dir() and p.name.isidentifier() and not p.name.startswith("_"))
    return sorted(names)


def checked_backends(root: Path) -> dict[str, Path]:
    """The backends whose name is checked, each with the package it may appear in (see the module doc)."""
    out = {}
    for name in backend_names(root):
        home = root / PACKAGE / "backends" / name
        if home.is_dir() or name in ALWAYS_CHECKED:
            out[name] = home
    return out


# Words inside an identifier or a run of text: ``SlurmJob`` -> Slurm, Job; ``SLURM_ID`` -> SLURM, ID.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def words(text: str) -> list[str]:
    return [w.lower() for run in re.findall(r"[A-Za-z0-9]+", text) for w in _WORD.findall(run)]


def check_backends(root: Path) -> list[str]:
    problems = []
    homes = checked_backends(root)
    for path in sorted((root / PACKAGE).rglob("*.py")):
        banned = {name for name, home in homes.items() if home not in path.parents}
        if not banned:
            continue
        rel = path.relative_to(root)
        for name in sorted(banned.intersection(words(" ".join(rel.parts)))):
            problems.append(f"backend name {name!r} outside guildlite/backends/{name}/: {rel}: in the module's path")
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for name in sorted(banned.intersection(words(line))):
                problems.append(
                    f"backend name {name!r} outside guildlite/backends/{name}/: "
                    f"{path.relative_to(root)}:{number}: {line.strip()[:100]}"
                )
    return problems


# --- sizes -----------------------------------------------------------------------------------------


def check_sizes(root: Path) -> list[str]:
    problems = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        n = len(path.read_bytes().splitlines())
        if n > MAX_LINES:
            problems.append(f"module too long: {path.relative_to(root)}: {n} lines (at most {MAX_LINES})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--check", action="append", choices=CHECKS, help="only this check (repeatable)")
    args = parser.parse_args(argv)
    root: Path = args.root
    if not (root / PACKAGE).is_dir():
        print(f"check_structure: no {PACKAGE}/ package under {root}", file=sys.stderr)
        return 2
    run = {"imports": check_imports, "backends": check_backends, "sizes": check_sizes}
    failed = 0
    for check in args.check or CHECKS:
        problems = run[check](root)
        if check == "backends":
            names = ", ".join(checked_backends(root)) or "none"
            print(f"{check}: checked backend names: {names}")
        print(f"{check}: {'FAILED' if problems else 'ok'}" + (f" ({len(problems)})" if problems else ""))
        for p in problems:
            print(f"  {p}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
