"""Class-conditional models (`train --cond`): labels reach G and D, samples follow their class,
classes come from the data (named sets and ImageFolder-style folders), and runs resume exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hybridgan
from conftest import TINY_UNET, assert_same_samples, digits_config, latest_checkpoint, log_messages
from hybridgan.hybrid.checkpoint import load as load_checkpoint
from hybridgan.hybrid.images import read_png, save_png
from hybridgan.hybrid.model import Model, ModelConfig
from hybridgan.hybrid.nets import NetConfig
from hybridgan.hybrid.samplers import seed_classes
from hybridgan.metrics.classes import knn_labels, pixels
from hybridgan.training import train
from hybridgan.training.data import folder_labels, load_dataset

NET = NetConfig(channels=8, channel_mult=(1, 2), z_dim=4)


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    """A short conditional digits run that learns its classes: a strong denoising term and a high
    rate put each class's shape in place within 3 kimg (the GAN defaults take far longer)."""
    run_dir = tmp_path_factory.mktemp("cond") / "run"
    cfg = digits_config(kimg=3, tick_kimg=1, snapshot_kimg=3, cond=True, lr_g=1e-3, denoise_weight=1.0)
    return train(cfg, run_dir=run_dir, model_changes=TINY_UNET, quiet=True)


def test_the_class_reaches_the_generator_and_the_projection_discriminator():
    cfg = ModelConfig(shape=(1, 8, 8), generator=NET, discriminator=NET, classes=(0.5, 0.25, 0.25))
    model = Model(cfg)
    torch.nn.init.normal_(model.G.head[-1].weight)  # the zero-initialised output layer would hide any input
    for block in model.G.modules():
        if hasattr(block, "proj"):  # adaptive norms start as identity: give the embedding a way in
            torch.nn.init.normal_(block.proj.weight)
    x, t, z = torch.randn(3, 1, 8, 8), torch.full((3,), 0.5), torch.randn(3, 4)
    out = [model.G(x, t, z, torch.full((3,), k)) for k in range(3)]
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    features = []
    model.D.head.register_forward_hook(lambda module, inputs, output: features.append(inputs[0]))
    y = torch.tensor([2, 0, 1])
    # The projection adds <embed(y), D's last features> to the unconditional logit.
    projected = model.D(x, x, t, y) - model.D(x, x, t)
    torch.testing.assert_close(projected, (model.D.label(y) * features[0]).sum(1))
    assert projected.abs().min() > 0


def test_an_unconditional_discriminator_keeps_the_parameter_names_of_older_checkpoints():
    names = set(Model(ModelConfig(shape=(1, 8, 8), generator=NET, discriminator=NET)).D.state_dict())
    assert {"head.weight", "head.bias"} <= names and not any("label" in n for n in names)
    vector = set(Model(ModelConfig(shape=(2,), generator=NET, discriminator=NetConfig(channels=16, num_blocks=2))).D.state_dict())
    assert {"net.3.weight", "net.3.bias"} <= vector  # the head is still the MLP's last layer


def test_seeds_draw_classes_by_the_data_shares_independently_of_the_batch():
    shares = (0.7, 0.2, 0.1)
    drawn = seed_classes(shares, list(range(20_000)))
    assert np.allclose(torch.bincount(drawn, minlength=3).numpy() / 20_000, shares, atol=0.015)
    assert torch.equal(seed_classes(shares, [5, 9, 13]), torch.stack([seed_classes(shares, [s])[0] for s in (5, 9, 13)]))


