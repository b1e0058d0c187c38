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
from ._lease_dir import LeaseDir, LeaseError, is_locked, lease_dir

LEASE_PREFIX = "lease."
TICKET_PREFIX = "ticket."
SEQ_DIGITS = 20  # a ticket's number, zero-padded; a longer one is not a ticket's name
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
        if isinstance(self.pool, str):
            raise GuildliteError(f"a lease's pool is a tuple of ids, not the string {self.pool!r}", exit_code=2)
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
    reason: str  # as Ticket.reason() says it


def token_key(kind: str, token_id: str) -> str:
    """The key a lease on ``token_id`` goes by (a GPU's UUID where known)."""
    return f"gpu:{gpu_key(token_id)}" if kind == "gpu" else f"{kind}:{token_id}"


def file_name(key: str) -> str:
    """The name of the lease file of ``key`` in the lease directory."""
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
    """A ticket's place in arrival order, from its name (None: not a ticket's name)."""
    parts = name.split(".")
    if len(parts) == 4 and parts[0] + "." == TICKET_PREFIX and parts[1].isascii() and parts[1].isdigit() \
            and len(parts[1]) <= SEQ_DIGITS:
        return int(parts[1])
    return None


# Ticket name -> (record, its keys, its wants with their keys), read once per process: a ticket's
# record never changes.
_tickets: dict[str, tuple[dict[str, Any], frozenset[str], tuple[tuple[Want, tuple[str, ...]], ...]]] = {}


def rec_keys(rec: dict[str, Any]) -> frozenset[str]:
    """Every lease key a ticket's record wants (none where the record does not say)."""
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
        seen = directory.look(name, read=known is None)
        if seen is None:
            continue
        if not seen.locked:
            directory.unlink(name)
            _tickets.pop(name, None)
            continue
        if known is None:
            # Who waits is who made the file (a record could claim anyone), as its owner says.
            rec = {**seen.record, "user": _name_of(seen.uid)} if seen.record is not None else {}
            known = _tickets[name] = (rec, rec_keys(rec), _rec_wants(rec))
        if known[0] and (overlapping is None or known[1] & overlapping):
            yield name, known[0]
    if len(_tickets) > 4096:  # forget tickets long gone
        _tickets.clear()


class Probe:
    """Which lease keys are held right now, each lease file probed once (use under the take lock)."""

    def __init__(self, directory: LeaseDir) -> None:
        self._dir = directory
        self._held: dict[str, bool] = {}

    def held(self, key: str) -> bool:
        """Whether ``key`` cannot be taken now: someone holds it, or its file is unusable."""
        if key not in self._held:
            try:
                fd = self._dir.open(file_name(key), create=False, write=True)
            except FileNotFoundError:
                self._held[key] = False
            except LeaseError:
                self._held[key] = True
            else:
                self._held[key] = is_locked(fd)
                os.close(fd)
        return self._held[key]


def in_the_way(name: str, rec: dict[str, Any], mine: frozenset[str], probe: Probe) -> bool:
    """Whether the earlier live ticket ``name`` (which wants some of the keys ``mine``) must go
    before a ticket wanting ``mine``: yes, unless it also waits for tokens that are not GPUs (its
    user's run tokens, ``--max-concurrent``), none of ``mine``, that it cannot have now. A user's
    own limit must not keep another user's GPU idle; and the moment those tokens are free it stands
    in everyone's way again, so it is never starved. A GPU it waits for never lets others by: two
    streams of requests, each overtaking on one of its GPUs, could starve a run wanting both."""
    known = _tickets.get(name)
    wants = known[2] if known is not None and known[0] is rec else _rec_wants(rec)
    for want, keys in wants:
        if want.kind != "gpu" and not mine.intersection(keys) \
                and sum(not probe.held(k) for k in dict.fromkeys(keys)) < want.count:
            return False
    return True


def behind(blocker: dict[str, Any], wants: tuple[Want, ...], keys: tuple[tuple[str, ...], ...]) -> str:
    """Why a ticket waits behind the earlier ticket (record) ``blocker``."""
    theirs = rec_keys(blocker)
    common = dict.fromkeys(i for w, ks in zip(wants, keys) for i, k in zip(w.pool, ks) if k in theirs)
    run, user = (_str(blocker.get(f)) or "?" for f in ("run", "user"))
    return f"queued behind run {run} of user {user}, which also waits for {', '.join(common)}"


def why_held(directory: LeaseDir, wants: tuple[Want, ...], keys: tuple[tuple[str, ...], ...],
             by_key: dict[str, Holder] | None = None) -> str:
    """Why ``wants`` cannot be taken now, naming each holder in the way ("" when they can)."""
    if by_key is None:
        by_key = {h.key: h for h in _holders(directory)}
    for want, want_keys in zip(wants, keys):
        label = "GPU" if want.kind == "gpu" else want.kind
        busy = []
        for i, k in zip(want.pool, want_keys):
            why = f"held by {_who(by_key[k])}" if k in by_key else unusable(directory, k)
            if why:
                busy.append((i, why))
        if len(want.pool) - len(busy) >= want.count:
            continue
        if len(want.pool) == 1:
            why = busy[0][1]
            return f"waiting for {label} {want.pool[0]}, {'' if why.startswith('held') else 'which '}{why}"
        return f"waiting for {want.count} of {label} {','.join(want.pool)} (" + \
            "; ".join(f"{label} {i} {why}" for i, why in busy) + ")"
    return ""


def unusable(directory: LeaseDir, key: str) -> str:
    """Why the lease file of ``key`` can never be taken ('' when it can): something planted there."""
    try:
        os.close(directory.open(file_name(key), create=False, write=True))
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
        seen = directory.look(name, read=True)
        if seen is None or not seen.locked:
            continue
        rec = seen.record or {}
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
    caveat: str  # who else controls the directory ('' when only root and this user do)
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
    return Overview(str(directory.path), directory.caveat(), tuple(rows), tuple(h for h in held if h.kind != "gpu"), tuple(queue))


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
    by_key = {h.key: h for h in _holders(directory)}
    probe = Probe(directory)
    out = []
    for i, (name, rec) in enumerate(live):
        keys = rec_keys(rec)
        ahead = [r for n, r in live[:i] if rec_keys(r) & keys and in_the_way(n, r, keys, probe)]
        wants = _rec_wants(rec)
        want_keys = tuple(k for _, k in wants)
        reason = behind(ahead[0], tuple(w for w, _ in wants), want_keys) if ahead else \
            why_held(directory, tuple(w for w, _ in wants), want_keys, by_key)
        out.append(Waiter(name=name, seq=seq_of(name) or 0, run=_str(rec.get("run")), user=_str(rec.get("user")),
                          pid=_int(rec.get("pid")), since=_str(rec.get("since")), wants=tuple(w for w, _ in wants),
                          position=1 + len(ahead), reason=reason))
    return out


def _rec_wants(rec: dict[str, Any]) -> tuple[tuple[Want, tuple[str, ...]], ...]:
    """The wants a ticket's record names, each with the keys its maker computed (unreadable ones left out)."""
    wants = []
    raw = rec.get("wants")
    for w in raw if isinstance(raw, list) else []:
        try:
            want = Want(tuple(str(i) for i in w["pool"]), int(w["count"]), str(w.get("kind", "gpu")))
        except (GuildliteError, KeyError, TypeError, ValueError, AttributeError):
            continue
        keys = w.get("keys")
        ok = isinstance(keys, list) and len(keys) == len(want.pool) and all(isinstance(k, str) for k in keys)
        wants.append((want, tuple(keys) if ok else want.keys()))
    return tuple(wants)
