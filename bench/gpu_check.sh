#!/usr/bin/env bash
# The paper path on one GPU (an H100: under 8 minutes): ViT-B/16 at 224 px pretraining
# throughput and MFU for CLIP and DINO in bf16, VLM stage-2 steps with a random-init
# Qwen2-0.5B-shaped LM, a few suite items scored by letter, and a micro config's loss curve on
# the GPU (bf16) against the CPU (fp32). Nothing is downloaded. Exit status 1 if the curves
# differ beyond bf16 tolerance. Then a 2-GPU node can run the rank-aware study:
#   torchrun --standalone --nproc-per-node 2 -m encoderlab study run --preset paper-dry
# Usage: bench/gpu_check.sh [OUT]        (default: a fresh temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
OUT="${1:-$(mktemp -d -t encoderlab-gpu-check.XXXXXX)}"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: this check is for a GPU node (bench/gpu_check.py --micro runs it on a CPU)")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
start=$(date +%s)
timeout 470 "$PY" bench/gpu_check.py --out "$OUT" --steps "${STEPS:-30}" --vlm-steps "${VLM_STEPS:-20}" --items "${ITEMS:-8}"
echo "bench/gpu_check.sh: $(( $(date +%s) - start )) s; outputs in $OUT"
