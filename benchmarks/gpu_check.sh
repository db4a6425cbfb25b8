#!/usr/bin/env bash
# GPU check of UA-SAM at the paper's configuration (SAM vit_b, 1024 px, bf16), in one call of
# under 8 minutes on an H200:
#
# 1. python -m benchmarks.gpu_speed: the plain frozen encoder (the reference of every ratio), the
#    attention kinds, the adapters' overhead at batch 2 and 32, the training step eager / as one
#    CUDA graph / CUDA graph + compiled encoder, the largest batch, MFU, and sampling 16
#    hypotheses per image eager and compiled                  -> $OUT/gpu_speed.{json,txt}
# 2. the official UA-SAM code's training step at batch 2 (../shared/anchors/official_train_step.py,
#    or a copy in .whl/anchors/), in the same call             -> $OUT/official_step.json
# 3. the real command line: `ua-sam train --preset paper-lidc --data synthetic --compile` for
#    TRAIN_STEPS steps (the training step as a CUDA graph through the trainer), then its
#    evaluation                                                -> $OUT/run.json, metrics.json, ...
# 4. GPU_CHECK_ITEMS="training sdpa ...": items of the older benchmarks/gpu_check.py (default none)
# 5. EXTRA_GPU_COMMANDS: a file of further commands (one per line, run from the repo root with
#    $OUT set), e.g. other issues' device measurements         -> $OUT/extra.log
#
#   bash benchmarks/gpu_check.sh               # on the GPU machine; results in $OUT (default ./gpu_out)
#   bash benchmarks/gpu_check.sh --cpu-smoke   # tiny sizes on the CPU: checks the script, measures nothing
#
# The GPU machine has torch, accelerate, safetensors and timm but neither segment-anything nor
# MONAI (nor always matplotlib), and no network: their wheels travel in the git-ignored .whl/
# folder, made beforehand with
#   pip download --no-deps segment-anything monai -d .whl
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl/mpl matplotlib
#   cp -r ../shared/anchors .whl/anchors
# Environment: PYTHON (default python3), TRAIN_STEPS (default 150; 0 skips stage 3), SPEED_BUDGET_S
# (default 230), GPU_SPEED_SKIP (stage 1's items to leave out, e.g. "attention overhead"), ATTENTION
# (stage 3's --attention; default: the kind stage 1 chose).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-./gpu_out}"
PY="${PYTHON:-python3}"
TRAIN_STEPS="${TRAIN_STEPS:-150}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export OUT
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
if ! "$PY" -c "import matplotlib" 2>/dev/null && [[ -d .whl/mpl ]]; then
    "$PY" -m pip install -q --no-index --find-links .whl/mpl matplotlib || echo "matplotlib did not install" >&2
fi
if ! "$PY" -c "import uncertainty_adapters.integrations.sam" 2>/dev/null; then
    # Offline: no build isolation (it would download setuptools). If pip cannot install the tree,
    # lay the two package folders out as setuptools would and put them on the path.
    if ! "$PY" -m pip install -q --no-deps --no-build-isolation -e . 2>/tmp/ua_pip_install.err; then
        tail -3 /tmp/ua_pip_install.err >&2
        echo "pip could not install this tree; running it from source" >&2
        site="$(mktemp -d)"
        cp -r uncertainty_adapters "$site/" && cp -r integrations "$site/uncertainty_adapters/integrations"
        export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

status=0
echo "== stage 1: benchmarks.gpu_speed"
if [[ $SMOKE -eq 1 ]]; then
    # shellcheck disable=SC2086
    "$PY" -m benchmarks.gpu_speed --out "$OUT" --cpu-smoke ${GPU_SPEED_SKIP:+--skip $GPU_SPEED_SKIP} 2>&1 | tee "$OUT/gpu_speed.log"
else
    # shellcheck disable=SC2086
    timeout $(( ${SPEED_BUDGET_S:-230} + 60 )) "$PY" -m benchmarks.gpu_speed --out "$OUT" \
        --budget-s "${SPEED_BUDGET_S:-230}" ${GPU_SPEED_SKIP:+--skip $GPU_SPEED_SKIP} 2>&1 | tee "$OUT/gpu_speed.log"
