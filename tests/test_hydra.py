"""Hydra apps (``flags-dest: overrides``): a real ``@hydra.main`` app, run unmodified; every flag's
effect is asserted from the config the app printed, never from guildlite's record alone."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import Project, assert_clean_error, property_settings

pytest.importorskip("hydra")  # the `test` extra installs hydra-core

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from guildlite._hydra import encode  # noqa: E402

APP = textwrap.dedent(
    """\
    import json, os, sys
    import hydra
    from omegaconf import OmegaConf

    @hydra.main(version_base=None, config_path="conf", config_name="config")
    def main(cfg):
        print("ARGV0 " + sys.argv[0])
        print("CWD " + os.getcwd())
        print("CFG " + json.dumps(OmegaConf.to_container(cfg, resolve=True)))
        print("loss: " + str(cfg.model.lr * 2))
        from guildlite import log_scalars
        log_scalars(1, layers=cfg.model.layers)

    if __name__ == "__main__":
        main()
    """
)

CONFIG = textwrap.dedent(
    """\
    defaults:
      - db: mysql
      - _self_
    model:
      lr: 0.1
      layers: 2
      name: resnet
      width: ${model.layers}
    text:
      a: x
      b: x
      c: x
      d: x
      e: x
      f: x
    seed: 0
    debug: false
    """
)

GUILDFILE = textwrap.dedent(
    """\
    operations:
      app:
        main: app.py
        launcher: python
        flags-dest: overrides
        flags-import: all
        flags:
          extra: {default: 3}
      chdir:
        main: app.py hydra.job.chdir=true
        launcher: python
        flags-dest: overrides
        flags-import: all
    """
)


def _files() -> dict[str, str]:
    return {
        "app.py": APP,
        "conf/config.yaml": CONFIG,
        "conf/db/mysql.yaml": "driver: mysql\nuser: root\nport: 3306\n",
        "conf/db/postgres.yaml": "driver: postgres\nuser: pg\ntimeout: 10\n",
    }


@pytest.fixture
def hproj(make_project: Callable[..., Project]) -> Project:
    return make_project(GUILDFILE, _files())


def _printed(proj: Project, rec: dict[str, Any], key: str) -> str:
    log = (proj.runs_dir / rec["id"] / "output.log").read_text()
    lines = [line[len(key) + 1:] for line in log.splitlines() if line.startswith(key + " ")]
    assert len(lines) == 1, log
    return lines[0]


def _cfg(proj: Project, rec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(_printed(proj, rec, "CFG"))
    return out


def test_flags_import_reads_the_composed_config_as_dotted_flags(hproj: Project) -> None:
    flags = hproj.run_json("ops", "--json")["app"]["flags"]
    assert flags["model.lr"]["default"] == 0.1 and flags["model.lr"]["type"] == "float"
    assert flags["model.layers"]["default"] == 2 and flags["model.layers"]["type"] == "int"
    assert flags["debug"]["type"] == "bool" and flags["model.name"]["default"] == "resnet"
    assert flags["db"]["default"] == "mysql" and flags["db"]["choices"] == ["mysql", "postgres"]
    # Set by the group's chosen config: passed only when given.
    assert flags["db.user"]["default"] is None and flags["db.user"]["type"] == "str"
    assert "model.width" not in flags  # an interpolation: derived, not a flag
    assert flags["extra"]["source"] == "guildfile" and flags["model.lr"]["source"] == "hydra"


def test_nested_overrides_and_a_group_choice_reach_the_app(hproj: Project) -> None:
    cp = hproj.run("run", "app", "model.lr=0.5", "model.layers=4", "db=postgres", "debug=true", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = hproj.only_record()
    cfg = _cfg(hproj, rec)
    assert cfg["model"] == {"lr": 0.5, "layers": 4, "name": "resnet", "width": 4}  # width follows layers
    assert cfg["db"] == {"driver": "postgres", "user": "pg", "timeout": 10}  # the chosen group's own values
    assert cfg["debug"] is True and cfg["seed"] == 0
    assert cfg["extra"] == 3  # declared in the guildfile only: added with ++
    assert rec["flags"]["model.lr"] == 0.5 and rec["flags"]["db"] == "postgres"
    assert "++extra=3" in rec["cmd"] and "model.lr=0.5" in rec["cmd"]
    # Hydra's own output dir is inside the run dir (its cwd), never in the project.
    run_dir = hproj.runs_dir / rec["id"]
    assert _printed(hproj, rec, "CWD") == str(run_dir)
    assert (run_dir / "outputs").is_dir() and not (hproj.root / "outputs").exists()
    assert _printed(hproj, rec, "ARGV0") == "app.py"


def test_a_group_key_overrides_the_chosen_groups_value(hproj: Project) -> None:
    assert hproj.run("run", "app", "db.user=bob", "-y").returncode == 0
    assert _cfg(hproj, hproj.only_record())["db"] == {"driver": "mysql", "user": "bob", "port": 3306}


STRINGS = {
    "a": "hello world, x=y [z]",
    "b": "123",
    "c": "null",
    "d": "it's \"quoted\" ${model.lr} \\",
    "e": "",
    "f": "ünïcode:{}",
}


def test_strings_arrive_as_given_whatever_they_hold(hproj: Project) -> None:
    args = [f"text.{k}='{v}'" for k, v in STRINGS.items()]  # quoted: a string, not a number or list
    cp = hproj.run("run", "app", *args, "-y")
    assert cp.returncode == 0, cp.stderr + cp.stdout
    assert _cfg(hproj, hproj.only_record())["text"] == STRINGS


def test_a_batch_over_a_group_choice_runs_each_choice(hproj: Project) -> None:
    cp = hproj.run("run", "app", "db=[mysql,postgres]", "-y")
    assert cp.returncode == 0, cp.stderr
    trials = [r for r in hproj.records() if r.get("is_trial")]
    assert sorted(_cfg(hproj, t)["db"]["driver"] for t in trials) == ["mysql", "postgres"]


def test_a_bad_group_choice_or_unknown_key_fails_before_staging(hproj: Project) -> None:
    assert_clean_error(hproj.run("run", "app", "db=oracle", "-y"), 2, "db", "oracle")
    assert_clean_error(hproj.run("run", "app", "model.lrr=1", "-y"), 2, "model.lrr")
    assert hproj.run_dirs() == []


def test_hydra_changing_its_cwd_keeps_output_and_scalars(hproj: Project) -> None:
    cp = hproj.run("run", "chdir", "model.lr=0.25", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = hproj.only_record()
    run_dir = hproj.runs_dir / rec["id"]
    assert Path(_printed(hproj, rec, "CWD")).is_relative_to(run_dir / "outputs")
    scalars = [json.loads(line) for line in (run_dir / "scalars.jsonl").read_text().splitlines()]
    assert {"step": 0, "key": "loss", "value": 0.5} in scalars
    assert any(r["key"] == "layers" and r["value"] == 2 for r in scalars)  # log_scalars, from the sub-dir


def test_not_a_hydra_app_is_a_clean_error(make_project: Callable[..., Project]) -> None:
    proj = make_project(
        "operations:\n  t: {main: plain.py, launcher: python, flags-dest: overrides, flags-import: all}\n",
        {"plain.py": "print('hi')\n"},
    )
    cp = proj.run("run", "t", "-y")
    assert cp.returncode == 2 and "Traceback" not in cp.stderr
    assert cp.stderr.startswith("guildlite: error: operation 't': flags-import: plain.py --cfg all did not print a "
                                "Hydra config")
    assert "  hi" in cp.stderr and proj.run_dirs() == []  # the tail of what it printed


def test_overrides_without_import_pass_declared_flags_as_given(make_project: Callable[..., Project]) -> None:
    guildfile = textwrap.dedent(
        """\
        operations:
          app:
            main: app.py
            launcher: python
            flags-dest: overrides
            flags:
              model.lr: 0.1
              new-key: {default: 7, arg-name: +new_key}
        """
    )
    proj = make_project(guildfile, _files())
    cp = proj.run("run", "app", "model.lr=0.3", "-y")
    assert cp.returncode == 0, cp.stderr
    cfg = _cfg(proj, proj.only_record())
    assert cfg["model"]["lr"] == 0.3 and cfg["new_key"] == 7


# --- the encoding against Hydra's own parser and OmegaConf ---------------------------------------


def _through_hydra(value: Any) -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    parsed = OverridesParser.create().parse_override(f"k={encode(value)}")
    cfg = OmegaConf.create({"k": None})
    OmegaConf.update(cfg, "k", parsed.value(), merge=True)
    return OmegaConf.to_container(cfg, resolve=True)["k"]  # type: ignore[index]


scalars = st.one_of(
    st.booleans(), st.none(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
    st.sampled_from(["true", "False", "null", "NaN", "inf", "1e3", "0x1", "${a}", "\\${a}", "a,b", "[1]",
                     "'", '"', "\\", "a\\", "a b ", " ", "~x", "+1", "1_000", "-", ".5", "/p/q.txt"]),
)


@property_settings(300)
@given(st.one_of(scalars, st.lists(scalars, max_size=4)))
def test_every_value_reads_back_the_same_through_hydra(value: Any) -> None:
    assert _through_hydra(value) == value


@pytest.mark.parametrize("value, text", [
    ("sgd", "sgd"), ("a b", "'a b'"), ("123", "'123'"), ("true", "'true'"), ("", "''"), (True, "true"),
    (None, "null"), (0.1, "0.1"), ([1, "x"], "[1,x]"), ("/data/x.txt", "/data/x.txt"), ("it's", "\"it's\""),
])
def test_strings_are_quoted_only_when_needed(value: Any, text: str) -> None:
    assert encode(value) == text


def test_a_mapping_no_override_can_spell_is_left_to_the_config(make_project: Callable[..., Project]) -> None:
    files = {**_files(), "conf/config.yaml": CONFIG + "odd:\n  - {'a b': 1}\n"}
    proj = make_project(GUILDFILE, files)
    flags = proj.run_json("ops", "--json")["app"]["flags"]
    assert "odd" not in flags and "model.lr" in flags
    assert proj.run("run", "app", "-y").returncode == 0
    assert _cfg(proj, proj.only_record())["odd"] == [{"a b": 1}]


# --- `+key=value` overrides, in a project laid out like the Hydra docs' ----------------------------

DOCS_APP = textwrap.dedent(
    """\
    import json
    import logging

    import hydra
    from omegaconf import DictConfig, OmegaConf

    log = logging.getLogger(__name__)


    @hydra.main(version_base=None, config_path="conf", config_name="config")
    def train(cfg: DictConfig) -> None:
        with open("seen.json", "w") as f:
            json.dump(OmegaConf.to_container(cfg, resolve=False), f)
        log.info("model %s", cfg.model.name)
        print(f"val_loss: {cfg.optimizer.lr * 2}")


    if __name__ == "__main__":
        train()
    """
)


@pytest.fixture
def docs_proj(make_project: Callable[..., Project]) -> Project:
    gf = "operations:\n  train:\n    main: train.py\n    launcher: python\n    flags-dest: overrides\n    flags-import: all\n"
    return make_project(gf, {
        "train.py": DOCS_APP,
        "conf/config.yaml": "defaults:\n  - model: resnet\n  - optimizer: adam\n  - _self_\n\nseed: 42\n"
                            "trainer:\n  max_epochs: 3\n  precision: \"32\"\n",
        "conf/model/resnet.yaml": "name: resnet\ndepth: 18\n",
        "conf/model/vit.yaml": "name: vit\ndepth: 12\npatch: 16\n",
        "conf/optimizer/adam.yaml": "lr: 0.001\n",
        "conf/optimizer/sgd.yaml": "lr: 0.1\nmomentum: 0.9\n",
    })


def _seen(proj: Project, run_id: str) -> dict[str, Any]:
    seen: dict[str, Any] = json.loads((proj.runs_dir / run_id / "seen.json").read_text())
    return seen


def test_plus_key_overrides_add_keys_and_a_restart_keeps_them(docs_proj: Project) -> None:
    """``+key=VALUE`` (add a key the config lacks) and ``++key=VALUE`` (add or override), as a
    Hydra user types them: they were refused as flag names."""
    cp = docs_proj.run("run", "train", "model=vit", "+trainer.grad_clip=0.5", "++trainer.precision=16",
                       "+extra.name=a b", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = docs_proj.only_record()
    seen = _seen(docs_proj, rec["id"])
    assert seen["trainer"] == {"max_epochs": 3, "precision": "16", "grad_clip": 0.5}
    assert seen["extra"] == {"name": "a b"} and seen["model"]["name"] == "vit"
    assert rec["flags"]["trainer.grad_clip"] == 0.5 and rec["flags"]["extra.name"] == "a b"
    assert rec["flags"]["trainer.precision"] == "16"
    assert "+trainer.grad_clip=0.5" in rec["cmd"] and "+trainer.grad_clip=0.5" in rec["opspec"]  # as typed
    (docs_proj.runs_dir / rec["id"] / "seen.json").unlink()
    cp = docs_proj.run("run", "--restart", rec["id"], "-y")
    assert cp.returncode == 0, cp.stderr
    assert _seen(docs_proj, rec["id"]) == seen  # the added keys again, not dropped


def test_plus_key_overrides_in_a_batch_and_the_refusals(docs_proj: Project) -> None:
    cp = docs_proj.run("run", "train", "+extra.k=[1,2]", "optimizer=sgd", "-y")
    assert cp.returncode == 0, cp.stderr
    trials = [r for r in docs_proj.records() if r.get("is_trial")]
    assert sorted(_seen(docs_proj, t["id"])["extra"]["k"] for t in trials) == [1, 2]
    assert sorted(t["flags"]["extra.k"] for t in trials) == [1, 2]
    before = len(docs_proj.records())
    # Hydra refuses to append a key the config has, and `+++` is no override syntax.
    assert_clean_error(docs_proj.run("run", "train", "+seed=1", "-y"), 2, "seed=1")
    assert_clean_error(docs_proj.run("run", "train", "+++x=1", "-y"), 2, "+++x")
    assert len(docs_proj.records()) == before


def test_a_hydra_app_run_by_its_file_name_takes_overrides(docs_proj: Project) -> None:
    """``guildlite run train.py model=vit`` with no guildfile, as ``python train.py model=vit``: it
    was refused ("flags-import reads argparse parsers and module globals, but train.py uses
    hydra, omegaconf: declare its flags in the guildfile")."""
    (docs_proj.root / "guildfile.yml").unlink()
    cp = docs_proj.run("run", "train.py", "model=vit", "optimizer.lr=0.25", "+extra=on", "-y")
    assert cp.returncode == 0, cp.stderr
    rec = docs_proj.only_record()
    seen = _seen(docs_proj, rec["id"])
    assert seen["model"] == {"name": "vit", "depth": 12, "patch": 16} and seen["optimizer"] == {"lr": 0.25}
    assert seen["extra"] == "on" and rec["flags"]["model"] == "vit" and rec["flags"]["optimizer.lr"] == 0.25
    assert_clean_error(docs_proj.run("run", "train.py", "model=nosuch", "-y"), 2, "nosuch")
