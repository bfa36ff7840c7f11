#!/usr/bin/env bash
# The GPU benchmark, run on a lent GPU machine from the repository root:
#   bash benchmarks/gpu_suite.sh            (results also go to $OUT when set)
# The seed node is timed too when its public code is carried in .seedkit/ (never committed).
set -u -o pipefail
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
out="${OUT:-/tmp/amt-vfi-gpu}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
# A case that hangs costs its own 150 s, not the whole device budget.
bench="timeout 150 python3 benchmarks/bench_engine.py --device cuda --threads 16"
{
  $bench --case 1080x1920x16:2 --precision fp16
  $bench --case 1080x1920x16:2 --precision fp16 --correlation on-demand
  timeout 240 python3 benchmarks/bench_engine.py --device cuda --threads 16 --case 1080x1920x16:2 --precision fp16 --compile
  $bench --case 1080x1920x16:2 --precision fp32
  node="timeout 150 python3 benchmarks/bench_node.py --device cuda --threads 16"  # the ComfyUI node as called
  $node --case 1080x1920x16:2 --precision fp32
  $node --case 1080x1920x16:2 --precision fp16
  $bench --case 1080x1920x4:2 --precision fp32 --naive
  $bench --case 256x448x4:4 --precision fp16
  $bench --case 256x448x4:4 --precision fp16 --no-autotune  # with tuning, the timed run tunes new shapes
  $bench --case 2160x3840x2:2 --precision fp16
  $bench --variant amt-g --case 2160x3840x2:2 --precision fp16
  $bench --variant amt-g --case 2160x3840x2:2 --precision fp32
  $bench --variant amt-g --case 2160x3840x2:2 --precision fp16 --gpu-memory-gb 24  # as on a 24 GB card
  $bench --variant amt-g --case 2160x3840x2:2 --precision fp32 --gpu-memory-gb 24
} 2>&1 | tee "$out/engine.jsonl"
timeout 120 python3 benchmarks/precision_psnr.py --device cuda 2>&1 | tee "$out/psnr.txt"
if [ -d .seedkit ]; then
  timeout 150 bash .seedkit/run.sh amt-s.pth 16 1080 1920 2 16 cuda 2>&1 | tail -3 | tee "$out/seed.txt"
else
  echo "seed node not timed: .seedkit/ is missing (carry it: it is ignored by git)" | tee "$out/seed.txt"
fi
timeout 150 python3 benchmarks/profile_gpu.py 2>&1 | tee "$out/profile.txt"
