"""A preemptible training script: checkpoints into its run dir, resumes from it after a requeue.

Works under torchrun (any number of ranks and hosts: gradients are all-reduced over gloo/nccl)
and as a plain `python` process. guildlite gives every rank GUILDLITE_RUN_DIR (the run dir exists
before the job is submitted) and GUILDLITE_RESTART_COUNT (0, then 1 after the first requeue...).
On SIGTERM (preemption, the time-limit warning) it saves a checkpoint and exits; the requeued job
starts again in the same run dir and continues from the saved step.
"""

import argparse
import os
import signal
import socket
import sys
import time

import torch

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=20)
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--step-seconds", type=float, default=0.0, help="sleep per step (to make the run preemptible)")
args = p.parse_args()

run_dir = os.environ.get("GUILDLITE_RUN_DIR", ".")
ckpt_path = os.path.join(run_dir, "checkpoint.pt")
restart = int(os.environ.get("GUILDLITE_RESTART_COUNT", "0"))
world = int(os.environ.get("WORLD_SIZE", "1"))
rank = int(os.environ.get("RANK", "0"))
if world > 1:
    import torch.distributed as dist

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
print(f"rank {rank}/{world} on host {socket.gethostname()} restart {restart}", flush=True)

stop = {"sig": None}
signal.signal(signal.SIGTERM, lambda sig, frame: stop.update(sig=sig))

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=args.lr)
x = torch.randn(64, 4)
y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
start = 0
if os.path.exists(ckpt_path):
    state = torch.load(ckpt_path)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    start = state["step"]
    print(f"resumed from step {start}", flush=True)


def save(step):
    if rank == 0:
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, tmp)
        os.replace(tmp, ckpt_path)


for step in range(start, args.steps):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    if world > 1:
        for prm in model.parameters():
            dist.all_reduce(prm.grad)
            prm.grad /= world
    opt.step()
    if rank == 0:
        print(f"step: {step + 1}\nloss: {loss.item():.6f}", flush=True)
    save(step + 1)
    if stop["sig"] is not None:
        print(f"rank {rank}: SIGTERM at step {step + 1}: checkpoint saved, exiting", flush=True)
        sys.exit(143)
    time.sleep(args.step_seconds)

if rank == 0:
    print(f"done: {args.steps} steps, world size {world}", flush=True)
if world > 1:
    dist.destroy_process_group()
