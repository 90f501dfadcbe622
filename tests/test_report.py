"""`hybrid report`: hand-made and real run directories, missing files, bad input, and the HTML
in a real headless browser."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_user_error, latest_checkpoint
from hybridgan.metrics.bench import BenchConfig, bench
from hybridgan.metrics.evaluate import EvalConfig
from hybridgan.metrics.report import write_report
from hybridgan.training.data import load_dataset

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def png(path: Path, rgb: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), rgb).save(path)


def bench_record(nfe: int, swd: list[float], ms: float) -> dict:
    """A bench.jsonl record as metrics.bench writes it (only the fields a report reads)."""
    summary = {"mean": float(np.mean(swd)), "std": float(np.std(swd, ddof=1)), "min": min(swd), "max": max(swd), "values": swd}
    return {"checkpoint": "ckpt.pt", "kimg": 3.0, "objective": "hybrid", "sampler": "gan", "nfe": nfe,
            "metrics": {"swd": summary}, "ms_per_img": ms, "img_per_s": 1000 / ms, "timing_batch": 64,
            "protocol": {"num": 500, "repeats": len(swd), "ref": "toy:8gaussians", "num_ref": 1000, "ref_sha256": "ab" * 32,
                         "extractor": None, "device": "cpu (test)", "torch": "2", "torch_fidelity": "0.4.0",
                         "hybrid": "0.1.0", "date": "2026-01-01T00:00:00+00:00", "details": {"swd": "sliced W1"}}}


def make_run(root: Path, name: str, objective: str, swd: list[float], full: bool = True) -> Path:
    """A run directory written by hand: config, three ticks, three evaluations, bench, two grids."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({
        "data": "toy:8gaussians", "objective": objective, "batch": 64, "lr_g": 2e-4, "model": {"steps": 4},
        "_run": {"machine": "Test CPU, 2 CPUs", "versions": {"torch": "2.14.1", "hybridgan": "0.1.0"},
                 "git_commit": "0123456789abcdef", "command": "hybrid train --data toy:8gaussians",
                 "started": "2026-12-06T03:00:00+00:00"}}))
    if not full:
        return run
    d = {"D/logit/real": 0.5, "D/logit/fake": -0.5, "Loss/D": 1.2} if objective != "ddpm" else {}
    write_jsonl(run / "stats.jsonl", [{"kimg": k, "seconds": 30.0 * k, "Loss/G": 1 / k, "Speed/img_per_s": 1000.0 + k, **d}
                                      for k in (1, 2, 3)])
    write_jsonl(run / "metrics.jsonl", [
        rec for k, s in zip((1, 2, 3), swd)
        for rec in ({"kimg": k, "metric": "swd", "value": s, "results": {"swd": s}, "num": 1000, "nfe": 4, "sampler": "gan",
                     "ref": "toy:8gaussians held-out", "extractor": None, "detail": "sliced W1"},
                    {"kimg": k, "metric": "modes", "value": k, "results": {"modes_covered": float(k), "modes_total": 8.0},
                     "num": 1000, "nfe": 4, "sampler": "gan", "ref": "toy:8gaussians held-out", "detail": "modes"})])
    write_jsonl(run / "bench.jsonl", [bench_record(1, [0.3, 0.4], 0.5), bench_record(4, [0.1, 0.2], 2.0)])
    png(run / "samples" / "samples-000001.png", (255, 0, 0))
    png(run / "samples" / "samples-000003.png", (0, 0, 255))  # the newest
    return run


def test_the_configuration_shows_a_students_distill_options(tmp_path):
    a = make_run(tmp_path, "hybrid", "hybrid", [0.5, 0.2, 0.3], full=False)
    b = make_run(tmp_path, "student", "distill", [0.9, 0.8, 0.7], full=False)
    config = json.loads((b / "config.json").read_text())
    config |= {"teacher": "teacher.pt", "student_sigma": [1.0, 0.08], "teacher_levels": 1}
    (b / "config.json").write_text(json.dumps(config))
    md = write_report([a, b], tmp_path / "out").markdown.read_text()
    assert "| teacher | – | teacher.pt |" in md and "| student_sigma | – | [1.0, 0.08] |" in md
    assert "| teacher_levels | – | 1 |" in md and "| gan_weight |" not in md  # rows no run has are left out


