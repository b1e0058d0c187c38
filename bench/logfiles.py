"""The log-file scalar source (``_logfiles.LogFiles``) on a run dir holding one large TensorBoard
event file: the first catch-up, then what one poll costs as the job appends, by file size.

Event files are written with guildlite's own framing (``_tfevents.frame``) around events shaped
as PyTorch's ``SummaryWriter.add_scalar`` writes them (~44 bytes a record with a 4-letter tag),
so no torch or tensorboard is needed here. Times are this process's CPU time (a shared machine
slows the wall clock, not them). Prints a markdown table; asserts nothing.

    python bench/logfiles.py [--sizes 5,50] [--append 100] [--polls 20]
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _protobuf import field, varint  # noqa: E402  (the tests' own encoder)

from guildlite._logfiles import LogFiles  # noqa: E402
from guildlite._tfevents import frame  # noqa: E402


def event(step: int) -> bytes:
    value = field(1, 2, b"loss") + field(2, 5, struct.pack("<f", 1.0 / (step + 1)))
    return (field(1, 1, struct.pack("<d", 1.7e9 + step)) + field(2, 0, varint(step))
            + field(5, 2, field(1, 2, value)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5,50", help="event file sizes in MB")
    ap.add_argument("--append", type=int, default=100, help="records the job appends between two polls")
    ap.add_argument("--polls", type=int, default=20)
    args = ap.parse_args()
    print("| file | records | first catch-up (CPU s) | per record (us) | idle poll (CPU ms, median) "
          f"| poll after {args.append} new records (CPU ms, median) |")
    print("|---|---|---|---|---|---|")
    for mb in (float(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tb" / "events.out.tfevents.1700000000.host.1.0"
            path.parent.mkdir()
            step = 0
            with open(path, "wb") as f:
                while f.tell() < mb * 1e6:
                    f.write(b"".join(frame(event(step + i)) for i in range(10000)))
                    step += 10000
            logs = LogFiles(tmp, rescan_seconds=3600)
            t0 = time.process_time()
            caught = len(logs.finish())
            first = time.process_time() - t0
            idle, busy = [], []
            for _ in range(args.polls):
                t0 = time.process_time()
                logs.poll()
                idle.append(time.process_time() - t0)
                with open(path, "ab") as f:
                    f.write(b"".join(frame(event(step + i)) for i in range(args.append)))
                step += args.append
                t0 = time.process_time()
                got = len(logs.poll())
                busy.append(time.process_time() - t0)
                assert got == args.append, got
            print(f"| {path.stat().st_size / 1e6:.0f} MB | {caught} | {first:.1f} | {first / caught * 1e6:.1f} "
                  f"| {statistics.median(idle) * 1e3:.2f} | {statistics.median(busy) * 1e3:.2f} |")


if __name__ == "__main__":
    main()
