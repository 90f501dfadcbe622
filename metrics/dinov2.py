"""DINOv2 ViT features (Oquab et al. 2023) as torch-fidelity's `dinov2-vit-*-14` extractors give them.

torch-fidelity builds that network with torch.hub, which fetches the facebookresearch/dinov2 code
from GitHub and the weights from Meta's server, and it takes no weights file. Offline neither
works, so the network is written out here: its parameter names are the official ones, so the
official `dinov2_vit?14_pretrain.pth` loads strictly; the input is prepared as torch-fidelity
prepares it (TF-1.x bilinear resize to 224x224, ImageNet normalisation) and the output is its
output, the class token after the final norm. xFormers is not used (torch-fidelity disables it).

Weights, in order: a file the user gives (`--extractor-weights`); torch hub's checkpoints folder,
where torch-fidelity's and torch.hub's downloads put them; a download; else one UserError line.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from torch import Tensor, nn

from hybridgan.hybrid.errors import UserError
from hybridgan.metrics.features import WeightsFile, to_rgb_uint8
from hybridgan.metrics.inception import sha256_file

VARIANTS = {"dinov2-vit-s-14": ("vits14", 384, 12, 6), "dinov2-vit-b-14": ("vitb14", 768, 12, 12),
            "dinov2-vit-l-14": ("vitl14", 1024, 24, 16)}  # torch-fidelity's name -> (Meta's name, width, depth, heads)
DEFAULT = "dinov2-vit-l-14"  # `--extractor dinov2`: ViT-L/14, the FD_DINOv2 of Stein et al. 2023 and EDM2
PATCH = 14
TRAINED_PATCHES = 37  # the position embedding is for 518x518 inputs: 37 x 37 patches
INPUT_SIDE = 224  # torch-fidelity resizes every image to this side
INTERPOLATE_OFFSET = 0.1  # DINOv2's offset when it rescales the position embedding (kept for equal numbers)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet, on [0, 1] pixels
LAYER = "dinov2"  # torch-fidelity's name of the feature


def weights_name(variant: str) -> str:
    return f"dinov2_{VARIANTS[variant][0]}_pretrain.pth"


def weights_url(variant: str) -> str:
    model = f"dinov2_{VARIANTS[variant][0]}"
    return f"https://dl.fbaipublicfiles.com/dinov2/{model}/{model}_pretrain.pth"


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """[B, N, D] -> [B, N, D]."""
        B, N, D = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).unbind(2)
        out = nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn, self.ls1 = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads), LayerScale(dim)
        self.norm2, self.mlp, self.ls2 = nn.LayerNorm(dim, eps=1e-6), Mlp(dim), LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, stride=PATCH)

    def forward(self, x: Tensor) -> Tensor:
        """[B, 3, H, W] -> [B, (H/14)(W/14), D]."""
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """DINOv2's ViT without registers: normalised images [B, 3, H, W] (sides multiples of 14) -> [B, D]."""

    def __init__(self, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + TRAINED_PATCHES**2, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # unused here; in the official state dict
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def position_embedding(self, h: int, w: int) -> Tensor:
        """[1, 1 + h*w, D] for a grid of h x w patches: the trained 37 x 37 grid resized bicubically
        with DINOv2's scale factors (their offset included, which decides the result)."""
        M, dim = TRAINED_PATCHES, self.pos_embed.shape[-1]
        if h == w == M:
            return self.pos_embed
        grid = self.pos_embed[:, 1:].float().reshape(1, M, M, dim).permute(0, 3, 1, 2)
        scale = ((h + INTERPOLATE_OFFSET) / M, (w + INTERPOLATE_OFFSET) / M)
        grid = nn.functional.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)
        return torch.cat([self.pos_embed[:, :1].float(), grid], dim=1).to(self.pos_embed.dtype)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.position_embedding(h, w)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


class DinoV2Features(nn.Module):
    """uint8 images [B, 1 or 3, H, W] -> (features [B, D],), as torch-fidelity's FeatureExtractorDinoV2."""

    features_list = (LAYER,)

    def __init__(self, variant: str) -> None:
        super().__init__()
        _, dim, depth, heads = VARIANTS[variant]
        self.model = VisionTransformer(dim, depth, heads)
        self.register_buffer("mean", 255 * torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", 255 * torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor]:
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        x = to_rgb_uint8(images).float()
        x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(INPUT_SIDE, INPUT_SIDE), align_corners=False)
        return (self.model((x - self.mean) / self.std).float(),)


def build(variant: str, weights: WeightsFile) -> DinoV2Features:
    """The extractor with the weights file loaded (strictly: every official tensor, nothing else)."""
    net = DinoV2Features(variant)
    state = read_state(weights.path, variant)
    try:
        net.model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{weights.path}: not the {variant} weights ({str(e).splitlines()[0][:120]})") from None
    return net.eval().requires_grad_(False)


def read_state(path: Path, variant: str) -> dict[str, Tensor]:
    """A weights file as a state dict, checked to be the ViT of `variant`; UserError otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"--extractor-weights {path}: not a readable state dict ({str(e).splitlines()[0][:100]})") from None
    if not isinstance(state, dict) or "pos_embed" not in state or "blocks.0.attn.qkv.weight" not in state:
        raise UserError(f"--extractor-weights {path}: not DINOv2 ViT weights (Meta's {weights_name(variant)})")
    dim = state["pos_embed"].shape[-1]
    if dim != VARIANTS[variant][1]:
        fits = next((name for name, v in VARIANTS.items() if v[1] == dim), "no variant here")
        raise UserError(f"--extractor-weights {path}: a {dim}-wide ViT ({fits}), not {variant}; "
                        f"give {weights_name(variant)} or --extractor {fits}")
    return state


def hub_cache_path(variant: str) -> Path:
    """Where torch.hub's download (torch-fidelity's included) puts the weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights_name(variant)


def find_dinov2_weights(variant: str, user_path: str | Path | None = None, download: bool = True) -> WeightsFile:
    """The first weights of `variant` that exist, in the order of the module docstring."""
    if user_path:
        path = Path(user_path).expanduser()
        if not path.is_file():
            raise UserError(f"--extractor-weights {path}: no such file; give Meta's {weights_name(variant)}")
        read_state(path, variant)
        return WeightsFile(path, sha256_file(path), "user")
    cached = hub_cache_path(variant)
    if cached.is_file():
        return WeightsFile(cached, sha256_file(cached), "torch-hub-cache")
    reason = "downloading was not allowed"
    if download:
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # torch.hub's "Downloading:" line: offline, one line in all
                torch.hub.load_state_dict_from_url(weights_url(variant), map_location="cpu", progress=False)
            return WeightsFile(cached, sha256_file(cached), "download")
        except Exception as e:  # offline, proxy, disk: all end in the same advice
            reason = f"the download failed ({type(e).__name__}: offline?)"
    raise UserError(f"no {variant} weights here and {reason}; give --extractor-weights PATH to "
                    f"{weights_name(variant)} ({weights_url(variant)}), put it into {cached.parent}, or go online once")

