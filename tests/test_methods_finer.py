"""Finer-CAM (Zhang et al., CVPR 2025): the similar classes it picks, and the maps of its
weighted logit difference against gradients written out from the target's formula."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import camlens
from camlens.errors import TargetError
from camlens.models import tiny_deeplabv3plus, tiny_resnet
from camlens.targets import ClassifierOutputTarget, FinerWeightedTarget

from .test_methods_values import WeightedSum

DOUBLE = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-10}


def test_finer_targets_rank_classes_by_closeness_to_the_main_logit() -> None:
    outputs = torch.tensor(
        [[0.0, 5.0, 4.5, -1.0, 6.0, 5.8], [3.0, 2.9, -2.0, 3.2, 0.0, 1.0]], dtype=DOUBLE
    )
    first, second = camlens.finer_targets(outputs)
    # image 0: top class 4 (6.0); closest: 5 (0.2), 1 (1.0), 2 (1.5)
    assert (first.main_category, first.comparison_categories) == (4, [5, 1, 2])
    # image 1: top class 3 (3.2); closest: 0 (0.2), 1 (0.3), 5 (2.2)
    assert (second.main_category, second.comparison_categories) == (3, [0, 1, 5])
    chosen = camlens.finer_targets(outputs, target_idx=2, comparison_categories=[2, 9], alpha=0.5)
    # class 2 of image 0 (4.5): ranks 1.. are 1 (0.5), 5 (1.3), 4 (1.5); rank 9 is dropped
    assert chosen[0].main_category == 2 and chosen[0].comparison_categories == [5]
    assert chosen[0].alpha == 0.5
    with pytest.raises(TargetError, match="no comparison class"):
        camlens.finer_targets(outputs[:, :1])
    with pytest.raises(TargetError, match="out of range"):
        camlens.finer_targets(outputs, target_idx=6)
    with pytest.raises(TargetError, match=r"\(B, K\)"):
        camlens.finer_targets(torch.zeros(1, 3, 4, 4))


def _finer_gradient(y: torch.Tensor, main: int, others: list[int], alpha: float) -> torch.Tensor:
    """dT/dy of T = Σ_i p_i (y_m − α y_i) / (Σ_i p_i + 1e-9), p = softmax(y), written out:
    dp_i/dy_k = p_i (δ_ik − p_k)."""
    p = torch.softmax(y, dim=0)
    classes = y.shape[0]
    total = sum(p[i] for i in others)
    numerator = sum(p[i] * (y[main] - alpha * y[i]) for i in others)
    gradient = torch.zeros(classes, dtype=y.dtype)
    for k in range(classes):
        d_total = sum(p[i] * (float(i == k) - p[k]) for i in others)
        d_numerator = sum(p[i] * (float(i == k) - p[k]) * (y[main] - alpha * y[i]) for i in others)
        d_numerator = d_numerator + total * float(k == main) - alpha * p[k] * float(k in others)
        denominator = total + 1e-9
        gradient[k] = (d_numerator * denominator - numerator * d_total) / denominator**2
    return gradient


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_finer_hirescam_by_hand(alpha: float) -> None:
    """A weighted-sum head y_k = Σ P_k ⊙ A + b_k after an identity layer: the HiResCAM map of
    any target T(y) is Σ_c (Σ_k dT/dy_k P_k,c) ⊙ A_c, with dT/dy written out above."""
    generator = torch.Generator().manual_seed(4)
    weights = torch.randn(6, 2, 3, 4, generator=generator, dtype=DOUBLE)
    model = WeightedSum(weights, torch.randn(6, generator=generator, dtype=DOUBLE))
    x = torch.randn(3, 2, 3, 4, generator=generator, dtype=DOUBLE)
    cam = camlens.FinerCAM(model, ["features"], base_method=camlens.HiResCAM)
    explanation = cam.explain(x, alpha=alpha)
    y = model(x)
    for image, target in enumerate(explanation.targets):
        assert isinstance(target, FinerWeightedTarget)
        assert target.main_category == int(y[image].argmax())
        dy = _finer_gradient(y[image], target.main_category, target.comparison_categories, alpha)
        expected = (torch.einsum("k,kchw->chw", dy, weights) * x[image]).sum(0)
        assert_close(explanation.layer_maps[0][image], expected, **TIGHT)
        assert_close(explanation.scores[image], target(y[image]), **TIGHT)


def test_finer_cam_alpha_zero_is_the_base_method_on_the_main_class(snapshot) -> None:
    torch.manual_seed(0)
    model = tiny_resnet(num_classes=6).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=DOUBLE)
    before = snapshot(model)
    finer = camlens.FinerCAM(model, [model.layer3])
    maps = finer(x, None, False, 0.0)  # pytorch-grad-cam's positional order
    before.assert_same(model)
    plain = camlens.GradCAM(model, [model.layer3]).explain(x).layer_maps[0]
    raw = finer.explain(x, alpha=0.0).layer_maps[0]
    assert_close(raw, plain, rtol=1e-7, atol=1e-12)  # 1e-9 in the target's denominator
    assert maps.shape == (2, 32, 32) and maps.dtype.name == "float32"
    with camlens.FinerCAM(model, [model.layer3], base_method="hirescam") as by_name:
        differs = by_name.explain(x, target_idx=1)
    assert [t.main_category for t in differs.targets] == [1, 1]


def test_finer_cam_batch_equals_images_one_by_one_and_given_targets_pass() -> None:
    torch.manual_seed(1)
    model = tiny_resnet(num_classes=5).double().eval()
    x = torch.randn(3, 3, 32, 32, dtype=DOUBLE)
    cam = camlens.FinerCAM(model, [model.layer4], base_method=camlens.GradCAMPlusPlus)
    batch = cam.explain(x, comparison_categories=[1, 2])
    for image in range(3):
        single = cam.explain(x[image : image + 1], comparison_categories=[1, 2])
        assert_close(single.layer_maps[0][0], batch.layer_maps[0][image], **TIGHT)
    given = cam.explain(x, [ClassifierOutputTarget(2)])
    plain = camlens.GradCAMPlusPlus(model, [model.layer4]).explain(x, [2])
    assert_close(given.layer_maps[0], plain.layer_maps[0], **TIGHT)


def test_finer_cam_refuses_what_it_cannot_rank() -> None:
    model = tiny_deeplabv3plus(num_classes=3).eval()
    with pytest.raises(TargetError, match=r"\(B, K\)"):
        camlens.FinerCAM(model, ["encoder.layer4"])(torch.randn(1, 3, 32, 32))
    with pytest.raises(TypeError, match="base_method"):
        camlens.FinerCAM(model, ["encoder.layer4"], base_method=object)  # type: ignore[arg-type]