def test_report_of_two_runs(tmp_path):
    a = make_run(tmp_path, "hybrid", "hybrid", [0.5, 0.2, 0.3])
    b = make_run(tmp_path, "ddpm", "ddpm", [0.9, 0.8, 0.7])
    paths = write_report([a, b], tmp_path / "out")
    md = paths.markdown.read_text()
    assert "| hybrid | hybrid | toy:8gaussians | 3 | 1m 30s | 1,002 | 4 | 3 (3, 4) | 0.2 (2, 4) |" in md  # best swd at 2 kimg
    assert "| ddpm | ddpm | toy:8gaussians | 3 | 1m 30s | 1,002 | 4 | 3 (3, 4) | 0.7 (3, 4) |" in md
    assert "0.15 ± 0.071 (0.1)" in md  # bench: mean ± std (best)
    assert "No discriminator logits for ddpm" in md
    names = {p.name for p in paths.images}
    grids = ["samples-hybrid-samples-000001.png", "samples-hybrid-samples-000003.png"]  # over training, oldest first
    assert {"metrics-vs-kimg.png", "metrics-vs-nfe.png", "losses.png", "d-logits.png", *grids} <= names
    for image in paths.images:
        assert image.is_file() and f"]({image.name})" in md
    first, newest = (Image.open(paths.markdown.parent / g).convert("RGB").getpixel((0, 0)) for g in grids)
    assert (first, newest) == ((255, 0, 0), (0, 0, 255))
    assert "| hybrid, 1 kimg | hybrid, 3 kimg |" in md and "1: " not in md, "grids captioned by kimg, no stray lines"
    assert "\n# hybrid benchmark report: toy:8gaussians\n" in md, "a title by what the report holds"
    assert "## Configuration" in md and "| lr_g | 0.0002 | 0.0002 |" in md and "| model steps | 4 | 4 |" in md
    assert "| git commit | 0123456789ab | 0123456789ab |" in md
    assert "| machine | Test CPU, 2 CPUs | Test CPU, 2 CPUs |" in md and "`hybrid train --data toy:8gaussians`" in md
    check_self_contained(paths.html.read_text(), len(paths.images))


def test_a_setting_benchmarked_at_several_checkpoints_becomes_a_curve_against_kimg(tmp_path):
    from hybridgan.metrics.report import bench_series, load_run

    run = make_run(tmp_path, "digits", "hybrid", [], full=False)
    at = [dict(bench_record(4, swd, 2.0), checkpoint=f"ckpt-{kimg}.pt", kimg=kimg)
          for kimg, swd in ((10.0, [0.5, 0.7]), (20.0, [0.3, 0.5]), (30.0, [0.1, 0.3]))]
    once = dict(bench_record(1, [0.9, 0.9], 0.5), checkpoint="ckpt-30.pt", kimg=30.0)  # one checkpoint: no curve
    write_jsonl(run / "bench.jsonl", [*at, once])
    series = bench_series(load_run(run))
    assert series == {"digits gan NFE 4": {"swd": [(10.0, 0.6, 4), (20.0, 0.4, 4), (30.0, pytest.approx(0.2), 4)]}}
    paths = write_report([run], tmp_path / "out")
    assert "metrics-vs-kimg.png" in {p.name for p in paths.images}
    # No training-time evaluations: the summary's best value comes from the bench records.
    assert "| digits | hybrid | toy:8gaussians | – | – | – | 1, 4 | 0.2 (30, 4) |" in paths.markdown.read_text()


def check_self_contained(page: str, images: int) -> None:
    """Every <img> is a data URI holding a readable PNG; nothing is loaded from elsewhere."""
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == images
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert not re.search(r'(src|href)="(?!data:)', page)


