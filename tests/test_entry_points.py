"""guildlite's entry-point lookup (``_entry_points``, used at start-up to find the backends) finds
what ``importlib.metadata.entry_points(group=...)`` finds, on real distribution layouts on disk:
several dirs on ``sys.path``, the same distribution twice (the first one wins), names spelled
differently, egg-info files and dirs, comments, other groups; and hands layouts it does not
mirror (a zip on ``sys.path``) to importlib.metadata itself."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT, clean_env

COMPARE = """\
import json, sys
import importlib.metadata as m
from guildlite import _entry_points as e

out = {}
for group in sys.argv[1:]:
    mine = {k: [v.name, v.value, type(v).__module__] for k, v in e.entry_points(group).items()}
    theirs = {ep.name: [ep.name, ep.value] for ep in m.entry_points(group=group)}
    out[group] = {"mine": mine, "theirs": theirs, "scanned": e._scan(group) is not None}
print(json.dumps(out))
"""


def dist(where: Path, dirname: str, entry_points: str | None) -> None:
    d = where / dirname
    d.mkdir(parents=True)
    name, _, version = dirname.rpartition(".")[0].partition("-")
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version or '0'}\n")
    if entry_points is not None:
        (d / "entry_points.txt").write_text(entry_points)


def compare(paths: list[Path], *groups: str) -> dict[str, dict[str, object]]:
    env = clean_env(PYTHONPATH=":".join([*map(str, paths), str(ROOT)]))
    cp = subprocess.run([sys.executable, "-c", COMPARE, *groups], env=env, capture_output=True, text=True,
                        timeout=60, check=False)
    assert cp.returncode == 0, cp.stderr
    return dict(json.loads(cp.stdout))


def test_the_lookup_finds_what_importlib_metadata_finds(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    dist(a, "toy_engine-1.0.dist-info", "[guildlite.backends]\ntoy = toy_engine:Toy\n# a comment\n\n"
         "[console_scripts]\ntoy = toy_engine.cli:main\n")
    dist(b, "Toy.Engine-2.0.dist-info", "[guildlite.backends]\ntoy = other:Toy\nhidden = other:H\n")
    dist(b, "queue-0.1.dist-info", "  [guildlite.backends]  \n  queue = queue_backend:Q\nwarp=  warp.mod : W [extra]\n")
    dist(b, "noentries-1.0.dist-info", None)
    dist(b, "legacy-3.egg-info", "[guildlite.backends]\nlegacy = legacy:L\n")
    (b / "flat-1.0.egg-info").write_text("Metadata-Version: 1.0\nName: flat\nVersion: 1.0\n")  # a file
    out = compare([a, b], "guildlite.backends", "console_scripts", "nothing.here")
    for group, seen in out.items():
        assert seen["scanned"], group
        assert {k: v[:2] for k, v in seen["mine"].items()} == seen["theirs"], group
        assert all(v[2] == "guildlite._entry_points" for v in seen["mine"].values())
    found = out["guildlite.backends"]["mine"]
    assert found["toy"][1] == "toy_engine:Toy"  # a's, not b's Toy.Engine (the same distribution, later)
    assert {"queue", "legacy", "local", "slurm"} <= set(found) and "hidden" not in found
    assert found["warp"][1] == "warp.mod : W [extra]"


def test_a_zip_on_sys_path_goes_to_importlib_metadata(tmp_path: Path) -> None:
    z = tmp_path / "dists.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("zipped-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: zipped\nVersion: 1.0\n")
        f.writestr("zipped-1.0.dist-info/entry_points.txt", "[guildlite.backends]\nzipped = zipped:Z\n")
    seen = compare([z], "guildlite.backends")["guildlite.backends"]
    assert not seen["scanned"]
    assert seen["mine"]["zipped"][:2] == seen["theirs"]["zipped"] == ["zipped", "zipped:Z"]
