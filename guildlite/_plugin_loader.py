"""Loading plugins: the ordered list of a run's plugins, each imported, instantiated and validated.

Declared plugins come from the guildfile (``class:`` import paths, resolved in the project dir
first) and from installed distributions (entry-point group ``guildlite.plugins``). Validation
follows pluggy's rule, at load time rather than at the first call: every ``on_*`` method must be a
hook (``_plugins.HOOKS``) and every hook is ``def on_...(self, run)``. Any problem is a
GuildfileError (exit 2) naming the entry and the method, raised while planning: nothing is staged.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ._builtins import builtin_plugins
from ._errors import GuildfileError
from ._guildfile import PluginSpec
from ._plugins import HOOKS, Plugin

if TYPE_CHECKING:
    from ._guildfile import Guildfile, OpDef

ENTRY_POINT_GROUP = "guildlite.plugins"


def build_plugins(guildfile: Guildfile, op: OpDef, plugin_names: Sequence[str] = ()) -> list[Plugin]:
    """Every plugin of a run of ``op``, validated, in declaration order (the order of priority
    ties): the built-ins (for the op's ``flags-dest``), the guildfile's global plugins, the op's,
    then the entry points named by ``--plugin``. The dispatcher orders them by priority."""
    builtins = builtin_plugins(op.flags_dest)
    for plugin in builtins:
        check_plugin(plugin, f"built-in plugin {type(plugin).__name__}")
    specs = [*guildfile.plugins, *op.plugins, *(PluginSpec(where=f"--plugin {n}", name=n) for n in plugin_names)]
    return builtins + load_plugins(specs, guildfile.dir)


def load_plugins(specs: Iterable[PluginSpec], project_dir: Path) -> list[Plugin]:
    """Import, instantiate and validate (``check_plugin``) declared plugins; any problem is a
    GuildfileError naming the entry."""
    out = []
    for spec in specs:
        if spec.cls:
            cls, what = _import_class(spec.cls, spec.where, project_dir), spec.cls
        else:
            cls, value = _entry_point_class(str(spec.name), spec.where)
            what = f"{spec.name} (entry point {ENTRY_POINT_GROUP}: {value})"
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise GuildfileError(f"{spec.where}: {spec.cls or spec.name} is not a subclass of guildlite.Plugin")
        try:
            plugin = cls(**dict(spec.args))
        except TypeError as e:
            raise GuildfileError(f"{spec.where}: bad args for {cls.__name__}: {e}") from None
        except Exception as e:  # the plugin's own constructor rejected its args
            raise GuildfileError(f"{spec.where}: {cls.__name__}(...) failed: {type(e).__name__}: {e}") from None
        check_plugin(plugin, f"{spec.where}: plugin {what}")
        if spec.priority is not None:
            plugin._guildlite_declared_priority = spec.priority  # type: ignore[attr-defined]
        if spec.hook_timeout is not None:
            plugin._guildlite_hook_timeout = spec.hook_timeout  # type: ignore[attr-defined]
        out.append(plugin)
    return out


def _import_class(path: str, where: str, project_dir: Path) -> Any:
    mod_name, sep, attr = path.partition(":")
    if not sep:
        mod_name, _, attr = path.rpartition(".")
    if not mod_name or not attr or not all(p.isidentifier() for p in (*mod_name.split("."), *attr.split("."))):
        raise GuildfileError(f"{where}: class {path!r} is not an import path like 'module:Class'")
    try:
        module = _import_module(mod_name, project_dir)
    except ModuleNotFoundError as e:
        raise GuildfileError(f"{where}: cannot import module '{mod_name}': {e}") from None
    except Exception as e:
        raise GuildfileError(f"{where}: importing '{mod_name}' failed: {type(e).__name__}: {e}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise GuildfileError(f"{where}: module '{mod_name}' has no class '{attr}'")
        obj = getattr(obj, part)
    return obj


def _import_module(mod_name: str, project_dir: Path) -> ModuleType:
    """Import ``mod_name`` from the project dir if it is there, else as installed.

    The project dir joins ``sys.path`` at the end, never the front: a project file named like a
    stdlib module (``ctypes.py``, ``trace.py``) must not replace that module for guildlite and
    every later import. The declared module itself still comes from the project, found by its
    file; its top-level package is registered under its own name unless that name belongs to
    another module (stdlib, installed, already imported), and then under a private one, so its
    relative imports and its own absolute imports of project-only modules keep working.
    """
    root = str(project_dir)
    if root not in sys.path:
        sys.path.append(root)
    top, _, sub = mod_name.partition(".")
    spec = importlib.machinery.PathFinder.find_spec(top, [root])
    if spec is None:
        return importlib.import_module(mod_name)
    # The private name is per project dir: two projects' trace.py must not share one module.
    tag = hashlib.sha256(root.encode()).hexdigest()[:8]
    name = top if _free_name(top, project_dir) else f"_guildlite_project_{tag}_{top}"
    if name not in sys.modules:
        spec = _renamed(spec, name)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except BaseException:
            del sys.modules[name]
            raise
    return importlib.import_module(f"{name}.{sub}" if sub else name)


def _free_name(top: str, project_dir: Path) -> bool:
    """Whether ``top`` names no module but the project's: not stdlib, installed, or imported."""
    if top in getattr(sys, "stdlib_module_names", ()) or top in sys.builtin_module_names:
        return False
    loaded = sys.modules.get(top)
    if loaded is not None:
        return _from_project(loaded, project_dir)
    elsewhere = [p for p in sys.path if Path(p or ".").resolve() != project_dir.resolve()]
    return importlib.machinery.PathFinder.find_spec(top, elsewhere) is None


def _from_project(module: ModuleType, project_dir: Path) -> bool:
    where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), None)
    return where is not None and Path(where).resolve().is_relative_to(project_dir.resolve())


