"""Slots (CPU places, disjoint GPU sets), visible GPUs, and the queue that runs jobs on slots."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from guildlite._errors import GuildliteError
from guildlite._launch import Job
from guildlite._scheduler import Scheduler
from guildlite._slots import Slot, make_slots, visible_gpus


def test_cpu_slots() -> None:
    assert make_slots(3, 0, []) == [Slot(0), Slot(1), Slot(2)]
    assert all(s.gpus is None for s in make_slots(2, 0, ["0", "1"]))  # gpus-per-trial 0: GPUs untouched


def test_gpu_slots_are_disjoint_sets() -> None:
    gpus = ["0", "1", "2", "3"]
    assert make_slots(2, 2, gpus) == [Slot(0, ("0", "1")), Slot(1, ("2", "3"))]
    assert make_slots(4, 1, gpus) == [Slot(i, (str(i),)) for i in range(4)]
    # more parallelism than GPU groups: one slot per group; a remainder GPU stays unused
    assert make_slots(8, 3, gpus) == [Slot(0, ("0", "1", "2"))]
    assert make_slots(1, 2, gpus) == [Slot(0, ("0", "1"))]
    slots = make_slots(3, 1, ["7", "5", "3"])
    used = [g for s in slots for g in s.gpus or ()]
    assert used == ["7", "5", "3"] and len(set(used)) == len(used)


def test_not_enough_gpus() -> None:
    with pytest.raises(GuildliteError) as e:
        make_slots(1, 4, ["0", "1"])
    assert e.value.exit_code == 2
    assert "needs 4 GPU(s) per trial" in str(e.value) and "2 visible (0,1)" in str(e.value)
    with pytest.raises(GuildliteError, match="none visible"):
        make_slots(2, 1, [])


def test_parallel_must_be_positive() -> None:
    with pytest.raises(GuildliteError, match="--parallel must be at least 1"):
        make_slots(0, 0, [])


def test_visible_gpus_from_an_explicit_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "9")
    assert visible_gpus("0,1,2,3") == ["0", "1", "2", "3"]
    assert visible_gpus(" 2, 3 ,") == ["2", "3"]
    assert visible_gpus("") == []


def test_visible_gpus_from_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert visible_gpus() == ["1", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5f2c,GPU-77aa")
    assert visible_gpus() == ["GPU-5f2c", "GPU-77aa"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []


# --- the queue, with real jobs ---------------------------------------------------------------------


def _job_starter(tmp_path: Path, seconds: float, log: list[tuple[str, str, int]]) -> Callable[..., Job]:
    """A Scheduler start callback that launches a real `python -c 'sleep'` job per item."""
    running: set[str] = set()

    def start(item: str, slot: Slot, done: Callable[[Job, int], None]) -> Job:
        code = f"import time, sys; time.sleep({seconds}); print('done {item}'); sys.exit({int(item == 'fail')})"
        job = Job([sys.executable, "-c", code], tmp_path, {"PATH": "/usr/bin:/bin"}, tmp_path / f"{item}.log",
                  echo=False, on_exit=done)
        job.start()
        running.add(item)
        log.append(("start", item, len(running)))
        job.item = item  # type: ignore[attr-defined]
        return job

    def finish(item: str, code: int, job: Job) -> None:
        running.discard(item)
        log.append(("end", item, code))

    start.finish = finish  # type: ignore[attr-defined]
    return start


def test_scheduler_runs_every_item_at_most_slots_at_once(tmp_path: Path) -> None:
    log: list[tuple[str, str, int]] = []
    start = _job_starter(tmp_path, 0.2, log)
    items = ["a", "b", "fail", "d", "e"]
    sched: Scheduler[str] = Scheduler([Slot(0), Slot(1)], start, start.finish)  # type: ignore[attr-defined]
    assert sched.run(items) == []
    starts = [e for e in log if e[0] == "start"]
    ends = {e[1]: e[2] for e in log if e[0] == "end"}
    assert [e[1] for e in starts] == items  # launched in order
    assert max(e[2] for e in starts) == 2  # never more than the two slots
    assert ends == {"a": 0, "b": 0, "fail": 1, "d": 0, "e": 0}
    assert all((tmp_path / f"{i}.log").read_text() == f"done {i}\n" for i in items)


def test_scheduler_hold_stops_launching(tmp_path: Path) -> None:
    log: list[tuple[str, str, int]] = []
    start = _job_starter(tmp_path, 0.0, log)
    sched: Scheduler[str] = Scheduler([Slot(0)], start, lambda item, code, job: setattr(sched, "hold", True))
    assert sched.run(["a", "b", "c"]) == ["b", "c"]  # never started: handed back in order


def test_scheduler_stop_forwards_the_signal_and_returns_the_rest(tmp_path: Path) -> None:
    log: list[tuple[str, str, int]] = []
    start = _job_starter(tmp_path, 60, log)
    sched: Scheduler[str] = Scheduler([Slot(0), Slot(1)], start, start.finish)  # type: ignore[attr-defined]

    def stop_when_both_run() -> None:
        while len(sched.running) < 2:
            threading.Event().wait(0.02)
        sched.stop(signal.SIGTERM)

    t = threading.Thread(target=stop_when_both_run)
    t.start()
    left = sched.run(["a", "b", "c", "d"])
    t.join()
    assert left == ["c", "d"]
    ends = {e[1]: e[2] for e in log if e[0] == "end"}
    assert ends == {"a": -signal.SIGTERM, "b": -signal.SIGTERM}


def test_scheduler_draws_each_item_only_when_a_slot_is_free(tmp_path: Path) -> None:
    # A source that makes its items as they are drawn (a search's next trial): each is drawn once
    # a slot is free and after every exit seen so far was finished, so it can know how they ended.
    log: list[tuple[str, str, int]] = []
    start = _job_starter(tmp_path, 0.1, log)
    drawn: list[tuple[str, int, int]] = []  # (item, running, ended) when drawn

    def source() -> Iterator[str]:
        for i in range(5):
            drawn.append((f"t{i}", len(sched.running), sum(e[0] == "end" for e in log)))
            yield f"t{i}"

    sched: Scheduler[str] = Scheduler([Slot(0), Slot(1)], start, start.finish)  # type: ignore[attr-defined]
    assert sched.run(source()) == []
    assert [d[0] for d in drawn] == [f"t{i}" for i in range(5)]
    assert all(running < 2 for _, running, _ in drawn)  # never drawn while both slots were busy
    assert [ended for _, _, ended in drawn][2:] == [1, 2, 3]  # the third after the first end, and so on
    assert sorted(e[1] for e in log if e[0] == "end") == [f"t{i}" for i in range(5)]
