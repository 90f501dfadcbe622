"""Benchmark: how far one seed's sample moves with the batch it is drawn in and the thread count.

A sample depends only on its seed, but batched matrix kernels round each row differently with
the batch shape (and, on some CPUs, with the thread count); the networks amplify that rounding
over the chain. This script trains two tiny models (a toy MLP and a digits UNet, seconds each),
draws seeds 0..63 in one batch of 64, in batches of 7 and one at a time, with 1 and 2 threads,
and prints the largest absolute and relative difference from the batch-of-64, 1-thread draw.
The tolerance the tests and the README state (1e-4) should sit well above these numbers.
Prints measured numbers; asserts nothing. Run from the repository root:

    python bench/seed_invariance.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.metrics_speed import machine  # noqa: E402
from hybridgan.hybrid.checkpoint import list_checkpoints, load_model  # noqa: E402
from hybridgan.hybrid.samplers import default_sampling, sample_batched  # noqa: E402
from hybridgan.training import TrainConfig, train  # noqa: E402

RUNS = {
    "toy:8gaussians (MLP, T=4)": (TrainConfig(data="toy:8gaussians", kimg=1, batch=64, device="cpu"), {"channels": 16}),
    "digits (UNet, T=4)": (TrainConfig(data="digits", kimg=0.256, batch=32, device="cpu", precision="fp32"),
                           {"channels": 8}),
}


def deviations(model, sampler: str, nfe: int, seeds: list[int]) -> list[tuple[str, float, float]]:
    """(setting, max |diff|, max |diff| / max |x|) of each setting against batch 64 at 1 thread."""
    torch.set_num_threads(1)
    base = sample_batched(model, seeds, batch=64, sampler=sampler, steps=nfe)
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for batch in (64, 7, 1):
            if (threads, batch) == (1, 64):
                continue
            x = sample_batched(model, seeds, batch=batch, sampler=sampler, steps=nfe)
            diff = (x - base).abs().max().item()
            rows.append((f"batch {batch}, {threads} thread{'s' if threads > 1 else ''}", diff,
                         diff / base.abs().max().item()))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=64, help="seeds 0..N-1 (default 64)")
    args = parser.parse_args(argv)
    print(f"# {machine()}")
    print("| model | sampler, NFE | setting | max abs diff | max rel diff |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (cfg, net)) in enumerate(RUNS.items()):
            run = train(cfg, run_dir=Path(tmp) / str(i), model_changes=net, quiet=True)
            model = load_model(list_checkpoints(run / "checkpoints")[-1]).eval()
            for sampler in ("gan", "ddim"):
                nfe = default_sampling(model.cfg)[1]
                for setting, diff, rel in deviations(model, sampler, nfe, list(range(args.seeds))):
                    print(f"| {name} | {sampler}, {nfe} | {setting} | {diff:.2e} | {rel:.2e} |")


if __name__ == "__main__":
    main()
