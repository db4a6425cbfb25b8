#!/usr/bin/env bash
# GPU check of UA-SAM at the paper's configuration (SAM vit_b, 1024 px, bf16 autocast, batch 2 and
# the largest batch that fits): training images/s, sampling hypotheses/s at K = 4, peak memory,
# and the plain frozen SAM encoder forward in the same run. Under 5 minutes on an H100.
#
#   bash benchmarks/gpu_check.sh               # on the GPU machine; results in $OUT (default ./gpu_out)
#   bash benchmarks/gpu_check.sh --cpu-smoke   # tiny sizes on the CPU: checks the script, measures nothing
#
# The GPU machine has torch, accelerate, safetensors and timm but neither segment-anything nor
# MONAI, and no network: their wheels travel in the git-ignored .whl/ folder, made beforehand with
#   pip download --no-deps segment-anything monai -d .whl
# Extra arguments go to benchmarks/gpu_check.py (--budget-s, --steps, --cap).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_out}"
mkdir -p "$OUT"

if ! python -c "import segment_anything, monai" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "segment-anything / monai missing and no wheels in .whl/;" \
             "run: pip download --no-deps segment-anything monai -d .whl" >&2
        exit 2
    fi
    pip install --no-deps --no-index .whl/*.whl
fi
if ! python -c "import uncertainty_adapters.integrations.sam" 2>/dev/null; then
    # Offline: no build isolation (it would download setuptools). If pip cannot install the
    # tree, gpu_check.py maps the package directories itself.
    pip install --no-deps --no-build-isolation -e . || pip install --no-deps -e . \
        || echo "pip could not install this tree; running it from source" >&2
fi
python benchmarks/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
