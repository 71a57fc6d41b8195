#!/usr/bin/env bash
# Every GPU measurement in one run, for one NVIDIA GPU (H100 or H200: about 7 minutes). Needs only torch and
# this project's code (no Ray): copy the checkout to a GPU machine with torch installed and run
#
#     bash benchmarks/gpu_check.sh            # prints a table per step; the lines starting '##' are the summary
#     GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh   # the same steps at toy sizes on the CPU (the script's own check)
#
# Steps: (1) fit against a bare loop at full width (VGG-19-BN), classification and MTL 1:1, the short presets'
# recipe with a checkpoint every 5 epochs: images/s and MFU for the training steps and for whole epochs;
# (2) the same classification run with torch.compile; (3) one Tiny-ImageNet-sized epoch (100,000 synthetic
# images) through fit; (4) several fits sharing the GPU at the study width (models per GPU-hour); (5) the
# CUDA-only tests (if pytest is installed).
set -euo pipefail
cd "$(dirname "$0")/.."
# the whole check is bounded: past GPU_CHECK_LIMIT seconds (default 480, the 8 minutes it is sized for) it stops
# and says so, and the steps it finished have printed their tables
if [ -z "${GPU_CHECK_INNER:-}" ]; then
  limit="${GPU_CHECK_LIMIT:-480}"
  set +e; GPU_CHECK_INNER=1 timeout --signal=INT --kill-after=20 "$limit" bash "$0" "$@"; rc=$?; set -e
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || [ "$rc" -eq 130 ]; then
    echo "## gpu_check: stopped at its limit of $limit s (GPU_CHECK_LIMIT); the steps above finished" >&2
  fi
  exit "$rc"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEV="${GPU_CHECK_DEVICE:-cuda}"
if [ "$DEV" = cpu ]; then
  W=0.0625; IMG=512; TIN=2048; PACK="--device cpu --images 512 --epochs 2 --packs 1,2"; EP=2
else
  W=1; IMG=8192; TIN=100000; PACK="--packs 1,4,8"; EP=6   # 5 timed epochs: the last one's BatchNorm pass weighs as in a fit
fi
python - <<'PY'
import platform, torch
print("## torch", torch.__version__, "| python", platform.python_version(), "| CUDA", torch.version.cuda,
      "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/## /'
step() { echo; echo "## $1"; shift; local t0=$SECONDS; "$@"; echo "## ($((SECONDS - t0)) s)"; }
step "1. fit against a bare loop, width $W, quiet recipe, checkpoint every 5 epochs" \
  python benchmarks/train_throughput.py --device "$DEV" --width "$W" --images "$IMG" --epochs "$EP" --repeats 3 \
    --recipe quiet --checkpoint-every 5
step "2. the same with torch.compile (classification)" \
  python benchmarks/train_throughput.py --device "$DEV" --width "$W" --images "$IMG" --epochs "$EP" --repeats 3 \
    --recipe quiet --checkpoint-every 5 --compile --modes classification
step "3. one Tiny-ImageNet-sized epoch ($TIN images), fit alone" \
  python benchmarks/train_throughput.py --device "$DEV" --width "$W" --images "$TIN" --epochs 2 --repeats 1 --fit-only \
    --recipe quiet --checkpoint-every 5 --modes classification
step "4. fits sharing one GPU (models per GPU-hour)" python benchmarks/gpu_packing.py $PACK
if python -c "import pytest" 2>/dev/null && [ "$DEV" != cpu ]; then
  step "5. the CUDA-only tests" python -m pytest -q tests/test_training.py -k cuda
else
  echo; echo "## 5. the CUDA-only tests: skipped (no pytest here, or a CPU check)"
fi
