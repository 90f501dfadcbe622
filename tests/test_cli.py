"""The command line: help texts, one-line errors with exit 2, sample outputs, data commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, TINY_NET, assert_same_samples, assert_user_error, latest_checkpoint, toy_config
from hybridgan import cli
from hybridgan.hybrid.checkpoint import load
from hybridgan.training import train
from hybridgan.training.config import read_config
from hybridgan.training.data import SOURCES

COMMANDS = [[], ["train"], ["sample"], ["data"], ["data", "list"], ["data", "info"]]


def command_named(path: list[str]) -> click.Command:
    command = cli.cli
    for name in path:
        command = command.commands[name]
    return command


# ------------------------------------------------------------------------------------------ help


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "hybrid")
def test_help_shows_an_example(path, hybrid):
    result = hybrid(*path, "--help")
    assert result.code == 0, result.err
    assert "Usage: hybrid" in result.out
    assert "Examples:" in result.out
    example_lines = [line.strip() for line in result.out.splitlines() if line.strip().startswith("hybrid ")]
    assert any(line.startswith(" ".join(["hybrid", *path])) for line in example_lines), result.out


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "hybrid")
def test_every_option_has_a_help_text(path):
    for param in command_named(path).params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"


# ----------------------------------------------------------------------------------- bad input


def folder_with_a_corrupt_png(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(folder / f"{i}.png")
    bad = folder / "sub" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return folder, bad


def bad_train_input(kind: str, tmp_path):
    """(argv after `train`, text the error must mention) for one kind of bad input."""
    if kind == "missing-path":
        path = tmp_path / "no" / "such" / "folder"
        return ["--data", path], [str(path)]
    if kind == "empty-folder":
        (tmp_path / "empty").mkdir()
        return ["--data", tmp_path / "empty"], [str(tmp_path / "empty"), "no images"]
    if kind == "corrupt-png":
        folder, bad = folder_with_a_corrupt_png(tmp_path)
        return ["--data", folder], [str(bad)]
    if kind == "npy-rank":
        np.save(tmp_path / "flat.npy", np.zeros(100, dtype=np.float32))
        return ["--data", tmp_path / "flat.npy"], [str(tmp_path / "flat.npy"), "(100,)"]
    if kind == "npy-nan":
        arr = np.zeros((10, 2), dtype=np.float32)
        arr[3] = np.nan
        np.save(tmp_path / "nan.npy", arr)
        return ["--data", tmp_path / "nan.npy"], [str(tmp_path / "nan.npy"), "NaN"]
    if kind == "unknown-name":
        return ["--data", "toy:moons"], ["toy:moons", "toy:25gaussians", "digits"]
    if kind == "kimg-0":
        return ["--data", "toy:8gaussians", "--kimg", "0"], ["--kimg"]
    if kind == "classes-unlabelled":
        np.save(tmp_path / "images.npy", np.zeros((10, 1, 8, 8), dtype=np.uint8))
        return ["--data", tmp_path / "images.npy", "--metrics", "fid,classes"], ["--metrics classes", "class labels"]
    raise AssertionError(kind)


BAD_TRAIN = ["missing-path", "empty-folder", "corrupt-png", "npy-rank", "npy-nan", "unknown-name", "kimg-0",
             "classes-unlabelled"]


@pytest.mark.parametrize("kind", BAD_TRAIN)
def test_bad_train_input_exits_2_with_one_line(kind, tmp_path, hybrid):
    argv, mentions = bad_train_input(kind, tmp_path)
    run_dir = tmp_path / "run"
    result = hybrid("train", *argv, "--run-dir", run_dir, "--quiet")
    assert_user_error(result, *mentions)
    assert not run_dir.exists(), "a failed start left a run directory behind (a retry would then be refused)"


def test_the_command_line_starts_without_torch():
    """--help and the checks before any work (a bad --out) do not wait for torch to load."""
    code = "import sys, hybridgan.cli, hybridgan.hybrid.outputs; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stdout + done.stderr[-2000:]


@pytest.mark.parametrize("kind", ["missing-path", "corrupt-png"])
def test_bad_input_in_a_real_process(kind, tmp_path):
    """The console script itself: exit status 2 and one line, as a shell user sees it."""
    argv, mentions = bad_train_input(kind, tmp_path)
    proc = subprocess.run([sys.executable, "cli.py", "train", *map(str, argv), "--run-dir", str(tmp_path / "run")],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("hybrid: error:") and "Traceback" not in proc.stderr
    for text in mentions:
        assert text in proc.stderr


def test_a_text_file_as_checkpoint_in_a_real_process(tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_text("hello")
    proc = subprocess.run([sys.executable, "cli.py", "sample", str(ckpt), "--out", str(tmp_path / "x.png")],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and str(ckpt) in proc.stderr and "Traceback" not in proc.stderr


def snapshot_files(folder):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_existing_run_directory_is_not_touched_without_resume(tmp_path, hybrid):
    run = tmp_path / "run"
    train(toy_config(kimg=0.128, snapshot_kimg=0.128), run_dir=run, model_changes=TINY_NET, quiet=True)
    paths, files = set(run.rglob("*")), snapshot_files(run)
    assert len(files) >= 6
    result = hybrid("train", "--data", "toy:8gaussians", "--kimg", "0.128", "--run-dir", run, "--channels", "16")
    assert_user_error(result, str(run), "--resume")
    assert set(run.rglob("*")) == paths
    assert snapshot_files(run) == files


# --------------------------------------------------------------------------------------- sample


def test_sample_image_grid_png(digits_run, tmp_path, hybrid):
    out = tmp_path / "grid.png"
    result = hybrid("sample", latest_checkpoint(digits_run), "--num", "9", "--out", out)
    assert result.code == 0, result.err
    grid = np.asarray(Image.open(out))
    # 3x3 images of 16 px with a 1 px border, enlarged 8x so that small images are visible
    assert grid.shape == (8 * (3 * 17 + 1), 8 * (3 * 17 + 1))


def test_sample_images_npy(digits_run, tmp_path, hybrid):
    out = tmp_path / "x.npy"
    result = hybrid("sample", latest_checkpoint(digits_run), "--num", "5", "--out", out)
    assert result.code == 0, result.err
    x = np.load(out)
    assert x.dtype == np.float32 and x.shape == (5, 1, 16, 16)
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0


def test_sample_image_folder_has_one_png_per_image_named_by_its_seed(digits_run, tmp_path, hybrid):
    out = tmp_path / "pngs"
    result = hybrid("sample", latest_checkpoint(digits_run), "--seeds", "10-14,100", "--out", out)
    assert result.code == 0, result.err
    files = sorted(out.iterdir())
    assert [p.name for p in files] == [f"seed{i:06d}.png" for i in (10, 11, 12, 13, 14, 100)]
    for p in files:
        assert np.asarray(Image.open(p)).shape == (16, 16)
    # The PNGs hold the same samples as the raw array, quantised to 8 bits.
    hybrid("sample", latest_checkpoint(digits_run), "--seeds", "10-14,100", "--out", tmp_path / "x.npy")
    raw = np.load(tmp_path / "x.npy")
    png = np.stack([np.asarray(Image.open(p)) for p in files]).astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(png, raw[:, 0], atol=1 / 127.5 + 1e-6)


def test_sample_refuses_existing_files_unless_told_and_an_unwritable_out_before_sampling(digits_run, tmp_path, hybrid,
                                                                                         monkeypatch):
    ckpt = latest_checkpoint(digits_run)
    out = tmp_path / "pngs"
    assert hybrid("sample", ckpt, "--seeds", "3,4", "--out", out).code == 0
    before = (out / "seed000003.png").read_bytes()
    assert_user_error(hybrid("sample", ckpt, "--seeds", "4-6", "--out", out), "seed000004.png", "--overwrite")
    assert (out / "seed000003.png").read_bytes() == before and not (out / "seed000005.png").exists()
    assert hybrid("sample", ckpt, "--seeds", "4-6", "--out", out, "--overwrite").code == 0
    assert sorted(p.name for p in out.iterdir()) == [f"seed00000{i}.png" for i in (3, 4, 5, 6)]
    hybrid("sample", ckpt, "--num", "2", "--out", tmp_path / "x.npy")
    assert_user_error(hybrid("sample", ckpt, "--num", "2", "--out", tmp_path / "x.npy"), "x.npy", "--overwrite")

    from hybridgan.hybrid import samplers

    def never(*args, **kwargs):
        raise AssertionError("sampled before the output was checked")

    monkeypatch.setattr(samplers, "sample_batched", never)
    (tmp_path / "file").write_text("")
    for bad, mention in ((tmp_path / "file" / "x.png", "is a file"), (Path("/proc/hybrid-nowhere/x.png"), "cannot write"),
                         (tmp_path / "grid.jpg", ".png")):
        assert_user_error(hybrid("sample", ckpt, "--num", "4", "--out", bad), str(bad), mention)


@pytest.mark.parametrize("argv, mention", [
    (["--num", "4", "--seeds", "0-3"], "give one of them"),
    (["--seeds", "5-2"], "runs backwards"),
    (["--nfe", "2", "--steps", "3"], "disagree"),
])
def test_sample_and_eval_share_one_vocabulary(toy_run, tmp_path, hybrid, argv, mention):
    for command in ("sample", "eval"):
        out = ["--out", tmp_path / "x.npy"] if command == "sample" else []
        assert_user_error(hybrid(command, latest_checkpoint(toy_run), *argv, *out), mention)


def test_sample_and_eval_draw_the_same_default_seeds_and_steps_still_works_with_a_note(toy_run, tmp_path, hybrid):
    ckpt = latest_checkpoint(toy_run)
    assert hybrid("sample", ckpt, "--num", "300", "--nfe", "2", "--out", tmp_path / "x.npy").code == 0
    from_file = json.loads(hybrid("eval", tmp_path / "x.npy", "--ref", "toy:8gaussians", "--json").out)
    from_ckpt = json.loads(hybrid("eval", ckpt, "--num", "300", "--nfe", "2", "--json").out)
    assert from_file["results"] == from_ckpt["results"], "sample then eval judges what eval draws itself"
    old = hybrid("sample", ckpt, "--num", "3", "--steps", "2", "--out", tmp_path / "old.npy")
    assert old.code == 0 and "--steps here is deprecated" in old.err and "use --nfe" in old.err
    assert_same_samples(np.load(tmp_path / "old.npy"), np.load(tmp_path / "x.npy")[:3])  # other batches


def test_a_bad_reference_is_named_as_the_option_it_came_from(toy_run, tmp_path, hybrid):
    assert_user_error(hybrid("eval", latest_checkpoint(toy_run), "--ref", tmp_path / "nowhere"), "--ref", "nowhere")


def test_sample_vectors(toy_run, tmp_path, hybrid):
    ckpt = latest_checkpoint(toy_run)
    result = hybrid("sample", ckpt, "--num", "300", "--out", tmp_path / "x.npy")
    assert result.code == 0, result.err
    x = np.load(tmp_path / "x.npy")
    assert x.dtype == np.float32 and x.shape == (300, 2) and np.isfinite(x).all()

    result = hybrid("sample", ckpt, "--num", "300", "--out", tmp_path / "x.png")
    assert result.code == 0, result.err
    assert Image.open(tmp_path / "x.png").format == "PNG"

    assert_user_error(hybrid("sample", ckpt, "--out", tmp_path / "folder"), "folder")


def test_sample_seeds_pick_the_same_samples(toy_run, tmp_path, hybrid):
    ckpt = latest_checkpoint(toy_run)
    hybrid("sample", ckpt, "--seeds", "0-9", "--out", tmp_path / "all.npy")
    hybrid("sample", ckpt, "--seeds", "3,5-6", "--batch", "2", "--out", tmp_path / "some.npy")
    every, some = np.load(tmp_path / "all.npy"), np.load(tmp_path / "some.npy")
    assert_same_samples(some, every[[3, 5, 6]])  # to rounding: other batches (conftest.SAMPLE_ATOL)
    assert not np.allclose(every[3], every[5])


def test_sample_levels_choose_the_chain(toy_run, tmp_path, hybrid):
    """--levels 4,2 is what --steps 2 visits; --levels 4,1 is another NFE-2 chain, and says so."""
    ckpt = latest_checkpoint(toy_run)
    hybrid("sample", ckpt, "--num", "50", "--nfe", "2", "--out", tmp_path / "steps2.npy")
    result = hybrid("sample", ckpt, "--num", "50", "--levels", "4,2", "--out", tmp_path / "l42.npy")
    assert result.code == 0 and "NFE 2, levels 4,2" in result.out, result.out + result.err
    np.testing.assert_array_equal(np.load(tmp_path / "l42.npy"), np.load(tmp_path / "steps2.npy"))
    hybrid("sample", ckpt, "--num", "50", "--levels", "4,1", "--out", tmp_path / "l41.npy")
    assert not np.allclose(np.load(tmp_path / "l41.npy"), np.load(tmp_path / "l42.npy"))


@pytest.mark.parametrize("argv, mention", [
    (["--out", "x.jpg"], "x.jpg"),
    (["--nfe", "5", "--out", "x.npy"], "NFE 5"),
    (["--seeds", "a-b", "--out", "x.npy"], "a-b"),
    (["--num", "0", "--out", "x.npy"], "--num"),
    (["--levels", "3,1", "--out", "x.npy"], "must start at 4"),
    (["--levels", "4,2,2", "--out", "x.npy"], "fall strictly"),
    (["--levels", "4,one", "--out", "x.npy"], "expected levels such as 4,1"),
    (["--levels", "4,levels", "--out", "x.npy"], "expected levels such as 4,1"),
    (["--levels", "", "--out", "x.npy"], "expected levels such as 4,1"),
    (["--levels", "4,1", "--nfe", "3", "--out", "x.npy"], "disagree"),
])
def test_bad_sample_options(toy_run, tmp_path, monkeypatch, hybrid, argv, mention):
    monkeypatch.chdir(tmp_path)
    assert_user_error(hybrid("sample", latest_checkpoint(toy_run), *argv), mention)


# ----------------------------------------------------------------------------------------- data


def test_data_list(hybrid):
    result = hybrid("data", "list")
    assert result.code == 0
    names = [line.split()[0] for line in result.out.splitlines() if line.strip()]
    for name in SOURCES:
        assert name in names


def test_data_info_toy(hybrid):
    result = hybrid("data", "info", "toy:25gaussians")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert info["size"] == 100_000 and info["shape"] == [2] and info["kind"] == "vector" and info["modes"] == 25


def test_data_info_folder_and_missing_path(tmp_path, hybrid):
    for i in range(2):
        Image.new("RGB", (12, 12), (i, 0, 0)).save(tmp_path / f"{i}.png")
    info = json.loads(hybrid("data", "info", tmp_path, "--resolution", "8").out)
    assert info["shape"] == [3, 8, 8] and info["size"] == 2 and info["kind"] == "image"
    assert_user_error(hybrid("data", "info", tmp_path / "missing"), str(tmp_path / "missing"))


def test_presets_load_and_cpu_digits_is_the_default():
    from hybridgan.training.config import TrainConfig, preset_names, read_preset

    assert {"cpu-digits", "toy", "cifar10-ddgan", "mnist", "celeba64"} <= set(preset_names())
    for name in preset_names():
        read_preset(name)  # parses, no unknown options
    digits = read_preset("cpu-digits")
    assert digits == TrainConfig(), "the cpu-digits preset is exactly the embedded default"
    cifar = read_preset("cifar10-ddgan")
    assert cifar.model.shape == (3, 32, 32) and cifar.model.steps == 4 and cifar.model.schedule == "vp"
    assert (cifar.lr_g, cifar.lr_d, cifar.betas, cifar.r1_gamma) == (1.6e-4, 1.25e-4, (0.5, 0.9), 0.02)
    assert cifar.model.discriminator.mbstd_group == 4  # the published discriminator's minibatch std
    # The GPU presets keep the R1 they were written with, not the hybrid's digits-measured image default.
    assert read_preset("mnist").r1_gamma == read_preset("celeba64").r1_gamma == 0.02
    assert read_preset("mnist").ema_kimg == 10, "and the EMA half-life"


def test_a_config_file_with_a_bad_network_exits_2(tmp_path, hybrid):
    from hybridgan.training.config import TrainConfig, default_model

    model = default_model((2,), "hybrid")
    bad = {**TrainConfig(data="toy:8gaussians").to_dict(), "model": {**model.to_dict(),
           "generator": {**model.to_dict()["generator"], "channels": 4, "norm": "weird"}}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(bad))
    result = hybrid("train", "--config", path, "--run-dir", tmp_path / "run", "--kimg", "0.064")
    assert_user_error(result, "channels")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, value", [("d_noise", -1), ("d_noise", True), ("d_noise", "0.1"), ("d_noise", None),
                                         ("r1_gamma", -0.5), ("d_noise", 10**400), ("ema_kimg", -5),
                                         ("ema_rampup", "0.05")])
def test_a_config_file_with_a_bad_regulariser_exits_2(tmp_path, hybrid, name, value):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"data": "toy:8gaussians", name: value}))
    result = hybrid("train", "--config", path, "--run-dir", tmp_path / "run", "--kimg", "0.064")
    assert_user_error(result, name, "finite number >= 0")
    assert not (tmp_path / "run").exists()
    # NaN and infinity are not JSON, but Python writes and reads them
    path.write_text(json.dumps({"data": "toy:8gaussians", name: float("nan")}))
    assert_user_error(hybrid("train", "--config", path, "--run-dir", tmp_path / "run", "--kimg", "0.064"), "nan")


def test_betas_reach_every_optimiser_and_the_config(tmp_path, hybrid):
    run = tmp_path / "run"
    result = hybrid("train", "--data", "toy:8gaussians", "--kimg", "0.128", "--batch", "64", "--channels", "16",
                    "--betas", "0.9,0.999", "--run-dir", run, "--quiet")
    assert result.code == 0, result.err
    assert read_config(run / "config.json").betas == (0.9, 0.999)
    opts = load(latest_checkpoint(run))["opt"]
    assert set(opts) == {"G", "D"}
    assert all(group["betas"] == (0.9, 0.999) for opt in opts.values() for group in opt["param_groups"])


def test_the_python_api_takes_betas_as_a_list(tmp_path):
    from hybridgan import train as api_train

    run = api_train(toy_config(kimg=0.064, batch=64), run_dir=tmp_path / "run", betas=[0.9, 0.999])
    assert read_config(run / "config.json").betas == (0.9, 0.999)
    result = api_train(run_dir=run, resume="auto", kimg=0.128, betas=[0.9, 0.999])  # the same betas: no change
    assert load(latest_checkpoint(result))["progress"]["nimg"] == 128


@pytest.mark.parametrize("value", ["0.9", "0.9,1", "-0.1,0.9", "a,b", "0.5,0.9,0.99"])
def test_bad_betas_exit_2(tmp_path, hybrid, value):
    result = hybrid("train", "--data", "toy:8gaussians", "--kimg", "0.064", "--betas", value, "--run-dir", tmp_path / "run")
    assert_user_error(result, "--betas")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [[0.5], [0.5, 1.0], "0.5,0.9", [0.5, None], 0.5])
def test_a_config_file_with_bad_betas_exits_2(tmp_path, hybrid, value):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"data": "toy:8gaussians", "betas": value}))
    result = hybrid("train", "--config", path, "--run-dir", tmp_path / "run", "--kimg", "0.064")
    assert_user_error(result, "betas", "[0, 1)")
    assert not (tmp_path / "run").exists()


def test_instance_noise_without_a_discriminator_exits_2(tmp_path, hybrid):
    result = hybrid("train", "--data", "toy:8gaussians", "--objective", "ddpm", "--d-noise", "0.05",
                    "--run-dir", tmp_path / "run", "--kimg", "0.064")
    assert_user_error(result, "--d-noise", "ddpm", "no discriminator")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("objective, option, value, mention", [
    ("ddpm", "--r1-gamma", "0.1", "no discriminator"), ("ddpm", "--lr-d", "1e-3", "no discriminator"),
    ("ddpm", "--d-pair", "x0", "no discriminator"), ("ddpm", "--denoise-weight", "0.1", "only the hybrid"),
    ("ddgan", "--denoise-weight", "0.1", "only the hybrid")])
def test_an_option_the_objective_would_ignore_exits_2(tmp_path, hybrid, objective, option, value, mention):
    result = hybrid("train", "--data", "toy:8gaussians", "--objective", objective, option, value,
                    "--run-dir", tmp_path / "run", "--kimg", "0.064")
    assert_user_error(result, option, objective, mention)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, mention", [
    ({"data": "toy:8gaussians", "d_augment": "translate"}, "needs images"),
    ({"data": "digits", "objective": "ddpm", "d_augment": "translate"}, "needs images and a discriminator"),
    ({"data": "digits", "d_augment": "flip"}, "choose one of none, translate")])
def test_a_bad_d_augment_exits_2(tmp_path, hybrid, options, mention):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(options))
    result = hybrid("train", "--config", path, "--run-dir", tmp_path / "run", "--kimg", "0.064")
    assert_user_error(result, "--d-augment", mention)
    assert not (tmp_path / "run").exists()


def test_network_options_override_the_model_of_a_config_file(toy_run, tmp_path, hybrid):
    result = hybrid("train", "--config", toy_run / "config.json", "--channels", "24", "--kimg", "0.064",
                    "--run-dir", tmp_path / "run", "--quiet")
    assert result.code == 0, result.err
    written = json.loads((tmp_path / "run" / "config.json").read_text())["model"]["generator"]
    original = json.loads((toy_run / "config.json").read_text())["model"]["generator"]
    assert written["channels"] == 24 and {k: v for k, v in written.items() if k != "channels"} == \
        {k: v for k, v in original.items() if k != "channels"}


def test_prediction_option_sets_what_the_generator_outputs(tmp_path, hybrid):
    result = hybrid("train", "--data", "toy:8gaussians", "--objective", "ddpm", "--prediction", "v", "--steps", "20",
                    "--kimg", "0.128", "--run-dir", tmp_path / "run", "--quiet")
    assert result.code == 0, result.err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["prediction"] == "v"
    result = hybrid("sample", latest_checkpoint(tmp_path / "run"), "--num", "8", "--sampler", "ddim", "--nfe", "5",
                    "--out", tmp_path / "s.npy")
    assert result.code == 0, result.err
    assert np.isfinite(np.load(tmp_path / "s.npy")).all()


def test_the_sampler_option_sets_how_the_model_is_sampled_unless_a_command_asks(toy_run, tmp_path, hybrid):
    run = tmp_path / "run"
    result = hybrid("train", "--config", toy_run / "config.json", "--sampler", "ddim", "--kimg", "0.128",
                    "--run-dir", run, "--quiet")
    assert result.code == 0, result.err
    assert json.loads((run / "config.json").read_text())["model"]["sampler"] == "ddim"
    ckpt = latest_checkpoint(run)
    x = {}
    for name, extra in (("own", ()), ("ddim", ("--sampler", "ddim")), ("gan", ("--sampler", "gan"))):
        result = hybrid("sample", ckpt, "--seeds", "0-99", "--out", tmp_path / f"{name}.npy", *extra)
        assert result.code == 0, result.err
        x[name] = np.load(tmp_path / f"{name}.npy")
    assert np.array_equal(x["own"], x["ddim"]) and not np.allclose(x["own"], x["gan"])
    result = hybrid("bench", ckpt, "--nfe", "4", "--repeats", "1", "--num", "100", "--metrics", "swd", "--out", tmp_path / "b.jsonl")
    assert result.code == 0, result.err
    assert json.loads((tmp_path / "b.jsonl").read_text())["sampler"] == "ddim"
    # A run keeps its model: another sampler on resume is refused, the same one is fine.
    result = hybrid("train", "--run-dir", run, "--resume", "auto", "--sampler", "gan", "--kimg", "0.192", "--quiet")
    assert result.code == 2 and result.err.count("\n") == 1 and "cannot change sampler" in result.err, result.err
    result = hybrid("train", "--run-dir", run, "--resume", "auto", "--sampler", "ddim", "--kimg", "0.192", "--quiet")
    assert result.code == 0, result.err


def test_a_bad_sampler_in_a_config_file_exits_2(toy_run, tmp_path, hybrid):
    config = json.loads((toy_run / "config.json").read_text())
    config["model"]["sampler"] = "euler"
    (tmp_path / "c.json").write_text(json.dumps(config))
    result = hybrid("train", "--config", tmp_path / "c.json", "--run-dir", tmp_path / "run", "--quiet")
    assert result.code == 2 and result.err.count("\n") == 1 and "--sampler 'euler'" in result.err, result.err
    assert not (tmp_path / "run").exists()
