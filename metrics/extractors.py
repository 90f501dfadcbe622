"""Which network judges: the feature spaces a user names with `--extractor`, and their weights.

  inception   torch-fidelity's FID Inception-v3, pool3 (2048-d): the papers' FID (metrics.inception)
  dinov2      DINOv2 ViT-L/14 as torch-fidelity computes it (also dinov2-vit-s-14, -b-14; metrics.dinov2)
  pixels      the raw pixels in [0, 1] (C*H*W values; for small images): FD of pixels
  classifier  a small CNN trained on the reference's own labels, penultimate layer (metrics.classifier)
  PATH        a feature network file, TorchScript (torch.jit.save) or torch.export (.pt2, torch.export.save;
              TorchScript is deprecated in torch 2.10+): float images [B, C, H, W] in [-1, 1] -> features [B, D]
  any other name torch-fidelity has registered (vgg16, clip-vit-b-32, ...), as torch-fidelity runs it

FID, KID and precision/recall read any of them; the Inception Score reads Inception's class
logits, which only torch-fidelity's extractors give. Reference statistics are cached per
extractor and weights sha256 (metrics.reference), so the spaces never mix.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hybridgan.hybrid.errors import UserError
from hybridgan.metrics import dinov2
from hybridgan.metrics.features import ExtractorSpec, WeightsFile
from hybridgan.metrics.inception import EXTRACTOR, find_inception_weights, sha256_file

INCEPTION, DINOV2, PIXELS, CLASSIFIER, TORCHSCRIPT = "inception", "dinov2", "pixels", "classifier", "torchscript"
ALIASES = {INCEPTION: EXTRACTOR, DINOV2: dinov2.DEFAULT}  # the names users type -> the names records keep
PIXELS_MAX = 4096  # pixel features per image at most: FD needs a D x D covariance and its eigendecomposition
SCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".torchscript", ".pt2")


@dataclass(frozen=True)
class OwnExtractor:
    layer: str  # the one feature layer it gives (its name in records)
    build: Callable[[ExtractorSpec], nn.Module]  # spec -> a module: uint8 [B, C, H, W] -> ([B, D],)


class PixelFeatures(nn.Module):
    """uint8 images [B, C, H, W] -> ([B, C*H*W] float32 in [0, 1],): Fréchet distance in pixel space."""

    rgb = False  # grayscale stays one channel: three copies would triple every distance
    features_list = ("raw",)

    def forward(self, images: Tensor) -> tuple[Tensor]:
        if images[0].numel() > PIXELS_MAX:
            raise UserError(f"--extractor pixels: images of {'x'.join(map(str, images.shape[1:]))} = {images[0].numel()} "
                            f"values, more than {PIXELS_MAX} (its covariance would be too large); compare at a smaller "
                            "--resolution or use another extractor")
        return (images.flatten(1).float() / 255,)


class TorchScriptFeatures(nn.Module):
    """A user's network file: float images [B, C, H, W] in [-1, 1] -> ([B, D] float32,)."""

    rgb = False  # the images as stored: the network was made for the data
    features_list = ("features",)

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.net = load_torchscript(path)

    def train(self, mode: bool = True) -> TorchScriptFeatures:
        """The network keeps the mode it was saved in: an exported program refuses train()/eval()."""
        self.training = mode
        return self

    def forward(self, images: Tensor) -> tuple[Tensor]:
        out = self.net(images.float() / 127.5 - 1)
        if not isinstance(out, Tensor) or out.dim() != 2 or len(out) != len(images):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise UserError(f"--extractor {self.path}: returned {got} for images {tuple(images.shape)}; "
                            "a feature network must return [B, D] features")
        return (out.float(),)


class ClassifierFeatures(nn.Module):
    """The trained classifier's penultimate layer: uint8 [B, C, H, W] -> ([B, D],)."""

    rgb = False
    features_list = ("penultimate",)

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> tuple[Tensor]:
        return (self.net(images)[0],)


