#!/usr/bin/env bash
# Every equal-training-time experiment of docs/benchmarks.md ("Digits: hybrid vs ddgan vs ddpm"), then its tables
# and plots under docs/experiments. About 3 hours on 2 CPU cores (two runs at a time, one thread each).
#
#   experiments/run_all.sh                   # runs under runs/experiments, kept and resumed if present
#   RUNS=/tmp/exp SEEDS=0,1 experiments/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/experiments}
SEEDS=${SEEDS:-0,1,2}
PYTHON=${PYTHON:-python}
TOY_MINUTES=${TOY_MINUTES:-3}
DIGITS_MINUTES=${DIGITS_MINUTES:-4}
DIGITS_LONG_MINUTES=${DIGITS_LONG_MINUTES:-12}
run() { "$PYTHON" experiments/equal_time.py --runs "$RUNS" --seeds "$SEEDS" "$@"; }

# Toys: training-time metrics every 250 kimg give the curves of the toy report.
run --data toy:25gaussians --minutes "$TOY_MINUTES" --train-options "--snapshot-every 1000000 --metrics modes,swd --eval-every 250"
run --data toy:swissroll --minutes "$TOY_MINUTES" --train-options "--snapshot-every 1000000 --metrics swd,mmd --eval-every 250"
# Digits: FID/KID of 200 samples against all 1797 digits (Inception on this CPU takes ~0.2 s an image).
run --data digits --minutes "$DIGITS_MINUTES" --num 200 --train-options "--snapshot-every 10"
# Digits at three times the budget, hybrid against ddpm's ceiling (does the gap close with time?).
run --data digits --minutes "$DIGITS_LONG_MINUTES" --num 200 --objectives hybrid,ddpm \
  --train-options "--snapshot-every 20" --runs "$RUNS/long"
# Optional, six times the budget (DIGITS_LONGER_MINUTES=24 adds about 80 minutes): does the gap keep closing?
DIGITS_LONGER_MINUTES=${DIGITS_LONGER_MINUTES:-0}
if [ "$DIGITS_LONGER_MINUTES" != 0 ]; then
  run --data digits --minutes "$DIGITS_LONGER_MINUTES" --num 200 --objectives hybrid,ddpm \
    --train-options "--snapshot-every 40" --runs "$RUNS/longer"
fi
# Optional (DIGITS_NATIVE=1 adds about 45 minutes): the 12-minute comparison at the digits' native 8x8
# instead of 16x16, where a sample has no pixel directions that real digits lack (docs/benchmarks.md).
DIGITS_NATIVE=${DIGITS_NATIVE:-0}
if [ "$DIGITS_NATIVE" != 0 ]; then
  run --data digits --minutes "$DIGITS_LONG_MINUTES" --num 200 --objectives hybrid,ddpm \
    --train-options "--resolution 8 --snapshot-every 40" --runs "$RUNS/native"
fi
# Ablation of the denoising-loss weight and of R1 around the defaults (vectors: weight 0.1, R1 0.02; the
# hybrid on images: 0.03, R1 0.005; ddgan is weight 0), and on digits of what D judges (x0 by default), at equal kimg
# with the default re-run beside the variants (under the same load). Toys on two seeds, digits on one,
# measured at NFE 4.
r1=(--variant "r1-0=--r1-gamma 0" --variant "r1-0.2=--r1-gamma 0.2")
run --data toy:25gaussians --kimg 1000 --seeds "${ABLATION_SEEDS:-0,1}" --objectives= --gan-nfe 4 "${r1[@]}" \
  --runs "$RUNS/ablation" --variant "denoise-0.1=" --variant "denoise-0=--denoise-weight 0" --variant "denoise-0.03=--denoise-weight 0.03" \
  --variant "denoise-0.3=--denoise-weight 0.3" --variant "denoise-1=--denoise-weight 1"
run --data digits --kimg 30 --seeds 0 --objectives= --num 200 --gan-nfe 4 "${r1[@]}" --variant "r1-0.02=--r1-gamma 0.02" \
  --runs "$RUNS/ablation" --variant "denoise-0.03=" --variant "denoise-0=--denoise-weight 0" \
  --variant "denoise-0.01=--denoise-weight 0.01" --variant "denoise-0.1=--denoise-weight 0.1" \
  --variant "d-pair-x_prev=--d-pair x_prev"

summarize() { "$PYTHON" experiments/summarize.py --out docs/experiments "$@"; }
summarize "$RUNS"/toy-25gaussians --variants hybrid,ddgan,ddpm
summarize "$RUNS"/toy-swissroll
summarize "$RUNS"/digits --variants hybrid,ddgan,ddpm
summarize "$RUNS"/long/digits --name "digits-${DIGITS_LONG_MINUTES}min"
if [ "$DIGITS_LONGER_MINUTES" != 0 ]; then
  summarize "$RUNS"/longer/digits --name "digits-${DIGITS_LONGER_MINUTES}min"
fi
if [ "$DIGITS_NATIVE" != 0 ]; then
  summarize "$RUNS"/native/digits --name "digits-8px-${DIGITS_LONG_MINUTES}min"
fi
summarize "$RUNS"/ablation/toy-25gaussians --name ablation-25gaussians
summarize "$RUNS"/ablation/digits --name ablation-digits
