"""Fit y = 3x + 1 with plain SGD: a stand-in for a real training script (pure Python, no torch
import, well under a second). Prints `step: N` / `loss: X` lines, which guildlite records as scalars."""

import argparse
import random
import time

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.02, help="learning rate")
parser.add_argument("--epochs", type=int, default=5, help="passes over the data")
parser.add_argument("--pause", type=float, default=0.0, help="seconds to sleep per epoch (to see the timing)")
args = parser.parse_args()

rng = random.Random(0)
data = [(x, 3 * x + 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(256))]
w = b = 0.0
for epoch in range(1, args.epochs + 1):
    total = 0.0
    for x, y in data:
        err = w * x + b - y
        total += err * err
        w -= args.lr * err * x
        b -= args.lr * err
    time.sleep(args.pause)
    print(f"step: {epoch}")
    print(f"loss: {total / len(data):.6f}")
print(f"fitted: w={w:.3f} b={b:.3f}")
