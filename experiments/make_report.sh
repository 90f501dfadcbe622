#!/usr/bin/env bash
# Reproduce docs/report-toy: train `hybrid` and `ddpm` on toy:25gaussians, benchmark both final
# checkpoints at NFE 1, 2, 4 over 3 seed ranges, and write the comparison report.
#
#   experiments/make_report.sh                    # defaults below: ~10 min on 2 shared CPU cores
#   NFE_DDPM=1,2,4 experiments/make_report.sh     # ~2 min: skips ddpm's 1000-step reference point
#   KIMG=2000 RUNS=runs/report OUT=docs/report-toy experiments/make_report.sh
#
# Existing run directories are resumed (--resume auto), not overwritten; bench.jsonl is appended to.
set -euo pipefail
cd "$(dirname "$0")/.."

KIMG=${KIMG:-2000}             # training length per objective (hybrid: 25/25 modes, 84% at 4 NFE)
EVAL_EVERY=${EVAL_EVERY:-500}  # kimg between training-time evaluations
NUM=${NUM:-2000}               # samples per bench repetition
SEEDS=${SEEDS:-3}              # bench repetitions on disjoint seed ranges
NFE=${NFE:-1,2,4}
NFE_DDPM=${NFE_DDPM:-$NFE,1000}  # ddpm also at its full chain (T=1000), as the reference point
DATA=${DATA:-toy:25gaussians}
METRICS=${METRICS:-modes,swd}
RUNS=${RUNS:-/tmp/hybrid-report-runs}
OUT=${OUT:-docs/report-toy}
DEVICE=${DEVICE:-auto}
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
hybrid() { PYTHONPATH=. "$PYTHON" cli.py "$@"; }

checkpoints=()
for objective in hybrid ddpm; do
  run="$RUNS/$objective"
  hybrid train --data "$DATA" --objective "$objective" --kimg "$KIMG" --run-dir "$run" --resume auto \
    --metrics "$METRICS" --eval-every "$EVAL_EVERY" --device "$DEVICE" --quiet
  checkpoints+=("$(ls "$run"/checkpoints/checkpoint-*.pt | sort | tail -n 1)")
done
# ddpm is sampled with both its ancestral sampler and DDIM: at 1-4 steps they differ a lot.
hybrid bench "${checkpoints[0]}" --nfe "$NFE" --seeds "$SEEDS" --num "$NUM" --metrics "$METRICS" --device "$DEVICE"
hybrid bench "${checkpoints[1]}" --nfe "$NFE_DDPM" --seeds "$SEEDS" --num "$NUM" --metrics "$METRICS" --device "$DEVICE" \
  --sampler ddpm,ddim
hybrid report "$RUNS/hybrid" "$RUNS/ddpm" --out "$OUT" --title "hybrid vs ddpm on $DATA ($KIMG kimg each)"
du -ch "$OUT"/report.md "$OUT"/*.png | tail -n 1  # what is committed (report.html embeds the same PNGs)
