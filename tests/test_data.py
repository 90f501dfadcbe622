"""Data sources: the built-in toys and digits, folders and zips of images, .npy arrays, bad input."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from hybridgan.hybrid.errors import UserError
from hybridgan.training.data import SOURCES, describe, load_dataset

TOYS = {"toy:25gaussians": 25, "toy:8gaussians": 8, "toy:rings": 12, "toy:swissroll": None}


@pytest.mark.parametrize("name", TOYS)
def test_toys_load_with_their_modes(name):
    ds = load_dataset(name)
    assert not ds.is_image and ds.shape == (2,) and ds.data.dtype == torch.float32
    assert len(ds) == 100_000
    if TOYS[name] is None:
        assert ds.modes is None
        return
    assert ds.modes.shape == (TOYS[name], 2)
    # Every point lies within 5 std of a mode, and every mode holds its share of the points.
    nearest_dist, nearest = torch.cdist(ds.data, ds.modes).min(dim=1)
    assert (nearest_dist < 5 * ds.mode_std).float().mean() > 0.999
    counts = torch.bincount(nearest, minlength=TOYS[name]).float()
    assert counts.min() > 0.8 * len(ds) / TOYS[name]


def test_toys_depend_on_the_seed():
    a, b, c = (load_dataset("toy:8gaussians", seed=s).data for s in (0, 0, 1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_torchvision_sets_keep_their_labels(monkeypatch, tmp_path):
    import torchvision

    class FakeMNIST:
        def __init__(self, root, download, train):
            self.targets = torch.tensor([7, 1, 4])

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return Image.fromarray(np.full((28, 28), 40 * i, dtype=np.uint8)), int(self.targets[i])

    monkeypatch.setenv("HYBRID_DATA", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    ds = load_dataset("mnist")
    assert tuple(ds.data.shape) == (3, 1, 32, 32) and ds.labels.tolist() == [7, 1, 4]


def test_digits():
    ds = load_dataset("digits")
    assert ds.is_image and ds.data.dtype == torch.uint8 and tuple(ds.data.shape) == (1797, 1, 16, 16)
    assert ds.data.min() == 0 and ds.data.max() > 200
    x = ds.batch(torch.arange(10))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert tuple(load_dataset("digits", resolution=8).data.shape) == (1797, 1, 8, 8)
    assert ds.labels.dtype == torch.int64 and torch.bincount(ds.labels).tolist()[:3] == [178, 182, 177]
    assert describe(ds)["classes"] == 10 and load_dataset("toy:8gaussians").labels is None


# --------------------------------------------------------------------------------- image folders


def write_mixed_pngs(folder):
    """Five PNGs of different modes and sizes in nested folders; returns the expected RGB colour
    of each, in the order the loader sorts them (by path)."""
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "c" / "d" / "e").mkdir(parents=True)
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(folder / "a" / "b" / "rgba.png")  # transparent: over white
    Image.new("RGB", (12, 10), (200, 10, 30)).save(folder / "a" / "rgb.png")
    palette = Image.new("P", (9, 9), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.save(folder / "c" / "d" / "e" / "palette.png")
    Image.new("L", (16, 16), 100).save(folder / "c" / "gray.png")
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(folder / "deep16.png")  # 16-bit grey
    return [(255, 255, 255), (200, 10, 30), (0, 0, 255), (100, 100, 100), (156, 156, 156)]


def test_a_folder_of_mixed_pngs_loads(tmp_path):
    expected = write_mixed_pngs(tmp_path)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    ds = load_dataset(str(tmp_path), resolution=8)
    assert ds.is_image and ds.data.dtype == torch.uint8 and tuple(ds.data.shape) == (5, 3, 8, 8)
    for img, colour in zip(ds.data, expected):
        assert (img.int() - torch.tensor(colour)[:, None, None]).abs().max() <= 1, (img[:, 0, 0], colour)


def test_different_sizes_need_a_resolution(tmp_path):
    write_mixed_pngs(tmp_path)
    with pytest.raises(UserError, match="--resolution"):
        load_dataset(str(tmp_path))


def test_a_folder_of_same_size_images_keeps_their_size(tmp_path):
    for i in range(3):
        Image.new("L", (10, 10), 20 * i).save(tmp_path / f"{i}.png")
    ds = load_dataset(str(tmp_path))
    assert tuple(ds.data.shape) == (3, 1, 10, 10)
    assert ds.data[:, 0, 0, 0].tolist() == [0, 20, 40]


def test_a_zip_of_pngs_loads(tmp_path):
    folder = tmp_path / "images"
    expected = write_mixed_pngs(folder)
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*.png")):
            zf.write(p, p.relative_to(folder).as_posix())
        zf.writestr("README.txt", "not an image")
    ds = load_dataset(str(archive), resolution=4)
    assert tuple(ds.data.shape) == (5, 3, 4, 4)
    for img, colour in zip(ds.data, expected):
        assert (img.int() - torch.tensor(colour)[:, None, None]).abs().max() <= 1


# ------------------------------------------------------------------------------------------ .npy


def test_npy_vectors(tmp_path):
    arr = np.random.default_rng(0).normal(size=(50, 2))
    np.save(tmp_path / "points.npy", arr)
    ds = load_dataset(str(tmp_path / "points.npy"))
    assert not ds.is_image and ds.shape == (2,) and ds.data.dtype == torch.float32
    np.testing.assert_allclose(ds.data.numpy(), arr, rtol=1e-6)
    assert describe(ds)["kind"] == "vector"


def test_npy_float_images_in_minus_one_to_one(tmp_path):
    arr = np.random.default_rng(0).uniform(-1, 1, size=(6, 3, 8, 8)).astype(np.float32)
    arr[0, 0, 0, :3] = [-1, 0, 1]
    np.save(tmp_path / "images.npy", arr)
    ds = load_dataset(str(tmp_path / "images.npy"))
    assert ds.is_image and ds.data.dtype == torch.uint8 and tuple(ds.data.shape) == (6, 3, 8, 8)
    assert ds.data[0, 0, 0, 0] == 0 and ds.data[0, 0, 0, 2] == 255
    back = ds.batch(torch.arange(6)).numpy()
    np.testing.assert_allclose(back, arr, atol=0.5 / 127.5 + 1e-6)
    assert tuple(load_dataset(str(tmp_path / "images.npy"), resolution=4).data.shape) == (6, 3, 4, 4)


# ------------------------------------------------------------------------------------ bad input


def test_a_missing_path_is_named(tmp_path):
    path = tmp_path / "nowhere"
    with pytest.raises(UserError, match=re.escape(str(path))):
        load_dataset(str(path))


def test_an_empty_folder_is_named(tmp_path):
    with pytest.raises(UserError, match=re.escape(str(tmp_path)) + ".*no images"):
        load_dataset(str(tmp_path))


def test_a_corrupt_png_is_named(tmp_path):
    write_mixed_pngs(tmp_path)
    bad = tmp_path / "c" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(UserError, match=re.escape(str(bad))):
        load_dataset(str(tmp_path), resolution=8)


@pytest.mark.parametrize("shape", [(10,), (10, 4, 4)])
def test_npy_of_the_wrong_rank(tmp_path, shape):
    path = tmp_path / "wrong.npy"
    np.save(path, np.zeros(shape, dtype=np.float32))
    with pytest.raises(UserError, match=re.escape(str(path)) + ".*" + re.escape(str(shape))):
        load_dataset(str(path))


def test_npy_with_nan(tmp_path):
    arr = np.zeros((20, 2), dtype=np.float32)
    arr[7, 1] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, arr)
    with pytest.raises(UserError, match=re.escape(str(path)) + r".*\[7\].*NaN"):
        load_dataset(str(path))


def test_float_images_outside_minus_one_to_one(tmp_path):
    path = tmp_path / "bright.npy"
    np.save(path, np.full((4, 1, 4, 4), 3.0, dtype=np.float32))
    with pytest.raises(UserError, match=re.escape(str(path))):
        load_dataset(str(path))


@pytest.mark.parametrize("name", ["toy:nope", "cifar100"])
def test_an_unknown_dataset_lists_the_known_ones(name):
    with pytest.raises(UserError) as info:
        load_dataset(name)
    message = str(info.value)
    assert repr(name) in message
    for known in SOURCES:
        assert known in message


def test_an_unsupported_file_type_is_named(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("1,2\n")
    with pytest.raises(UserError, match=re.escape(str(path))):
        load_dataset(str(path))
