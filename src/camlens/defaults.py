"""Turn the user's ``targets`` argument into one target per image.

``None`` means "the prediction": the top class of a classifier, or, for a segmenter, each
image's dominant predicted class summed over its predicted mask (and a warning says which
classes were chosen). Plain integers are class indices. One target is broadcast to every
image; any other count that is not the batch size is an error, never a silent truncation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from camlens.errors import InputShapeError
from camlens.outputs import is_dense
from camlens.targets import ClassifierOutputTarget, SemanticSegmentationTarget

__all__ = ["resolve_targets"]


def _dominant_class_targets(scores: torch.Tensor) -> list[SemanticSegmentationTarget]:
    predicted = scores.detach().argmax(dim=1)  # (B, *spatial)
    counts = torch.stack(
        [torch.bincount(p.flatten(), minlength=scores.shape[1]) for p in predicted]
    )
    dominant = counts.argmax(dim=1).tolist()
    warnings.warn(
        "targets=None on a segmentation output: explaining each image's dominant predicted "
        f"class over its predicted mask (classes {dominant}); pass "
        "SemanticSegmentationTarget(category, mask) to choose.",
        UserWarning,
        stacklevel=4,
    )
    return [
        SemanticSegmentationTarget(category, predicted[index] == category)
        for index, category in enumerate(dominant)
    ]


def _from_int(category: int, scores: torch.Tensor, index: int) -> Any:
    if not is_dense(scores):
        return ClassifierOutputTarget(category)
    predicted = scores[index].detach().argmax(dim=0)
    return SemanticSegmentationTarget(category, predicted == category)


def resolve_targets(targets: Sequence[Any] | None, scores: torch.Tensor) -> list[Any]:
    """One target callable per image of ``scores`` (``[B, ...]``)."""
    batch = scores.shape[0]
    if targets is None:
        if is_dense(scores):
            return list(_dominant_class_targets(scores))
        return [ClassifierOutputTarget(int(c)) for c in scores.detach().flatten(1).argmax(1)]
    if callable(targets) or isinstance(targets, int):
        targets = [targets]
    targets = list(targets)
    if len(targets) == 1 and batch > 1:
        targets = targets * batch
    if len(targets) != batch:
        raise InputShapeError(
            f"got {len(targets)} targets for a batch of {batch} images; pass one target per "
            "image, or a single target to use for every image."
        )
    resolved = []
    for index, target in enumerate(targets):
        if isinstance(target, bool) or not (isinstance(target, int) or callable(target)):
            raise TypeError(
                f"target {index} is a {type(target).__name__}; use a class index or a target "
                "callable such as camlens.targets.ClassifierOutputTarget(3)."
            )
        resolved.append(_from_int(target, scores, index) if isinstance(target, int) else target)
    return resolved
