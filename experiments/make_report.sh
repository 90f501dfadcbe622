#!/usr/bin/env bash
# The reports under docs/ (hybrid vs ddgan vs ddpm, seed 0 of each, at equal training time) from the
# runs of experiments/run_all.sh: docs/report-toy (toy:25gaussians) and docs/report-digits.
#
#   experiments/make_report.sh                          # after experiments/run_all.sh
#   RUNS=/tmp/exp experiments/make_report.sh
#
# For the digits curves of FID against kimg, each earlier checkpoint of the three digits runs is
# benchmarked at NFE 4 (ddpm with DDIM) with the experiments' N; results already in bench.jsonl are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/experiments}
NUM=${NUM:-200}
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
hybrid() { PYTHONPATH=. "$PYTHON" cli.py "$@"; }

for objective in hybrid ddgan ddpm; do
  run="$RUNS/digits/$objective/seed0"
  sampler=$([ "$objective" = ddpm ] && echo ddim || echo gan)
  for ckpt in $(ls "$run"/checkpoints/checkpoint-*.pt | sort | head -n -1); do
    grep -q "\"checkpoint\": \"$ckpt\".*\"sampler\": \"$sampler\", \"nfe\": 4," "$run/bench.jsonl" 2>/dev/null ||
      hybrid bench "$ckpt" --nfe 4 --sampler "$sampler" --repeats 1 --num "$NUM" --metrics fid,kid --device cpu
  done
done

runs() { for objective in hybrid ddgan ddpm; do echo "$RUNS/$1/$objective/seed0"; done; }
hybrid report $(runs toy-25gaussians) --out docs/report-toy \
  --title "hybrid vs ddgan vs ddpm on toy:25gaussians, 3 minutes of training each (seed 0)"
hybrid report $(runs digits) --out docs/report-digits \
  --title "hybrid vs ddgan vs ddpm on digits, 4 minutes of training each (seed 0)"
du -ch docs/report-*/report.md docs/report-*/*.png | tail -n 1  # what is committed (report.html embeds the same PNGs)
