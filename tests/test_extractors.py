"""Feature spaces other than Inception (issue 32): raw pixels, a TorchScript file, the trained
classifier and its class judge, DINOv2 (offline), and statistics files (.npz of mu, sigma).
CPU only, no network; the classifier trains once for the module (seconds)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import digits_config
from hybridgan.hybrid.errors import UserError
from hybridgan.metrics import classifier as clf
from hybridgan.metrics import dinov2
from hybridgan.metrics.classes import ClassJudge, choose_judge, class_balance
from hybridgan.metrics.distances import frechet_distance, gaussian_stats
from hybridgan.metrics.evaluate import EvalConfig, evaluate, tensor_samples
from hybridgan.metrics.inception import sha256_file
from hybridgan.metrics.reference import read_stats

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the digits classifier is trained once and then read back."""
    root = tmp_path_factory.mktemp("hybrid-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HYBRID_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def digits():
    from hybridgan.training.data import load_dataset

    return load_dataset("digits")


def judge(samples, ref, cfg: EvalConfig, name: str = "ref"):
    return evaluate(tensor_samples(samples, "samples", batch=cfg.batch), ref, name, cfg, CPU, log=lambda _: None)


# ---------------------------------------------------------------------------------------------
# Pixels


def test_pixel_fd_of_a_shifted_set_is_its_closed_form(cache):
    """Every pixel moved by the same c: equal covariances, so FD = D (c / 255)^2 exactly."""
    g = torch.Generator().manual_seed(0)
    ref = torch.randint(0, 200, (400, 1, 6, 6), generator=g, dtype=torch.uint8)
    shifted = ref + 40
    result = judge(shifted, SimpleNamespace(data=ref), EvalConfig(metrics=("fid", "kid"), extractor="pixels"))
    assert result.results["fid"]["fid"] == pytest.approx(36 * (40 / 255) ** 2, rel=1e-6)  # one channel: D = 36, not 108
    assert result.extractor == "pixels/raw" and result.weights_sha256 == "none"
    same = judge(ref, SimpleNamespace(data=ref), EvalConfig(metrics=("fid",), extractor="pixels"))
    assert same.results["fid"]["fid"] == pytest.approx(0, abs=1e-9)


def test_pixels_refuse_large_images_and_the_inception_score(cache):
    big = torch.zeros(4, 3, 48, 48, dtype=torch.uint8)
    with pytest.raises(UserError, match="more than 4096"):
        judge(big, SimpleNamespace(data=big), EvalConfig(metrics=("fid",), extractor="pixels"))
    small = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(UserError, match="metric is reads Inception's class logits"):
        judge(small, SimpleNamespace(data=small), EvalConfig(metrics=("fid", "is"), extractor="pixels"))
    with pytest.raises(UserError, match="--extractor nope: unknown; use inception, dinov2, pixels, classifier"):
        judge(small, SimpleNamespace(data=small), EvalConfig(metrics=("fid",), extractor="nope"))
    labelled = SimpleNamespace(data=small, labels=torch.tensor([0, 1, 0, 1]))
    with pytest.raises(UserError, match="--extractor nope: unknown"):  # a metric without features still checks the name
        judge(small, labelled, EvalConfig(metrics=("classes",), extractor="nope"))


# ---------------------------------------------------------------------------------------------
# A TorchScript feature network


class Pooled(nn.Module):
    """images [B, 1, H, W] in [-1, 1] -> [B, 3]: mean, mean square, and the mean of the top half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-2] // 2
        return torch.stack([x.mean((1, 2, 3)), (x * x).mean((1, 2, 3)), x[:, :, :h].mean((1, 2, 3))], dim=1)


class Doubled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pooled = Pooled()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * self.pooled(x)


def test_a_torchscript_extractor_round_trips(cache, tmp_path):
    path = tmp_path / "pooled.pt"
    torch.jit.save(torch.jit.script(Pooled()), str(path))
    g = torch.Generator().manual_seed(1)
    ref = torch.randint(0, 256, (300, 1, 8, 8), generator=g, dtype=torch.uint8)
    gen = torch.randint(30, 256, (200, 1, 8, 8), generator=g, dtype=torch.uint8)
    result = judge(gen, SimpleNamespace(data=ref), EvalConfig(metrics=("fid",), extractor=str(path), batch=64))

    def features(x):  # what the file computes, run here without TorchScript
        return Pooled()(x.float() / 127.5 - 1)

    expected = frechet_distance(gaussian_stats(features(gen)), gaussian_stats(features(ref)))
    assert result.results["fid"]["fid"] == pytest.approx(expected, rel=1e-6) and expected > 0.01
    assert result.extractor == "torchscript/features" and result.weights_sha256 == sha256_file(path)
    # another file under the same name is other weights: its reference features are not the cached ones
    torch.jit.save(torch.jit.script(Doubled()), str(path))
    again = judge(gen, SimpleNamespace(data=ref), EvalConfig(metrics=("fid",), extractor=str(path), batch=64))
    assert again.reference_cached is False and again.results["fid"]["fid"] == pytest.approx(4 * expected, rel=1e-6)


def test_a_torch_export_program_is_an_extractor_too(cache, tmp_path):
    """torch.export's .pt2, the successor of TorchScript, with a dynamic batch dimension."""
    x = torch.zeros(4, 1, 8, 8)
    program = torch.export.export(Pooled(), (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp_path / "pooled.pt2"))
    g = torch.Generator().manual_seed(1)
    ref, gen = (torch.randint(0, 256, (50, 1, 8, 8), generator=g, dtype=torch.uint8) for _ in range(2))
    result = judge(gen, SimpleNamespace(data=ref), EvalConfig(metrics=("fid",), extractor=str(tmp_path / "pooled.pt2"), batch=16))
    expected = frechet_distance(gaussian_stats(Pooled()(gen.float() / 127.5 - 1)), gaussian_stats(Pooled()(ref.float() / 127.5 - 1)))
    assert result.results["fid"]["fid"] == pytest.approx(expected, rel=1e-6)


def test_a_torchscript_file_that_does_not_fit_is_one_error(cache, tmp_path):
    images = torch.zeros(10, 1, 8, 8, dtype=torch.uint8)
    flat = tmp_path / "flat.pt"
    torch.jit.save(torch.jit.script(nn.Identity()), str(flat))  # returns [B, 1, 8, 8], not [B, D]
    with pytest.raises(UserError, match=r"returned \(10, 1, 8, 8\) for images \(10, 1, 8, 8\); a feature network must"):
        judge(images, SimpleNamespace(data=images), EvalConfig(metrics=("fid",), extractor=str(flat)))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a TorchScript file"):
        judge(images, SimpleNamespace(data=images), EvalConfig(metrics=("fid",), extractor=str(junk)))
    with pytest.raises(UserError, match="takes no weights file"):
        judge(images, SimpleNamespace(data=images), EvalConfig(metrics=("fid",), extractor=str(flat), extractor_weights="w.pth"))


# ---------------------------------------------------------------------------------------------
# The classifier trained on the data's labels


@pytest.fixture(scope="module")
def trained(cache, digits):
    return clf.load_or_train("digits", digits.data, digits.labels)


def test_the_classifier_learns_digits_and_is_cached_by_their_content(trained, digits):
    assert trained.accuracy >= 0.97 and not trained.cached
    again = clf.load_or_train("digits", digits.data, digits.labels)
    assert again.cached and again.sha256 == trained.sha256 and again.accuracy == trained.accuracy
    train, held = clf.split(len(digits))
    assert not set(train.tolist()) & set(held.tolist()) and len(held) == round(0.2 * len(digits))
    # one pixel or one label changed: another key, so another classifier file
    changed = digits.data.clone()
    changed[0, 0, 0, 0] ^= 1
    relabelled = digits.labels.clone()
    relabelled[0] = (relabelled[0] + 1) % 10
    keys = {clf.labelled_digest(digits.data, digits.labels), clf.labelled_digest(changed, digits.labels),
            clf.labelled_digest(digits.data, relabelled)}
    assert len(keys) == 3
    assert clf.cache_file("digits", changed, clf.labelled_digest(changed, digits.labels)) != trained.path


def test_the_classifier_is_an_extractor_that_reports_its_accuracy(trained, digits):
    real = digits.data[torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))[:400]]
    ones = digits.data[digits.labels == 1][:150]
    cfg = EvalConfig(metrics=("fid",), extractor="classifier")
    near, far = judge(real, digits, cfg, "digits"), judge(ones, digits, cfg, "digits")
    assert near.extractor == "classifier/penultimate" and near.weights_sha256 == trained.sha256
    assert near.extractor_accuracy == trained.accuracy and near.records()[0]["extractor_accuracy"] == trained.accuracy
    assert far.results["fid"]["fid"] > 10 * near.results["fid"]["fid"]  # one class only: far in a space that knows classes
    with pytest.raises(UserError, match="--extractor classifier trains on class labels; plain has none"):
        judge(real, SimpleNamespace(data=digits.data), cfg, "plain")


