"""``guildlite gpus``: each GPU of this machine, who holds its lease, and who waits for one."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ._common import CONTEXT, _local, _say, _table

if TYPE_CHECKING:
    from .._lease_state import Holder, Overview, Want


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the GPUs, other leases and the queue as JSON.")
def gpus(as_json: bool) -> None:
    """Show each GPU, the run holding its lease (user, since when), and the queue of runs waiting.

    \b
    Leases are machine-wide: every guildlite of every user on this machine takes its GPUs from
    the lease directory (env GUILDLITE_GPU_LEASE_DIR, default /tmp/guildlite-gpu-leases). The
    GPUs listed are the visible ones (CUDA_VISIBLE_DEVICES, else nvidia-smi; GUILDLITE_VISIBLE_GPUS
    stands in for nvidia-smi on CPU machines and in tests) and any other GPU under lease.
    The queue is in arrival order; POS 1 means nothing queued earlier is in that run's way.
    """
    from .._lease_state import overview
    from .._slots import visible_gpus

    view = overview(visible_gpus())
    if as_json:
        click.echo(json.dumps(_as_dict(view), indent=2))
        return
    if view.gpus:
        _table(["GPU", "UUID", "RUN", "USER", "SINCE"],
               [[g.id, _uuid(g.id, g.key), *_held(g.holder, g.problem)] for g in view.gpus])
    else:
        _say("no GPUs visible (none from CUDA_VISIBLE_DEVICES or nvidia-smi) and none under lease")
    if view.others:
        _say("")
        _table(["LEASE", "RUN", "USER", "SINCE"], [[h.key, *_held(h, "")] for h in view.others])
    _say("")
    if view.queue:
        _table(["POS", "RUN", "USER", "WAITS FOR", "QUEUED", "WHY"],
               [[w.position, w.run or "?", w.user or "?", "; ".join(map(_want, w.wants)), _local(w.since), w.reason]
                for w in view.queue])
    else:
        _say("no run waits for a lease")
    _say("")
    _say(f"lease directory: {view.directory}")
    if view.caveat:
        _say(f"guildlite: warning: {view.caveat}", err=True)


def _uuid(gpu: str, key: str) -> str:
    uuid = key.partition(":")[2]
    return "-" if uuid == gpu else uuid  # leased by the id itself: no UUID known here


def _held(h: Holder | None, problem: str) -> list[str]:
    if h is None:
        return [problem or "free", "", ""]
    return [h.run or "? (unreadable record)", h.user or "?", _local(h.since)]


def _want(w: Want) -> str:
    label = "GPU" if w.kind == "gpu" else w.kind
    return f"{w.count} of {label} {','.join(w.pool)}" if len(w.pool) > 1 else f"{label} {w.pool[0]}"


def _holder_dict(h: Holder | None) -> dict[str, Any] | None:
    return None if h is None else {"key": h.key, "kind": h.kind, "id": h.id, "run": h.run, "user": h.user,
                                   "pid": h.pid, "since": h.since}


def _as_dict(view: Overview) -> dict[str, Any]:
    return {
        "lease_dir": view.directory,
        "caveat": view.caveat or None,
        "gpus": [{"id": g.id, "key": g.key, "holder": _holder_dict(g.holder), "problem": g.problem or None}
                 for g in view.gpus],
        "leases": [_holder_dict(h) for h in view.others],
        "queue": [{"position": w.position, "run": w.run, "user": w.user, "pid": w.pid, "since": w.since,
                   "reason": w.reason,
                   "wants": [{"kind": x.kind, "pool": list(x.pool), "count": x.count} for x in w.wants]}
                  for w in view.queue],
    }
