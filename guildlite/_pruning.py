"""Pruning at run time: a built-in ``on_run_progress`` hook that stops a batch's trials whose
objective scalar, step by step, the batch's pruner judges not worth finishing.

It is a plugin on the public API (``guildlite.Plugin``, the ``Run`` view, ``StopRun``), as the
other built-ins are, and joins a session's plugins when that session runs the trials of a batch
whose search prunes (``batch["search"]["prune"]``: ``--prune median|asha``, with an optimizer or
over a plain grid or random batch) or has an optimizer (whose ``report`` may prune too). Each time
new scalars arrive it gives the trial's values of the search's scalar (``--minimize/--maximize``)
to the batch's study (``_study.Study.report``), which answers whether to prune; then
``StopRun(..., pruned=True)`` stops the trial through its backend's own stop (SIGTERM to torchrun
and every rank; a cancel of the cluster job), and it ends ``pruned``: its slot (and GPU lease) is
free for the next trial as soon as the job exits.

Steps: a value is reported at the step the script gave it (``step: N``). A value at a step that is
not after the last one reported (a script that prints no ``step:`` lines, or the objective printed
twice at one step) is reported at the next step, so that the k-th value of every trial is compared
with the k-th value of the others, and a script without steps can be pruned too.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from ._builtins import BUILTIN_PRIORITY
from ._plugins import Plugin, StopRun

if TYPE_CHECKING:
    from ._plugins import Dispatcher
    from ._run import Run as StoredRun
    from ._runview import Run


def prunes(batch_record: Mapping[str, Any] | None) -> bool:
    """Whether a batch's record (its ``batch`` field) may prune its trials: its search asks for a
    pruner (``--prune``), or has an optimizer (whose ``report`` may say prune)."""
    search = (batch_record or {}).get("search")
    return isinstance(search, Mapping) and (isinstance(search.get("prune"), Mapping)
                                            or isinstance(search.get("optimizer"), str))


def join(hooks: Dispatcher, batch: StoredRun) -> None:
    """Add ``Pruning`` to ``hooks`` (once) when ``batch`` prunes: first among its priority ties,
    as the built-ins are declared first."""
    if prunes(batch.batch) and not any(isinstance(p, Pruning) for p in hooks.plugins):
        hooks.plugins.insert(0, Pruning())


class Pruning(Plugin):
    """Prune the trials of batches whose search says so (see the module's docstring); one
    instance serves every batch of a session, each with its own study."""

    priority = BUILTIN_PRIORITY

    def __init__(self) -> None:
        self._last_step: dict[str, int] = {}  # trial id -> the last step reported

    def on_run_progress(self, run: Run) -> None:
        batch = run.parent if run.is_trial else None
        if batch is None or not batch.is_batch or not prunes(batch.batch):
            return
        from ._study import Study

        # The process's one object of the batch's study (``Study.open``), which its search (the
        # optimizer, whose report may prune) uses too.
        study = Study.open(batch)  # type: ignore[arg-type]  # reads the view's fields only
        if study is None or (study.spec.prune is None and study.on_report is None):
            return  # nothing would ever say prune
        scalar = study.spec.scalar
        for row in run.new_scalars:
            if row.get("key") != scalar:
                continue
            value = row.get("value")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                continue  # a row a script wrote itself (scalars.jsonl) is input: not a number, not a value
            step = self._step(run.id, row.get("step"))
            # None: the script printed NaN or inf (not JSON); given as NaN, for the study to judge.
            try:
                value = float("nan") if value is None else float(value)
            except OverflowError:  # an integer past any float (a row a script wrote): not finite either
                value = float("nan")
            if study.report(run, step, value):  # type: ignore[arg-type]  # reads the view's id and flags only
                shown = "nan" if math.isnan(value) else f"{value:g}"
                run.attrs[self.name] = {"step": step, "value": None if math.isnan(value) else value}
                by = study.spec.prune.kind if study.spec.prune is not None else f"optimizer {study.spec.optimizer}"
                raise StopRun(f"pruned ({by}) at step {step}: {scalar} {shown}", pruned=True)

    def _step(self, trial_id: str, step: Any) -> int:
        last = self._last_step.get(trial_id)
        given = step if isinstance(step, int) and not isinstance(step, bool) else None
        step = given if given is not None and (last is None or given > last) else (-1 if last is None else last) + 1
        self._last_step[trial_id] = step
        return step
