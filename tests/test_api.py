"""The Python API (`import hybridgan`): load, sample, evaluate, train; the installed package
lives under one import name, so a user's own `metrics.py` or `training/` does not clash with it."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import hybridgan
from conftest import latest_checkpoint, toy_config
from hybridgan.hybrid.checkpoint import load
from hybridgan.hybrid.errors import UserError
from hybridgan.training.data import load_dataset

USER_SCRIPT = """\
import sys, hybridgan
from metrics import MINE; from training import OURS  # the user's own modules, beside the script
model = hybridgan.load(sys.argv[1])
images = hybridgan.sample(model, seeds=range(64), device="cpu")
print(hybridgan.evaluate(images, ref=sys.argv[2], metrics=["fid"], device="cpu")["fid"], MINE, OURS)
"""


def test_a_script_beside_its_own_metrics_and_training_modules_samples_and_scores(digits_run, tmp_path):
    """The README's five lines, run from a folder that holds a `metrics.py` and a `training/` package."""
    (tmp_path / "metrics.py").write_text("MINE = 'user-metrics'\n")
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "__init__.py").write_text("OURS = 'user-training'\n")
    real = tmp_path / "real"
    real.mkdir()
    for i, image in enumerate(load_dataset("digits", 16).data[:64]):
        Image.fromarray(image[0].numpy()).save(real / f"{i:03d}.png")
    (tmp_path / "score.py").write_text(USER_SCRIPT)
    assert len(USER_SCRIPT.splitlines()) == 5
    proc = subprocess.run([sys.executable, "score.py", str(latest_checkpoint(digits_run)), str(real)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fid, mine, ours = proc.stdout.split()
    assert math.isfinite(float(fid)) and float(fid) > 0 and (mine, ours) == ("user-metrics", "user-training")


def test_sample_is_what_the_command_line_writes(toy_run, tmp_path, hybrid):
    ckpt = latest_checkpoint(toy_run)
    assert hybrid("sample", ckpt, "--seeds", "3,7,100", "--nfe", "2", "--sampler", "ddim", "--out", tmp_path / "x.npy").code == 0
    x = hybridgan.sample(ckpt, seeds=[3, 7, 100], nfe=2, sampler="ddim", device="cpu")
    np.testing.assert_array_equal(x.numpy(), np.load(tmp_path / "x.npy"))  # the same batch: bitwise
    model = hybridgan.load(ckpt)
    assert hybridgan.sample(model, num=5).shape == (5, 2)
    assert torch.equal(hybridgan.sample(model, levels=[4, 2], seeds=[1]), hybridgan.sample(model, nfe=2, seeds=[1]))
    with pytest.raises(UserError, match="NFE 9"):
        hybridgan.sample(model, nfe=9)
    with pytest.raises(UserError, match="disagree"):
        hybridgan.sample(model, nfe=3, levels=[4, 1])
    with pytest.raises(UserError, match="sampler 'euler'"):
        hybridgan.sample(model, sampler="euler")


def test_evaluate_takes_tensors_models_and_paths(toy_run, tmp_path, hybrid):
    ckpt = latest_checkpoint(toy_run)
    model = hybridgan.load(ckpt)
    x = hybridgan.sample(model, seeds=range(1_000_000, 1_000_400))  # the evaluation seeds
    by_tensor = hybridgan.evaluate(x, ref="toy:8gaussians", device="cpu")
    by_model = hybridgan.evaluate(model, ref="toy:8gaussians", num=400, device="cpu")
    by_path = hybridgan.evaluate(ckpt, num=400, device="cpu")  # the checkpoint's own training data
    assert by_tensor.values == by_model.values == by_path.values and by_tensor["modes_covered"] >= 0
    real = load_dataset("toy:8gaussians", None, 5).data[:400]
    assert hybridgan.evaluate(real, ref=real, metrics=["swd"])["swd"] < 1e-6, "a set against itself"
    with pytest.raises(TypeError, match="compare"):
        hybridgan.evaluate(x)


def test_evaluate_judges_float_and_uint8_images_alike():
    digits = load_dataset("digits", 8).data
    as_float = digits[:300].float() / 127.5 - 1
    a = hybridgan.evaluate(as_float, ref="digits", metrics=["classes"], device="cpu")
    b = hybridgan.evaluate(digits[:300], ref="digits", metrics=["classes"], device="cpu")
    assert a.values == b.values and a["class_tv"] < 0.1, "real digits are balanced"


def test_train_writes_the_run_directory_the_command_line_writes(tmp_path):
    run = hybridgan.train(toy_config(kimg=0.128), run_dir=tmp_path / "run", seed=3)
    assert (run / "config.json").is_file() and (run / "log.txt").is_file()
    assert hybridgan.load(latest_checkpoint(run)).cfg.shape == (2,)
    with pytest.raises(UserError, match="--objective"):
        hybridgan.train(toy_config(kimg=0.128), run_dir=tmp_path / "bad", objective="gan")
    with pytest.raises(UserError, match="kimgs"):
        hybridgan.train(toy_config(kimg=0.128), run_dir=tmp_path / "bad", kimgs=3)
    longer = hybridgan.train(run_dir=run, resume="auto", kimg=0.256)  # a resumed run takes the changes asked for
    assert longer == run and load(latest_checkpoint(run))["progress"]["nimg"] == 256
