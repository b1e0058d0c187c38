"""Minibatch SGD on a synthetic regression set (pure Python, well under a second).

Without validation, a bad flag combination fails only once the job runs: with
batch-size > dataset-size there is no full minibatch, `steps` is 0 and the loss average divides
by zero, after torchrun has already started. The ValidateFlags plugin refuses such runs first.
"""

import argparse
import random

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--dataset-size", type=int, default=256)
parser.add_argument("--warmup-epochs", type=int, default=0)
args = parser.parse_args()

print(f"training: batch-size {args.batch_size}, dataset-size {args.dataset_size}", flush=True)
rng = random.Random(0)
data = [(x, 2 * x - 0.5 + rng.gauss(0, 0.05)) for x in (rng.uniform(-1, 1) for _ in range(args.dataset_size))]
w = b = 0.0
for epoch in range(1, args.epochs + 1):
    lr = args.lr * min(1.0, epoch / args.warmup_epochs) if args.warmup_epochs else args.lr
    steps = args.dataset_size // args.batch_size  # only full minibatches
    total = 0.0
    for s in range(steps):
        batch = data[s * args.batch_size : (s + 1) * args.batch_size]
        gw = gb = 0.0
        for x, y in batch:
            err = w * x + b - y
            total += err * err
            gw += err * x
            gb += err
        w -= lr * gw / len(batch)
        b -= lr * gb / len(batch)
    print(f"step: {epoch}")
    print(f"loss: {total / (steps * args.batch_size):.6f}")  # ZeroDivisionError when steps == 0
