#!/usr/bin/env bash
# GPU checks for guildlite, from the project root on a machine with a GPU whose python3 already has torch, click
# and pyyaml: `bash tests/gpu/check.sh`. It installs the checkout without dependencies, makes a tiny project in a temp dir
# and runs: an nccl run on the GPU, a batch with gpus-per-trial 1 and --parallel 2, and two batches started at once
# (GPUs must never be shared), with nvidia-smi sampled beside them. Everything it prints also goes to
# $OUT/gpu-check.log (OUT defaults to /tmp/gpu-check-out). It never changes the GPU's settings. About 2-4 minutes.
# Then `guildlite gpus` and the GPU tests (tests/gpu/test_gpu.py: nccl ranks and devices, two batches at once), when
# pytest is installed. Leases go to a lease dir of the check's own ($OUT/leases), not the machine's.
set -u
OUT=${OUT:-/tmp/gpu-check-out}; mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
root=$(pwd)
export GUILDLITE_GPU_LEASE_DIR="$OUT/leases"
echo "== environment"; nvidia-smi -L; python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.device_count())'
python3 -m pip install -q --no-deps --no-build-isolation -e "$root" || { echo "install failed"; exit 1; }
gl() { python3 -m guildlite "$@"; }
proj=$(mktemp -d); cd "$proj" || exit 1
cat > guildfile.yml <<'YML'
operations:
  ddp:
    main: ddp.py
    gpus-per-trial: 1
    flags: {seconds: 3.0}
YML
cat > ddp.py <<'PY'
import argparse, json, os, time
import torch, torch.distributed as dist
p = argparse.ArgumentParser(); p.add_argument("--seconds", type=float); a = p.parse_args()
dist.init_process_group("nccl")
r = dist.get_rank(); torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
t = torch.ones(1, device="cuda") * (r + 1); dist.all_reduce(t)
x = torch.randn(4096, 4096, device="cuda"); t0 = time.time()
while time.time() - t0 < a.seconds:
    x = (x @ x).clamp_(-1, 1)
torch.cuda.synchronize()
if r == 0:
    print(f"loss: {float(t.item())}")
    json.dump({"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "name": torch.cuda.get_device_name(0),
               "t0": t0, "t1": time.time()}, open("span.json", "w"))
dist.destroy_process_group()
PY
nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader -l 1 > "$OUT/smi.csv" 2>&1 &
smi=$!
echo "== one nccl run"; gl run ddp -y; echo "exit $?"
echo "== batch of 2, gpus-per-trial 1, --parallel 2"; gl run ddp seconds=[2.0,2.5] --parallel 2 -y; echo "exit $?"
echo "== two batches at once (no GPU may be shared)"
gl run ddp seconds=[2.0,2.1] --parallel 2 -y > "$OUT/b1.txt" 2>&1 & b1=$!
gl run ddp seconds=[2.2,2.3] --parallel 2 -y > "$OUT/b2.txt" 2>&1 & b2=$!
sleep 2; echo "== guildlite gpus (while the batches run)"; gl gpus; gl runs --status pending
wait $b1; echo "batch 1 exit $?"; wait $b2; echo "batch 2 exit $?"
kill $smi 2>/dev/null
echo "== records"; gl runs --all
python3 - <<'PY'
import json, pathlib
spans = []
for d in sorted(pathlib.Path("runs").iterdir()):
    rj, sj = d / "run.json", d / "span.json"
    if rj.is_file() and sj.is_file():
        r, s = json.loads(rj.read_text()), json.loads(sj.read_text())
        spans.append(s)
        print(r["id"], r["status"], "gpus", r.get("gpus"), "CUDA_VISIBLE_DEVICES", s["cvd"], s["name"], f"{s['t1'] - s['t0']:.1f}s")
clash = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if a["cvd"] == b["cvd"] and a["t0"] < b["t1"] and b["t0"] < a["t1"]]
print(f"{len(spans)} GPU runs; overlapping on one GPU: {len(clash)}")
PY
echo "== nvidia-smi samples: $OUT/smi.csv"; tail -5 "$OUT/smi.csv"
echo "== GPU tests"
cd "$root" && if python3 -c 'import pytest' 2>/dev/null; then python3 -m pytest -q -rs tests/gpu; echo "pytest exit $?"
else echo "pytest not installed: skipped"; fi
