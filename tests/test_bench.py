"""`hybrid bench`: seed repetitions, summaries, speed, protocol, where records go, one-line errors."""

from __future__ import annotations

import json
import math
import shutil
import statistics

import numpy as np
import pytest
import torch

from conftest import REPO, TINY_NET, assert_same_samples, assert_user_error, latest_checkpoint, toy_config
from hybridgan.hybrid.errors import UserError
from hybridgan.metrics.bench import BenchConfig, bench, seed_ranges, summarize
from hybridgan.metrics.evaluate import SEED_BASE, EvalConfig
from hybridgan.training import train
from hybridgan.training.data import load_dataset

FAST = BenchConfig(nfe=(1, 2, 8), repeats=2, eval=EvalConfig(metrics=("modes", "swd"), num=300), timing_batch=32)


@pytest.fixture
def run_copy(toy_run, tmp_path):
    """A copy of the shared toy run that bench may append to."""
    return shutil.copytree(toy_run, tmp_path / "run")


def read_records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_seed_ranges_are_disjoint_and_consecutive():
    ranges = seed_ranges(100, 3)
    assert [r[0] for r in ranges] == [SEED_BASE, SEED_BASE + 100, SEED_BASE + 200]
    assert len(set().union(*map(set, ranges))) == 300


def test_summarize_mean_std_min_max():
    s = summarize([{"fid": {"fid": 3.0}}, {"fid": {"fid": 5.0}}, {"fid": {"fid": 4.0}}])["fid"]
    assert (s["mean"], s["min"], s["max"], s["values"]) == (4.0, 3.0, 5.0, [3.0, 5.0, 4.0])
    assert s["std"] == pytest.approx(1.0)
    assert summarize([{"fid": {"fid": 3.0}}])["fid"]["std"] == 0.0


def test_bench_writes_beside_the_run_with_protocol(run_copy):
    ckpt = latest_checkpoint(run_copy)
    notes: list[str] = []
    written = bench([str(ckpt)], FAST, torch.device("cpu"), load_dataset, log=notes.append)
    path = run_copy / "bench.jsonl"
    assert list(written) == [path]
    records = read_records(path)
    assert [(r["sampler"], r["nfe"]) for r in records] == [("gan", 1), ("gan", 2)]  # NFE 8 > T = 4: skipped
    assert any("NFE 8 skipped" in n for n in notes)
    for r in records:
        assert r["checkpoint"] == str(ckpt) and r["objective"] == "hybrid" and r["data"] == "toy:8gaussians"
        swd = r["metrics"]["swd"]
        assert len(swd["values"]) == 2 and swd["values"][0] != swd["values"][1]  # different seeds, different draws
        assert swd["mean"] == pytest.approx(statistics.fmean(swd["values"])) and swd["min"] == min(swd["values"])
        assert "modes_covered" in r["metrics"]
        assert r["ms_per_img"] > 0 and r["img_per_s"] == pytest.approx(1000 / r["ms_per_img"])
        assert r["timing_batch"] == 32 and r["timing_calls"] >= 3
        p = r["protocol"]
        assert p["num"] == 300 and p["repeats"] == 2 and p["seeds"] == [[SEED_BASE, SEED_BASE + 299],
                                                                       [SEED_BASE + 300, SEED_BASE + 599]]
        assert p["ref"] == "toy:8gaussians" and len(p["ref_sha256"]) == 64
        assert p["torch"] == torch.__version__ and p["torch_fidelity"] and p["hybridgan"] and p["date"] and p["device"]


def test_bench_is_reproducible_and_appends(run_copy, tmp_path):
    ckpt = str(latest_checkpoint(run_copy))
    cfg = BenchConfig(nfe=(1,), repeats=1, eval=EvalConfig(metrics=("swd",), num=200), timing_calls=1)
    out = tmp_path / "b.jsonl"
    bench([ckpt], cfg, torch.device("cpu"), load_dataset, out=out, log=lambda _: None)
    bench([ckpt], cfg, torch.device("cpu"), load_dataset, out=out, log=lambda _: None)
    first, second = read_records(out)
    assert first["metrics"] == second["metrics"]  # samples depend only on their seeds
    assert math.isfinite(first["metrics"]["swd"]["mean"])


