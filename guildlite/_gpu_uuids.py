"""GPU identity: the UUID behind a GPU id, so a lease names the device, not its place in a list.

``--gpus 0,1`` and ``CUDA_VISIBLE_DEVICES`` name GPUs by index or by UUID (``GPU-...``, a unique
prefix of one, or a MIG instance ``MIG-...``). Two invocations may name the same device
differently (``0`` here, ``GPU-8f2c...`` there): leasing by UUID makes them agree. Indices are
nvidia-smi's (PCI bus order), as CUDA's are when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; on a machine
mixing GPU models CUDA's default order may differ, so pass UUIDs there.

The map comes from ``nvidia-smi`` once per process; ``GUILDLITE_GPU_UUIDS=0:GPU-aaa,1:GPU-bbb``
replaces it (for tests and CPU machines). With neither, an id is its own key.
"""

from __future__ import annotations

import os

from ._errors import GuildliteError

UUIDS_ENV = "GUILDLITE_GPU_UUIDS"
_UUID_PREFIXES = ("GPU-", "MIG-")

_cache: dict[str, dict[str, str]] = {}  # by the UUIDS_ENV value ("" for nvidia-smi): index -> UUID


def _parse_env(value: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in value.split(","):
        index, sep, uuid = (part.strip() for part in item.partition(":"))
        if not item.strip():
            continue
        if not sep or not index or not uuid:
            raise GuildliteError(f"{UUIDS_ENV}={value!r}: each item must be INDEX:UUID, such as 0:GPU-aaa",
                                 exit_code=2)
        found[index] = uuid
    return found


def _query_nvidia_smi() -> dict[str, str]:
    if not _on_path("nvidia-smi"):
        return {}
    import subprocess
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if out.returncode != 0:
        return {}
    found = {}
    for line in out.stdout.splitlines():
        index, _, uuid = (part.strip() for part in line.partition(","))
        if index and uuid.startswith(_UUID_PREFIXES):
            found[index] = uuid
    return found


def _on_path(name: str) -> bool:
    # (not shutil.which: on a machine without GPUs this is all the lookup does, and importing
    # shutil and subprocess for it would cost more than the rest of a lease)
    paths = (os.path.join(d or ".", name) for d in os.environ.get("PATH", "").split(os.pathsep))
    return any(os.path.isfile(p) and os.access(p, os.X_OK) for p in paths)


def uuid_map() -> dict[str, str]:
    """GPU index -> UUID on this machine ({} when unknown); asked once per process."""
    key = os.environ.get(UUIDS_ENV, "")
    if key not in _cache:
        _cache[key] = _parse_env(key) if key else _query_nvidia_smi()
    return _cache[key]


def gpu_key(gpu_id: str) -> str:
    """The name a lease on GPU ``gpu_id`` goes by: its UUID where it is known, else the id itself.

    An id that is a UUID (or a unique prefix of a known one, as CUDA accepts) stays a UUID; an
    index is looked up. Only GPU ids are mapped: other tokens are never passed here.
    """
    gpu_id = gpu_id.strip()
    known = uuid_map()
    if gpu_id.startswith(_UUID_PREFIXES):
        matches = [u for u in known.values() if u.startswith(gpu_id)]
        return matches[0] if len(matches) == 1 else gpu_id
    return known.get(gpu_id, gpu_id)
