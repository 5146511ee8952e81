#!/usr/bin/env bash
# The device check, one command on the lent GPU machine (driver, CUDA tools, python3 with CUDA PyTorch; no dotnet).
# Step timeouts sum to 400 s. Results land in $OUT: gpu.txt, ptx.log, ptxas.log, verify.log, bench.json/.log, peer.json/.log, memcheck.log.
set -uo pipefail
O=${OUT:-/tmp/devcheck-out}; mkdir -p "$O"
H=$(mktemp -d); tar -xJf .devcheck/dc.tar.xz -C "$H"; DC=$H/DeviceCheck/Microsoft.ML.Hazy.Gpu.DeviceCheck
export CUDA_CACHE_PATH=$H/jit
nvidia-smi --query-gpu=name,driver_version --format=csv > "$O/gpu.txt" 2>&1
timeout 40 "$DC" ptx --out "$H/ptx" 2>&1 | tee "$O/ptx.log"
for f in "$H"/ptx/*.ptx; do echo "== $f"; timeout 20 ptxas -arch=sm_90 -v -o /dev/null "$f"; done > "$O/ptxas.log" 2>&1
timeout 120 "$DC" verify 2>&1 | tee "$O/verify.log"
timeout 80 "$DC" bench --json "$O/bench.json" 2>&1 | tee "$O/bench.log"
timeout 120 python3 .devcheck/peer.py "$O" 2>&1 | tee "$O/peer.log"
timeout 40 compute-sanitizer --tool memcheck "$DC" verify --tiny > "$O/memcheck.log" 2>&1
python3 - "$O" <<'PY'
import json, sys, os
o = sys.argv[1]
ours = json.load(open(os.path.join(o, "bench.json"))) if os.path.exists(os.path.join(o, "bench.json")) else []
peer = json.load(open(os.path.join(o, "peer.json"))) if os.path.exists(os.path.join(o, "peer.json")) else []
print("| kernel | shape/mask | ms | TFLOP/s |\n| --- | --- | --- | --- |")
for r in ours: print(f"| hazy {r['kernel']} | d{r.get('d','')} {r.get('mask','')} | {r['ms']:.3f} | {r['tflops']:.2f} |")
for r in peer: print(f"| torch {r['kernel']} | {r['shape']} | {r['ms']:.3f} | {r['tflops']:.2f} |")
PY
