"""A search: the ``run`` options that ask for one (``search_spec``), and the trials it proposes one
at a time as slots free up (``Feed``), each told to its study and optimizer when it ends.

A batch with a search has a study (``_study``); with an optimizer its trials are not planned up
front: the scheduler draws the next one from the feed when a slot is free, and the optimizer
proposes it knowing how every trial before it ended.
"""

from __future__ import annotations

from typing import Literal

from ._errors import GuildliteError
from ._study import PruneSpec, SearchSpec


def search_spec(
    *,
    optimizer: str | None = None,
    minimize: str | None = None,
    maximize: str | None = None,
    objective: str | None = None,
    max_trials: int | None = None,
    seed: int | None = None,
    prune: str | None = None,
    prune_min_steps: int | None = None,
    prune_warmup: int | None = None,
    prune_reduction_factor: int | None = None,
) -> SearchSpec | None:
    """The search the ``run`` options ask for, or None (none of them given); GuildliteError (exit 2)
    for options that do not go together. Nothing is imported or looked up here: the optimizer's
    name is checked where the search is planned (``_optimizers.load``)."""
    prune_opts = {"--prune-min-steps": prune_min_steps, "--prune-warmup": prune_warmup,
                  "--prune-reduction-factor": prune_reduction_factor}
    if prune is None:
        stray = [k for k, v in prune_opts.items() if v is not None]
        if stray:
            raise GuildliteError(f"{stray[0]} goes with --prune median|asha", exit_code=2)
    if minimize is not None and maximize is not None:
        raise GuildliteError("--minimize and --maximize do not go together: a search has one objective", exit_code=2)
    scalar = minimize if minimize is not None else maximize
    if scalar is None:
        for option, value in (("--optimizer", optimizer), ("--prune", prune), ("--objective", objective)):
            if value is not None:
                raise GuildliteError(f"{option} needs the scalar to optimize: --minimize SCALAR or --maximize SCALAR",
                                     exit_code=2)
        return None
    if not scalar.strip() or scalar != scalar.strip() or any(not c.isprintable() for c in scalar):
        raise GuildliteError(f"--{'minimize' if minimize is not None else 'maximize'}: {scalar!r} is not a scalar"
                             " name", exit_code=2)
    if optimizer is not None and (not optimizer.strip() or optimizer != optimizer.strip()):
        raise GuildliteError(f"--optimizer: {optimizer!r} is not an optimizer name", exit_code=2)
    obj = objective or "last"
    if obj not in ("last", "min", "max"):
        raise GuildliteError(f"--objective must be last, min or max, got {obj!r}", exit_code=2)
    spec_prune = None
    if prune is not None:
        if prune not in ("median", "asha"):
            raise GuildliteError(f"--prune must be median or asha, got {prune!r}", exit_code=2)
        for option, least in (("--prune-min-steps", 0), ("--prune-warmup", 0), ("--prune-reduction-factor", 2)):
            given = prune_opts[option]
            if given is not None and given < least:
                raise GuildliteError(f"{option} must be at least {least}, got {given}", exit_code=2)
        if prune_reduction_factor is not None and prune != "asha":
            raise GuildliteError("--prune-reduction-factor is ASHA's: it goes with --prune asha", exit_code=2)
        spec_prune = PruneSpec(kind=prune, min_steps=prune_min_steps or 0,  # type: ignore[arg-type]
                               warmup=prune_warmup or 0, reduction_factor=prune_reduction_factor or 3)
    direction: Literal["minimize", "maximize"] = "minimize" if minimize is not None else "maximize"
    return SearchSpec(optimizer=optimizer, scalar=scalar, direction=direction,
                      objective=obj, max_trials=max_trials, seed=seed, prune=spec_prune)  # type: ignore[arg-type]
