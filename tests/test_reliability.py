"""Faults: a second writer, divergence, an unwritable checkpoint folder, fuzzed options."""

from __future__ import annotations

import os
import string
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, TINY_NET, assert_user_error, latest_checkpoint, toy_config
from hybridgan.hybrid.errors import RunError, TrainingDiverged
from hybridgan.training import train
from hybridgan.training.rundir import RunDir


def test_second_writer_is_refused_and_a_dead_writer_leaves_no_lock(tmp_path, hybrid):
    run = RunDir(tmp_path / "run")
    run.create()
    run.lock()  # this process holds the run, like a `hybrid train` in progress
    try:
        result = hybrid("train", "--data", "toy:8gaussians", "--kimg", "0.1", "--run-dir", run.path, "--resume", "auto")
        assert_user_error(result, str(run.path), "another `hybrid train`")
    finally:
        run.unlock()
    # A writer killed with SIGKILL: the kernel drops its flock, so resuming is not blocked.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from training.rundir import RunDir; "
         "r = RunDir(sys.argv[1]); r.lock(); print('locked', flush=True); time.sleep(60)", str(run.path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    result = hybrid("train", "--data", "toy:8gaussians", "--kimg", "0.128", "--batch", "64", "--channels", "16",
                    "--run-dir", run.path, "--resume", "auto", "--quiet")
    assert result.code == 0, result.err
    assert latest_checkpoint(run.path).exists()


def test_divergence_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    train(toy_config(kimg=1, snapshot_kimg=0.5, tick_kimg=0.25), run_dir=run_dir, model_changes=TINY_NET, quiet=True)
    good = latest_checkpoint(run_dir)
    good_bytes = good.read_bytes()
    # Poison the generator's output layer, as an exploding update would, then continue.
    state = torch.load(good, weights_only=True)
    state["G"] = {k: v.fill_(float("nan")) if k.startswith("out.") else v for k, v in state["G"].items()}
    poisoned = tmp_path / "poisoned.pt"
    torch.save(state, poisoned)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train(toy_config(kimg=2), run_dir=run_dir, resume=str(poisoned), changes={"kimg": 2}, quiet=True)
    assert latest_checkpoint(run_dir) == good, "no checkpoint may be written after divergence"
    assert good.read_bytes() == good_bytes


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_checkpoint_folder_keeps_the_previous_checkpoint(tmp_path):
    _unwritable_case(tmp_path)


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """A full disk while writing: torch.save fails part-way; the earlier checkpoint survives."""
    run_dir = tmp_path / "run"
    train(toy_config(kimg=0.5, snapshot_kimg=0.5), run_dir=run_dir, model_changes=TINY_NET, quiet=True)
    previous = latest_checkpoint(run_dir)
    before = previous.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(RunError, match="No space left on device"):
        train(toy_config(kimg=1), run_dir=run_dir, resume="auto", changes={"kimg": 1}, quiet=True)
    assert latest_checkpoint(run_dir) == previous and previous.read_bytes() == before
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")], "temporary file left"


def _unwritable_case(tmp_path):
    run_dir = tmp_path / "run"
    train(toy_config(kimg=0.5, snapshot_kimg=0.5), run_dir=run_dir, model_changes=TINY_NET, quiet=True)
    previous = latest_checkpoint(run_dir)
    (run_dir / "checkpoints").chmod(0o500)
    try:
        with pytest.raises(RunError):
            train(toy_config(kimg=1), run_dir=run_dir, resume="auto", changes={"kimg": 1}, quiet=True)
    finally:
        (run_dir / "checkpoints").chmod(0o700)
    assert latest_checkpoint(run_dir) == previous


# ------------------------------------------------------------------------------------ fuzzing

odd_text = st.text(alphabet=string.ascii_letters + string.digits + " -_.,:/é✓日", min_size=0, max_size=12)
# Small numbers keep a valid run to a few steps; the odd ones must be refused with one line.
numbers = st.one_of(st.integers(-5, 12).map(str), st.floats(-2, 2).map(str),
                    st.sampled_from(["nan", "inf", "-inf", "1e999", "0x10", "", " ", "１２", "3 4"]), odd_text)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(["--kimg", "--batch", "--resolution", "--steps", "--seed", "--lr-g", "--r1-gamma",
                               "--dropout", "--channels", "--snapshot-every", "--objective", "--norm", "--device"]),
       value=numbers, data=st.sampled_from(["toy:8gaussians", "toy:nope", "./no such dir é", "digits.npy"]))
def test_fuzzed_train_options_exit_0_or_2(tmp_path_factory, hybrid, option, value, data):
    run_dir = tmp_path_factory.mktemp("fuzz") / "run é ✓"
    # The fuzzed option comes last, so it overrides the small defaults before it.
    result = hybrid("train", "--data", data, "--kimg", "0.064", "--batch", "32", "--channels", "8",
                    "--run-dir", run_dir, "--quiet", option, value)
    assert result.code in (0, 2), result.err
    assert "Traceback" not in result.err
    if result.code == 2:
        assert len(result.err.strip().splitlines()) == 1, result.err


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(["--seeds", "--steps", "--num", "--sampler", "--batch", "--out"]), value=odd_text)
def test_fuzzed_sample_options_exit_0_or_2(toy_run, tmp_path_factory, hybrid, option, value):
    out = tmp_path_factory.mktemp("out") / "s é.npy"
    args = ["sample", latest_checkpoint(toy_run), option, value] + (["--out", out] if option != "--out" else [])
    result = hybrid(*args)
    assert result.code in (0, 2), result.err
    assert "Traceback" not in result.err


def test_sigkill_at_any_moment_resumes_to_the_uninterrupted_weights(tmp_path):
    """Kill -9 mid-interval and mid-checkpoint-write, four times; `--resume auto` each time. The
    final weights equal those of a run that was never interrupted, bitwise."""
    reference = train(toy_config(kimg=2, snapshot_kimg=0.5, tick_kimg=0.25), run_dir=tmp_path / "reference",
                      model_changes=TINY_NET, quiet=True)
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "hybridgan.cli", "train", "--data", "toy:8gaussians", "--kimg", "2", "--batch", "64",
            "--channels", "16", "--lr-decay", "constant", "--snapshot-every", "0.5", "--tick-every", "0.25",
            "--device", "cpu", "--run-dir", str(run), "--resume", "auto", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "fault_inject"), str(REPO)]))
    # 32 steps in all, a checkpoint every 8. Faults: before the first checkpoint; inside the
    # first write; after two checkpoints; inside the write of the final checkpoint.
    for fault, n in (("HYBRID_KILL_AT_STEP", 5), ("HYBRID_KILL_IN_SAVE", 1), ("HYBRID_KILL_AT_STEP", 20),
                     ("HYBRID_KILL_IN_SAVE", 2)):
        proc = subprocess.run(argv, cwd=REPO, env=dict(env, **{fault: str(n)}), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == -9, (fault, n, proc.stderr[-2000:])
        for path in (run / "checkpoints").glob("checkpoint-*.pt"):
            torch.load(path, weights_only=True)  # every checkpoint under its final name is complete
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = torch.load(latest_checkpoint(reference), weights_only=True), torch.load(latest_checkpoint(run), weights_only=True)
    assert a["progress"]["nimg"] == b["progress"]["nimg"] == 2048
    for key in ("G", "G_ema", "D"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after kill -9 and resume"
    assert not list((run / "checkpoints").glob(".*.tmp")), "stale partial files are cleaned up on resume"
