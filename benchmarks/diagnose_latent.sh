#!/usr/bin/env bash
# Every variant of benchmarks/diagnose_latent.py side by side, as parallel processes (a machine with
# a GPU and many cores; each run is the full demo preset), then the timm example with the paper's
# z path and with the bottleneck + softmax one. Results: DIR/*.json, DIR/summary.md, DIR/logs/.
#
#   bash benchmarks/diagnose_latent.sh DIR [SECONDS_PER_RUN]
set -u
out=${1:?usage: diagnose_latent.sh DIR [SECONDS_PER_RUN]}
limit=${2:-420}
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$(dirname "$0")/.."  # the repository root: the benchmarks run as python -m benchmarks.<name>
# The demo backbone once (cached under $UA_CACHE_DIR), before the runs that share it.
python3 -c "from uncertainty_adapters.integrations.pipeline.backbone.demo import ensure_demo_backbone as e; print(e()[1])" \
  > "$out/logs/backbone.log" 2>&1
python3 -c "from pathlib import Path; from benchmarks import diagnose_latent as d; d.write_bimodal(Path('$out'))"
synthetic="paper paper-beta0 softmax bottleneck softmax-bottleneck softmax-bottleneck-freebits concat concat-bottleneck sample sample-bottleneck none"
bimodal="paper softmax bottleneck softmax-bottleneck none"
for v in $synthetic; do
  timeout "$limit" python3 -m benchmarks.diagnose_latent --out "$out" --data synthetic --variant "$v" > "$out/logs/synthetic-$v.log" 2>&1 &
done
for v in $bimodal; do
  timeout "$limit" python3 -m benchmarks.diagnose_latent --out "$out" --data bimodal --variant "$v" > "$out/logs/bimodal-$v.log" 2>&1 &
done
timeout "$limit" python3 examples/timm_vit_segmentation.py --cmsm-activation relu --latent-placement residual \
  > "$out/logs/timm-paper.log" 2>&1 &
timeout "$limit" python3 examples/timm_vit_segmentation.py --cmsm-activation softmax --latent-placement bottleneck \
  > "$out/logs/timm-softmax-bottleneck.log" 2>&1 &
wait
python3 -m benchmarks.diagnose_latent --out "$out" --summarize > "$out/summary.md" 2>&1
cat "$out/summary.md"
