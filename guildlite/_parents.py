"""Virtual parent runs: a batch and a pipeline, under one rule.

A virtual parent has no job of its own, only children (a batch's trials, a pipeline's steps),
which are ordinary runs with every hook (``on_run_staged``, ``on_run_begin``, ``on_run_end``). The
parent is staged as a record alone (no source, no command), gets ``on_run_begin`` before its first
child starts and ``on_run_end`` after its last child ends (never ``on_run_staged``), is
``running`` while its children run, and ends by them (``_status.parent_end``): ``terminated`` when
stopped, ``error`` when a child that had to complete did not, else ``completed``. Each child's
record names it as its ``parent``; its own lists them (``trials``, ``steps``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ._files import now_iso
from ._plugins import HookFailed
from ._staging import new_run, publish, staging
from ._status import move, parent_end
from ._supervisor import write_launch

if TYPE_CHECKING:
    from ._lifecycle import RunConfig
    from ._plugins import Dispatcher
    from ._run import Run


class VirtualParents:
    """The part of ``_lifecycle.Session`` that stages, begins, runs and ends virtual parents."""

    if TYPE_CHECKING:
        cfg: RunConfig
        hooks: Dispatcher
        stopping: int | None
        parent: Run | None
        _open: dict[str, Run]

        def end(self, run: Run, status: str, exit_code: int | None = None,
                error: dict[str, Any] | None = None, hooks: bool = True) -> None: ...

    def stage_parent(self, flags: dict[str, Any], **kw: Any) -> Run:
        """Stage a virtual parent run (``kw``: its record's fields) and keep it open; under this
        session's own parent, if it has one (a batch that is a pipeline's step)."""
        parent = new_run(self.cfg, flags, parent_id=self.parent.id if self.parent else None, **kw)
        parent._parent = self.parent
        with staging(parent, self.cfg.runs_dir):
            parent.cmd = []
            parent.paths.meta.mkdir(exist_ok=True)
            write_launch(parent.paths.meta, dict(self.cfg.launch))
            parent.claim()
            parent.create()
            publish(parent, self.cfg.runs_dir)
        self._open[parent.id] = parent
        return parent

    def begin_parent(self, parent: Run) -> bool:
        """A virtual parent's ``on_run_begin``; False if it ended instead (a veto)."""
        move(parent, "pending")
        parent.claim()
        parent.save()
        try:
            self.hooks.call("on_run_begin", parent)
        except HookFailed as e:
            self.end(parent, e.status, error=e.info)
            return False
        return True

    def run_children(self, parent: Run, go: Callable[[], str | None]) -> None:
        """Run a virtual parent while ``go`` runs its children, then end it by ``parent_end`` with
        the failure ``go`` returns (None: every child that had to complete did)."""
        move(parent, "running")
        parent.started = now_iso()
        parent.save()
        failure = go()
        status, error = parent_end(self.stopping is not None, failure, "pipeline" if parent.is_pipeline else "batch")
        self.end(parent, status, error=error)
