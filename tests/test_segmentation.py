"""Every class of a segmentation from one forward pass: identical to single-class calls,
exact identities for a linear head, masks, regions and the mass-in-mask share."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import camlens
from camlens.errors import InputShapeError, ModelOutputError, TargetError
from camlens.masks import box_mask, connected_components, largest_component
from camlens.models import tiny_deeplabv3plus, tiny_resnet
from camlens.targets import SemanticSegmentationTarget


class LinearHeadSegmenter(nn.Module):
    """features → 1×1 conv (with bias) → bilinear ×2: logits are affine in the features."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Conv2d(6, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.head(self.features(x)), scale_factor=2, mode="bilinear")


@pytest.fixture
def deeplab() -> nn.Module:
    torch.manual_seed(0)
    return tiny_deeplabv3plus(num_classes=4)


@pytest.mark.parametrize("strategy", ["loop", "batched"])
def test_each_class_equals_single_class_call(deeplab: nn.Module, strategy: str) -> None:
    x = torch.randn(2, 3, 64, 64)
    methods = ["gradcam", "hirescam", "segxrescam", "gradcam++", "eigengradcam"]
    result = camlens.explain_segmentation(
        deeplab, x, classes="all", methods=methods, layers="encoder.layer4", strategy=strategy
    )
    predicted = deeplab.eval()(x).argmax(1)
    assert result.classes == [0, 1, 2, 3]
    for method in methods:
        assert result[method].shape == (2, 4, 64, 64)
        for index, class_id in enumerate(result.classes):
            targets = [
                SemanticSegmentationTarget(class_id, predicted[b] == class_id) for b in range(2)
            ]
            cam = camlens.Explainer(deeplab, "encoder.layer4", method=method)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # absent classes: empty masks warn
                single = cam.explain(x, targets)
            assert_close(result[method][:, index], single.maps, rtol=1e-5, atol=1e-5)
            assert_close(
                result.layer_maps[method][0][:, index], single.layer_maps[0], rtol=1e-5, atol=1e-6
            )
            assert_close(result.scores[:, index], single.scores, rtol=1e-6, atol=1e-5)


def test_hirescam_adds_up_to_score_minus_head_offset() -> None:
    torch.manual_seed(0)
    model = LinearHeadSegmenter().double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    result = camlens.explain_segmentation(
        model, x, classes="all", methods=["hirescam"], layers="features"
    )
    pixels = result.masks.flatten(2).sum(-1)  # mask sizes (B, K)
    offset = model.head.bias.detach()[result.classes] * pixels
    total = result.layer_maps["hirescam"][0].flatten(2).sum(-1)
    assert_close(total, result.scores - offset, rtol=1e-10, atol=1e-10)


def test_present_classes_and_names(deeplab: nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64)
    names = ["bg", "a", "b", "c"]
    result = camlens.explain_segmentation(
        deeplab, x, methods="hirescam", layers="encoder.layer4", class_names=names
    )
    predicted = deeplab.eval()(x).argmax(1)
    assert result.classes == sorted(int(c) for c in torch.unique(predicted))
    records = result.records()
    assert len(records) == 2 * len(result.classes)
    assert {r["class_name"] for r in records} == {names[c] for c in result.classes}
    assert torch.equal(result.predicted, predicted)


def test_ground_truth_masks_and_mean_reduction(deeplab: nn.Module) -> None:
    x = torch.randn(1, 3, 64, 64)
    truth = np.zeros((64, 64), dtype=np.int64)
    truth[10:30, 10:50] = 2
    result = camlens.explain_segmentation(
        deeplab,
        x,
        classes=[2],
        methods=["gradcam"],
        layers="encoder.layer4",
        masks=truth,
        reduction="mean",
    )
    logits = deeplab.eval()(x).detach()
    expected = logits[0, 2, 10:30, 10:50].mean()
    assert_close(result.scores[0, 0], expected, rtol=1e-5, atol=1e-6)
    assert int(result.masks.sum()) == 20 * 40


