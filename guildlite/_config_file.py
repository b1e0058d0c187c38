"""``flags-dest: config:FILE``: flags read from, written into and checked in a YAML or JSON file.

Dotted flag names address nested keys (``db.user`` is ``user`` under ``db``); a key that itself
holds a dot (``"a.b": 1``) is found as it is. Each run writes FILE in its run dir (over the staged
copy of the project's file, whose other content is kept) and, once ``on_run_staged`` is done,
reads it back: a flag whose value is not there is an error before the job starts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator, Mapping

from ._errors import FlagError, GuildfileError, GuildliteError
from ._flags import scalar_type


def config_path(flags_dest: str) -> str | None:
    """FILE of ``config:FILE`` (relative to the project and to the run dir), else None."""
    return flags_dest[len("config:"):] if flags_dest.startswith("config:") else None


def load(path: Path) -> Any:
    """The file's content (YAML by PyYAML's safe loader, or JSON); {} for an empty file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text) if text.strip() else {}
    import yaml

    data = yaml.safe_load(text)
    return {} if data is None else data


def _why(e: Exception) -> str:
    """One line for a read error (a YAML error's own text spans several)."""
    mark = getattr(e, "problem_mark", None)
    if mark is not None:
        return f"invalid YAML at line {mark.line + 1}: {getattr(e, 'problem', '')}"
    if isinstance(e, OSError):
        return str(e.strerror or e)
    return " ".join(str(e).split())


def _dump(path: Path, data: Any) -> str:
    if path.suffix == ".json":
        return json.dumps(data, indent=2) + "\n"
    import yaml

    # Not allow_unicode: PyYAML writes some characters raw (U+0085) that its reader takes for
    # line breaks; escaped, every string reads back as it was.
    return str(yaml.safe_dump(data, sort_keys=False))


def import_entries(path: Path, op_name: str) -> list[dict[str, Any]]:
    """Flag entries (name, default, type) for every leaf of the project's config file."""
    try:
        data = load(path)
    except FileNotFoundError:
        raise GuildfileError(f"operation '{op_name}': flags-import: {path} does not exist") from None
    except Exception as e:  # OSError, UnicodeDecodeError, a JSON or YAML error
        raise GuildfileError(f"operation '{op_name}': flags-import: cannot read {path}: {_why(e)}") from None
    if not isinstance(data, dict):
        raise GuildfileError(f"operation '{op_name}': flags-import: {path} must hold a mapping of settings")
    out = []
    for name, value in leaves(data):
        entry: dict[str, Any] = {"name": name, "default": value}  # its source says the file; no help repeats it
        kind = scalar_type(value)
        if kind:
            entry["type"] = kind
        out.append(entry)
    return out


def leaves(tree: Mapping[Any, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of each leaf of a nested mapping (an empty mapping is a leaf)."""
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, name + ".")
        else:
            yield name, value


def _find(doc: Mapping[Any, Any], text: str) -> Any:
    """The key of ``doc`` spelled ``text`` (YAML keys may be numbers), or ``text``."""
    return next((k for k in doc if str(k) == text), text)


def _locate(doc: Any, name: str) -> list[Any]:
    """The keys leading to ``name`` in ``doc``: an existing key spelled with dots wins."""
    if isinstance(doc, dict):
        key = _find(doc, name)
        if key in doc:
            return [key]
        parts = name.split(".")
        for i in range(len(parts) - 1, 0, -1):
            head = _find(doc, ".".join(parts[:i]))
            if isinstance(doc.get(head), dict):
                return [head, *_locate(doc[head], ".".join(parts[i:]))]
    return name.split(".")


def set_flags(doc: dict[Any, Any], flags: Mapping[str, Any]) -> dict[Any, Any]:
    """``doc`` with each flag's value at its path (FlagError when a path runs into a value)."""
    for name, value in flags.items():
        keys = _locate(doc, name)
        node = doc
        for i, key in enumerate(keys[:-1]):
            nxt = node.setdefault(key, {})
            if not isinstance(nxt, dict):
                at = ".".join(str(k) for k in keys[: i + 1])
                raise FlagError(f"flag '{name}' cannot be written to the config file: '{at}' holds a value "
                                f"({nxt!r}), not a mapping")
            node = nxt
        node[keys[-1]] = list(value) if isinstance(value, tuple) else value
    return doc


def _get(doc: Any, name: str) -> tuple[bool, Any]:
    node = doc
    for key in _locate(doc, name):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b or (
        not isinstance(a, bool) and not isinstance(b, bool) and isinstance(a, (int, float))
        and isinstance(b, (int, float)) and a == b
    )


def _base(path: Path) -> dict[Any, Any]:
    try:
        data = load(path)
    except FileNotFoundError:
        return {}
    except Exception as e:  # unreadable or invalid: say so rather than overwrite it
        raise GuildliteError(f"cannot read the config file {path}: {_why(e)}", exit_code=2) from None
    if not isinstance(data, dict):
        raise GuildliteError(f"the config file {path} does not hold a mapping: flags cannot be written into it",
                             exit_code=2)
    return data


def check(flags_dest: str, flags: Mapping[str, Any], project: Path) -> None:
    """Before staging: every flag can be written into the project's file (FlagError if not)."""
    rel = config_path(flags_dest)
    if rel is not None:
        set_flags(_base(project / rel), flags)


def write(flags_dest: str, flags: Mapping[str, Any], run_dir: Path, project: Path | None = None) -> Path | None:
    """Write the flags into FILE in the run dir, keeping the rest of its staged copy (or, when
    the source selection left it out, of the project's FILE)."""
    rel = config_path(flags_dest)
    if rel is None:
        return None
    from ._files import atomic_write

    path = run_dir / rel
    base = path if path.exists() or project is None else project / rel
    doc = set_flags(_base(base), flags)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, _dump(path, doc))
    return path


def verify(flags_dest: str, flags: Mapping[str, Any], run_dir: Path) -> None:
    """After ``on_run_staged``: FILE holds every flag's value (GuildliteError naming those it does not)."""
    rel = config_path(flags_dest)
    if rel is None:
        return
    path = run_dir / rel
    try:
        doc = load(path)
    except Exception as e:
        raise GuildliteError(f"flags-dest {flags_dest}: cannot read {rel} back before launch: {_why(e)}") from None
    wrong = []
    for name, value in flags.items():
        found, got = _get(doc, name)
        if not found:
            wrong.append(f"'{name}' is missing")
        elif not _same(got, list(value) if isinstance(value, tuple) else value):
            wrong.append(f"'{name}' is {got!r}, not {value!r}")
    if wrong:
        raise GuildliteError(f"flags-dest {flags_dest}: {rel} does not hold the run's flags before launch: "
                             + "; ".join(wrong))