def test_no_fitting_nfe_is_a_user_error(run_copy):
    cfg = BenchConfig(nfe=(8, 16), repeats=1, eval=EvalConfig(metrics=("swd",), num=50))
    with pytest.raises(UserError, match="T = 4"):
        bench([str(latest_checkpoint(run_copy))], cfg, torch.device("cpu"), load_dataset, log=lambda _: None)


def test_cli_bench_out_and_errors(hybrid, toy_run, tmp_path):
    ckpt = latest_checkpoint(toy_run)
    out = tmp_path / "bench.jsonl"
    result = hybrid("bench", ckpt, "--nfe", "1", "--seeds", "2", "--num", "100", "--metrics", "swd", "--batch", "16",
                    "--out", out)
    assert result.code == 0, result.err
    assert f"appended 1 records to {out}" in result.out
    assert read_records(out)[0]["protocol"]["repeats"] == 2
    assert_user_error(hybrid("bench", ckpt, "--nfe", "0,x", "--out", out), "--nfe")
    assert_user_error(hybrid("bench", ckpt, "--sampler", "euler", "--out", out), "euler")
    assert_user_error(hybrid("bench", ckpt, "--metrics", "fid", "--nfe", "1", "--num", "10", "--out", out), "fid")
    loose = tmp_path / "loose.pt"
    shutil.copyfile(ckpt, loose)
    assert_user_error(hybrid("bench", loose, "--nfe", "1"), "--out")  # not in a run directory: where to write?
    assert_user_error(hybrid("bench", tmp_path / "missing.pt", "--out", out), "missing.pt")


def test_bench_of_an_image_model_states_extractor_and_reference(digits_run, tmp_path, monkeypatch):
    """The image path end to end, with a tiny registered extractor instead of Inception (seconds, not minutes)."""
    from test_metrics import TINY, tiny_extractor_class
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if TINY not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(TINY, tiny_extractor_class())
    monkeypatch.setenv("HYBRID_CACHE", str(tmp_path / "cache"))
    ecfg = EvalConfig(metrics=("fid", "kid"), num=40, ref_num=60, extractor=TINY, batch=20, kid_subsets=5, kid_subset_size=20)
    cfg = BenchConfig(nfe=(1,), repeats=2, eval=ecfg, timing_batch=8, timing_calls=1)
    out = tmp_path / "bench.jsonl"
    bench([str(latest_checkpoint(digits_run))], cfg, torch.device("cpu"), load_dataset, out=out, log=lambda _: None)
    (record,) = read_records(out)
    assert record["nfe"] == 1 and len(record["metrics"]["fid"]["values"]) == 2 and "kid" in record["metrics"]
    p = record["protocol"]
    assert p["extractor"].startswith(TINY) and p["num"] == 40 and p["num_ref"] == 60 and len(p["ref_sha256"]) == 64
    assert p["ref_cache"].startswith("digits-") and (tmp_path / "cache" / "reference" / p["ref_cache"]).is_file()


