"""Ports of pytorch-grad-cam's smaller test files: ``test_one_channel.py``,
``test_context_release.py``, ``test_finer_cam_correctness.py``, ``test_refine_cam.py``,
``test_svd_no_side_effect.py`` and ``test_fasterrcnn_target_device.py``.

Changes: camlens's same-layout models instead of pretrained ones; ``device=None`` dropped
(1.5.7's classes refuse it); the memory loop counts hooks and the calls' results instead of
the machine's memory (which other processes move); the FinerCAM check of upstream's HPU
source (``_htcore``) is not ported (camlens has no HPU code).
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from torch import nn

from camlens.compat import (
    EigenCAM,
    EigenGradCAM,
    FinerCAM,
    GradCAM,
    GradCAMPlusPlus,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from camlens.compat.metrics.arcc import ARCC
from camlens.compat.refine_cam import RefineCAM
from camlens.compat.utils.image import preprocess_image
from camlens.compat.utils.model_targets import ClassifierOutputTarget, FasterRCNNBoxScoreTarget
from camlens.compat.utils.svd_on_activations import (
    get_2d_projection,
    get_2d_projection_kernel,
    get_2d_projection_with_sign_correction,
)
from tests.compat.conftest import resize, small_resnet18


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


# test_one_channel.py
def test_one_channel_input(numpy_image: np.ndarray) -> None:
    model = small_resnet18(in_channels=1)
    gray = numpy_image[:, :, 0]
    input_tensor = torch.from_numpy(np.float32(gray))[None, None].repeat(16, 1, 1, 1)
    with GradCAM(model=model, target_layers=[model.layer4]) as cam:
        grayscale_cam = cam(input_tensor=input_tensor, targets=None)
    assert grayscale_cam.shape == (16, *gray.shape)


# test_context_release.py
def test_repeated_calls_release_everything(numpy_image: np.ndarray) -> None:
    img = resize(numpy_image, 64, 64)
    input_tensor = preprocess_image(np.float32(img) / 255)
    model = small_resnet18()
    targets = [ClassifierOutputTarget(100)]
    results = []
    for _ in range(20):
        with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
            results.append(cam(input_tensor=input_tensor, targets=targets))
        assert _no_hooks(model)
    gc.collect()
    assert all(np.array_equal(results[0], r) for r in results)
    assert all(p.grad is None for p in model.parameters())


# test_finer_cam_correctness.py
def _cnn(num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.conv = nn.Conv2d(3, 4, 3, padding=1)
    model.relu = nn.ReLU()
    model.pool = nn.AdaptiveAvgPool2d(1)
    model.flatten = nn.Flatten()
    model.fc = nn.Linear(4, num_classes)
    return model.eval()


def test_finercam_supports_context_manager() -> None:
    model = _cnn(10)
    with FinerCAM(model=model, target_layers=[model.conv]) as cam:
        assert cam is not None


@pytest.mark.parametrize("classes", [2, 3])
def test_finercam_runs_on_small_classifiers_without_index_error(classes: int) -> None:
    model = _cnn(classes)
    x = torch.randn(1, 3, 16, 16)
    with FinerCAM(model=model, target_layers=[model.conv]) as cam:
        out = cam(input_tensor=x, targets=None)
    assert out.shape == (1, 16, 16)


# test_refine_cam.py
@pytest.mark.parametrize("batch_size,width,height", [(2, 48, 48), (1, 64, 64)])
@pytest.mark.parametrize(
    "base_method", [GradCAM, ScoreCAM, GradCAMPlusPlus, XGradCAM, EigenCAM, EigenGradCAM, LayerCAM]
)
def test_refine_cam(
    numpy_image: np.ndarray, batch_size: int, width: int, height: int, base_method
) -> None:
    img = np.float32(resize(numpy_image, width, height)[:, :, ::-1]) / 255
    input_tensor = preprocess_image(img).repeat(batch_size, 1, 1, 1)
    model = small_resnet18()
    target_layers = [model.layer4[-1], model.layer4[-2]]
    targets = [ClassifierOutputTarget(143) for _ in range(batch_size)]
    cam = RefineCAM(model=model, target_layers=target_layers, base_method=base_method)
    grayscale_cam = cam(input_tensor=input_tensor, targets=targets)
    assert grayscale_cam.shape == (batch_size, height, width)

    # camlens solves the ROAD imputation iteratively; 1e-4 keeps this small test quick
    metric = ARCC(base_method=cam, road_percentiles=[20, 80], tolerance=1e-4)
    arcc_scores = metric(
        input_tensor=input_tensor, grayscale_cams=grayscale_cam, targets=targets, model=model
    )
    assert len(arcc_scores) == batch_size
    assert np.all(arcc_scores >= 0) and np.all(arcc_scores <= 1)


# test_svd_no_side_effect.py
def _sample_batch_with_nan() -> np.ndarray:
    a = np.zeros((1, 2, 2, 2), dtype=np.float32)
    a[0, 0, 0, 0] = np.nan
    a[0, 0, 1, 1] = 1.0
    a[0, 1] = np.array([[2.0, 3.0], [4.0, 5.0]], dtype=np.float32)
    return a


@pytest.mark.parametrize(
    "projection",
    [get_2d_projection, get_2d_projection_kernel, get_2d_projection_with_sign_correction],
)
def test_projections_do_not_mutate_the_caller(projection) -> None:
    a = _sample_batch_with_nan()
    snapshot = a.copy()
    result = projection(a)
    assert np.array_equal(a, snapshot, equal_nan=True)
    assert result.shape == (1, 2, 2) and result.dtype == np.float32
    assert np.isfinite(result).all()


# test_fasterrcnn_target_device.py
def test_box_target_inherits_output_device_cpu() -> None:
    target = FasterRCNNBoxScoreTarget(
        labels=[1], bounding_boxes=[np.array([0.0, 0.0, 10.0, 10.0], dtype=np.float32)]
    )
    outputs = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
        "labels": torch.tensor([1]),
        "scores": torch.tensor([0.9]),
    }
    score = target(outputs)
    assert score.device.type == "cpu"
    assert score.item() == pytest.approx(1.9)


def test_box_target_returns_zero_on_empty_boxes() -> None:
    target = FasterRCNNBoxScoreTarget(labels=[1], bounding_boxes=[np.zeros(4)])
    outputs = {
        "boxes": torch.zeros((0, 4)),
        "labels": torch.zeros((0,), dtype=torch.int64),
        "scores": torch.zeros((0,)),
    }
    score = target(outputs)
    assert score.device.type == "cpu" and score.item() == 0.0
