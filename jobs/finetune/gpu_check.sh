#!/usr/bin/env bash
# GPU check of the fine-tuning job (prepared, not run by the test suite; the lead decides).
# Runs the same training code as jobs/finetune on a ~110M-parameter GPT-2 shaped model built
# from a config (random weights, no download), LoRA and full fine-tuning, on CUDA and on CPU,
# and prints tokens/s for each and the GPU/CPU ratio. Results: $OUT/finetune.json (or
# bench/out/finetune.json). About 2-4 minutes on one H100, most of it the CPU steps.
#
#   run from the repository root:  bash jobs/finetune/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT_FILE=${OUT:-bench/out}/finetune.json
mkdir -p "$(dirname "$OUT_FILE")"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.version.cuda)
assert torch.cuda.is_available(), "no CUDA device visible to torch"
PY
# A quick tiny run first: fails fast if anything is off before the larger model.
"$PY" -m bench.bench_finetune --size tiny --devices cuda --methods lora --steps 5 --warmup 1 \
    --out "${OUT_FILE%.json}-tiny.json"
timeout 540 "$PY" -m bench.bench_finetune --size 100m --devices cuda,cpu --methods lora,full \
    --steps ${GPU_STEPS:-40} --cpu-steps ${CPU_STEPS:-4} --warmup 3 --seq 256 --batch 8 --out "$OUT_FILE"