def bench_script(name: str):
    """A script of bench/ imported as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peers_bench_without_the_peers_says_how_to_install_them(monkeypatch, capsys):
    peers = bench_script("peers")
    monkeypatch.setattr(peers, "missing_peers", lambda: ["denoising-diffusion-pytorch"])
    monkeypatch.setattr("sys.argv", ["peers.py"])
    with pytest.raises(SystemExit) as exit_info:
        peers.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "denoising-diffusion-pytorch not installed" in err[0] and ".[peers]" in err[0]


def test_gpu_check_smoke_run_on_the_cpu(capsys):
    """bench/gpu_check.py's CPU smoke mode: the preset's model (narrowed) trains through the real
    Trainer, and the FLOP count is that of its convolutions and matmuls, forward and backward."""
    gpu_check = bench_script("gpu_check")
    gpu_check.main(["--device", "cpu", "--steps", "2", "--warmup", "1", "--batch", "4", "--channels", "16",
                    "--no-compile", "--precision", "fp32", "--peak-flops", "1e12"])
    lines = capsys.readouterr().out.strip().splitlines()
    r = json.loads(lines[-1])
    assert r["device"] == "cpu" and r["batch"] == 4 and r["compiled"] is False and r["steps"] == 2
    assert r["img_s"] > 0 and r["peak_memory_mb"] > 0
    # The 16-wide generator's forward is 0.21 GFLOP per image; a step runs it forward and
    # backward (~3x) and the 64-wide discriminator several times: more than 4 x 3 x 0.21 GFLOP
    # (16.8 GFLOP measured; the same count as FlopCounterMode's own module tracker on a plain step).
    assert 2.5e9 < r["flops_per_step"] < 1e11
    assert r["mfu"] == pytest.approx(r["flops_per_step"] * r["img_s"] / 4 / 1e12)
    assert any(line.startswith("MFU: ") for line in lines)
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--device", "cpu", "--steps", "0"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("warmup, timed", [(0.0, 3), (12.0, 1)])
def test_a_slow_sampler_is_timed_once_after_its_warm_up(monkeypatch, warmup, timed):
    """3 timed calls after the warm-up (each "takes" 1 s here), or 1 when the warm-up took >= 10 s."""
    from hybridgan.hybrid import samplers
    from hybridgan.metrics import bench as bench_module

    clock, calls = [0.0], []

    def fake_sample(model, seeds, **kwargs):
        clock[0] += warmup if not calls else 1.0
        calls.append(len(seeds))

    monkeypatch.setattr(samplers, "sample", fake_sample)
    monkeypatch.setattr(bench_module.time, "perf_counter", lambda: clock[0])
    timing = bench_module.time_sampling(None, "ddpm", 1000, torch.device("cpu"), batch=4, calls=3)
    assert timing.calls == timed and len(calls) == 1 + timed
    assert timing.ms_per_img == pytest.approx(250.0)


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory):
    """A toy run whose checkpoint holds G_ema and two earlier states of it (a mixture of three)."""
    return train(toy_config(mixture=3, mixture_kimg=0.25), run_dir=tmp_path_factory.mktemp("mixture") / "run",
                 model_changes=TINY_NET, quiet=True)


def test_a_mixture_is_sampled_evaluated_and_benched_and_mixture_1_is_g_ema_alone(mixture_run, hybrid, tmp_path):
    ckpt = latest_checkpoint(mixture_run)
    x = {}
    for name, extra in (("mix", ()), ("one", ("--mixture", "1"))):
        result = hybrid("sample", ckpt, "--seeds", "0-5", "--out", tmp_path / f"{name}.npy", *extra)
        assert result.code == 0, result.err
        x[name] = np.load(tmp_path / f"{name}.npy")
    assert "a mixture of 3 generators" in hybrid("sample", ckpt, "--num", "3", "--out", tmp_path / "g.npy").out
    # Seeds 0 and 3 draw from G_ema in both (in batches of 2 and 6: to rounding, conftest.SAMPLE_ATOL);
    # the others from the earlier states in the mixture.
    assert_same_samples(x["mix"][[0, 3]], x["one"][[0, 3]])
    assert not np.allclose(x["mix"][[1, 2, 4, 5]], x["one"][[1, 2, 4, 5]])

    out = tmp_path / "bench.jsonl"
    for extra in ((), ("--mixture", "1")):
        result = hybrid("bench", ckpt, "--nfe", "4", "--seeds", "1", "--num", "300", "--metrics", "swd", "--out", out,
                        *extra)
        assert result.code == 0, result.err
    mixed, alone = read_records(out)
    assert (mixed["generators"], alone["generators"]) == (3, 1)
    assert mixed["metrics"]["swd"]["mean"] != alone["metrics"]["swd"]["mean"]
    # A list measures each mixture in one call, the same numbers as one call each; more than it holds is skipped.
    sweep = tmp_path / "sweep.jsonl"
    result = hybrid("bench", ckpt, "--nfe", "4", "--seeds", "1", "--num", "300", "--metrics", "swd", "--out", sweep,
                    "--mixture", "3,5,1")
    assert result.code == 0, result.err
    assert "mixture 5 skipped: the checkpoint holds 3 generators" in result.err
    swept = read_records(sweep)
    assert [r["generators"] for r in swept] == [3, 1]
    assert [r["metrics"]["swd"]["values"] for r in swept] == [mixed["metrics"]["swd"]["values"], alone["metrics"]["swd"]["values"]]
    result = hybrid("bench", ckpt, "--nfe", "4", "--out", sweep, "--mixture", "4,5")
    assert result.code == 2 and result.err.count("\n") == 1 and "none of --mixture 4,5 fits" in result.err, result.err
    shutil.copyfile(out, mixture_run / "bench.jsonl")
    assert hybrid("report", mixture_run, "--out", tmp_path / "report").code == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "gan, mixture 3" in report and "| gan |" in report, "both settings are rows of their own"
