"""An ``on_run_staged`` plugin that rewrites a constant in the run's staged copy of a file.

``on_run_staged`` fires once the run dir holds its copy of the source and before the job
starts, so an edit here is what the job runs, while the project file stays as it is. The
built-in ``SourceSnapshot`` (priority 10, before this plugin's 100) has already recorded the
files as copied, so ``guildlite diff RUN`` shows exactly what the plugin changed.

args: ``file`` (relative to the run dir), ``name`` (an ALL_CAPS module-level constant), ``value``
(any YAML scalar; written as a Python literal). A file or constant that is not there stops the
run (an exception in ``on_run_staged``: status error, traceback in ``output.log``): a silent
no-op would run the wrong experiment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from guildlite import Plugin, Run


class SetConstant(Plugin):
    def __init__(self, name: str, value: Any, file: str = "train.py") -> None:
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", str(name)):
            raise ValueError(f"name must be an ALL_CAPS constant name, got {name!r}")
        if Path(file).is_absolute() or ".." in Path(file).parts:
            raise ValueError(f"file must be a path inside the run dir, got {file!r}")
        if not isinstance(value, (int, float, str, bool)):
            raise TypeError(f"value must be a number, string or boolean, got {value!r}")
        self.file, self.constant, self.value = file, name, value

    def on_run_staged(self, run: Run) -> None:
        path = Path(run.run_dir) / self.file
        text = path.read_text(encoding="utf-8")
        pattern = re.compile(rf"^({re.escape(self.constant)}\s*=\s*)(.+?)(\s*(#.*)?)$", re.MULTILINE)
        found = pattern.search(text)
        if found is None:
            raise LookupError(f"no line '{self.constant} = ...' in {self.file}")
        old = found.group(2)
        new = repr(self.value)
        path.write_text(pattern.sub(lambda m: m.group(1) + new + m.group(3), text, count=1), encoding="utf-8")
        run.attrs.setdefault("set_constant", []).append({"file": self.file, "name": self.constant, "old": old,
                                                          "new": new})
