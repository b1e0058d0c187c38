"""guildlite side by side with Guild AI 0.9.0, on the same machine, in the same invocation.

    python bench/compare_guild.py [--repeat 5] [--sizes 1000] [--guild-venv DIR] [--keep]

Creates a throwaway virtualenv, installs ``guildai==0.9.0`` from PyPI into it (if PyPI cannot be
reached or the install fails, it says why and exits 0), then times, as wall-clock medians over
``--repeat`` calls after one warm-up call each, the cases interleaved round by round:

- CLI start-up: ``guild --help`` vs ``guildlite --help``;
- one run of an equivalent tiny op (``train.py``: ``lr = 0.1`` then ``print("loss: 0.1")``): Guild's
  default python op vs guildlite with ``launcher: python`` and with torchrun (1 rank); the bare
  ``python train.py`` is shown too, and each tool's overhead is its time less that;
- a 2-trial batch ``lr=[0.1,0.01]`` (the same syntax in both), python launcher for guildlite;
- listing runs: ``guild runs`` vs ``guildlite runs`` (the default page of 20), and ``guild runs -a``
  vs ``guildlite runs --all`` (every run), over ``--sizes`` runs.

Runs for listing are made cheaply and documented here: one real run of each tool is made with the
tool itself, then its directory is copied N times with new ids (Guild: a new uuid4 hex dir name
and ``.guild/attrs/id``, ``started``/``stopped``/``initialized`` shifted by one second per copy;
guildlite: a new sortable id and ``run.json`` ``id``/``created``/``started``/``stopped`` shifted the
same way). Both stores live in a temp dir (``GUILD_HOME`` for Guild, ``--runs-dir`` for
guildlite) removed at the end. The guildlite used is the one of this Python environment.

Prints a markdown table with the guildlite / Guild ratio (lower is better for guildlite).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from _common import GUILDLITE

GUILD_VERSION = "0.9.0"
SCRIPT = 'lr = 0.1\nprint("loss: 0.1")\n'
GUILD_YML = "train:\n  main: train\n  flags:\n    lr: 0.1\n"
GUILDLITE_YML = (
    "operations:\n"
    "  train:\n    main: train.py\n    launcher: python\n    flags:\n      lr: 0.1\n"
    "  train-tr:\n    main: train.py\n    flags:\n      lr: 0.1\n"
)


def install_guild(venv: Path) -> Path | None:
    """Create ``venv`` and pip-install Guild into it; the ``guild`` executable, or None (said why)."""
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        print(f"cannot create a virtualenv for Guild: {e.stderr.strip() or e}; nothing to compare")
        return None
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
           f"guildai=={GUILD_VERSION}"]
    print(f"installing guildai=={GUILD_VERSION} into {venv} ...", file=sys.stderr, flush=True)
    try:
        p = subprocess.run(pip, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired:
        print(f"pip install guildai=={GUILD_VERSION} timed out (is PyPI reachable?); nothing to compare")
        return None
    guild = venv / "bin" / "guild"
    if p.returncode != 0 or not guild.exists():
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-5:])
        print(f"pip install guildai=={GUILD_VERSION} failed (PyPI unreachable?):\n{tail}\nnothing to compare")
        return None
    return guild


class Bench:
    def __init__(self, root: Path, guild: Path, repeat: int) -> None:
        self.root, self.guild, self.repeat = root, guild, repeat
        self.gproj, self.lproj = root / "guild-proj", root / "guildlite-proj"
        for proj, yml, name in ((self.gproj, GUILD_YML, "guild.yml"), (self.lproj, GUILDLITE_YML, "guildfile.yml")):
            proj.mkdir(parents=True)
            (proj / "train.py").write_text(SCRIPT)
            (proj / name).write_text(yml)
        self.guild_home = root / "guild-home"
        self.guild_home.mkdir()
        self.lite_runs = root / "guildlite-runs"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GUILDLITE_", "GUILD_"))}
        self.genv = {**base, "GUILD_HOME": str(self.guild_home), "NO_WARN_RUNDIR": "1"}
        self.lenv = {**base, "GUILDLITE_RUNS_DIR": str(self.lite_runs)}

    def guild_cmd(self, *args: str) -> Callable[[], None]:
        return lambda: _call([str(self.guild), *args], self.gproj, self.genv)

    def lite_cmd(self, *args: str) -> Callable[[], None]:
        return lambda: _call([*GUILDLITE, *args], self.lproj, self.lenv)

    def bare(self) -> Callable[[], None]:
        return lambda: _call([sys.executable, "train.py"], self.lproj, self.lenv)

    def time_cases(self, cases: dict[str, Callable[[], None]], repeat: int | None = None) -> dict[str, float]:
        """Median seconds per case: one warm-up each, then ``repeat`` rounds, interleaved."""
        times: dict[str, list[float]] = {k: [] for k in cases}
        for fn in cases.values():
            fn()
        for _ in range(repeat or self.repeat):
            for k, fn in cases.items():
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
        return {k: statistics.median(v) for k, v in times.items()}


def _call(cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> None:
    p = subprocess.run(list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")


# --- synthetic run stores ------------------------------------------------------------------------


def _clear(d: Path) -> None:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)


def make_guild_runs(b: Bench, n: int) -> None:
    """One real Guild run, copied n times with new ids and start times."""
    runs = b.guild_home / "runs"
    _clear(runs)
    shutil.rmtree(b.guild_home / "trash", ignore_errors=True)
    b.guild_cmd("run", "train", "-y")()
    (src,) = list(runs.iterdir())
    t0 = int((src / ".guild" / "attrs" / "started").read_text().strip())
    for i in range(n):
        rid = uuid.uuid4().hex
        dst = runs / rid
        shutil.copytree(src, dst, symlinks=True)
        attrs = dst / ".guild" / "attrs"
        (attrs / "id").write_text(rid + "\n")
        shift = (i + 1) * 1_000_000
        for name in ("initialized", "started", "stopped"):
            p = attrs / name
            if p.exists():
                p.write_text(f"{int(p.read_text().strip()) - t0 + 1_600_000_000_000_000 + shift}\n")
    shutil.rmtree(src)


def make_guildlite_runs(b: Bench, n: int) -> None:
    """One real guildlite run, copied n times with new ids and times."""
    _clear(b.lite_runs)
    b.lite_cmd("run", "train", "-y")()
    (src,) = [d for d in b.lite_runs.iterdir() if not d.name.startswith(".")]
    rec = json.loads((src / "run.json").read_text())
    t0 = datetime(2020, 9, 13, tzinfo=timezone.utc)
    for i in range(n):
        t = t0 + timedelta(seconds=i)
        rid = t.strftime("%Y%m%dT%H%M%S") + f"-{i % 4096:03x}{(i // 4096) % 4096:03x}"
        dst = b.lite_runs / rid
        shutil.copytree(src, dst, symlinks=True)
        iso = t.isoformat(timespec="milliseconds")
        new = {**rec, "id": rid, "created": iso, "started": iso,
               "stopped": (t + timedelta(milliseconds=300)).isoformat(timespec="milliseconds")}
        (dst / "run.json").write_text(json.dumps(new, indent=2) + "\n")
    shutil.rmtree(src)
    (b.lite_runs / ".index.sqlite").unlink(missing_ok=True)


# --- report --------------------------------------------------------------------------------------


def fmt(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 10 else f"{s:.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per case (median)")
    ap.add_argument("--sizes", default="1000", help="run counts for the listing cases, e.g. 1000,10000")
    ap.add_argument("--guild-venv", type=Path, help="use this virtualenv's guild instead of installing one")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (venv, projects, run stores)")
    a = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="guildlite-vs-guild-"))
    try:
        if a.guild_venv:
            guild = a.guild_venv / "bin" / "guild"
            if not guild.exists():
                print(f"no guild executable in {a.guild_venv}; nothing to compare")
                return
        else:
            guild = install_guild(root / "guild-venv")
            if guild is None:
                return
        b = Bench(root, guild, a.repeat)
        rows: list[tuple[str, float | None, float | None, str]] = []

        print("timing start-up ...", file=sys.stderr, flush=True)
        t = b.time_cases({"guild": b.guild_cmd("--help"), "lite": b.lite_cmd("--help")}, repeat=max(10, a.repeat))
        rows.append(("CLI start-up (`--help`)", t["lite"], t["guild"], ""))

        print("timing single runs ...", file=sys.stderr, flush=True)
        t = b.time_cases({
            "bare": b.bare(),
            "guild": b.guild_cmd("run", "train", "-y"),
            "lite": b.lite_cmd("run", "train", "-y"),
            "lite-tr": b.lite_cmd("run", "train-tr", "-y"),
        })
        rows.append(("one tiny run, wall (guildlite `launcher: python`)", t["lite"], t["guild"], ""))
        rows.append((f"one tiny run, overhead over bare `python train.py` ({fmt(t['bare'])})",
                     t["lite"] - t["bare"], t["guild"] - t["bare"], ""))
        rows.append(("one tiny run, wall (guildlite torchrun, 1 rank)", t["lite-tr"], t["guild"],
                     "Guild has no torchrun launcher: its python op"))

        print("timing 2-trial batches ...", file=sys.stderr, flush=True)
        t = b.time_cases({"guild": b.guild_cmd("run", "train", "lr=[0.1,0.01]", "-y"),
                          "lite": b.lite_cmd("run", "train", "lr=[0.1,0.01]", "-y")})
        rows.append(("2-trial batch `lr=[0.1,0.01]`, wall", t["lite"], t["guild"], "guildlite: a batch run + 2 trials"))

        for n in [int(x) for x in a.sizes.split(",") if x.strip()]:
            print(f"making {n} runs for each tool ...", file=sys.stderr, flush=True)
            make_guild_runs(b, n)
            make_guildlite_runs(b, n)
            t = b.time_cases({"guild": b.guild_cmd("runs"), "lite": b.lite_cmd("runs"),
                              "guild-a": b.guild_cmd("runs", "-a"), "lite-a": b.lite_cmd("runs", "--all")})
            rows.append((f"list {n} runs, default page (`runs`)", t["lite"], t["guild"], "newest 20 (both)"))
            rows.append((f"list {n} runs, all (`runs -a` / `runs --all`)", t["lite-a"], t["guild-a"], ""))

        gv = subprocess.run([str(guild), "--version"], capture_output=True, text=True, check=False).stdout.strip()
        lv = subprocess.run([*GUILDLITE, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        print(f"\n{lv} vs {gv}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
              f"median of {a.repeat} (start-up: {max(10, a.repeat)}) after a warm-up\n")
        print("| measurement | guildlite | Guild 0.9.0 | guildlite / Guild | note |")
        print("|---|---:|---:|---:|---|")
        for what, lite, g, note in rows:
            ratio = f"{lite / g:.2f}×" if lite is not None and g else "n/a"
            print(f"| {what} | {fmt(lite) if lite is not None else 'n/a'} | {fmt(g) if g is not None else 'n/a'} "
                  f"| {ratio} | {note} |")
    finally:
        if a.keep:
            print(f"\nkept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
