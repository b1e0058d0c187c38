"""One hook call, guarded: it runs in a thread the caller can give up on, and what it leaves in the
``Run`` must fit in ``run.json``.

A hook is user code: it may hang (a lock, a socket, a busy loop) or leave a tuple-keyed dict in
``run.attrs``. The dispatcher (``_plugins.Dispatcher``) decides when to give up; this module runs
the call, abandons it, and keeps the record saveable.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import os
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ._plugins import Plugin
    from ._run import Run
    from ._runview import Run as RunView

THREAD_PREFIX = "guildlite-hook"  # the name of every thread that runs a hook starts so


class _Abandoned(BaseException):
    """Raised inside an abandoned hook's thread to unwind it (see ``HookCall.abandon``)."""


class HookCall:
    """One hook call in a daemon thread of its own, so that the main thread can wait for it in
    slices (signal handlers run meanwhile) and give up on it; a hook that never returns dies with
    the process. ``done`` is set when the hook returned or raised (``error``, ``traceback``)."""

    def __init__(self, plugin: Plugin, hook_name: str, run: RunView) -> None:
        self.plugin, self.hook, self.run_id = plugin, hook_name, run.id
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.traceback = ""
        self.abandoned = ""  # why the main thread stopped waiting for it
        self.grace_until = 0.0  # until when its plugin's next hook waits for it to return
        self.thread = threading.Thread(
            target=self._main, args=(getattr(plugin, hook_name), run),
            name=f"{THREAD_PREFIX} {plugin.name}.{hook_name}", daemon=True,
        )

    def start(self) -> None:
        self.thread.start()

    def _main(self, fn: Callable[[RunView], Any], run: RunView) -> None:
        try:
            try:
                result = fn(run)
                if inspect.iscoroutine(result) or inspect.isgenerator(result):
                    result.close()  # never started: nothing of the hook ran
                    raise TypeError(f"{self.hook} returned a {type(result).__name__}: hooks are plain functions")
            except BaseException as e:  # anything a hook raises is its failure, GeneratorExit and SystemExit too
                self.error, self.traceback = e, traceback.format_exc()
            finally:
                self.done.set()
        except _Abandoned:  # the unwind request came as the hook returned
            pass

    def abandon(self, why: str, grace: float) -> str:
        """Stop waiting for it (its plugin's next hook waits ``grace`` more seconds for it to return)
        and raise ``_Abandoned`` in its thread, which ends a pure-Python loop at once (a blocking
        call still blocks until it returns). The stack it was at, for output.log."""
        self.abandoned, self.grace_until = why, time.monotonic() + grace
        frame = sys._current_frames().get(self.thread.ident or -1)
        frames = traceback.extract_stack(frame) if frame is not None else []
        mine = [i for i, f in enumerate(frames) if f.filename == __file__ and f.name == "_main"]
        stack = "".join(traceback.format_list(frames[mine[-1] + 1 :] if mine else frames))
        if self.thread.ident is not None and not self.done.is_set():
            import ctypes

            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread.ident), ctypes.py_object(_Abandoned))
        return stack


def exit_if_hooks_hang(code: Any) -> None:
    """End the process at once, with ``code`` (a ``SystemExit`` code), if a hook given up on
    still runs: at a normal exit the interpreter joins non-daemon threads and executor workers
    (threads that hook may have started), which would hang the process. Everything guildlite
    writes is written by then."""
    if not any(t.name.startswith(THREAD_PREFIX) and t.is_alive() for t in threading.enumerate()):
        return
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)


# --- what a hook leaves in the run ---------------------------------------------------------------

_FIELD_ATTR = {"parent": "parent_id", "trials": "trial_ids", "steps": "step_ids"}  # record keys named unlike Run's fields
_CONTAINERS = {"attrs": dict, "flags": dict, "plugins": list}  # fields guildlite itself adds to


def record_fields(run: Run) -> dict[str, tuple[str | None, Any]]:
    """The run's record field by field, as stored (its JSON text) and as a copy: taken before a
    hook, to tell what it changed and to restore what it left unsaveable."""
    out = {}
    for key, value in run.to_record().items():
        try:
            copied = copy.deepcopy(value)
        except Exception:
            copied = None
        out[key] = (_stored(value), copied)
    return out


# The run's identity, location and the owner's fields: guildlite decides them, and what it writes
# and where depends on them (a plugin's ``run.run_dir = Path("/elsewhere")`` would move run.json
# and .guildlite/ out of the runs dir; ``run.status = "completed"`` would skip the launch and leave
# the record ``staged``; a changed ``flags`` or ``gpus`` would make the record claim what the job
# never got). A plugin changing one is restored and that hook is its failure. ``cmd`` stays
# writable: the record stores the command that ran (it is saved after the launch).
READ_ONLY = (
    "id", "run_dir", "op", "opspec", "flags", "status", "exit_code", "created", "started", "stopped",
    "is_batch", "is_trial", "parent_id", "trial_ids", "host", "remote", "op_def", "error",
    "nproc_per_node", "gpus", "pid", "pid_start", "job_pid", "attempts", "batch", "guildlite_version",
    "is_pipeline", "step_ids", "pipeline",
)
_MISSING = object()


