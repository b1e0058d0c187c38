"""Which command-line parser a Python script uses, and whether it may read its command line or its
environment at all: read from its source by ``ast`` (and from the project modules it imports or
execs), never by running it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

# Modules that mean "this script reads its settings from the command line".
CLI_MODULES = ("argparse", "click", "typer", "fire", "absl", "docopt", "hydra", "jsonargparse", "tyro",
               "simple_parsing", "omegaconf")
_PARSE_CALLS = ("parse_args", "parse_known_args", "parse_args_into_dataclasses")
_OTHER_READERS = ("FLAGS", "LightningCLI", "CLI")  # absl/tf flags, Lightning's and jsonargparse's CLIs
# Libraries that never read sys.argv when imported or used (so a script importing only these, the
# standard library and project modules, with no parser, certainly ignores command-line flags).
_QUIET_PACKAGES = ("torch", "torchvision", "torchaudio", "numpy", "scipy", "pandas", "sklearn", "matplotlib",
                   "seaborn", "PIL", "tqdm", "yaml", "requests", "h5py", "einops", "safetensors", "tiktoken",
                   "datasets", "tokenizers", "wandb", "tensorboard", "mlflow", "guildlite")
_MAX_SCANNED = 64  # project modules followed from the main when looking for a parser


def cli_parsers(script: Path, project: Path) -> set[str]:
    """How ``script`` (or a project module it imports) reads its command line: the parser modules
    it imports (argparse, click, ...) and ``sys.argv`` when it reads that itself; ``exec`` for code
    it runs that guildlite cannot see; empty if none."""
    return {n for n in _scan(script, project) if not n.startswith(("env:", "pkg:"))}


def reads_argv(script: Path, project: Path) -> bool:
    """Whether ``script`` may read its command line: a parser or ``sys.argv`` in it or a project
    module it imports, code it runs that guildlite cannot see, or an imported package that is not
    one of the common libraries known to leave the command line alone."""
    found = _scan(script, project)
    return bool(found - {"env:environ", "env:package"})


def reads_environ(script: Path, project: Path) -> bool:
    """Whether ``script`` may read its environment: it (or a project module it imports) uses
    ``os.environ``/``getenv``, or imports a package outside the standard library and the project
    (which might), or runs code guildlite cannot see."""
    found = _scan(script, project)
    return bool(found & {"env:environ", "env:package", "exec"})


def project_files(script: Path, project: Path) -> list[Path]:
    """``script`` and the project modules (and exec'd project files) it imports, as scanned."""
    return _walk(script, project)[1]


def _scan(script: Path, project: Path) -> set[str]:
    return _walk(script, project)[0]


def _walk(script: Path, project: Path) -> tuple[set[str], list[Path]]:
    found: set[str] = set()
    seen: dict[Path, None] = {}
    todo = [script]
    while todo and len(seen) < _MAX_SCANNED:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = None
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.update(_parser(alias.name))
                    mods = _project_module(script.parent, alias.name, [], project)
                    todo.extend(mods)
                    if not mods:
                        found.update(_outside(alias.name))
            elif isinstance(node, ast.ImportFrom) and node.level:
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                todo.extend(_project_module(base, node.module or "", [a.name for a in node.names], project))
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.update(_parser(node.module))
                if node.module == "sys" and any(a.name == "argv" for a in node.names):
                    found.add("sys.argv")
                if node.module == "os" and any(a.name in ("environ", "getenv", "environb") for a in node.names):
                    found.add("env:environ")
                mods = _project_module(script.parent, node.module, [a.name for a in node.names], project)
                todo.extend(mods)
                if not mods:
                    found.update(_outside(node.module))
            elif isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
                found.add("env:environ")
            elif (isinstance(node, ast.Attribute) and node.attr == "argv" and isinstance(node.value, ast.Name)
                  and node.value.id == "sys"):
                found.add("sys.argv")
            elif isinstance(node, ast.Call) and call_name(node) in ("exec", "execfile", "run_path"):
                # nanoGPT's `exec(open('configurator.py').read())`: that file's code is this script's.
                ran = _executed_file(node, path.parent, project)
                if ran is None:
                    found.add("exec")  # code guildlite cannot see may read the command line
                else:
                    todo.append(ran)
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
            if name.endswith("ArgumentParser") or name in _PARSE_CALLS or name in _OTHER_READERS:  # another package's
                found.add(name)
    return found, list(seen)


def call_name(node: ast.Call) -> str:
    fn = node.func
    return fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""


def _executed_file(node: ast.Call, base: Path, project: Path) -> Path | None:
    """The project file an exec-like call runs: ``exec(open('f.py').read())``, ``execfile('f.py')``,
    ``runpy.run_path('f.py')`` (relative to the working directory, the project, or the script's dir)."""
    arg = node.args[0] if node.args else None
    if (isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute) and arg.func.attr == "read"
            and isinstance(arg.func.value, ast.Call) and call_name(arg.func.value) == "open"):
        arg = arg.func.value.args[0] if arg.func.value.args else None
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        return None
    for root in (project, base):
        cand = root / arg.value
        try:
            if cand.is_file() and cand.resolve().is_relative_to(project.resolve()):
                return cand
        except (OSError, ValueError):
            continue
    return None


