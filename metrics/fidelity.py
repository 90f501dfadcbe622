"""FID, KID and IS straight through `torch_fidelity.calculate_metrics`.

The default evaluation extracts features once with torch-fidelity's extractor and computes the
distances itself (so that reference features can be cached under our own key and
precision/recall can use Inception features). This module is the second road: the same
images handed to torch-fidelity whole. Tests show both roads agree.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from hybridgan.metrics.features import ExtractorSpec, to_rgb_uint8

_KEYS = {"frechet_inception_distance": "fid", "kernel_inception_distance_mean": "kid",
         "kernel_inception_distance_std": "kid_std", "inception_score_mean": "is", "inception_score_std": "is_std"}


class ImageTensorDataset(Dataset):
    """uint8 images [N, 1 or 3, H, W] as torch-fidelity wants them: item i -> uint8 [3, H, W]."""

    def __init__(self, images: Tensor) -> None:
        self.images = to_rgb_uint8(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i].contiguous()


def torch_fidelity_metrics(gen: Tensor, ref: Tensor | None, names: tuple[str, ...], spec: ExtractorSpec,
                           device: torch.device, kid_subsets: int = 100, kid_subset_size: int = 1000,
                           seed: int = 2020) -> dict[str, float]:
    """calculate_metrics on uint8 images gen [N, C, H, W] (input1) and ref [M, C, H, W] (input2).

    names: any of fid, kid, is. Runs on `device` (torch-fidelity's cuda flag is always passed),
    with no on-disk cache and no DataLoader workers. Returns {"fid", "kid", "kid_std", "is", "is_std"}
    for what was asked.
    """
    import torch_fidelity

    unknown = set(names) - {"fid", "kid", "is"}
    if unknown:
        raise ValueError(f"torch_fidelity_metrics computes fid, kid, is; not {sorted(unknown)}")
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    kwargs = {"feature_extractor_weights_path": str(spec.weights.path)} if spec.weights is not None else {}
    if "kid" in names:
        kwargs["kid_subset_size"] = min(kid_subset_size, len(gen), len(ref))
    out = torch_fidelity.calculate_metrics(
        input1=ImageTensorDataset(gen), input2=ImageTensorDataset(ref) if ref is not None else None,
        fid="fid" in names, kid="kid" in names, isc="is" in names, cuda=device.type == "cuda",
        feature_extractor=spec.name, batch_size=spec.batch, kid_subsets=kid_subsets, rng_seed=seed,
        save_cpu_ram=True, cache=False, verbose=False, **kwargs)
    return {_KEYS[k]: float(v) for k, v in out.items() if k in _KEYS}
