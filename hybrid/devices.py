"""Where a model runs and in what precision: chosen once, here, for training, sampling and metrics."""

from __future__ import annotations

import torch

from hybridgan.hybrid.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: choose auto, cpu or cuda")
    return torch.device(name)


PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(name: str) -> None:
    if name not in PRECISIONS:
        raise UserError(f"--precision {name!r}: choose {', '.join(PRECISIONS)}")


def resolve_precision(name: str, device: torch.device, image: bool) -> torch.dtype | None:
    """The autocast dtype, or None for plain float32. Chosen once per run."""
    check_precision(name)
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    # Conv nets gain from bf16 where the hardware computes in it; the toy MLPs are too small to gain.
    return torch.bfloat16 if image and has_native_bf16(device) else None


def has_native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix arithmetic runs in hardware: on the CPU, AVX512-BF16 or AMX.

    Without them oneDNN emulates bf16 convolutions with fp32 AVX-512: on a 2-core Xeon
    without either, the digits training step took 2.5x the CPU time of fp32 (1094 vs 429 ms).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence the getattr
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
