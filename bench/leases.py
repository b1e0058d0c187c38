"""Lease overhead per trial: what taking and releasing a machine-wide GPU lease costs.

    python bench/leases.py [--trials 300] [--waiters 0,10,50] [--repeat 5] [--pyc]

Each row: a lease directory in a temp dir, ``N`` waiter processes queued for a GPU that a holder
process keeps (so they wait, polling ``try_take`` every 50 ms as ``Ticket.take`` does, and every
take of ours lists, reads and probes their tickets), then ``--trials`` trials in this process,
each ``queue_up`` + ``try_take`` + ``release`` of one of two other fake GPUs. Columns are the
median and 90th percentile per trial of each step and of the whole.

The ``fresh process`` table: a fresh process's import of the ``guildlite`` package (which any
guildlite command pays anyway), then of ``guildlite._leases``, then its first trial (the lease
directory opened and checked, the user looked up), medians over ``--repeat`` processes. With PYTHONDONTWRITEBYTECODE set, modules are compiled on every import; ``--pyc``
caches bytecode in a temp PYTHONPYCACHEPREFIX (as an installed guildlite would run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAITER = """\
import sys
from guildlite._leases import Want, queue_up
t = queue_up(sys.argv[1], [Want(("busy",), 1)])
print("queued", flush=True)
t.take()
"""

FIRST = """\
import time
t0 = time.perf_counter()
import guildlite
t1 = time.perf_counter()
from guildlite._leases import Want, queue_up
t2 = time.perf_counter()
queue_up("first", [Want(("g0", "g1"), 1)]).try_take().release()
t3 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000)
"""


def _ms(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"{statistics.median(xs) * 1000:.3f} / {xs[int(len(xs) * 0.9)] * 1000:.3f}"


def _row(n_waiters: int, trials: int, env: dict[str, str]) -> list[str]:
    from guildlite._leases import Want, queue_up

    procs = [subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom guildlite._leases import Want, queue_up\n"
                               "queue_up('holder', [Want(('busy',), 1)]).try_take()\nprint('held', flush=True)\n"
                               "time.sleep(1e6)"], env=env, stdout=subprocess.PIPE)]
    try:
        assert procs[0].stdout is not None and procs[0].stdout.readline() == b"held\n"
        for i in range(n_waiters):
            p = subprocess.Popen([sys.executable, "-c", WAITER, f"w{i}"], env=env, stdout=subprocess.PIPE)
            procs.append(p)
            assert p.stdout is not None and p.stdout.readline() == b"queued\n"
        steps: dict[str, list[float]] = {"queue_up": [], "try_take": [], "release": [], "total": []}
        for _ in range(trials):
            t0 = time.perf_counter()
            ticket = queue_up("bench", [Want(("g0", "g1"), 1)])
            t1 = time.perf_counter()
            lease = ticket.try_take()
            t2 = time.perf_counter()
            assert lease is not None
            lease.release()
            t3 = time.perf_counter()
            for k, v in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                steps[k].append(v)
        return [str(n_waiters), *(_ms(v) for v in steps.values())]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--waiters", default="0,10,50")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pyc", action="store_true", help="cache bytecode in a temp PYTHONPYCACHEPREFIX")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ}
        if a.pyc:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        print("| waiters | queue_up ms (median / p90) | try_take ms | release ms | total per trial ms |")
        print("|---|---|---|---|---|")
        for n in (int(x) for x in a.waiters.split(",")):
            os.environ["GUILDLITE_GPU_LEASE_DIR"] = env["GUILDLITE_GPU_LEASE_DIR"] = str(Path(tmp) / f"leases-{n}")
            print("| " + " | ".join(_row(n, a.trials, env)) + " |", flush=True)
        env["GUILDLITE_GPU_LEASE_DIR"] = str(Path(tmp) / "leases-first")
        runs = [subprocess.run([sys.executable, "-c", FIRST], env=env, capture_output=True, text=True, check=True)
                for _ in range(a.repeat + 1)][1:]  # the first one warms the page cache (and --pyc's cache)
        package, imports, firsts = zip(*(map(float, r.stdout.split()) for r in runs))
        print()
        print("| fresh process | import guildlite ms | then guildlite._leases ms | first queue_up + try_take + "
              "release ms |")
        print("|---|---|---|---|")
        mode = "--pyc (bytecode cached)" if a.pyc else ("no bytecode cache" if os.environ.get(
            "PYTHONDONTWRITEBYTECODE") else "default")
        print(f"| {mode} | {statistics.median(package):.1f} | {statistics.median(imports):.1f} | "
              f"{statistics.median(firsts):.2f} |")
        print()
        print(json.dumps({"trials": a.trials, "repeat": a.repeat, "python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
