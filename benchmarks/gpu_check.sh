#!/usr/bin/env bash
# GPU check of UA-SAM at the paper's configuration, in two stages, under 8 minutes on an H100:
#
# 1. benchmarks/gpu_check.py (SAM vit_b, 1024 px, bf16 autocast, batch 2 and the largest batch
#    that fits): training images/s, sampling hypotheses/s at K = 4, peak memory, and the plain
#    frozen SAM encoder forward in the same run  -> $OUT/gpu_check.{json,txt}
# 2. the real command line: `ua-sam train --preset paper-lidc --data synthetic` at 1024 px for
#    TRAIN_STEPS optimizer steps (default 300), then its evaluation; the run reports training
#    images/s and peak memory  -> $OUT/run.json, metrics.json, train_log.csv, figure.png
#
#   bash benchmarks/gpu_check.sh               # on the GPU machine; results in $OUT (default ./gpu_out)
#   bash benchmarks/gpu_check.sh --cpu-smoke   # tiny sizes on the CPU: checks the script, measures nothing
#
# The GPU machine has torch, accelerate, safetensors and timm but neither segment-anything nor
# MONAI, and no network: their wheels travel in the git-ignored .whl/ folder, made beforehand with
#   pip download --no-deps segment-anything monai -d .whl
# Extra arguments go to benchmarks/gpu_check.py (--budget-s, --steps, --cap). Environment:
# PYTHON (default python3), TRAIN_STEPS (0 skips stage 2), CHECK_TIMEOUT_S / TRAIN_TIMEOUT_S
# (wall-clock limits of the two stages, default 260 / 220).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_out}"
PY="${PYTHON:-python3}"
TRAIN_STEPS="${TRAIN_STEPS:-300}"
mkdir -p "$OUT"
SMOKE=0
for arg in "$@"; do [[ "$arg" == "--cpu-smoke" ]] && SMOKE=1; done

if ! "$PY" -c "import segment_anything, monai" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "segment-anything / monai missing and no wheels in .whl/;" \
             "run: pip download --no-deps segment-anything monai -d .whl" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-deps --no-index .whl/*.whl || exit 2
fi
if ! "$PY" -c "import uncertainty_adapters.integrations.sam" 2>/dev/null; then
    # Offline: no build isolation (it would download setuptools). If pip cannot install the tree,
    # lay the two package folders out as setuptools would and put them on the path.
    if ! "$PY" -m pip install -q --no-deps --no-build-isolation -e . 2>/tmp/ua_pip_install.err; then
        tail -3 /tmp/ua_pip_install.err >&2
        echo "pip could not install this tree; running it from source" >&2
        site="$(mktemp -d)"
        cp -r uncertainty_adapters "$site/" && cp -r integrations "$site/uncertainty_adapters/integrations"
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

status=0
echo "== stage 1: benchmarks/gpu_check.py"
timeout "${CHECK_TIMEOUT_S:-260}" "$PY" benchmarks/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1

if [[ $SMOKE -eq 1 ]]; then
    sizes=(--image-size 64 --synthetic-cases 30 --cpu)
    TRAIN_STEPS=$(( TRAIN_STEPS < 4 ? TRAIN_STEPS : 4 ))
else  # 240 cases: 173 train / 19 validation / 48 test; workers make the 1024 px lesions in time
    sizes=(--synthetic-cases 240 --num-workers 12)
fi
if [[ "$TRAIN_STEPS" -gt 0 ]]; then
    echo "== stage 2: ua-sam train --preset paper-lidc --data synthetic, $TRAIN_STEPS steps"
    run="$(mktemp -d)/paper-lidc-synthetic"
    timeout "${TRAIN_TIMEOUT_S:-220}" "$PY" -m uncertainty_adapters.integrations.cli train \
        --data synthetic --preset paper-lidc --out "$run" --max-steps "$TRAIN_STEPS" "${sizes[@]}" \
        >"$OUT/train.log" 2>&1 || status=1
    tr '\r' '\n' <"$OUT/train.log" | sed -E 's/^UA-SAM:[^]]*\]//' | grep -v '^\s*$' | tail -40  # without tqdm's redraws
    for name in run.json metrics.json train_log.csv figure.png; do
        [[ -f "$run/$name" ]] && cp "$run/$name" "$OUT/$name"
    done
    "$PY" - "$run" <<'EOF' || status=1
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
meta = json.loads((run / "run.json").read_text())
print("paper-lidc on synthetic:", json.dumps({"steps": meta["progress"]["step"], **meta["throughput"]}))
EOF
fi
exit $status
