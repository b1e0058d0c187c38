"""Staging time of a run that requires a 1 GB file (``requires: - file: weights.bin``).

Each case is ``guildlite run --stage OP`` (stage only: no job) timed from exec to exit, so the
numbers include the CLI's start-up; the first row (no requirement) is that floor. Cases:

- ``no requires``: the same op without the requirement.
- ``link, not hashed``: the default hash limit (256 MiB) is below 1 GB, so the file is linked and
  its size and mtime recorded, nothing read.
- ``link, hash cold``: GUILDLITE_HASH_LIMIT above 1 GB, the digest cache emptied before each call:
  the file is read once to hash it.
- ``link, hash cached``: the same, the cache kept: the second and later runs read nothing.
- ``copy`` (``target-type: copy``, cache kept): 1 GB copied into the run dir at each run.

A second table times the same in process: ``_requires.resolve`` (find, stat, hash) and
``Resolved.stage`` (link or copy into a fresh dir), without the CLI around them.

The 1 GB file is allocated with ``posix_fallocate`` (real blocks, not sparse), in a temp dir that
is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import GUILDLITE  # noqa: E402

GUILDFILE = """\
operations:
  plain:
    main: train.py
    launcher: python
  link:
    main: train.py
    launcher: python
    requires:
      - file: weights.bin
  copy:
    main: train.py
    launcher: python
    requires:
      - file: weights.bin
        target-type: copy
"""


def _time(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    cp = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if cp.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({cp.returncode}): {cp.stderr}")
    return took


def _in_process(project: Path, tmp: Path, repeat: int, size: int) -> None:
    from types import SimpleNamespace

    from guildlite._guildfile import load
    from guildlite._requires import resolve

    gf = load(project / "guildfile.yml")
    print("\nIn process: `resolve` then `Resolved.stage` into a fresh dir, ms\n")
    print("| case | resolve median ms | stage median ms |")
    print("|---|---:|---:|")
    for label, op, limit, cold in [("link, not hashed", "link", None, False), ("link, hash cold", "link", size * 2, True),
                                   ("link, hash cached", "link", size * 2, False), ("copy", "copy", None, False)]:
        if limit is None:
            os.environ.pop("GUILDLITE_HASH_LIMIT", None)
        else:
            os.environ["GUILDLITE_HASH_LIMIT"] = str(limit)
        res, stage = [], []
        for i in range(repeat):
            if cold:
                shutil.rmtree(Path(os.environ["XDG_CACHE_HOME"]) / "guildlite" / "digests", ignore_errors=True)
            t0 = time.perf_counter()
            resolved = resolve(gf.op(op), project, tmp / "runs")
            t1 = time.perf_counter()
            run_dir = tmp / "runs" / f"r{i}"
            (run_dir / ".guildlite").mkdir(parents=True)
            resolved.stage(SimpleNamespace(run_dir=run_dir, requires=[]))  # type: ignore[arg-type]
            t2 = time.perf_counter()
            shutil.rmtree(run_dir)
            res.append((t1 - t0) * 1000)
            stage.append((t2 - t1) * 1000)
        print(f"| {label} | {statistics.median(res):.1f} | {statistics.median(stage):.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size-mb", type=int, default=1024)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="glt-bench-requires-"))
    try:
        project = tmp / "project"
        project.mkdir()
        (project / "guildfile.yml").write_text(GUILDFILE)
        (project / "train.py").write_text("print('hi')\n")
        size = args.size_mb * 1024 * 1024
        fd = os.open(project / "weights.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        cache = tmp / "cache"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUILDLITE_")}
        env.update(GUILDLITE_RUNS_DIR=str(tmp / "runs"), XDG_CACHE_HOME=str(cache))
        hashed = {**env, "GUILDLITE_HASH_LIMIT": str(size * 2)}
        cases = [
            ("no requires", "plain", env, False),
            ("link, not hashed (default limit)", "link", env, False),
            ("link, hash cold", "link", hashed, True),
            ("link, hash cached", "link", hashed, False),
            ("copy, hash cached", "copy", hashed, False),
        ]
        _time([*GUILDLITE, "run", "-y", "--stage", "plain"], project, env)  # warm-up
        print(f"Staging a run that requires a {args.size_mb} MB file: `guildlite run --stage OP`, "
              f"{args.repeat} calls per case, ms (CLI start-up included)\n")
        print("| case | min ms | median ms | max ms |")
        print("|---|---:|---:|---:|")
        for label, op, case_env, cold in cases:
            times = []
            for _ in range(args.repeat):
                if cold:
                    shutil.rmtree(cache / "guildlite" / "digests", ignore_errors=True)
                times.append(_time([*GUILDLITE, "run", "-y", "--stage", op], project, case_env) * 1000)
                shutil.rmtree(tmp / "runs")  # a copied 1 GB per run would fill the disk
            print(f"| {label} | {min(times):.0f} | {statistics.median(times):.0f} | {max(times):.0f} |")
        os.environ["XDG_CACHE_HOME"] = str(cache)
        _in_process(project, tmp, args.repeat, size)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
