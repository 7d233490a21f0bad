"""Positive map energy inside / near / far from a mask, by hand and per segmentation class."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from camlens import explain_segmentation
from camlens.metrics import (
    energy_by_region,
    segmentation_energy_by_region,
    segmentation_pointing_game,
)
from camlens.segmentation import SegmentationExplanation


def centre_mask() -> torch.Tensor:
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[3:5, 3:5] = True  # 2 × 2 in the middle; its 1-px ring is rows/cols 2..5
    return mask


def test_inside_near_far_by_hand() -> None:
    maps = torch.zeros(1, 8, 8)
    maps[0, 3, 3] = 3.0  # inside
    maps[0, 4, 4] = 1.0  # inside
    maps[0, 2, 2] = 2.0  # ring (diagonal neighbour of the mask)
    maps[0, 0, 7] = 2.0  # far
    maps[0, 7, 0] = -9.0  # negative evidence does not count
    shares = energy_by_region(maps, centre_mask()[None], near=1)
    assert shares[0].tolist() == pytest.approx([0.5, 0.25, 0.25])
    # the far pixel (0, 7) is 3 px from the mask (Chebyshev: 3 rows up, 3 columns right),
    # so a ring of 2 leaves it far and a ring of 3 takes it in
    assert energy_by_region(maps, centre_mask()[None], near=2)[0].tolist() == pytest.approx(
        [0.5, 0.25, 0.25]
    )
    assert energy_by_region(maps, centre_mask()[None], near=3)[0].tolist() == pytest.approx(
        [0.5, 0.5, 0.0]
    )
    assert energy_by_region(maps, centre_mask()[None], near=0)[0].tolist() == pytest.approx(
        [0.5, 0.0, 0.5]
    )


def test_upsampled_uniform_map_gives_area_shares() -> None:
    shares = energy_by_region(torch.ones(2, 2, 2), centre_mask().expand(2, 8, 8), near=1)
    expected = torch.tensor([[4 / 64, 12 / 64, 48 / 64]] * 2)
    torch.testing.assert_close(shares, expected)


def test_undefined_cases_are_nan() -> None:
    empty = torch.zeros(1, 8, 8, dtype=torch.bool)
    assert torch.isnan(energy_by_region(torch.ones(1, 8, 8), empty, near=1)).all()
    assert torch.isnan(energy_by_region(-torch.ones(1, 8, 8), centre_mask()[None], 1)).all()
    with pytest.raises(ValueError, match="leading axes"):
        energy_by_region(torch.ones(2, 8, 8), centre_mask()[None], near=1)


def hand_explanation() -> SegmentationExplanation:
    """Two classes of one image, built by hand: class 0's map sits on its mask, class 1's
    next to it."""
    masks = torch.zeros(1, 2, 8, 8)
    masks[0, 0] = centre_mask().float()
    masks[0, 1, 0:2, 0:2] = 1.0
    raw = torch.zeros(1, 2, 8, 8)
    raw[0, 0, 3, 4] = 1.0
    raw[0, 1, 2, 2] = 1.0  # one px diagonal from class 1's mask
    return SegmentationExplanation(
        classes=[0, 1],
        class_names=None,
        methods=["gradcam"],
        layer_names=["layer"],
        map_names={"gradcam": ["layer"]},
        layer_maps={"gradcam": [raw]},
        maps={"gradcam": raw.clamp(0, 1)},
        masks=masks,
        scores=torch.zeros(1, 2),
        mass_in_mask={"gradcam": torch.zeros(1, 2)},
        outputs=torch.zeros(1, 2, 8, 8),
        predicted=torch.zeros(1, 8, 8, dtype=torch.long),
        input_size=(8, 8),
    )


def test_segmentation_shares_per_class() -> None:
    explanation = hand_explanation()
    shares = segmentation_energy_by_region(explanation, near=1)
    assert shares.shape == (1, 2, 3)
    torch.testing.assert_close(shares[0], torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    final = segmentation_energy_by_region(explanation, "gradcam", near=1, source="final")
    torch.testing.assert_close(final, shares)
    hits = segmentation_pointing_game(explanation)
    assert hits.tolist() == [[True, False]]
    assert segmentation_pointing_game(explanation, tolerance=1).tolist() == [[True, True]]


def test_segmentation_shares_of_a_real_explanation() -> None:
    torch.manual_seed(0)
    segmenter = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 1))
    inputs = torch.randn(2, 3, 12, 12)
    labels = torch.zeros(2, 12, 12, dtype=torch.long)
    labels[:, 2:6, 2:6] = 1
    labels[:, 7:, 7:] = 2
    explanation = explain_segmentation(
        segmenter, inputs, classes=[1, 2], methods="gradcam", layers="0", masks=labels
    )
    shares = segmentation_energy_by_region(explanation, near=2)
    assert shares.shape == (2, 2, 3)
    expected = energy_by_region(explanation.raw_maps("gradcam"), explanation.masks, near=2)
    torch.testing.assert_close(shares, expected)
    for row in shares.flatten(0, 1).tolist():
        assert all(math.isnan(v) for v in row) or sum(row) == pytest.approx(1.0)
