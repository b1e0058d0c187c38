"""Train a tiny character-level transformer language model on data/lighthouse.txt.

A script in the style many training scripts have (nanoGPT's, for one): module-level config
globals, overridden from the command line by ``--key=value`` arguments or by config files
(Python code) given as bare arguments, applied in order:

    python train.py                                   # the defaults below
    python train.py --learning_rate=3e-3 --max_iters=400
    python train.py config/small.py --max_iters=50    # a config file, then an override

Under torchrun (``RANK`` set) it runs DistributedDataParallel with one CUDA device per rank;
otherwise it trains in this one process on ``device`` (default: cpu).
It knows nothing about guildlite: guildlite/guildfile.yml passes the flags as ``--key=value``.
"""

import math
import os
import sys
import time
from ast import literal_eval

import torch
from torch import nn
from torch.nn import functional as F

# -----------------------------------------------------------------------------
# default config values
data_path = "data/lighthouse.txt"
out_dir = "out"
eval_interval = 100  # estimate train/val loss every N iters (and at the end)
eval_iters = 10
log_interval = 10
max_iters = 200
batch_size = 16
block_size = 64
n_layer = 2
n_head = 4
n_embd = 64
dropout = 0.0
learning_rate = 3e-3
min_lr = 3e-4  # cosine decay down to this
warmup_iters = 20
weight_decay = 0.01
grad_clip = 1.0
seed = 1337
device = "cpu"  # single-process runs; DDP ranks use cuda:LOCAL_RANK
threads = 1  # CPU threads: a model this small gains nothing from more, and loses a lot on a busy machine
backend = "nccl"
sample_chars = 200  # characters to generate at the end (0: none)
save_checkpoint = True
# -----------------------------------------------------------------------------
# the configurator: config files (python) and --key=value overrides, in order
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (int, float, bool, str))]
for arg in sys.argv[1:]:
    if "=" not in arg:
        assert not arg.startswith("--"), f"expected --key=value, got {arg}"
        print(f"Overriding config with {arg}:")
        with open(arg) as f:
            code = f.read()
        print(code)
        exec(code)  # noqa: S102 - the config file is this project's own python
        continue
    assert arg.startswith("--"), f"expected --key=value, got {arg}"
    key, val = arg.split("=")
    key = key[2:]
    if key not in config_keys:
        raise ValueError(f"Unknown config key: {key}")
    if isinstance(globals()[key], bool) and val.lower() in ("true", "false"):
        attempt = val.lower() == "true"
    else:
        try:
            attempt = literal_eval(val)
        except (SyntaxError, ValueError):
            attempt = val
    if isinstance(globals()[key], float) and isinstance(attempt, int) and not isinstance(attempt, bool):
        attempt = float(attempt)
    assert type(attempt) is type(globals()[key]), f"{key}: {val!r} is not a {type(globals()[key]).__name__}"
    print(f"Overriding: {key} = {attempt}")
    globals()[key] = attempt
config = {k: globals()[k] for k in config_keys}
# -----------------------------------------------------------------------------

ddp = int(os.environ.get("RANK", -1)) != -1  # noqa: PLW1508 - is this a torchrun rank?
if ddp:
    from torch.distributed import destroy_process_group, init_process_group
    from torch.nn.parallel import DistributedDataParallel as DDP

    init_process_group(backend=backend)
    ddp_rank = int(os.environ["RANK"])
    ddp_local_rank = int(os.environ["LOCAL_RANK"])
    ddp_world_size = int(os.environ["WORLD_SIZE"])
    device = f"cuda:{ddp_local_rank}"
    torch.cuda.set_device(device)
    master_process = ddp_rank == 0
    seed_offset = ddp_rank
else:
    master_process = True
    seed_offset = 0
    ddp_world_size = 1

torch.manual_seed(seed + seed_offset)
if device == "cpu":
    torch.set_num_threads(threads)

# data: characters to integers, 90% train / 10% val
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), data_path), encoding="utf-8") as f:
    text = f.read()
chars = sorted(set(text))
vocab_size = len(chars)
stoi = {ch: i for i, ch in enumerate(chars)}
itos = dict(enumerate(chars))
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
n = int(0.9 * len(data))
splits = {"train": data[:n], "val": data[n:]}
if master_process:
    print(f"{len(text):,} characters, vocab size {vocab_size}, {ddp_world_size} process(es)")


def get_batch(split):
    d = splits[split]
    ix = torch.randint(len(d) - block_size - 1, (batch_size,))
    x = torch.stack([d[i : i + block_size] for i in ix])
    y = torch.stack([d[i + 1 : i + 1 + block_size] for i in ix])
    return x.to(device), y.to(device)


# model: a small GPT
class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(n_embd, dim=2)
        q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout if self.training else 0.0, is_causal=True)
        return self.drop(self.proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention()
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout)
        )

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(vocab_size, n_embd)
        self.pos = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block() for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.tok.weight  # weight tying
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.drop(self.tok(idx) + self.pos(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    @torch.no_grad()
    def generate(self, idx, n_new, temperature=0.8):
        for _ in range(n_new):
            logits, _ = self(idx[:, -block_size:])
            probs = F.softmax(logits[:, -1, :] / temperature, dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
        return idx


model = GPT().to(device)
if master_process:
    print(f"{sum(p.numel() for p in model.parameters()) / 1e3:.1f}K parameters")
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
    lr=learning_rate,
    betas=(0.9, 0.99),
)
raw_model = model
if ddp:
    model = DDP(model, device_ids=[ddp_local_rank])


def get_lr(it):
    """Linear warmup, then cosine decay from learning_rate to min_lr."""
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    ratio = (it - warmup_iters) / max(1, max_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, ratio))) * (learning_rate - min_lr)


@torch.no_grad()
def estimate_loss():
    out = {}
    model.eval()
    for split in ("train", "val"):
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            X, Y = get_batch(split)
            losses[k] = model(X, Y)[1].item()
        out[split] = losses.mean().item()
    model.train()
    return out


# training loop
t0 = time.time()
for iter_num in range(max_iters + 1):
    if master_process and (iter_num % eval_interval == 0 or iter_num == max_iters):
        losses = estimate_loss()
        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    if iter_num == max_iters:
        break
    lr = get_lr(iter_num)
    for group in optimizer.param_groups:
        group["lr"] = lr
    X, Y = get_batch("train")
    _, loss = model(X, Y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0.0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    t1 = time.time()
    dt, t0 = t1 - t0, t1
    if master_process and iter_num % log_interval == 0:
        print(f"iter {iter_num}: loss {loss.item():.4f}, time {dt * 1000:.2f}ms, lr {lr:.2e}")

if master_process:
    if save_checkpoint:
        os.makedirs(out_dir, exist_ok=True)
        ckpt = {"model": raw_model.state_dict(), "config": config, "chars": chars, "iter_num": max_iters}
        torch.save(ckpt, os.path.join(out_dir, "ckpt.pt"))
        print(f"saved checkpoint to {os.path.join(out_dir, 'ckpt.pt')}")
    if sample_chars > 0:
        raw_model.eval()
        start = torch.tensor([[stoi["\n"]]], dtype=torch.long, device=device)
        sample = raw_model.generate(start, sample_chars)[0].tolist()
        print("sample:")
        print("".join(itos[i] for i in sample))
if ddp:
    destroy_process_group()