def test_a_conditional_run_draws_each_class_it_is_asked_for(cond_run):
    ckpt = latest_checkpoint(cond_run)
    model = hybridgan.load(ckpt)
    assert model.cfg.num_classes == 10 and abs(sum(model.cfg.classes) - 1) < 1e-4
    labels = torch.arange(10).repeat_interleave(20)
    x = hybridgan.sample(model, range(200), labels=labels.tolist())
    digits = load_dataset("digits")
    predicted = knn_labels(pixels(x), pixels(digits.batch(torch.arange(len(digits)))), digits.labels)
    accuracy = (predicted == labels).float().mean().item()
    assert accuracy > 0.5, f"{accuracy:.2f} of the samples are classified as the class they were drawn for (chance: 0.1)"
    # Without labels, each seed draws its class from the data's shares: the same samples as asking for those classes.
    seeds = list(range(300, 308))
    by_seed = seed_classes(model.cfg.classes, seeds).tolist()
    assert_same_samples(hybridgan.sample(model, seeds), hybridgan.sample(model, seeds, labels=by_seed))


def test_sample_classes_writes_a_row_or_a_folder_per_class(cond_run, tmp_path, hybrid):
    ckpt = latest_checkpoint(cond_run)
    assert hybrid("sample", ckpt, "--classes", "0-2", "--seeds", "7,8", "--out", tmp_path / "f", "--quiet").code == 0
    assert sorted(p.relative_to(tmp_path / "f").as_posix() for p in (tmp_path / "f").rglob("*.png")) == [
        f"{k}/seed{s:06d}.png" for k in range(3) for s in (7, 8)]
    assert hybrid("sample", ckpt, "--class", "2", "--seeds", "8", "--out", tmp_path / "one", "--quiet").code == 0
    assert np.array_equal(read_png(tmp_path / "one" / "seed000008.png"), read_png(tmp_path / "f" / "2" / "seed000008.png"))
    assert hybrid("sample", ckpt, "--classes", "0-9", "--num", "4", "--out", tmp_path / "grid.png", "--quiet").code == 0
    grid = read_png(tmp_path / "grid.png")
    assert grid.shape[0] > 2 * grid.shape[1], "ten rows of four"  # 10 x (16 + 1) + 1 high, 4 x 17 + 1 wide (scaled alike)
    # A folder of samples by class is labelled data: its classes come back.
    ds = load_dataset(str(tmp_path / "f"))
    assert ds.labels is not None and ds.labels.tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("args, message", [
    (("--class", "10"), "--class 10: the model has classes 0..9"),
    (("--class", "1", "--classes", "2"), "give one of them"),
])
def test_bad_classes_are_one_line(cond_run, tmp_path, hybrid, args, message):
    result = hybrid("sample", latest_checkpoint(cond_run), *args, "--out", tmp_path / "x.png")
    assert result.code == 2 and message in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_class_of_an_unconditional_model_and_cond_on_unlabelled_data_are_one_line(digits_run, tmp_path, hybrid):
    result = hybrid("sample", latest_checkpoint(digits_run), "--class", "1", "--out", tmp_path / "x.png")
    assert result.code == 2 and "not class-conditional" in result.err
    result = hybrid("train", "--data", "toy:8gaussians", "--cond", "--run-dir", tmp_path / "run", "--kimg", "0.1")
    assert result.code == 2 and "--cond: toy:8gaussians has no class labels" in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_folder_classes_follow_the_image_folder_convention(tmp_path):
    assert folder_labels(["b/1.png", "a/x/2.png", "b/3.png"]).tolist() == [1, 0, 1]
    assert folder_labels(["a/1.png", "2.png"]) is None, "images beside the class folders: not labelled"
    assert folder_labels(["a/1.png", "a/2.png"]) is None, "one sub-folder is a container, not a class"
    for k, cls in enumerate(("cat", "dog")):
        (tmp_path / cls).mkdir()
        for i in range(2):
            save_png(np.full((8, 8, 3), 40 * (k + i), np.uint8), tmp_path / cls / f"{i}.png")
    assert load_dataset(str(tmp_path)).labels.tolist() == [0, 0, 1, 1]


