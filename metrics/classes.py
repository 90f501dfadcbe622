"""Class balance of generated images, on labelled data (digits, MNIST): which classes a model
draws too rarely. FID mixes that with image quality; a GAN that draws too few 1s shows here.

Two judges label the samples. The pixel k-NN: the majority of an image's KNN_K nearest labelled
reference images in pixel space (Euclidean on [0, 1] pixels); `class_knn_accuracy`, its
leave-one-out accuracy on the reference, says how far to trust it (digits at 16x16: 0.99; it
is meaningless on natural images such as CIFAR-10). The CNN of metrics.classifier, trained on
the reference's labels; `class_cnn_accuracy` is its accuracy on the images it was not trained
on. The more accurate one labels the samples (`class_judge` in the record says which).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

KNN_K = 5
ACCURACY_NUM = 2000  # reference images whose leave-one-out label measures the classifier
CHUNK = 512  # query rows per distance matrix


def pixels(images: Tensor) -> Tensor:
    """uint8 images [N, C, H, W] -> float32 rows [N, C*H*W] in [0, 1]."""
    return images.flatten(1).float() / 255


def knn_labels(x: Tensor, ref: Tensor, labels: Tensor, self_index: Tensor | None = None, k: int = KNN_K) -> Tensor:
    """The majority label of each row of x among its k nearest rows of ref; ties go to the nearer
    neighbours. self_index[i]: the row of ref that x[i] is, left out (leave-one-out), or None."""
    k = min(k, len(ref) - (self_index is not None))
    num_classes = int(labels.max()) + 1
    rank_weight = 1 + 1e-3 * torch.arange(k, 0, -1, dtype=torch.float32)  # breaks ties only
    out = []
    for i in range(0, len(x), CHUNK):
        d = torch.cdist(x[i : i + CHUNK], ref)
        if self_index is not None:
            d[torch.arange(len(d)), self_index[i : i + CHUNK]] = torch.inf
        nearest = d.topk(k, largest=False).indices  # [B, k], nearest first
        votes = torch.zeros(len(d), num_classes).scatter_add_(1, labels[nearest], rank_weight.expand(len(d), k))
        out.append(votes.argmax(1))
    return torch.cat(out)


@dataclass(frozen=True)
class ClassJudge:
    """What labels the generated images: the classifier when it is more accurate, else the pixel k-NN."""

    name: str  # cnn | knn
    knn_accuracy: float  # leave-one-out accuracy of the pixel k-NN on the reference
    cnn_accuracy: float | None = None  # held-out accuracy of the trained classifier (None: none trained)
    classifier: Any = None  # metrics.classifier.TrainedClassifier, when name == "cnn"


def choose_judge(ref: Tensor, labels: Tensor, classifier: Any = None, seed: int = 2020) -> ClassJudge:
    """The CNN (a TrainedClassifier) if its held-out accuracy beats the k-NN's on uint8 ref [M, C, H, W]."""
    knn = knn_accuracy(ref, labels, seed)
    if classifier is None:
        return ClassJudge("knn", knn)
    return ClassJudge("cnn" if classifier.accuracy > knn else "knn", knn, classifier.accuracy,
                      classifier if classifier.accuracy > knn else None)


def class_balance(gen: Tensor, ref: Tensor, labels: Tensor, seed: int = 2020, judge: ClassJudge | None = None,
                  gen_labels: Tensor | None = None) -> dict[str, float]:
    """gen, ref: uint8 images [N, C, H, W]; labels: [M] class indices of ref. judge: default the pixel k-NN.
    gen_labels: [N] the class each sample was drawn for, for a class-conditional model.

    class_tv: total variation distance between the class shares of the samples and of the
    reference (0: the same shares, 1: no class in common); class_min_ratio: the rarest class's
    share against its reference share (1: no class too rare, 0: a class missing); with gen_labels,
    class_acc: the share of samples the judge labels as the class they were drawn for; the judges'
    accuracies.
    """
    labels = labels.long()
    by_cnn = judge is not None and judge.name == "cnn"
    predicted = judge.classifier.predict(gen) if by_cnn else knn_labels(pixels(gen), pixels(ref), labels)
    judge = judge or choose_judge(ref, labels, seed=seed)
    num_classes = int(labels.max()) + 1
    ref_share = torch.bincount(labels, minlength=num_classes).double() / len(labels)
    gen_share = torch.bincount(predicted, minlength=num_classes).double() / len(gen)
    present = ref_share > 0
    out = {"class_tv": float(0.5 * (gen_share - ref_share).abs().sum()),
           "class_min_ratio": float((gen_share[present] / ref_share[present]).min()),
           "class_knn_accuracy": judge.knn_accuracy}
    if gen_labels is not None:
        out["class_acc"] = float((predicted == gen_labels.to(predicted.device)).double().mean())
    return out if judge.cnn_accuracy is None else {**out, "class_cnn_accuracy": judge.cnn_accuracy}


_accuracy_cache: dict[str, float] = {}


def knn_accuracy(ref: Tensor, labels: Tensor, seed: int) -> float:
    """Leave-one-out accuracy of the classifier on up to ACCURACY_NUM reference images (drawn
    with `seed`). A property of the reference: computed once per reference and seed in a process,
    not at every evaluation of a training run."""
    content = ref.cpu().contiguous().numpy().tobytes() + labels.long().cpu().numpy().tobytes()
    key = f"{hashlib.sha1(content).hexdigest()}/{seed}"
    if key not in _accuracy_cache:
        r, labels = pixels(ref), labels.long()
        held = torch.randperm(len(r), generator=torch.Generator().manual_seed(seed))[:ACCURACY_NUM]
        _accuracy_cache[key] = float((knn_labels(r[held], r, labels, self_index=held) == labels[held]).double().mean())
    return _accuracy_cache[key]
