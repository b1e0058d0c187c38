"""What the lease directory holds: the tokens wanted (``Want``), the held leases (``Holder``) and
the live tickets (``Waiter``), read from its files, which anyone may have written: a record that
is not one is read as unknown, never trusted into a crash.

Lease files are ``lease.<key>`` (the key escaped into a file name); tickets are
``ticket.<seq>.<pid>.<random>``, ``seq`` giving the arrival order. Readers run under the take lock
(shared), so no take is seen half done.
"""

from __future__ import annotations

import functools
import os
import pwd
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ._errors import GuildliteError
from ._gpu_uuids import gpu_key
from ._lease_dir import LeaseDir, LeaseError, is_locked, lease_dir, read_record

LEASE_PREFIX = "lease."
TICKET_PREFIX = "ticket."
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


@dataclass(frozen=True)
class Want:
    """``count`` tokens out of ``pool`` (any free ones, the pool's order preferred).

    ``kind`` says what the tokens are: ``"gpu"`` (GPU ids, leased by UUID) or any other word for
    tokens leased by name as given (say ``"run-slot"`` with ids such as ``"alice/0"``)."""

    pool: tuple[str, ...]
    count: int = 1
    kind: str = "gpu"

    def __post_init__(self) -> None:
        pool = tuple(str(i).strip() for i in self.pool)
        object.__setattr__(self, "pool", pool)
        if not pool or any(not i for i in pool) or not self.kind:
            raise GuildliteError(f"a lease wants ids from a non-empty pool, got {self.pool!r}", exit_code=2)
        if not 1 <= self.count <= len(set(pool)):
            raise GuildliteError(f"cannot lease {self.count} {self.kind}(s) out of {','.join(pool)}", exit_code=2)

    def keys(self) -> tuple[str, ...]:
        """The lease key of each id in the pool (GPUs by UUID where known)."""
        return tuple(token_key(self.kind, i) for i in self.pool)


@dataclass(frozen=True)
class Holder:
    """A held lease: the token, and who holds it (None where its record is unreadable)."""

    key: str
    kind: str
    id: str  # as the holder gave it
    run: str | None
    user: str | None
    pid: int | None
    since: str | None


@dataclass(frozen=True)
class Waiter:
    """A live ticket: who waits, for what, and its place (1: nothing queued earlier is in its way)."""

    name: str
    seq: int
    run: str | None
    user: str | None
    pid: int | None
    since: str | None
    wants: tuple[Want, ...]
    position: int


def token_key(kind: str, token_id: str) -> str:
    """The key a lease on ``token_id`` goes by (a GPU's UUID where known)."""
    return f"gpu:{gpu_key(token_id)}" if kind == "gpu" else f"{kind}:{token_id}"


def file_name(key: str) -> str:
    # Any id may name a token: escape what a file name cannot hold (or would hide, or would climb).
    escaped = "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in key)
    if len(escaped) > 200:
        import hashlib

        escaped = "#" + hashlib.sha256(key.encode()).hexdigest()
    return LEASE_PREFIX + escaped


def user_name() -> str:
    """This process's user name (its uid where it has none)."""
    return _name_of(os.geteuid())


@functools.lru_cache(maxsize=64)
def _name_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def seq_of(name: str) -> int | None:
    parts = name.split(".")
    if len(parts) == 4 and parts[0] + "." == TICKET_PREFIX and parts[1].isdigit() and len(parts[1]) <= 30:
        return int(parts[1])
    return None


# Ticket name -> (record, its keys), read once per process: a ticket's record never changes.
_tickets: dict[str, tuple[dict[str, Any], frozenset[str]]] = {}


def rec_keys(rec: dict[str, Any]) -> frozenset[str]:
    keys: set[str] = set()
    wants = rec.get("wants")
    for w in wants if isinstance(wants, list) else []:
        ks = w.get("keys") if isinstance(w, dict) else None
        if isinstance(ks, list):
            keys.update(k for k in ks if isinstance(k, str))
    return frozenset(keys)


