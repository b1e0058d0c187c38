"""A random-features regressor whose width is a constant in the code, not a flag.

HIDDEN is the kind of value that lives in source (a model definition, a config module). The
SetConstant plugin changes it in the run's staged copy, so a run can use another width without
editing this file. Pure Python, well under a second.
"""

import argparse
import math
import random

HIDDEN = 32

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()

print(f"hidden: {HIDDEN}", flush=True)
rng = random.Random(0)
features = [(rng.gauss(0, 2), rng.uniform(0, 2 * math.pi)) for _ in range(HIDDEN)]


def phi(x):
    return [math.cos(a * x + c) for a, c in features]


data = [(x, math.sin(3 * x)) for x in (rng.uniform(-1, 1) for _ in range(200))]
w = [0.0] * HIDDEN
for epoch in range(1, args.epochs + 1):
    total = 0.0
    for x, y in data:
        f = phi(x)
        err = sum(wi * fi for wi, fi in zip(w, f)) - y
        total += err * err
        w = [wi - args.lr * err * fi / HIDDEN ** 0.5 for wi, fi in zip(w, f)]
    print(f"step: {epoch}")
    print(f"loss: {total / len(data):.6f}")
