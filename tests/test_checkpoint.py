"""Checkpoints: plain data read with weights_only=True, atomic writes, and refusal of bad files."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from conftest import assert_user_error, latest_checkpoint
from hybridgan.hybrid import checkpoint as ckpt_io
from hybridgan.hybrid.model import Model, ModelConfig
from hybridgan.hybrid.nets import NetConfig
from hybridgan.hybrid.samplers import sample


def tiny_model() -> Model:
    torch.manual_seed(0)
    net = NetConfig(channels=8, z_dim=2, fourier=2)
    return Model(ModelConfig(shape=(2,), steps=4, generator=net, discriminator=net))


def bundle(model: Model, **extra) -> dict:
    return {"format": ckpt_io.FORMAT, "version": ckpt_io.VERSION, "config": {"model": model.cfg.to_dict()},
            "G": model.G.state_dict(), "G_ema": model.G_ema.state_dict(), "D": model.D.state_dict(), **extra}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_round_trip_reproduces_the_weights_exactly(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        for p in model.G_ema.parameters():
            p.add_(torch.randn_like(p))  # G_ema different from G, so a mix-up would show
    path = ckpt_io.save_atomic(bundle(model), tmp_path / "checkpoint-000003.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == ckpt_io.FORMAT
    loaded = ckpt_io.load_model(path)
    assert loaded.cfg == model.cfg
    assert_same_weights(loaded.G, model.G)
    assert_same_weights(loaded.G_ema, model.G_ema)
    assert_same_weights(loaded.D, model.D)
    assert not loaded.training


def test_a_training_checkpoint_is_plain_data(toy_run):
    ckpt = torch.load(latest_checkpoint(toy_run), weights_only=True)
    for key in ("config", "G", "G_ema", "D", "opt", "progress", "rng"):
        assert key in ckpt
    assert ckpt["progress"]["nimg"] >= 1000
    assert ckpt["config"]["data"] == "toy:8gaussians"


def test_sample_needs_only_the_checkpoint_file(toy_run, tmp_path, monkeypatch, hybrid):
    alone = tmp_path / "elsewhere"
    alone.mkdir()
    ckpt = shutil.copy(latest_checkpoint(toy_run), alone / "model.pt")
    monkeypatch.chdir(alone)
    result = hybrid("sample", "model.pt", "--seeds", "0-9", "--out", "s.npy")
    assert result.code == 0, result.err
    x = np.load(alone / "s.npy")
    assert x.shape == (10, 2) and x.dtype == np.float32
    expected = sample(ckpt_io.load_model(ckpt), list(range(10)))
    np.testing.assert_array_equal(x, expected.numpy())


def test_a_text_file_is_refused(tmp_path, hybrid):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    assert_user_error(hybrid("sample", path, "--out", tmp_path / "x.png"), str(path))
    assert not (tmp_path / "x.png").exists()


class Payload:
    """Unpickling this runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch, hybrid):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt_io.FORMAT, "version": 1, "G": Payload(f"touch {marker}")}, path)
    result = hybrid("sample", path, "--out", tmp_path / "x.png")
    assert_user_error(result, str(path))
    assert "refused" in result.err
    assert not marker.exists(), "loading the checkpoint ran its code"
    # The payload is live: a trusting loader would have run it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_truncated_checkpoint_is_refused(toy_run, tmp_path, hybrid):
    data = latest_checkpoint(toy_run).read_bytes()
    path = tmp_path / "checkpoint-000001.pt"
    path.write_bytes(data[: len(data) // 2])
    assert_user_error(hybrid("sample", path, "--out", tmp_path / "x.png"), str(path))
    with pytest.raises(ckpt_io.UserError, match="truncated"):
        ckpt_io.load(path)


def test_a_newer_format_says_so(tmp_path, hybrid):
    path = tmp_path / "future.pt"
    torch.save(bundle(tiny_model(), version=999), path)
    result = hybrid("sample", path, "--out", tmp_path / "x.png")
    assert_user_error(result, str(path), "999", "newer")


def test_someone_elses_torch_file_is_refused(tmp_path, hybrid):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
    assert_user_error(hybrid("sample", path, "--out", tmp_path / "x.png"), str(path), "not a hybrid checkpoint")


def test_a_missing_checkpoint_is_named(tmp_path, hybrid):
    path = tmp_path / "nope.pt"
    assert_user_error(hybrid("sample", path, "--out", tmp_path / "x.png"), str(path))


def test_save_atomic_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint-000001.pt"
    ckpt_io.save_atomic({"format": ckpt_io.FORMAT, "version": 1, "n": torch.arange(5)}, path)
    old = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        ckpt_io.save_atomic({"format": ckpt_io.FORMAT, "version": 1, "n": torch.arange(9)}, path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], "a temporary file was left behind"
    monkeypatch.undo()
    assert torch.equal(ckpt_io.load(path)["n"], torch.arange(5))


def test_save_atomic_replaces_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "checkpoint-000001.pt"
    for n in (3, 4):
        ckpt_io.save_atomic({"format": ckpt_io.FORMAT, "version": 1, "n": torch.arange(n)}, path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert torch.equal(ckpt_io.load(path)["n"], torch.arange(4))


def test_list_checkpoints_orders_by_kimg_and_skips_temporary_files(tmp_path):
    for name in ("checkpoint-000010.pt", "checkpoint-000002.pt", ".checkpoint-000012.pt.abc.tmp", "notes.txt",
                 "checkpoint-1.pt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in ckpt_io.list_checkpoints(tmp_path)] == ["checkpoint-000002.pt", "checkpoint-000010.pt"]
