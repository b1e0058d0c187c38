"""``guildlite check``: what a run needs here, one finding per line, and whether it is there.

Versions (guildlite, python, torch, CUDA), the GPUs this machine shows, each installed backend's
own lines (``Backend.check``), the runs dir (writable, its lock mode), the guildfile (valid) and
its plugins (importable). A finding is ``ok``, ``warn`` (worth knowing; runs still work) or
``fail`` (something a run of this project needs is broken: the command exits 1).

torch is never imported in this process (the CLI stays light): its version comes from its
package metadata, and CUDA from a short ``python -c`` that imports it (the only slow line, a
second or more, bounded by ``CUDA_TIMEOUT``; skipped for a ``+cpu`` wheel).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._guildfile import Guildfile, PluginSpec

CUDA_TIMEOUT = 60.0  # seconds for `import torch` and its CUDA query (a cold import from NFS is slow)
NVIDIA_SMI_TIMEOUT = 20.0

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    """One line of ``guildlite check``: what was checked, how it stands, and what was found."""

    what: str
    status: Status
    text: str


def check(runs_dir: Path | None = None, guildfile: Path | None = None) -> list[Finding]:
    """Every finding for this machine and the project found here (or at ``guildfile``)."""
    gf, gf_finding = _guildfile(guildfile)
    uses_torch = gf is None or any(op.launcher == "torchrun" and not op.steps for op in gf.operations.values())
    out = [_guildlite(), _python(), _torch(uses_torch), _cuda(), _gpus()]
    out += _backends(gf)
    out.append(_runs_dir(runs_dir, guildfile, gf))
    out.append(gf_finding)
    out += _plugins(gf)
    return out


def failed(findings: list[Finding]) -> bool:
    """Whether something a run needs is broken."""
    return any(f.status == "fail" for f in findings)


def as_json(findings: list[Finding]) -> str:
    return json.dumps({"ok": not failed(findings), "checks": [asdict(f) for f in findings]}, indent=2)


# --- the findings ----------------------------------------------------------------------------------


def _guildlite() -> Finding:
    from . import __version__

    return Finding("guildlite", "ok", f"{__version__} ({Path(__file__).resolve().parent})")


def _python() -> Finding:
    return Finding("python", "ok", f"{platform.python_version()} ({sys.executable})")


def _torch(needed: bool) -> Finding:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return Finding("torch", "ok", version("torch"))
    except PackageNotFoundError:
        why = "not installed: torchrun ops cannot run (pip install torch)" if needed else "not installed"
        return Finding("torch", "fail" if needed else "warn", why)


_CUDA_PROBE = (
    "import json, torch\n"
    "ok = torch.cuda.is_available()\n"
    "print(json.dumps({'cuda': torch.version.cuda, 'available': ok, 'devices': torch.cuda.device_count() if ok else 0,"
    " 'names': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if ok else []}))\n"
)


def _cuda() -> Finding:
    """CUDA as torch sees it, from a child process (torch is never imported here)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        return Finding("cuda", "warn", "unknown (no torch)")
    if torch_version.endswith("+cpu"):  # the wheel's local tag says it: no need to import it (seconds)
        return Finding("cuda", "ok", f"none: a CPU build of torch ({torch_version})")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    try:
        proc = subprocess.run([sys.executable, "-c", _CUDA_PROBE], capture_output=True, text=True,
                              timeout=CUDA_TIMEOUT, stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        return Finding("cuda", "warn", f"unknown: import torch took over {CUDA_TIMEOUT:.0f} s")
    except OSError as e:
        return Finding("cuda", "fail", f"cannot start {sys.executable}: {e}")
    try:
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}, no output"])[-1]
        return Finding("cuda", "fail", f"import torch failed: {tail}")
    if not info.get("cuda"):
        return Finding("cuda", "ok", "none: a CPU build of torch")
    if not info.get("available"):
        return Finding("cuda", "warn", f"torch built with CUDA {info['cuda']}, but no CUDA device is available")
    names = ", ".join(info.get("names") or [])
    return Finding("cuda", "ok", f"{info['cuda']}, {info['devices']} device(s) visible to torch: {names}")


