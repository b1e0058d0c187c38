"""The plugin API: base class and its hooks, per-method priority, ordered dispatch.

Loading declared plugins (import, validation, the ordered list) is ``_plugin_loader``; the ``Run``
hooks see is ``_runview``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

if TYPE_CHECKING:
    from ._hookcall import HookCall
    from ._run import Run as StoredRun
    from ._runview import Run

DEFAULT_PRIORITY = 100

F = TypeVar("F", bound=Callable[..., Any])


class StopRun(Exception):
    """Raise from ``on_run_staged`` or ``on_run_begin`` to veto the run with a reason, or from
    ``on_run_progress`` to stop it (gracefully, as ``guildlite stop`` does: ``terminated``; with
    ``pruned=True``: ``pruned``, judged not worth finishing, which a batch counts as done).
    ``pruned`` applies to ``on_run_progress`` only: a veto before the start is a veto."""

    def __init__(self, reason: str, *, pruned: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pruned = pruned


def hook(priority: int) -> Callable[[F], F]:
    """Set the priority of one hook method (lower runs first), overriding the class's ``priority``."""

    def mark(fn: F) -> F:
        fn._guildlite_priority = priority  # type: ignore[attr-defined]
        return fn

    return mark


class Plugin:
    """Base class for plugins: override any of the hooks; each receives the one ``Run``.

    ``priority`` orders plugins (lower first, default 100); ``@hook(priority=N)`` sets it for one
    method. Hooks run in the guildlite process, once per run, never once per rank.
    """

    priority: int = DEFAULT_PRIORITY

    @property
    def name(self) -> str:
        """The name used in traces and as the key for ``run.attrs``."""
        return type(self).__name__

    def on_run_staged(self, run: Run) -> None:
        """After the run dir is populated (source copied, run.json written), before launch."""

    def on_run_begin(self, run: Run) -> None:
        """Just before the job starts; raise StopRun to veto."""

    def on_run_progress(self, run: Run) -> None:
        """While the job runs, when new scalars arrived (``run.new_scalars``; ``run.scalars``: the
        latest value of each key), at most every ``progress-interval`` seconds; raise StopRun to
        stop the run."""

    def on_run_end(self, run: Run) -> None:
        """After the job ends, on every exit path, with ``status`` and ``exit_code`` set."""


# The hooks are Plugin's ``on_*`` methods, in call order: this is the one list (loading validates
# plugins against it, the dispatcher refuses any other name). A new hook is one more method above,
# taking the one ``Run`` like the others: new information reaches hooks as ``Run`` attributes.
HOOKS = tuple(name for name in vars(Plugin) if name.startswith("on_"))


def hook_priority(plugin: Plugin, hook_name: str) -> int:
    """The priority of ``plugin``'s ``hook_name``: the guildfile's, else the method's, else the class's."""
    declared = getattr(plugin, "_guildlite_declared_priority", None)
    if declared is not None:
        return int(declared)
    method = getattr(type(plugin), hook_name)
    return int(getattr(method, "_guildlite_priority", plugin.priority))


def implements(plugin: Plugin, hook_name: str) -> bool:
    """Whether the plugin overrides ``hook_name`` (no-op hooks are neither called nor traced)."""
    return getattr(type(plugin), hook_name) is not getattr(Plugin, hook_name)


# --- dispatch ------------------------------------------------------------------------------------

DEFAULT_HOOK_TIMEOUT = 300.0  # seconds a hook call may take (guildfile ``hook-timeout``)
STOPPED_END_SECONDS = 30.0  # after a stop, the most an on_run_end call may take
_POLL = 0.05  # how often the waiting main thread looks at the hook, the clock and stop requests
# How long after giving up on a hook its plugin's next hook waits for it to return: a timed-out
# one a moment (a pure-Python loop unwinds); one a stop interrupted a little longer, so that a
# merely slow hook (a network call) still gets its plugin's on_run_end.
_UNWIND = 0.25
STOP_GRACE = 3.0


