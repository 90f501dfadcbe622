"""A small classifier the project trains on a labelled data set's own labels.

It judges generated images in a space that knows the classes: its penultimate features are an
extractor (`--extractor classifier`) and its predictions label samples for the `classes` metric
where it beats the pixel k-NN. The recipe is fixed (architecture, seed, split, steps), so the
same data give the same network; the result is cached under the data's sha256 and RECIPE, and
its accuracy on a held-out split it never saw is recorded beside it.

Training always runs on the CPU with its own seeded generators (the global RNG is left alone):
a few seconds for 16x16 digits.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from hybridgan.hybrid.checkpoint import save_atomic
from hybridgan.metrics.inception import cache_dir

RECIPE = "cnn-v1"  # part of the cache key: change it whenever anything below changes the trained network
SEED = 0  # weights, split and batch order
HELD_OUT = 0.2  # share of the labelled images kept out of training to measure accuracy
STEPS = 400  # optimiser steps of BATCH images (one-cycle learning rate, peak LR)
BATCH = 64
LR = 3e-3
WIDTH = 8  # channels of the first convolution; doubled twice (16x16 digits: 0.994 held out, 0.98 without batch norm)
LAYER = "penultimate"  # the feature layer's name in records


class ClassifierNet(nn.Module):
    """uint8 images [B, C, H, W] (any side >= 4) -> (features [B, 4*WIDTH], logits [B, K])."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        w = WIDTH

        def conv(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(*conv(channels, w), *conv(w, 2 * w), nn.MaxPool2d(2), *conv(2 * w, 4 * w),
                                  nn.MaxPool2d(2), *conv(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(images.float() / 127.5 - 1)
        return features, self.head(features)


@dataclass(frozen=True)
class TrainedClassifier:
    net: ClassifierNet  # in eval mode, on the CPU
    accuracy: float  # on the held-out split
    sha256: str  # of its weights' bytes: keys reference statistics of its features
    path: Path | None  # the cache file (None when not cached)
    cached: bool  # read from the cache, not trained now

    def predict(self, images: Tensor) -> Tensor:
        """uint8 images [N, C, H, W] -> [N] predicted classes."""
        return predict(self.net, images)


@torch.no_grad()
def predict(net: ClassifierNet, images: Tensor, batch: int = 256) -> Tensor:
    """uint8 images [N, C, H, W] -> [N] the classes `net` (in eval mode) predicts."""
    return torch.cat([net(images[i : i + batch])[1].argmax(1) for i in range(0, len(images), batch)])


def labelled_digest(images: Tensor, labels: Tensor) -> str:
    """sha256 of the images (with their shape), the labels and the recipe."""
    h = hashlib.sha256(f"{RECIPE}{tuple(images.shape)}".encode())
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.long().contiguous().numpy().tobytes())
    return h.hexdigest()


def state_sha256(state: dict[str, Tensor]) -> str:
    """sha256 of a state dict's names and tensor bytes (not of a file, whose bytes torch.save may vary)."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def split(num: int) -> tuple[Tensor, Tensor]:
    """Indices of the training and the held-out images of a set of `num`, fixed by SEED."""
    order = torch.randperm(num, generator=torch.Generator().manual_seed(SEED))
    held = max(1, round(HELD_OUT * num))
    return order[held:], order[:held]


def train_classifier(images: Tensor, labels: Tensor) -> tuple[ClassifierNet, float]:
    """Train the recipe on uint8 images [N, C, H, W] with labels [N]; return it and its held-out accuracy."""
    images, labels = images.cpu(), labels.long().cpu()
    train, held = split(len(images))
    with torch.random.fork_rng(devices=[]):  # the weights' initialisation draws from the global RNG
        torch.manual_seed(SEED)
        net = ClassifierNet(images.shape[1], int(labels.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=STEPS)
    g = torch.Generator().manual_seed(SEED + 1)
    net.train()
    for _ in range(STEPS):
        rows = train[torch.randint(len(train), (BATCH,), generator=g)]
        loss = nn.functional.cross_entropy(net(images[rows])[1], labels[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval().requires_grad_(False)
    return net, float((predict(net, images[held]) == labels[held]).double().mean())


def cache_file(dataset: str, images: Tensor, digest: str, root: Path | None = None) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(dataset.rstrip("/")).name).strip("-") or "data"
    return (root or cache_dir() / "classifier") / f"{slug}-{images.shape[-1]}px-{len(images)}-{digest[:24]}.pt"


def load_or_train(dataset: str, images: Tensor, labels: Tensor, use_cache: bool = True,
                  root: Path | None = None) -> TrainedClassifier:
    """The recipe's classifier of uint8 images [N, C, H, W] with labels [N]: from the cache when
    the same images, labels and recipe were seen before, else trained now (and cached).

    dataset: a name for the cache file only; the key is the content digest.
    """
    digest = labelled_digest(images, labels)
    path = cache_file(dataset, images, digest, root)
    if use_cache and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("digest") == digest:
                net = ClassifierNet(saved["channels"], saved["num_classes"])
                net.load_state_dict(saved["state"])
                net.eval().requires_grad_(False)
                return TrainedClassifier(net, saved["accuracy"], state_sha256(saved["state"]), path, True)
        except Exception:  # unreadable or from an older layout: train again and overwrite
            pass
    net, accuracy = train_classifier(images, labels)
    state = net.state_dict()
    if not use_cache:
        return TrainedClassifier(net, accuracy, state_sha256(state), None, False)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic({"digest": digest, "recipe": RECIPE, "state": state, "accuracy": accuracy,
                 "channels": images.shape[1], "num_classes": int(labels.max()) + 1}, path)
    return TrainedClassifier(net, accuracy, state_sha256(state), path, False)
