"""Logistic regression on two Gaussian blobs (pure Python, well under a second).

Prints `step: N`, `loss: X` and `accuracy: Y` each epoch; guildlite's built-in OutputScalars
turns them into the run's scalars.jsonl, which the Summarize plugin reads.
"""

import argparse
import math
import random

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

rng = random.Random(args.seed)
data = [((rng.gauss(c, 1.0), rng.gauss(c, 1.0)), label) for label, c in ((0, -1.0), (1, 1.0)) for _ in range(200)]
rng.shuffle(data)
w1 = w2 = b = 0.0
for epoch in range(1, args.epochs + 1):
    loss = correct = 0.0
    for (x1, x2), y in data:
        p = 1 / (1 + math.exp(-(w1 * x1 + w2 * x2 + b)))
        loss -= math.log(max(p if y else 1 - p, 1e-12))
        correct += (p > 0.5) == bool(y)
        g = p - y
        w1, w2, b = w1 - args.lr * g * x1, w2 - args.lr * g * x2, b - args.lr * g
    print(f"step: {epoch}")
    print(f"loss: {loss / len(data):.6f}")
    print(f"accuracy: {correct / len(data):.4f}")
