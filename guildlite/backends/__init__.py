"""Where runs run: the ``Backend`` interface, and backends found by name through entry points.

A backend is one class registered in the entry-point group ``guildlite.backends`` (the built-ins
too), named by the guildfile's or the op's ``backend:`` or ``--backend``.
It owns everything about its engine, and nothing outside its module or package names it:

- its guildfile section (the key named like the backend, at the top level and per op), which it
  validates itself (``parse_section``) into a typed options dataclass (``make_options``);
- the options it adds to ``guildlite run`` (``cli_options``) and its lines for ``check``;
- the operations every run needs: plan its slots, what a run waits for before it may start
  (``queue_up``: a ``Ticket``, for a machine-wide queue; an engine with a queue of its own needs
  none), ``submit`` a run (returning the ``Launched`` job), the state of a job it runs away from
  the owning process (``job_state``), and ``cancel``.

The lifecycle, the store, the status table and the supervisor speak to backends only through this
interface; a record names its backend (``remote.backend``) and is routed by that name.

How a run's end gets recorded, on every backend: by the guildlite process that owns the run (the
foreground ``guildlite run``, or with ``--detach`` the backend-neutral supervisor it hands the run
to, ``_supervisor``), when the ``Launched`` job reports its exit. A backend whose job can outlive
that owner (it runs on other machines) also records the job's end where it runs, through the run
store, and fires ``on_run_end`` there with ``_supervisor.fire_end`` when no owner claims the end
(``Launched.end_hooks_ran`` then tells the owner so).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Mapping, Protocol, Sequence

from .._errors import GuildliteError

if TYPE_CHECKING:
    from .._guildfile import Guildfile, OpDef
    from .._run import Run
    from .._slots import Slot

ENTRY_POINT_GROUP = "guildlite.backends"


class OptionError(ValueError):
    """A backend option that is not valid: ``key`` (None: the section as a whole) and why."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class CliOption:
    """An option a backend adds to ``guildlite run``: ``--{flag}`` sets option ``key``."""

    flag: str
    key: str
    type: type
    help: str


@dataclass(frozen=True)
class CheckLine:
    """One line of ``guildlite check`` from a backend; ``ok`` False: something its runs need is
    missing (``guildlite check`` fails when the project's runs use this backend)."""

    text: str
    ok: bool = True


@dataclass(frozen=True)
class NoOptions:
    """The options of a backend that has none."""


@dataclass(frozen=True)
class JobState:
    """Where a backend's job stands: ``queued``, ``running`` or ``ended`` (``how``: ``cancelled``,
    ``failed``, ``timeout`` or ``gone``), ``detail`` saying so in words."""

    phase: Literal["queued", "running", "ended"]
    how: Literal["cancelled", "failed", "timeout", "gone"] | None = None
    detail: str = ""


