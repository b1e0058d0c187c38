"""Which flags vary among runs: listings (``runs``, a batch's progress lines, TensorBoard's
sub-dir names) show those first, so what tells the runs apart is what fits in the line."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence


def flag_order(flag_sets: Iterable[Mapping[str, Any]], first: Sequence[str] = ()) -> list[str]:
    """Every flag name of ``flag_sets``: ``first`` (a batch's dimensions) and then the flags whose
    value differs between the runs that have them, then the rest; each group in first-seen order.

    A flag only some runs have (runs of two ops) does not vary by that alone: it is another op's."""
    seen: dict[str, str] = {}
    varying: set[str] = set()
    for flags in flag_sets:
        for name, value in flags.items():
            text = _key(value)
            if seen.setdefault(name, text) != text:
                varying.add(name)
    head = list(dict.fromkeys(first))
    head += [n for n in seen if n in varying and n not in head]
    return [*head, *(n for n in seen if n not in head)]


def ordered(flags: Mapping[str, Any], order: Sequence[str]) -> list[tuple[str, Any]]:
    """``flags`` as (name, value) pairs in ``order``; names ``order`` lacks keep theirs, last."""
    rank = {name: i for i, name in enumerate(order)}
    return sorted(flags.items(), key=lambda item: rank.get(item[0], len(rank)))


def _key(value: Any) -> str:
    # Values from records are JSON (lists, dicts): compared by their canonical text.
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)
