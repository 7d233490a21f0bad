"""The pieces camlens.compat writes itself (not re-exports): their values, against numbers
generated once from pytorch-grad-cam 1.5.7 where upstream is deterministic."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from camlens import finer_targets
from camlens.compat import AblationCAM, AblationLayer, AblationLayerVit, FinerCAM, GradCAM
from camlens.compat.guided_backprop import GuidedBackpropReLU, GuidedBackpropReLUasModule
from camlens.compat.metrics.arcc import Coherency, Complexity, batch_pearson_coherency
from camlens.compat.metrics.cam_mult_image import (
    CamMultImageConfidenceChange,
    multiply_tensor_with_cam,
)
from camlens.compat.metrics.perturbation_confidence import (
    AveragerAcrossThresholds,
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from camlens.compat.metrics.road import NoisyLinearImputer
from camlens.compat.sess import sliding_window, window_starts
from camlens.compat.sobel_cam import sobel_cam
from camlens.compat.utils.find_layers import (
    find_layer_predicate_recursive,
    find_layer_types_recursive,
    replace_all_layer_type_recursive,
    replace_layer_recursive,
)
from camlens.compat.utils.image import scale_accross_batch_and_channels, scale_cam_image
from camlens.compat.utils.svd_on_activations import (
    get_2d_projection,
    get_2d_projection_with_sign_correction,
)
from camlens.errors import OptionError
from camlens.targets import FinerWeightedTarget
from tests.compat.conftest import small_resnet18

# fmt: off
IMAGE = np.array([
    [[248, 194, 190], [207, 147, 26], [237, 21, 245], [211, 239, 45], [5, 157, 159], [60, 54, 236], [109, 46, 199]],  # noqa: E501
    [[82, 32, 205], [36, 7, 134], [222, 57, 146], [8, 149, 14], [15, 22, 10], [144, 208, 24], [24, 7, 41]],  # noqa: E501
    [[11, 85, 59], [104, 225, 110], [226, 201, 8], [159, 26, 27], [163, 122, 33], [41, 201, 67], [70, 166, 228]],  # noqa: E501
    [[40, 50, 179], [0, 177, 137], [63, 13, 188], [255, 64, 94], [8, 8, 156], [25, 29, 157], [146, 190, 115]],  # noqa: E501
    [[219, 135, 39], [100, 237, 127], [72, 227, 168], [21, 73, 132], [16, 153, 140], [107, 80, 163], [61, 110, 47]],  # noqa: E501
    [[229, 148, 170], [97, 110, 56], [150, 74, 193], [62, 44, 238], [239, 226, 188], [14, 205, 185], [193, 73, 238]],  # noqa: E501
], dtype=np.uint8)
#: pytorch-grad-cam 1.5.7's sobel_cam(IMAGE) (OpenCV).
SOBEL = np.array([
    [0, 50, 119, 96, 55, 33, 0], [125, 75, 51, 227, 76, 106, 123],
    [85, 181, 83, 125, 109, 137, 26], [96, 107, 119, 100, 64, 202, 96],
    [93, 82, 152, 94, 158, 128, 64], [0, 40, 128, 53, 109, 121, 0],
], dtype=np.uint8)
#: pytorch-grad-cam 1.5.7's get_2d_projection_with_sign_correction(ACTIVATIONS), 4 decimals.
SIGN_CORRECTED = np.array([
    [[-1.1752, -0.4269, 1.0447, 1.0836], [-0.3671, -1.1821, -0.1675, 1.1904]],
    [[1.1385, 0.4692, -1.0005, -1.1176], [0.2896, 1.1594, 0.2176, -1.1561]],
])
# fmt: on
ACTIVATIONS = np.sin(np.arange(48).reshape(2, 3, 2, 4) * 1.3).astype(np.float32)


def test_sobel_cam_matches_opencv() -> None:
    assert np.array_equal(sobel_cam(IMAGE), SOBEL)


def test_projections_match_upstream() -> None:
    np.testing.assert_allclose(
        get_2d_projection_with_sign_correction(ACTIVATIONS), SIGN_CORRECTED, atol=2e-4
    )
    np.testing.assert_allclose(
        np.abs(get_2d_projection(ACTIVATIONS)), np.abs(SIGN_CORRECTED), atol=2e-4
    )


def test_find_and_replace_layers() -> None:
    model = small_resnet18()
    convs = find_layer_types_recursive(model, [nn.Conv2d])
    assert convs[0] is model.conv1 and len(convs) == 20
    relus = find_layer_predicate_recursive(model, lambda m: isinstance(m, nn.ReLU))
    assert relus and all(isinstance(m, nn.ReLU) for m in relus)
    replacement = nn.Identity()
    assert replace_layer_recursive(model, model.layer4[-1].conv2, replacement)
    assert model.layer4[-1].conv2 is replacement
    assert not replace_layer_recursive(model, nn.Conv2d(1, 1, 1), replacement)
    replace_all_layer_type_recursive(model, nn.ReLU, replacement)
    assert not find_layer_types_recursive(model, [nn.ReLU])


def test_scale_accross_batch_and_channels() -> None:
    maps = np.random.default_rng(0).random((2, 3, 4, 5)).astype(np.float32)
    scaled = scale_accross_batch_and_channels(maps, (10, 8))
    assert scaled.shape == (2, 3, 8, 10)
    assert np.array_equal(scaled[1, 2], scale_cam_image(maps[1, 2:3], (10, 8))[0])


def test_sliding_window_covers_the_image_with_full_windows() -> None:
    assert window_starts(10, 4, 4) == [0, 4, 6]
    assert window_starts(3, 4, 4) == [0]
    assert sliding_window(6, 10, 4, 4) == [(0, 0), (4, 0), (6, 0), (0, 2), (4, 2), (6, 2)]


def test_guided_relu_function_and_module() -> None:
    x = torch.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    y = GuidedBackpropReLUasModule()(x)
    assert torch.equal(y, torch.tensor([0.0, 2.0, 3.0]))
    (y * torch.tensor([5.0, -1.0, 4.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 0.0, 4.0]))
    assert GuidedBackpropReLU.apply(torch.tensor([-2.0])).item() == 0


def test_perturbation_building_blocks_compose_to_cam_mult_image() -> None:
    model = small_resnet18()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    cams = GradCAM(model=model, target_layers=[model.layer4])(x, [1, 2])
    composed = PerturbationConfidenceMetric(multiply_tensor_with_cam)(x, cams, [1, 2], model)
    reference = CamMultImageConfidenceChange()(x, cams, [1, 2], model)
    np.testing.assert_allclose(composed, reference, atol=1e-5)


def test_remove_relevant_first_keeps_the_pixels_below_the_percentile() -> None:
    image = torch.arange(12.0).reshape(1, 3, 4)
    cam = torch.arange(12.0).reshape(3, 4) / 11
    kept = []
    RemoveMostRelevantFirst(50, lambda img, keep: kept.append(keep) or img)(image, cam)
    RemoveLeastRelevantFirst(50, lambda img, keep: kept.append(keep) or img)(image, cam)
    assert kept[0].flatten().tolist() == [1.0] * 6 + [0.0] * 6
    assert kept[1].flatten().tolist() == [0.0] * 6 + [1.0] * 6
    with pytest.raises(OptionError, match="Otsu"):
        RemoveMostRelevantFirst("auto", None)


def test_noisy_linear_imputer_keeps_unmasked_pixels_and_fills_the_rest() -> None:
    image = torch.linspace(0, 1, 48).reshape(3, 4, 4)
    keep = torch.ones(4, 4)
    keep[1:3, 1:3] = 0
    filled = NoisyLinearImputer(noise=0.0)(image, keep)
    assert torch.equal(filled[:, keep.bool()], image[:, keep.bool()])
    torch.testing.assert_close(filled, image, atol=1e-4, rtol=0)  # a linear ramp is kept
    with pytest.raises(OptionError, match="weighting"):
        NoisyLinearImputer(weighting=[((0, 1), 1.0)])


def test_averager_across_thresholds_averages_the_metric() -> None:
    calls = []

    def metric(percentile: float):
        return lambda *args: calls.append(percentile) or np.float32([percentile, 1.0])

    result = AveragerAcrossThresholds(metric, [10, 30])(None, None, None, None)
    assert calls == [10, 30] and np.allclose(result, [20.0, 1.0])


def test_arcc_parts() -> None:
    cams = np.float32([[[0.0, 1.0], [1.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])
    assert np.allclose(Complexity()(cams), [0.5, 0.5])
    assert np.allclose(batch_pearson_coherency(cams[:1], cams[:1]), [1.0], atol=1e-6)
    model = small_resnet18()
    x = torch.randn(1, 3, 32, 32)
    cam = GradCAM(model=model, target_layers=[model.layer4])
    maps = cam(x, [3])
    coherency = Coherency()(x, maps, [3], model, cam)
    assert coherency.shape == (1,) and 0 <= coherency[0] <= 1


def test_ablation_selectors_are_accepted_silently_and_refuse_to_run() -> None:
    model = small_resnet18()
    x = torch.randn(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = AblationCAM(model, [model.layer4], ablation_layer=AblationLayer())(x, [1])
        b = AblationCAM(model, [model.layer4], ablation_layer=AblationLayerVit())(x, [1])
    assert np.array_equal(a, b)
    with pytest.warns(UserWarning, match="ignored"):
        AblationCAM(model, [model.layer4], ablation_layer=nn.Identity())
    with pytest.raises(Exception, match="never puts it into the model"):
        AblationLayer()(x)


def test_finer_cam_targets_compare_with_the_closest_classes() -> None:
    model = small_resnet18(num_classes=6)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    cam = FinerCAM(model, [model.layer4])
    with torch.no_grad():
        scores = model(x)
    targets = finer_targets(scores, alpha=0.5)
    for row, target in zip(scores, targets, strict=True):
        order = (row - row.max()).abs().argsort(stable=True).tolist()
        assert target.main_category == order[0] and target.comparison_categories == order[1:4]
    explicit = [FinerWeightedTarget(t.main_category, t.comparison_categories, 1.0) for t in targets]
    assert np.array_equal(cam(x), cam(x, explicit))
