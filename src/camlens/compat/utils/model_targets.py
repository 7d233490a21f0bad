"""``pytorch_grad_cam.utils.model_targets`` → :mod:`camlens.targets`, plus
:class:`FasterRCNNBoxScoreTarget`.

``FasterRCNNBoxScoreTarget`` scores a detector's output dict (``boxes``, ``labels``,
``scores``) as upstream does, and can be called on such an output; camlens's explainers
themselves explain models whose output is a score tensor, so it cannot drive a CAM of a
detector here (the error of such a call says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from camlens.targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputReST,
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
    FinerWeightedTarget,
    RawScoresOutputTarget,
    SemanticSegmentationTarget,
    SoftmaxOutputTarget,
)

__all__ = [
    "BinaryClassifierOutputTarget",
    "ClassifierOutputReST",
    "ClassifierOutputSoftmaxTarget",
    "ClassifierOutputTarget",
    "FasterRCNNBoxScoreTarget",
    "FinerWeightedTarget",
    "RawScoresOutputTarget",
    "SemanticSegmentationTarget",
    "SoftmaxOutputTarget",
]


def _box_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one ``(4,)`` box ``(x1, y1, x2, y2)`` with each of ``(N, 4)`` boxes."""
    top_left = torch.maximum(box[:2], boxes[:, :2])
    bottom_right = torch.minimum(box[2:], boxes[:, 2:])
    intersection = (bottom_right - top_left).clamp_min(0).prod(dim=1)
    area = (box[2:] - box[:2]).prod()
    areas = (boxes[:, 2:] - boxes[:, :2]).prod(dim=1)
    return intersection / (area + areas - intersection)


class FasterRCNNBoxScoreTarget:
    """The sum, over the given boxes, of ``IoU + score`` of the best-overlapping detection,
    counted when that IoU exceeds ``iou_threshold`` and its label is the box's label.

    Args:
        labels: one class label per reference box.
        bounding_boxes: the reference boxes ``(x1, y1, x2, y2)`` (numpy or torch).
        iou_threshold: the overlap a detection needs to count.

    Returns (when called on one image's output dict): a ``(1,)`` tensor on the output's
    device and dtype; zero when there are no detections.
    """

    def __init__(
        self, labels: Sequence[int], bounding_boxes: Sequence[Any], iou_threshold: float = 0.5
    ) -> None:
        self.labels = list(labels)
        self.bounding_boxes = list(bounding_boxes)
        self.iou_threshold = float(iou_threshold)

    def __call__(self, model_outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        boxes = model_outputs["boxes"]
        total = torch.zeros(1, device=boxes.device, dtype=boxes.dtype)
        if len(boxes) == 0:
            return total
        for box, label in zip(self.bounding_boxes, self.labels, strict=True):
            values = box if isinstance(box, torch.Tensor) else np.asarray(box)
            reference = torch.as_tensor(values, device=boxes.device, dtype=boxes.dtype)
            overlaps = _box_iou(reference.reshape(4), boxes)
            best = int(overlaps.argmax())
            matched = int(model_outputs["labels"][best]) == int(label)
            if float(overlaps[best]) > self.iou_threshold and matched:
                total = total + overlaps[best] + model_outputs["scores"][best]
        return total