def test_missing_files_are_noted(tmp_path):
    bare = make_run(tmp_path, "bare", "hybrid", [], full=False)
    paths = write_report([bare], tmp_path / "out")
    md = paths.markdown.read_text()
    for note in ("no metrics.jsonl or bench.jsonl records yet", "No bench.jsonl in any run", "no sample grid", "No run has loss records"):
        assert note in md
    assert "# hybrid training report: toy:8gaussians" in md, "no bench records: not called a benchmark"
    assert "## Protocol" not in md, "no heading over nothing"
    assert paths.images == [] and "<img" not in paths.html.read_text()


def test_report_of_a_trained_and_benchmarked_run(toy_run, tmp_path):
    run = shutil.copytree(toy_run, tmp_path / "run")
    cfg = BenchConfig(nfe=(1, 2), repeats=2, eval=EvalConfig(metrics=("modes", "swd"), num=200), timing_calls=1)
    bench([str(latest_checkpoint(run))], cfg, torch.device("cpu"), load_dataset, log=lambda _: None)
    paths = write_report([run], tmp_path / "out")
    md = paths.markdown.read_text()
    assert "| run | kimg | sampler | NFE | modes_covered ↑ | swd ↓ | high_quality ↑ |" in md
    assert "200 × 2 seeds" in md and "toy:8gaussians" in md
    assert (paths.markdown.parent / "metrics-vs-nfe.png").is_file()
    assert (paths.markdown.parent / "samples-run-samples-000001.png").is_file()


def test_cli_report_and_bad_input(hybrid, tmp_path):
    run = make_run(tmp_path, "r", "hybrid", [0.5, 0.2, 0.3])
    out = tmp_path / "out"
    result = hybrid("report", run, "--out", out)
    assert result.code == 0, result.err
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert hybrid("report", run, "--out", out).code == 0  # regenerating replaces our own report
    assert_user_error(hybrid("report", tmp_path / "nope", "--out", out), "nope")
    (tmp_path / "empty").mkdir()
    assert_user_error(hybrid("report", tmp_path / "empty", "--out", out), "not a run directory")
    (tmp_path / "file").write_text("x")
    assert_user_error(hybrid("report", run, "--out", tmp_path / "file"), "--out")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "report.md").write_text("# my notes\n")
    assert_user_error(hybrid("report", run, "--out", foreign), "not written by")
    assert (foreign / "report.md").read_text() == "# my notes\n"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; CI installs it)")
def test_html_renders_in_a_headless_browser(tmp_path):
    runs = [make_run(tmp_path, "hybrid", "hybrid", [0.5, 0.2, 0.3]), make_run(tmp_path, "ddpm", "ddpm", [0.9, 0.8, 0.7])]
    paths = write_report(runs, tmp_path / "out")
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1200,2000",
           paths.html.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.std() > 10  # not a blank page
    assert (pixels.min(axis=2) < 235).mean() > 0.03  # text, tables and plots cover part of the page
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 80  # plot lines and sample grids; text is grey
    rows = np.nonzero(colourful.any(axis=1))[0]
    assert colourful.sum() > 2000 and rows.max() - rows.min() > 500, "no coloured plots in the screenshot"
    dom = subprocess.run([*cmd[:-3], "--dump-dom", paths.html.as_uri()], capture_output=True, text=True, timeout=90).stdout
    for heading in ("Summary", "Configuration", "Training curves", "Samples over training", "Protocol"):
        assert f"<h2>{heading}</h2>" in dom, heading


def test_class_balance_keys_order_and_direction():
    from hybridgan.metrics.report import best, ordered_keys

    keys = ordered_keys(["class_knn_accuracy", "class_min_ratio", "zeta", "class_tv", "fid"])
    assert keys == ["fid", "class_tv", "class_min_ratio", "zeta"]  # the classifier's accuracy is the reference's
    points = [(10.0, 0.3, 4), (20.0, 0.7, 4)]
    assert best(points, "class_min_ratio")[0] == 20.0 and best(points, "class_tv")[0] == 10.0
