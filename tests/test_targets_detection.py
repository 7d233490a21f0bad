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


# --- detectors through the engine: the familiar classes on a detector's per-image dicts ---


def _state(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[bool], int]:
    """What "the model comes back unchanged" means: weights, train flags, hook count."""
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
    return weights, flags, hooks


def _assert_unchanged(model: nn.Module, before: tuple) -> None:
    weights, flags, hooks = _state(model)
    assert flags == before[1] and hooks == before[2]
    for key, value in before[0].items():
        assert torch.equal(weights[key], value), key
    assert all(p.grad is None for p in model.parameters())


def _features_and_outputs(
    model: nn.Module, x: torch.Tensor
) -> tuple[OrderedDict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The FPN's levels, each a fresh leaf the head reads (the gradient "at the layer's
    output" is the head's, level by level: "pool" is not differentiated back into "0"),
    and the detections computed from them."""
    captured: dict[str, OrderedDict[str, torch.Tensor]] = {}

    def as_leaves(module: nn.Module, args: object, output: OrderedDict) -> OrderedDict:
        leaves = OrderedDict((k, v.detach().requires_grad_(True)) for k, v in output.items())
        captured["features"] = leaves
        return leaves

    handle = model.backbone.register_forward_hook(as_leaves)
    try:
        outputs = model(x)
    finally:
        handle.remove()
    return captured["features"], outputs


def test_gradcam_on_a_detector_equals_the_hand_computed_map() -> None:
    """camlens.GradCAM(model, [model.backbone], fasterrcnn_reshape_transform) with one
    FasterRCNNBoxScoreTarget per image, as pytorch-grad-cam's Faster R-CNN tutorial calls it:
    the raw map is Σ_c mean(G_c) A_c on the transformed grids (G: the gradients of the summed
    target scores at each FPN level as the head reads it, transformed like the activations,
    so |G| as upstream's transform takes the absolute value); image 1's box
    matches nothing, so its map is all zeros; the model comes back unchanged."""
    import camlens

    torch.manual_seed(0)
    model = TinyDetector()
    x = torch.randn(2, 3, 16, 16, dtype=DOUBLE)
    targets = [
        FasterRCNNBoxScoreTarget([3], [[20, 20, 30, 30]]),
        FasterRCNNBoxScoreTarget([3], [[0, 0, 10, 10]]),
    ]
    features, outputs = _features_and_outputs(model, x)
    total = sum(target(output) for target, output in zip(targets, outputs, strict=True))
    gradients = torch.autograd.grad(total, list(features.values()))
    activations = fasterrcnn_reshape_transform(features).detach()
    weights = fasterrcnn_reshape_transform(OrderedDict(zip(features, gradients, strict=True)))
    expected = (weights.mean(dim=(2, 3), keepdim=True) * activations).sum(1)
    model.zero_grad(set_to_none=True)

    before = _state(model)
    cam = camlens.GradCAM(model, [model.backbone], reshape_transform=fasterrcnn_reshape_transform)
    with cam:
        explanation = cam.explain(x, targets)
        maps = cam(x, targets)
    _assert_unchanged(model, before)
    assert_close(explanation.layer_maps[0], expected)
    assert_close(
        explanation.scores,
        torch.stack([t(o) for t, o in zip(targets, outputs, strict=True)]).detach(),
    )
    assert maps.shape == (2, 16, 16) and maps[0].max() == pytest.approx(1.0)
    assert not maps[1].any() and not explanation.layer_maps[0][1].any()
    assert isinstance(explanation.outputs[0]["boxes"], torch.Tensor)
    assert not explanation.outputs[0]["scores"].requires_grad


def test_eigencam_on_a_detector_needs_no_target() -> None:
    """EigenCAM on the FPN's transformed grid: the first principal component of each
    image's (positions × channels) matrix, centred per channel (up to the sign camlens
    fixes), with no target at all and with box targets alike."""
    import camlens

    torch.manual_seed(1)
    model = TinyDetector()
    x = torch.randn(2, 3, 16, 16, dtype=DOUBLE)
    features, _ = _features_and_outputs(model, x)
    grid = fasterrcnn_reshape_transform(features).detach()  # (2, 8, 8, 8)
    points = grid.flatten(2).transpose(1, 2)  # (B, 64 positions, 8 channels)
    centred = points - points.mean(dim=1, keepdim=True)
    expected = []
    for image in centred:
        _, _, right = torch.linalg.svd(image, full_matrices=False)
        expected.append((image @ right[0]).reshape(8, 8))
    before = _state(model)
    with camlens.EigenCAM(
        model, [model.backbone], reshape_transform=fasterrcnn_reshape_transform
    ) as cam:
        plain = cam.explain(x).layer_maps[0]
        boxed = cam.explain(x, [FasterRCNNBoxScoreTarget([1], [[0, 0, 10, 6]])] * 2)
        maps = cam(x)
    _assert_unchanged(model, before)
    assert maps.shape == (2, 16, 16) and np.isfinite(maps).all()
    assert_close(boxed.layer_maps[0], plain)
    for ours, theirs in zip(plain, expected, strict=True):
        sign = 1.0 if float((ours * theirs).sum()) >= 0 else -1.0
        assert_close(ours, sign * theirs)


def test_detector_outputs_refuse_what_they_cannot_give() -> None:
    """Gradient methods without a target, class indices, methods that re-run the model,
    aug_smooth (boxes are not flipped back) and the score-tensor front ends all raise."""
    import camlens
    from camlens.errors import ModelOutputError
    from camlens.outputs import as_score_tensor

    model = TinyDetector()
    x = torch.randn(2, 3, 16, 16, dtype=DOUBLE)
    layers = [model.backbone]
    transform = fasterrcnn_reshape_transform
    box = FasterRCNNBoxScoreTarget([3], [[20, 20, 30, 30]])
    with pytest.raises(TargetError, match="no predicted class"):
        camlens.GradCAM(model, layers, reshape_transform=transform)(x)
    with pytest.raises(TargetError, match="callable target"):
        camlens.GradCAM(model, layers, reshape_transform=transform)(x, [3, 3])
    with pytest.raises(ModelOutputError, match="re-runs the model"):
        camlens.ScoreCAM(model, layers, reshape_transform=transform)(x, [box, box])
    with pytest.raises(ModelOutputError, match="aug_smooth"):
        camlens.GradCAM(model, layers, reshape_transform=transform)(x, [box, box], aug_smooth=True)
    with pytest.raises(ModelOutputError, match="reshape_transform"):
        camlens.GradCAM(model, layers)(x, [box, box])
    with pytest.raises(ModelOutputError, match="detector"):
        as_score_tensor(model(x))
    with pytest.raises(ModelOutputError, match="score tensor"):
        camlens.explain_segmentation(model, x, classes=[1], methods=["gradcam"], layers=layers)
    assert all(p.grad is None for p in model.parameters())