def test_classes_are_judged_by_the_more_accurate_classifier(trained, digits):
    assert choose_judge(digits.data, digits.labels, SimpleNamespace(accuracy=0.5)).name == "knn"
    better = choose_judge(digits.data, digits.labels, trained)
    assert better.knn_accuracy < trained.accuracy and better.name == "cnn" and better.classifier is trained
    no_sevens = digits.data[digits.labels != 7][:600]
    by_cnn = class_balance(no_sevens, digits.data, digits.labels, judge=better)
    by_knn = class_balance(no_sevens, digits.data, digits.labels)
    assert by_cnn["class_cnn_accuracy"] == trained.accuracy and "class_cnn_accuracy" not in by_knn
    assert by_cnn["class_min_ratio"] < 0.02 and by_cnn["class_tv"] > 0.08  # the missing 7s show either way
    result = judge(no_sevens, digits, EvalConfig(metrics=("classes",)), "digits")
    assert result.class_judge == "cnn" and result.results["classes"] == by_cnn and result.extractor is None
    assert result.records()[0]["class_judge"] == "cnn"
    knn_only = ClassJudge("knn", better.knn_accuracy)
    assert class_balance(no_sevens, digits.data, digits.labels, judge=knn_only) == by_knn


# ---------------------------------------------------------------------------------------------
# Statistics files: hybrid eval --save-ref / --ref stats.npz


