#!/usr/bin/env bash
# One-GPU check of the cifar10-ddgan preset's model: img/s, peak GPU memory and MFU of bf16,
# torch.compile'd training through the real Trainer on synthetic 32x32 images (no data needed).
#   bench/gpu_check.sh                      # 30 warm-up + 300 timed steps at batch 256 on cuda
#   bench/gpu_check.sh --peak-flops 312e12  # MFU against another peak (here: A100 dense bf16)
# Options: python bench/gpu_check.py --help. PYTHON picks the interpreter (default: .venv's
# python where `make` made one, else python on the PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
default=python
[ -x .venv/bin/python ] && default=.venv/bin/python
exec "${PYTHON:-$default}" bench/gpu_check.py "$@"
