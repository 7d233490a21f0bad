"""Bad input gets a clear, specific error (or warning) that says what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import camlens
from camlens.errors import (
    CamlensError,
    InputShapeError,
    LayerNeverRanError,
    LayerNotFoundError,
    NonFiniteError,
    TargetError,
    UnsupportedModeError,
)
from camlens.models import tiny_deeplabv3plus, tiny_resnet
from camlens.targets import ClassifierOutputTarget, SemanticSegmentationTarget


@pytest.fixture
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return tiny_resnet(num_classes=4)


class WithUnusedBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.unused = nn.Conv2d(3, 4, 3, padding=1)
        self.side = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.side(x)  # runs, but its output is thrown away
        return self.head(self.body(x).mean(dim=(2, 3)))


def test_unknown_layer_lists_close_names(resnet: nn.Module) -> None:
    with pytest.raises(LayerNotFoundError, match=r"'layer5'.*closest: 'layer4'"):
        camlens.GradCAM(resnet, ["layer5"])
    with pytest.raises(KeyError):  # also a builtin KeyError
        camlens.GradCAM(resnet, ["layer4.bogus"])


def test_layer_from_another_model(resnet: nn.Module) -> None:
    other = tiny_resnet(num_classes=4)
    with pytest.raises(LayerNotFoundError, match="not a submodule"):
        camlens.GradCAM(resnet, [other.layer4])


def test_layer_that_never_runs() -> None:
    model = WithUnusedBranch()
    with pytest.raises(LayerNeverRanError, match="'unused' did not run"):
        camlens.explain(model, torch.randn(1, 3, 8, 8), method="gradcam", layers="unused")
    with pytest.raises(LayerNeverRanError, match="do not depend on layer 'side'"):
        camlens.explain(model, torch.randn(1, 3, 8, 8), method="gradcam", layers=["side"])


def test_class_index_out_of_range(resnet: nn.Module) -> None:
    with pytest.raises(TargetError, match=r"class index 7 is out of range .* 4 classes"):
        camlens.explain(
            resnet, torch.randn(1, 3, 32, 32), layers="layer4", targets=[ClassifierOutputTarget(7)]
        )
    with pytest.raises(IndexError):
        camlens.explain(
            resnet, torch.randn(1, 3, 32, 32), method="cam", layers="layer4", targets=[9]
        )


@pytest.mark.parametrize("shape", [(3, 32, 32), (32, 32), (1, 1, 1, 3, 32, 32)])
def test_wrong_input_rank(resnet: nn.Module, shape: tuple[int, ...]) -> None:
    with pytest.raises(InputShapeError, match=r"\(B, C, H, W\)"):
        camlens.explain(resnet, torch.randn(shape), layers="layer4")


def test_missing_batch_dimension_hint(resnet: nn.Module) -> None:
    with pytest.raises(InputShapeError, match=r"unsqueeze\(0\)"):
        camlens.GradCAM(resnet, ["layer4"])(torch.randn(3, 32, 32))


def test_integer_input(resnet: nn.Module) -> None:
    with pytest.raises(InputShapeError, match=r"dtype torch\.uint8"):
        camlens.explain(resnet, torch.zeros(1, 3, 32, 32, dtype=torch.uint8), layers="layer4")


@pytest.mark.parametrize("count", [2, 4])
def test_target_count_neither_one_nor_batch(resnet: nn.Module, count: int) -> None:
    targets = [ClassifierOutputTarget(0)] * count
    with pytest.raises(InputShapeError, match=f"got {count} targets for a batch of 3"):
        camlens.explain(resnet, torch.randn(3, 3, 32, 32), layers="layer4", targets=targets)


def test_single_target_is_broadcast(resnet: nn.Module) -> None:
    x = torch.randn(3, 3, 32, 32)
    single = camlens.explain(resnet, x, layers="layer4", targets=[ClassifierOutputTarget(2)])
    each = camlens.explain(resnet, x, layers="layer4", targets=[2, 2, 2])
    torch.testing.assert_close(single.layer_maps[0], each.layer_maps[0])
    assert all(t.category == 2 for t in single.targets)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_input(resnet: nn.Module, value: float) -> None:
    x = torch.randn(1, 3, 32, 32)
    x[0, 1, 5, 5] = value
    with pytest.raises(NonFiniteError, match="NaN/inf"):
        camlens.explain(resnet, x, layers="layer4")


def test_non_finite_score() -> None:
    model = tiny_resnet(num_classes=4)
    with pytest.raises(NonFiniteError, match="target scores"):
        camlens.explain(
            model,
            torch.randn(1, 3, 32, 32),
            layers="layer4",
            targets=[lambda out: out[0] * float("inf")],
        )


def test_inference_mode_is_refused(resnet: nn.Module) -> None:
    with torch.inference_mode(), pytest.raises(UnsupportedModeError, match="inference_mode"):
        camlens.explain(resnet, torch.randn(1, 3, 32, 32), layers="layer4")


def test_inference_tensor_input_is_accepted(resnet: nn.Module) -> None:
    with torch.inference_mode():
        x = torch.randn(1, 3, 32, 32)
    assert x.is_inference()
    result = camlens.explain(resnet, x, layers="layer4")
    assert torch.isfinite(result.maps).all()


def test_target_returning_a_vector(resnet: nn.Module) -> None:
    with pytest.raises(TargetError, match="one scalar tensor per image"):
        camlens.explain(
            resnet, torch.randn(1, 3, 32, 32), layers="layer4", targets=[lambda out: out]
        )


def test_empty_segmentation_mask_warns_and_gives_zeros() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3)
    mask = np.zeros((32, 32), dtype=bool)
    with pytest.warns(RuntimeWarning, match="mask is empty"):
        result = camlens.explain(
            model,
            torch.randn(1, 3, 32, 32),
            method="hirescam",
            layers="encoder.layer4",
            targets=[SemanticSegmentationTarget(1, mask)],
        )
    assert torch.count_nonzero(result.maps) == 0
    assert torch.count_nonzero(result.layer_maps[0]) == 0
    assert torch.isfinite(result.maps).all()


def test_mask_shape_mismatch() -> None:
    model = tiny_deeplabv3plus(num_classes=3)
    with pytest.raises(InputShapeError, match=r"mask shape \(16, 16\) does not match"):
        camlens.explain(
            model,
            torch.randn(1, 3, 32, 32),
            layers="encoder.layer4",
            targets=[SemanticSegmentationTarget(1, np.ones((16, 16)))],
        )


def test_segmentation_default_target_is_dominant_class() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3)
    x = torch.randn(2, 3, 32, 32)
    with pytest.warns(UserWarning, match="dominant predicted class"):
        result = camlens.explain(model, x, method="hirescam", layers="encoder.layer4")
    predicted = model.eval()(x).argmax(1)
    for index, target in enumerate(result.targets):
        dominant = int(torch.bincount(predicted[index].flatten(), minlength=3).argmax())
        assert target.category == dominant
        assert torch.equal(target.mask, predicted[index] == dominant)


def test_all_errors_are_camlens_errors() -> None:
    for error in (
        InputShapeError,
        LayerNeverRanError,
        LayerNotFoundError,
        NonFiniteError,
        TargetError,
        UnsupportedModeError,
    ):
        assert issubclass(error, CamlensError)


def test_use_cuda_is_deprecated(resnet: nn.Module) -> None:
    with pytest.warns(FutureWarning, match="use_cuda"):
        camlens.GradCAM(resnet, [resnet.layer4], use_cuda=False)


def test_unknown_method(resnet: nn.Module) -> None:
    with pytest.raises(KeyError, match="available: gradcam, hirescam"):
        camlens.explain(resnet, torch.randn(1, 3, 32, 32), method="bogus", layers="layer4")
