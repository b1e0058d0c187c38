"""``--filter`` speed over many runs: filters on flags and on scalars, cold and warm.

    python bench/filter.py [--sizes 100000] [--repeat 3] [--runs-dir DIR]

Synthetic runs are written with the listing bench's writer (``_common.make_runs``: records like
real ones, a scalars.jsonl of ``loss`` each; flags lr (10 values), epochs (5), batch-size) into
a temp dir, or taken from --runs-dir (made there if it is empty). "cold" is each command's first
call (the index is deleted before the table: the first row's cold call builds it), "warm" the
best of --repeat later calls, each as wall time and as CPU time (user + system). Each call is the
real CLI in a subprocess. ``guildlite runs --status error`` (the listing bench's warm case) is
timed beside them for scale. Prints a markdown table.
"""

from __future__ import annotations

from _common import cold_warm_table

CASES = [
    ["runs", "--filter", "lr >= 0.05"],  # a flag: 20% of the runs
    ["runs", "--filter", "epochs = 5 and lr < 0.011"],  # flags: 10%
    ["runs", "--filter", "loss < 0.11"],  # a scalar's last value: 2 in 7
    ["runs", "--filter", "min(loss) < 0.1 and lr > 0.05"],  # a scalar's min and a flag
    ["runs", "--all", "--filter", "epochs = 5 and lr < 0.011"],  # every match listed (10k)
    ["compare", "--filter", "epochs = 5 and lr < 0.011"],
    ["select", "--min", "loss", "--filter", "epochs = 3"],
    ["runs", "--status", "error"],  # for scale: the listing bench's case
]


if __name__ == "__main__":
    cold_warm_table(__doc__, CASES, sizes="100000")