def _gpus() -> Finding:
    """The GPUs nvidia-smi lists (every GPU of the machine; CUDA_VISIBLE_DEVICES narrows a run's)."""
    smi = shutil.which("nvidia-smi")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    narrowed = f"; CUDA_VISIBLE_DEVICES={visible}" if visible is not None else ""
    if smi is None:
        return Finding("gpus", "ok", f"none seen (no nvidia-smi on PATH){narrowed}")
    try:
        proc = subprocess.run([smi, "--query-gpu=index,name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Finding("gpus", "warn", f"nvidia-smi failed: {e}")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return Finding("gpus", "warn", f"nvidia-smi failed: {tail[0]}")
    rows = [r.strip() for r in proc.stdout.splitlines() if r.strip()]
    return Finding("gpus", "ok", f"{len(rows)}: " + "; ".join(rows) + narrowed if rows else f"none{narrowed}")


def _backends(gf: Guildfile | None) -> list[Finding]:
    """Each installed backend's own lines (``Backend.check``). A problem of a backend this project's
    runs use fails; of another, it is only said."""
    from . import backends
    from ._errors import GuildliteError

    used = {"local"} if gf is None else {gf.backend, *(op.backend for op in gf.operations.values() if op.backend)}
    out = []
    for name in backends.names():
        bad: Status = "fail" if name in used else "warn"
        what = f"backend {name}" + (" (used)" if name in used and gf is not None else "")
        try:
            cls = backends.get(name)
            section = (gf.backend_sections.get(name) if gf is not None else None) or {}
            lines = cls(cls.make_options(section)).check()
        except GuildliteError as e:
            out.append(Finding(what, bad, str(e)))
            continue
        except Exception as e:  # noqa: BLE001  # a third-party backend's check must not hide the others
            out.append(Finding(what, bad, f"check failed: {type(e).__name__}: {e}"))
            continue
        if not lines:
            out.append(Finding(what, "ok", "installed"))
        for line in lines:
            ok = getattr(line, "ok", True)
            text = str(getattr(line, "text", line))
            text = text[len(name) + 2:] if text.startswith(f"{name}: ") else text  # named once, by `what`
            out.append(Finding(what, "ok" if ok else bad, text))
    return out


def _runs_dir(runs_dir: Path | None, guildfile: Path | None, gf: Guildfile | None) -> Finding:
    """Where runs go: writable (a file made and removed there, or in the parent it will be made
    in), and its lock mode."""
    from ._errors import GuildliteError
    from ._lock import lock_mode
    from ._runs_dir import default_runs_dir, option_runs_dir

    try:
        where = option_runs_dir(runs_dir) if runs_dir else default_runs_dir(gf)
    except GuildliteError as e:
        return Finding("runs dir", "fail", str(e))
    probe = where
    while not probe.exists() and probe != probe.parent:
        try:
            os.stat(probe)
        except OSError as e:
            if e.errno == errno.ELOOP:  # a link to itself (or a circle of them): no run gets through
                return Finding("runs dir", "fail", f"{where}: {probe}: {e.strerror}")
        probe = probe.parent  # made at the first run
    if not probe.is_dir():
        return Finding("runs dir", "fail", f"{where}: {probe} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".guildlite-check-"):
            pass
    except OSError as e:
        return Finding("runs dir", "fail", f"{where}: not writable ({e.strerror or e})")
    try:
        mode = lock_mode(probe)
    except (GuildliteError, OSError) as e:
        return Finding("runs dir", "fail", f"{where}: lock mode: {e}")
    made = "" if probe == where else f" (created at the first run, in {probe})"
    return Finding("runs dir", "ok", f"{where}: writable{made}, lock mode {mode.mode} ({mode.why})")


def _guildfile(path: Path | None) -> tuple[Guildfile | None, Finding]:
    from ._errors import GuildliteError
    from ._guildfile import GUILDFILE, find_guildfile, load

    found = path or find_guildfile()
    if found is not None and found.is_dir():
        found = found / GUILDFILE
    if found is None:
        return None, Finding("guildfile", "warn", f"none in {Path.cwd()} or above (scripts run as ops: guildlite run"
                                                  " train.py)")
    try:
        gf = load(found)
    except GuildliteError as e:
        return None, Finding("guildfile", "fail", str(e))
    n = len(gf.operations)
    warned = f"; {len(gf.warnings)} warning(s): {'; '.join(gf.warnings)}" if gf.warnings else ""
    return gf, Finding("guildfile", "warn" if gf.warnings else "ok", f"{gf.path}: valid, {n} operation(s){warned}")


def _plugins(gf: Guildfile | None) -> list[Finding]:
    """Each plugin the guildfile declares, imported and validated as a run would (once each); then
    each installed one (entry point) that it does not name, only imported: a run uses it only
    with ``--plugin NAME``, so a broken one is a warning."""
    declared = [] if gf is None else [*gf.plugins, *(s for op in gf.operations.values() for s in op.plugins)]
    return _declared_plugins(gf, declared) + _installed_plugins({s.name for s in declared if s.name})


def _declared_plugins(gf: Guildfile | None, declared: list[PluginSpec]) -> list[Finding]:
    from ._errors import GuildliteError
    from ._plugin_loader import load_plugins

    if gf is None:
        return []
    specs = {(s.cls, s.name, json.dumps(s.args, sort_keys=True, default=repr)): s for s in declared}
    out = []
    for spec in specs.values():
        what = f"plugin {spec.cls or spec.name}"
        try:
            load_plugins([spec], gf.dir)
        except GuildliteError as e:
            out.append(Finding(what, "fail", str(e)))
        except Exception as e:  # noqa: BLE001  # a plugin that breaks on import is what this looks for
            out.append(Finding(what, "fail", f"{spec.where}: {type(e).__name__}: {e}"))
        else:
            out.append(Finding(what, "ok", f"importable ({spec.where})"))
    if not specs:
        out.append(Finding("plugins", "ok", "none declared"))
    return out


def _installed_plugins(named: set[str]) -> list[Finding]:
    from ._entry_points import entry_points
    from ._plugin_loader import ENTRY_POINT_GROUP

    out = []
    for name, ep in sorted(entry_points(ENTRY_POINT_GROUP).items()):
        if name in named:
            continue  # checked as declared
        try:
            ep.load()
        except Exception as e:  # noqa: BLE001  # an installed plugin that breaks on import is what this looks for
            out.append(Finding(f"plugin {name}", "warn", f"installed ({ep.value}) but fails to import: "
                                                         f"{type(e).__name__}: {e}"))
        else:
            out.append(Finding(f"plugin {name}", "ok", f"installed ({ep.value}): --plugin {name}"))
    return out

