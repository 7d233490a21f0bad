"""Sparseness, complexity, top-k intersection, relevance mass / rank accuracy,
max-sensitivity and faithfulness correlation, on cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from camlens.errors import InputShapeError
from camlens.metrics import (
    complexity,
    faithfulness_correlation,
    max_sensitivity,
    positive_mass_in_mask,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    sparseness,
    top_k_intersection,
)


def test_gini_of_one_pixel_among_four_is_three_quarters() -> None:
    # a = [0, 0, 0, 1] sorted ascending, n = 4, Σa = 1; only i = 4 has a_i ≠ 0:
    # G = (2·4 − 4 − 1) · 1 / (4 · 1) = 3/4.
    maps = torch.tensor([[[0.0, 0.0], [0.0, -1.0]]])  # |−1| = 1: the sign does not matter
    assert sparseness(maps).tolist() == [0.75]


def test_gini_by_the_formula_uniform_zero_and_empty_nan() -> None:
    # a = [1, 2, 3, 4] (n = 4, Σa = 10): Σ(2i − 5) a_i = −3·1 − 1·2 + 1·3 + 3·4 = 10,
    # G = 10 / (4 · 10) = 0.25.
    maps = np.array([[[4.0, 1.0], [3.0, 2.0]], [[2.0, 2.0], [2.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    result = sparseness(maps)
    assert result.dtype == torch.float64
    assert result[:2].tolist() == pytest.approx([0.25, 0.0], abs=1e-15)
    assert math.isnan(result[2])


def test_complexity_is_the_entropy_of_the_normalised_absolute_map() -> None:
    maps = torch.zeros(4, 3, 4, dtype=torch.float64)
    maps[0] = 5.0  # uniform over 12 pixels: log 12
    maps[1, 1, 2] = -2.0  # one pixel: p = 1, entropy 0
    maps[2, 0, :2] = torch.tensor([1.0, -3.0])  # p = (1/4, 3/4), zeros count as 0 · log 0 = 0
    result = complexity(maps)
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert result[:3].tolist() == pytest.approx([math.log(12), 0.0, expected], abs=1e-12)
    assert math.isnan(result[3])  # all zero


def toy_mask() -> torch.Tensor:
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True  # 4 pixels, top-left
    return mask


def toy_map() -> torch.Tensor:
    # Ranks, highest first: 16 @ (0,0) in, 15 @ (3,3) out, 14 @ (0,1) in, 13 @ (2,2) out,
    # 12 @ (1,0) in, then the zeros out, then (1,1) = −20 in, last: ranks are by signed value
    # (by |m| it would come first).
    return torch.tensor(
        [
            [
                [16.0, 14.0, 0.0, 0.0],
                [12.0, -20.0, 0.0, 0.0],
                [0.0, 0.0, 13.0, 0.0],
                [0.0, 0.0, 0.0, 15.0],
            ]
        ]
    )


@pytest.mark.parametrize(
    ("k", "share"),
    [
        (1, 1.0),  # {16}: in
        (2, 0.5),  # {16, 15}
        (3, 2 / 3),  # {16, 15, 14}
        (5, 3 / 5),  # {16, 15, 14, 13, 12}
        (None, 2 / 4),  # k = mask area = 4: {16, 15, 14, 13}
        (0.5, 1 / 2),  # round(0.5 · 4) = 2 pixels: {16, 15}
        (0.75, 2 / 3),  # 3 pixels
    ],
)
def test_top_k_intersection_on_a_toy_mask(k: int | float | None, share: float) -> None:
    assert top_k_intersection(toy_map(), toy_mask(), k=k).tolist() == pytest.approx([share])


def test_top_k_upsamples_low_resolution_maps_and_rejects_bad_k() -> None:
    low = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])  # bilinear: the top-left quadrant is high
    assert top_k_intersection(low, toy_mask(), k=1).tolist() == [1.0]
    with pytest.raises(ValueError, match="pixel count"):
        top_k_intersection(toy_map(), toy_mask(), k=17)
    with pytest.raises(InputShapeError, match="one mask per map"):
        top_k_intersection(toy_map(), torch.ones(2, 4, 4, dtype=torch.bool))
    with pytest.raises(InputShapeError, match=r"\(B, H, W\)"):
        top_k_intersection(toy_map()[0], toy_mask())


def test_relevance_rank_is_top_k_at_the_mask_area_and_mass_is_positive_mass() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 8, 8, generator=generator, dtype=torch.float64)
    masks = torch.rand(3, 8, 8, generator=generator) > 0.6
    areas = masks.flatten(1).sum(1)
    ranked = torch.stack(
        [
            top_k_intersection(maps[b : b + 1], masks[b : b + 1], k=int(areas[b]))[0]
            for b in range(3)
        ]
    )
    assert torch.equal(relevance_rank_accuracy(maps, masks), ranked)
    # Mass: Σ_mask m⁺ / Σ m⁺ by hand for image 0; the negative values play no part.
    positive = maps.clamp_min(0)
    by_hand = (positive * masks).flatten(1).sum(1) / positive.flatten(1).sum(1)
    assert relevance_mass_accuracy(maps, masks).tolist() == pytest.approx(by_hand.tolist())
    assert torch.equal(relevance_mass_accuracy(maps, masks), positive_mass_in_mask(maps, masks))


def channel_sum(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return inputs.sum(1)


def test_max_sensitivity_of_a_linear_explanation_is_reached_at_a_corner() -> None:
    # Φ(x) = Σ_c x_c, so Φ(x + δ) − Φ(x) = Σ_c δ_c: each of the H·W pixels changes by at
    # most C·r, and exactly C·r (in size) when all channels of δ share one sign ±r.
    # max ‖Σ_c δ_c‖_F = C · r · √(H·W); with C = 1 every corner reaches it.
    inputs = torch.rand(2, 1, 4, 5, generator=torch.Generator().manual_seed(1)) + 0.5
    inputs = inputs.double()
    radius = 0.1
    bound = 1 * radius * math.sqrt(20) / inputs.sum(1).flatten(1).norm(dim=1)
    model = nn.Identity()
    at_corners = max_sensitivity(model, inputs, channel_sum, radius=radius, samples=3, corners=True)
    assert at_corners.tolist() == pytest.approx(bound.tolist(), rel=1e-12)
    inside = max_sensitivity(model, inputs, channel_sum, radius=radius, samples=20)
    assert bool((inside < bound).all())  # uniform draws stay inside the ball
    assert bool((inside > 0.5 * bound).all())  # but are not far from its corners


def test_max_sensitivity_of_a_constant_explanation_is_zero() -> None:
    inputs = torch.rand(3, 2, 4, 4)

    def constant(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0], 4, 4)

    result = max_sensitivity(nn.Identity(), inputs, constant, radius=0.5, samples=4)
    assert result.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(InputShapeError, match=r"\(B, H, W\)"):
        max_sensitivity(nn.Identity(), inputs, lambda m, x: x, samples=1)


class Linear(nn.Module):
    """logits = [Σ w·x, 0]: class 0's raw score is linear in the input."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.weight).flatten(1).sum(1)
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def test_faithfulness_correlation_of_the_exact_attribution_is_one() -> None:
    # With baseline 0, removing subset S lowers the raw score by Σ_{i∈S} Σ_c w_c,i x_c,i,
    # which is exactly the attribution of S: the correlation is 1.
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(3, 8, 8, generator=generator, dtype=torch.float64)
    inputs = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    model = Linear(weight).eval()
    exact = (inputs * weight).sum(1)
    kwargs = {"samples": 40, "subset_size": 10, "score": "raw", "batch_size": 16}
    result = faithfulness_correlation(model, inputs, exact, [0, 0], **kwargs)
    assert result.tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    assert torch.equal(model.weight, weight)  # the model is handed back unchanged
    # A random map: near 0 with many subsets.
    noise = torch.randn(2, 8, 8, generator=generator, dtype=torch.float64)
    kwargs["samples"] = 2000
    kwargs["batch_size"] = 500
    unrelated = faithfulness_correlation(model, inputs, noise, [0, 0], **kwargs)
    assert bool((unrelated.abs() < 0.1).all()), unrelated


def test_faithfulness_correlation_checks_its_arguments() -> None:
    model = Linear(torch.ones(1, 4, 4, dtype=torch.float64))
    inputs = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="subset_size"):
        faithfulness_correlation(model, inputs, torch.ones(1, 4, 4), subset_size=16)
    with pytest.raises(InputShapeError):
        faithfulness_correlation(model, inputs, torch.ones(4, 4), subset_size=2)