def _outside(module: str) -> set[str]:
    """What importing ``module`` (not a project module) may add: ``env:package`` for anything
    outside the standard library, ``pkg:NAME`` too when it is not a known library."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names:
        return set()
    return {"env:package"} if top in _QUIET_PACKAGES else {"env:package", f"pkg:{top}"}


def _parser(module: str) -> set[str]:
    top = module.split(".")[0]
    return {top} if top in CLI_MODULES else set()


def _project_module(base: Path, dotted: str, names: list[str], project: Path) -> list[Path]:
    """The files of project modules an import names (found beside the script or at the project root)."""
    out = []
    for root in dict.fromkeys([base, project]):
        parts = [p for p in dotted.split(".") if p]
        for cand in ([*parts, n] for n in [*names, ""]):
            stem = root.joinpath(*[c for c in cand if c]) if any(cand) else None
            if stem is None:
                continue
            for f in (stem.with_suffix(".py"), stem / "__init__.py"):
                try:
                    if f.is_file() and f.resolve().is_relative_to(project.resolve()):
                        out.append(f)
                except OSError:
                    continue
    return out


def click_switch_pairs(script: Path) -> dict[str, tuple[str, bool]]:
    """click's on/off options declared in ``script`` (``@click.option("--x/--no-x")``, literals in
    the decorator): each option -> (the other one, whether this one is the "on" half)."""
    try:
        tree = ast.parse(script.read_bytes(), filename=str(script))
    except (OSError, SyntaxError, ValueError):
        return {}
    out: dict[str, tuple[str, bool]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and call_name(node) == "option"):
            continue
        for arg in node.args:
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)) or "/" not in arg.value:
                continue
            on, _, off = (p.strip() for p in arg.value.partition("/"))
            if on.startswith("-") and off.startswith("-"):
                out[on] = (off, True)
                out[off] = (on, False)
    return out


# Calls that run code guildlite cannot see (which may build a parser).
_OPAQUE_CALLS = ("exec", "eval", "execfile", "run_path", "run_module", "import_module", "__import__")


def parse_end_line(script: Path, project: Path) -> int | None:
    """The line of the first top-level statement of ``script`` after which no statement can reach
    an argument parser, or None when the last one may (or ``script`` cannot be read). The argparse
    probe stops a script there: one that trains (or sleeps) at import time, with its parser in a
    function it never calls or in a project module it does not use, never reaches ``parse_args``,
    and running it to find that out takes as long as its training.

    A statement may reach a parser when it names ``*ArgumentParser`` or a ``parse_*`` call, runs
    code guildlite cannot see (``exec``, ``import_module``, ...), imports a project module that
    may (or a package that is neither standard nor a known quiet library), or names something
    bound by such a statement (a function whose body may parse, ``args = get_args()``): followed
    to a fixed point, so order of definition does not matter."""
    try:
        body = ast.parse(script.read_bytes(), filename=str(script)).body
    except (OSError, SyntaxError, ValueError):
        return None
    tainted: set[str] = set()
    may = [False] * len(body)
    changed = True
    while changed:
        changed = False
        for i, stmt in enumerate(body):
            if may[i]:
                continue
            verdict = _may_parse(stmt, tainted, script, project)
            if verdict is None:
                return None  # `from m import *` of a module that may parse: its names are unknown
            if verdict:
                may[i] = changed = True
                tainted |= _bound(stmt)
    last = max((i for i, m in enumerate(may) if m), default=-1)
    return body[last + 1].lineno if last + 1 < len(body) else None


def _may_parse(stmt: ast.stmt, tainted: set[str], script: Path, project: Path) -> bool | None:
    for node in ast.walk(stmt):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            verdict = _import_may_parse(node, script, project)
            if verdict is None or verdict:
                return verdict
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
        if name.endswith("ArgumentParser") or name in _PARSE_CALLS or name in _OTHER_READERS:
            return True
        if isinstance(node, ast.Call) and call_name(node) in _OPAQUE_CALLS:
            return True
        if isinstance(node, ast.Name) and node.id in tainted:
            return True
    return False


def _import_may_parse(node: ast.Import | ast.ImportFrom, script: Path, project: Path) -> bool | None:
    """Whether an import may reach a parser (None: a star import of a project module that may)."""
    root = script.parent
    if isinstance(node, ast.ImportFrom):
        for _ in range(max(node.level - 1, 0)):
            root = root.parent
        items = [(node.module or "", [a.name for a in node.names])]
    else:
        items = [(alias.name, []) for alias in node.names]
    for module, names in items:
        files = _project_module(root, module, names, project)
        if files:
            if any(_scan(f, project) - {"env:environ", "env:package", "sys.argv"} for f in files):
                return None if "*" in names else True
        elif not (isinstance(node, ast.ImportFrom) and node.level):
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in _QUIET_PACKAGES:
                return True  # a package guildlite does not know: it may parse, when imported or used
    return False


def _bound(stmt: ast.stmt) -> set[str]:
    """Every name ``stmt`` may bind (a superset: nested scopes too)."""
    out: set[str] = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
    return out


def configurator_line(src: Path) -> int | None:
    """The line of a hand configurator's first top-level statement that may set globals from the
    command line (an exec of a file, such as nanoGPT's ``exec(open('configurator.py').read())``, or
    ``globals()``, as an inline ``globals()[key] = value`` loop does), or None.

    Only globals assigned before it are flags: nanoGPT's ``iter_num = 0`` (after its exec) is not
    in ``globals()`` when the configurator runs, so passing ``--iter_num=0`` stops the script with
    "Unknown config key" (and the line would reset it anyway). Merely reading ``sys.argv``
    (``debug = "--debug" in sys.argv``) sets nothing; a ``def`` sets nothing until called."""
    try:
        tree = ast.parse(src.read_bytes(), filename=str(src))
    except (OSError, SyntaxError, ValueError):
        return None
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call) and call_name(node) in ("exec", "execfile", "run_path", "globals"):
                return stmt.lineno
    return None