def live_tickets(directory: LeaseDir, before: tuple[int, str] | None = None,
                 overlapping: frozenset[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, record) of every live ticket, oldest first (only those queued ``before`` a place and
    wanting a key in ``overlapping``, where given), read as they are asked for; dead ones met are
    swept (where ours to remove). Call under the take lock."""
    for seq, name in sorted((s, n) for n in directory.names() if (s := seq_of(n)) is not None):
        if before is not None and (seq, name) >= before:
            return
        known = _tickets.get(name)
        if known is not None and overlapping is not None and not known[1] & overlapping:
            continue  # not in the way: no need to open it
        try:
            fd = directory.open(name, create=False)
        except (FileNotFoundError, LeaseError):
            continue
        try:
            if not is_locked(fd):
                directory.unlink(name)
                _tickets.pop(name, None)
                continue
            if known is None:
                rec = read_record(fd)
                # Who waits is who made the file (a record could claim anyone), as its owner says.
                rec = {**rec, "user": _name_of(os.fstat(fd).st_uid)} if rec is not None else {}
                known = _tickets[name] = (rec, rec_keys(rec))
        finally:
            os.close(fd)
        if known[0] and (overlapping is None or known[1] & overlapping):
            yield name, known[0]
    if len(_tickets) > 4096:  # forget tickets long gone
        _tickets.clear()


def why_held(directory: LeaseDir, wants: tuple[Want, ...], keys: tuple[tuple[str, ...], ...]) -> str:
    """Why ``wants`` cannot be taken now, naming each holder in the way ("" when they can)."""
    by_key = {h.key: h for h in _holders(directory)}
    for want, want_keys in zip(wants, keys):
        label = "GPU" if want.kind == "gpu" else want.kind
        busy = []
        for i, k in zip(want.pool, want_keys):
            why = f"held by {_who(by_key[k])}" if k in by_key else unusable(directory, k)
            if why:
                busy.append(f"{label} {i} {why}")
        if len(want.pool) - len(busy) >= want.count:
            continue
        if len(want.pool) == 1:
            return f"waiting for {busy[0].replace(' held by', ', held by', 1)}"
        return f"waiting for {want.count} of {label} {','.join(want.pool)} ({'; '.join(busy)})"
    return ""


def unusable(directory: LeaseDir, key: str) -> str:
    """Why the lease file of ``key`` can never be taken ('' when it can): something planted there."""
    try:
        os.close(directory.open(file_name(key), create=False))
    except FileNotFoundError:
        return ""
    except LeaseError as e:
        return f"cannot be leased ({e})"
    return ""


def _who(h: Holder) -> str:
    return f"run {h.run} of user {h.user}" if h.run else "a process whose lease record is unreadable"


def _holders(directory: LeaseDir) -> list[Holder]:
    found = []
    for name in sorted(directory.names()):
        if not name.startswith(LEASE_PREFIX):
            continue
        try:
            fd = directory.open(name, create=False)
        except (FileNotFoundError, LeaseError):
            continue
        try:
            if not is_locked(fd):
                continue
            rec = read_record(fd) or {}
        finally:
            os.close(fd)
        key = rec.get("key") if isinstance(rec.get("key"), str) and file_name(rec["key"]) == name else None
        if key is None:  # the record does not match its file: trust the name only
            key, rec = _unescape(name[len(LEASE_PREFIX):]), {}
        found.append(Holder(key=key, kind=_str(rec.get("kind")) or key.partition(":")[0],
                            id=_str(rec.get("id")) or key.partition(":")[2], run=_str(rec.get("run")),
                            user=_str(rec.get("user")), pid=_int(rec.get("pid")), since=_str(rec.get("since"))))
    return found


def _unescape(escaped: str) -> str:
    from urllib.parse import unquote

    return unquote(escaped)


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


@dataclass(frozen=True)
class GpuRow:
    """One GPU for ``guildlite gpus``: its id, lease key, holder (None: free) and any problem."""

    id: str
    key: str
    holder: Holder | None
    problem: str = ""


@dataclass(frozen=True)
class Overview:
    """The machine's leases at one moment: GPUs, other held tokens, and the queue."""

    directory: str
    gpus: tuple[GpuRow, ...]
    others: tuple[Holder, ...]
    queue: tuple[Waiter, ...]


def overview(visible: Sequence[str]) -> Overview:
    """The ``visible`` GPUs (and any other GPU under lease) with their holders, the other held
    tokens, and the queue in arrival order."""
    directory = lease_dir()
    with directory.locked(shared=True):
        held = _holders(directory)
        queue = _waiters(directory)
        rows, seen = [], set()
        by_key = {h.key: h for h in held}
        for gpu in dict.fromkeys(visible):
            key = token_key("gpu", gpu)
            seen.add(key)
            rows.append(GpuRow(gpu, key, by_key.get(key), "" if key in by_key else unusable(directory, key)))
    rows += [GpuRow(h.id, h.key, h) for h in held if h.kind == "gpu" and h.key not in seen]
    return Overview(str(directory.path), tuple(rows), tuple(h for h in held if h.kind != "gpu"), tuple(queue))


def holders() -> list[Holder]:
    """Every held lease on this machine (GPUs and other tokens), by file name."""
    directory = lease_dir()
    with directory.locked(shared=True):
        return _holders(directory)


def waiters() -> list[Waiter]:
    """Every live ticket on this machine in arrival order, each with its position."""
    directory = lease_dir()
    with directory.locked(shared=True):
        return _waiters(directory)


def _waiters(directory: LeaseDir) -> list[Waiter]:
    live = list(live_tickets(directory))
    out = []
    for i, (name, rec) in enumerate(live):
        keys = rec_keys(rec)
        ahead = sum(1 for _, r in live[:i] if rec_keys(r) & keys)
        out.append(Waiter(name=name, seq=seq_of(name) or 0, run=_str(rec.get("run")), user=_str(rec.get("user")),
                          pid=_int(rec.get("pid")), since=_str(rec.get("since")), wants=_rec_wants(rec),
                          position=1 + ahead))
    return out


def _rec_wants(rec: dict[str, Any]) -> tuple[Want, ...]:
    wants = []
    raw = rec.get("wants")
    for w in raw if isinstance(raw, list) else []:
        try:
            wants.append(Want(tuple(str(i) for i in w["pool"]), int(w["count"]), str(w.get("kind", "gpu"))))
        except (GuildliteError, KeyError, TypeError, ValueError):
            continue
    return tuple(wants)
