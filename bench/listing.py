"""Listing speed over many runs: `guildlite runs`, a filtered `runs`, and `compare`.

    python bench/listing.py [--sizes 10000,100000] [--repeat 3] [--runs-dir DIR]

Synthetic runs are written with guildlite's own Run API (records like real ones, with a
scalars.jsonl each) into a temp dir, or taken from --runs-dir (made there if it is empty; one
size only). The index is deleted before each size's table: "cold" is the first call (it builds the index), "warm" the
best of --repeat later calls, each as wall time and as CPU time (user + system, which a busy
machine inflates far less than wall time). Prints a markdown table.
"""

from __future__ import annotations

from _common import cold_warm_table

CASES = [["runs"], ["runs", "--status", "error"], ["compare", "--status", "error"], ["compare"]]

if __name__ == "__main__":
    cold_warm_table(__doc__, CASES, sizes="10000,100000")
