"""Linear regression y = 3x - 1 by gradient descent (pure Python, well under a second).

Prints `step: N` and `loss: X` each epoch (guildlite captures them while the job runs, and the
MLflow bridge sends them on) and writes model.json, which the bridge logs as an artifact.
"""

import argparse
import json
import random
import time

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--sleep", type=float, default=0.0)  # seconds per epoch, to watch it live
args = parser.parse_args()

rng = random.Random(0)
data = [(x, 3 * x - 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(100))]
w = b = 0.0
for epoch in range(1, args.epochs + 1):
    gw = sum((w * x + b - y) * x for x, y in data) * 2 / len(data)
    gb = sum(w * x + b - y for x, y in data) * 2 / len(data)
    w, b = w - args.lr * gw, b - args.lr * gb
    loss = sum((w * x + b - y) ** 2 for x, y in data) / len(data)
    print(f"step: {epoch}")
    print(f"loss: {loss:.6f}", flush=True)
    time.sleep(args.sleep)
with open("model.json", "w") as f:
    json.dump({"w": w, "b": b}, f)