fi
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1

echo "== stage 2: the official UA-SAM training step, batch 2"
official=""
for candidate in "${ANCHORS:-}" ../shared/anchors shared/anchors .whl/anchors; do
    [[ -n "$candidate" && -f "$candidate/official_train_step.py" ]] && { official="$candidate/official_train_step.py"; break; }
done
if [[ -z "$official" ]]; then
    echo "official_train_step.py not found (../shared/anchors or .whl/anchors)" >&2
    status=1
elif [[ $SMOKE -eq 1 ]]; then
    echo "(skipped in --cpu-smoke: vit_b at 1024 px)"
else
    timeout 120 "$PY" "$official" --device cuda --batch 2 --steps 20 --json "$OUT/official_step.json" \
        2>&1 | tail -5 || status=1
fi

compile=(--compile)
if [[ $SMOKE -eq 1 ]]; then  # no --compile: compiling on a CPU takes minutes
    sizes=(--image-size 64 --synthetic-cases 30 --cpu)
    compile=()
    TRAIN_STEPS=$(( TRAIN_STEPS < 4 ? TRAIN_STEPS : 4 ))
else  # 240 cases: 173 train / 19 validation / 48 test; workers make the 1024 px lesions in time
    sizes=(--synthetic-cases 240 --num-workers 12)
fi
if [[ "$TRAIN_STEPS" -gt 0 ]]; then
    kind="${ATTENTION:-$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('chosen_attention','sdpa'))" \
        "$OUT/gpu_speed.json" 2>/dev/null || echo sdpa)}"
    echo "== stage 3: ua-sam train --preset paper-lidc --data synthetic --compile --attention $kind, $TRAIN_STEPS steps"
    run="$(mktemp -d)/paper-lidc-synthetic"
    timeout "${TRAIN_TIMEOUT_S:-200}" "$PY" -m uncertainty_adapters.integrations.cli train \
        --data synthetic --preset paper-lidc --out "$run" --max-steps "$TRAIN_STEPS" "${compile[@]}" \
        --attention "$kind" "${sizes[@]}" >"$OUT/train.log" 2>&1 || status=1
    tr '\r' '\n' <"$OUT/train.log" | sed -E 's/^UA-SAM:[^]]*\]//' | grep -v '^\s*$' | tail -25  # without tqdm's redraws
    for name in run.json metrics.json train_log.csv; do
        [[ -f "$run/$name" ]] && cp "$run/$name" "$OUT/$name"
    done
    "$PY" - "$run" <<'EOF' || status=1
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
meta = json.loads((run / "run.json").read_text())
print("paper-lidc on synthetic, --compile:", json.dumps({"steps": meta["progress"]["step"], **meta["throughput"]}))
EOF
fi

if [[ -n "${GPU_CHECK_ITEMS:-}" ]]; then
    echo "== stage 4: benchmarks.gpu_check --only $GPU_CHECK_ITEMS"
    # shellcheck disable=SC2086
    timeout "${CHECK_TIMEOUT_S:-200}" "$PY" -m benchmarks.gpu_check --out "$OUT" --only $GPU_CHECK_ITEMS \
        $([[ $SMOKE -eq 1 ]] && echo --cpu-smoke) 2>&1 | tee "$OUT/gpu_check.log"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
fi

if [[ -n "${EXTRA_GPU_COMMANDS:-}" && -f "$EXTRA_GPU_COMMANDS" ]]; then
    echo "== stage 5: $EXTRA_GPU_COMMANDS"
    while IFS= read -r line; do
        [[ -z "$line" || "$line" == \#* ]] && continue
        echo "\$ $line" | tee -a "$OUT/extra.log"
        bash -c "$line" >>"$OUT/extra.log" 2>&1 || { echo "  (exit $?)" | tee -a "$OUT/extra.log"; status=1; }
    done <"$EXTRA_GPU_COMMANDS"
    tail -40 "$OUT/extra.log"
fi
exit $status