class HookFailed(Exception):
    """A staged/begin hook vetoed, raised, timed out or was interrupted: the run must not launch;
    or an ``on_run_progress`` hook stopped the run.

    ``status`` is the run's: ``error``, or ``terminated`` when a stop interrupted the hook, or
    ``pruned`` when an ``on_run_progress`` hook's ``StopRun`` said so.
    """

    def __init__(self, plugin: str, hook_name: str, message: str, veto: bool, status: str = "error") -> None:
        super().__init__(message)
        self.info = {"plugin": plugin, "hook": hook_name, "message": message, "veto": veto}
        self.status = status


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """How one hook call went: ``error`` (None: fine), a veto, interrupted by a stop, and whether
    the error is guildlite's wording (a timeout, a stop) rather than the plugin's."""

    error: str | None
    veto: bool = False
    stopped: bool = False
    ours: bool = False
    pruned: bool = False


def hook_timeout(plugin: Plugin, default: float) -> float:
    """The seconds one call of ``plugin``'s hooks may take: its guildfile entry's, else ``default``."""
    declared = getattr(plugin, "_guildlite_hook_timeout", None)
    return float(declared) if declared is not None else default


class Dispatcher:
    """Calls one hook on every plugin in order and traces each call into ``run.plugins``.

    Order, the same for every hook: ascending priority, ties in declaration order (built-ins,
    then global plugins, then op plugins, then entry-point plugins).

    Each call runs in its own daemon thread while the main thread waits in short slices, so a
    hook is bounded by its timeout and a stop (``interrupt``, from a signal handler in the main
    thread, or the run's stop request) takes effect while a hook hangs. Calls still run one at a
    time; the one exception is a hook given up on: its thread may go on in the background, and
    that plugin is not called again while it does (one plugin's hooks never overlap).
    """

    def __init__(
        self, plugins: Sequence[Plugin], log: Callable[[str], None] | None = None,
        timeout: float = DEFAULT_HOOK_TIMEOUT,
    ) -> None:
        self.plugins = list(plugins)
        self._log = log or (lambda msg: print(msg, file=sys.stderr))
        self.timeout = timeout
        self._stops: list[tuple[float, str]] = []  # (monotonic time, what) of every interrupt
        self._hung: dict[int, HookCall] = {}  # id(plugin) -> its abandoned call

    def interrupt(self, why: str) -> None:
        """A stop (``why``: the signal's name), safe to call from a signal handler.

        A staged/begin hook running now or later is given up on at once. An on_run_end call gets at
        most STOPPED_END_SECONDS from the first stop (or from its start, after it); a further stop
        gives up on the one running.
        """
        self._stops.append((time.monotonic(), why))

    def stopping(self, run: StoredRun) -> bool:
        """Whether a stop (a signal, or the run's stop request) has come."""
        return self._stop_reason(run) is not None

    def ordered(self, hook_name: str) -> list[Plugin]:
        chosen = [(hook_priority(p, hook_name), i, p) for i, p in enumerate(self.plugins) if implements(p, hook_name)]
        return [p for _, _, p in sorted(chosen, key=lambda t: (t[0], t[1]))]

    def call(self, hook_name: str, run: StoredRun) -> None:
        """Run ``hook_name`` for every plugin.

        In staged/begin the first veto, exception, timeout or stop ends the chain and raises
        HookFailed. In ``on_run_end`` every plugin runs; failures are traced and reported, never raised.
        In ``on_run_progress`` only a veto (``StopRun``: stop the run) is raised; other failures are
        traced, and reported when they differ from that plugin's last one. Each hook gets ``run``'s
        view (``guildlite.Run``); the trace goes into ``run`` itself (``on_run_progress``: one entry
        per plugin, its ``calls`` and ``failed`` calls counted, ``seconds`` summed, ``error`` the
        last failure's, as it is called every second).
        """
        if hook_name not in HOOKS:
            raise ValueError(f"no hook {hook_name!r}: hooks are {', '.join(HOOKS)}")
        progress = hook_name == "on_run_progress"
        for plugin in self.ordered(hook_name):
            started = time.time()
            t0 = time.perf_counter()
            out = self._call(plugin, hook_name, run)
            seconds = round(time.perf_counter() - t0, 6)
            entry: dict[str, Any] = {
                "plugin": plugin.name,
                "hook": hook_name,
                "priority": hook_priority(plugin, hook_name),
                "start": started,
                "seconds": seconds,
                "error": out.error,
            }
            last = _progress_entry(run, plugin.name) if progress else None
            if last is None:
                run.plugins.append({**entry, "calls": 1, "failed": int(out.error is not None)} if progress else entry)
            else:  # the error stays the last failure's, once a later call goes well too
                repeated = out.error is not None and out.error == last.get("error")
                last.update(calls=int(last.get("calls") or 1) + 1,
                            seconds=round(float(last.get("seconds") or 0) + seconds, 6))
                if out.error is not None:
                    last.update(error=out.error, failed=int(last.get("failed") or 0) + 1)
                if repeated and not out.veto:
                    continue  # said already
            if out.error is None:
                continue
            what = "vetoed the run" if out.veto else "failed"
            if progress and out.veto:
                what = "pruned the run" if out.pruned else "stopped the run"
            self._log(f"guildlite: plugin {plugin.name}.{hook_name} {what}: {out.error}")
            if progress and not out.veto:
                continue
            if hook_name != "on_run_end":
                # The run ends here, before any job could write its output.log: say why in it.
                _append_log(run, f"guildlite: plugin {plugin.name}.{hook_name} {what}: {out.error}")
                # The plugin's own words as they are; guildlite's say which plugin and hook.
                msg = f"plugin {plugin.name} {hook_name} {out.error}" if out.ours else out.error
                status = "terminated" if out.stopped else "pruned" if progress and out.pruned else "error"
                raise HookFailed(plugin.name, hook_name, msg, out.veto, status)

    def _call(self, plugin: Plugin, hook_name: str, run: StoredRun) -> _Outcome:
        hung = self._hung.get(id(plugin))
        if hung is not None and not self._returned(hung):
            return _Outcome(f"not called: its {hung.hook} of run {hung.run_id} {hung.abandoned} and has not returned", ours=True)
        self._hung.pop(id(plugin), None)
        if hook_name != "on_run_end" and (why := self._stop_reason(run)):
            return _Outcome(f"not called: stopped by {why}", stopped=True, ours=True)
        # Here, not at the top: a process that calls no hook (a listing, `--help`) imports neither,
        # and cli.main() waits for hung hooks only where _hookcall was imported.
        from ._hookcall import HookCall, read_only_fields, record_fields, restore_read_only, restore_unsaveable, text
        from ._runview import view_of

        before, fixed = record_fields(run), read_only_fields(run)
        call = HookCall(plugin, hook_name, view_of(run))
        call.start()
        try:
            gave_up = self._wait(call, hook_name, run)
        except BaseException:  # a KeyboardInterrupt where the caller installed no handler
            self._hung[id(plugin)] = call
            call.abandon("was interrupted", _UNWIND)
            raise
        if gave_up is not None:
            self._hung[id(plugin)] = call
            restore_read_only(run, fixed)  # what it changed so far (its thread may go on: see README)
            stack = call.abandon(gave_up.error or "", STOP_GRACE if gave_up.stopped else _UNWIND)
            _append_log(run, f"guildlite: plugin {plugin.name}.{hook_name} {gave_up.error}; it was at:\n{stack}")
            return gave_up
        changed = restore_read_only(run, fixed)
        bad = restore_unsaveable(run, before)
        if changed:  # said in output.log too: a veto or an exception below is what run.plugins shows
            _append_log(run, f"guildlite: plugin {plugin.name}.{hook_name} {_read_only_message(changed)}")
        if isinstance(call.error, StopRun):
            return _Outcome(text(call.error.reason), veto=True, pruned=getattr(call.error, "pruned", False) is True)
        if call.error is not None:  # a plugin's sys.exit() is its failure, not guildlite's exit
            _append_log(run, f"guildlite: plugin {plugin.name}.{hook_name} raised:\n{call.traceback}")
            return _Outcome(f"{type(call.error).__name__}: {text(call.error)}")
        problems = ([_read_only_message(changed)] if changed else []) + (["left " + "; ".join(bad)] if bad else [])
        return _Outcome("; ".join(problems), ours=True) if problems else _Outcome(None)

    def _returned(self, hung: HookCall) -> bool:
        """Whether a plugin's abandoned call has returned, waiting for it until ``_UNWIND`` (timed
        out) or ``STOP_GRACE`` (interrupted) after it was given up on. A further stop does not cut
        this short: a plugin whose hook returns in time gets its on_run_end, even after 2x Ctrl-C."""
        while not hung.done.is_set():
            if time.monotonic() >= hung.grace_until:
                return False
            hung.done.wait(_POLL)
        return True

    def _stop_reason(self, run: StoredRun) -> str | None:
        if self._stops:
            return self._stops[-1][1]
        return "guildlite stop" if run.paths.stop_request.exists() else None

    def _wait(self, call: HookCall, hook_name: str, run: StoredRun) -> _Outcome | None:
        """Wait for ``call``: None when it returned, else why we gave up on it."""
        limit = hook_timeout(call.plugin, self.timeout)
        start = time.monotonic()
        deadline, late = start + limit, _Outcome(f"timed out after {limit:g} s", ours=True)
        seen = len(self._stops)
        ending = hook_name == "on_run_end"
        if ending and seen and STOPPED_END_SECONDS < limit:
            deadline, late = start + STOPPED_END_SECONDS, _Outcome(
                f"timed out after {STOPPED_END_SECONDS:g} s (the bound after a stop)", ours=True)
        # The wait is cut into short slices: a signal's handler runs during one (it only records
        # the stop), and each slice looks at the stops, the stop request and the clock.
        while not call.done.wait(_POLL):
            if not ending and (why := self._stop_reason(run)):
                return _Outcome(f"interrupted by {why}", stopped=True, ours=True)
            if ending and len(self._stops) > seen:
                if len(self._stops) > 1:  # a second stop: the user insists
                    return _Outcome(f"interrupted by {self._stops[-1][1]}", stopped=True, ours=True)
                first, why = self._stops[0]
                if first + STOPPED_END_SECONDS < deadline:
                    deadline = first + STOPPED_END_SECONDS
                    late = _Outcome(f"did not end within {STOPPED_END_SECONDS:g} s of {why}", stopped=True, ours=True)
            if time.monotonic() >= deadline:
                return late
        return None


def _progress_entry(run: StoredRun, plugin: str) -> dict[str, Any] | None:
    """``plugin``'s trace entry of ``on_run_progress`` in the current attempt, if it has one."""
    for entry in reversed(run.plugins):
        if entry.get("hook") == "on_run_begin":
            return None  # an earlier attempt's, before this one began
        if entry.get("hook") == "on_run_progress" and entry.get("plugin") == plugin:
            return entry
    return None


def _read_only_message(fields: list[str]) -> str:
    names = ", ".join(f"run.{f}" for f in fields)
    return f"changed {names} (read-only for plugins): restored"


def _append_log(run: StoredRun, text: str) -> None:
    # Every line prefixed: a traceback's last line (`KeyError: 5`) must not read as a scalar.
    try:
        with open(run.paths.output_log, "a", encoding="utf-8") as f:
            f.writelines(f"[guildlite] {line}\n" for line in text.rstrip("\n").splitlines())
    except OSError:
        pass
