"""Column names of the run tables, one rule for ``compare`` and ``view`` so both show the same header.

The base columns come first under their own names. A flag keeps its name unless a base column has
it (``status (flag)``). A scalar keeps its name unless a base column or a flag of any run in the
table has it (``loss (scalar)``): decided over the whole table, not row by row, so that a column
never holds one run's flag and another run's scalar.
"""

from __future__ import annotations

from typing import Collection, Iterable

BASE = ("id", "op", "status", "started", "time", "label", "batch")


def flag_column(name: str) -> str:
    """The column of flag ``name``."""
    return f"{name} (flag)" if name in BASE else name


def scalar_column(name: str, flags: Collection[str]) -> str:
    """The column of scalar ``name`` in a table whose runs have the flags ``flags`` (their names)."""
    return f"{name} (scalar)" if name in BASE or name in flags else name


def column_titles(flags: Iterable[str], scalars: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The columns of the flags ``flags`` and of the scalars ``scalars`` in one table, by name."""
    names = set(flags)
    return {f: flag_column(f) for f in names}, {s: scalar_column(s, names) for s in scalars}