def read_only_fields(run: Run) -> dict[str, tuple[type, str | None, Any]]:
    """The read-only fields' types, stored text and copies, taken before a hook."""
    out = {}
    for name in READ_ONLY:
        value = getattr(run, name)
        out[name] = (type(value), _stored(value), copy.deepcopy(value))
    return out


def restore_read_only(run: Run, before: dict[str, tuple[type, str | None, Any]]) -> list[str]:
    """Put back every read-only field a hook changed (replaced, mutated in place or deleted); the
    names of those fields, [] when it changed none."""
    changed = []
    for name, (kind, old_text, old) in before.items():
        value = getattr(run, name, _MISSING)
        if type(value) is kind and old_text is not None and _stored(value) == old_text:
            continue
        setattr(run, name, copy.deepcopy(old))
        changed.append(name)
    return changed


def restore_unsaveable(run: Run, before: dict[str, tuple[str | None, Any]]) -> list[str]:
    """Undo what a hook left in the run that ``run.json`` cannot hold: an ``attrs`` key that is
    not JSON (a tuple key, a set, an object; paths are fine) is dropped, or its value from before
    the hook restored; any other field the hook changed to something not JSON, or that the record
    schema refuses (``cmd`` not a list of strings), is restored, and ``attrs``, ``flags`` and
    ``plugins`` stay a dict, a dict and a list. What was wrong, one line
    each; [] when the record is whole. (Fields the hook left alone are not judged: a batch's
    flags hold guildlite's own ``BatchDistribution``, stored as text.)"""
    record = run.to_record()
    problems = []
    for key, value in record.items():
        old_text, old = before.get(key, (None, None))
        if key == "attrs" and isinstance(value, dict):
            try:
                problems += _clean_attrs(value, old if isinstance(old, dict) else {})
                continue
            except Exception:  # a key whose hash or comparison raises: back to the attrs before the hook
                pass
        kind = _CONTAINERS.get(key, object)
        if isinstance(value, kind) and old_text is not None and _stored(value) == old_text:
            continue
        if not isinstance(value, kind):
            problems.append(f"run.{key} not a {kind.__name__}: restored")
        else:
            why = _json_error(value)
            if why is not None:
                problems.append(f"run.{key} not JSON-serialisable ({why}): restored")
            elif (wrong := _schema_error(key, value)) is not None:
                problems.append(f"run.{key} {wrong}: restored")
            else:
                continue
        attr = _FIELD_ATTR.get(key, key)
        if attr in {f.name for f in dataclasses.fields(run)}:
            setattr(run, attr, old if old is not None or kind is object else kind())
        else:  # an attribute the hook added
            delattr(run, attr)
    return problems


def _clean_attrs(attrs: dict[Any, Any], before: dict[str, Any]) -> list[str]:
    """Drop (or restore to their value before the hook) the keys of ``attrs`` that JSON cannot hold."""
    problems = []
    for k in list(attrs):
        why = _json_error({k: attrs[k]})
        if why is not None:
            why = f"not JSON-serialisable ({why})"
        elif k not in before or _stored(attrs[k]) != _stored(before[k]):
            why = _schema_error("attrs", {k: attrs[k]})
        if why is None:
            continue
        del attrs[k]
        if isinstance(k, str) and k in before:
            attrs[k] = before[k]
        problems.append(f"attrs[{_brief(k)}] {why}: " + ("restored" if k in attrs else "not saved"))
    return problems


def _schema_error(key: str, value: Any) -> str | None:
    """What the record schema (``_record.check``, which the store applies before every write) says
    of ``value`` as the record's field ``key``; None when it reads back. A hook's ``run.cmd = 42``
    or ``run.attrs["sourcecode"] = 5`` is valid JSON that the store would refuse to write."""
    from ._record import Problem, check

    text = _json({"op": "", key: value})
    try:
        check(json.loads(text), text)
    except Problem as e:
        return str(e).replace(f"field {key!r} ", "", 1)
    return None


def _stored(value: Any) -> str | None:
    """The value's text as the run store writes it (anything else as its ``str``); None if even
    that fails (a key that is not a string, a cycle, a deep nest)."""
    try:
        return json.dumps(value, default=str)
    except Exception:
        return None


def _json(value: Any) -> str:
    """The value as JSON as ``run.json`` stores it (paths as strings); raises for anything else."""

    def path(o: Any) -> Any:
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")  # json's own words

    return json.dumps(value, default=path)


def _json_error(value: Any) -> str | None:
    try:
        _json(value)
        return None
    except Exception as e:  # TypeError, ValueError (a cycle), RecursionError (a deep nest)
        return f"{type(e).__name__}: {text(e)}"


def text(obj: object) -> str:
    """``str(obj)``, even for an object whose ``__str__`` raises."""
    try:
        return str(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


def _brief(obj: object) -> str:
    try:
        out = repr(obj)
    except Exception:
        out = f"<{type(obj).__name__}>"
    return out if len(out) <= 60 else f"{out[:57]}..."