def test_statistics_written_and_read_back_give_the_same_fid(cache, tmp_path, digits, hybrid):
    samples = tmp_path / "samples.npy"
    np.save(samples, digits.data[digits.labels != 3][:300].numpy())
    stats = tmp_path / "digits-pixels.npz"
    done = hybrid("eval", "digits", "--save-ref", stats, "--extractor", "pixels")
    assert done.code == 0 and "mu [256] and sigma [256, 256] of 1797 images of digits" in done.out, done.err
    with np.load(stats) as z:  # what pytorch-fid and EDM read
        assert z["mu"].shape == (256,) and z["sigma"].shape == (256, 256) and z["sigma"].dtype == np.float64
    direct = hybrid("eval", samples, "--ref", "digits", "--extractor", "pixels", "--metrics", "fid", "--json")
    read = hybrid("eval", samples, "--ref", stats, "--extractor", "pixels", "--json")
    fid = json.loads(direct.out)["results"]["fid"]["fid"]
    assert direct.code == read.code == 0 and fid > 0.1
    assert json.loads(read.out)["results"]["fid"]["fid"] == pytest.approx(fid, abs=1e-6)
    # a subset, as eval's --ref-num takes it, gives that subset's statistics
    subset = tmp_path / "subset.npz"
    assert hybrid("eval", "digits", "--save-ref", subset, "--extractor", "pixels", "--ref-num", "500").code == 0
    assert read_stats(subset).stats.num == 500


def test_statistics_files_refuse_what_they_cannot_give(cache, tmp_path, digits, hybrid):
    samples = tmp_path / "samples.npy"
    np.save(samples, digits.data[:50].numpy())
    stats = tmp_path / "px.npz"
    assert hybrid("eval", "digits", "--save-ref", stats, "--extractor", "pixels").code == 0

    def one_line_error(*args) -> str:
        done = hybrid(*args)
        assert done.code == 2 and len(done.err.strip().splitlines()) == 1, done.err
        return done.err

    assert "exists" in one_line_error("eval", "digits", "--save-ref", stats, "--extractor", "pixels")
    assert "give fid alone; metric(s) kid" in one_line_error("eval", samples, "--ref", stats, "--extractor", "pixels",
                                                               "--metrics", "fid,kid")
    assert "holds pixels statistics, not inception-v3-compat" in one_line_error("eval", samples, "--ref", stats)
    with np.load(stats) as z:  # pytorch-fid's layout: mu and sigma alone, which are Inception pool3
        np.savez(tmp_path / "theirs.npz", mu=z["mu"], sigma=z["sigma"])
    assert "pytorch-fid and EDM write Inception pool3" in one_line_error("eval", samples, "--ref", tmp_path / "theirs.npz",
                                                                         "--extractor", "pixels")
    np.savez(tmp_path / "other.npz", samples=digits.data[:5].numpy())
    assert "need 'mu' and 'sigma'" in one_line_error("eval", samples, "--ref", tmp_path / "other.npz")
    assert "drop --ref" in one_line_error("eval", "digits", "--save-ref", tmp_path / "x.npz", "--ref", "digits")


# ---------------------------------------------------------------------------------------------
# DINOv2