def _renamed(spec: ModuleSpec, name: str) -> ModuleSpec:
    """``spec`` (a module or package found in the project) as module ``name``."""
    if spec.name == name:
        return spec
    # A plain list: a namespace package's own path object would look itself up again by its old name.
    where = None if spec.submodule_search_locations is None else list(spec.submodule_search_locations)
    if spec.origin is None:  # a namespace package: a directory without __init__.py
        ns = importlib.machinery.ModuleSpec(name, spec.loader, is_package=True)
        ns.submodule_search_locations = where
        return ns
    renamed = importlib.util.spec_from_file_location(name, spec.origin, submodule_search_locations=where)
    assert renamed is not None  # a file the path finder just found
    return renamed


def _entry_point_class(name: str, where: str) -> tuple[Any, str]:
    """The class an installed plugin publishes, and its entry point's ``module:Class``."""
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in eps:
        avail = ", ".join(sorted(eps)) or "none installed"
        raise GuildfileError(f"{where}: no plugin named '{name}' in entry-point group {ENTRY_POINT_GROUP} ({avail})")
    try:
        return eps[name].load(), eps[name].value
    except Exception as e:
        raise GuildfileError(f"{where}: loading plugin '{name}' failed: {type(e).__name__}: {e}") from None


# --- validation ----------------------------------------------------------------------------------

_RULE = "takes the one Run object (new information arrives as Run attributes, never as new arguments)"
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def check_plugin(plugin: Plugin, who: str) -> None:
    """GuildfileError, prefixed with ``who`` (the plugin and where it was declared), unless every
    ``on_*`` method of ``plugin`` is a hook with the hook signature ``(self, run)``.

    Extra parameters are refused even with a default: guildlite never passes one, so a hook that
    declares one was written for an API that does not exist. ``*args``/``**kwargs`` (a generic
    decorator's wrapper) are accepted: they take the run.
    """
    cls = type(plugin)
    for name in sorted({n for k in cls.__mro__ for n in vars(k) if n.startswith("on_")}):
        owner = next(k for k in cls.__mro__ if name in vars(k))
        if owner is Plugin:
            continue  # the base class's no-op hooks
        problem = _check_method(plugin, name, vars(owner)[name])
        if problem:
            raise GuildfileError(f"{who}: {owner.__name__}.{name}{problem}")
    for name in sorted(n for n in vars(plugin) if n in HOOKS):  # vars(): plugin is an ordinary object
        raise GuildfileError(f"{who}: {cls.__name__}.{name} is set on the instance: a hook is a method of "
                             f"the class, `def {name}(self, run)`")


def _check_method(plugin: Plugin, name: str, found: Any) -> str | None:
    """What is wrong with ``found``, the class attribute ``name`` of ``plugin``'s class (said after the
    method's name: `` is not a hook...`` or ``(its signature) takes no run...``); None if nothing."""
    method = isinstance(found, (staticmethod, classmethod, functools.partialmethod)) or (
        callable(found) and not isinstance(found, type))
    if name not in HOOKS:
        if not method:
            return None  # data such as `on_gpu = True`: not a method
        close = difflib.get_close_matches(name, HOOKS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return (f" is not a hook{hint}: the hooks are {', '.join(HOOKS)}; a helper method's name must not "
                "start with 'on_'")
    if not method:
        return f" is a {type(found).__name__} object, not a method: a hook is `def {name}(self, run)`"
    try:
        fn = getattr(plugin, name)
    except Exception as e:
        return f" cannot be read: {type(e).__name__}: {e}"
    kind = _function_kind(fn)
    if kind:
        return f" is {kind}: a hook is a plain function, `def {name}(self, run)` (guildlite never awaits or iterates it)"
    try:
        sig = inspect.signature(fn)
    except Exception:  # a builtin without one, a broken __signature__: its first call will tell
        return None
    why = _signature_problem(sig)
    if why is None:
        return None
    shown = sig
    if isinstance(found, (staticmethod, classmethod)):
        why += f" (a {type(found).__name__}: {'it gets no self' if isinstance(found, staticmethod) else 'cls is bound'})"
        shown = inspect.signature(found.__func__)
    elif inspect.isfunction(found):
        shown = inspect.signature(found)
    return f"{shown} {why}: every hook is `def {name}(self, run)` and {_RULE}"


def _function_kind(fn: Any) -> str | None:
    """``an async def`` or ``a generator function`` (whose body a plain call never runs), else None."""
    try:
        inner = inspect.unwrap(fn)
    except ValueError:  # a __wrapped__ cycle
        inner = fn
    for f in (fn, inner):
        if inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f):
            return "an async def"
        if inspect.isgeneratorfunction(f):
            return "a generator function"
    return None


def _signature_problem(sig: inspect.Signature) -> str | None:
    """Why a bound hook's signature cannot be called as ``hook(run)`` alone; None if it can."""
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in _POSITIONAL]
    keyword = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    takes_any = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    if not positional and not takes_any:
        return f"takes run by keyword only ({keyword[0].name!r})" if keyword else "takes no run"
    extra = positional[1:] + keyword
    if extra:
        names = ", ".join(repr(p.name) for p in extra)
        default = " (even with a default: guildlite never passes it)" if all(
            p.default is not inspect.Parameter.empty for p in extra) else ""
        return f"has extra parameter{'s' if len(extra) > 1 else ''} {names}{default}"
    return None
