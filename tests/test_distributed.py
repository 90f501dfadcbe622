"""Multi-process training on the CPU (gloo): `hybrid train --gpus 2 --device cpu` end to end.

Two processes on a global batch of 64 must (a) end with bitwise-equal weights on both ranks,
(b) match one process on the same batch of 64 to float rounding, and (c) leave a checkpoint
that one process resumes and continues.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, TINY_NET, latest_checkpoint, read_stats, toy_config
from hybridgan.hybrid.checkpoint import load
from hybridgan.training import distributed, train

# Both runs see the same global batch, noise and data order; they differ only in how the
# gradient means are summed (two half-batch means averaged vs one mean) and in float rounding
# of the all-reduce, ~1e-7 relative per step. Adam divides by sqrt(v), which amplifies such
# differences where a gradient is near zero, but one Adam step moves a weight by at most
# ~lr (1e-3 for D): measured after 8 steps, max |diff| was 3e-8 (G) and 5e-6 (D); 1e-4 is
# far below a single step's size and far above the rounding seen.
ATOL = 1e-4
OPTIONS = ["--data", "toy:8gaussians", "--channels", "16", "--batch", "64", "--kimg", "0.5", "--tick-every", "0.25",
           "--snapshot-every", "0.5", "--device", "cpu", "--seed", "3", "--lr-decay", "constant"]


def config(**changes):
    return toy_config(kimg=0.5, tick_kimg=0.25, snapshot_kimg=0.5, seed=3, grid_seeds=64).replace(**changes)


def train_two_processes(dump: Path, *args: str) -> subprocess.CompletedProcess:
    """`hybrid train ARGS --gpus 2` in a subprocess, each rank dumping its final state to `dump`
    (rank{r}.pt, made by tests/rank_dump); asserts that it succeeded."""
    dump.mkdir(exist_ok=True)
    paths = [str(REPO / "tests" / "rank_dump"), str(REPO), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, OMP_NUM_THREADS="1", HYBRID_RANK_DUMP=str(dump), PYTHONPATH=os.pathsep.join(filter(None, paths)))
    proc = subprocess.run([sys.executable, "-m", "hybridgan.cli", "train", *args, "--gpus", "2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """`hybrid train --gpus 2 --device cpu` in a subprocess; each rank dumps its final state."""
    root = tmp_path_factory.mktemp("ddp")
    proc = train_two_processes(root / "ranks", *OPTIONS, "--run-dir", str(root / "run"))
    return root / "run", root / "ranks", proc


def assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        diff = (a[name].float() - b[name].float()).abs().max().item()
        assert diff <= atol, f"{name}: max |diff| {diff:.3g} > {atol}"


def test_rows_split_a_batch_evenly_and_in_order():
    parts = [distributed.rows(64, r, 4) for r in range(4)]
    assert parts[0] == slice(0, 16) and parts[3] == slice(48, 64)
    assert torch.equal(torch.cat([torch.arange(64)[p] for p in parts]), torch.arange(64))
    with pytest.raises(ValueError, match="does not split evenly"):
        distributed.rows(63, 0, 2)
    x = torch.arange(6)
    assert distributed.shard(x) is x, "one process keeps the whole batch"


def test_two_processes_end_with_identical_weights_and_only_rank_0_writes(two_process_run):
    run, dump, proc = two_process_run
    ranks = [torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    ckpt = load(latest_checkpoint(run))
    for net in ("G", "G_ema", "D"):
        for name, value in ranks[0][net].items():
            assert torch.equal(value, ranks[1][net][name]), f"{net}.{name} differs between ranks"
            assert torch.equal(value, ckpt[net][name]), f"{net}.{name}: the checkpoint is not rank 0's state"
    for key in ("train", "data", "torch"):
        assert torch.equal(ranks[0]["rng"][key], ranks[1]["rng"][key]), f"RNG {key} differs between ranks"
    assert ckpt["progress"]["nimg"] == 512
    assert proc.stdout.count("tick 0 ") == 1, "only rank 0 prints"
    assert len(read_stats(run)) == 2 and (run / "samples" / "samples-000000.png").is_file()


def test_two_processes_match_one_process_on_the_same_global_batch(two_process_run, tmp_path):
    run, _, _ = two_process_run
    single = train(config(), run_dir=tmp_path / "single", model_changes=TINY_NET, quiet=True)
    a, b = load(latest_checkpoint(run)), load(latest_checkpoint(single))
    for net in ("G", "G_ema", "D"):
        assert_close(a[net], b[net], ATOL)
    for net in ("G", "D"):  # Adam's moments and step counts: what a resumed run continues from
        assert a["opt"][net]["param_groups"] == b["opt"][net]["param_groups"]
        for state_a, state_b in zip(a["opt"][net]["state"].values(), b["opt"][net]["state"].values(), strict=True):
            assert_close(state_a, state_b, ATOL)
    assert {k: a["progress"][k] for k in ("nimg", "step")} == {k: b["progress"][k] for k in ("nimg", "step")}
    for key in ("train", "data", "torch"):
        assert torch.equal(a["rng"][key], b["rng"][key]), "the generators advance as in one process"
    s2, s1 = read_stats(run), read_stats(single)
    assert s2[-1]["Loss/G"] == pytest.approx(s1[-1]["Loss/G"], rel=1e-3), "stats are pooled over ranks"


def test_one_process_resumes_a_two_process_checkpoint_as_two_processes_do(two_process_run, tmp_path):
    """8 more steps from the two-process checkpoint in one process end where two processes end: the
    checkpoint holds everything a run needs, whatever its process count. The reference continues in two
    processes from the same state rather than one process training 16 steps straight: there the
    rounding of the first 8 steps (1e-5 in D) grew through 8 more GAN steps to 3e-3 on an AVX2-only CPU.
    That the checkpoint holds all of a run's state is asserted against one process in the test above."""
    import shutil

    run, _, _ = two_process_run
    one, two, dump = tmp_path / "one", tmp_path / "two", tmp_path / "ranks"
    shutil.copytree(run, one)
    shutil.copytree(run, two)
    train(config(), run_dir=one, resume="auto", changes={"kimg": 1.0}, quiet=True)
    train_two_processes(dump, "--run-dir", str(two), "--resume", "auto", "--kimg", "1.0", "--device", "cpu")
    ranks = [torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    a, b = load(latest_checkpoint(one)), load(latest_checkpoint(two))
    assert a["progress"]["nimg"] == b["progress"]["nimg"] == 1024
    assert len(read_stats(one)) == len(read_stats(two)) == 4
    for net in ("G", "G_ema", "D"):
        assert all(torch.equal(v, ranks[1][net][k]) for k, v in ranks[0][net].items()), "two ranks resumed"
        assert_close(a[net], b[net], ATOL)


def test_diffusion_gan_adapts_one_t_over_the_processes_as_one_process_does(tmp_path):
    """r_d pools the real logits of every rank: each rank adjusts T alike, as one process on the same
    global batch does (a low target and dg_kimg 0.5 move T at each of the run's adjustments)."""
    dgan = ["--objective", "diffusion-gan", "--dg-target", "0.3", "--dg-kimg", "0.5"]
    dump = tmp_path / "ranks"
    train_two_processes(dump, *OPTIONS, *dgan, "--run-dir", str(tmp_path / "run"))
    ranks = [torch.load(dump / f"rank{r}.pt", weights_only=True)["objective"] for r in range(2)]
    single = train(config(objective="diffusion-gan", dg_target=0.3, dg_kimg=0.5), run_dir=tmp_path / "single",
                   model_changes=TINY_NET, quiet=True)
    one = load(latest_checkpoint(single))["objective"]
    assert ranks[0]["p"] == ranks[1]["p"] == one["p"] > 0, (ranks, one)
    assert [r["DiffusionGAN/T"] for r in read_stats(tmp_path / "run")] == [r["DiffusionGAN/T"] for r in read_stats(single)]


def test_a_batch_that_does_not_split_over_the_processes_is_a_user_error(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    options = [o if o != "64" else "63" for o in OPTIONS]
    proc = subprocess.run([sys.executable, "-m", "hybridgan.cli", "train", *options, "--gpus", "2", "--run-dir", str(tmp_path / "r")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "divisible by the number of processes (2)" in proc.stderr
    assert not (tmp_path / "r").exists()
