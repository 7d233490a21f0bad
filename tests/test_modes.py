"""Frozen models, a caller's no_grad, mixed precision, and EigenCAM's deterministic sign."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import camlens
from camlens.methods import first_principal_component
from camlens.models import tiny_deeplabv3plus, tiny_resnet
from camlens.targets import SemanticSegmentationTarget


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return tiny_resnet(num_classes=4)


def test_frozen_model_and_callers_no_grad(model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64)
    reference = camlens.explain(model, x, method="hirescam", layers="layer4", targets=[3])
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    with torch.no_grad():
        frozen = camlens.explain(model, x, method="hirescam", layers="layer4", targets=[3])
        assert not torch.is_grad_enabled()  # the caller's mode is restored
    assert_close(frozen.layer_maps[0], reference.layer_maps[0])
    assert all(p.grad is None for p in model.parameters())


def test_parameter_gradients_never_computed(model: torch.nn.Module) -> None:
    camlens.explain(model, torch.randn(1, 3, 64, 64), method="gradcam", layers="layer3")
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast(model: torch.nn.Module, dtype: torch.dtype) -> None:
    x = torch.randn(2, 3, 64, 64)
    reference = camlens.explain(model, x, method="gradcam", layers="layer4", targets=[1])
    with torch.autocast("cpu", dtype=dtype):
        mixed = camlens.explain(model, x, method="gradcam", layers="layer4", targets=[1])
    assert mixed.maps.dtype == torch.float32
    assert mixed.layer_maps[0].dtype == torch.float32
    assert torch.isfinite(mixed.maps).all()
    scale = reference.layer_maps[0].abs().max()
    assert (mixed.layer_maps[0] - reference.layer_maps[0]).abs().max() < 0.05 * scale


def test_segmentation_under_autocast() -> None:
    torch.manual_seed(0)
    model = tiny_deeplabv3plus(num_classes=3)
    mask = torch.zeros(32, 32)
    mask[4:20, 4:20] = 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = camlens.explain(
            model,
            torch.randn(1, 3, 32, 32),
            method="hirescam",
            layers="encoder.layer4",
            targets=[SemanticSegmentationTarget(1, mask)],
        )
    assert torch.isfinite(result.maps).all()


def test_principal_component_sign_is_fixed() -> None:
    torch.manual_seed(0)
    contributions = torch.relu(torch.randn(3, 8, 5, 6)) + torch.linspace(0, 2, 6)
    first = first_principal_component(contributions)
    # the map agrees with the plain channel sum, whatever sign the SVD returned
    plain = contributions.sum(1)
    for index in range(3):
        a = first[index].flatten() - first[index].mean()
        b = plain[index].flatten() - plain[index].mean()
        assert float(a @ b) > 0
    # negating the input's centred structure flips the reference too: the result follows it
    assert_close(first_principal_component(contributions), first)
    assert_close(first_principal_component(-contributions), -first, rtol=1e-4, atol=1e-5)


def test_principal_component_matches_covariance_eigenvector() -> None:
    torch.manual_seed(1)
    contributions = torch.randn(1, 6, 4, 4, dtype=torch.float64)
    points = contributions[0].reshape(6, -1).T
    centred = points - points.mean(0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    expected = (centred @ vectors[:, -1]).reshape(4, 4)
    result = first_principal_component(contributions)[0]
    assert_close(result.abs(), expected.abs(), rtol=1e-9, atol=1e-9)


def test_eigencam_is_deterministic(model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64)
    first = camlens.explain(model, x, method="eigencam", layers="layer3")
    second = camlens.explain(model, x, method="eigencam", layers="layer3")
    assert torch.equal(first.layer_maps[0], second.layer_maps[0])


def test_eigen_smooth_and_aug_smooth(model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64)
    smooth = camlens.explain(model, x, method="gradcam", layers="layer3", eigen_smooth=True)
    assert smooth.maps.shape == (2, 64, 64)
    augmented = camlens.explain(model, x, method="gradcam", layers="layer3", aug_smooth=True)
    assert augmented.maps.shape == (2, 64, 64)
    assert augmented.maps.min() >= 0 and augmented.maps.max() <= 1
    assert augmented.extras["aug_smooth"]


def test_aug_smooth_flips_maps_back() -> None:
    """A mirror-equivariant model: once flipped back, the flipped passes agree with the plain
    ones, so aug_smooth equals the brightness average alone (and would not if a map were left
    mirrored)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
    model = torch.nn.Sequential(
        conv,
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    x = torch.randn(1, 1, 8, 8)
    result = camlens.explain(model, x, method="hirescam", layers="1", targets=[0], aug_smooth=True)
    plain = [
        camlens.explain(model, x * f, method="hirescam", layers="1", targets=[0])
        for f in (0.9, 1.0, 1.1)
    ]
    assert_close(result.maps, torch.stack([p.maps for p in plain]).mean(0), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(result.maps, result.maps.flip(-1), atol=1e-3)
