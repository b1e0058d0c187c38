"""A synthetic training script with no guildlite code: a noisy quadratic bowl in its flags.

Shared by the tests and ``bench/search.py``. Run as a script (plain argparse, so guildlite imports
its flags), it prints ``step: N`` and ``loss: X`` for each of ``--steps`` steps. The loss at a step
falls from three times the trial's final value to that value, and the final value is a bowl:

    final(x, y) = 0.1 + (x - 0.7)^2 + 0.3 * (y + 1.3)^2          (z has no effect at all)

so a bad trial already looks bad early (what a pruner needs), ``x`` matters more than ``y``, and
``z`` not at all (what flag importances should find). Each value carries multiplicative noise
(``--noise``, a standard deviation) drawn from the flags, ``--seed`` and the step only: the same
flags give the same curve, run after run. ``--sleep`` waits that long before each step (a trial
that takes time); ``--fail-above V`` exits 1 at the first step whose loss exceeds V (a failing
trial). ``loss_at`` is the same curve for code that imports this file (the in-process Optuna
objective of the bench).
"""

from __future__ import annotations

import argparse
import random
import sys
import time

X0, Y0, FLOOR = 0.7, -1.3, 0.1


def final_loss(x: float, y: float) -> float:
    """The noise-free loss at the last step: the bowl, lowest (``FLOOR``) at x=0.7, y=-1.3."""
    return FLOOR + (x - X0) ** 2 + 0.3 * (y - Y0) ** 2


def loss_at(x: float, y: float, z: float, step: int, steps: int, seed: int = 0, noise: float = 0.02) -> float:
    """The loss printed at ``step`` (0-based) of ``steps``; ``z`` only seeds the noise."""
    left = 1 - step / max(steps - 1, 1)  # 1 at the first step, 0 at the last
    rng = random.Random(f"{x!r}/{y!r}/{z!r}/{seed}/{step}")  # str seeds hash stably across processes
    return final_loss(x, y) * (1 + 2 * left * left) * max(0.0, 1 + noise * rng.gauss(0.0, 1.0))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--x", type=float, default=0.0)
    p.add_argument("--y", type=float, default=0.0)
    p.add_argument("--z", type=float, default=0.0, help="no effect on the loss but its noise")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sleep", type=float, default=0.0, help="seconds before each step")
    p.add_argument("--noise", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fail-above", type=float, default=0.0, help="exit 1 once the loss exceeds this (0: never)")
    a = p.parse_args(argv)
    for step in range(a.steps):
        if a.sleep > 0:
            time.sleep(a.sleep)
        loss = loss_at(a.x, a.y, a.z, step, a.steps, a.seed, a.noise)
        print(f"step: {step}", flush=True)
        print(f"loss: {loss:.6g}", flush=True)
        if a.fail_above and loss > a.fail_above:
            print(f"loss {loss:.6g} above {a.fail_above}: giving up", file=sys.stderr, flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
