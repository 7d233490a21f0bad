"""The share of positive mass inside a mask, by hand."""

from __future__ import annotations

import pytest
import torch

from camlens.metrics import dilate, pointing_game, positive_mass_in_mask


def test_share_by_hand() -> None:
    maps = torch.tensor([[[1.0, -2.0], [3.0, 0.0]]])  # positive mass 4, 3 of it at (1, 0)
    masks = torch.tensor([[[False, True], [True, False]]])
    assert float(positive_mass_in_mask(maps, masks)[0]) == pytest.approx(0.75)


def test_uniform_map_gives_area_fraction_and_upsampling() -> None:
    maps = torch.ones(2, 4, 4)
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, :4, :4] = True  # 1/16 of the area
    masks[1, :, :8] = True  # half
    shares = positive_mass_in_mask(maps, masks)
    assert shares.tolist() == pytest.approx([1 / 16, 0.5])


def test_no_positive_mass_is_nan() -> None:
    share = positive_mass_in_mask(-torch.ones(1, 3, 3), torch.ones(1, 3, 3, dtype=torch.bool))
    assert torch.isnan(share).all()


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="leading axes"):
        positive_mass_in_mask(torch.ones(2, 3, 3), torch.ones(3, 3, 3))


def test_pointing_game_with_tolerance() -> None:
    maps = torch.zeros(3, 8, 8)
    maps[0, 1, 1] = 5.0  # on the mask
    maps[1, 1, 4] = 5.0  # two pixels to the right of it
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[:, 0:3, 0:3] = True
    assert pointing_game(maps, masks).tolist() == [True, False, False]  # constant map: miss
    assert pointing_game(maps, masks, tolerance=2).tolist() == [True, True, False]


def test_dilate() -> None:
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[2, 2] = True
    assert int(dilate(mask, 1).sum()) == 9
    assert torch.equal(dilate(mask, 0), mask)