def test_region_box_and_largest_component(deeplab: nn.Module) -> None:
    x = torch.randn(1, 3, 64, 64)
    truth = torch.zeros(1, 64, 64, dtype=torch.int64)
    truth[0, 2:10, 2:10] = 1  # small blob
    truth[0, 30:60, 30:60] = 1  # large blob
    boxed = camlens.explain_segmentation(
        deeplab,
        x,
        classes=[1],
        methods="hirescam",
        layers="encoder.layer4",
        masks=truth,
        region=(0, 16, 0, 16),
    )
    assert int(boxed.masks.sum()) == 64
    largest = camlens.explain_segmentation(
        deeplab,
        x,
        classes=[1],
        methods="hirescam",
        layers="encoder.layer4",
        masks=truth,
        region="largest-component",
    )
    assert int(largest.masks.sum()) == 900


def test_mass_in_mask_by_hand() -> None:
    """A model whose class-1 logit at each pixel is the red channel there: the gradient map of
    the sum over a mask is the mask itself, so all positive mass lies inside it."""

    class RedChannel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.features(x)
            return torch.stack([-features[:, 0], features[:, 0]], dim=1)

    x = torch.rand(1, 3, 8, 8) + 0.5  # positive everywhere
    truth = torch.zeros(1, 8, 8, dtype=torch.int64)
    truth[0, 2:5, 3:7] = 1
    result = camlens.explain_segmentation(
        RedChannel(), x, classes=[1], methods="hirescam", layers="features", masks=truth
    )
    assert float(result.mass_in_mask["hirescam"][0, 0]) == pytest.approx(1.0)
    raw = result.layer_maps["hirescam"][0][0, 0]
    assert_close(raw, x[0, 0] * (truth[0] == 1))
    outside = torch.zeros(1, 8, 8, dtype=torch.int64)  # class 1 absent: no positive mass
    empty = camlens.explain_segmentation(
        RedChannel(), x, classes=[1], methods="hirescam", layers="features", masks=outside
    )
    assert torch.isnan(empty.mass_in_mask["hirescam"][0, 0])
    assert torch.count_nonzero(empty["hirescam"]) == 0


def test_errors(deeplab: nn.Module) -> None:
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(TargetError, match="out of range"):
        camlens.explain_segmentation(deeplab, x, classes=[9], layers="encoder.layer4")
    with pytest.raises(TargetError, match="linear classifier"):
        camlens.explain_segmentation(deeplab, x, methods=["cam"], layers="encoder.layer4")
    with pytest.raises(InputShapeError, match="label map"):
        camlens.explain_segmentation(
            deeplab, x, layers="encoder.layer4", masks=np.zeros((16, 16), dtype=np.int64)
        )
    with pytest.raises(ModelOutputError, match="dense logits"):
        camlens.explain_segmentation(tiny_resnet(num_classes=3), x, layers="layer4")


def test_eigencam_is_class_agnostic(deeplab: nn.Module) -> None:
    result = camlens.explain_segmentation(
        deeplab,
        torch.randn(1, 3, 64, 64),
        classes="all",
        methods=["eigencam"],
        layers="encoder.layer4",
    )
    maps = result["eigencam"][0]
    for index in range(1, maps.shape[0]):
        assert torch.equal(maps[index], maps[0])


def test_regions_helpers() -> None:
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[0:2, 0:2] = True
    mask[3:6, 3:8] = True
    mask[5, 0] = True
    labels = connected_components(mask)
    assert len(torch.unique(labels[labels > 0])) == 3
    assert int(largest_component(mask).sum()) == 15
    assert int(box_mask((6, 8), (1, 3, 2, 5)).sum()) == 6
    with pytest.raises(ValueError, match="outside"):
        box_mask((6, 8), (0, 9, 0, 2))
    serpentine = torch.ones(40, 40, dtype=torch.bool)  # one long winding corridor
    for row in range(1, 40, 4):  # walls open alternately at the left and the right end
        if row % 8 == 1:
            serpentine[row, 1:] = False
        else:
            serpentine[row, :-1] = False
    assert len(torch.unique(connected_components(serpentine))) == 2
