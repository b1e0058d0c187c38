"""Classify two interleaved 2-D spirals with a small MLP (synthetic data, CPU, a second or two).

An ordinary argparse script: guildlite learns its options with ``flags-import: all``.
"""

import argparse
import math

import torch
from torch import nn


def spirals(n, noise, generator):
    """``n`` points of two interleaved spirals (labels 0 and 1)."""
    t = torch.rand(n, generator=generator) * 3 * math.pi + 0.5
    label = torch.randint(0, 2, (n,), generator=generator)
    sign = label.float() * 2 - 1
    x = torch.stack([t * torch.cos(t) * sign, t * torch.sin(t) * sign], dim=1) / 10
    return x + noise * torch.randn(n, 2, generator=generator), label


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate")
    parser.add_argument("--epochs", type=int, default=20, help="passes over the training set")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per step")
    parser.add_argument("--hidden-size", type=int, default=64, help="units in each hidden layer")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="the optimizer")
    parser.add_argument("--activation", choices=["relu", "tanh"], default="relu", help="hidden activation")
    parser.add_argument("--augment", action="store_true", help="jitter the training inputs with noise")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="model.pt", help="where to save the trained weights")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(1234)
    x_train, y_train = spirals(2048, 0.02, g)
    x_val, y_val = spirals(512, 0.02, g)
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[args.activation]
    model = nn.Sequential(
        nn.Linear(2, args.hidden_size),
        act(),
        nn.Linear(args.hidden_size, args.hidden_size),
        act(),
        nn.Linear(args.hidden_size, 2),
    )
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    print(f"training: {vars(args)}")

    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(len(x_train))
        total = 0.0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i : i + args.batch_size]
            xb = x_train[idx]
            if args.augment:
                xb = xb + 0.02 * torch.randn_like(xb)
            loss = loss_fn(model(xb), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
        print(f"epoch {epoch}: loss {total / len(x_train):.4f}, val accuracy {accuracy:.3f}")
    torch.save(model.state_dict(), args.out)


if __name__ == "__main__":
    main()
