"""Shared fixtures: tiny configs, trained tiny runs (built once per session), a CLI runner.

Every run here is small enough to train in seconds on two CPU cores.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

# Two shared cores: OpenMP worker threads spinning against other processes made small matmuls
# 100x slower on this machine, so the suite (and every subprocess it starts) uses one thread.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from hybridgan import cli  # noqa: E402
from hybridgan.hybrid.checkpoint import list_checkpoints  # noqa: E402
from hybridgan.training import TrainConfig, train  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY_NET = {"channels": 16}  # the generator width of the toy runs
TINY_UNET = {"channels": 8}  # the generator width of the digits runs


def toy_config(**changes) -> TrainConfig:
    """A hybrid run on 8 Gaussians that takes a second or two: 1 kimg in batches of 64."""
    # Constant rates: the learning tests' thresholds were measured without the cosine decay.
    base = TrainConfig(data="toy:8gaussians", kimg=1, batch=64, tick_kimg=0.5, snapshot_kimg=1, grid_seeds=16,
                       device="cpu", lr_decay="constant")
    return base.replace(**changes)


def digits_config(**changes) -> TrainConfig:
    """A hybrid run on the 16x16 digits: four steps of 32 images."""
    base = TrainConfig(data="digits", kimg=0.128, batch=32, tick_kimg=0.064, snapshot_kimg=0.128, grid_seeds=4,
                       device="cpu", precision="fp32")
    return base.replace(**changes)


# One seed's sample drawn in batches of other sizes or compositions holds to these tolerances, not
# bitwise (README, "What is exact"): batched matrix kernels round each row differently with the
# batch shape, on each CPU in its own way, and the networks amplify that over the chain. Measured
# by bench/seed_invariance.py: up to 4.6e-4 for the toy MLPs (Fourier input features, 4 steps)
# and 2e-7 for the UNets; samples of different seeds differ by ~1. Relative 1e-5 on top: the
# untrained eps models of test_samplers reach large values.
SAMPLE_ATOL = {"vector": 2e-3, "image": 1e-5}
SAMPLE_RTOL = 1e-5


def assert_same_samples(a, b) -> None:
    """Samples ([N, D] / [D] or [N, C, H, W] / [C, H, W], tensors or arrays) of the same seeds,
    drawn in different batches."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    atol = SAMPLE_ATOL["image" if a.dim() >= 3 else "vector"]
    torch.testing.assert_close(a, b, rtol=SAMPLE_RTOL, atol=atol)


def read_stats(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "stats.jsonl").read_text().splitlines()]


def latest_checkpoint(run_dir: Path) -> Path:
    found = list_checkpoints(Path(run_dir) / "checkpoints")
    assert found, f"no checkpoint in {run_dir}"
    return found[-1]


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """A finished 1-kimg hybrid run on toy:8gaussians. Tests must not modify it."""
    run_dir = tmp_path_factory.mktemp("toy") / "run"
    train(toy_config(), run_dir=run_dir, model_changes=TINY_NET, quiet=True)
    return run_dir


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A finished (very short) hybrid run on digits with an 8-channel UNet. Tests must not modify it."""
    run_dir = tmp_path_factory.mktemp("digits") / "run"
    train(digits_config(), run_dir=run_dir, model_changes=TINY_UNET, quiet=True)
    return run_dir


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def hybrid(capsys):
    """Run the console entry point `cli.main` in-process: hybrid("sample", CKPT, "--out", x)."""

    def run(*args) -> Result:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        code = exit_info.value.code
        return Result(0 if code is None else code, out, err)

    return run


def assert_user_error(result: Result, *mentions: str) -> None:
    """Exit 2 with exactly one line on stderr that names the input, and no traceback."""
    assert result.code == 2, f"exit {result.code}, stderr: {result.err!r}"
    lines = result.err.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {result.err!r}"
    assert lines[0].startswith("hybrid: error:"), lines[0]
    for text in mentions:
        assert str(text) in lines[0], f"{text!r} not in {lines[0]!r}"
    assert "Traceback" not in result.err + result.out
