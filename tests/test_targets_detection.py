"""FasterRCNNBoxScoreTarget on torchvision-style detection outputs (a list of per-image
dicts with boxes, labels and scores), from a tiny detector of the same layout, and
fasterrcnn_reshape_transform on its FPN features."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from camlens.errors import TargetError
from camlens.reshape import fasterrcnn_reshape_transform
from camlens.targets import FasterRCNNBoxScoreTarget

DOUBLE = torch.float64

#: The fake detector's fixed boxes and labels: its scores come from the features.
ANCHORS = torch.tensor(
    [[0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 8.0], [20.0, 20.0, 30.0, 30.0]], dtype=DOUBLE
)
LABELS = torch.tensor([1, 2, 3])


class TinyDetector(nn.Module):
    """backbone (an FPN-like dict ``{"0": (B, 4, 16, 16), "pool": (B, 4, 8, 8)}``) → per
    image ``{"boxes", "labels", "scores"}``: the fixed boxes shifted by a small regression
    and scored by a sigmoid of the features, as torchvision's detectors lay them out."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, padding=1).double()
        self.backbone = FakeFPN(self.body)
        self.score = nn.Linear(8, 3).double()
        self.shift = nn.Linear(8, 1).double()

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        features = self.backbone(x)
        pooled = torch.cat([level.mean(dim=(2, 3)) for level in features.values()], dim=1)
        scores = torch.sigmoid(self.score(pooled))  # (B, 3)
        shifts = 0.01 * torch.tanh(self.shift(pooled))  # (B, 1)
        return [
            {"boxes": ANCHORS + shift, "labels": LABELS.clone(), "scores": score}
            for score, shift in zip(scores, shifts, strict=True)
        ]


class FakeFPN(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        level = self.body(x)
        return OrderedDict([("0", level), ("pool", nn.functional.max_pool2d(level, 2))])


def _detections(scores: list[float]) -> dict[str, torch.Tensor]:
    return {
        "boxes": ANCHORS.clone(),
        "labels": LABELS.clone(),
        "scores": torch.tensor(scores, dtype=DOUBLE, requires_grad=True),
    }


def test_box_score_by_hand() -> None:
    """Requested [0,0,10,10] (label 1): the best-IoU box is detection 1 (IoU 0.8), whose
    label is 2, so it counts nothing (as upstream: the best box must carry the label).
    Requested [20,20,30,30] (label 3): detection 2, IoU 1, adds 1 + its score. Requested
    [0,0,10,6] (label 1): detection 0 has IoU 5/6 and label 1: adds 5/6 + 0.7."""
    detections = _detections([0.7, 0.9, 0.4])
    target = FasterRCNNBoxScoreTarget(
        [1, 3, 1], np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 6]])
    )
    score = target(detections)
    assert score.shape == ()
    # [0,0,10,6] against detection 1 ([0,0,10,8]): IoU 60/80 = 0.75 < 5/6
    assert_close(score, torch.tensor(1 + 0.4 + 5 / 6 + 0.7, dtype=DOUBLE))
    (gradient,) = torch.autograd.grad(score, detections["scores"])
    assert_close(gradient, torch.tensor([1.0, 0.0, 1.0], dtype=DOUBLE))
    # the threshold is strict: IoU 0.5 ([0,0,10,5] against [0,0,10,10]) is not above 0.5
    half = FasterRCNNBoxScoreTarget([1], [[0, 0, 10, 10]], iou_threshold=0.5)
    only_first = {k: v[:1] for k, v in _detections([0.7, 0.9, 0.4]).items()}
    assert float(half(only_first).detach()) == 0.0
    assert_close(
        FasterRCNNBoxScoreTarget([1], [[0, 0, 10, 10]], iou_threshold=0.4)(only_first),
        torch.tensor(0.5 + 0.7, dtype=DOUBLE),
    )


def test_no_match_is_zero_and_differentiable() -> None:
    for detections in (
        _detections([0.7, 0.9, 0.4]),
        {
            "boxes": torch.zeros(0, 4, dtype=DOUBLE),
            "labels": torch.zeros(0, dtype=torch.long),
            "scores": torch.zeros(0, dtype=DOUBLE, requires_grad=True),
        },
    ):
        score = FasterRCNNBoxScoreTarget([5], [[100, 100, 120, 130]])(detections)
        assert float(score.detach()) == 0.0 and score.requires_grad
        (gradient,) = torch.autograd.grad(score, detections["scores"])
        assert not gradient.any()
    with pytest.raises(TargetError, match="missing"):
        FasterRCNNBoxScoreTarget([1], [[0, 0, 1, 1]])(torch.zeros(3))
    with pytest.raises(ValueError, match="one label per box"):
        FasterRCNNBoxScoreTarget([1, 2], [[0, 0, 1, 1]])


def test_detector_gradients_reach_only_the_matched_image_through_the_fpn() -> None:
    """Grad-CAM as pytorch-grad-cam's Faster R-CNN tutorial runs it: the target on each
    image's dict, gradients at the FPN's output dict, one grid from
    fasterrcnn_reshape_transform. Image 1's requested box matches nothing, so its gradients
    are zeros; image 0's are not; and the grid is (B, 4 + 4, 8, 8)."""
    torch.manual_seed(0)
    model = TinyDetector()
    x = torch.randn(2, 3, 16, 16, dtype=DOUBLE)
    captured: dict[str, OrderedDict[str, torch.Tensor]] = {}
    handle = model.backbone.register_forward_hook(
        lambda module, args, output: captured.setdefault("features", output)
    )
    try:
        outputs = model(x)
    finally:
        handle.remove()
    targets = [
        FasterRCNNBoxScoreTarget([3], [[20, 20, 30, 30]]),
        FasterRCNNBoxScoreTarget([3], [[0, 0, 10, 10]]),
    ]
    total = sum(target(output) for target, output in zip(targets, outputs, strict=True))
    features = captured["features"]
    gradients = torch.autograd.grad(total, list(features.values()))
    assert all(g[0].abs().sum() > 0 and not g[1].any() for g in gradients)
    with torch.no_grad():  # image 0's shifted box still overlaps [20,20,30,30] almost wholly
        iou = targets[0](outputs[0]) - outputs[0]["scores"][2]
        assert 0.99 < float(iou) <= 1.0
        assert_close(total.detach(), iou + outputs[0]["scores"][2])
    activations = fasterrcnn_reshape_transform(features)
    weights = fasterrcnn_reshape_transform(OrderedDict(zip(features, gradients, strict=True))).mean(
        dim=(2, 3), keepdim=True
    )
    cam = torch.relu((weights * activations).sum(1))
    assert activations.shape == (2, 8, 8, 8) and cam.shape == (2, 8, 8)
    assert not cam[1].any()