class Launched(Protocol):
    """A started job, as ``Backend.submit`` returns it: the scheduler and the lifecycle need no more.

    ``start`` (called by ``submit``), ``send(sig)`` (a graceful stop: Ctrl-C, SIGTERM, ``guildlite
    stop``), ``kill``, ``pid`` (a local process's, else None), ``signalled`` (the signal it was sent,
    which makes its end ``terminated``), ``status_after_start`` (``running``, or ``pending`` when it
    waits in a queue), ``error_message`` (why it failed, when the engine knows better than an exit
    code) and ``end_hooks_ran`` (``on_run_end`` already fired where the job ran, its owner gone).
    Its exit is reported once, from any thread, to the ``on_exit`` given to ``submit``.
    """

    status_after_start: str
    error_message: str | None
    signalled: int | None
    end_hooks_ran: bool

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...

    def send(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class Ticket(Protocol):
    """A run's place in a queue before its job may start (``Backend.queue_up``), polled by the
    owning process each tick, never blocking: ``try_take`` returns the slot to start on (with the
    GPUs granted) or None while it waits, ``reason`` why it waits ("waiting for GPU 1, held by run
    X of user Y"), ``position`` its place (1: next), and ``cancel`` leaves the queue, or gives back
    what was granted and never reached a job."""

    def try_take(self) -> Slot | None: ...

    def reason(self) -> str: ...

    def position(self) -> int: ...

    def cancel(self) -> None: ...


class Backend(ABC):
    """One engine that runs jobs. Subclasses set ``name`` (their entry point's), ``options_type``
    (a frozen dataclass whose fields are the section's keys, ``-`` written ``_``) and may set
    ``cli_options``; they implement ``submit`` and, for jobs that run away from the owning guildlite
    process, ``job_state`` and ``cancel``."""

    name: ClassVar[str]
    options_type: ClassVar[type] = NoOptions
    cli_options: ClassVar[tuple[CliOption, ...]] = ()
    # Whether its runs wait in this machine's queue (``queue_up``), where ``--max-concurrent``
    # caps a user's runs at once; an engine with a queue of its own (a cluster's) caps them there.
    machine_queue: ClassVar[bool] = False

    def __init__(self, options: Any) -> None:
        self.options = options

    # --- options ------------------------------------------------------------------------------------

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The keys of this backend's guildfile section."""
        return tuple(f.name.replace("_", "-") for f in dataclasses.fields(cls.options_type))

    @classmethod
    def parse_section(cls, raw: Mapping[Any, Any], where: str) -> dict[str, Any]:
        """One layer of options (a guildfile section, or the command line's), each key checked by
        ``check_value``; OptionError naming the first bad key, its message starting with ``where``
        (e.g. "the guildfile: NAME") or naming it."""
        keys = cls.keys()
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in keys:
                import difflib

                hint = difflib.get_close_matches(str(key), keys, n=1)
                tip = f"did you mean '{hint[0]}'?" if hint else f"valid keys: {', '.join(keys) or 'none'}"
                raise OptionError(str(key), f"unknown key '{key}' in {where} ({tip})")
            try:
                out[str(key)] = cls.check_value(str(key), value)
            except ValueError as e:
                raise OptionError(str(key), f"{where} '{key}': {e}") from None
        return out

    @classmethod
    def check_value(cls, key: str, value: Any) -> Any:
        """One option's value, normalised; ValueError saying what is expected."""
        return value

    @classmethod
    def make_options(cls, *layers: Mapping[str, Any] | None) -> Any:
        """The typed options: the dataclass's defaults, then each layer (guildfile, op, command
        line) winning over the one before; layers hold values checked by ``parse_section``."""
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update({k.replace("-", "_"): v for k, v in (layer or {}).items() if v is not None})
        return cls.options_type(**merged)

    def check_op(self, op: OpDef, nproc: int) -> None:  # noqa: B027 (most backends can run any op)
        """Refuse (GuildliteError, exit 2) an op these options cannot run; called while planning."""

    def check(self) -> Sequence[str | CheckLine]:
        """Lines for ``guildlite check``: what this backend needs here and whether it is there (a
        ``CheckLine`` with ``ok=False``: missing; a plain string is information)."""
        return []

    # --- running ------------------------------------------------------------------------------------

    def plan_slots(self, op: OpDef, parallel: int | None, n_trials: int, gpus: str | None) -> list[Slot]:
        """Where a batch's trials run at once (a single run: one slot); default ``parallel`` or 1,
        each slot with its share of the GPUs when the op asks for some."""
        from .._slots import make_slots, visible_gpus

        n = 1 if parallel is None else parallel
        return make_slots(n, op.gpus_per_trial, visible_gpus(gpus) if op.gpus_per_trial else [])

    def queue_up(self, run: Run, slot: Slot, max_concurrent: int | None) -> Ticket | None:
        """What ``run`` waits for before its job may start on ``slot`` (its GPUs, a run token of the
        user's ``max_concurrent``): a ticket its owner polls, or None to start at once (the default:
        the engine queues the job itself)."""
        return None

    @abstractmethod
    def submit(self, run: Run, argv: Sequence[str], env: Mapping[str, str],
               on_exit: Callable[[Launched, int], None], *, echo: bool, grace: float) -> Launched:
        """Start ``run``'s job (``argv`` in ``env``, cwd the run dir, output to its ``output.log``,
        echoed when ``echo``); its exit is reported to ``on_exit`` from any thread. Raises
        GuildliteError if the engine refuses it, OSError if it cannot be started."""

    @classmethod
    def job_state(cls, rec: Mapping[str, Any], run_dir: Path | None) -> JobState | None:
        """Where the job of an active record of this backend (``remote.backend``) stands; None when
        it cannot be told from here (then the owning process's liveness decides)."""
        return None

    @classmethod
    def cancel(cls, run: Run, force: bool = False) -> bool:
        """Stop ``run``'s job directly (graceful, or ``force``): for a job that runs away from its
        owning guildlite process, which ``guildlite stop`` cannot always reach. False: nothing to do
        here (the owner is signalled instead)."""
        return False


# --- the registry ---------------------------------------------------------------------------------

_found: dict[str, Any] | None = None
_loaded: dict[str, type[Backend]] = {}


def _entry_points() -> dict[str, Any]:
    global _found
    if _found is None:
        from .._entry_points import entry_points  # importlib.metadata's lookup, cheaper at start-up

        _found = entry_points(ENTRY_POINT_GROUP)
    return _found


def names() -> list[str]:
    """The names of every registered backend, sorted."""
    return sorted(_entry_points())


def get(name: str) -> type[Backend]:
    """The backend class registered as ``name``; GuildliteError (exit 2) naming the registered ones."""
    if name in _loaded:
        return _loaded[name]
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or f"none: is guildlite installed (pip install -e .)? it registers its backends in {ENTRY_POINT_GROUP}"
        raise GuildliteError(f"no backend named {name!r} (backends: {known})", exit_code=2)
    try:
        cls = eps[name].load()
    except Exception as e:
        raise GuildliteError(f"backend {name!r} ({eps[name].value}) failed to load: {type(e).__name__}: {e}",
                             exit_code=2) from None
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise GuildliteError(f"backend {name!r} ({eps[name].value}) is not a guildlite Backend subclass", exit_code=2)
    if getattr(cls, "name", None) != name:  # its records name it by `name`, and are routed by that
        raise GuildliteError(f"backend {name!r} ({eps[name].value}) names itself {getattr(cls, 'name', None)!r}:"
                             " its entry point's name and its class's `name` must be the same", exit_code=2)
    _loaded[name] = cls
    return cls


def of_record(rec: Mapping[str, Any]) -> type[Backend] | None:
    """The backend a record's job runs on away from its owner (``remote.backend``), or None: a
    record without one, or naming a backend not installed here, is its owner's alone."""
    remote = rec.get("remote")
    name = remote.get("backend") if isinstance(remote, dict) else None
    if not isinstance(name, str) or name not in _entry_points():
        return None
    try:
        return get(name)
    except GuildliteError:
        return None


def make(name: str, guildfile: Guildfile, op: OpDef, given: Mapping[str, Mapping[str, Any]] | None = None) -> Backend:
    """Backend ``name`` with its options: its guildfile section, the op's, then the command line's
    (``given``: options by backend name; one given for another backend is an error)."""
    cls = get(name)
    own = {o.flag for o in cls.cli_options}  # a flag several backends declare is given to each
    foreign: dict[str, list[str]] = {}  # flags given that only other backends have -> those backends
    for other, opts in (given or {}).items():
        if other != name:
            flags = {o.key: o.flag for o in get(other).cli_options}
            for flag in (flags.get(k, k) for k, v in opts.items() if v is not None):
                if flag not in own:
                    foreign.setdefault(flag, []).append(other)
    if foreign:
        flag, others = next(iter(foreign.items()))
        raise GuildliteError(f"--{flag} is an option of backend {', '.join(others)}; this run's backend is {name}"
                             f" (--backend {others[0]}, or a 'backend:' in the guildfile)", exit_code=2)
    mine = {k: v for k, v in (given or {}).get(name, {}).items() if v is not None}
    try:
        cli = cls.parse_section(mine, "the command line")
    except OptionError as e:
        raise GuildliteError(f"--{e.key}: {e}", exit_code=2) from None
    try:
        options = cls.make_options(guildfile.backend_sections.get(name), op.backend_sections.get(name), cli)
    except (TypeError, ValueError) as e:
        raise GuildliteError(f"backend {name}: {e}", exit_code=2) from None
    return cls(options)