def test_dinov2_without_weights_offline_is_one_line(cache, tmp_path, monkeypatch, hybrid):
    def offline(*args, **kwargs):
        import sys
        import urllib.error

        print('Downloading: "https://dl.fbaipublicfiles.com/..."', file=sys.stderr)  # as torch.hub does
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(dinov2, "hub_cache_path", lambda variant: tmp_path / "hub" / dinov2.weights_name(variant))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    samples = tmp_path / "s.npy"
    np.save(samples, torch.zeros(4, 1, 8, 8, dtype=torch.uint8).numpy())
    done = hybrid("eval", samples, "--ref", samples, "--extractor", "dinov2")
    assert done.code == 2 and len(done.err.strip().splitlines()) == 1, done.err
    assert "no dinov2-vit-l-14 weights here" in done.err and "--extractor-weights PATH" in done.err
    assert "dinov2_vitl14_pretrain.pth" in done.err and "Traceback" not in done.err
    small = tmp_path / "vits14.pth"
    torch.save(dinov2.DinoV2Features("dinov2-vit-s-14").model.state_dict(), small)
    done = hybrid("eval", samples, "--ref", samples, "--extractor", "dinov2", "--extractor-weights", small)
    assert done.code == 2 and "a 384-wide ViT (dinov2-vit-s-14), not dinov2-vit-l-14" in done.err


def random_vit_state(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The official layout with random values (scales near 1, the rest small)."""
    state = dinov2.DinoV2Features(variant).model.state_dict()
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.05 + (1.0 if k.endswith(("gamma", "norm1.weight", "norm2.weight")) else 0)
            for k, v in state.items()}


def test_dinov2_runs_with_a_weights_file(cache, tmp_path):
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(random_vit_state("dinov2-vit-s-14"), path)
    g = torch.Generator().manual_seed(2)
    ref, gen = (torch.randint(0, 256, (6, 1, 16, 16), generator=g, dtype=torch.uint8) for _ in range(2))
    cfg = EvalConfig(metrics=("fid",), extractor="dinov2-vit-s-14", extractor_weights=str(path), batch=6)
    result = judge(gen, SimpleNamespace(data=ref), cfg)
    assert result.extractor == "dinov2-vit-s-14/dinov2" and result.weights_sha256 == sha256_file(path)
    assert result.weights_source == "user" and result.results["fid"]["fid"] > 0


def official_dinov2_code() -> Path | None:
    """facebookresearch/dinov2's code where torch.hub keeps it (after torch-fidelity ran online once)."""
    folder = Path(torch.hub.get_dir()) / "facebookresearch_dinov2_main"
    return folder if (folder / "dinov2" / "models" / "vision_transformer.py").is_file() else None


@pytest.mark.skipif(official_dinov2_code() is None, reason="the facebookresearch/dinov2 code is not in torch hub's cache")
def test_dinov2_equals_torch_fidelitys_extractor_with_the_official_network(monkeypatch):
    import sys

    from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2

    monkeypatch.setenv("XFORMERS_DISABLED", "1")
    monkeypatch.syspath_prepend(str(official_dinov2_code()))
    from dinov2.hub.backbones import dinov2_vits14

    official = dinov2_vits14(pretrained=False).eval()
    state = random_vit_state("dinov2-vit-s-14", seed=3)
    official.load_state_dict(state)
    theirs = FeatureExtractorDinoV2.__new__(FeatureExtractorDinoV2)  # its __init__ would download; the rest is theirs
    nn.Module.__init__(theirs)
    theirs.name, theirs.features_list, theirs.feature_extractor_internal_dtype = "dinov2-vit-s-14", ["dinov2"], torch.float32
    theirs.model = official
    ours = dinov2.DinoV2Features("dinov2-vit-s-14").eval()
    ours.model.load_state_dict(state)
    x = torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], theirs(x)[0], atol=2e-5, rtol=1e-5)
    for name in [m for m in sys.modules if m == "dinov2" or m.startswith("dinov2.")]:
        del sys.modules[name]


# ---------------------------------------------------------------------------------------------
# Training-time evaluation


def test_training_metrics_use_the_chosen_extractor(tmp_path, monkeypatch, hybrid):
    from hybridgan.training import train

    monkeypatch.setenv("HYBRID_CACHE", str(tmp_path / "cache"))
    run = train(digits_config(metrics=("fid",), extractor="pixels", eval_num=64), run_dir=tmp_path / "run",
                model_changes={"channels": 8}, quiet=True)
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["metric"] == "fid" and record["extractor"] == "pixels/raw" and record["value"] > 0
    assert json.loads((run / "config.json").read_text())["extractor"] == "pixels"
    done = hybrid("train", "--kimg", "0.064", "--metrics", "is", "--extractor", "pixels", "--run-dir", tmp_path / "bad")
    assert done.code == 2 and "reads Inception's class logits" in done.err and not (tmp_path / "bad").exists()