def test_a_conditional_run_resumes_bitwise(tmp_path, hybrid):
    cfg = digits_config(cond=True)
    whole = train(cfg, run_dir=tmp_path / "whole", model_changes=TINY_UNET, quiet=True)
    part = train(cfg.replace(kimg=0.064), run_dir=tmp_path / "part", model_changes=TINY_UNET, quiet=True)
    assert hybrid("train", "--run-dir", part, "--resume", "auto", "--kimg", "0.128", "--quiet").code == 0
    assert any(m.startswith("resumed from") for m in log_messages(part))
    a, b = load_checkpoint(latest_checkpoint(whole)), load_checkpoint(latest_checkpoint(part))
    assert a["progress"]["nimg"] == b["progress"]["nimg"] == 128
    for key in ("G", "G_ema", "D"):
        assert any("label" in name for name in a[key]), f"{key} has class embeddings"
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"


def test_a_student_of_a_conditional_teacher_is_conditional_and_says_so(tmp_path, hybrid):
    teacher_run = train(digits_config(objective="ddpm", cond=True), run_dir=tmp_path / "teacher", model_changes=TINY_UNET,
                        quiet=True)
    teacher = latest_checkpoint(teacher_run)
    common = ("train", "--objective", "distill", "--teacher", teacher, "--steps", "1", "--batch", "32", "--kimg", "0.064",
              "--device", "cpu", "--quiet")
    result = hybrid(*common, "--run-dir", tmp_path / "plain")
    assert result.code == 2 and "the teacher is class-conditional: pass --cond" in result.err
    assert not (tmp_path / "plain").exists()
    for d_features in ("own", "teacher"):  # teacher: the class goes to the teacher's features and to D's heads
        run = tmp_path / f"student-{d_features}"
        assert hybrid(*common, "--cond", "--d-features", d_features, "--run-dir", run).code == 0
        student = hybridgan.load(latest_checkpoint(run))
        assert student.cfg.classes == hybridgan.load(teacher).cfg.classes
        x = hybridgan.sample(student, range(4), labels=[3, 3, 5, 5])
        assert x.shape == (4, 1, 16, 16) and torch.isfinite(x).all()
    heads = load_checkpoint(latest_checkpoint(tmp_path / "student-teacher"))["nets"]["D"]
    assert any(name.startswith("labels.") for name in heads)


def test_eval_judges_a_conditional_model_overall_and_class_by_class(cond_run, hybrid):
    result = hybridgan.evaluate(latest_checkpoint(cond_run), metrics=["fid", "classes"], num=200, extractor="pixels",
                                per_class=True, device="cpu")
    assert result["class_acc"] > 0.5, "the judge labels most samples as the class they were drawn for"
    assert sorted(result.by_class) == list(range(10)) and all(set(v) == {"fid"} for v in result.by_class.values())
    # Class k's samples against the reference images of class k: closer than against another class's images.
    model, digits = hybridgan.load(latest_checkpoint(cond_run)), load_dataset("digits")
    ones = hybridgan.sample(model, range(1_000_000, 1_000_020), labels=1)
    fid = {k: hybridgan.evaluate(ones, digits.data[digits.labels == k], metrics=["fid"], extractor="pixels")["fid"]
           for k in (1, 0)}
    assert fid[1] < fid[0]
    assert abs(result.by_class[1]["fid"] - hybridgan.evaluate(
        ones, digits.data[digits.labels == 1], metrics=["fid"], extractor="pixels")["fid"]) < 1e-6, "by_class[1]: 20 samples of class 1"
    assert "class 3" in result.table()


def test_per_class_needs_a_conditional_model_and_labels(digits_run, cond_run, hybrid):
    result = hybrid("eval", latest_checkpoint(digits_run), "--per-class", "--extractor", "pixels")
    assert result.code == 2 and "not a class-conditional model" in result.err
    result = hybrid("eval", latest_checkpoint(cond_run), "--per-class", "--ref", "toy:8gaussians")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1


def test_the_training_grid_of_a_conditional_run_has_a_column_per_class(cond_run):
    grid = read_png(sorted((cond_run / "samples").glob("*.png"))[-1])
    assert grid.shape[1] > 9 * grid.shape[0], "the run's 4 grid seeds become one row of the 10 classes"
