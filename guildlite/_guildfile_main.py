"""An op's ``main``: a script inside the project, or a module found in the project or installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ._yaml_lines import YamlChecks, _brief, _kind


class MainChecks(YamlChecks):
    """The check of an op's ``main`` (the guildfile's validator is one of these)."""

    def main(self, parent: Any, m: Mapping[Any, Any], where: str) -> None:
        import re
        import shlex

        main = m.get("main")
        if "main" in m and main is not None and not isinstance(main, str):
            raise self.fail(m, "main", f"{where}: 'main' must be a string (a script or module with optional fixed "
                            f"args, e.g. 'train.py --fast'), got {_kind(main)}"
                            + ("" if isinstance(main, (list, dict)) else f" {_brief(main)}"))
        if not isinstance(main, str) or not main.strip():
            raise self.fail(m if "main" in m else parent, "main", f"{where}: 'main' (the script to run) is required")
        try:
            first = shlex.split(main)[0]
        except (ValueError, IndexError) as e:
            raise self.fail(m, "main", f"{where}: cannot split 'main' {main!r}: {e}") from None
        root = self.path.parent
        if first.endswith(".py") or "/" in first:
            script = (root / first).resolve()
            if not _inside(script, root):
                raise self.fail(m, "main", f"{where}: 'main' {main!r} is outside the project directory")
            if not script.is_file():
                raise self.fail(m, "main", f"{where}: 'main' script {first!r} does not exist in {root}")
            return
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", first):
            raise self.fail(m, "main", f"{where}: 'main' {first!r} is neither a .py script nor a module name")
        as_path = root.joinpath(*first.split("."))
        if as_path.with_suffix(".py").is_file() or (as_path / "__main__.py").is_file():
            return
        import importlib.util

        top = first.split(".")[0]
        try:  # `__main__` is this process's own main module, never an op's
            installed = top != "__main__" and importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            installed = False
        if (root / top).is_dir() or installed:
            return  # an installed or namespace package: the submodule is found at run time
        raise self.fail(m, "main", f"{where}: module {first!r} not found in {root} or installed packages")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root.resolve())
        return True
    except ValueError:
        return False
