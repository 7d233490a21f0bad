"""Cascading model-parameter randomisation (Adebayo et al. 2018)."""

from __future__ import annotations

import pytest
import torch

from camlens import GradCAM
from camlens.metrics import cascading_randomisation, parameterised_modules

from .conftest import GapLinearNet


def gradcam(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return GradCAM(model, "features.2").explain(inputs, [0] * len(inputs)).raw_maps()


def brightness(_model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return inputs.mean(dim=1)  # ignores the model entirely


@pytest.fixture
def inputs(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 12, 12, dtype=torch.float64)


def test_modules_are_randomised_from_the_output_end(gap_net: GapLinearNet) -> None:
    names = [name for name, _ in parameterised_modules(gap_net)]
    assert names == ["fc", "features.2", "features.0"]


def test_a_map_that_ignores_the_model_is_flagged(gap_net, inputs, snapshot) -> None:
    before = snapshot(gap_net)
    result = cascading_randomisation(gap_net, inputs, brightness)
    before.assert_same(gap_net)
    assert result.flagged
    assert "barely depend" in result.reason
    assert result.checked_step == 1  # half of 3 modules, rounded up: fc and features.2
    assert result.spearman.shape == (3, 2) and result.ssim.shape == (3, 2)
    torch.testing.assert_close(result.spearman, torch.ones(3, 2, dtype=torch.float64))
    torch.testing.assert_close(result.ssim, torch.ones(3, 2, dtype=torch.float64))


def test_gradcam_is_not_flagged_and_the_model_comes_back(gap_net, inputs, snapshot) -> None:
    gap_net.features.train()  # a mixed train/eval state must survive too
    before = snapshot(gap_net)
    rng = torch.random.get_rng_state()
    original = gradcam(gap_net, inputs)
    result = cascading_randomisation(gap_net, inputs, gradcam, keep_maps=True)
    before.assert_same(gap_net)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the caller's RNG is untouched
    assert not result.flagged, result.reason
    assert float(result.spearman[result.checked_step].mean()) < 0.5
    torch.testing.assert_close(result.original_maps, original)
    assert result.maps is not None and result.maps.shape == (3, *original.shape)
    # the randomisation is seeded: the same seed gives the same maps
    again = cascading_randomisation(gap_net, inputs, gradcam, keep_maps=True)
    assert again.maps is not None and torch.equal(again.maps, result.maps)


def test_the_model_is_restored_after_an_exception(gap_net, inputs, snapshot) -> None:
    gap_net.fc.weight.grad = torch.ones_like(gap_net.fc.weight)
    before = snapshot(gap_net)
    calls = []

    def failing(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:  # original, step 0, then fail with fc and features.2 random
            raise RuntimeError("boom")
        return gradcam(model, images)

    with pytest.raises(RuntimeError, match="boom"):
        cascading_randomisation(gap_net, inputs, failing)
    before.assert_same(gap_net)


def test_bad_maps_are_refused(gap_net, inputs) -> None:
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        cascading_randomisation(gap_net, inputs, lambda m, x: x)
    with pytest.raises(ValueError, match="no parameters"):
        cascading_randomisation(torch.nn.ReLU(), inputs, brightness)