def load_torchscript(path: Path) -> nn.Module:
    """A TorchScript file, or a torch.export program (.pt2), as a module on the CPU."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
            if path.suffix.lower() == ".pt2":
                return torch.export.load(str(path)).module()
            return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise UserError(f"--extractor {path}: not a {'torch.export' if path.suffix.lower() == '.pt2' else 'TorchScript'} "
                        f"file ({str(e).splitlines()[0][:80] if str(e) else type(e).__name__}); save one with "
                        "torch.jit.save(torch.jit.script(net), PATH) or torch.export.save(program, PATH.pt2)") from None


OWN_EXTRACTORS: dict[str, OwnExtractor] = {
    PIXELS: OwnExtractor("raw", lambda spec: PixelFeatures()),
    TORCHSCRIPT: OwnExtractor("features", lambda spec: TorchScriptFeatures(spec.weights.path)),
    CLASSIFIER: OwnExtractor("penultimate", lambda spec: ClassifierFeatures(spec.network)),
    **{name: OwnExtractor(dinov2.LAYER, lambda spec: dinov2.build(spec.name, spec.weights)) for name in dinov2.VARIANTS},
}


def canonical(name: str) -> str:
    """The extractor a user's name means: an OWN_EXTRACTORS key, a torch-fidelity name, or
    TORCHSCRIPT for a file. UserError for anything else."""
    name = ALIASES.get(name, name)
    if name in OWN_EXTRACTORS and name != TORCHSCRIPT:
        return name
    path = Path(name).expanduser()
    if path.is_file():
        return TORCHSCRIPT
    if path.suffix.lower() in SCRIPT_SUFFIXES or "/" in name:
        raise UserError(f"--extractor {name}: no such file; give a TorchScript feature network or a name: "
                        f"{', '.join(ALIASES)}, {PIXELS}, {CLASSIFIER}")
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if name in FEATURE_EXTRACTORS_REGISTRY:
        return name
    raise UserError(f"--extractor {name}: unknown; use {INCEPTION}, {DINOV2}, {PIXELS}, {CLASSIFIER}, a TorchScript "
                    f"file, or a torch-fidelity extractor ({', '.join(sorted(FEATURE_EXTRACTORS_REGISTRY))})")


def gives_logits(kind: str) -> bool:
    """Whether the extractor has class logits for the Inception Score: torch-fidelity's do."""
    return kind not in OWN_EXTRACTORS


def check_extractor(name: str, weights: str | None, metrics: list[Any], labels: Tensor | None, source: str) -> str:
    """Refuse, before any work, an extractor that cannot serve the chosen metrics (registry.Metric)
    or the data; returns canonical(name)."""
    kind = canonical(name)
    if weights and kind in (PIXELS, CLASSIFIER, TORCHSCRIPT):
        raise UserError(f"--extractor-weights {weights}: --extractor {name} takes no weights file; drop it")
    logits = [m.name for m in metrics if m.needs_classifier]
    if logits and not gives_logits(kind):
        raise UserError(f"metric {','.join(logits)} reads Inception's class logits, which --extractor {name} does "
                        f"not give; drop it or use --extractor {INCEPTION}")
    if kind == CLASSIFIER and labels is None and any(m.gen_layers or m.ref_layers for m in metrics):
        raise UserError(f"--extractor {CLASSIFIER} trains on class labels; {source} has none "
                        "(labelled data: digits, mnist, fashion-mnist, cifar10)")
    return kind


def resolve_extractor(name: str, weights: str | None, batch: int, classifier: Any = None) -> ExtractorSpec:
    """The spec of a checked extractor: its weights found (downloaded only where no file exists).

    weights: --extractor-weights (Inception or DINOv2). classifier: the trained classifier
    (metrics.classifier.TrainedClassifier) that `--extractor classifier` reads.
    """
    kind = canonical(name)
    if kind == EXTRACTOR:
        return ExtractorSpec(kind, find_inception_weights(weights), batch)
    if kind in dinov2.VARIANTS:
        return ExtractorSpec(kind, dinov2.find_dinov2_weights(kind, weights), batch)
    if kind == TORCHSCRIPT:
        path = Path(name).expanduser()
        load_torchscript(path)  # a broken file fails now, not after sampling
        return ExtractorSpec(kind, WeightsFile(path, sha256_file(path), str(path)), batch)
    if kind == PIXELS:
        return ExtractorSpec(kind, WeightsFile(None, "none", "none"), batch)
    if kind == CLASSIFIER:
        if classifier is None:
            raise ValueError("--extractor classifier: pass the trained classifier (metrics.classifier.load_or_train)")
        source = f"trained on the reference's labels ({'cached' if classifier.cached else 'now'})"
        return ExtractorSpec(kind, WeightsFile(classifier.path, classifier.sha256, source), batch,
                             network=classifier.net, accuracy=classifier.accuracy)
    if weights and not Path(weights).expanduser().is_file():
        raise UserError(f"--extractor-weights {weights}: no such file")
    file = WeightsFile(Path(weights).expanduser(), sha256_file(Path(weights).expanduser()), "user") if weights else None
    return ExtractorSpec(kind, file, batch)
