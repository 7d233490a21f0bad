"""`positive_mass_in_mask`: the share is defined wherever the raw map has a positive cell."""

from __future__ import annotations

import pytest
import torch

from camlens.masks import positive_mass_in_mask


def test_positive_cell_among_negatives_is_not_lost_when_upsampling() -> None:
    """A weak positive cell between strong negative ones: resampling the signed map first
    cancelled it (NaN); its positive part, upsampled ×4, is a tent over 8 × 8 pixels."""
    maps = torch.full((1, 3, 3), -4.0)
    maps[0, 1, 1] = 1.0
    masks = torch.zeros(1, 12, 12, dtype=torch.bool)
    masks[0, 4:8, 4:8] = True
    # Per axis the tent's weights over pixels 2..9 are 1/8, 3/8, 5/8, 7/8, 7/8, 5/8, 3/8, 1/8
    # (sum 4); pixels 4..7 hold 3 of the 4. Separable: (3/4)².
    assert float(positive_mass_in_mask(maps, masks)[0]) == pytest.approx(0.5625)


def test_positive_cell_is_not_skipped_when_the_mask_grid_is_smaller() -> None:
    """Bilinear shrinking 8 → 2 samples only cells 1, 2, 5 and 6 of each axis, so a single
    positive cell at (0, 0) vanished (NaN); area averaging keeps it."""
    maps = torch.zeros(2, 8, 8)
    maps[:, 0, 0] = 1.0
    masks = torch.zeros(2, 2, 2, dtype=torch.bool)
    masks[0, 0, 0] = True  # the block holding the cell
    masks[1, 1, 1] = True  # the opposite block
    assert positive_mass_in_mask(maps, masks).tolist() == [1.0, 0.0]


def test_area_shrinking_keeps_block_sums() -> None:
    """Shrinking by whole blocks: the share is the share of relu(m) over the blocks inside."""
    torch.manual_seed(0)
    maps = torch.randn(3, 8, 12)
    masks = torch.rand(3, 2, 3) > 0.5
    masks[:, 0, 0] = True
    expected = []
    for m, k in zip(maps, masks, strict=True):
        big = k.repeat_interleave(4, 0).repeat_interleave(4, 1)
        expected.append(float((m.relu() * big).sum() / m.relu().sum()))
    assert positive_mass_in_mask(maps, masks).tolist() == pytest.approx(expected)


def test_mixed_axes_and_volumes() -> None:
    """One axis shrinks while the other grows; and the same in 3-D."""
    maps = torch.zeros(1, 8, 2)
    maps[0, 7, 0] = 2.0
    masks = torch.zeros(1, 2, 8, dtype=torch.bool)
    masks[0, 1, :4] = True  # bottom half of the rows (area), left half of the columns
    # Columns 2 → 8: cell 0's weights over pixels 0..5 are 1, 1, 7/8, 5/8, 3/8, 1/8 (sum 4);
    # pixels 0..3 hold 3.5 of them.
    assert float(positive_mass_in_mask(maps, masks)[0]) == pytest.approx(0.875)
    volume = torch.full((1, 6, 6, 6), -1.0)
    volume[0, 5, 0, 0] = 0.5
    masks3 = torch.zeros(1, 3, 12, 2, dtype=torch.bool)
    masks3[0, 2, :, 0] = True
    share = positive_mass_in_mask(volume, masks3, spatial_dims=3)
    assert float(share[0]) == pytest.approx(1.0)


def test_same_size_uniform_and_nan_meanings_are_kept() -> None:
    maps = torch.tensor([[[1.0, -2.0], [3.0, 0.0]]])
    masks = torch.tensor([[[False, True], [True, False]]])
    assert float(positive_mass_in_mask(maps, masks)[0]) == pytest.approx(0.75)
    uniform = positive_mass_in_mask(torch.ones(1, 3, 5), torch.ones(1, 7, 2, dtype=torch.bool))
    assert float(uniform[0]) == pytest.approx(1.0)
    quarter = torch.zeros(1, 10, 10, dtype=torch.bool)
    quarter[0, :5, :5] = True
    assert float(positive_mass_in_mask(torch.ones(1, 3, 3), quarter)[0]) == pytest.approx(0.25)
    empty = positive_mass_in_mask(-torch.ones(1, 4, 4), torch.ones(1, 2, 9, dtype=torch.bool))
    assert torch.isnan(empty).all()
