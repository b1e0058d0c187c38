"""A small, real PyTorch training job: an MLP regression on synthetic data.

Runs as one process or under torchrun with DDP (gloo on CPU, nccl when CUDA is visible).
Rank 0 prints ``step: N`` / ``loss: X`` lines, which guildlite records as scalars.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=32)
    args = p.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)

    # The same synthetic data on every rank; each rank trains on its own shard.
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(2048, 8, generator=g)
    true_w = torch.randn(8, 1, generator=g)
    y = torch.sin(x @ true_w) + 0.05 * torch.randn(2048, 1, generator=g)
    x, y = x[rank::world].to(device), y[rank::world].to(device)

    torch.manual_seed(args.seed)
    model: nn.Module = nn.Sequential(nn.Linear(8, args.hidden), nn.Tanh(), nn.Linear(args.hidden, 1)).to(device)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.MSELoss()

    step = 0
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x), device=device)
        for i in range(0, len(x), args.batch_size):
            idx = perm[i : i + args.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            step += 1
        with torch.no_grad():
            full = loss_fn(model(x), y).detach()
        if world > 1:
            dist.all_reduce(full)
            full /= world
        if rank == 0:
            print(f"epoch {epoch + 1}/{args.epochs}")
            print(f"step: {step}")
            print(f"loss: {full.item():.6f}")

    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
